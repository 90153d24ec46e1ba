"""bner as a Python library: ``bner.train(config)`` and ``bner.load(path)``, and what they promise."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

import bner
from bner.config import TrainConfig
from bner.model.metadata import FORMAT_VERSION
from tests.cli import read_json, run_task
from tests.conftest import write_synthetic_data

SETTINGS = dict(num_train_epochs=5, learning_rate=1e-3, train_batch_size=16, max_seq_length=32, precision="float32", progress=False)


@pytest.fixture(scope="module")
def run(tiny_model, tmp_path_factory):
    """One run trained in this process through the library."""
    root = tmp_path_factory.mktemp("library")
    data = write_synthetic_data(root / "data", scheme="IOB1", long_every=10)
    config = TrainConfig.from_settings(pretrained_model=tiny_model, data_dir=data, output_dir=str(root / "out"), **SETTINGS)
    lines = []
    result = bner.train(config, say=lines.append)
    return config, result, root, lines


def test_train_returns_what_the_run_produced(run):
    config, result, root, lines = run
    assert result.steps > 0 and result.model_dir == str(root / "out" / "model")
    assert result.export_path == str(root / "out" / "export" / "bner" / "1")
    assert result.test["f1"] == pytest.approx(read_json(root / "out" / "eval_results.json")["f1"])
    assert result.dev["f1"] >= 0.9 and result.best_step is not None and not result.already_finished
    assert any(line.startswith("\ntest (60 sentences)") for line in lines)


def test_run_json_holds_the_config_that_replays_it(run, tiny_model, tmp_path):
    config, result, root, _ = run
    record = read_json(root / "out" / "run.json")
    resolved = TrainConfig.from_settings(config, document_windows=False)  # what the default came to: one -DOCSTART- heading
    assert config.model.document_windows is None
    assert record["status"] == "finished" and record["config"] == resolved.to_json()
    assert TrainConfig.read(str(root / "out" / "run.json")) == resolved
    # Replayed in another folder by the command line (a flag beside --config overrides it): the same model.
    replay = run_task(f"--config={root / 'out' / 'run.json'}", f"--output_dir={tmp_path / 'replay'}", "--do_train")
    assert "error" not in replay.stderr
    assert read_json(tmp_path / "replay" / "eval_results.json") == read_json(root / "out" / "eval_results.json")
    replayed = read_json(tmp_path / "replay" / "run.json")["config"]
    assert replayed["output"]["output_dir"] == str(tmp_path / "replay")
    assert {k: v for k, v in replayed.items() if k != "output"} == {k: v for k, v in resolved.to_json().items() if k != "output"}


def test_a_changed_setting_does_not_resume_silently(run):
    config, _, root, _ = run
    out = str(root / "out")
    result = run_task(f"--config={out}/run.json", "--learning_rate=0.002", "--num_train_epochs=6", "--do_train", check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "learning_rate (0.001 → 0.002)" in lines[0] and "num_train_epochs (5.0 → 6.0)" in lines[0]
    assert "--overwrite_output_dir" in lines[0]
    assert read_json(root / "out" / "run.json")["config"] == TrainConfig.from_settings(config, document_windows=False).to_json()  # untouched


def test_rerunning_a_finished_run_trains_and_exports_nothing_new(run):
    config, first, root, _ = run
    lines = []
    again = bner.train(config, say=lines.append)
    assert again.already_finished and again.export_path == first.export_path and again.test == first.test
    assert sorted(os.listdir(root / "out" / "export" / "bner")) == ["1"]
    assert any("nothing to train" in line for line in lines)


def test_load_any_model_path_and_tag(run):
    _, result, root, _ = run
    out = root / "out"
    for path in (result.export_path, out / "export" / "bner", out, out / "model", f"{result.export_path}/metadata.json"):
        tagger = bner.load(str(path))
        entities = tagger("Anna Kowalski visited Lisbon .")
        assert [(e.text, e.type, e.start, e.end) for e in entities] == [("Anna Kowalski", "PER", 0, 13), ("Lisbon", "LOC", 22, 28)]
        assert 0 < entities[0].score <= 1
    assert bner.load(str(out)).backend.name == "onnx"  # a run folder's export (its model.onnx), not its Keras weights
    assert bner.load(str(out), runtime="tensorflow").backend.name == "in-process"  # the export's SavedModel
    assert bner.load(str(out / "model")).backend.name == "keras"
    with pytest.raises(ValueError, match="no model.onnx"):
        bner.load(str(out / "model"), runtime="onnx")


def test_tagger_predicts_groups_tags_and_evaluates(run, tmp_path):
    _, result, root, _ = run
    tagger = bner.load(result.export_path)
    texts = ["Anna Kowalski visited Lisbon .", "", "Acme  works for   Boris in Oslo today"]
    entities = tagger.predict(texts, batch_size=2)
    assert [len(e) for e in entities] == [2, 0, 3]
    assert tagger.predict(texts, group_by_type=True) == [
        {"PER": ["Anna Kowalski"], "LOC": ["Lisbon"]}, {}, {"ORG": ["Acme"], "PER": ["Boris"], "LOC": ["Oslo"]}
    ]
    assert tagger.tag(["Anna", "met", "Chen", "in", "Quito"]) == ["I-PER", "O", "I-PER", "O", "I-LOC"]  # IOB1, as the data
    assert tagger.tag([["Hana"], ["Oslo", "today"]]) == [["I-PER"], ["I-LOC", "O"]]
    # A str where a list belongs, or no text at all, is an error that says so (not a tag per character).
    for call, argument, message in [(tagger.predict, "Anna visited Oslo", "takes a list of texts"),
                                    (tagger.tag, "Anna visited Oslo", "takes a list of words"), (tagger.tag, None, "got NoneType"),
                                    (tagger.tag, [["Oslo", None]], "sentence 0: expected a list of words"),
                                    (tagger, None, "takes one text"), (tagger, ["Oslo"], "takes one text"),
                                    (tagger.predict, ["Oslo", b"Lima"], "text 1: expected a str, got bytes")]:
        with pytest.raises(TypeError, match=message):
            call(argument)
    assert [e.text for e in tagger("Anna\x00 Kowalski \u200b visited Lisbon\u200b.")] == ["Anna\x00 Kowalski", "Lisbon"]
    test_file = os.path.join(root, "data", "test.conll")
    scores = tagger.evaluate(test_file)
    scorer = subprocess.run([sys.executable, "-m", "bner.evaluate", str(root / "out" / "test_results.tsv"), "--json"],
                            capture_output=True, text=True, check=True)
    assert scores.f1 == pytest.approx(json.loads(scorer.stdout)["f1"])


def test_tagger_and_http_api_give_the_same_entities(run):
    from fastapi.testclient import TestClient

    from bner.serving.app import create_app
    from bner.serving.settings import ServingSettings

    _, result, _, _ = run
    tagger = bner.load(result.export_path)
    texts = ["Hana Silva met Chen in Quito .", "Umbrella works for Goran Petrov at Lagos yesterday ."]
    with TestClient(create_app(ServingSettings(), tagger=tagger)) as client:
        served = client.post("/api/ner/recognize", json={"texts": texts}).json()["results"]
    assert [r["entities"] for r in served] == [[e.as_dict() for e in found] for found in tagger.predict(texts)]


LOAD_QUIETLY = """
import sys, bner, bner.serving.app
tagger = bner.load(sys.argv[1])
print(tagger("Anna Kowalski visited Lisbon ."))
print(sorted(m for m in sys.modules if m.split(".")[0] in ("keras", "keras_hub")))
"""


def test_serving_and_loading_an_export_import_no_keras_and_print_no_tensorflow_logs(run):
    _, result, _, _ = run
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([sys.executable, "-c", LOAD_QUIETLY, result.export_path], capture_output=True, text=True, env=env, check=True)
    lines = done.stdout.strip().splitlines()
    assert "Anna Kowalski" in lines[0] and lines[-1] == "[]"
    assert done.stderr == "", done.stderr


LIGHT_INSTALL = """
import json, sys
import bner
from fastapi.testclient import TestClient
from bner.cli.main import main
from bner.serving.app import create_app
from bner.serving.settings import ServingSettings

