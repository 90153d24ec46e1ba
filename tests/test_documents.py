"""Document windows: training on packed sentences of a document, tagging documents and raw texts whole."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bner.data import batches, corpus, features, text
from tests.test_context import write_documents


def test_document_units_join_a_documents_sentences_and_leave_the_rest_alone():
    assert features.document_units([0, 0, 1, 1, 1, 2, 0, 3]) == [(0, 1), (1, 2), (2, 5), (5, 6), (6, 7), (7, 8)]
    assert features.document_units([-1, -1, 2, 2]) == [(0, 1), (1, 2), (2, 4)]  # Beam numbers the sentences outside negative
    assert features.document_units([]) == []


def test_packing_fills_windows_in_order_within_each_document():
    pieces = [3, 4, 2, 9, 1, 1, 12, 2]
    documents = [1, 1, 1, 1, 2, 2, 2, 0]
    # Room 8: 3+4 fit, 2 starts the next; 9 is a window alone (longer than the room is split later);
    # document 2 starts afresh; the sentence outside any document stands alone.
    assert features.pack_sentences(pieces, documents, 8) == [(0, 2), (2, 3), (3, 4), (4, 6), (6, 7), (7, 8)]


@settings(max_examples=150, deadline=None)
@given(
    pieces=st.lists(st.integers(1, 20), min_size=1, max_size=40),
    breaks=st.lists(st.booleans(), min_size=40, max_size=40),
    room=st.integers(4, 30),
    seed=st.integers(0, 10_000),
)
def test_packed_windows_never_cross_documents_and_hold_every_sentence_once(pieces, breaks, room, seed):
    documents, document = [], 1
    for i in range(len(pieces)):
        document += breaks[i] and i > 0
        documents.append(document)
    greedy = features.pack_sentences(pieces, documents, room)
    moved = features.pack_sentences(pieces, documents, room, np.random.default_rng(seed))
    for runs in (greedy, moved):
        assert [i for a, b in runs for i in range(a, b)] == list(range(len(pieces)))  # all, once, in order
        for a, b in runs:
            assert len({documents[i] for i in range(a, b)}) == 1
            assert b - a == 1 or sum(pieces[a:b]) <= room
    assert len(moved) == len(greedy)  # every epoch as many windows


def test_boundaries_move_from_epoch_to_epoch():
    pieces, documents = [2] * 34, [1] * 17 + [2] * 17  # each document: 34 pieces, 4 windows of 10 with room to move
    packings = [features.pack_sentences(pieces, documents, 10, np.random.default_rng(seed)) for seed in range(30)]
    assert len({runs[0] for runs in packings}) > 2 and {len(runs) for runs in packings} == {8}
    assert features.pack_sentences(pieces, documents, 10)[:4] == [(0, 5), (5, 10), (10, 15), (15, 17)]


def test_every_word_is_labelled_once_an_epoch_and_windows_keep_to_their_document(tokenizer):
    from bner.training.recipe import document_examples

    rng = np.random.default_rng(0)
    train, labels, owner, sentence_of, n = [], [], {}, {}, 0
    for document in (1, 1, 1, 2, 2, 3, 3, 3, 3, 0, 0):
        words = list(rng.choice(["a", "b", "cx", "dxy", "e"], size=int(rng.integers(1, 9))))
        train.append(corpus.Sentence(words, ["O"] * len(words), document))
        labels.append(list(range(n, n + len(words))))  # each word its own label id, to follow it
        owner.update({i: document for i in labels[-1]})
        sentence_of.update({i: len(train) for i in labels[-1]})
        n += len(words)
    preprocessor = features.Preprocessor(tokenizer, 16)
    examples, members = document_examples(preprocessor, train, labels, epochs=3, seed=1)
    assert len(members) == 3 and len({len(m) for m in members}) == 1
    for epoch in members:
        learned = [label for i in epoch for label in examples[i].labels[examples[i].labels >= 0].tolist()]
        assert sorted(learned) == list(range(n))  # every word labelled, exactly once
        for i in epoch:
            ids = examples[i].labels[examples[i].labels >= 0].tolist()
            assert len({owner[label] for label in ids}) == 1 and len(examples[i]) <= 16
            if owner[ids[0]] == 0:  # outside any document: a sentence alone
                assert len({sentence_of[label] for label in ids}) == 1
    plan = batches.BatchPlan([len(e) for e in examples], 2, None, 3, seed=1, epoch_members=members)
    for epoch, expected in enumerate(members):
        used = np.concatenate([indices for indices, _ in plan.epoch(epoch)])
        assert sorted(used.tolist()) == sorted(expected.tolist())
    assert plan.total_steps == 3 * plan.steps_per_epoch


def test_documents_turn_document_windows_on_by_default_and_a_batch_holds_as_much_text():
    from bner.training.recipe import document_batch_size

    sentence = corpus.Sentence(["a"], ["O"], 0)
    assert not corpus.has_documents([sentence] * 5)  # tweets: no -DOCSTART-
    assert not corpus.has_documents([corpus.Sentence(["a"], ["O"], d) for d in (1, 2, 3)])  # a sentence a document
    assert not corpus.has_documents([corpus.Sentence(["a"], ["O"], 1)] * 5)  # one -DOCSTART- heading the file
    assert corpus.has_documents([corpus.Sentence(["a"], ["O"], d) for d in (1, 1, 2)])
    assert document_batch_size(32) == 8 and document_batch_size(2) == 1  # a quarter, at least one
    assert document_batch_size(32, multiple=8) == 8 and document_batch_size(64, multiple=8) == 16


@pytest.mark.parametrize("header", [True, False])
def test_a_corpus_without_documents_trains_on_sentences_as_before(tiny_model, tmp_path, header):
    from bner.config import TrainConfig
    from bner.training.recipe import prepare
    from tests.conftest import write_synthetic_data

    data = write_synthetic_data(tmp_path / "data", train=40, dev=10, test=10)
    path = tmp_path / "data" / "train.conll"  # one -DOCSTART- heading the file, or none
    header or path.write_text("\n".join(line for line in path.read_text().split("\n") if not line.startswith("-DOCSTART-")))
    config = TrainConfig.from_settings(pretrained_model=tiny_model, data_dir=data, output_dir=str(tmp_path / "out"),
                                       max_seq_length=32, precision="float32")
    setup = prepare(config)
    assert setup.config.model.document_windows is False and setup.metadata.document_windows is False
    assert setup.plan.epoch_members is None and setup.plan.batch_size == 32 and len(setup.examples) == 40


def test_a_document_model_tags_documents_and_raw_text_whole_as_it_was_trained(tiny_model, tmp_path):
    import bner
    from bner.inference import prediction
    from tests.cli import read_json, run_task, tiny_training_flags
    from tests.conftest import synthetic_sentences

    data = tmp_path / "data"
    data.mkdir()
    for name, count, seed in (("train", 200, 1), ("dev", 40, 2), ("test", 40, 3)):
        write_documents(data / f"{name}.conll", synthetic_sentences(count, seed), per_document=5)
    out = tmp_path / "out"
    run_task(*tiny_training_flags(tiny_model, str(data), str(out), "--max_seq_length=32", "--num_train_epochs=15",
                                   "--train_batch_size=16"), "--do_train")
    record = read_json(out / "run.json")  # documents: document windows by default, recorded as such
    assert record["config"]["model"]["document_windows"] is True
    assert record["training"]["train_batch_examples"] < 16
    metadata = read_json(out / "export" / "bner" / "1" / "metadata.json")
    assert metadata["document_windows"] is True and metadata["split_sentences"] is False and metadata["format_version"] == 2
    assert read_json(out / "eval_results.json")["f1"] > 0.5
    tagger = bner.load(str(out / "export" / "bner" / "1"))
    calls = []
    run = tagger.backend.piece_probabilities
    tagger.backend.piece_probabilities = lambda inputs: calls.append(inputs["input_ids"].shape) or run(inputs)

    # Raw text is tagged as its document is in evaluation: the same words, the same tags.
    sentences = [("Anna", "Kowalski", "visited", "Lisbon", "."), ("Boris", "Silva", "works", "for", "Acme", "in", "Perth", "."),
                 ("Hooli", "met", "Chen", "in", "Oslo", "today", "."), ("Emil", "Rossi", "said", "Vandelay", "did", "it", ".")] * 4
    source = " ".join(" ".join(words) for words in sentences)
    words = text.segment(source)
    assert [w.text for w in words] == [w for s in sentences for w in s]
    served = tagger(source)
    tags = tagger.tag([list(s) for s in sentences], documents=[1] * len(sentences))
    flat = [t for sentence_tags in tags for t in corpus.convert_tags(sentence_tags, tagger.metadata.label_scheme)]
    expected = [(source[words[s.start].start:words[s.end - 1].end], s.type) for s in corpus.entity_spans(flat)]
    assert [(e.text, e.type) for e in served] == expected and expected
    # 120 words in windows of at most 32 pieces: several overlapping windows, every word tagged once.
    assert max(shape[1] for shape in calls) <= 32 and sum(shape[0] for shape in calls) >= 4

    # A text without punctuation or line breaks, far longer than a window: tagged in windows, word by word.
    calls.clear()
    plain = " ".join(w for w in ("Anna Kowalski visited Lisbon with Boris Silva " * 60).split())
    tagged = tagger.tag_texts([plain])[0]
    assert len(tagged.tagged.tags) == len(plain.split()) == 420
    assert max(shape[1] for shape in calls) <= 32 and sum(shape[0] for shape in calls) >= 420 // 30

    from fastapi.testclient import TestClient

    from bner.serving.app import create_app
    from bner.serving.settings import ServingSettings

    with TestClient(create_app(ServingSettings(model_dir=str(out / "export" / "bner" / "1")))) as client:
        assert client.get("/api/ner/model").json()["text_units"] == "documents"
        served_api = client.post("/api/ner/recognize", json={"text": source}).json()["entities"]
    assert [(e["text"], e["type"]) for e in served_api] == expected

    # Files: bner predict tags each -DOCSTART- document whole, as evaluation does.
    predicted = tmp_path / "predicted.conll"
    prediction.predict_file(tagger, str(data / "test.conll"), str(predicted))
    by_file = [list(s.tags) for s in corpus.parse_conll(predicted.read_text(), require_tags=True)]
    test = corpus.read_conll(str(data / "test.conll"))
    assert by_file == tagger.evaluation(test)[1]
    if pytest.importorskip("apache_beam"):  # and so does the Beam pipeline
        import glob
        import json

        from bner import batch_predict

        batch_predict.run(str(out / "export" / "bner" / "1"), [str(data / "test.conll")], str(tmp_path / "beam" / "part"))
        rows = [json.loads(line) for path in glob.glob(str(tmp_path / "beam" / "part-*-of-*.jsonl")) for line in open(path)]
        by_line = {int(r["source"].rsplit(":", 1)[1]): r["tags"] for r in rows}
        assert [by_line[line] for line in sorted(by_line)] == by_file
