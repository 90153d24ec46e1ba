"""One command-line behaviour: spellings, abbreviations, suggestions, and the folder forms each verb takes."""

import subprocess
import sys

import pytest

from bner.arguments import underscored
from bner.cli.main import build_parser, looks_tagged
from tests.cli import run_task, tiny_training_flags
from tests.conftest import write_synthetic_data


@pytest.fixture(scope="module")
def trained_export(tiny_model, tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("cli")
    data = write_synthetic_data(root / "data")
    run_task(*tiny_training_flags(tiny_model, data, str(root / "out")), "--do_train")
    return str(root / "out" / "export" / "bner" / "1")


def test_hyphens_read_as_underscores_and_abbreviations_are_unknown(capsys, tmp_path):
    parser = build_parser()
    args = parser.parse_args(["train", "--learning-rate=1e-4", "--num-train-epochs", "2"])
    assert (args.learning_rate, args.num_train_epochs) == (1e-4, 2)
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--num_train_epoch=1"])
    assert "--num_train_epoch: did you mean --num_train_epochs?" in capsys.readouterr().err
    assert underscored("--max-seq-length=a-b") == "--max_seq_length=a-b" and underscored("-") == "-"
    assert underscored("-1e-4") == "-1e-4"
    assert parser.parse_args(["train", "--columns", "tag,word"]).columns == "tag,word"
    from bner.training.recipe import read_splits

    folder = tmp_path
    (folder / "train.conll").write_text("B-PER\tAnna\nO\tran\n\n", encoding="utf-8")
    assert read_splits(str(folder), columns="tag,word")["train"][0].words == ("Anna", "ran")
    # One name per setting; the training flags' names are aliases.
    assert parser.parse_args(["evaluate", "m", "d.conll", "--eval_batch_size", "4"]).batch_size == 4
    assert parser.parse_args(["predict", "m", "t.txt", "--predict_output", "o.jsonl"]).output == "o.jsonl"


def test_evaluate_says_what_it_needs_and_warns_of_types_the_model_lacks(trained_export, tmp_path):
    text = tmp_path / "texts.txt"
    text.write_text("Angela Merkel flew to Paris .\nShares rose .\n", encoding="utf-8")
    assert not looks_tagged(str(text))
    done = subprocess.run([sys.executable, "-m", "bner.cli.main", "evaluate", trained_export, str(text)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Evaluation needs CoNLL with gold tags" in done.stderr
    gold = tmp_path / "gold.conll"
    gold.write_text("Anna\tB-PER\nAcme\tB-COMPANY\n\n", encoding="utf-8")
    assert looks_tagged(str(gold))
    done = subprocess.run([sys.executable, "-m", "bner.cli.main", "evaluate", trained_export, str(gold)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "has entity types this model does not predict: COMPANY" in done.stderr


def test_export_and_load_take_every_folder_form(trained_export):
    from pathlib import Path

    from bner.folders.locate import locate, run_of

    version = Path(trained_export)
    run = version.parents[2]
    for form in (run, run / "model", run / "export", version.parent, version):
        assert run_of(str(form)) == str(run)
    assert locate(str(run / "export")) == ("export", str(version))
    with pytest.raises(FileNotFoundError, match="pass the run's --output_dir"):
        run_of(str(run.parent))