export, text_file, conll, out = sys.argv[1:5]
tagger = bner.load(export)
entities = [(e.text, e.type, e.start, e.end) for e in tagger("Anna Kowalski visited Lisbon .")]
assert main(["predict", export, text_file, "--output", out]) == 0
assert main(["evaluate", export, conll, "--json"]) == 0
client = TestClient(create_app(ServingSettings(model_dir=export)))
answer = client.post("/api/ner/recognize", json={"text": "Anna Kowalski visited Lisbon ."}).json()
model = client.get("/api/ner/model").json()
heavy = sorted(m for m in ("tensorflow", "keras", "keras_hub", "tf2onnx") if m in sys.modules)
print(json.dumps({"backend": tagger.backend.name, "entities": entities, "served": answer, "runtime": model["runtime"], "heavy": heavy}))
"""


def test_the_light_install_loads_predicts_evaluates_and_serves_an_export_without_tensorflow(run, tmp_path):
    """`pip install bner` without [train]: TensorFlow, Keras, KerasHub and tf2onnx cannot even be found."""
    import sysconfig

    _, result, root, _ = run
    site, folder = sysconfig.get_paths()["purelib"], tmp_path / "site"
    folder.mkdir()
    blocked = ("tensorflow", "tf_keras", "tensorboard", "keras", "tf2onnx")
    for name in os.listdir(site):
        if name.lower().startswith(blocked) or name.endswith(".pth"):
            continue
        os.symlink(os.path.join(site, name), folder / name)
    (tmp_path / "in.txt").write_text("Anna Kowalski visited Lisbon .\nBoris works for Acme .\n")
    project = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run(
        [sys.executable, "-S", "-c", LIGHT_INSTALL, result.export_path, str(tmp_path / "in.txt"),
         str(root / "data" / "test.conll"), str(tmp_path / "out.jsonl")],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": f"{project}{os.pathsep}{folder}"}, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    facts = json.loads(done.stdout.strip().splitlines()[-1])
    assert facts["backend"] == "onnx" and facts["runtime"] == "onnx" and facts["heavy"] == []
    assert facts["entities"] == [["Anna Kowalski", "PER", 0, 13], ["Lisbon", "LOC", 22, 28]]
    assert [e["text"] for e in facts["served"]["entities"]] == ["Anna Kowalski", "Lisbon"]
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 2
    assert '"f1"' in done.stdout


TRAIN_QUIETLY = """
import sys, bner
try:
    bner.train(bner.TrainConfig.from_settings(data_dir=sys.argv[1], pretrained_model=sys.argv[2], output_dir=sys.argv[3]))
