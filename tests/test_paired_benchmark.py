"""bench/bner_recorded.py writes down what a paired comparison replays: bner's initial head and batches."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.cli import read_json, tiny_training_flags
from tests.conftest import write_synthetic_data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_recorded_run_gives_the_initial_head_and_every_batch(tiny_model, tmp_path):
    data = write_synthetic_data(tmp_path / "data", train=70, dev=10, test=10)
    out, record = tmp_path / "out", tmp_path / "draws"
    flags = tiny_training_flags(tiny_model, data, str(out), "--num_train_epochs=2", "--do_train", "--seed=5")
    subprocess.run(
        [sys.executable, os.path.join(ROOT, "bench", "bner_recorded.py"), f"--record_to={record}", "--", *flags],
        check=True,
        capture_output=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    run = read_json(out / "run.json")
    head = np.load(f"{record}_head.npz")
    assert [str(label) for label in head["labels"]] == run["labels"]
    assert head["kernel"].shape == (32, len(run["labels"]))  # [hidden, labels]
    assert np.all(head["bias"] == 0) and 0.01 < head["kernel"].std() < 0.03  # untrained: zero bias, normal(0.02) kernel
    with open(f"{record}_batches.json", encoding="utf-8") as f:
        epochs = json.load(f)["epochs"]
    assert len(epochs) == 2
    assert sum(len(epoch) for epoch in epochs) == run["training"]["steps"]
    for epoch in epochs:  # every training sentence once per epoch, batches of at most 16
        assert sorted(i for batch in epoch for i in batch) == list(range(70))
        assert max(len(batch) for batch in epoch) <= 16
    assert epochs[0] != epochs[1]  # reshuffled each epoch


def load_summary_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("wnut17_summary", os.path.join(ROOT, "bench", "wnut17_summary.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_paired_seeds_get_the_interval_of_their_differences():
    summary_module = load_summary_module()

    def row(seed, bner, hf, paired):
        scores = lambda f1: {"dev_f1": f1, "test_f1": f1, "train_seconds": 100.0}  # noqa: E731
        return {"seed": seed, "timed_together": True, "paired": paired, "bner": scores(bner), "huggingface": scores(hf)}

    # Seeds move both systems by points; bner stays 1 above HF on each.
    pairs = [(40.0, 39.0), (44.0, 43.2), (47.0, 45.8)]
    paired = summary_module.summarize([row(i, b, h, True) for i, (b, h) in enumerate(pairs)])
    unpaired = summary_module.summarize([row(i, b, h, False) for i, (b, h) in enumerate(pairs)])
    assert paired["dev_f1"]["bner_minus_huggingface"] == unpaired["dev_f1"]["bner_minus_huggingface"] == pytest.approx(1.0)
    low, high = paired["dev_f1"]["interval_95"]
    assert 0 < low < high < 2  # the seed-to-seed spread cancels
    low, high = unpaired["dev_f1"]["interval_95"]
    assert low < -3 and high > 5
    assert paired["wall_time_ratio_bner_over_hf"] is None
    with pytest.raises(SystemExit, match="summarize them apart"):
        summary_module.summarize([row(0, 40, 39, True), row(1, 44, 43, False)])
