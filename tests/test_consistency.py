"""Document-level consistency: literal cases, properties, and the tagger's use of it."""

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bner.data import corpus
from bner.inference import consistency, decoding

TYPES = ("DIS", "GENE")


def probs(*rows):
    """[words, types] from each word's probability of DIS (GENE gets none)."""
    return np.array([[p, 0.0] for p in rows])


def agree(sentences, tags, p, documents=None, scheme="IOB2"):
    documents = documents if documents is not None else [1] * len(sentences)
    return consistency.agree(sentences, tags, p, documents, TYPES, scheme)


def test_a_confident_name_is_tagged_where_the_decoder_missed_it():
    sentences = [["adenomatous", "polyposis", "(", "APC", ")"], ["APC", "is", "rare"]]
    tags = [["B-DIS", "I-DIS", "O", "B-DIS", "O"], ["O", "O", "O"]]
    p = [probs(0.9, 0.9, 0.0, 0.95, 0.0), probs(0.4, 0.0, 0.0)]
    assert agree(sentences, tags, p)[1] == ["B-DIS", "O", "O"]  # mean vote (0.95 + 0.4) / 2 ≥ 0.5


def test_a_doubtful_name_the_model_rejects_elsewhere_is_untagged():
    sentences = [["the", "fever", "rose"], ["no", "fever", "then"], ["fever", "again"]]
    tags = [["O", "B-DIS", "O"], ["O", "O", "O"], ["O", "O"]]
    p = [probs(0, 0.55, 0), probs(0, 0.3, 0), probs(0.2, 0)]
    assert agree(sentences, tags, p) == [["O"] * 3, ["O"] * 3, ["O"] * 2]


def test_a_document_that_agrees_is_left_alone_however_unsure_the_model_is():
    sentences = [["the", "fever"], ["fever", "rose"]]
    tags = [["O", "B-DIS"], ["B-DIS", "O"]]
    p = [probs(0, 0.35), probs(0.3, 0)]  # the decoder tagged it everywhere, though under 0.5
    assert agree(sentences, tags, p) == tags


def test_the_type_is_weighed_against_outside_not_against_one_half():
    # Where tagged: DIS 0.6, GENE 0.2, O 0.2; where not: DIS 0.3, GENE 0.3, O 0.4. DIS averages
    # 0.45, under one half, but above O's 0.3.
    sentences = [["MS", "x"], ["MS", "y"]]
    tags = [["B-DIS", "O"], ["O", "O"]]
    p = [np.array([[0.6, 0.2], [0, 0]]), np.array([[0.3, 0.3], [0, 0]])]
    assert agree(sentences, tags, p)[1] == ["B-DIS", "O"]


def test_documents_do_not_vote_for_each_other():
    sentences = [["APC", "mutated"], ["APC", "here"]]
    tags = [["B-DIS", "O"], ["O", "O"]]
    p = [probs(0.95, 0), probs(0.4, 0)]
    assert agree(sentences, tags, p, documents=[1, 2]) == tags
    assert agree(sentences, tags, p, documents=[1, 1])[1] == ["B-DIS", "O"]
    # Document 0 is outside any document (a CoNLL file without -DOCSTART-): each sentence alone.
    assert agree(sentences, tags, p, documents=[0, 0]) == tags


def test_occurrences_inside_other_entities_keep_their_tags_and_do_not_vote():
    sentences = [["cancer", "seen"], ["breast", "cancer", "seen"], ["cancer"]]
    tags = [["B-DIS", "O"], ["B-DIS", "I-DIS", "O"], ["O"]]
    # "breast cancer" is sure; "cancer" alone is doubtful where it stands alone.
    p = [probs(0.45, 0), probs(0.99, 0.99, 0), probs(0.3)]
    out = agree(sentences, tags, p)
    assert out[1] == ["B-DIS", "I-DIS", "O"]  # untouched, and its 0.99 did not save "cancer"
    assert out[0] == ["O", "O"] and out[2] == ["O"]


def test_longer_names_are_decided_first():
    # "Wilms tumor" is rejected as a whole; the shorter "tumor" inside it is then decided freely.
    sentences = [["Wilms", "tumor"], ["Wilms", "tumor"], ["tumor", "cells"]]
    tags = [["B-DIS", "I-DIS"], ["O", "O"], ["B-DIS", "O"]]
    p = [probs(0.6, 0.6), probs(0.1, 0.2), probs(0.9, 0)]
    assert agree(sentences, tags, p) == [["O", "B-DIS"], ["O", "B-DIS"], ["B-DIS", "O"]]


