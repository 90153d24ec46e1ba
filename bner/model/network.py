"""The tagger network: a BERT encoder, dropout and a dense head over each word piece.

Pretrained weights are loaded by :mod:`bner.model.pretrained`. The encoder is KerasHub's ``BertBackbone`` with the two facts KerasHub fixes made
configurable: the feed-forward activation (KerasHub always uses tanh-GELU; Hugging Face's
``"gelu"`` is the exact erf form, 3.9e-3 apart on MiniLM) and the LayerNorm epsilon.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import keras_hub

from bner.model.metadata import INPUTS, EncoderConfig

# ---------------------------------------------------------------- encoder


def gelu_exact(x):
    return keras.activations.gelu(x, approximate=False)


def gelu_tanh(x):
    return keras.activations.gelu(x, approximate=True)


ACTIVATIONS: dict[str, Callable] = {
    "gelu": gelu_exact,  # Hugging Face's meaning of "gelu"
    "gelu_exact": gelu_exact,
    "gelu_new": gelu_tanh,
    "gelu_pytorch_tanh": gelu_tanh,
    "gelu_fast": gelu_tanh,
    "gelu_tanh": gelu_tanh,
    "relu": keras.activations.relu,
}


_TRAINING_ACTIVATIONS: dict[str, Callable] = {}
_SQRT_HALF = 0.7071067811865476  # 1/√2
_INV_SQRT_2PI = 0.3989422804014327  # 1/√(2π)
_SQRT_2_OVER_PI = 0.7978845608028654  # √(2/π)


def training_activation(name: str) -> Callable:
    """The activation ``name`` with its derivative written out, for training on TensorFlow.

    TensorFlow differentiates GELU op by op: the backward pass replays erfc (or tanh), its
    derivative and the products around them as a dozen passes over the
    ``[batch, length, intermediate]`` tensor, about a fifth of a MiniLM step on a CPU. Here
    the forward pass keeps the Gaussian CDF (or the tanh) it computed anyway and the
    gradient is GELU's closed-form derivative, a few element-wise ops. No compiler is
    involved, so a new batch shape costs nothing (XLA, used here before, compiled each
    shape for a quarter of a second and ran slower on this CPU: docs/benchmarks.md).
    Exports keep the plain ops; the values are the same to float rounding (tested).
    """
    if name not in _TRAINING_ACTIVATIONS:
        import tensorflow as tf

        if name in ("gelu", "gelu_exact"):

            @tf.custom_gradient
            def activation(x):
                cdf = 0.5 * tf.math.erfc(-x * _SQRT_HALF)

                def gradient(upstream):
                    return upstream * (cdf + x * (_INV_SQRT_2PI * tf.exp(-0.5 * x * x)))

                return x * cdf, gradient

        elif ACTIVATIONS[name] is gelu_tanh:

            @tf.custom_gradient
            def activation(x):
                t = tf.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x * x * x))

                def gradient(upstream):
                    inner = _SQRT_2_OVER_PI * (1.0 + 0.134145 * x * x)  # d/dx of the tanh's argument
                    return upstream * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * inner)

                return 0.5 * x * (1.0 + t), gradient

        else:
            activation = ACTIVATIONS[name]
        _TRAINING_ACTIVATIONS[name] = activation
    return _TRAINING_ACTIVATIONS[name]


@keras.saving.register_keras_serializable(package="bner")
class Float32MaskDropout(keras.layers.Dropout):
    """Dropout that draws its mask and rescales in float32, whatever the input's dtype.

    On TensorFlow, Keras' dropout draws a bfloat16 input's mask from bfloat16 uniforms
    (multiples of 1/128) and scales by ``1 / (1 - rate)`` rounded to bfloat16: at rate 0.1
    it keeps 89.8% and scales by 1.109, so activations average 0.9966 of their value in
    training while inference uses them whole. PyTorch, and Keras on JAX, keep exactly
    ``1 - rate`` and scale in float32. Here the draw and the scaling are float32 and the
    result is rounded once to the input's dtype.
    """

    def call(self, inputs, training=False):
        if not training or self.rate == 0:
            return inputs
        if self.rate >= 1:
            return keras.ops.zeros_like(inputs)
        if self.noise_shape is not None:
            raise NotImplementedError("Float32MaskDropout draws one mask value per element (no noise_shape)")
        keep = keras.random.uniform(keras.ops.shape(inputs), seed=self.seed_generator) >= self.rate
        kept = keras.ops.cast(inputs, "float32") / (1.0 - self.rate)
        return keras.ops.cast(keras.ops.where(keep, kept, 0.0), inputs.dtype)


@keras.saving.register_keras_serializable(package="bner")
class BertEncoder(keras_hub.models.BertBackbone):
    """KerasHub's BERT backbone with the checkpoint's own activation and LayerNorm epsilon.

    ``fast_activation`` runs the activation with its hand-written derivative on
    TensorFlow (see :func:`training_activation`); it changes speed, not results, and is
    not part of the config.
    """

    def __init__(
        self,
        *args,
        hidden_act: str = "gelu_tanh",
        layer_norm_epsilon: float = 1e-12,
        fast_activation: bool = False,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        if hidden_act not in ACTIVATIONS:
            raise ValueError(f"unsupported hidden_act {hidden_act!r}; expected one of {', '.join(ACTIVATIONS)}")
        fast = fast_activation and keras.backend.backend() == "tensorflow"
        activation = training_activation(hidden_act) if fast else ACTIVATIONS[hidden_act]
        # The functional graph calls these layers again at run time, so swapping the
        # activation and epsilon after construction changes what the model computes.
        self.embeddings_layer_norm.epsilon = layer_norm_epsilon
        # KerasHub builds its dropout layers (attention probabilities included) inside the
        # backbone; they take bner's float32 mask by a class swap, which keeps their seed
        # state and so the weights' structure (a built layer accepts no new sublayers).
        self.embeddings_dropout.__class__ = Float32MaskDropout
        for layer in self.transformer_layers:
            for dropout in (layer._self_attention_layer._dropout_layer, layer._self_attention_dropout, layer._feedforward_dropout):
                dropout.__class__ = Float32MaskDropout
            layer.activation = activation
            layer._feedforward_intermediate_dense.activation = activation
            layer.layer_norm_epsilon = layer_norm_epsilon
            layer._self_attention_layer_norm.epsilon = layer_norm_epsilon
            layer._feedforward_layer_norm.epsilon = layer_norm_epsilon
        self.hidden_act = hidden_act
        self.layer_norm_epsilon = layer_norm_epsilon
        if self.dtype_policy.compute_dtype != self.dtype_policy.variable_dtype:
            self._keep_residuals_in_float32()

    def _keep_residuals_in_float32(self):
        """Under mixed precision, run the residual stream (dropout, add, LayerNorm) in float32.

        Matrix products stay in bfloat16/float16. A bf16 residual stream loses precision at
        every layer; PyTorch's autocast keeps it in float32 (a bf16 matmul output added to an
        fp32 residual promotes), and fine-tuning quality follows that difference. Keras casts
        each layer's inputs to the layer's own compute dtype, so setting these layers to
        float32 is enough.
        """
        float32 = keras.DTypePolicy("float32")
        # Embeddings are looked up and summed in float32 too, as autocast leaves them.
        for layer in (
            self.token_embedding,
            self.position_embedding,
            self.segment_embedding,
            self.embeddings_add,
            self.embeddings_layer_norm,
            self.embeddings_dropout,
        ):
            layer.dtype_policy = float32
        for layer in self.transformer_layers:
            # The block itself (its residual input) in float32; its attention and dense
            # sublayers keep their own bfloat16 policies and cast what they receive.
            layer.dtype_policy = float32
            for sub in (
                layer._self_attention_layer_norm,
                layer._self_attention_dropout,
                layer._feedforward_layer_norm,
                layer._feedforward_dropout,
            ):
                sub.dtype_policy = float32

    def get_config(self):
        return {**super().get_config(), "hidden_act": self.hidden_act, "layer_norm_epsilon": self.layer_norm_epsilon}


def build_encoder(config: EncoderConfig, fast_activation: bool = False) -> BertEncoder:
    return BertEncoder(
        vocabulary_size=config.vocab_size,
        num_layers=config.num_layers,
        num_heads=config.num_heads,
        hidden_dim=config.hidden_size,
        intermediate_dim=config.intermediate_size,
        dropout=config.dropout,
        max_sequence_length=config.max_position_embeddings,
        num_segments=config.type_vocab_size,
        hidden_act=config.hidden_act,
        layer_norm_epsilon=config.layer_norm_eps,
        fast_activation=fast_activation,
        name="encoder",
    )


def build_tagger(
    config: EncoderConfig, num_labels: int, dropout: float | None = None, fast_activation: bool = False
) -> keras.Model:
    """Encoder + dropout + dense head: int32 ``input_ids/attention_mask/token_type_ids`` → float32 logits.

    ``fast_activation`` for training on TensorFlow (see :func:`training_activation`).
    """
    encoder = build_encoder(config, fast_activation)
    encoder.pooled_dense.trainable = False  # the [CLS] pooler plays no part in tagging
    inputs = {name: keras.Input(shape=(None,), dtype="int32", name=name) for name in INPUTS}
    hidden = encoder(
        {
            "token_ids": inputs["input_ids"],
            "padding_mask": inputs["attention_mask"],
            "segment_ids": inputs["token_type_ids"],
        }
    )["sequence_output"]
    hidden = Float32MaskDropout(config.dropout if dropout is None else dropout, name="head_dropout")(hidden)
    # The logits stay float32 under mixed precision so the softmax and loss are stable.
    # The head starts as Hugging Face's token classifier does: normal, std 0.02, not
    # truncated. With Google's truncated normal (std 0.0176 after truncation) bner was 2.5
    # dev F1 behind that recipe on WNUT-17 over the same nine seeds where this draw was
    # 1.0 behind (README, Benchmarks).
    logits = keras.layers.Dense(
        num_labels,
        kernel_initializer=keras.initializers.RandomNormal(stddev=0.02),
        dtype="float32",
        name="logits",
    )(hidden)
    return keras.Model(inputs, logits, name="bert_tagger")


def encoder_of(tagger: keras.Model) -> BertEncoder:
    return tagger.get_layer("encoder")