except Exception as e:
    print(type(e).__name__)
"""


def test_training_from_python_prints_no_tensorflow_logs(tiny_model, tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.conll").write_text("", encoding="utf-8")  # fails after TensorFlow has loaded
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([sys.executable, "-c", TRAIN_QUIETLY, str(tmp_path / "data"), tiny_model, str(tmp_path / "out")],
                          capture_output=True, text=True, env=env, check=True)
    assert done.stdout.strip() == "CorpusError", done.stdout
    assert done.stderr == "", done.stderr


def test_reading_metadata_needs_only_the_standard_library(run):
    _, result, _, _ = run
    script = ("import sys; from bner.model.metadata import read_metadata; m = read_metadata(sys.argv[1]); "
              "third = sorted({n.split('.')[0] for n in sys.modules} & {'numpy', 'tensorflow', 'keras', 'fsspec', 'tokenizers'}); "
              "print(m.labels[0], third)")
    done = subprocess.run([sys.executable, "-c", script, result.export_path], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "O []"


def test_import_bner_is_cheap():
    script = "import sys, bner; print(sorted({n.split('.')[0] for n in sys.modules} & {'numpy', 'tensorflow', 'keras', 'tokenizers'}))"
    assert subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.strip() == "[]"


def broken_copy(export: str, tmp_path, change) -> str:
    import shutil

    target = tmp_path / "broken"
    shutil.copytree(export, target)
    change(target)
    return str(target)


def edit_metadata(**values):
    def change(folder):
        data = json.loads((folder / "metadata.json").read_text())
        data.update(values)
        (folder / "metadata.json").write_text(json.dumps(data))

    return change


def garbage_onnx_with_its_digest(folder):
    import hashlib

    (folder / "model.onnx").write_bytes(b"\x08\x01garbage")
    edit_metadata(onnx={"file": "model.onnx", "opset": 17, "sha256": hashlib.sha256(b"\x08\x01garbage").hexdigest()})(folder)


def edit_encoder(**values):
    def change(folder):
        data = json.loads((folder / "metadata.json").read_text())
        data["encoder"].update(values)
        (folder / "metadata.json").write_text(json.dumps(data))

    return change


def replace_onnx(folder, model) -> None:
    """``model`` (an onnx.ModelProto) as the export's model.onnx, with its digest in metadata.json."""
    import hashlib

    import onnx

    onnx.save(model, str(folder / "model.onnx"))
    digest = hashlib.sha256((folder / "model.onnx").read_bytes()).hexdigest()
    edit_metadata(onnx={"file": "model.onnx", "opset": 17, "sha256": digest})(folder)


