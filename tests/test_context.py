"""Document context: what the model sees around a sentence, and that it never labels or crosses it."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bner.data import corpus, features, text


def test_context_comes_from_the_same_document_only():
    words = [("a1", "a2"), ("b1",), ("c1", "c2"), ("d1",), ("e1", "e2", "e3")]
    documents = [0, 0, 0, 1, 1]
    contexts = corpus.document_contexts(words, documents, 2)
    assert contexts[0] == ((), ("b1", "c1"))
    assert contexts[1] == (("a1", "a2"), ("c1", "c2"))
    assert contexts[2] == (("a2", "b1"), ())  # d1 is another document
    assert contexts[3] == ((), ("e1", "e2"))
    assert contexts[4] == (("d1",), ())
    assert corpus.document_contexts(words, documents, 0) == [((), ())] * 5


def test_context_is_never_labelled_and_the_sentence_keeps_its_place(tokenizer):
    encoder = features.Preprocessor(tokenizer, 16)
    sentences, labels = [["a", "b", "c"]], [[1, 2, 3]]
    (example,) = encoder.encode(sentences, labels, contexts=[(("d", "e"), ("e", "d", "a"))])
    tokens = [tokenizer.id_to_token(int(i)) for i in example.input_ids]
    assert tokens == ["[CLS]", "d", "e", "[SEP]", "a", "b", "c", "[SEP]", "e", "d", "a", "[SEP]"]
    assert [tokens[p] for p in example.owned_positions] == ["a", "b", "c"]
    assert example.labels[example.labels >= 0].tolist() == [1, 2, 3]
    assert (np.flatnonzero(example.labels >= 0) == example.owned_positions).all()
    # Without context the input is exactly what it always was.
    (plain,) = encoder.encode(sentences, labels)
    assert [tokenizer.id_to_token(int(i)) for i in plain.input_ids] == ["[CLS]", "a", "b", "c", "[SEP]"]


def test_context_shrinks_first_nearest_words_kept_and_whole(tokenizer):
    encoder = features.Preprocessor(tokenizer, 12)  # 10 pieces: 2 more [SEP], 3 sentence words, 5 for context
    (example,) = encoder.encode([["a", "b", "c"]], contexts=[(("a", "bx", "c", "d"), ("e", "ax", "b"))])
    tokens = [tokenizer.id_to_token(int(i)) for i in example.input_ids]
    # Left gets 2 pieces (its nearest whole words "c d"), right the other 3 ("e" and "a ##x").
    assert tokens == ["[CLS]", "c", "d", "[SEP]", "a", "b", "c", "[SEP]", "e", "a", "##x", "[SEP]"]
    assert len(example) <= 12


def test_one_sided_context_takes_all_the_room(tokenizer):
    encoder = features.Preprocessor(tokenizer, 12)
    (example,) = encoder.encode([["a"]], contexts=[((), ("b", "c", "d", "e", "a", "b", "c", "d"))])
    tokens = [tokenizer.id_to_token(int(i)) for i in example.input_ids]
    assert tokens == ["[CLS]", "[SEP]", "a", "[SEP]", "b", "c", "d", "e", "a", "b", "c", "[SEP]"]


@settings(max_examples=80, deadline=None)
@given(
    sentence=st.lists(st.sampled_from(["a", "b", "cx", "dxy", "e"]), min_size=1, max_size=40),
    left=st.lists(st.sampled_from(["a", "bx", "c"]), max_size=30),
    right=st.lists(st.sampled_from(["d", "ex", "a"]), max_size=30),
    window=st.integers(8, 24),
)
def test_every_word_is_tagged_exactly_once_within_the_window(tokenizer, sentence, left, right, window):
    encoder = features.Preprocessor(tokenizer, window)
    labels = [list(range(len(sentence)))]
    examples = encoder.encode([sentence], labels, contexts=[(tuple(left), tuple(right))])
    assert all(len(e) <= window for e in examples)
    learned = sorted(np.concatenate([e.labels[e.labels >= 0] for e in examples]).tolist())
    assert learned == labels[0]  # each word learned once, never a context word
    owned = np.concatenate([np.arange(e.window.own_start, e.window.own_end) for e in examples])
    assert owned.tolist() == list(range(len(sentence)))
    sep = tokenizer.token_to_id("[SEP]")
    for e in examples:
        seps = np.flatnonzero(e.input_ids == sep)
        assert len(seps) == 3 and seps[0] < e.owned_positions.min() and e.owned_positions.max() < seps[1]


def test_raw_text_is_split_into_sentences_for_context():
    source = "Anna Kowalski visited Lisbon. She met Dr. Rossi there!\n\nthen left. 3 days later: \"Stop.\" Done"
    words = text.segment(source)
    spans = text.sentence_spans(source, words)
    sentences = [" ".join(w.text for w in words[a:b]) for a, b in spans]
    assert sentences == ["Anna Kowalski visited Lisbon .", "She met Dr. Rossi there !", "then left .", "3 days later : \" Stop . \"", "Done"]
    assert spans[0][0] == 0 and spans[-1][1] == len(words)


def write_documents(path, sentences, per_document=4):
    lines = []
    for i, (words, tags) in enumerate(sentences):
        if i % per_document == 0:
            lines += ["-DOCSTART- O", ""]
        lines += [f"{w} {t}" for w, t in zip(words, tags)] + [""]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_a_model_trained_with_context_uses_it_in_evaluation_prediction_and_serving(tiny_model, tmp_path):
    import bner
    from tests.cli import read_json, run_task, tiny_training_flags
    from tests.conftest import synthetic_sentences

    data = tmp_path / "data"
    data.mkdir()
    for name, count, seed in (("train", 200, 1), ("dev", 40, 2), ("test", 40, 3)):
        write_documents(data / f"{name}.conll", synthetic_sentences(count, seed))
    out = tmp_path / "out"
    run_task(*tiny_training_flags(tiny_model, str(data), str(out), "--max_seq_length=48", "--context_words=8"), "--do_train")
    record = read_json(out / "run.json")
    assert record["config"]["model"]["context_words"] == 8 and record["config"]["model"]["context_dropout"] == 0.5
    exported = out / "export" / "bner" / "1"
    assert read_json(exported / "metadata.json")["context_words"] == 8
    assert read_json(exported / "metadata.json")["split_sentences"] is True  # context needs sentences
    assert read_json(out / "eval_results.json")["f1"] > 0.8
    tagger = bner.load(str(exported))
    # A text of several sentences is tagged sentence by sentence with its neighbours as context,
    # exactly as the same sentences given as one document's words.
    sentences = [("Anna", "Kowalski", "visited", "Lisbon", "."), ("Boris", "Silva", "works", "for", "Acme", "in", "Perth", "."),
                 ("Hooli", "met", "Chen", "in", "Oslo", "today", "."), ("Emil", "Rossi", "said", "Vandelay", "did", "it", ".")]
    source = " ".join(" ".join(words) for words in sentences)
    served = tagger(source)
    words = text.segment(source)
    spans = text.sentence_spans(source, words)
    assert [b - a for a, b in spans] == [len(s) for s in sentences]
    tags = tagger.tag([list(s) for s in sentences], documents=[1] * len(sentences))
    flat = [t for sentence_tags in tags for t in corpus.convert_tags(sentence_tags, tagger.metadata.label_scheme)]
    expected = [(source[words[s.start].start:words[s.end - 1].end], s.type) for s in corpus.entity_spans(flat)]
    assert [(e.text, e.type) for e in served] == expected
    # Files: bner predict and the Beam pipeline give each CoNLL sentence its document's neighbours alike.
    from bner.inference import prediction

    predicted = tmp_path / "predicted.conll"
    prediction.predict_file(tagger, str(data / "test.conll"), str(predicted))
    by_file = [list(s.tags) for s in corpus.parse_conll(predicted.read_text(), require_tags=True)]
    if pytest.importorskip("apache_beam"):
        import glob
        import json

        from bner import batch_predict

        batch_predict.run(str(exported), [str(data / "test.conll")], str(tmp_path / "beam" / "part"))
        rows = [json.loads(line) for path in glob.glob(str(tmp_path / "beam" / "part-*-of-*.jsonl")) for line in open(path)]
        by_line = {int(r["source"].rsplit(":", 1)[1]): r["tags"] for r in rows}
        assert [by_line[line] for line in sorted(by_line)] == by_file
    # Without documents each sentence stands alone: the context changes the model's input.
    (alone,) = tagger.preprocessor.encode([list(sentences[1])])
    (with_context,) = tagger.preprocessor.encode([list(sentences[1])], contexts=tagger.contexts(sentences, [0] * 4)[1:2])
    assert len(with_context) > len(alone)
