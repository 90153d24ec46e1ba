"""The tagger network: a BERT encoder, dropout and a dense head over each word piece.

The encoder is written here from public Keras layers, one small class a part (embeddings,
self-attention, transformer block), so that what a checkpoint says is what runs: the
feed-forward activation (Hugging Face's ``"gelu"`` is the exact erf form, Google's the tanh
approximation), the LayerNorm epsilon, and dropout masks drawn in float32. Pretrained
weights are mapped onto it by name and shape in :mod:`bner.model.pretrained`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import keras

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
    ``[batch, length, intermediate]`` tensor. Here the forward pass keeps the Gaussian CDF
    (or the tanh) it computed anyway and the gradient is GELU's closed-form derivative, a few
    element-wise ops. No compiler is involved, so a new batch shape costs nothing. Exports
    keep the plain ops; the values are the same to float rounding (tested).
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
    (multiples of 1/128) and scales by ``1 / (1 - rate)`` rounded to bfloat16, so it keeps
    neither exactly ``1 - rate`` of the values nor their mean, and training sees activations
    that inference does not. PyTorch, and Keras on JAX, keep exactly ``1 - rate`` and scale
    in float32. Here the draw and the scaling are float32 and the result is rounded once to
    the input's dtype.
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


def bert_initializer() -> keras.initializers.Initializer:
    """BERT's weight initialisation (truncated normal, std 0.02); pretrained weights replace it."""
    return keras.initializers.TruncatedNormal(stddev=0.02)


def clone(initializer: keras.initializers.Initializer) -> keras.initializers.Initializer:
    """A new initialiser of the same kind, with a seed of its own."""
    return type(initializer).from_config(initializer.get_config())


# The encoder below is built from public Keras layers, so every fact of the checkpoint
# (activation, LayerNorm epsilon, dropout's float32 mask, the float32 residual stream under
# mixed precision) is a constructor argument rather than a patch. Its layers, initialisers
# and dropout seed generators are created in the order KerasHub's BertBackbone created
# them (its pooler's initialiser included, though bner keeps no pooler), so a run's seed
# still draws the same dropout masks and classification head.


class Embeddings(keras.layers.Layer):
    """Token, position and segment embeddings, summed, normalised and dropped out."""

    def __init__(self, config: EncoderConfig, **kwargs):
        super().__init__(**kwargs)
        hidden, policy = config.hidden_size, self.dtype_policy
        self.token = keras.layers.Embedding(config.vocab_size, hidden, embeddings_initializer=bert_initializer(),
                                            dtype=policy, name="token_embedding")
        self.position = keras.layers.Embedding(config.max_position_embeddings, hidden, embeddings_initializer=bert_initializer(),
                                               dtype=policy, name="position_embedding")
        self.segment = keras.layers.Embedding(config.type_vocab_size, hidden, embeddings_initializer=bert_initializer(),
                                              dtype=policy, name="segment_embedding")
        self.norm = keras.layers.LayerNormalization(epsilon=config.layer_norm_eps, dtype=policy, name="layer_norm")
        self.dropout = Float32MaskDropout(config.dropout, dtype=policy, name="dropout")

    def build(self, input_shape):
        for layer in (self.token, self.position, self.segment):
            layer.build(input_shape)
        self.norm.build((*input_shape, self.token.output_dim))

    def call(self, token_ids, segment_ids, training=None):
        positions = self.position(keras.ops.arange(keras.ops.shape(token_ids)[1]))
        x = self.token(token_ids) + positions[None] + self.segment(segment_ids)
        return self.dropout(self.norm(x), training=training)