def stand_in_onnx(input_type: str = "int32", logits_rank: int = 3, labels: int = 7):
    """A small graph in place of the network, with bner's input and output names: logits from input_ids alone."""
    def change(folder):
        from onnx import TensorProto, helper

        dtype = getattr(TensorProto, input_type.upper())
        inputs = [helper.make_tensor_value_info(name, dtype, ["batch", "pieces"])
                  for name in ("input_ids", "attention_mask", "token_type_ids")]
        shape = ["batch", "pieces", labels][:logits_rank]
        axes = helper.make_tensor("axes", TensorProto.INT64, [1], [2])
        nodes = [helper.make_node("Cast", ["input_ids"], ["ids"], to=TensorProto.FLOAT)]
        if logits_rank == 3:
            nodes += [helper.make_node("Unsqueeze", ["ids", "axes"], ["column"]),
                      helper.make_node("Tile", ["column", "repeats"], ["logits"])]
            repeats = helper.make_tensor("repeats", TensorProto.INT64, [3], [1, 1, labels])
            initializers = [axes, repeats]
        else:
            nodes += [helper.make_node("Identity", ["ids"], ["logits"])]
            initializers = []
        graph = helper.make_graph(nodes, "stand-in", inputs, [helper.make_tensor_value_info("logits", TensorProto.FLOAT, shape)],
                                  initializer=initializers)
        replace_onnx(folder, helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))

    return change


