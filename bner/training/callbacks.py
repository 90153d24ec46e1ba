"""The training loop's plugins: progress bar, dev evaluation with best-model keeping, TensorBoard.

Each is a Keras callback driven by :func:`bner.training.loop.run_training`; a benchmark or a user
adds its own the same way (``bner.train(config, callbacks=[...])``).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable

import keras

from bner import io

log = logging.getLogger(__name__)


class ProgressBar(keras.callbacks.Callback):
    """A tqdm bar over all training steps, showing loss, learning rate and pieces/second."""

    def __init__(self, enabled: bool = True):
        super().__init__()
        self.enabled = enabled
        self.bar = None

    def on_train_begin(self, logs=None):
        if not self.enabled:
            return
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.params["steps"], initial=self.params["initial_step"], desc="training", unit="step", dynamic_ncols=True)
        self.pieces = 0

    def on_train_batch_end(self, batch, logs=None):
        if self.bar is None:
            return
        self.pieces += logs.get("real_pieces", 0)
        elapsed = max(self.bar.format_dict["elapsed"], 1e-9)
        self.bar.set_postfix(loss=f"{logs['loss']:.4f}", lr=f"{logs['learning_rate']:.2e}", pieces_s=f"{self.pieces / elapsed:.0f}", refresh=False)
        self.bar.update(1)

    def on_epoch_end(self, epoch, logs=None):
        line = f"epoch {epoch + 1}: loss {logs['loss']:.4f}"
        if "dev_f1" in logs:
            line += f", dev F1 {100 * logs['dev_f1']:.2f}"
        if logs.get("stopped_early"):
            state = self.params["state"]
            line += (f"; no better dev F1 for {state.epochs_without_improvement} epoch(s): stopping early "
                     f"(best {100 * state.best_dev_f1:.2f} at step {state.best_step})")
        if self.bar is not None:
            self.bar.write(line)
        else:
            print(line, flush=True)

    def on_train_end(self, logs=None):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class DevEvaluation(keras.callbacks.Callback):
    """Score the dev set after each epoch and track the best (by entity F1) in the loop state.

    ``score_fn`` returns :class:`bner.inference.evaluate.Scores`; the loop keeps the checkpoint of the
    best step (:mod:`bner.training.checkpoints`). With
    ``patience`` > 0, training stops once that many epochs in a row did not improve on the
    best dev F1 (early stopping). ``model_seconds`` (optional) counts the network's time, so
    the history shows scoring's total beside its forward passes.
    """

    def __init__(
        self,
        score_fn: Callable[[], object],
        patience: int = 0,
        model_seconds: Callable[[], float] | None = None,
    ):
        super().__init__()
        self.score_fn = score_fn
        self.model_seconds = model_seconds  # the forward passes' share of scoring, if the caller counts it
        self.patience = patience

    def on_epoch_end(self, epoch, logs=None):
        state = self.params["state"]
        started = time.perf_counter()
        forward = self.model_seconds() if self.model_seconds else 0.0
        scores = self.score_fn()
        logs["dev_seconds"] = round(time.perf_counter() - started, 2)
        if self.model_seconds:
            logs["dev_forward_seconds"] = round(self.model_seconds() - forward, 2)
        logs["dev_f1"] = scores.f1
        logs["dev_f1_per_type"] = {t: c.f1 for t, c in scores.per_type.items()}
        logs["dev_predicted_entities"] = scores.overall.predicted
        if scores.f1 > state.best_dev_f1:
            state.best_dev_f1, state.best_step = scores.f1, int(logs["step"])
            state.epochs_without_improvement = 0
        else:
            if scores.f1 == state.best_dev_f1:
                state.best_step = int(logs["step"])  # on a tie the later model, trained longer, is kept
            state.epochs_without_improvement += 1
            if self.patience and state.epochs_without_improvement >= self.patience and state.step < self.params["steps"]:
                state.stopped_early = True
                logs["stopped_early"] = True


class HypertuneReport(keras.callbacks.Callback):
    """Dev F1 after each epoch to Vertex AI hyperparameter tuning, as the cloudml-hypertune package reports it."""

    def __init__(self, metric: str):
        super().__init__()
        import hypertune

        self.metric, self.reporter = metric, hypertune.HyperTune()

    def on_epoch_end(self, epoch, logs=None):
        if "dev_f1" in logs:
            self.reporter.report_hyperparameter_tuning_metric(self.metric, logs["dev_f1"], global_step=int(logs["step"]))


class TensorBoardLogs(keras.callbacks.Callback):
    """Loss, learning rate, dev F1 and each type's dev F1 as TensorBoard scalars (needs TensorFlow's summary writer).

    Logs for an object store (``gs://...``) are written to a local folder and uploaded at
    each epoch's end: TensorFlow's own writer reaches only ``gs://`` and only the real
    service, and an event file re-uploaded whole is never seen half-written.
    """

    def __init__(self, log_dir: str, every: int = 10):
        super().__init__()
        self.log_dir, self.every, self.writer, self.local_dir = log_dir, every, None, None

    def on_train_begin(self, logs=None):
        try:
            import tensorflow as tf
        except ImportError:
            log.info("TensorFlow is not installed: no TensorBoard logs")
            return
        self.tf = tf
        if io.is_local(self.log_dir):
            target = self.log_dir
        else:
            self.local_dir = tempfile.mkdtemp(prefix="bner-logs-")
            target = self.local_dir
        self.writer = tf.summary.create_file_writer(target)

    def _write(self, step, values):
        if self.writer is None:
            return
        with self.writer.as_default(step=step):
            for name, value in values.items():
                self.tf.summary.scalar(name, value)

    def _upload(self):
        if self.local_dir is not None:
            self.writer.flush()
            io.upload_folder(self.local_dir, self.log_dir)

    def on_train_batch_end(self, batch, logs=None):
        if batch % self.every == 0:
            self._write(batch, {"train/loss": logs["loss"], "train/learning_rate": logs["learning_rate"]})

    def on_epoch_end(self, epoch, logs=None):
        values = {"epoch/loss": logs["loss"]}
        if "dev_f1" in logs:
            values["dev/f1"] = logs["dev_f1"]
        for entity_type, f1 in logs.get("dev_f1_per_type", {}).items():
            values[f"dev_f1_per_type/{entity_type}"] = f1
        self._write(int(logs["step"]), values)
        self._upload()

    def on_train_end(self, logs=None):
        if self.writer is not None:
            self.writer.flush()
            self._upload()
            if self.local_dir is not None:
                self.writer.close()
                shutil.rmtree(self.local_dir, ignore_errors=True)
