"""Fine-tuning: distribution strategy, precision, optimizer, and the training loop.

One loop serves every setup. Under TensorFlow, each step runs through
``strategy.run`` (default, mirrored, multi-worker and TPU strategies alike, since
Keras' ``fit`` fails under ``MultiWorkerMirroredStrategy``); under JAX the step is
Keras' compiled ``train_on_batch``. Checkpointing, dev evaluation, TensorBoard and the
progress bar are Keras callbacks the loop drives.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence

import keras
import numpy as np

from bner import features, io
from bner.checkpoints import CheckpointManager

log = logging.getLogger(__name__)

# ---------------------------------------------------------------- hardware


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AMX or AVX-512 BF16)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def select_precision(requested: str, on_tpu: bool = False) -> str:
    """The Keras dtype policy: ``auto`` picks bfloat16 where the hardware computes it natively."""
    if requested != "auto":
        return requested
    if on_tpu:
        return "mixed_bfloat16"
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            capability = details.get("compute_capability", (0, 0))
            return "mixed_bfloat16" if capability >= (8, 0) else "mixed_float16"
        return "mixed_bfloat16" if cpu_has_bf16() else "float32"
    if backend == "jax":
        import jax

        return "mixed_bfloat16" if jax.default_backend() in ("gpu", "tpu") else "float32"
    return "float32"


@dataclasses.dataclass(frozen=True)
class TpuSettings:
    use_tpu: bool = False
    tpu_name: str | None = None
    tpu_zone: str | None = None
    gcp_project: str | None = None
    master: str | None = None
    num_tpu_cores: int = 8


class TpuRuntime:
    """The calls that reach a Cloud TPU, in one place so tests can stand in for the cloud."""

    def __init__(self):
        import tensorflow as tf

        self.tf = tf

    def resolve(self, tpu: str | None, zone: str | None, project: str | None):
        return self.tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu, zone=zone, project=project)

    def initialize(self, resolver):
        """Connect and initialise the TPU system; returns its topology."""
        self.tf.config.experimental_connect_to_cluster(resolver)
        return self.tf.tpu.experimental.initialize_tpu_system(resolver)

    def device_assignment(self, topology, num_replicas: int):
        return self.tf.tpu.experimental.DeviceAssignment.build(topology, num_replicas=num_replicas)

    def strategy(self, resolver, device_assignment):
        return self.tf.distribute.TPUStrategy(resolver, experimental_device_assignment=device_assignment)


def tpu_strategy(tpu: TpuSettings, runtime: TpuRuntime | None = None):
    """TPUStrategy on the TPU the flags name, over ``num_tpu_cores`` of its cores."""
    runtime = runtime or TpuRuntime()
    resolver = runtime.resolve(tpu.tpu_name or tpu.master, tpu.tpu_zone, tpu.gcp_project)
    topology = runtime.initialize(resolver)
    available = topology.num_tasks * topology.num_tpus_per_task
    if not 0 < tpu.num_tpu_cores <= available:
        raise ValueError(f"--num_tpu_cores={tpu.num_tpu_cores}, but the TPU has {available} cores")
    # All cores: TPUStrategy's own layout. Fewer: one replica on each of the first N.
    assignment = None if tpu.num_tpu_cores == available else runtime.device_assignment(topology, tpu.num_tpu_cores)
    return runtime.strategy(resolver, assignment)


def select_strategy(tpu: TpuSettings = TpuSettings(), tpu_runtime: TpuRuntime | None = None):
    """TPU flags → TPUStrategy; ``TF_CONFIG`` → MultiWorkerMirroredStrategy; several GPUs → MirroredStrategy; else default."""
    import tensorflow as tf

    if tpu.use_tpu:
        return tpu_strategy(tpu, tpu_runtime)
    if os.environ.get("TF_CONFIG"):
        return tf.distribute.MultiWorkerMirroredStrategy()
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def is_chief(tf_config: str | None = None) -> bool:
    """Whether this process writes checkpoints, results and the export.

    Read from ``TF_CONFIG`` (as Vertex AI and Kubernetes operators set it), so the
    answer is the same before, during and after training and needs no TensorFlow: the
    ``chief`` task, else worker 0 of a cluster without one; a process outside any
    cluster is its own chief.
    """
    raw = os.environ.get("TF_CONFIG") if tf_config is None else tf_config
    if not raw:
        return True
    config = json.loads(raw)
    task = config.get("task") or {}
    if not task.get("type"):
        return True
    if task["type"] == "chief":
        return True
    return task["type"] == "worker" and int(task.get("index", 0)) == 0 and "chief" not in config.get("cluster", {})


# ---------------------------------------------------------------- optimizer


@keras.saving.register_keras_serializable(package="bner")
class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 to ``peak`` over ``warmup_steps``, then linear decay to 0 at ``total_steps``."""

    def __init__(self, peak: float, warmup_steps: int, total_steps: int):
        self.peak = peak
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        warmup = keras.ops.cast(max(self.warmup_steps, 1), "float32")
        decay = keras.ops.cast(max(self.total_steps - self.warmup_steps, 1), "float32")
        rising = (step + 1.0) / warmup
        falling = (keras.ops.cast(self.total_steps, "float32") - step) / decay
        factor = keras.ops.where(step < self.warmup_steps, rising, falling)
        return self.peak * keras.ops.clip(factor, 0.0, 1.0)

    def get_config(self):
        return {"peak": self.peak, "warmup_steps": self.warmup_steps, "total_steps": self.total_steps}


