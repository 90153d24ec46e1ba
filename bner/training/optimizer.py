"""AdamW as the Adam paper and PyTorch compute it, with linear warm-up and decay."""

from __future__ import annotations

import keras


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


NO_DECAY = ("bias", "gamma", "beta")  # biases and LayerNorm parameters are not decayed, as in BERT


@keras.saving.register_keras_serializable(package="bner")
class AdamW(keras.optimizers.Optimizer):
    """AdamW with epsilon added to the bias-corrected second moment, as in the Adam paper and PyTorch.

    Keras' Adam divides by ``sqrt(v) + epsilon`` with the *uncorrected* ``v``: an effective
    epsilon of ``epsilon / sqrt(1 - beta_2**t)``, 31x larger at the first step and still 2x
    after 300, so parameters whose gradients are tiny (many, in BERT) move far less than
    PyTorch moves them for a whole fine-tune (docs/history.md has the measurement).

    Weight decay (decoupled, ``w -= lr * wd * w``) is applied in the same per-variable step
    rather than in a pass of its own over every weight, except to variables whose name holds
    one of ``no_decay``. Written on Keras' public optimizer interface (``build`` and
    ``update_step``); the slots of a variable are found by the identity of the variable or of
    the TensorFlow variables behind it, which is what ``update_step`` receives on each backend.
    """

    def __init__(self, learning_rate=0.001, weight_decay: float = 0.01, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-8, no_decay: tuple[str, ...] = NO_DECAY, name: str = "adamw", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)  # no weight_decay: decay is applied here
        self.decay, self.beta_1, self.beta_2, self.epsilon = weight_decay, beta_1, beta_2, epsilon
        self.no_decay = tuple(no_decay)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.momentums = [self.add_variable_from_reference(v, "momentum") for v in variables]
        self.velocities = [self.add_variable_from_reference(v, "velocity") for v in variables]
        self.decays = [bool(self.decay) and not any(n in v.name for n in self.no_decay) for v in variables]
        self.slots = {key: i for i, v in enumerate(variables) for key in _identities(v)}

    def update_step(self, gradient, variable, learning_rate):
        ops = keras.ops
        index = self.slots[id(variable)]
        m, v = self.momentums[index], self.velocities[index]
        dtype = variable.dtype
        lr = ops.cast(learning_rate, dtype)
        gradient = ops.cast(gradient, dtype)
        step = ops.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = ops.cast(self.beta_1, dtype), ops.cast(self.beta_2, dtype)
        if self.decays[index]:
            self.assign_sub(variable, ops.multiply(variable, lr * ops.cast(self.decay, dtype)))
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

        Written as separate ops, the update above makes about ten passes over each weight
        matrix (the 30k-row embedding included, every step); the fused kernel makes one.
        ``ApplyAdam`` adds its epsilon to the uncorrected root, so it gets
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

    def get_config(self):
        return {**super().get_config(), "weight_decay": self.decay, "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon, "no_decay": list(self.no_decay)}


def _fused_update_available() -> bool:
    return keras.backend.backend() == "tensorflow"


def _identities(variable) -> set[int]:
    """What ``update_step`` may be handed for a model variable: the Keras variable, or on TensorFlow the
    ``tf.Variable`` behind it, or one replica's component of a distributed one."""
    found = {id(variable)}
    if keras.backend.backend() == "tensorflow" and isinstance(variable, keras.Variable):
        import tensorflow as tf

        value = variable.value
        found.add(id(value))
        if isinstance(value, tf.distribute.DistributedValues):
            found |= {id(component) for component in value.values}
    return found


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
    if loss_scaling:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer
