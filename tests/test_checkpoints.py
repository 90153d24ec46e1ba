import os

import numpy as np
import pytest

from bner.model import network as model
from bner.model.metadata import EncoderConfig
from bner.training import optimizer as optimizers
from bner.training.checkpoints import CheckpointManager


def small_tagger():
    tagger = model.build_tagger(EncoderConfig(30, 8, 1, 2, 16, 16), 3)
    optimizer = optimizers.make_optimizer(1e-3, 10, 1)
    optimizer.build(tagger.trainable_variables)
    return tagger, optimizer


def test_save_restore_round_trip_and_keep_only_the_latest(tmp_path):
    tagger, optimizer = small_tagger()
    manager = CheckpointManager(str(tmp_path), keep=2)
    for step in (1, 2, 3):
        manager.save(step, tagger, optimizer, {"best_dev_f1": 0.5})
    manager.wait()
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.json", "ckpt-000000002.npz", "ckpt-000000003.npz"]
    other, other_optimizer = small_tagger()
    state = CheckpointManager(str(tmp_path)).restore(other, other_optimizer)
    assert state == {"best_dev_f1": 0.5, "step": 3}
    for a, b in zip(tagger.weights, other.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_checkpoint_holding_pickled_objects_is_refused(tmp_path):
    tagger, optimizer = small_tagger()
    manager = CheckpointManager(str(tmp_path))
    manager.save(1, tagger, optimizer, {})
    manager.wait()
    path = tmp_path / "ckpt-000000001.npz"
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["model/0"] = np.array([{"evil": 1}], dtype=object)  # unpickling this would run code in a real attack
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match="pickle"):
        CheckpointManager(str(tmp_path)).restore(tagger, optimizer)


def test_only_the_chief_writes(tmp_path):
    tagger, optimizer = small_tagger()
    manager = CheckpointManager(str(tmp_path), writer=False)
    manager.save(1, tagger, optimizer, {})
    manager.wait()
    assert os.listdir(tmp_path) == []


def test_the_best_checkpoint_is_kept_and_holds_the_weights_of_its_step(tmp_path):
    """Written in the background from a copy: weights changed after save() are not in the file."""
    tagger, optimizer = small_tagger()
    manager = CheckpointManager(str(tmp_path), keep=1)
    kernel = tagger.get_layer("logits").kernel
    at_step_2 = None
    for step in (1, 2, 3, 4):
        kernel.assign(np.full(kernel.shape, float(step), np.float32))
        manager.save(step, tagger, optimizer, {"step_value": step}, best_step=2 if step >= 2 else None)
        if step == 2:
            at_step_2 = [np.array(w) for w in tagger.weights]
        kernel.assign(np.zeros(kernel.shape, np.float32))  # at once: the write in flight keeps its copy
    manager.wait()
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.json", "ckpt-000000002.npz", "ckpt-000000004.npz"]
    assert manager.best().endswith("ckpt-000000002.npz") and manager.latest().endswith("ckpt-000000004.npz")
    other, _ = small_tagger()
    manager.restore_model(manager.best(), other)
    for a, b in zip(at_step_2, other.weights, strict=True):
        np.testing.assert_array_equal(a, np.asarray(b))
    # A new best unpins the old one.
    manager.save(5, tagger, optimizer, {}, best_step=5)
    manager.wait()
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.json", "ckpt-000000005.npz"]


def test_a_failed_background_write_is_raised(tmp_path, monkeypatch):
    from bner import io

    tagger, optimizer = small_tagger()
    manager = CheckpointManager(str(tmp_path))

    def broken(path, data):
        raise OSError(f"{path}: disk full")

    monkeypatch.setattr(io, "write_bytes", broken)
    manager.save(1, tagger, optimizer, {})
    with pytest.raises(OSError, match="disk full"):
        manager.wait()
    assert manager.latest() is None