def nan_weight(folder):
    """The export's own ONNX model with one weight matrix NaN."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(folder / "model.onnx"))
    largest = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    largest.CopyFrom(numpy_helper.from_array(np.full(numpy_helper.to_array(largest).shape, np.nan, np.float32), largest.name))
    replace_onnx(folder, model)


def tokenizer_linked_outside(folder):
    outside = folder.parent / "elsewhere.json"
    (folder / "tokenizer.json").rename(outside)
    (folder / "tokenizer.json").symlink_to(outside)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda f: (f / "saved_model.pb").write_bytes(b"\x08\x01garbage"), "cannot load the SavedModel"),
        (lambda f: (f / "model.onnx").write_bytes(b"\x08\x01garbage"), "SHA-256 is not the one metadata.json gives"),
        (lambda f: (f / "model.onnx").unlink(), "file not found"),
        (garbage_onnx_with_its_digest, "ONNX Runtime cannot load it"),
        (edit_metadata(onnx={"file": "/etc/passwd", "opset": 17, "sha256": "0"}), "onnx must name a file inside the model folder"),
        (lambda f: (f / "metadata.json").write_text("[1, 2]"), "expected a JSON object, got list"),
        (edit_metadata(format_version="1"), "format_version must be a whole number"),
        (edit_metadata(tokenizer_file="../../../../etc/passwd"), "tokenizer_file must be a file name inside the model folder"),
        (edit_metadata(split_sentences="yes"), "split_sentences must be true or false"),
        (edit_metadata(document_windows=1), "document_windows must be true or false"),
        (edit_metadata(format_version=FORMAT_VERSION + 1), "written by a newer bner"),
        (lambda f: (f / "tokenizer.json").write_text("{}"), "not a tokenizer file"),
        (edit_metadata(labels=["O", "B-LOC"]), "metadata.json lists 2 labels but the model has 7 outputs"),
        # Folders that loaded, said they were ready, and then failed or answered nothing.
        (edit_metadata(label_scheme="BOGUS"), "label_scheme must be one of IOB2, IOBES"),
        (edit_metadata(labels=["O", "B-LOC", "I-LOC", "X-PER", "I-PER", "B-ORG", "I-ORG"]), "'X-PER' is not a IOB2 tag"),
        (edit_encoder(max_position_embeddings="512"), "encoder.max_position_embeddings must be a whole number, got '512'"),
        (edit_metadata(max_seq_length=256), "max_seq_length 256 is longer than the encoder's 128 positions"),
        (lambda f: (edit_metadata(max_seq_length=256)(f), edit_encoder(max_position_embeddings=512)(f)),
         r"fails on a \[1, 256\]-piece input"),
        (stand_in_onnx(logits_rank=2), "logits have 2 dimensions"),
        (stand_in_onnx(input_type="int64"), r"input_ids is tensor\(int64\)"),
        (nan_weight, "NaN or infinite"),
        (lambda f: (f / "metadata.json").write_text("[" * 100_000 + "]" * 100_000), "nested too deeply"),
        (tokenizer_linked_outside, "leads outside the model folder"),
    ],
)
def test_a_damaged_export_fails_to_load_with_one_line(run, tmp_path, change, message):
    _, result, _, _ = run
    folder = broken_copy(result.export_path, tmp_path, change)
    runtime = "tensorflow" if "SavedModel" in message else "auto"
    with pytest.raises(ValueError, match=message):
        bner.load(folder, runtime=runtime)
    served = subprocess.run([sys.executable, "-m", "bner.serving", "--model_dir", folder, "--port", "1", "--runtime", runtime],
                            capture_output=True, text=True, timeout=120)
    lines = served.stderr.strip().splitlines()
    assert served.returncode == 2 and len(lines) == 1 and re.search(message, lines[0]), served.stderr


def stand_in_saved_model(only_input_ids: bool):
    """A SavedModel in place of the export's: a signature that takes only input_ids, or answers 2-D logits."""
    def change(folder):
        import shutil

        import tensorflow as tf

        specs = [tf.TensorSpec([None, None], tf.int32, name=name)
                 for name in (("input_ids",) if only_input_ids else ("input_ids", "attention_mask", "token_type_ids"))]

        class StandIn(tf.Module):
            @tf.function(input_signature=specs)
            def serve(self, input_ids, *_):
                logits = tf.cast(input_ids, tf.float32)
                return {"logits": tf.tile(logits[..., None], [1, 1, 7]) if only_input_ids else logits}

        (folder / "saved_model.pb").unlink()
        shutil.rmtree(folder / "variables")
        module = StandIn()
        tf.saved_model.save(module, str(folder / "new"), signatures={"serving_default": module.serve})
        for entry in (folder / "new").iterdir():
            entry.rename(folder / entry.name)

    return change


@pytest.mark.parametrize("only_input_ids, message", [(True, "takes input_ids, not input_ids, attention_mask"),
                                                     (False, "logits have 2 dimensions")])
def test_a_saved_model_of_another_shape_is_refused_at_load(run, tmp_path, only_input_ids, message):
    _, result, _, _ = run
    folder = broken_copy(result.export_path, tmp_path, stand_in_saved_model(only_input_ids))
    with pytest.raises(ValueError, match=message):
        bner.load(folder, runtime="tensorflow")