def test_iobes_entities_are_written_in_iobes():
    sentences = [["Wilms", "tumor", "and", "DMD"], ["DMD", ",", "Wilms", "tumor"]]
    tags = [["B-DIS", "E-DIS", "O", "S-DIS"], ["O", "O", "O", "O"]]
    p = [probs(0.9, 0.9, 0, 0.9), probs(0.6, 0, 0.5, 0.5)]
    assert agree(sentences, tags, p, scheme="IOBES")[1] == ["S-DIS", "O", "B-DIS", "E-DIS"]


def test_the_type_a_name_got_most_often_is_its_type():
    sentences = [["BRCA1", "x"], ["BRCA1", "y"], ["BRCA1", "z"], ["BRCA1"]]
    tags = [["B-GENE", "O"], ["B-GENE", "O"], ["B-DIS", "O"], ["O"]]
    p = [np.array([[0.1, 0.9], [0, 0]]), np.array([[0.1, 0.9], [0, 0]]), np.array([[0.6, 0.4], [0, 0]]), np.array([[0.1, 0.8]])]
    out = agree(sentences, tags, p)
    assert out[3] == ["B-GENE"] and out[2] == ["B-DIS", "O"]  # another type's tag is not overwritten


def test_punctuation_alone_is_not_a_name():
    sentences = [["(", "x", ")"], ["(", "y"]]
    tags = [["B-DIS", "O", "O"], ["O", "O"]]
    p = [probs(0.9, 0, 0), probs(0.9, 0)]
    assert agree(sentences, tags, p) == tags


def test_places_of_a_name_that_overlap_each_other_are_tagged_once():
    sentences = [["Bora", "Bora", "is", "nice"], ["Bora", "Bora", "Bora", "again"]]
    tags = [["B-LOC", "E-LOC", "O", "O"], ["O"] * 4]
    p = [np.array([[0.9], [0.9], [0], [0]]), np.array([[0.6], [0.6], [0.6], [0]])]
    out = consistency.agree(sentences, tags, p, [1, 1], ("LOC",), "IOBES")
    assert out[1] == ["B-LOC", "E-LOC", "O", "O"]  # not B-LOC B-LOC E-LOC


def test_empty_sentences_and_any_document_names_are_taken():
    sentences = [["APC"], [], ["APC"]]
    tags = [["B-DIS"], [], ["O"]]
    p = [probs(0.9), np.zeros((0, 2)), probs(0.4)]
    assert agree(sentences, tags, p, documents=np.array([3, 3, 3])) == [["B-DIS"], [], ["B-DIS"]]
    assert agree(sentences, tags, p, documents=["a", "a", "b"]) == tags


def test_a_following_inside_tag_is_not_absorbed():
    # Arg-max output can put I-DIS after O; tagging the O would join them into one entity.
    sentences = [["APC", "x"], ["APC", "gene"]]
    tags = [["B-DIS", "O"], ["O", "I-DIS"]]
    p = [probs(0.9, 0), probs(0.9, 0.6)]
    assert agree(sentences, tags, p)[1] == ["O", "I-DIS"]


WORDS = ("a", "b", "c")


@st.composite
def documents(draw, scheme):
    labels = ("O", "B-DIS", "I-DIS", "B-GENE", "I-GENE") + (("E-DIS", "S-DIS", "E-GENE", "S-GENE") if scheme == "IOBES" else ())
    rules = decoding.transitions(labels, scheme)
    sentences, tags, p, docs = [], [], [], []
    for _ in range(draw(st.integers(1, 6))):
        n = draw(st.integers(1, 6))
        raw = np.array(draw(st.lists(st.lists(st.floats(0.01, 1), min_size=len(labels), max_size=len(labels)), min_size=n, max_size=n)))
        label_p = raw / raw.sum(1, keepdims=True)
        ids = decoding.best_sequence(label_p, rules)
        sentences.append([draw(st.sampled_from(WORDS)) for _ in range(n)])
        tags.append([labels[i] for i in ids])
        kinds = [label.partition("-")[2] for label in labels]
        p.append(np.stack([label_p[:, [k == t for k in kinds]].sum(1) for t in TYPES], 1))
        docs.append(draw(st.integers(0, 2)))
    return sentences, tags, p, docs, rules, labels


