"""Saving and restoring training state: resumable checkpoints of a run in progress.

Training checkpoints hold the model's and the optimizer's variables plus the loop's
state (global step, best dev score) in one ``.npz`` file of plain NumPy arrays (NumPy's
loader refuses pickled objects), so they are backend-neutral: a run started under JAX can
be resumed or exported under TensorFlow. A small ``checkpoint.json`` names the latest
complete checkpoint and is replaced atomically after the checkpoint itself is written,
so an interrupted write is never picked up. The trained model a run leaves behind is
:mod:`bner.model_folder`'s business.
"""

from __future__ import annotations

import io as bytes_io
import json
import logging

import keras
import numpy as np

from bner import io

log = logging.getLogger(__name__)

POINTER = "checkpoint.json"


class CheckpointManager:
    def __init__(self, folder: str, keep: int = 2, writer: bool = True):
        self.folder = folder
        self.keep = keep
        self.writer = writer  # only the chief of a multi-worker job writes

    def _pointer(self) -> dict:
        path = io.join(self.folder, POINTER)
        if not io.exists(path):
            return {"checkpoints": []}
        return json.loads(io.read_text(path))

    def latest(self) -> str | None:
        checkpoints = self._pointer()["checkpoints"]
        return io.join(self.folder, checkpoints[-1]) if checkpoints else None

    def save(self, step: int, model: keras.Model, optimizer: keras.optimizers.Optimizer, state: dict) -> None:
        if not self.writer:
            return
        # model.variables, not model.weights: the dropout layers' seed-generator states are
        # variables too, and a resumed run draws the masks it would have drawn.
        arrays = {f"model/{i}": np.asarray(keras.ops.convert_to_numpy(v)) for i, v in enumerate(model.variables)}
        arrays.update(
            {f"optimizer/{i}": np.asarray(keras.ops.convert_to_numpy(v)) for i, v in enumerate(optimizer.variables)}
        )
        arrays["state"] = np.frombuffer(json.dumps({**state, "step": step}).encode(), dtype=np.uint8)
        buffer = bytes_io.BytesIO()
        np.savez(buffer, **arrays)
        name = f"ckpt-{step:09d}.npz"
        io.write_bytes(io.join(self.folder, name), buffer.getvalue())
        pointer = self._pointer()
        names = [n for n in pointer["checkpoints"] if n != name] + [name]
        # The pointer first: an interruption between the two leaves an extra file, never a pointer to nothing.
        io.write_text(io.join(self.folder, POINTER), json.dumps({"checkpoints": names[-self.keep :]}, indent=1))
        for old in names[: -self.keep]:
            io.remove(io.join(self.folder, old))

    def restore(self, model: keras.Model, optimizer: keras.optimizers.Optimizer) -> dict | None:
        """Load the latest checkpoint into ``model`` and ``optimizer``; its loop state, or None."""
        path = self.latest()
        if path is None:
            return None
        with np.load(bytes_io.BytesIO(io.read_bytes(path))) as data:  # refuses pickled objects (NumPy's default)
            saved_model_arrays = sum(1 for k in data.files if k.startswith("model/"))
            # Checkpoints of bner 0.1.0 hold model.weights only (no dropout seed states).
            model_variables = model.weights if saved_model_arrays == len(model.weights) else model.variables
            for prefix, variables in (("model", model_variables), ("optimizer", optimizer.variables)):
                count = sum(1 for k in data.files if k.startswith(prefix + "/"))
                if count != len(variables):
                    raise ValueError(
                        f"{path}: holds {count} {prefix} variables, the current run has {len(variables)}; "
                        "it was written by a different model or settings (use a new --output_dir)"
                    )
                for i, variable in enumerate(variables):
                    value = data[f"{prefix}/{i}"]
                    if tuple(value.shape) != tuple(variable.shape):
                        raise ValueError(f"{path}: {prefix} variable {i} has shape {value.shape}, expected {variable.shape}")
                    variable.assign(value)
            state = json.loads(bytes(data["state"]).decode())
        log.info("resumed from %s (step %d)", path, state["step"])
        return state
