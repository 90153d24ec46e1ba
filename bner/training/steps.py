"""One optimizer step: under a ``tf.distribute`` strategy (TensorFlow) or Keras' ``train_on_batch`` (JAX).

One step serves every setup. Under TensorFlow, each step runs through ``strategy.run``
(default, mirrored, multi-worker and TPU strategies alike, since Keras' ``fit`` fails
under ``MultiWorkerMirroredStrategy``); under JAX the step is Keras' compiled
``train_on_batch``.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np

from bner.data import batches


def masked_loss(labels, logits):
    """Summed cross-entropy over labelled pieces (labels ≥ 0) and their count."""
    mask = keras.ops.cast(labels >= 0, "float32")
    safe = keras.ops.where(labels >= 0, labels, 0)
    losses = keras.losses.sparse_categorical_crossentropy(safe, logits, from_logits=True)
    return keras.ops.sum(losses * mask), keras.ops.sum(mask)


class TensorFlowStep:
    """One optimizer step under a ``tf.distribute`` strategy.

    The loss of each replica is its summed token loss divided by the labelled tokens of
    the *global* batch, so gradients sum to the global mean on any number of replicas.
    Gradients are summed and clipped to the global norm here (Keras would clip each
    replica's partial gradient), then divided by the replica count because Keras' own
    apply step sums them across replicas once more.

    ``static_shapes`` (TPUs) traces one function per batch shape instead of one with
    unknown dimensions, since XLA compiles fixed shapes only. :meth:`run_group` runs
    several same-shape steps in one call, a loop inside the device program.
    """

    def __init__(self, model, optimizer, strategy, clip_norm: float | None, static_shapes: bool = False):
        import tensorflow as tf

        self.tf = tf
        self.model, self.optimizer, self.strategy, self.clip_norm = model, optimizer, strategy, clip_norm
        self.replicas = strategy.num_replicas_in_sync
        if static_shapes:
            self._step = tf.function(self._distributed_step)
        elif self.replicas == 1:
            # One trace for every bucket length and batch size.
            spec = tf.TensorSpec([None, None], tf.int32)
            signature = [{n: spec for n in ("input_ids", "attention_mask", "token_type_ids")}, spec, tf.TensorSpec([], tf.float32)]
            # No autograph: the step has no tensor-dependent Python control flow to convert,
            # and converting the model's calls costs most of a second of the one-off trace.
            self._step = tf.function(self._distributed_step, input_signature=signature, autograph=False)
        else:
            self._step = tf.function(self._distributed_step, reduce_retracing=True)
        self._steps = tf.function(self._distributed_steps, reduce_retracing=not static_shapes)

    def _replica_step(self, inputs, labels, global_count):
        tf = self.tf
        with tf.GradientTape() as tape:
            logits = self.model(inputs, training=True)
            loss_sum, _ = masked_loss(labels, logits)
            loss = loss_sum / global_count
            scaled = self.optimizer.scale_loss(loss) if hasattr(self.optimizer, "scale_loss") else loss
        variables = self.model.trainable_variables
        # Dense gradients: the global norm of sparse embedding gradients with repeated
        # token ids would be measured on the unsummed slices, i.e. wrongly.
        grads = [tf.convert_to_tensor(g) for g in tape.gradient(scaled, variables)]
        context = tf.distribute.get_replica_context()
        if self.replicas > 1:
            grads = context.all_reduce(tf.distribute.ReduceOp.SUM, grads)
        if self.clip_norm:
            if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
                scale = tf.cast(self.optimizer.dynamic_scale, grads[0].dtype)
                grads, _ = tf.clip_by_global_norm(grads, self.clip_norm * scale)
            else:
                grads, _ = tf.clip_by_global_norm(grads, self.clip_norm)
        if self.replicas > 1:
            grads = [g / self.replicas for g in grads]
        self.optimizer.apply_gradients(zip(grads, variables))
        return loss

    def _distributed_step(self, inputs, labels, global_count):
        per_replica = self.strategy.run(self._replica_step, args=(inputs, labels, global_count))
        return self.strategy.reduce(self.tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    def _distributed_steps(self, inputs, labels, global_counts):
        """Steps over the leading axis of stacked ``[steps, batch, length]`` inputs, in one call."""
        tf = self.tf

        def replica_step_at(i, inputs, labels, global_counts):
            return self._replica_step({k: v[i] for k, v in inputs.items()}, labels[i], global_counts[i])

        count = tf.shape(global_counts)[0]
        losses = tf.TensorArray(tf.float32, size=count)
        for i in tf.range(count):
            per_replica = self.strategy.run(replica_step_at, args=(i, inputs, labels, global_counts))
            losses = losses.write(i, self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None))
        return losses.stack()

    def _distribute(self, inputs: dict[str, np.ndarray], labels: np.ndarray, row_axis: int):
        """Inputs as tensors; with several replicas, each replica's share of the rows."""
        tf = self.tf
        if self.replicas == 1:
            return {k: tf.constant(v) for k, v in inputs.items()}, tf.constant(labels)

        # Every worker builds the same global batch; each replica takes its rows.
        def rows(ctx, array):
            parts = np.array_split(array, ctx.num_replicas_in_sync, axis=row_axis)
            return tf.constant(parts[ctx.replica_id_in_sync_group])

        distributed = {
            k: self.strategy.experimental_distribute_values_from_function(lambda ctx, v=v: rows(ctx, v))
            for k, v in inputs.items()
        }
        return distributed, self.strategy.experimental_distribute_values_from_function(lambda ctx: rows(ctx, labels))

    def __call__(self, batch: batches.Batch) -> float:
        count = self.tf.constant(max(int((batch.labels >= 0).sum()), 1), self.tf.float32)
        inputs, labels = self._distribute(batch.inputs, batch.labels, row_axis=0)
        return float(self._step(inputs, labels, count))

    def run_group(self, batches: Sequence[batches.Batch]) -> list[float]:
        """Several steps on same-shape batches in one device call; their losses."""
        counts = self.tf.constant([max(int((b.labels >= 0).sum()), 1) for b in batches], self.tf.float32)
        stacked = {k: np.stack([b.inputs[k] for b in batches]) for k in batches[0].inputs}
        inputs, labels = self._distribute(stacked, np.stack([b.labels for b in batches]), row_axis=1)
        return [float(x) for x in self._steps(inputs, labels, counts)]


class KerasStep:
    """One optimizer step through Keras' compiled ``train_on_batch`` (the JAX path)."""

    def __init__(self, model, optimizer):
        self.model = model
        model.compile(
            optimizer=optimizer,
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="mean_with_sample_weight"),
        )

    def __call__(self, batch: batches.Batch) -> float:
        weights = (batch.labels >= 0).astype("float32")
        labels = np.where(batch.labels >= 0, batch.labels, 0)
        return float(self.model.train_on_batch(batch.inputs, labels, sample_weight=weights))

    def run_group(self, batches: Sequence[batches.Batch]) -> list[float]:
        return [self(b) for b in batches]