@keras.saving.register_keras_serializable(package="bner")
class AdamW(keras.optimizers.AdamW):
    """AdamW with epsilon added to the bias-corrected second moment, as in the Adam paper and PyTorch.

    Keras' Adam divides by ``sqrt(v) + epsilon`` with the *uncorrected* ``v``: an effective
    epsilon of ``epsilon / sqrt(1 - beta_2**t)``, 31x larger at the first step and still 2x
    after 300. Parameters whose gradients are around 1e-7 (many, in BERT) then move far
    less than they should for a whole fine-tune. Measured on MiniLM with identical
    gradients: updates 21% apart from PyTorch's after three steps with Keras' form, and
    WNUT-17 F1 2–4 points lower.

    Weight decay (decoupled, ``w -= lr * wd * w``) is applied in the same per-variable
    step. Keras' own pass ahead of the update computes ``w * wd * lr`` in two
    multiplications, a third full pass over each weight, a sizeable cost for the
    embedding matrix on a CPU. (Multiplying by ``1 - lr * wd`` instead would be cheaper
    still but rounds that factor to float32's spacing near 1, 6e-8: the decay would be
    off by 5% at lr 5e-5 and vanish below lr 3e-6.)
    """

    def __init__(self, *args, amsgrad: bool = False, **kwargs):
        if amsgrad:
            raise ValueError("bner's AdamW does not implement amsgrad")
        super().__init__(*args, **kwargs)

    def _apply_weight_decay(self, variables):
        pass  # done in update_step

    def update_step(self, gradient, variable, learning_rate):
        ops = keras.ops
        dtype = variable.dtype
        lr = ops.cast(learning_rate, dtype)
        gradient = ops.cast(gradient, dtype)
        step = ops.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = ops.cast(self.beta_1, dtype), ops.cast(self.beta_2, dtype)
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        if self.weight_decay and self._use_weight_decay(variable):
            self.assign_sub(variable, ops.multiply(variable, lr * ops.cast(self.weight_decay, dtype)))
        if _fused_update_available():
            self._fused_tensorflow_update(gradient, variable, m, v, lr, beta_1, beta_2, step)
            return
        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - beta_1))
        self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), 1 - beta_2))
        # lr * m_hat / (sqrt(v_hat) + eps), with the bias corrections folded into scalars.
        step_size = lr / (1 - ops.power(beta_1, step))
        root_correction = 1 / ops.sqrt(1 - ops.power(beta_2, step))
        denominator = ops.add(ops.multiply(ops.sqrt(v), root_correction), self.epsilon)
        self.assign_sub(variable, ops.divide(ops.multiply(m, step_size), denominator))

    def _fused_tensorflow_update(self, gradient, variable, m, v, lr, beta_1, beta_2, step):
        """The same update as one TensorFlow ``ApplyAdam`` kernel per variable.

        Written as separate ops, the update above makes about ten passes over each
        weight matrix (and over the 30k-row embedding every step); the fused kernel makes
        one. ``ApplyAdam`` adds its epsilon to the uncorrected root, so it gets
        ``epsilon * sqrt(1 - beta_2**t)``, which is exactly the update above.
        """
        import tensorflow as tf

        beta_2_power = tf.pow(beta_2, step)
        tf.raw_ops.ResourceApplyAdam(
            var=_tf_variable(variable).handle,
            m=_tf_variable(m).handle,
            v=_tf_variable(v).handle,
            beta1_power=tf.pow(beta_1, step),
            beta2_power=beta_2_power,
            lr=lr,
            beta1=beta_1,
            beta2=beta_2,
            epsilon=tf.cast(self.epsilon, variable.dtype) * tf.sqrt(1 - beta_2_power),
            grad=tf.convert_to_tensor(gradient),
        )