@pytest.mark.parametrize("scheme", ["IOB2", "IOBES"])
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_output_stays_valid_and_each_document_is_decided_on_its_own(scheme, data):
    sentences, tags, p, docs, rules, labels = data.draw(documents(scheme))
    out = consistency.agree(sentences, tags, p, docs, TYPES, scheme)
    for before, after in zip(tags, out):
        assert len(after) == len(before)
        assert decoding.is_valid([labels.index(t) for t in after], rules)
    # Each document's result is what it gets when tagged alone.
    for d in set(docs):
        own = [k for k, doc in enumerate(docs) if doc == d]
        alone = consistency.agree([sentences[k] for k in own], [tags[k] for k in own], [p[k] for k in own], [d] * len(own), TYPES, scheme)
        assert alone == [out[k] for k in own]
    # Only words of names the decoder tagged somewhere in the document can change.
    for d in set(docs):
        names = {
            tuple(sentences[k][s.start : s.end]) for k, doc in enumerate(docs) if doc == d for s in corpus.entity_spans(tags[k])
        }
        words = {w for name in names for w in name}
        for k, doc in enumerate(docs):
            if doc == d:
                assert all(a == b or w in words for a, b, w in zip(tags[k], out[k], sentences[k]))


# ---------------------------------------------------------------- through the tagger


@pytest.fixture
def tagger(tmp_path):
    """A tagger whose model says "apc" is a DIS (0.9) after "the" and doubts it (0.4) elsewhere."""
    from bner.data import features
    from bner.inference.tagger import Tagger
    from bner.model.metadata import EncoderConfig, TaggerMetadata

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "apc", "is", "rare", "."]
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(vocab) + "\n")
    labels = ["O", "B-DIS", "I-DIS"]
    metadata = TaggerMetadata(labels, "IOB2", "IOB2", 32, True, True, EncoderConfig(len(vocab), 8, 1, 1, 64))
    the, apc = vocab.index("the"), vocab.index("apc")

    class Backend:
        name, num_labels = "fake", 3
        rows = 0  # model inputs seen

        def piece_probabilities(self, inputs):
            ids = np.asarray(inputs["input_ids"])
            Backend.rows += len(ids)
            out = np.tile(np.array([0.98, 0.01, 0.01]), ids.shape + (1,))
            after_the = np.zeros_like(ids, bool)
            after_the[:, 1:] = ids[:, :-1] == the
            out[(ids == apc) & after_the] = [0.1, 0.9, 0.0]
            out[(ids == apc) & ~after_the] = [0.6, 0.4, 0.0]
            return out

    def make(split_sentences=False, **kwargs):
        Backend.rows = 0
        meta = dataclasses.replace(metadata, split_sentences=split_sentences)
        return Tagger(Backend(), meta, features.build_tokenizer(vocab_file=str(path)), **kwargs)

    make.backend = Backend

    return make


def test_the_tagger_makes_a_document_agree_and_leaves_sentences_without_one(tagger):
    sentences = [["the", "apc", "is", "rare"], ["apc", "is", "rare"], ["apc", "."]]
    assert tagger().tag(sentences, documents=[1, 1, 2]) == [["O", "B-DIS", "O", "O"], ["B-DIS", "O", "O"], ["O", "O"]]
    assert tagger().tag(sentences) == [["O", "B-DIS", "O", "O"], ["O", "O", "O"], ["O", "O"]]  # no documents given
    assert tagger(consistent=False).tag(sentences, documents=[1, 1, 2])[1] == ["O", "O", "O"]
    # The added entity's score is still the model's own probability for its word.
    tagged = tagger().tag_sentences(sentences, documents=[1, 1, 2])
    assert tagged[1].scores[0] == pytest.approx(0.4)


def test_one_raw_text_is_one_document(tagger):
    entities = tagger()("The APC is rare. APC is rare.")
    assert [(e.text, e.start) for e in entities] == [("APC", 4), ("APC", 17)]
    assert [e.text for e in tagger()("APC is rare.")] == []
    assert [(e.text, e.start) for e in tagger(consistent=False)("The APC is rare. APC is rare.")] == [("APC", 4)]


def test_a_model_trained_on_sentences_tags_a_text_sentence_by_sentence(tagger):
    source = "The APC is rare. APC is rare."
    whole = tagger()
    assert [(e.text, e.start) for e in whole(source)] == [("APC", 4), ("APC", 17)]
    assert tagger.backend.rows == 1
    split = tagger(split_sentences=True)
    assert [(e.text, e.start) for e in split(source)] == [("APC", 4), ("APC", 17)]  # still one document
    assert tagger.backend.rows == 2
