"""gs:// everywhere, against a local Cloud Storage emulator (no cloud account, no network).

The emulator (``gcp-storage-emulator``) runs in this process on 127.0.0.1; ``gcsfs``
reaches it through ``STORAGE_EMULATOR_HOST``, which subprocesses inherit, so the CLI
and the server run exactly as a user would run them against a bucket.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time

import pytest

if importlib.util.find_spec("gcsfs") is None:  # imported only once the emulator settings are in place
    pytest.skip("gcsfs is not installed", allow_module_level=True)
emulator = pytest.importorskip("gcp_storage_emulator.server")

from bench.common import free_port  # noqa: E402
from bner import io  # noqa: E402
from bner.folders import exports as export  # noqa: E402
from bner.model import network as model  # noqa: E402
from bner.model import pretrained as checkpoints  # noqa: E402
from tests import bert_fixtures as bf  # noqa: E402
from tests.cli import run_task, tiny_training_flags  # noqa: E402

BUCKET = "bner-test"


@pytest.fixture(scope="module")
def bucket():
    port = free_port()
    server = emulator.create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET)
    server.start()
    settings = {
        "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{port}",
        # gcsfs' newer client asks a gRPC control plane for the bucket layout, which the emulator lacks.
        "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
        # No credentials to look for (fsspec reads FSSPEC_<PROTOCOL>_<ARGUMENT> in subprocesses).
        "FSSPEC_GS_TOKEN": "anon",
    }
    saved = {k: os.environ.get(k) for k in settings}
    os.environ.update(settings)
    import fsspec

    fsspec.config.conf.setdefault("gs", {})["token"] = "anon"
    try:
        yield f"gs://{BUCKET}"
    finally:
        server.stop()
        fsspec.config.conf["gs"].pop("token", None)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def upload(local_folder, remote: str) -> str:
    io.upload_folder(str(local_folder), remote)
    return remote


def test_train_export_and_serve_with_gs_paths(bucket, tiny_model, synthetic_data, tmp_path):
    model_url = upload(tiny_model, f"{bucket}/models/tiny")
    data_url = upload(synthetic_data, f"{bucket}/data/synthetic")
    run_url = f"{bucket}/runs/first"
    flags = tiny_training_flags(model_url, data_url, run_url, "--do_train", "--do_eval", "--do_export")
    run_task(*flags, "--save_checkpoints_steps=10", "--keep_checkpoints")

    for name in ("run.json", "eval_results.txt", "eval_results.json", "test_results.tsv", "model/metadata.json",
                 "model/README.md", "confusion.json", "learning_curve.png"):
        assert io.exists(io.join(run_url, name)), name
    assert any(n.startswith("events.out.tfevents") for n in io.listdir(io.join(run_url, "logs")))
    assert json.loads(io.read_text(io.join(run_url, "checkpoints", "checkpoint.json")))["checkpoints"]
    version = export.latest_export(io.join(run_url, "export", "bner"))
    assert version.endswith("/1")
    assert set(io.listdir(version)) >= {"saved_model.pb", "variables", "metadata.json", "tokenizer.json"}
    # No staging copies are left beside the versions.
    assert io.listdir(io.join(run_url, "export", "bner")) == ["1"]
    test_f1 = json.loads(io.read_text(io.join(run_url, "eval_results.json")))["f1"]
    assert test_f1 > 0.9

    # Serve straight from the bucket, as the server's --model_dir or METADATA_FILE would.
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "bner.serving", f"--model_dir={io.join(run_url, 'export', 'bner')}", "--host=127.0.0.1", f"--port={port}"],
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        import httpx

        deadline = time.time() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/ner/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.time() > deadline:
                raise AssertionError(f"server did not become ready:\n{server.stdout.read() if server.poll() is not None else ''}")
            time.sleep(0.5)
        reply = httpx.post(f"http://127.0.0.1:{port}/api/ner/recognize", json={"text": "anna kowalski visited lisbon"}, timeout=30)
        assert reply.status_code == 200, reply.text
        entities = {(e["text"], e["type"]) for e in reply.json()["entities"]}
        assert entities == {("anna kowalski", "PER"), ("lisbon", "LOC")}
    finally:
        server.terminate()
        server.wait(timeout=30)

    # Running the same command again finds the finished run in the bucket: nothing to train, no second export.
    again = run_task(*flags)
    assert "holds this run, finished: nothing to train" in again.stdout
    assert export.versions(io.join(run_url, "export", "bner")) == [1]


def test_google_trio_flags_read_from_gs(bucket, tmp_path):
    config = bf.TinyBertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    weights = bf.random_bert_weights(config)
    bf.write_google_checkpoint(tmp_path, config, weights)
    remote = upload(tmp_path, f"{bucket}/google/tiny")
    pretrained = checkpoints.locate_pretrained(
        bert_config_file=f"{remote}/bert_config.json", init_checkpoint=f"{remote}/bert_model.ckpt", vocab_file=f"{remote}/vocab.txt"
    )
    encoder = model.build_encoder(pretrained.config)
    pretrained.load_weights(encoder)
    import numpy as np

    embeddings = encoder.embeddings.token.embeddings.numpy()
    assert np.allclose(embeddings, weights["embeddings.word_embeddings.weight"], atol=1e-6)


def test_a_version_still_being_copied_is_not_picked_up(bucket):
    base = f"{bucket}/partial/export/bner"
    io.write_text(io.join(base, "1", "metadata.json"), "{}")
    # Version 2 has its variables but not yet metadata.json, which is copied last.
    io.write_text(io.join(base, "2", "variables", "variables.index"), "x")
    assert export.versions(base) == [1]
    assert export.latest_export(base).endswith("/1")
    assert export.next_version(base) == 3


def test_staged_upload_copies_the_marker_last_and_cleans_up(bucket, monkeypatch):
    import fsspec

    copied = []
    file_system = type(fsspec.filesystem("gs"))
    original = file_system._cp_file

    async def recording_copy(self, source, target, **kwargs):
        copied.append(target.rsplit("/", 1)[-1])
        return await original(self, source, target, **kwargs)

    monkeypatch.setattr(file_system, "_cp_file", recording_copy)
    final = f"{bucket}/staged/export/m/1"
    with io.staged_directory(final, publish_last=("saved_model.pb", "metadata.json")) as staging:
        for name in ("metadata.json", "saved_model.pb", "tokenizer.json"):
            with open(os.path.join(staging, name), "w") as f:
                f.write(name)
        os.makedirs(os.path.join(staging, "variables"))
        with open(os.path.join(staging, "variables", "variables.index"), "w") as f:
            f.write("v")
    assert copied[-2:] == ["saved_model.pb", "metadata.json"]
    assert io.listdir(f"{bucket}/staged/export/m") == ["1"]
    with pytest.raises(RuntimeError):
        with io.staged_directory(f"{bucket}/staged/export/m/2"):
            raise RuntimeError("interrupted")
    assert io.listdir(f"{bucket}/staged/export/m") == ["1"]
