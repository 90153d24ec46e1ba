import os

import numpy as np
import pytest

from bner import model
from bner import optimizer as optimizers
from bner.checkpoints import CheckpointManager
from bner.metadata import EncoderConfig


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
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.json", "ckpt-000000002.npz", "ckpt-000000003.npz"]
    other, other_optimizer = small_tagger()
    state = CheckpointManager(str(tmp_path)).restore(other, other_optimizer)
    assert state == {"best_dev_f1": 0.5, "step": 3}
    for a, b in zip(tagger.weights, other.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_checkpoint_holding_pickled_objects_is_refused(tmp_path):
    tagger, optimizer = small_tagger()
    CheckpointManager(str(tmp_path)).save(1, tagger, optimizer, {})
    path = tmp_path / "ckpt-000000001.npz"
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["model/0"] = np.array([{"evil": 1}], dtype=object)  # unpickling this would run code in a real attack
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match="pickle"):
        CheckpointManager(str(tmp_path)).restore(tagger, optimizer)


def test_only_the_chief_writes(tmp_path):
    tagger, optimizer = small_tagger()
    CheckpointManager(str(tmp_path), writer=False).save(1, tagger, optimizer, {})
    assert os.listdir(tmp_path) == []
