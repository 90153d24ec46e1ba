"""End to end: the real CLI on a tiny model, as a user runs it."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.cli import read_json, run_task, tiny_training_flags
from tests.conftest import write_synthetic_data

ORIGINAL_FLAGS = {
    "data_dir": None, "output_dir": None, "bert_config_file": None, "vocab_file": None, "init_checkpoint": None,
    "do_lower_case": "true", "do_train": "false", "do_eval": "false", "do_predict": "false", "max_seq_length": "128",
    "train_batch_size": "32", "eval_batch_size": "8", "predict_batch_size": "8", "learning_rate": None,
    "num_train_epochs": "3.0", "warmup_proportion": "0.1", "save_checkpoints_steps": "1000", "iterations_per_loop": "1000",
    "use_tpu": "false", "tpu_name": None, "tpu_zone": None, "gcp_project": None, "master": None, "num_tpu_cores": "8",
    "tfhub_cache_dir": None,
}
NEW_FLAGS = ["pretrained_model", "do_export", "export_dir", "model_name", "precision", "seed", "tag_scheme", "predict_file"]


def test_helpfull_lists_the_original_and_new_flags():
    result = subprocess.run([sys.executable, "-m", "bner.ner.task", "--helpfull"], capture_output=True, text=True)
    assert result.returncode in (0, 1)  # absl exits with 1 after printing help
    text = result.stdout
    for name, default in ORIGINAL_FLAGS.items():
        assert f"--{name}:" in text or f"--[no]{name}:" in text, name
        if default is not None:
            block = text.split(f"{name}:", 1)[1].split("\n  --", 1)[0]
            assert f"(default: '{default}')" in block, (name, block)
    for name in NEW_FLAGS:
        assert f"--{name}:" in text or f"--[no]{name}:" in text, name
    assert "--flagfile" in text


@pytest.fixture(scope="module")
def trained(tiny_model, tmp_path_factory):
    """One IOB1 run with long sentences (3× the window), used by the tests below."""
    root = tmp_path_factory.mktemp("e2e")
    data = write_synthetic_data(root / "data", scheme="IOB1", long_every=10)
    (root / "texts.txt").write_text("Anna Kowalski visited Lisbon .\n\nAcme  works for   Boris in Oslo today\n", encoding="utf-8")
    out = root / "out"
    result = run_task(
        *tiny_training_flags(tiny_model, data, str(out)), "--do_train", "--do_eval", "--do_predict",
        f"--predict_file={root / 'texts.txt'}", "--show=Hana Silva met Chen in Quito .",
    )
    return root, data, out, result


def test_training_run_writes_every_output(trained):
    root, data, out, result = trained
    for name in ("eval_results.txt", "eval_results.json", "dev_results.json", "test_results.tsv", "run.json",
                 "predictions.jsonl", "model/model.weights.h5", "model/metadata.json", "model/tokenizer.json",
                 "export/bner/1/saved_model.pb", "export/bner/1/metadata.json", "export/bner/1/tokenizer.json",
                 "model/README.md", "export/bner/1/README.md", "confusion.json",
                 "learning_curve.png", "per_type_f1.png", "confusion.png"):
        assert (out / name).exists(), name
    # A finished run keeps its model and export, not the optimizer state to resume it.
    assert not (out / "checkpoints").exists() and not (out / "best_model").exists()
    assert "removed the resumable checkpoints" in result.stdout
    assert os.listdir(out / "logs"), "TensorBoard logs"
    from tensorflow.python.summary.summary_iterator import summary_iterator

    tags = {value.tag for name in os.listdir(out / "logs") for event in summary_iterator(str(out / "logs" / name))
            for value in event.summary.value}
    assert {"dev/f1", "dev_f1_per_type/PER", "dev_f1_per_type/LOC", "train/loss"} <= tags
    assert "test (60 sentences): entity precision" in result.stdout
    assert "predictions of the exported model" in result.stdout
    assert read_json(out / "eval_results.json")["f1"] >= 0.9


def test_pictures_are_real_images_with_content(trained):
    from PIL import Image

    _, _, out, _ = trained
    for name in ("learning_curve.png", "per_type_f1.png", "confusion.png"):
        with Image.open(out / name) as image:
            assert image.format == "PNG" and image.width > 400 and image.height > 250, name
            assert len(image.convert("L").getcolors(1 << 16)) > 20, f"{name} is nearly blank"
    confusion = read_json(out / "confusion.json")
    test = confusion["test"]
    scores = read_json(out / "eval_results.json")
    diagonal = sum(test["matrix"].get(t, {}).get(t, 0) for t in test["types"])
    assert diagonal == scores["correct"]
    gold = sum(n for row, cells in test["matrix"].items() if row != "(spurious)" for n in cells.values())
    assert gold == scores["gold"]


def test_scores_say_how_they_were_decoded(trained, tmp_path, capsys):
    from bner.cli import main as cli

    _, data, out, _ = trained
    assert read_json(out / "eval_results.json")["scoring"] == {"decoding": "constrained", "consistent": True}
    stored = read_json(out / "export" / "bner" / "1" / "metadata.json")["evaluation"]["test"]["scoring"]
    assert stored == {"decoding": "constrained", "consistent": True}  # what the server compares its own settings with
    assert cli.main(["evaluate", str(out), os.path.join(data, "test.conll"), "--output_dir", str(tmp_path),
                     "--decoding", "argmax", "--consistent", "false"]) == 0
    written = read_json(tmp_path / "eval_results.json")
    assert written["scoring"] == {"decoding": "argmax", "consistent": False} and 0 < written["f1"] <= 1
    assert f"FB1: {100 * written['f1']:6.2f}" in capsys.readouterr().out
    # The run's own scores are not replaced, and --name is a file name, not a path.
    own = (out / "eval_results.json").read_bytes()
    for extra, message in [([], "a run or model folder whose eval_results.txt and eval_results.json would be replaced"),
                           (["--name", "dev_results"], "dev_results.txt"), (["--name", "run"], "run.json would be replaced"),
                           (["--name", "../escape"], "expected a file name stem")]:
        assert cli.main(["evaluate", str(out), os.path.join(data, "test.conll"), "--output_dir", str(out), *extra]) == 2
        assert message in capsys.readouterr().err
    assert (out / "eval_results.json").read_bytes() == own
    # Nor another run's, through the task's --eval_output_dir.
    other = tmp_path / "other_run"
    other.mkdir()
    (other / "run.json").write_text("{}")
    (other / "eval_results.json").write_text("{}")
    refused = run_task(f"--output_dir={out}", f"--data_dir={data}", "--do_eval", f"--eval_output_dir={other}", check=False)
    assert refused.returncode == 2 and "eval_results.json would be replaced" in refused.stderr, refused.stderr
    assert (other / "eval_results.json").read_text() == "{}"


def test_model_card_describes_the_run_without_placeholders(trained):
    _, data, out, _ = trained
    import hashlib

    card = (out / "export" / "bner" / "1" / "README.md").read_text(encoding="utf-8")
    scores = read_json(out / "eval_results.json")
    meta = read_json(out / "export" / "bner" / "1" / "metadata.json")
    assert meta["evaluation"]["test"]["f1"] == pytest.approx(scores["f1"])
    assert f"{100 * scores['f1']:.2f}" in card
    train_sha = hashlib.sha256(open(os.path.join(data, "train.conll"), "rb").read()).hexdigest()
    assert train_sha[:16] in card
    for needle in ("bner.load(", "bner serve", "tensorflow/serving", "IOB1", "`learning_rate` | `0.001`", "## Known limits", "B-PER"):
        assert needle in card, needle
    for placeholder in ("None", "TODO", "{", "–"):
        assert placeholder not in card.split("## Training data")[0], placeholder
    model_card = (out / "model" / "README.md").read_text(encoding="utf-8")
    assert f"bner.load('{out / 'model'}')" in model_card


def test_results_keep_every_word_and_the_data_scheme(trained):
    root, data, out, _ = trained
    from bner.data import corpus
    from bner.inference import evaluate

    gold = corpus.read_conll(os.path.join(data, "test.conll"))
    assert max(len(s) for s in gold) > 3 * 30  # sentences 3× the 32-piece window
    rows = corpus.parse_conll((out / "test_results.tsv").read_text())
    assert [s.words for s in rows] == [s.words for s in gold]  # no word dropped or cut
    predicted = [[line.split()[-1] for line in block.splitlines()] for block in (out / "test_results.tsv").read_text().strip().split("\n\n")]
    assert corpus.detect_scheme(predicted) == "IOB1"
    # test_results.tsv scored by the scorer command gives eval_results.json's figures.
    cli = subprocess.run([sys.executable, "-m", "bner.evaluate", str(out / "test_results.tsv"), "--json"], capture_output=True, text=True, check=True)
    assert json.loads(cli.stdout)["f1"] == pytest.approx(read_json(out / "eval_results.json")["f1"])
    assert evaluate.read_predictions(str(out / "test_results.tsv"))[0] == [list(s.tags) for s in gold]


def test_plain_text_predictions_carry_character_offsets(trained):
    _, _, out, _ = trained
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["text"] for r in records] == ["Anna Kowalski visited Lisbon .", "", "Acme  works for   Boris in Oslo today"]
    assert records[1]["entities"] == []
    for record in records:
        for entity in record["entities"]:
            assert record["text"][entity["start"]:entity["end"]] == entity["text"]
    assert [(e["text"], e["type"], e["start"], e["end"]) for e in records[0]["entities"]] == [
        ("Anna Kowalski", "PER", 0, 13), ("Lisbon", "LOC", 22, 28)
    ]


def test_metadata_describes_the_model(trained):
    _, _, out, _ = trained
    meta = read_json(out / "export" / "bner" / "1" / "metadata.json")
    assert meta["labels"][0] == "O" and meta["labels"] == sorted(meta["labels"], key=lambda t: (t != "O", t))
    assert meta["data_scheme"] == "IOB1" and meta["label_scheme"] == "IOB2"
    assert meta["max_seq_length"] == 32 and meta["lowercase"] is True and meta["tokenizer_file"] == "tokenizer.json"
    assert meta["encoder"]["hidden_size"] == 32 and meta["training"]["export"]["version"] == 1
    assert meta["training"]["steps"] > 0


EXPORT_CHECK = """
import json, sys, numpy as np, tensorflow as tf
loaded = tf.saved_model.load(sys.argv[1])
signature = loaded.signatures["serving_default"]
ids = np.load(sys.argv[2])
mask = (ids != 0).astype(np.int32)
out = signature(input_ids=tf.constant(ids), attention_mask=tf.constant(mask), token_type_ids=tf.zeros_like(mask))
print(json.dumps({k: [str(v.dtype.name), list(v.shape)] for k, v in out.items()}))
np.save(sys.argv[3], out["label_ids"].numpy())
"""


def test_export_reloads_in_a_fresh_process_with_the_trained_predictions(trained, tmp_path):
    _, _, out, _ = trained
    from bner.folders import model_folder

    tagger, meta, tokenizer = model_folder.load(str(out / "model"))
    rng = np.random.default_rng(0)
    ids = rng.integers(5, 40, size=(3, 17)).astype(np.int32)
    ids[1, 9:] = 0
    np.save(tmp_path / "ids.npy", ids)
    script = tmp_path / "check.py"
    script.write_text(EXPORT_CHECK)
    result = subprocess.run([sys.executable, str(script), str(out / "export" / "bner" / "1"), str(tmp_path / "ids.npy"), str(tmp_path / "labels.npy")],
                            capture_output=True, text=True, check=True)
    shapes = json.loads(result.stdout.strip().splitlines()[-1])
    assert shapes == {"label_ids": ["int32", [3, 17]], "scores": ["float32", [3, 17]], "logits": ["float32", [3, 17, len(meta.labels)]]}
    mask = (ids != 0).astype(np.int32)
    logits = tagger.predict_on_batch({"input_ids": ids, "attention_mask": mask, "token_type_ids": 0 * mask})
    expected = np.argmax(logits, -1)
    exported = np.load(tmp_path / "labels.npy")
    assert (exported[mask == 1] == expected[mask == 1]).all()


def test_export_again_reuses_the_version_of_the_same_model(trained):
    _, _, out, _ = trained
    result = run_task(f"--output_dir={out}", "--do_export")
    assert "export/bner/1 is already an export of this model" in result.stdout
    assert sorted(os.listdir(out / "export" / "bner")) == ["1"]


@pytest.mark.parametrize(
    "content, message",
    [
        ("Paris B-LOC\nis\n", "train.conll:2: expected a word and a tag"),
        ("Paris NNP B-LOC\nis O\n", "train.conll:2: expected 3 columns"),
    ],
)
def test_malformed_data_fails_with_one_clear_line(tiny_model, tmp_path, content, message):
    (tmp_path / "train.conll").write_text(content)
    result = run_task(f"--pretrained_model={tiny_model}", f"--data_dir={tmp_path}", f"--output_dir={tmp_path / 'out'}", "--do_train", check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {tmp_path / 'train.conll'}:{message.split(':', 1)[1]}")
    assert "Traceback" not in result.stderr


def test_evaluating_other_data_writes_beside_not_over_the_runs_results(trained, tmp_path):
    _, _, out, _ = trained
    other = write_synthetic_data(tmp_path / "other", train=10, dev=10, test=20)
    before = (out / "eval_results.json").read_bytes()
    result = run_task(f"--output_dir={out}", f"--data_dir={other}", "--do_eval")
    assert (out / "eval_results.json").read_bytes() == before
    assert (out / "eval_other" / "eval_results.json").exists()
    assert "20 sentences" in result.stdout


def test_prediction_streams_jsonl_and_standard_input(trained, tmp_path):
    _, _, out, _ = trained
    (tmp_path / "in.jsonl").write_text('{"id": 7, "text": "Anna Kowalski visited Lisbon ."}\n\n{"id": 8, "text": ""}\n')
    run_task(f"--output_dir={out}", "--do_predict", f"--predict_file={tmp_path / 'in.jsonl'}", f"--predict_output={tmp_path / 'out.jsonl'}")
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == [7, 8]
    assert [e["text"] for e in records[0]["entities"]] == ["Anna Kowalski", "Lisbon"] and records[1]["entities"] == []
    piped = subprocess.run(
        [sys.executable, "-m", "bner.cli.main", "predict", str(out), "-"], input="Anna Kowalski visited Lisbon .\n",
        capture_output=True, text=True, check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert json.loads(piped.stdout)["entities"] == records[0]["entities"]
    bad = run_task(f"--output_dir={out}", "--do_predict", f"--predict_file={tmp_path / 'in.jsonl'}", "--predict_format=conll",
                   f"--predict_output={tmp_path / 'x.conll'}", check=False)
    assert bad.returncode == 0  # a JSON line is a one-word sentence in CoNLL: legal, if odd
    (tmp_path / "broken.jsonl").write_text('{"text": "ok"}\n{"text": 3}\n')
    bad = run_task(f"--output_dir={out}", "--do_predict", f"--predict_file={tmp_path / 'broken.jsonl'}",
                   f"--predict_output={tmp_path / 'broken_out.jsonl'}", check=False)
    # The unreadable line goes to the errors file with its file, line and reason; the run labels the rest.
    assert bad.returncode == 0 and "1 line(s) could not be read" in bad.stdout
    assert [json.loads(line)["text"] for line in (tmp_path / "broken_out.jsonl").read_text().splitlines()] == ["ok"]
    [problem] = [json.loads(line) for line in (tmp_path / "broken_out.jsonl.errors.jsonl").read_text().splitlines()]
    assert problem["line"] == 2 and problem["file"] == str(tmp_path / "broken.jsonl") and '"text" field' in problem["error"]


def test_early_stopping_keeps_the_best_model_and_says_so(tiny_model, tmp_path):
    data = write_synthetic_data(tmp_path / "data", train=40, dev=20, test=10)
    out = tmp_path / "out"
    # A learning rate this small never improves dev F1 after the first epoch.
    result = run_task(*tiny_training_flags(tiny_model, data, str(out), "--num_train_epochs=6", "--learning_rate=1e-9",
                                           "--early_stopping_patience=2"), "--do_train")
    record = read_json(out / "run.json")
    assert record["training"]["stopped_early"] is True
    # Dev F1 never changed: each later epoch tied the best, and on a tie the later model is kept.
    assert record["training"]["epochs_trained"] == 3 and record["training"]["best_step"] == record["training"]["steps"]
    assert "stopping early" in result.stdout
    assert "Stopped early after 3 of 6.0 epochs" in (out / "model" / "README.md").read_text()
    no_dev = write_synthetic_data(tmp_path / "nodev", train=20, dev=0, test=10)
    os.remove(os.path.join(no_dev, "dev.conll"))
    refused = run_task(*tiny_training_flags(tiny_model, no_dev, str(tmp_path / "o2"), "--early_stopping_patience=1"), "--do_train", check=False)
    assert refused.returncode == 2 and "--early_stopping_patience needs dev.conll" in refused.stderr


def test_dev_f1_is_reported_to_vertex_ai_hyperparameter_tuning_each_epoch(tiny_model, tmp_path):
    pytest.importorskip("hypertune")
    data = write_synthetic_data(tmp_path / "data", train=40, dev=20, test=10)
    metrics = tmp_path / "hypertune" / "output.metrics"
    run_task(*tiny_training_flags(tiny_model, data, str(tmp_path / "out"), "--num_train_epochs=2", "--hypertune_metric=dev_f1"),
             "--do_train", env={"CLOUD_ML_HP_METRIC_FILE": str(metrics), "CLOUD_ML_TRIAL_ID": "3"})
    reported = [json.loads(line) for line in metrics.read_text().splitlines()]
    history = read_json(tmp_path / "out" / "run.json")["training"]["history"]
    assert [float(r["dev_f1"]) for r in reported] == pytest.approx([h["dev_f1"] for h in history])
    assert [int(r["global_step"]) for r in reported] == [h["step"] for h in history] and reported[0]["trial"] == "3"


def test_user_mistakes_are_one_line_errors(tmp_path):
    result = run_task(f"--output_dir={tmp_path}", check=False)
    assert result.returncode == 2 and "nothing to do" in result.stderr
    result = run_task(f"--output_dir={tmp_path}", "--do_eval", check=False)
    assert result.returncode == 2 and "no trained model" in result.stderr and "Traceback" not in result.stderr
    result = run_task(f"--output_dir={tmp_path}", f"--data_dir={tmp_path}", "--do_train", check=False)
    assert result.returncode == 2 and "train.conll: file not found" in result.stderr


def test_jax_backend_trains_and_tensorflow_exports(tiny_model, tmp_path):
    pytest.importorskip("jax")
    data = write_synthetic_data(tmp_path / "data", train=80, dev=20, test=20)
    out = tmp_path / "out"
    result = run_task(*tiny_training_flags(tiny_model, data, str(out), "--num_train_epochs=1"), "--do_train", "--do_eval", env={"KERAS_BACKEND": "jax"})
    assert "on jax" in result.stdout
    assert "exporting under the TensorFlow backend" in result.stdout
    assert (out / "export" / "bner" / "1" / "saved_model.pb").exists()
    assert read_json(out / "run.json")["training"]["backend"] == "jax"


def site_packages_without_tensorflow(folder) -> str:
    """A folder that links every installed package except TensorFlow and what requires it.

    Run with ``python -S`` and this folder on PYTHONPATH, the interpreter cannot find
    TensorFlow at all, as on the GPU machines that have only JAX.
    """
    import sysconfig

    site = sysconfig.get_paths()["purelib"]
    blocked = ("tensorflow", "tf_keras", "tensorboard")
    os.makedirs(folder, exist_ok=True)
    for name in os.listdir(site):
        if name.lower().startswith(blocked) or name.endswith(".pth"):
            continue
        os.symlink(os.path.join(site, name), os.path.join(folder, name))
    return str(folder)


def test_jax_training_runs_with_tensorflow_not_installed(tiny_model, tmp_path):
    pytest.importorskip("jax")
    data = write_synthetic_data(tmp_path / "data", train=80, dev=20, test=20)
    out = tmp_path / "out"
    packages = site_packages_without_tensorflow(tmp_path / "site")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    flags = tiny_training_flags(tiny_model, data, str(out), "--num_train_epochs=1")
    probe = subprocess.run(
        [sys.executable, "-S", "-c", "import importlib.util; print(importlib.util.find_spec('tensorflow'))"],
        env={**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{packages}"}, capture_output=True, text=True, check=True,
    )
    assert probe.stdout.strip() == "None"
    result = subprocess.run(
        [sys.executable, "-S", "-m", "bner.ner.task", "--progress=false", *flags, "--do_train", "--do_eval", "--do_predict"],
        env={**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{packages}", "KERAS_BACKEND": "jax"},
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "on jax" in result.stdout
    assert "TensorFlow is not installed here" in result.stdout
    for name in ("model/metadata.json", "model/model.weights.h5", "eval_results.txt", "predictions.conll", "run.json"):
        assert (out / name).exists(), name
    assert not (out / "export").exists()
    assert "tensorflow" not in read_json(out / "run.json")["versions"]

    # Then, where TensorFlow is installed, the saved weights export and serve the same labels.
    run_task(f"--output_dir={out}", "--do_export", "--do_eval", f"--data_dir={data}")
    assert (out / "export" / "bner" / "1" / "saved_model.pb").exists()


def test_tpu_batch_must_divide_over_the_cores(tiny_model, tmp_path):
    data = write_synthetic_data(tmp_path / "data", train=40, dev=10, test=10)
    flags = tiny_training_flags(tiny_model, data, str(tmp_path / "out"), "--do_train", "--use_tpu", "--num_tpu_cores=3")
    result = run_task(*flags, check=False)
    assert result.returncode == 2 and "must divide evenly over --num_tpu_cores=3" in result.stderr
