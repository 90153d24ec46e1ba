"""Two worker processes on 127.0.0.1 under MultiWorkerMirroredStrategy, as TF_CONFIG sets them up.

The workers exchange gradients over gRPC collectives; the test compares the chief's
losses with one process training on the same global batches.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys

import pytest

from tests.cli import read_json, run_task, tiny_training_flags
from tests.conftest import write_synthetic_data

# Summation order differs between one process and an all-reduce over two.
LOSS_TOLERANCE = 1e-4


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def run_two_workers(flags: list[str], timeout: int = 600) -> list[subprocess.CompletedProcess]:
    workers = [f"127.0.0.1:{p}" for p in free_ports(2)]
    processes = []
    for index in range(2):
        config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "TF_CONFIG": json.dumps(config), "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow"}
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "bner.ner.task", "--progress=false", *flags],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
        )
    results = []
    try:
        for p in processes:
            out, err = p.communicate(timeout=timeout)
            results.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
    for i, r in enumerate(results):
        assert r.returncode == 0, f"worker {i} failed:\n{r.stdout}\n{r.stderr}"
    return results


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    return write_synthetic_data(tmp_path_factory.mktemp("mw_data"), train=96, dev=16, test=16)


def test_two_workers_train_like_one_process_and_only_the_chief_writes(tiny_model, small_data, tmp_path):
    # No dropout, float32: the two runs must then compute the same updates.
    common = ["--do_train", "--do_eval", "--num_train_epochs=2", "--dropout=0", "--save_checkpoints_steps=4", "--keep_checkpoints"]
    shared = tmp_path / "two_workers"
    chief, other = run_two_workers(tiny_training_flags(tiny_model, small_data, str(shared), *common))
    single = tmp_path / "one_process"
    run_task(*tiny_training_flags(tiny_model, small_data, str(single), *common))

    # Both workers stepped through the whole run, over 2 replicas sharing each global batch of 16.
    for result in (chief, other):
        assert "on 2 replica(s), global batch 16" in result.stdout, result.stdout
    steps = read_json(single / "run.json")["training"]["steps"]
    assert f"trained to step {steps} " in chief.stdout and f"trained to step {steps} " in other.stdout
    assert "the chief writes results" in other.stdout

    two, one = read_json(shared / "run.json")["training"], read_json(single / "run.json")["training"]
    assert two["replicas"] == 2 and one["replicas"] == 1
    for a, b in zip(two["history"], one["history"], strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=LOSS_TOLERANCE)
    assert read_json(shared / "eval_results.json")["f1"] == pytest.approx(read_json(single / "eval_results.json")["f1"], abs=0.02)

    # The chief's export loads and labels text.
    import bner

    tagger = bner.load(str(shared / "export" / "bner"))
    assert tagger.labels == read_json(single / "model" / "metadata.json")["labels"]

    # Interrupted after a mid-run checkpoint (the last one and the finished model gone), then run
    # again with the same flags: both workers resume from the chief's checkpoint and finish the run.
    record = read_json(shared / "run.json")
    record["status"] = "running"
    (shared / "run.json").write_text(json.dumps(record))
    pointer = read_json(shared / "checkpoints" / "checkpoint.json")
    (shared / "checkpoints" / "checkpoint.json").write_text(json.dumps({"checkpoints": pointer["checkpoints"][:-1]}))
    shutil.rmtree(shared / "model")
    resumed = run_two_workers(tiny_training_flags(tiny_model, small_data, str(shared), *common))
    for result in resumed:
        assert "resuming from" in result.stdout
        assert f"trained to step {steps} " in result.stdout
    assert read_json(shared / "run.json")["training"]["steps"] == steps
    assert read_json(shared / "run.json")["training"]["resumed_from_step"] < steps
