"""Valid-sequence decoding: literal cases and properties."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bner.data import corpus
from bner.inference import decoding

IOB2 = ("O", "B-LOC", "B-PER", "I-LOC", "I-PER")
IOBES = ("O", "B-LOC", "B-PER", "E-LOC", "E-PER", "I-LOC", "I-PER", "S-LOC", "S-PER")


def probabilities(rows, labels):
    """[words, labels] from rows of {label: probability} (the rest share what is left)."""
    out = np.zeros((len(rows), len(labels)))
    for i, row in enumerate(rows):
        rest = (1 - sum(row.values())) / (len(labels) - len(row))
        out[i] = [row.get(label, rest) for label in labels]
    return out


def names(ids, labels):
    return [labels[i] for i in ids]


def test_an_inside_label_after_outside_becomes_the_best_valid_sequence():
    # Arg-max says O I-PER I-PER; "I-PER" cannot start an entity in IOB2.
    p = probabilities([{"O": 0.9}, {"I-PER": 0.5, "B-PER": 0.4}, {"I-PER": 0.8}], IOB2)
    rules = decoding.transitions(IOB2, "IOB2")
    assert not decoding.is_valid(p.argmax(1), rules)
    assert names(decoding.best_sequence(p, rules), IOB2) == ["O", "B-PER", "I-PER"]


def test_a_type_switch_inside_an_entity_is_resolved_by_probability():
    p = probabilities([{"B-LOC": 0.9}, {"I-PER": 0.5, "I-LOC": 0.3}], IOB2)
    assert names(decoding.best_sequence(p, decoding.transitions(IOB2, "IOB2")), IOB2) == ["B-LOC", "I-LOC"]


def test_iobes_entities_are_closed():
    # B-PER then O is invalid in IOBES: the entity must end with E-PER (or be S-PER).
    p = probabilities([{"B-PER": 0.6, "S-PER": 0.3}, {"O": 0.9}], IOBES)
    rules = decoding.transitions(IOBES, "IOBES")
    assert names(decoding.best_sequence(p, rules), IOBES) == ["S-PER", "O"]
    assert not decoding.is_valid([IOBES.index("B-PER")], rules)  # nor may a sentence end inside one


def test_an_empty_sentence_decodes_to_nothing():
    assert decoding.best_sequence(np.zeros((0, 5)), decoding.transitions(IOB2, "IOB2")).tolist() == []


def test_unknown_schemes_are_refused():
    with pytest.raises(ValueError, match="IOB2, IOBES"):
        decoding.transitions(IOB2, "IOB1")


def sequences(labels):
    return st.integers(1, 7).flatmap(
        lambda n: st.lists(st.lists(st.floats(0.001, 1.0), min_size=len(labels), max_size=len(labels)), min_size=n, max_size=n)
    )


@pytest.mark.parametrize("labels, scheme", [(IOB2, "IOB2"), (IOBES, "IOBES")])
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_decoding_is_valid_optimal_and_equals_argmax_when_that_is_valid(labels, scheme, data):
    raw = np.array(data.draw(sequences(labels)))
    p = raw / raw.sum(1, keepdims=True)
    rules = decoding.transitions(labels, scheme)
    path = decoding.best_sequence(p, rules)
    assert decoding.is_valid(path, rules)
    # Valid under conlleval's reading too: the tags spell the same entities in the model's scheme.
    tags = names(path, labels)
    assert corpus.spans_to_tags(corpus.entity_spans(tags), len(tags), scheme) == tags
    argmax = p.argmax(1)
    if decoding.is_valid(argmax, rules):
        # The arg-max itself, unless another valid sequence ties with it to rounding.
        log_p = np.log(p)
        chosen, best = log_p[np.arange(len(p)), path].sum(), log_p[np.arange(len(p)), argmax].sum()
        assert path.tolist() == argmax.tolist() or chosen == pytest.approx(best, abs=1e-12)
    # Optimal: no valid sequence has a higher probability (checked exhaustively on short inputs).
    if len(p) <= 4:
        log_p = np.log(p)
        best = max(
            sum(log_p[t, j] for t, j in enumerate(seq))
            for seq in itertools.product(range(len(labels)), repeat=len(p)) if decoding.is_valid(seq, rules)
        )
        assert sum(log_p[t, j] for t, j in enumerate(path)) == pytest.approx(best)


def test_an_entity_scores_the_probability_of_its_type_not_of_the_prefix_the_decoder_chose(tmp_path):
    from bner.data import features
    from bner.inference.tagger import Tagger
    from bner.model.metadata import EncoderConfig, TaggerMetadata

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "toyota"]) + "\n")
    labels = ["O", "B-ORG", "I-ORG"]
    metadata = TaggerMetadata(labels, "IOB2", "IOB2", 16, True, True, EncoderConfig(5, 8, 1, 1, 8))

    class Backend:
        name, num_labels = "fake", 3

    tagger = Tagger(Backend(), metadata, features.build_tokenizer(vocab_file=str(vocab)))
    # The model is sure the word is an ORG but prefers I-ORG, which cannot start an entity.
    tagged = tagger.decode(np.array([[0.03, 0.06, 0.91]]))
    assert tagged.tags == ["B-ORG"] and tagged.scores[0] == pytest.approx(0.97)
    assert tagger.decode(np.array([[0.7, 0.2, 0.1]])).scores[0] == pytest.approx(0.7)  # O: the probability of O