def _fused_update_available() -> bool:
    return keras.backend.backend() == "tensorflow"


def _tf_variable(variable):
    """The ``tf.Variable`` behind a Keras variable (the TensorFlow optimizer passes either)."""
    return variable.value if isinstance(variable, keras.Variable) else variable


def make_optimizer(
    learning_rate: float,
    total_steps: int,
    warmup_steps: int,
    weight_decay: float = 0.01,
    clip_norm: float | None = None,
    loss_scaling: bool = False,
    epsilon: float = 1e-8,
) -> keras.optimizers.Optimizer:
    """AdamW (see :class:`AdamW`) with linear warm-up/decay; no weight decay on LayerNorm parameters and biases."""
    optimizer = AdamW(
        learning_rate=WarmupLinearDecay(learning_rate, warmup_steps, total_steps),
        weight_decay=weight_decay,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=epsilon,
        global_clipnorm=clip_norm,
    )
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    if loss_scaling:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


# ---------------------------------------------------------------- steps


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
            self._step = tf.function(self._distributed_step, input_signature=signature)
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

    def __call__(self, batch: features.Batch) -> float:
        count = self.tf.constant(max(int((batch.labels >= 0).sum()), 1), self.tf.float32)
        inputs, labels = self._distribute(batch.inputs, batch.labels, row_axis=0)
        return float(self._step(inputs, labels, count))

    def run_group(self, batches: Sequence[features.Batch]) -> list[float]:
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

    def __call__(self, batch: features.Batch) -> float:
        weights = (batch.labels >= 0).astype("float32")
        labels = np.where(batch.labels >= 0, batch.labels, 0)
        return float(self.model.train_on_batch(batch.inputs, labels, sample_weight=weights))

    def run_group(self, batches: Sequence[features.Batch]) -> list[float]:
        return [self(b) for b in batches]


# ---------------------------------------------------------------- loop


@dataclasses.dataclass(frozen=True)
class LoopSettings:
    batch_size: int = 32
    num_epochs: float = 3.0
    seed: int = 42
    save_checkpoints_steps: int = 1000
    drop_remainder: bool = False
    steps_per_execution: int = 1  # --iterations_per_loop on TPUs


@dataclasses.dataclass
class LoopState:
    step: int = 0
    epoch: int = 0
    best_dev_f1: float = -1.0
    best_step: int = -1
    train_seconds: float = 0.0  # optimizer steps and batching only: no evaluation or checkpoint writes
    history: list = dataclasses.field(default_factory=list)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def steps_per_epoch(examples: Sequence[features.Example], settings: LoopSettings, buckets: Sequence[int]) -> int:
    return len(
        features.plan_batches([len(e) for e in examples], settings.batch_size, buckets, 0, settings.drop_remainder)
    )


def total_steps(per_epoch: int, num_epochs: float) -> int:
    return max(1, math.ceil(per_epoch * num_epochs))


