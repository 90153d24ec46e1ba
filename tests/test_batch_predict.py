"""Labelling files on Apache Beam gives exactly bner predict's entities; bad lines go to a dead letter."""

import glob
import json
import os

import pytest

from tests.cli import run_task, tiny_training_flags
from tests.conftest import write_synthetic_data

beam = pytest.importorskip("apache_beam")


@pytest.fixture(scope="module")
def export(tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("beam")
    data = write_synthetic_data(root / "data", train=120, dev=20, test=20)
    run_task(*tiny_training_flags(tiny_model, data, str(root / "run")), "--do_train")
    return str(root / "run" / "export" / "bner" / "1"), data


def read_shards(prefix: str) -> list[dict]:
    return [json.loads(line) for path in sorted(glob.glob(prefix + "-*-of-*.jsonl")) for line in open(path, encoding="utf-8")]


def readable_records(path: str, fmt: str) -> list:
    """What bner predict reads from a file, skipping the lines it would refuse."""
    from bner.data import corpus
    from bner.inference import prediction

    records = []
    for number, line in enumerate(open(path, encoding="utf-8"), start=1):
        try:
            record = (prediction.jsonl_record if fmt == "jsonl" else prediction.text_record)(line, f"{path}:{number}")
        except corpus.CorpusError:
            continue
        if record is not None:
            records.append(record)
    return records


def test_beam_labels_several_files_exactly_as_bner_predict(export, tmp_path):
    from bner import batch_predict
    from bner.inference import prediction
    from bner.inference.loader import load

    model, data = export
    inputs = tmp_path / "in"
    inputs.mkdir()
    long_text = " ".join(["Anna", "Kowalski", "visited", "Lisbon", "with", "Acme", "."] * 1430)  # 10,010 words
    (inputs / "texts.txt").write_text(f"Boris met Chen in Oslo today .\n\n{long_text}\nHana Silva works for Acme in Quito .\n")
    (inputs / "empty.txt").write_text("")
    (inputs / "records.jsonl").write_text('{"id": 1, "text": "Anna Kowalski visited Lisbon ."}\n{"id": 2, "txt": "oops"}\n'
                                          '{"id": 3, "text": "Emil Rossi joined Vandelay ."}\n')
    with open(os.path.join(data, "test.conll")) as f, open(inputs / "sentences.conll", "w") as out:
        out.write(f.read())
    output = str(tmp_path / "out" / "part")
    batch_predict.run(model, [str(inputs / "*.txt"), str(inputs / "*.jsonl"), str(inputs / "*.conll")], output, batch_size=8)

    labelled = read_shards(output)
    tagger = load(model, batch_size=8)
    expected = {}
    for name, fmt in (("texts.txt", "text"), ("records.jsonl", "jsonl")):
        records = readable_records(str(inputs / name), fmt)
        for record, entities in zip(records, prediction.tag_records(tagger, records), strict=True):
            key = record.fields["id"] if record.fields else record.where
            expected[key] = [e.as_dict() for e in entities]
    got = {r.get("id", r.get("source")): r["entities"] for r in labelled if "entities" in r}
    assert got == expected
    assert max(e["end"] for e in got[f"{inputs / 'texts.txt'}:3"]) > len(long_text) - 100  # tagged to its end
    # CoNLL sentences come back with bner predict's tags.
    sentences = {r["source"]: r["tags"] for r in labelled if "tags" in r}
    conll_path = str(inputs / "sentences.conll")
    records = list(prediction.read_records(open(conll_path), conll_path, "conll"))
    documents = [r.document for r in records]  # as bner predict tags them: by document
    assert sentences == {r.where: t for r, t in zip(records, tagger.tag([list(r.words) for r in records], documents=documents))}
    # The malformed line is set aside with its file and line; the job went on.
    (dead,) = read_shards(output + "-errors")
    assert dead["file"] == str(inputs / "records.jsonl") and dead["line"] == 2 and "text" in dead["error"]


def test_two_local_workers_give_the_same_output(export, tmp_path):
    from bner import batch_predict

    model, data = export
    source = tmp_path / "t.txt"
    source.write_text("".join(f"Anna Kowalski visited Lisbon {i} .\nBoris works for Acme .\n" for i in range(50)))
    one, two = str(tmp_path / "one" / "p"), str(tmp_path / "two" / "p")
    batch_predict.run(model, [str(source)], one)
    batch_predict.run(model, [str(source)], two, num_workers=2)
    key = lambda r: r["source"]  # noqa: E731
    assert sorted(read_shards(one), key=key) == sorted(read_shards(two), key=key)


def test_dataflow_needs_its_settings_and_the_command_reports_mistakes(capsys):
    from bner import batch_predict

    assert batch_predict.main(["m", "x.txt", "--output", "o", "--runner", "DataflowRunner", "--project", "p"]) == 2
    assert "--region, --temp_location" in capsys.readouterr().err


def test_the_pipeline_loads_the_model_with_the_decoding_options_given(export):
    from bner import batch_predict

    tagger = batch_predict.tagger_handler(export[0], 8, 16, decoding="argmax", consistent=False).load_model()
    assert (tagger.decoding, tagger.consistent) == ("argmax", False)
    assert batch_predict.tagger_handler(export[0], 8, 16).load_model().consistent is True


def test_options_bner_load_does_not_take_are_refused_before_the_pipeline_starts():
    from bner import batch_predict
    from bner.config import ConfigError

    with pytest.raises(ConfigError, match="not a bner.load option: threshhold"):
        batch_predict.run("model", ["in.txt"], "out", threshhold=0.3)
    with pytest.raises(TypeError):
        batch_predict.run("model", ["in.txt"], "out", "auto", None, 1, 32, (), "argmax")  # the cloud options are keywords


def test_the_command_passes_the_decoding_options_on(monkeypatch):
    from bner import batch_predict

    calls = []
    monkeypatch.setattr(batch_predict, "run", lambda *args, **options: calls.append(options))
    assert batch_predict.main(["model", "in.txt", "--output", "out", "--decoding", "argmax", "--consistent", "false"]) == 0
    assert (calls[0]["decoding"], calls[0]["consistent"]) == ("argmax", False)
    assert batch_predict.main(["model", "in.txt", "--output", "out", "--threshold", "0.3", "--combine_with", "tagger",
                               "--combine", "confirm"]) == 0
    assert (calls[1]["threshold"], calls[1]["combine_with"], calls[1]["combine"]) == (0.3, "tagger", "confirm")


def test_a_record_utf8_cannot_hold_is_written_as_valid_utf8():
    """A lone surrogate (valid JSON, not UTF-8) crashed the pipeline's Format step; it is written back escaped."""
    from bner import batch_predict
    from bner.inference import prediction

    record = prediction.jsonl_record('{"id": "\\udc80", "text": "Paris \\ud800"}', "in.jsonl:1")
    line = batch_predict.output_json(record, [])
    assert json.loads(line.encode("utf-8").decode("utf-8")) == {"id": "\udc80", "text": "Paris \ud800", "entities": []}
