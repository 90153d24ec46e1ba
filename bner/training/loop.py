"""The training loop: one visible loop over a planned run's batches, with Keras callbacks as hook points.

The loop takes a :class:`bner.data.batches.BatchPlan` made once for the run and a step
function (:mod:`bner.training.steps`). Checkpoints are written every ``save_checkpoints_steps``
and at each epoch's end (in the background, :mod:`bner.training.checkpoints`); the one of the best
dev score is kept as the run's best model. Callbacks (:mod:`bner.training.callbacks`, or a user's own) see
``on_train_begin`` with ``self.model`` and ``params`` holding the plan, the examples
and the loop state,
``on_epoch_begin``, ``on_train_batch_end`` with the loss, learning rate and real word
pieces of each step, and ``on_epoch_end`` with the epoch's mean loss. A callback that sets ``state.stopped_early``
in ``on_epoch_end`` ends the run after that epoch (its checkpoint says so, so a resumed
run stays stopped).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence

import keras

from bner.data import batches, features
from bner.training.checkpoints import CheckpointManager


@dataclasses.dataclass
class LoopState:
    step: int = 0
    epoch: int = 0
    best_dev_f1: float = -1.0
    best_step: int = -1
    train_seconds: float = 0.0  # optimizer steps and batching only: no evaluation or checkpoint writes
    history: list = dataclasses.field(default_factory=list)
    # The current epoch's losses so far, kept in checkpoints so a resumed epoch's mean is the whole epoch's.
    epoch_loss_sum: float = 0.0
    epoch_loss_steps: int = 0
    resumed_from_step: int = 0  # the step this process started from
    # The training loss over the run: [step, mean loss of the steps since the previous point], about 200 points.
    loss_curve: list = dataclasses.field(default_factory=list)
    curve_loss_sum: float = 0.0
    curve_loss_steps: int = 0
    # Early stopping (bner.training.callbacks.DevEvaluation): epochs since dev F1 last improved, and whether that ended the run.
    epochs_without_improvement: int = 0
    stopped_early: bool = False

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> LoopState:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def run_training(
    model: keras.Model,
    optimizer: keras.optimizers.Optimizer,
    step_fn: Callable[[batches.Batch], float],
    examples: Sequence[features.Example],
    plan: batches.BatchPlan,
    pad_id: int,
    checkpoints: CheckpointManager,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    save_checkpoints_steps: int = 1000,
    steps_per_execution: int = 1,
) -> LoopState:
    """Train from the latest checkpoint (if any) until the plan's last step."""
    saved = checkpoints.restore(model, optimizer) if checkpoints.latest() else None
    state = LoopState.from_json(saved) if saved else LoopState()
    state.resumed_from_step = state.step
    per_epoch, planned = plan.steps_per_epoch, plan.total_steps
    curve_every = max(1, planned // 200)
    callback_list = keras.callbacks.CallbackList(list(callbacks), model=model)
    callback_list.set_params(
        {"steps": planned, "steps_per_epoch": per_epoch, "initial_step": state.step, "state": state, "plan": plan,
         "examples": examples}
    )
    callback_list.on_train_begin()
    try:
        while state.step < planned and not state.stopped_early:
            epoch = state.epoch = state.step // per_epoch
            callback_list.on_epoch_begin(epoch)
            epoch_batches = batches.iterate_batches(examples, plan.epoch(epoch)[state.step - epoch * per_epoch :], pad_id)
            started = time.perf_counter()
            for group in execution_groups(epoch_batches, steps_per_execution, state.step, planned, save_checkpoints_steps):
                results = step_fn.run_group(group) if len(group) > 1 else [step_fn(group[0])]
                for batch, loss in zip(group, results, strict=True):
                    if not math.isfinite(loss):
                        raise FloatingPointError(f"the loss became {loss} at step {state.step + 1}; lower --learning_rate")
                    state.step += 1
                    state.epoch_loss_sum += loss
                    state.epoch_loss_steps += 1
                    state.curve_loss_sum += loss
                    state.curve_loss_steps += 1
                    if state.step % curve_every == 0 or state.step == planned:
                        state.loss_curve.append([state.step, state.curve_loss_sum / state.curve_loss_steps])
                        state.curve_loss_sum, state.curve_loss_steps = 0.0, 0
                    callback_list.on_train_batch_end(
                        state.step, {"loss": loss, "real_pieces": batch.real_pieces, "learning_rate": _current_lr(optimizer)}
                    )
                if state.step % save_checkpoints_steps == 0 and state.step % per_epoch != 0:
                    state.train_seconds += time.perf_counter() - started
                    checkpoints.save(state.step, model, optimizer, state.to_json(), best_step=_best(state))
                    started = time.perf_counter()
            state.train_seconds += time.perf_counter() - started
            mean = state.epoch_loss_sum / state.epoch_loss_steps if state.epoch_loss_steps else float("nan")
            logs = {"loss": mean, "step": state.step}
            # The pause between epochs, part by part, goes into the history: dev scoring and
            # best-model keeping (the callbacks add theirs), the checkpoint.
            paused = time.perf_counter()
            # Each callback gets this very dict (CallbackList would hand them a copy): what they add
            # (dev F1, per-type F1, stopped_early) goes into the run's history.
            for callback in callback_list.callbacks:
                callback.on_epoch_end(epoch, logs)  # dev evaluation updates ``state`` here, early stopping included
            logs["callbacks_seconds"] = round(time.perf_counter() - paused, 2)
            entry = {"epoch": epoch + 1, **logs}
            state.history.append(entry)
            if state.stopped_early and state.curve_loss_steps:
                state.loss_curve.append([state.step, state.curve_loss_sum / state.curve_loss_steps])
                state.curve_loss_sum, state.curve_loss_steps = 0.0, 0
            state.epoch_loss_sum, state.epoch_loss_steps = 0.0, 0
            saving = time.perf_counter()
            # The best model on dev is the checkpoint of its step, kept as long as it is the best.
            checkpoints.save(state.step, model, optimizer, state.to_json(), best_step=_best(state))
            entry["checkpoint_seconds"] = round(time.perf_counter() - saving, 2)
            entry["pause_seconds"] = round(time.perf_counter() - paused, 2)
    finally:
        checkpoints.wait()  # the last checkpoint is complete before anyone reads it
        callback_list.on_train_end()
    return state


def _best(state: LoopState) -> int | None:
    return state.best_step if state.best_step >= 0 else None


def execution_groups(
    batches: Iterable[batches.Batch], size: int, step: int, planned: int, save_every: int
) -> Iterator[list[batches.Batch]]:
    """Consecutive same-shape batches, up to ``size`` per device execution.

    A group never spans a checkpoint step or goes past the planned end; ``step`` is the
    step count before the first batch.
    """
    group: list[batches.Batch] = []
    for batch in batches:
        if step + len(group) >= planned:
            break
        if group and batch.labels.shape != group[0].labels.shape:
            step += len(group)
            yield group
            group = []
        group.append(batch)
        reached = step + len(group)
        if len(group) == size or reached % save_every == 0 or reached >= planned:
            step = reached
            yield group
            group = []
    if group:
        yield group


def _current_lr(optimizer) -> float:
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    return float(keras.ops.convert_to_numpy(inner.learning_rate))