def run_training(
    model: keras.Model,
    optimizer: keras.optimizers.Optimizer,
    step_fn: Callable[[features.Batch], float],
    examples: Sequence[features.Example],
    settings: LoopSettings,
    buckets: Sequence[int],
    pad_id: int,
    checkpoints: CheckpointManager,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> LoopState:
    """Train from the latest checkpoint (if any) until the planned number of steps.

    Batches of an epoch are shuffled with ``seed + epoch``, so a resumed run sees the
    same batches it would have seen without the interruption.
    """
    per_epoch = steps_per_epoch(examples, settings, buckets)
    planned = total_steps(per_epoch, settings.num_epochs)
    saved = checkpoints.restore(model, optimizer) if checkpoints.latest() else None
    state = LoopState(**{k: v for k, v in saved.items() if k in LoopState.__dataclass_fields__}) if saved else LoopState()
    callback_list = keras.callbacks.CallbackList(list(callbacks), model=model)
    params = {"steps": planned, "steps_per_epoch": per_epoch, "initial_step": state.step, "state": state}
    callback_list.set_params(params)
    callback_list.on_train_begin()
    try:
        while state.step < planned:
            epoch = state.step // per_epoch
            state.epoch = epoch
            callback_list.on_epoch_begin(epoch)
            skip = state.step - epoch * per_epoch
            losses = []
            started = time.perf_counter()
            batches = features.iterate_batches(
                examples,
                settings.batch_size,
                buckets,
                pad_id,
                shuffle_seed=settings.seed + epoch,
                drop_remainder=settings.drop_remainder,
                skip=skip,
                group=settings.steps_per_execution,
            )
            for group in execution_groups(batches, settings.steps_per_execution, state.step, planned, settings.save_checkpoints_steps):
                results = step_fn.run_group(group) if len(group) > 1 else [step_fn(group[0])]
                for batch, loss in zip(group, results, strict=True):
                    if not math.isfinite(loss):
                        raise FloatingPointError(f"the loss became {loss} at step {state.step + 1}; lower --learning_rate")
                    losses.append(loss)
                    state.step += 1
                    callback_list.on_train_batch_end(
                        state.step, {"loss": loss, "real_pieces": batch.real_pieces, "learning_rate": _current_lr(optimizer)}
                    )
                if state.step % settings.save_checkpoints_steps == 0 and state.step % per_epoch != 0:
                    state.train_seconds += time.perf_counter() - started
                    checkpoints.save(state.step, model, optimizer, state.to_json())
                    started = time.perf_counter()
            state.train_seconds += time.perf_counter() - started
            logs = {"loss": float(np.mean(losses)) if losses else float("nan"), "step": state.step}
            callback_list.on_epoch_end(epoch, logs)  # dev evaluation updates ``state`` here
            state.history.append({"epoch": epoch + 1, **logs})
            checkpoints.save(state.step, model, optimizer, state.to_json())
    finally:
        callback_list.on_train_end()
    return state


def execution_groups(
    batches: Iterable[features.Batch], size: int, step: int, planned: int, save_every: int
) -> Iterator[list[features.Batch]]:
    """Consecutive same-shape batches, up to ``size`` per device execution.

    A group never spans a checkpoint step or goes past the planned end; ``step`` is the
    step count before the first batch.
    """
    group: list[features.Batch] = []
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


# ---------------------------------------------------------------- callbacks


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
        if self.bar is not None:
            self.bar.write(line)
        else:
            print(line, flush=True)

    def on_train_end(self, logs=None):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class DevEvaluation(keras.callbacks.Callback):
    """Score the dev set after each epoch; keep the best model (by entity F1) through ``on_best``."""

    def __init__(self, score_fn: Callable[[], float], on_best: Callable[[int], None]):
        super().__init__()
        self.score_fn = score_fn
        self.on_best = on_best

    def on_epoch_end(self, epoch, logs=None):
        state: LoopState = self.params["state"]
        f1 = self.score_fn()
        logs["dev_f1"] = f1
        if f1 > state.best_dev_f1:
            state.best_dev_f1, state.best_step = f1, int(logs["step"])
            self.on_best(state.best_step)


class TensorBoardLogs(keras.callbacks.Callback):
    """Loss, learning rate and dev F1 as TensorBoard scalars (needs TensorFlow's summary writer).

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
        self._write(int(logs["step"]), values)
        self._upload()

    def on_train_end(self, logs=None):
        if self.writer is not None:
            self.writer.flush()
            self._upload()
            if self.local_dir is not None:
                self.writer.close()
                shutil.rmtree(self.local_dir, ignore_errors=True)


def write_run_record(output_dir: str, record: dict) -> None:
    io.write_text(io.join(output_dir, "run.json"), json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
