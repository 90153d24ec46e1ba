"""Hyperparameter search: the spec, the trials, resuming, the table, the choice on dev, the export."""

import csv
import json
import os
import subprocess
import sys

import pytest

from bner.config import ConfigError
from bner.training import search
from tests.cli import read_json, tiny_training_flags
from tests.conftest import write_synthetic_data


def spec(**overrides):
    data = {"base": {"data_dir": "data"}, "parameters": {"learning_rate": [1e-4, 1e-3], "num_train_epochs": [1, 2]}}
    data.update(overrides)
    return search.SearchSpec.from_json(data)


def test_grid_covers_every_combination_in_order_and_random_is_repeatable():
    assert spec().trials() == [
        {"learning_rate": 1e-4, "num_train_epochs": 1}, {"learning_rate": 1e-4, "num_train_epochs": 2},
        {"learning_rate": 1e-3, "num_train_epochs": 1}, {"learning_rate": 1e-3, "num_train_epochs": 2},
    ]
    assert len(spec(max_trials=3).trials()) == 3
    drawn = spec(algorithm="random", max_trials=5, seed=7).trials()
    assert drawn == spec(algorithm="random", max_trials=5, seed=7).trials() and len(drawn) == 5


@pytest.mark.parametrize("overrides, message", [
    ({"metric": "test_f1"}, "chosen on dev only"),
    ({"parameters": {"learning_rat": [1e-4]}}, "learning_rat is not a training setting"),
    ({"parameters": {"learning_rate": [-1.0]}}, "--learning_rate=-1.0: must be greater than 0"),
    ({"parameters": {"output_dir": ["a"]}}, "set by the search"),
    ({"parameters": {"learning_rate": []}}, "non-empty list"),
    ({"algorithm": "random"}, "needs max_trials"),
    ({"algorithm": "bayes"}, "expected one of grid, random"),
    ({"trials": 3}, "unknown key"),
])
def test_a_bad_spec_is_refused_before_any_training(overrides, message):
    with pytest.raises(ConfigError, match=message):
        spec(**overrides)


def test_spec_files_read_as_yaml_or_json(tmp_path):
    (tmp_path / "s.yaml").write_text("base: {seed: 3}\nparameters:\n  learning_rate: [1.0e-4, 2.0e-4]\n")
    (tmp_path / "s.json").write_text(json.dumps({"parameters": {"learning_rate": [1e-4, 2e-4]}, "base": {"seed": 3}}))
    assert search.SearchSpec.read(str(tmp_path / "s.yaml")) == search.SearchSpec.read(str(tmp_path / "s.json"))
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    example = search.SearchSpec.read(os.path.join(repo, "examples", "search_wnut17.yaml"))
    assert len(example.trials()) == 4 and example.metric == "dev_f1"
    sample = search.SearchSpec.read(os.path.join(repo, "examples", "search_sample.yaml"))
    assert len(sample.trials()) == 2 and os.path.isfile(os.path.join(repo, sample.base["data_dir"], "train.conll"))


def spec_with(data):
    return spec(base={"data_dir": str(data)})


def fake_train(dev_f1_of, calls):
    """Writes what bner.train leaves in run.json; dev F1 from the trial's learning rate."""

    def train(config, say=print):
        calls.append(config.output.output_dir)
        os.makedirs(config.output.output_dir, exist_ok=True)
        f1 = dev_f1_of(config)
        record = {"status": "finished", "result": {"dev": {"f1": f1, "precision": f1, "recall": f1}, "test": {"f1": 1 - f1}},
                  "training": {"best_step": 10, "train_seconds": 1.0}}
        with open(os.path.join(config.output.output_dir, "run.json"), "w") as f:
            json.dump(record, f)

    return train


def test_search_chooses_on_dev_resumes_and_writes_sorted_tables(tmp_path, monkeypatch):
    exported = []
    monkeypatch.setattr("bner.training.recipe.export_model", lambda config, say: exported.append(config.output.output_dir) or "export/1")
    calls = []
    dev = {1e-4: 0.5, 1e-3: 0.7}
    train = fake_train(lambda c: dev[c.optimization.learning_rate] + c.optimization.num_train_epochs / 100, calls)
    data = tmp_path / "data"
    data.mkdir()
    with pytest.raises(ConfigError, match="needs dev.conll"):
        search.run_search(spec(base={"data_dir": str(data)}), str(tmp_path), say=lambda *_: None, train=train)
    (data / "dev.conll").write_text("a O\n")
    best = search.run_search(spec_with(data), str(tmp_path), say=lambda *_: None, train=train)
    assert best["trial"] == 4 and best["values"] == {"learning_rate": 1e-3, "num_train_epochs": 2}
    assert exported == [str(tmp_path / "trial-004")] and best["export"] == "export/1"
    with open(tmp_path / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["trial"]) for r in rows] == [4, 3, 2, 1]  # best dev F1 first; test F1 (best for trial 1) ignored
    assert (tmp_path / "results.md").read_text().splitlines()[2].startswith("| 4 | 0.001 | 2 | 72.00")
    assert read_json(tmp_path / "best.json")["trial"] == 4
    # A second run (after a kill, say) trains nothing already finished.
    os.remove(tmp_path / "trial-003" / "run.json")
    calls.clear()
    search.run_search(spec_with(data), str(tmp_path), say=lambda *_: None, train=train)
    assert calls == [str(tmp_path / "trial-003")]


def test_a_real_search_trains_each_trial_in_its_folder_and_exports_the_best(tiny_model, tmp_path):
    data = write_synthetic_data(tmp_path / "data", train=40, dev=20, test=20)
    flags = dict(f.lstrip("-").split("=", 1) for f in tiny_training_flags(tiny_model, data, "unused"))
    base = {k: v for k, v in flags.items() if k not in ("output_dir", "learning_rate", "num_train_epochs")}
    base = {k: (int(v) if v.isdigit() else v) for k, v in base.items()}
    base["progress"] = False
    (tmp_path / "s.json").write_text(json.dumps({"base": base, "parameters": {"learning_rate": [1e-9, 1e-3]}}))
    command = [sys.executable, "-m", "bner.cli.main", "search", str(tmp_path / "s.json"), "--output_dir", str(tmp_path / "s")]
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    best = read_json(tmp_path / "s" / "best.json")
    assert best["values"] == {"learning_rate": 1e-3}  # a learning rate of 1e-9 learns nothing
    assert os.path.exists(os.path.join(best["export"], "saved_model.pb"))
    assert not os.path.exists(tmp_path / "s" / "trial-001" / "export")  # only the best is exported
    for trial in ("trial-001", "trial-002"):
        assert read_json(tmp_path / "s" / trial / "run.json")["status"] == "finished"
    again = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=600)
    assert again.returncode == 0 and again.stdout.count("finished earlier") == 2