def test_data_that_is_legal_but_odd_is_warned_about_and_data_without_entities_refused(tmp_path):
    from bner.config import ConfigError
    from bner.data import corpus
    from bner.training.recipe import data_warnings, describe_data

    def sentences(*rows):
        return [corpus.Sentence(tuple(w for w, _ in row), tuple(t for _, t in row), line=1) for row in rows]

    config = TrainConfig.from_settings(data_dir=str(tmp_path))
    splits = {
        "train": sentences([("Anna", "B-PER"), ("in", "O"), ("Oslo", "B-LOC")], [("x", "B-per")]),
        "test": sentences([("Acme", "B-ORG")]),
    }
    warnings = data_warnings(config, splits)
    assert any("test.conll has entity types that train.conll never shows: ORG" in w for w in warnings)
    assert any("'per' and 'PER' are different types" in w for w in warnings)
    with pytest.raises(ConfigError, match="no entities"):
        describe_data(config, {"train": sentences([("a", "O"), ("b", "O")])})


def test_constrained_decoding_is_valid_equal_to_argmax_where_that_is_valid_and_the_same_in_every_backend(run):
    from bner.data import corpus
    from bner.inference import decoding

    config, result, root, _ = run
    sentences = [s.words for s in corpus.read_conll(os.path.join(config.data.data_dir, "test.conll"))]
    exported = bner.load(result.export_path, batch_size=4)
    saved_model = bner.load(result.export_path, batch_size=4, runtime="tensorflow")
    keras_model = bner.load(result.model_dir, batch_size=4)
    argmax = bner.load(result.export_path, batch_size=4, decoding="argmax")
    rules = decoding.transitions(tuple(exported.labels), exported.metadata.label_scheme)
    index = {label: i for i, label in enumerate(exported.labels)}
    constrained_tags = [t.tags for t in exported.tag_sentences(sentences)]
    assert constrained_tags == [t.tags for t in keras_model.tag_sentences(sentences)]  # evaluation's path = the export's
    assert constrained_tags == [t.tags for t in saved_model.tag_sentences(sentences)]  # ONNX Runtime = the SavedModel
    for tags, plain in zip(constrained_tags, (t.tags for t in argmax.tag_sentences(sentences))):
        assert decoding.is_valid([index[t] for t in tags], rules)
        if decoding.is_valid([index[t] for t in plain], rules):
            assert tags == plain
    with pytest.raises(ValueError, match="constrained, argmax"):
        bner.load(result.export_path, decoding="viterbi")


def test_a_trained_model_of_the_older_format_says_so_and_its_export_still_loads(run, tmp_path):
    _, result, _, _ = run
    def written_before_the_layout(folder):
        data = json.loads((folder / "metadata.json").read_text())
        del data["network_layout"]
        (folder / "metadata.json").write_text(json.dumps(data))

    old_model = broken_copy(result.model_dir, tmp_path, written_before_the_layout)
    with pytest.raises(ValueError, match="an older bner.*network layout 1.*its exports still serve"):
        bner.load(old_model)
    old_export = broken_copy(result.export_path, tmp_path / "export", written_before_the_layout)
    assert bner.load(old_export)("Anna visited Lisbon .") is not None


def test_a_run_of_the_older_layout_is_not_resumed_but_named(run, tmp_path):
    import shutil

    from bner.folders.run_folder import OutputDirError, check_output_dir, file_digests

    config, _, root, _ = run
    old = tmp_path / "old_run"
    shutil.copy(root / "out" / "run.json", old.mkdir() or old / "run.json")
    record = json.loads((old / "run.json").read_text())
    assert check_output_dir(str(root / "out"), config, file_digests(config.data.data_dir)) is not None
    del record["network_layout"]
    (old / "run.json").write_text(json.dumps(record))
    with pytest.raises(OutputDirError, match="older bner.*--overwrite_output_dir"):
        check_output_dir(str(old), config, file_digests(config.data.data_dir))