class SelfAttention(keras.layers.Layer):
    """Multi-head self-attention with dropout on the attention probabilities.

    The computation of ``keras.layers.MultiHeadAttention`` (query scaled by ``1/sqrt(head_dim)``,
    a masked softmax, the weights' shapes), written out because that layer's dropout on the
    probabilities is its own and bner's must draw its mask in float32. Like that layer it takes
    the query and the value as two inputs, each cast to the compute dtype on its own, so that
    their gradients add up as they did when bner used it.
    """

    def __init__(self, num_heads: int, dropout: float, kernel_initializer: keras.initializers.Initializer, **kwargs):
        super().__init__(**kwargs)
        self.num_heads, self.rate, self.kernel_initializer = num_heads, dropout, kernel_initializer

    def _projection(self, name: str, equation: str, output_shape: tuple, bias_axes: str) -> keras.layers.EinsumDense:
        return keras.layers.EinsumDense(equation, output_shape=output_shape, bias_axes=bias_axes,
                                        kernel_initializer=clone(self.kernel_initializer), dtype=self.dtype_policy, name=name)

    def build(self, input_shape):
        hidden = input_shape[-1]
        if hidden % self.num_heads:
            raise ValueError(f"hidden size {hidden} is not a multiple of {self.num_heads} attention heads")
        self.head_dim = hidden // self.num_heads
        heads = (None, self.num_heads, self.head_dim)
        self.query = self._projection("query", "abc,cde->abde", heads, "de")
        self.key = self._projection("key", "abc,cde->abde", heads, "de")
        self.value = self._projection("value", "abc,cde->abde", heads, "de")
        self.softmax = keras.layers.Softmax(axis=-1, dtype=self.dtype_policy, name="softmax")
        self.dropout = Float32MaskDropout(self.rate, dtype=self.dtype_policy, name="dropout")
        self.output_dense = self._projection("output", "abcd,cde->abe", (None, hidden), "e")
        for layer in (self.query, self.key, self.value):
            layer.build(input_shape)
        self.output_dense.build((*input_shape[:-1], self.num_heads, self.head_dim))

    def call(self, query, value, key_mask, training=None):
        """``query`` attends to ``value`` (``[batch, length, hidden]``; the same tensor for self-attention,
        as ``keras.layers.MultiHeadAttention`` takes it); ``key_mask`` ``[batch, 1, 1, length]``: True where
        a piece of ``value`` may be attended to."""
        ops = keras.ops
        query, key, value = self.query(query), self.key(value), self.value(value)
        query = ops.multiply(query, ops.cast(1.0 / math.sqrt(self.head_dim), self.compute_dtype))
        scores = ops.einsum("aecd,abcd->acbe", key, query)  # [batch, heads, query, key]
        probabilities = self.dropout(self.softmax(scores, mask=key_mask), training=training)
        return self.output_dense(ops.einsum("acbe,aecd->abcd", probabilities, value))


class TransformerBlock(keras.layers.Layer):
    """BERT's post-LayerNorm block: self-attention, add and norm, feed-forward, add and norm.

    The block's own policy is its residual stream's (dropout, add, LayerNorm); ``matmul_dtype``
    is its attention's and dense layers'. Under mixed precision the stream stays float32, as
    PyTorch's autocast keeps it: a bfloat16 residual loses precision at every layer.
    """

    def __init__(self, config: EncoderConfig, activation: Callable, matmul_dtype=None, **kwargs):
        super().__init__(**kwargs)
        self.config, self.activation = config, activation
        self.matmul_dtype = matmul_dtype or self.dtype_policy
        self.kernel_initializer = bert_initializer()

    def _dense(self, units: int, name: str, activation=None) -> keras.layers.Dense:
        return keras.layers.Dense(units, activation=activation, kernel_initializer=clone(self.kernel_initializer),
                                  dtype=self.matmul_dtype, name=name)

    def build(self, input_shape):
        c, residual = self.config, self.dtype_policy
        self.attention = SelfAttention(c.num_heads, c.dropout, clone(self.kernel_initializer), dtype=self.matmul_dtype,
                                       name="attention")
        self.attention.build(input_shape)
        self.attention_norm = keras.layers.LayerNormalization(epsilon=c.layer_norm_eps, dtype=residual, name="attention_norm")
        self.attention_norm.build(input_shape)
        self.attention_dropout = Float32MaskDropout(c.dropout, dtype=residual, name="attention_dropout")
        self.output_norm = keras.layers.LayerNormalization(epsilon=c.layer_norm_eps, dtype=residual, name="output_norm")
        self.output_norm.build(input_shape)
        self.intermediate = self._dense(c.intermediate_size, "intermediate", self.activation)
        self.intermediate.build(input_shape)
        self.output_dense = self._dense(c.hidden_size, "output")
        self.output_dense.build((*input_shape[:-1], c.intermediate_size))
        self.output_dropout = Float32MaskDropout(c.dropout, dtype=residual, name="output_dropout")

    def call(self, x, key_mask, training=None):
        x = self.attention_norm(self.attention_dropout(self.attention(x, x, key_mask, training=training), training=training) + x)
        h = self.output_dense(self.intermediate(x))
        return self.output_norm(self.output_dropout(h, training=training) + x)


