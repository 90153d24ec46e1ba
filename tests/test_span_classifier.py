"""A dictionary whose matches a span classifier checks, end to end on a tiny model: training,
its record, the model folder and export, both runtimes, serving and prediction against evaluation."""

import json
import subprocess
import sys

import pytest
from fastapi.testclient import TestClient

import bner
from bner.data import corpus
from bner.dictionary.matcher import Matcher
from bner.inference.dictionary_tagger import DictionaryTagger
from bner.serving.app import create_app
from bner.serving.settings import ServingSettings
from tests.cli import read_json, run_task, tiny_training_flags
from tests.conftest import CITIES, COMPANIES, write_synthetic_data

DECOYS = ("today", "works")  # filler words the dictionary lists as names: the classifier must learn they are none


def write_dictionary(path) -> str:
    lines = [f"{c.capitalize()}\tLOC\tGEO:{i}" for i, c in enumerate(CITIES)] + [f"{c}\tORG\tCO:{i}" for i, c in enumerate(COMPANIES)]
    lines += ["today\tLOC\tGEO:99", "works\tORG\t"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def run(tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("spans")
    data = write_synthetic_data(root / "data")
    names = write_dictionary(root / "names.tsv")
    out = str(root / "out")
    run_task(*tiny_training_flags(tiny_model, data, out), "--do_train", f"--dictionary={names}", "--masking=markers")
    return root, data, names, out


@pytest.fixture(scope="module")
def token(run, tiny_model):
    """A token tagger trained on the same data, to combine with the dictionary model."""
    root, data, _, _ = run
    out = str(root / "token")
    run_task(*tiny_training_flags(tiny_model, data, out), "--do_train")
    return out


def test_training_records_the_dictionary_and_the_model_carries_it(run):
    root, _, names, out = run
    record = read_json(f"{out}/run.json")
    assert record["config"]["data"]["dictionary"] == names and record["config"]["model"]["masking"] == "markers"
    assert record["training"]["data_files"]["dictionary"]["path"] == names
    for folder in (f"{out}/model", f"{out}/export/bner/1"):
        metadata = read_json(f"{folder}/metadata.json")
        assert metadata["format_version"] == 3 and metadata["labels"] == ["none", "LOC", "ORG"]
        assert metadata["spans"] == {"masking": "markers", "mask_token": "[MASK]", "dictionary": "dictionary", "names": 16}
        assert Matcher.load(f"{folder}/dictionary").names == 16
    card = open(f"{out}/export/bner/1/README.md", encoding="utf-8").read()
    assert "span classifier" in card and "compiled dictionary of 16 names" in card


def test_the_classifier_rejects_decoys_and_beats_the_dictionary_alone(run):
    _, data, _, out = run
    tagger = bner.load(f"{out}/export/bner/1")
    assert type(tagger).__name__ == "SpanTagger" and tagger.backend.name == "onnx"
    test = corpus.read_conll(f"{data}/test.conll")

    def decoys(tagger_):
        scores_, predicted_ = tagger_.evaluation(test)
        found = [" ".join(s.words[x.start : x.end]) for s, tags in zip(test, predicted_) for x in corpus.entity_spans(tags)]
        return scores_.overall, sum(name in DECOYS for name in found)

    (scores, kept), (alone, matched) = decoys(tagger), decoys(DictionaryTagger(Matcher.load(f"{out}/export/bner/1/dictionary")))
    assert matched > 20 and kept < matched / 2  # most decoys are rejected by a 5-epoch tiny model
    assert scores.precision > alone.precision + 0.05  # which is what they cost the dictionary alone
    entities = tagger("Anna visited Lima today with Acme .")
    lima = [e for e in entities if e.text == "Lima"]
    assert lima and lima[0].identifier == "GEO:3" and lima[0].type == "LOC"


def test_both_runtimes_serving_and_predict_equal_evaluation(run):
    _, data, _, out = run
    export = f"{out}/export/bner/1"
    onnx, tensorflow = bner.load(export, runtime="onnx"), bner.load(export, runtime="tensorflow")
    test = corpus.read_conll(f"{data}/test.conll")
    _, predicted = onnx.evaluation(test)
    assert tensorflow.evaluation(test)[1] == predicted
    texts = [" ".join(s.words) for s in test]
    expected = []  # evaluation's entities as character spans of the joined words
    for s, tags in zip(test, predicted):
        starts = [sum(len(w) + 1 for w in s.words[:i]) for i in range(len(s.words))]
        expected.append([(starts[x.start], starts[x.end - 1] + len(s.words[x.end - 1]), x.type) for x in corpus.entity_spans(tags)])
    with TestClient(create_app(ServingSettings(), tagger=onnx)) as client:
        answer = client.post("/api/ner/recognize", json={"texts": texts}).json()
        assert client.get("/api/ner/model").json()["decoding"] == "dictionary + span classifier"
    served = [[(e["start"], e["end"], e["type"]) for e in r["entities"]] for r in answer["results"]]
    assert served == expected
    assert any("identifier" in e for r in answer["results"] for e in r["entities"])
    done = subprocess.run([sys.executable, "-m", "bner.cli.main", "predict", export, f"{data}/test.conll"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    written = [[line.split()[-1] for line in block.splitlines()] for block in done.stdout.split("\n\n")
               if block.strip() and not block.startswith("-DOCSTART-")]
    assert written == predicted


def test_a_changed_dictionary_is_another_run_and_replace_masking_trains(run, tiny_model, tmp_path):
    root, data, names, out = run
    original = open(names, encoding="utf-8").read()
    try:
        with open(names, "a", encoding="utf-8") as f:
            f.write("oslo fjord\tLOC\t\n")
        done = run_task(*tiny_training_flags(tiny_model, data, out), "--do_train", f"--dictionary={names}", "--masking=markers",
                        check=False)
        assert done.returncode != 0 and "the dictionary (contents changed)" in done.stderr + done.stdout
    finally:
        with open(names, "w", encoding="utf-8") as f:
            f.write(original)
    replaced = str(tmp_path / "replace")
    run_task(*tiny_training_flags(tiny_model, data, replaced, "--num_train_epochs=1"), "--do_train", f"--dictionary={names}",
             "--masking=replace")
    metadata = read_json(f"{replaced}/model/metadata.json")
    assert metadata["spans"]["masking"] == "replace" and metadata["spans"]["mask_token"] == "[MASK]"
    assert json.loads(json.dumps(bner.load(replaced).entity_types)) == ["LOC", "ORG"]
    bad = run_task(*tiny_training_flags(tiny_model, data, str(tmp_path / "bad")), "--do_train", f"--dictionary={names}",
                   "--document_windows=true", check=False)
    assert bad.returncode != 0 and "--dictionary trains a span classifier" in bad.stderr + bad.stdout


def test_span_examples_train_a_classifier_without_train_conll(run, tiny_model, tmp_path):
    _, data, names, _ = run
    evaluation = tmp_path / "data"
    evaluation.mkdir()
    for name in ("dev", "test"):
        (evaluation / f"{name}.conll").write_text(open(f"{data}/{name}.conll", encoding="utf-8").read(), encoding="utf-8")
    examples = tmp_path / "examples.jsonl"
    rows = [{"text": "anna visited Lima today .", "start": 13, "end": 17, "label": "LOC"},
            {"text": "anna visited Lima today .", "start": 18, "end": 23, "label": "none"}]
    examples.write_text("\n".join(json.dumps(r) for r in rows * 10) + "\n", encoding="utf-8")
    out = str(tmp_path / "out")
    flags = [*tiny_training_flags(tiny_model, str(evaluation), out, "--num_train_epochs=1"), "--do_train", f"--dictionary={names}"]
    done = run_task(*flags, f"--span_examples={examples}")
    assert "20 candidates, 10 of them entities" in done.stdout
    record = read_json(f"{out}/run.json")
    assert set(record["training"]["data_files"]) == {"dev", "test", "dictionary", "span_examples"}
    examples.write_text('{"text": "cold day", "start": 1, "end": 4, "label": "LOC"}\n', encoding="utf-8")
    bad = run_task(*flags, f"--span_examples={examples}", "--overwrite_output_dir", check=False)
    assert bad.returncode != 0 and "examples.jsonl:1: characters 1–4 ('old') do not start and end at word boundaries" in bad.stderr
    missing = run_task(*flags, check=False)
    assert missing.returncode != 0 and "train.conll: file not found" in missing.stderr


def test_a_tagger_and_the_dictionary_model_combine_by_union_or_confirmation(run, token):
    _, data, _, out = run
    checked = f"{out}/export/bner/1"
    test = corpus.read_conll(f"{data}/test.conll")

    def spans_of(tagger_):
        return {(i, x.start, x.end, x.type) for i, tags in enumerate(tagger_.evaluation(test)[1]) for x in corpus.entity_spans(tags)}

    tagger, dictionary_model = bner.load(token), bner.load(checked)
    union, confirm = bner.load(checked, combine_with=token), bner.load(token, combine_with=checked, combine="confirm")
    assert union.entity_types == ["LOC", "ORG", "PER"] and confirm.entity_types == tagger.entity_types
    own, checks = spans_of(tagger), spans_of(dictionary_model)
    assert spans_of(confirm) <= own
    joined = spans_of(union)
    assert joined <= own | checks and len(joined) >= max(len(own), len(checks)) * 0.9  # only overlaps are dropped
    lima = [e for e in union("Anna visited Lima .") if e.text == "Lima"]
    assert lima and lima[0].identifier == "GEO:3"
    done = subprocess.run([sys.executable, "-m", "bner.cli.main", "evaluate", checked, f"{data}/test.conll", "--combine_with", token,
                           "--combine", "confirm", "--json"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["predicted"] == len(spans_of(confirm))
    with pytest.raises(ValueError, match="a token tagger and a dictionary model"):
        bner.load(token, combine_with=token)


def test_the_server_and_beam_serve_a_combination_as_bner_load_gives_it(run, token, tmp_path):
    from bner.serving.app import make_tagger

    _, data, _, out = run
    export = f"{out}/export/bner/1"
    texts = [" ".join(s.words) for s in corpus.read_conll(f"{data}/test.conll")]
    for mode in ("union", "confirm"):
        expected = [[e.as_dict() for e in entities] for entities in bner.load(token, combine_with=export, combine=mode).predict(texts)]
        with TestClient(create_app(ServingSettings(model_dir=token, combine_with=export, combine=mode))) as client:
            answer = client.post("/api/ner/recognize", json={"texts": texts})
            assert answer.status_code == 200
            assert [r["entities"] for r in answer.json()["results"]] == expected
            description = client.get("/api/ner/model").json()
            assert description["combine"] == mode and description["test_f1"] is None  # the tagger's score is not the combination's
    assert any("identifier" in e for entities in expected for e in entities)
    # Confirmation checks whatever spans the tagger finds: every word counts as a possible one.
    many = "Lima . " * 300  # 900 pieces of its own; 300 sentences whose every word could be a span
    with TestClient(create_app(ServingSettings(model_dir=token, combine_with=export, combine="confirm", max_pieces=2000))) as client:
        assert client.post("/api/ner/recognize", json={"text": "Anna visited Lima ."}).status_code == 200
        refused = client.post("/api/ner/recognize", json={"text": many})
        assert refused.status_code == 413 and "word pieces" in refused.json()["detail"]
    prose = " ".join(f"Anna visited Lima and Oslo on day {i} with Acme , and Boris flew home to Quito later that week ." for i in range(40))
    with TestClient(create_app(ServingSettings(model_dir=token, combine_with=export, combine="confirm"))) as client:
        assert client.post("/api/ner/recognize", json={"text": prose}).status_code == 200  # 800 words in 40 sentences
    with TestClient(create_app(ServingSettings(model_dir=token, combine_with=export, max_pieces=2000))) as client:
        assert client.post("/api/ner/recognize", json={"text": many}).status_code == 413  # union: 300 matches
    with pytest.raises(ValueError, match="BNER_COMBINE_WITH runs both models in this process"):
        make_tagger(ServingSettings(host_name="localhost", model_dir=export, combine_with=token))
    pytest.importorskip("apache_beam")
    from bner import batch_predict
    from bner.inference import prediction

    source = tmp_path / "texts.txt"
    source.write_text("\n".join(texts[:20]) + "\n", encoding="utf-8")
    output = str(tmp_path / "labelled" / "part")
    batch_predict.run(token, [str(source)], output, batch_size=8, combine_with=export, combine="confirm", threshold=0.3)
    labelled = [json.loads(line) for path in sorted((tmp_path / "labelled").glob("part-*-of-*.jsonl")) for line in open(path)]
    records = list(prediction.read_records(open(source, encoding="utf-8"), str(source), "text"))
    combined = bner.load(token, combine_with=export, combine="confirm", threshold=0.3)
    assert {r["source"]: r["entities"] for r in labelled} == {
        r.where: [e.as_dict() for e in entities] for r, entities in zip(records, prediction.tag_records(combined, records))}


def test_a_decision_is_none_or_a_type_the_dictionary_lists_and_candidates_count_against_the_budget(run, tmp_path):
    from bner.dictionary.names import Name
    from bner.serving.app import make_tagger

    _, _, _, out = run
    tagger = bner.load(f"{out}/export/bner/1")
    tagger.matcher = Matcher.compile([Name("Lima", "ORG", "X:1"), Name("Oslo", "ORG")])  # listed as ORG only
    text = "Anna visited Lima and Oslo with Acme ."
    assert {e.type for e in tagger(text)} <= {"ORG"}
    many = "Lima . " * 200  # 200 candidates of up to 32 pieces each: 6,400 pieces of model work
    with TestClient(create_app(ServingSettings(max_pieces=2000), tagger=tagger)) as client:
        assert client.post("/api/ner/recognize", json={"text": "Lima ."}).status_code == 200
        refused = client.post("/api/ner/recognize", json={"text": many})
        assert refused.status_code == 413 and "word pieces" in refused.json()["detail"]
    tagger.matcher.save(str(tmp_path / "alone"))
    with pytest.raises(ValueError, match="a compiled dictionary alone is not served"):
        make_tagger(ServingSettings(model_dir=str(tmp_path / "alone")))


def test_the_threshold_trades_precision_for_recall_and_reaches_every_shell(run, token):
    import numpy as np

    from bner.inference.tagger import run_steps

    _, data, _, out = run
    export = f"{out}/export/bner/1"
    tagger = bner.load(export)
    assert tagger.threshold == 0.5 and tagger.scoring["threshold"] == 0.5
    # The decision, by hand: labels are none, LOC, ORG.
    p = np.array([0.6, 0.3, 0.1], np.float32)
    assert tagger.decide(p, [1, 2]) == 0  # LOC, the more probable listed type, holds 0.3 / 0.9 of its and none's
    assert tagger.decide(p, [1, 2], 0.3) == 1  # above 0.3
    assert tagger.decide(p, [2], 0.1) == 2 and tagger.decide(p, [2], 0.2) == 0  # ORG alone: 0.1 / 0.7 of it
    assert tagger.decide(p, []) == 0
    # At 0.5, the arg-max over none and the listed types, several types included; NaN is no entity.
    tied = np.array([0.4, 0.3, 0.3], np.float32)
    assert tagger.decide(tied, [1, 2]) == 0 and tagger.decide(tied, [1, 2], 0.4) == 1
    assert tagger.decide(np.array([0.3, 0.3, 0.4], np.float32), [1, 2]) == 2
    assert tagger.decide(np.array([0.5, 0.5, 0.0], np.float32), [1]) == 0  # a tie goes to none
    assert tagger.decide(np.full(3, np.nan, np.float32), [1, 2], 0.0) == 0
    test = corpus.read_conll(f"{data}/test.conll")
    words = [s.words for s in test]
    checked = run_steps(tagger.checked_matches_in_steps(words))
    assert [t.tags for t in tagger.decided(words, checked)] == [t.tags for t in tagger.tag_sentences(words)]
    found = {t: sum(len(x.spans()) for x in tagger.decided(words, checked, t)) for t in (0.0, 0.5, 0.9)}
    assert found[0.0] >= found[0.5] >= found[0.9] and found[0.0] > found[0.9]
    alone = DictionaryTagger(tagger.matcher).tag_sentences(words)
    assert found[0.0] == sum(len(x.spans()) for x in alone)  # accepting every match is the dictionary alone
    with pytest.raises(ValueError, match="threshold 1.0: expected a probability"):
        tagger.decided(words, checked, 1.0)
    assert bner.load(export, threshold=0.2).threshold == 0.2
    with pytest.raises(ValueError, match="threshold applies to a dictionary model"):
        bner.load(token, threshold=0.2)
    assert bner.load(token, combine_with=export, combine="confirm", threshold=0.2).checker.threshold == 0.2
    done = subprocess.run([sys.executable, "-m", "bner.cli.main", "evaluate", export, f"{data}/test.conll", "--threshold", "0", "--json"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["predicted"] == found[0.0]
    with pytest.raises(ValueError, match="BNER_THRESHOLD=1.5"):
        ServingSettings(threshold=1.5).check()
    with TestClient(create_app(ServingSettings(), tagger=bner.load(export, threshold=0.3))) as client:
        assert client.get("/api/ner/model").json()["threshold"] == 0.3


@pytest.mark.parametrize("family", ["roberta", "deberta-v3"])
def test_other_encoder_families_train_a_span_classifier_with_their_own_mask_piece(family, tmp_path):
    from bner.config import TrainConfig
    from bner.model import pretrained
    from tests.test_encoders import FIXTURES

    data = write_synthetic_data(tmp_path / "data", train=80, dev=20, test=20)
    config = TrainConfig.from_settings(
        pretrained_model=str(FIXTURES / family), data_dir=data, output_dir=str(tmp_path / "out"), num_train_epochs=1,
        learning_rate=1e-3, train_batch_size=16, max_seq_length=24, precision="float32", progress=False,
        dictionary=write_dictionary(tmp_path / "names.tsv"), masking="replace",
    )
    result = bner.train(config, say=lambda line: None)
    mask = pretrained.locate_pretrained(str(FIXTURES / family)).mask_token
    assert read_json(f"{result.export_path}/metadata.json")["spans"]["mask_token"] == mask
    from_export, from_model = bner.load(result.export_path), bner.load(result.model_dir)
    texts = ["Anna visited Lima today with Acme .", "naïve café in Oslo , 東京"]
    assert from_export.predict(texts) == from_model.predict(texts)


def test_beam_labels_files_with_the_dictionary_model_as_bner_predict_does(run, tmp_path):
    pytest.importorskip("apache_beam")
    from bner import batch_predict
    from bner.inference import prediction

    _, _, _, out = run
    export = f"{out}/export/bner/1"
    source = tmp_path / "texts.txt"
    source.write_text("Anna visited Lima today with Acme .\nBoris works for Globex in Oslo .\n\nHana flew to Quito .\n", encoding="utf-8")
    output = str(tmp_path / "labelled" / "part")
    batch_predict.run(export, [str(source)], output, batch_size=8)
    labelled = [json.loads(line) for path in sorted((tmp_path / "labelled").glob("part-*-of-*.jsonl")) for line in open(path)]
    records = list(prediction.read_records(open(source, encoding="utf-8"), str(source), "text"))
    expected = {r.where: [e.as_dict() for e in entities] for r, entities in zip(records, prediction.tag_records(bner.load(export), records))}
    assert {r["source"]: r["entities"] for r in labelled} == expected
    assert any("identifier" in e for entities in expected.values() for e in entities)
