"""Saving and restoring training state: resumable checkpoints of a run in progress.

Training checkpoints hold the model's and the optimizer's variables plus the loop's
state (global step, best dev score) in one ``.npz`` file of plain NumPy arrays (NumPy's
loader refuses pickled objects), so they are backend-neutral: a run started under JAX can
be resumed or exported under TensorFlow. A small ``checkpoint.json`` names the latest
complete checkpoint and is replaced atomically after the checkpoint itself is written,
so an interrupted write is never picked up. It also names the checkpoint of the best dev
score so far, which is kept beyond ``keep``: the run's best model is that checkpoint's
weights, so keeping it costs no write of its own. Checkpoints are written in the
background (the variables are copied first), so training goes on while one is written;
one write is in flight at most. The trained model a run leaves behind is
:mod:`bner.folders.model_folder`'s business.
"""

from __future__ import annotations

import concurrent.futures
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
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._writing: concurrent.futures.Future | None = None

    def _pointer(self) -> dict:
        path = io.join(self.folder, POINTER)
        if not io.exists(path):
            return {"checkpoints": []}
        return json.loads(io.read_text(path))

    def latest(self) -> str | None:
        checkpoints = self._pointer()["checkpoints"]
        return io.join(self.folder, checkpoints[-1]) if checkpoints else None

    def best(self) -> str | None:
        """The checkpoint pinned as the best on dev (see :meth:`save`), if any."""
        name = self._pointer().get("best")
        return io.join(self.folder, name) if name else None

    def save(
        self, step: int, model: keras.Model, optimizer: keras.optimizers.Optimizer, state: dict, best_step: int | None = None
    ) -> None:
        """Copy the variables now and write them in the background; ``best_step``'s checkpoint is kept beyond ``keep``.

        The previous write is waited for first, and its error (if any) raised here.
        """
        if not self.writer:
            return
        # model.variables, not model.weights: the dropout layers' seed-generator states are
        # variables too, and a resumed run draws the masks it would have drawn. Copies: the
        # optimizer updates the variables in place while the file is written.
        arrays = {f"model/{i}": np.array(keras.ops.convert_to_numpy(v), copy=True) for i, v in enumerate(model.variables)}
        arrays.update(
            {f"optimizer/{i}": np.array(keras.ops.convert_to_numpy(v), copy=True) for i, v in enumerate(optimizer.variables)}
        )
        arrays["state"] = np.frombuffer(json.dumps({**state, "step": step}).encode(), dtype=np.uint8)
        self.wait()
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="bner-checkpoint")
        self._writing = self._pool.submit(self._write, step, arrays, best_step)

    def wait(self) -> None:
        """Return once the checkpoint being written (if any) is complete; raise its error."""
        writing, self._writing = self._writing, None
        if writing is not None:
            writing.result()

    def _write(self, step: int, arrays: dict, best_step: int | None) -> None:
        buffer = bytes_io.BytesIO()
        np.savez(buffer, **arrays)
        name = f"ckpt-{step:09d}.npz"
        io.write_bytes(io.join(self.folder, name), buffer.getvalue())
        pointer = self._pointer()
        names = [n for n in pointer["checkpoints"] if n != name] + [name]
        best = f"ckpt-{best_step:09d}.npz" if best_step is not None and best_step >= 0 else pointer.get("best")
        kept = {"checkpoints": names[-self.keep :]}
        if best in names or best == pointer.get("best"):
            kept["best"] = best
        # The pointer first: an interruption between the two leaves an extra file, never a pointer to nothing.
        io.write_text(io.join(self.folder, POINTER), json.dumps(kept, indent=1))
        for old in {*names, pointer.get("best")} - {*kept["checkpoints"], kept.get("best"), None}:
            io.remove(io.join(self.folder, old))

    def restore(self, model: keras.Model, optimizer: keras.optimizers.Optimizer) -> dict | None:
        """Load the latest checkpoint into ``model`` and ``optimizer``; its loop state, or None."""
        path = self.latest()
        if path is None:
            return None
        with np.load(bytes_io.BytesIO(io.read_bytes(path))) as data:  # refuses pickled objects (NumPy's default)
            _assign(data, path, model, optimizer)
            state = json.loads(bytes(data["state"]).decode())
        log.info("resumed from %s (step %d)", path, state["step"])
        return state

    def restore_model(self, path: str, model: keras.Model) -> None:
        """Load only the model's variables of the checkpoint at ``path`` (the best model, say)."""
        with np.load(bytes_io.BytesIO(io.read_bytes(path))) as data:
            _assign(data, path, model, None)


def _assign(data, path: str, model: keras.Model, optimizer: keras.optimizers.Optimizer | None) -> None:
    parts = [("model", model.variables)] + ([("optimizer", optimizer.variables)] if optimizer is not None else [])
    for prefix, variables in parts:
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
