"""TrainConfig: one record of a run, built from flags, stored in run.json, checked before TensorFlow starts."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import time

import pytest

from bner.config import ConfigError, TrainConfig, all_fields


def test_config_round_trips_through_json():
    config = TrainConfig.from_settings(learning_rate=1e-4, pretrained_model="/models/m", output_dir="runs/x", do_lower_case=False)
    assert TrainConfig.from_json(config.to_json()) == config
    assert TrainConfig.from_json({"config": config.to_json(), "status": "finished"}) == config
    assert config.optimization.learning_rate == 1e-4 and config.model.do_lower_case is False
    assert config.flat()["output_dir"] == "runs/x"


@pytest.mark.parametrize(
    "data, message",
    [
        ({"optimisation": {}}, "unknown section 'optimisation'"),
        ({"optimization": {"lr": 1}}, "unknown setting optimization.lr"),
        ({"model": "x"}, "section 'model' must be a JSON object"),
        ([1, 2], "expected a JSON object"),
    ],
)
def test_config_from_json_names_what_is_wrong(data, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_json(data)


def test_unknown_settings_are_refused():
    with pytest.raises(ConfigError, match="unknown setting"):
        TrainConfig.from_settings(learning_rat=1)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"learning_rate": -1.0}, "--learning_rate=-1.0: must be greater than 0"),
        ({"train_batch_size": 0}, "--train_batch_size=0: must be greater than 0"),
        ({"num_train_epochs": 0.0}, "--num_train_epochs"),
        ({"warmup_proportion": 1.5}, "--warmup_proportion=1.5"),
        ({"max_seq_length": 2}, "--max_seq_length=2"),
        ({"dropout": 1.0}, "--dropout=1.0"),
        ({"hidden_act": "swish"}, "--hidden_act=swish"),
        ({"use_tpu": True, "train_batch_size": 12}, "must divide evenly over --num_tpu_cores=8"),
        ({"model_name": "/tmp/elsewhere"}, "--model_name='/tmp/elsewhere': expected a plain name"),
        ({"model_name": "../../x"}, "--model_name='../../x'"),
        ({"model_name": ""}, "--model_name=''"),
        ({"document_windows": True, "context_words": 16}, "--document_windows and --context_words: choose one"),
    ],
)
def test_nonsense_values_are_refused(settings, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        TrainConfig.from_settings(**settings).check()


def test_differences_name_only_settings_that_determine_the_result():
    a = TrainConfig.from_settings(learning_rate=1e-4, output_dir="a", eval_batch_size=8)
    b = TrainConfig.from_settings(learning_rate=2e-4, output_dir="b", eval_batch_size=64, seed=7)
    assert a.differences(b) == ["learning_rate (0.0001 → 0.0002)", "seed (42 → 7)"]


def test_absl_flags_are_made_from_the_config_fields():
    from bner.cli.flags import FLAGS

    for name, field in all_fields().items():
        expected = True if name == "do_lower_case" else field.default  # the original flag's default
        assert FLAGS[name].default == expected, name
        assert FLAGS[name].help.endswith(field.metadata["help"]), name


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    "command, message",
    [
        (["-m", "bner.ner.task", "--do_train", "--data_dir=/no/such/folder", "--pretrained_model=/x"], "--data_dir=/no/such/folder: no such folder"),
        (["-m", "bner.ner.task", "--do_train", "--learning_rate=-1"], "--learning_rate=-1.0: must be greater than 0"),
        (["-m", "bner.ner.task", "--do_eval", "--output_dir=/no/run"], "/no/run/model: no trained model"),
        (["-m", "bner.cli.main", "train", "--train_batch_size=0"], "--train_batch_size=0: must be greater than 0"),
        (["-m", "bner.cli.main", "train", "--data_dir=/no/such/folder"], "--data_dir=/no/such/folder: no such folder"),
        (["-m", "bner.cli.main", "evaluate", "/no/model", "/no/test.conll"], "/no/model: no such file or folder"),
    ],
)
def test_command_lines_refuse_mistakes_in_one_line_before_tensorflow(command, message):
    started = time.perf_counter()
    result = run(*command)
    elapsed = time.perf_counter() - started
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines == [f"error: {lines[0][7:]}"] and message in lines[0], result.stderr
    assert elapsed < 8, f"{elapsed:.1f} s: something heavy was imported before the check"  # a bound, not a benchmark


def test_max_seq_length_beyond_the_models_positions_is_refused_for_eval_too(tiny_model, tmp_path):
    out = tmp_path / "run" / "model"
    out.mkdir(parents=True)
    metadata = {"labels": ["O", "B-X", "I-X"], "label_scheme": "IOB2", "data_scheme": "IOB2", "max_seq_length": 32,
                "lowercase": True, "strip_accents": True,
                "encoder": {"vocab_size": 10, "hidden_size": 8, "num_layers": 1, "num_heads": 2, "intermediate_size": 8,
                            "max_position_embeddings": 64}}
    (out / "metadata.json").write_text(json.dumps(metadata))
    (out / "model.weights.h5").write_bytes(b"")
    (tmp_path / "test.conll").write_text("Paris B-LOC\n")
    result = run("-m", "bner.ner.task", "--do_eval", f"--output_dir={tmp_path / 'run'}", f"--data_dir={tmp_path}", "--max_seq_length=128")
    assert result.returncode == 2 and "longer than the model's 64 positions" in result.stderr


def test_each_verb_lists_only_its_own_options():
    train = run("-m", "bner.cli.main", "train", "--help").stdout
    for group in ("data:", "model:", "training:", "hardware/TPU:", "output:"):
        assert group in train
    assert "--learning_rate" in train and "--batch_size " not in train
    evaluate = run("-m", "bner.cli.main", "evaluate", "--help").stdout
    assert "--batch_size" in evaluate and "--learning_rate" not in evaluate
    predict = run("-m", "bner.cli.main", "predict", "--help").stdout
    assert "--output" in predict and "--tpu_name" not in predict


def test_paths_compare_as_the_files_they_name_and_null_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a = TrainConfig.from_settings(pretrained_model="./bert", data_dir="data/")
    b = TrainConfig.from_settings(pretrained_model=str(tmp_path / "bert"), data_dir=str(tmp_path / "data"))
    assert a.differences(b) == []
    with pytest.raises(ConfigError, match="warmup_proportion: expected float, got null"):
        TrainConfig.from_json({"optimization": {"warmup_proportion": None}})
    assert TrainConfig.from_json({"optimization": {"learning_rate": None}}).optimization.learning_rate is None  # from the encoder


def test_a_run_record_from_before_keep_checkpoints_was_a_switch_still_replays():
    old = TrainConfig().to_json()
    old["loop"].pop("max_checkpoints")
    old["loop"]["keep_checkpoints"] = 5  # the count, as records wrote it before --max_checkpoints
    replayed = TrainConfig.from_json(old)
    assert replayed.loop.max_checkpoints == 5 and replayed.loop.keep_checkpoints is False


def test_bner_train_takes_a_switch_alone_or_with_a_value():
    from bner.cli.main import build_parser

    parsed = build_parser().parse_args(["train", "--keep_checkpoints", "--progress", "false", "--early_stopping_patience", "2"])
    assert parsed.keep_checkpoints is True and parsed.progress is False and parsed.early_stopping_patience == 2


def test_decoding_options_reach_the_tagger_and_bad_values_are_refused(monkeypatch, capsys):
    import bner
    from bner.cli import main as cli

    loaded, defaults = {}, inspect.signature(bner.load).parameters
    monkeypatch.setattr(bner, "load", lambda model, **options: loaded.update(options))
    parser = cli.build_parser()
    cli._load(parser.parse_args(["evaluate", "m", "t.conll", "--decoding", "argmax", "--consistent", "false"]))
    assert (loaded["decoding"], loaded["consistent"]) == ("argmax", False)
    cli._load(parser.parse_args(["predict", "m", "-"]))
    assert (loaded["decoding"], loaded["consistent"]) == (defaults["decoding"].default, defaults["consistent"].default)
    assert parser.parse_args(["predict", "m", "-", "--consistent"]).consistent is True  # a bare flag, as train's are
    for bad, message in ((["--consistent", "maybe"], "invalid boolean value: 'maybe'"), (["--decoding", "viterbi"], "invalid choice: 'viterbi'")):
        with pytest.raises(SystemExit) as exit:
            parser.parse_args(["predict", "m", "-", *bad])
        assert exit.value.code == 2 and message in capsys.readouterr().err
    with pytest.raises(SystemExit):  # train's own boolean flags: a usage error too, not a traceback
        parser.parse_args(["train", "--do_lower_case=perhaps"])
    assert "invalid boolean value: 'perhaps'" in capsys.readouterr().err


def test_the_run_record_holds_input_paths_that_work_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "bert").mkdir()
    config = TrainConfig.from_settings(data_dir="data", pretrained_model="./bert", output_dir="runs/x", vocab_file="gs://b/vocab.txt")
    stored = config.to_json()
    assert stored["data"]["data_dir"] == str(tmp_path / "data") and stored["model"]["pretrained_model"] == str(tmp_path / "bert")
    assert stored["model"]["vocab_file"] == "gs://b/vocab.txt" and stored["output"]["output_dir"] == "runs/x"
    # A preset name is a name, not a path here; an empty value stays empty.
    named = TrainConfig.from_settings(pretrained_model="bert_tiny_en_uncased", bert_config_file="").to_json()["model"]
    assert named["pretrained_model"] == "bert_tiny_en_uncased" and named["bert_config_file"] == ""
    assert not TrainConfig.from_json(stored).differences(config)  # the same run, so a rerun resumes


def test_an_output_folder_that_is_a_file_is_refused_before_tensorflow(tiny_model, tmp_path):
    (tmp_path / "afile").write_text("keep", encoding="utf-8")
    for output in (tmp_path / "afile", tmp_path / "afile" / "sub"):
        result = run("-m", "bner.cli.main", "train", f"--pretrained_model={tiny_model}", f"--output_dir={output}")
        assert result.returncode == 2 and f"{tmp_path / 'afile'} is a file, not a folder" in result.stderr, result.stderr
    assert (tmp_path / "afile").read_text(encoding="utf-8") == "keep"