class BertEncoder(keras.layers.Layer):
    """A BERT encoder with the checkpoint's own activation and LayerNorm epsilon: ids → one vector a piece.

    ``fast_activation`` runs the activation with its hand-written derivative on TensorFlow
    (see :func:`training_activation`); it changes speed, not results.
    """

    def __init__(self, config: EncoderConfig, fast_activation: bool = False, **kwargs):
        super().__init__(**kwargs)
        if config.hidden_act not in ACTIVATIONS:
            raise ValueError(f"unsupported hidden_act {config.hidden_act!r}; expected one of {', '.join(ACTIVATIONS)}")
        fast = fast_activation and keras.backend.backend() == "tensorflow"
        activation = training_activation(config.hidden_act) if fast else ACTIVATIONS[config.hidden_act]
        policy = self.dtype_policy
        residual = keras.DTypePolicy("float32") if policy.compute_dtype != policy.variable_dtype else policy
        self.config = config
        self.embeddings = Embeddings(config, dtype=residual, name="embeddings")  # looked up and summed in float32
        self.blocks = [TransformerBlock(config, activation, matmul_dtype=policy, dtype=residual, name=f"layer_{i}")
                       for i in range(config.num_layers)]
        bert_initializer()  # KerasHub's pooler initialiser: its seed draw keeps the order (see above)

    def build(self, input_shape):
        self.embeddings.build(input_shape)
        for block in self.blocks:
            block.build((*input_shape, self.config.hidden_size))

    def call(self, token_ids, segment_ids, padding_mask, training=None):
        key_mask = keras.ops.cast(padding_mask, "bool")[:, None, None, :]
        x = self.embeddings(token_ids, segment_ids, training=training)
        for block in self.blocks:
            x = block(x, key_mask, training=training)
        return x


def build_encoder(config: EncoderConfig, fast_activation: bool = False) -> BertEncoder:
    encoder = BertEncoder(config, fast_activation, name="encoder")
    encoder.build((None, None))
    return encoder


def build_tagger(
    config: EncoderConfig, num_labels: int, dropout: float | None = None, fast_activation: bool = False
) -> keras.Model:
    """Encoder + dropout + dense head: int32 ``input_ids/attention_mask/token_type_ids`` → float32 logits.

    ``fast_activation`` for training on TensorFlow (see :func:`training_activation`).
    """
    encoder = build_encoder(config, fast_activation)
    inputs = {name: keras.Input(shape=(None,), dtype="int32", name=name) for name in INPUTS}
    hidden = encoder(inputs["input_ids"], inputs["token_type_ids"], inputs["attention_mask"])
    hidden = Float32MaskDropout(config.dropout if dropout is None else dropout, name="head_dropout")(hidden)
    # The logits stay float32 under mixed precision so the softmax and loss are stable.
    # The head starts as Hugging Face's token classifier does: normal, std 0.02, not
    # truncated (the truncated draw trained measurably worse: docs/history.md).
    logits = keras.layers.Dense(
        num_labels,
        kernel_initializer=keras.initializers.RandomNormal(stddev=0.02),
        dtype="float32",
        name="logits",
    )(hidden)
    return keras.Model(inputs, logits, name="bert_tagger")


def encoder_of(tagger: keras.Model) -> BertEncoder:
    return tagger.get_layer("encoder")
