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
    "tanh": keras.activations.tanh,  # DeBERTa-v2's default convolution activation
}


def gelu_erf(x):
    """Exact GELU written with erf: what ONNX has an operator for (TensorFlow's own GELU uses erfc)."""
    return 0.5 * x * (1.0 + keras.ops.erf(x * keras.ops.cast(_SQRT_HALF, x.dtype)))


# The forms an exported ONNX graph computes: the same function in operators ONNX has. Used only
# to build the network that is converted; the values agree with ACTIVATIONS to float rounding.
PORTABLE_ACTIVATIONS: dict[str, Callable] = {"gelu": gelu_erf, "gelu_exact": gelu_erf}


class PortableLayerNormalization(keras.layers.LayerNormalization):
    """Keras' LayerNormalization written as ``(x - mean) / sqrt(variance + epsilon) * gamma + beta``.

    The same weights and values (to float rounding) in the form ONNX Runtime fuses into one
    LayerNormalization kernel when it loads an export's model.onnx; Keras' own form
    (``x * inv + (beta - mean * inv)``) converts to eight separate passes over the tensor.
    """

    def call(self, inputs):
        ops = keras.ops
        centred = inputs - ops.mean(inputs, axis=-1, keepdims=True)
        variance = ops.mean(ops.power(centred, 2.0), axis=-1, keepdims=True)
        return centred / ops.sqrt(variance + self.epsilon) * self.gamma + self.beta


def layer_norm(epsilon: float, dtype, name: str, portable: bool = False) -> keras.layers.LayerNormalization:
    return (PortableLayerNormalization if portable else keras.layers.LayerNormalization)(epsilon=epsilon, dtype=dtype, name=name)


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
    """Token, position and segment embeddings, summed, normalised and dropped out.

    Where a family's embeddings are narrower than its hidden size they are projected:
    ELECTRA and ALBERT after the normalisation (with a bias), DeBERTa before it (without).
    RoBERTa's positions count from ``position_offset``; DeBERTa-v3 has no absolute positions
    and zeroes the embeddings of padding.
    """

    def __init__(self, config: EncoderConfig, portable: bool = False, **kwargs):
        super().__init__(**kwargs)
        dim, policy = config.embedding_dim, self.dtype_policy
        self.config = config
        self.project_first = config.family == "deberta-v2"
        self.token = keras.layers.Embedding(config.vocab_size, dim, embeddings_initializer=bert_initializer(),
                                            dtype=policy, name="token_embedding")
        self.position = self.segment = self.projection = None
        if config.absolute_positions:
            self.position = keras.layers.Embedding(config.max_position_embeddings, dim, embeddings_initializer=bert_initializer(),
                                                   dtype=policy, name="position_embedding")
        if config.type_vocab_size > 0:
            self.segment = keras.layers.Embedding(config.type_vocab_size, dim, embeddings_initializer=bert_initializer(),
                                                  dtype=policy, name="segment_embedding")
        self.norm = layer_norm(config.layer_norm_eps, policy, "layer_norm", portable)
        self.dropout = Float32MaskDropout(config.dropout, dtype=policy, name="dropout")
        if dim != config.hidden_size:
            self.projection = keras.layers.Dense(config.hidden_size, use_bias=not self.project_first,
                                                 kernel_initializer=bert_initializer(), dtype=policy, name="projection")

    def build(self, input_shape):
        for layer in (self.token, self.position, self.segment):
            if layer is not None:
                layer.build(input_shape)
        dim = self.config.embedding_dim
        if self.projection is not None:
            self.projection.build((*input_shape, dim))
        normalised = self.config.hidden_size if self.project_first else dim
        self.norm.build((*input_shape, normalised))

    def call(self, token_ids, segment_ids, padding_mask, training=None):
        x = self.token(token_ids)
        if self.position is not None:
            x = x + self.position(keras.ops.arange(keras.ops.shape(token_ids)[1]) + self.config.position_offset)[None]
        if self.segment is not None:
            x = x + self.segment(segment_ids)
        if self.projection is not None and self.project_first:
            x = self.projection(x)
        x = self.norm(x)
        if self.config.family == "deberta-v2":
            x = x * keras.ops.cast(padding_mask, x.dtype)[..., None]
        x = self.dropout(x, training=training)
        if self.projection is not None and not self.project_first:
            x = self.projection(x)
        return x


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

    def scores(self, query, key, relative):
        """Attention scores ``[batch, heads, query, key]`` of projected queries and keys ``[batch, length, heads, head_dim]``."""
        query = keras.ops.multiply(query, keras.ops.cast(1.0 / math.sqrt(self.head_dim), self.compute_dtype))
        return keras.ops.einsum("aecd,abcd->acbe", key, query)

    def call(self, query, value, key_mask, relative=None, training=None):
        """``query`` attends to ``value`` (``[batch, length, hidden]``; the same tensor for self-attention,
        as ``keras.layers.MultiHeadAttention`` takes it); ``key_mask`` ``[batch, 1, 1, length]``: True where
        a piece of ``value`` may be attended to; ``relative``: what relative attention needs, else None."""
        query, key, value = self.query(query), self.key(value), self.value(value)
        scores = self.scores(query, key, relative)
        probabilities = self.dropout(self.softmax(scores, mask=key_mask), training=training)
        return self.output_dense(keras.ops.einsum("acbe,aecd->abcd", probabilities, value))


class DisentangledSelfAttention(SelfAttention):
    """DeBERTa's attention: content-to-content scores plus content-to-position (c2p) and
    position-to-content (p2c) scores from embeddings of the (bucketed) relative position.

    ``relative`` is ``(embeddings [2 * span, hidden], buckets [length, length])``, the latter the
    relative position ``i - j`` of each pair in DeBERTa's log buckets. With ``share_att_key``
    the positions go through the content query and key projections; else through their own.
    """

    def __init__(self, config: EncoderConfig, kernel_initializer: keras.initializers.Initializer, **kwargs):
        super().__init__(config.num_heads, config.dropout, kernel_initializer, **kwargs)
        self.config = config

    def build(self, input_shape):
        super().build(input_shape)
        heads = (None, self.num_heads, self.head_dim)
        self.position_key = self.position_query = None
        if not self.config.share_att_key:
            if "c2p" in self.config.pos_att_type:
                self.position_key = self._projection("position_key", "abc,cde->abde", heads, "de")
                self.position_key.build(input_shape)
            if "p2c" in self.config.pos_att_type:
                self.position_query = self._projection("position_query", "abc,cde->abde", heads, "de")
                self.position_query.build(input_shape)

    def scores(self, query, key, relative):
        ops, types = keras.ops, self.config.pos_att_type
        scale = ops.cast(1.0 / math.sqrt(self.head_dim * (1 + len(types))), self.compute_dtype)
        query = ops.multiply(query, scale)
        scores = ops.einsum("aecd,abcd->acbe", key, query)  # [batch, heads, query, key]
        if relative is None or not types:
            return scores
        embeddings, buckets = relative
        span = self.config.relative_span
        embeddings = embeddings[None, : 2 * span]  # [1, 2 * span, hidden]
        if "c2p" in types:
            position_key = (self.key if self.config.share_att_key else self.position_key)(embeddings)[0]
            c2p = ops.einsum("abcd,ecd->acbe", query, position_key)  # [batch, heads, query, 2 * span]
            scores = scores + pick_relative(c2p, ops.clip(buckets + span, 0, 2 * span - 1))
        if "p2c" in types:
            position_query = (self.query if self.config.share_att_key else self.position_query)(embeddings)[0]
            p2c = ops.multiply(ops.einsum("abcd,ecd->acbe", key, position_query), scale)  # [batch, heads, key, 2 * span]
            p2c = pick_relative(p2c, ops.clip(-buckets + span, 0, 2 * span - 1))
            scores = scores + ops.transpose(p2c, (0, 1, 3, 2))
        return scores


def pick_relative(by_position, index):
    """``out[b, h, i, j] = by_position[b, h, i, index[i, j]]``: each pair's score for its relative position.

    The index is the same for every sequence and head, so the (row, position) pairs are laid out
    first and picked whole with one ``take`` of contiguous ``batch × heads`` vectors; its gradient
    adds whole vectors back. ``take_along_axis`` would broadcast the index to the whole
    ``[batch, heads, length, length]`` and, on TensorFlow, train 2.4 times slower at 128 pieces.
    """
    ops = keras.ops
    shape = ops.shape(by_position)
    batch, heads, rows, positions = shape[0], shape[1], shape[2], shape[3]
    pairs = ops.reshape(ops.transpose(by_position, (2, 3, 0, 1)), (rows * positions, batch * heads))
    picked = ops.take(pairs, ops.reshape(index + ops.arange(rows, dtype=index.dtype)[:, None] * positions, (-1,)), axis=0)
    picked = ops.reshape(picked, (rows, ops.shape(index)[1], batch, heads))
    return ops.transpose(picked, (2, 3, 0, 1))


def relative_positions(length, buckets: int, max_position: int):
    """``[length, length]`` int32: ``i - j`` for each pair, in DeBERTa's log buckets when ``buckets > 0``.

    Within ``buckets // 2`` of each other pieces keep their exact distance; further apart the
    distance grows logarithmically up to ``max_position``. Computed in float32 as the reference
    implementation does, so that each bucket boundary falls where it does there.
    """
    ops = keras.ops
    ids = ops.arange(length, dtype="int32")
    relative = ids[:, None] - ids[None, :]
    if buckets <= 0 or max_position <= 0:
        return relative
    mid = buckets // 2
    distance = ops.cast(relative, "float32")
    near = ops.logical_and(relative < mid, relative > -mid)
    absolute = ops.where(near, float(mid - 1), ops.abs(distance))
    log_scale = ops.log(ops.convert_to_tensor((max_position - 1) / mid, "float32"))
    far = ops.ceil(ops.log(absolute / mid) / log_scale * (mid - 1)) + mid
    return ops.cast(ops.where(absolute <= mid, distance, far * ops.sign(distance)), "int32")


class TransformerBlock(keras.layers.Layer):
    """BERT's post-LayerNorm block: self-attention, add and norm, feed-forward, add and norm.

    Every family bner builds uses this block; DeBERTa's differs only in its attention. The
    block's own policy is its residual stream's (dropout, add, LayerNorm); ``matmul_dtype`` is
    its attention's and dense layers'. Under mixed precision the stream stays float32, as
    PyTorch's autocast keeps it: a bfloat16 residual loses precision at every layer.
    """

    def __init__(self, config: EncoderConfig, activation: Callable, matmul_dtype=None, portable: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.config, self.activation, self.portable = config, activation, portable
        self.matmul_dtype = matmul_dtype or self.dtype_policy
        self.kernel_initializer = bert_initializer()

    def _dense(self, units: int, name: str, activation=None) -> keras.layers.Dense:
        return keras.layers.Dense(units, activation=activation, kernel_initializer=clone(self.kernel_initializer),
                                  dtype=self.matmul_dtype, name=name)

    def build(self, input_shape):
        c, residual = self.config, self.dtype_policy
        if c.relative_attention:
            self.attention = DisentangledSelfAttention(c, clone(self.kernel_initializer), dtype=self.matmul_dtype, name="attention")
        else:
            self.attention = SelfAttention(c.num_heads, c.dropout, clone(self.kernel_initializer), dtype=self.matmul_dtype,
                                           name="attention")
        self.attention.build(input_shape)
        self.attention_norm = layer_norm(c.layer_norm_eps, residual, "attention_norm", self.portable)
        self.attention_norm.build(input_shape)
        self.attention_dropout = Float32MaskDropout(c.dropout, dtype=residual, name="attention_dropout")
        self.output_norm = layer_norm(c.layer_norm_eps, residual, "output_norm", self.portable)
        self.output_norm.build(input_shape)
        self.intermediate = self._dense(c.intermediate_size, "intermediate", self.activation)
        self.intermediate.build(input_shape)
        self.output_dense = self._dense(c.hidden_size, "output")
        self.output_dense.build((*input_shape[:-1], c.intermediate_size))
        self.output_dropout = Float32MaskDropout(c.dropout, dtype=residual, name="output_dropout")

    def call(self, x, key_mask, relative=None, training=None):
        attended = self.attention(x, x, key_mask, relative=relative, training=training)
        x = self.attention_norm(self.attention_dropout(attended, training=training) + x)
        h = self.output_dense(self.intermediate(x))
        return self.output_norm(self.output_dropout(h, training=training) + x)


class RelativePositions(keras.layers.Layer):
    """DeBERTa's relative-position embeddings (normalised when the checkpoint says so) and its
    convolution, which DeBERTa-v2 adds to the first layer's output."""

    def __init__(self, config: EncoderConfig, conv_activation: Callable | None = None, portable: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.config, policy = config, self.dtype_policy
        self.embeddings = keras.layers.Embedding(2 * config.relative_span, config.hidden_size,
                                                 embeddings_initializer=bert_initializer(), dtype=policy, name="embeddings")
        self.norm = None
        if config.norm_rel_ebd:
            self.norm = layer_norm(config.layer_norm_eps, policy, "layer_norm", portable)
        self.conv = None
        if config.conv_kernel_size:
            self.conv = keras.layers.Conv1D(config.hidden_size, config.conv_kernel_size, padding="same", groups=config.conv_groups,
                                            kernel_initializer=bert_initializer(), dtype=policy, name="conv")
            self.conv_norm = layer_norm(config.layer_norm_eps, policy, "conv_norm", portable)
            self.conv_dropout = Float32MaskDropout(config.dropout, dtype=policy, name="conv_dropout")
            self.conv_activation = conv_activation

    def build(self, input_shape):
        hidden = self.config.hidden_size
        self.embeddings.build((None,))
        if self.norm is not None:
            self.norm.build((None, hidden))
        if self.conv is not None:
            self.conv.build((None, None, hidden))
            self.conv_norm.build((None, None, hidden))

    def call(self, token_ids):
        """``(embeddings, buckets)`` for inputs of ``token_ids``' length (see DisentangledSelfAttention)."""
        length = keras.ops.shape(token_ids)[1]
        c = self.config
        table = self.embeddings.embeddings
        if self.norm is not None:
            table = self.norm(table)
        max_position = c.max_relative_positions if c.max_relative_positions > 0 else c.max_position_embeddings
        return table, relative_positions(length, c.position_buckets, max_position)

    def convolve(self, embedded, first_layer_output, padding_mask, training=None):
        """DeBERTa-v2: the first layer's output plus a convolution of its input, normalised."""
        mask = keras.ops.cast(padding_mask, first_layer_output.dtype)[..., None]
        out = self.conv(embedded) * mask
        out = self.conv_activation(self.conv_dropout(out, training=training))
        return self.conv_norm(first_layer_output + out) * mask


class BertEncoder(keras.layers.Layer):
    """A transformer encoder with the checkpoint's own shape, activation and LayerNorm epsilon:
    ids → one vector a piece. One class for every family (see EncoderConfig): they differ in
    their embeddings, ALBERT in sharing its layers, DeBERTa in its attention.

    ``fast_activation`` runs the activation with its hand-written derivative on TensorFlow
    (see :func:`training_activation`); it changes speed, not results. ``portable`` computes it
    with operators ONNX has (:data:`PORTABLE_ACTIVATIONS`) and its LayerNorms in the form ONNX
    Runtime fuses (:class:`PortableLayerNormalization`), for the network an export converts.
    """

    def __init__(self, config: EncoderConfig, fast_activation: bool = False, portable: bool = False, **kwargs):
        super().__init__(**kwargs)
        for name, act in (("hidden_act", config.hidden_act), ("conv_act", config.conv_act)):
            if act not in ACTIVATIONS:
                raise ValueError(f"unsupported {name} {act!r}; expected one of {', '.join(ACTIVATIONS)}")
        if config.layer_groups and config.num_layers % config.layer_groups:
            raise ValueError(f"{config.num_layers} layers cannot share {config.layer_groups} groups evenly")
        fast = fast_activation and keras.backend.backend() == "tensorflow"
        activation = training_activation(config.hidden_act) if fast else ACTIVATIONS[config.hidden_act]
        if portable:
            activation = PORTABLE_ACTIVATIONS.get(config.hidden_act, ACTIVATIONS[config.hidden_act])
        conv_activation = (PORTABLE_ACTIVATIONS if portable else ACTIVATIONS).get(config.conv_act, ACTIVATIONS[config.conv_act])
        policy = self.dtype_policy
        residual = keras.DTypePolicy("float32") if policy.compute_dtype != policy.variable_dtype else policy
        self.config = config
        self.embeddings = Embeddings(config, portable, dtype=residual, name="embeddings")  # looked up and summed in float32
        self.blocks = [TransformerBlock(config, activation, matmul_dtype=policy, portable=portable, dtype=residual, name=f"layer_{i}")
                       for i in range(config.layer_groups or config.num_layers)]
        self.relative = None
        if config.relative_attention:
            self.relative = RelativePositions(config, conv_activation, portable, dtype=residual, name="relative")
        bert_initializer()  # KerasHub's pooler initialiser: its seed draw keeps the order (see above)

    def build(self, input_shape):
        self.embeddings.build(input_shape)
        for block in self.blocks:
            block.build((*input_shape, self.config.hidden_size))
        if self.relative is not None:
            self.relative.build(input_shape)

    def call(self, token_ids, segment_ids, padding_mask, training=None):
        key_mask = keras.ops.cast(padding_mask, "bool")[:, None, None, :]
        x = embedded = self.embeddings(token_ids, segment_ids, padding_mask, training=training)
        relative = self.relative(token_ids) if self.relative is not None else None
        per_block = self.config.num_layers // len(self.blocks)  # ALBERT: each group serves several layers
        for i in range(self.config.num_layers):
            x = self.blocks[i // per_block](x, key_mask, relative=relative, training=training)
            if i == 0 and self.relative is not None and self.relative.conv is not None:
                x = self.relative.convolve(embedded, x, padding_mask, training=training)
        return x


def build_encoder(config: EncoderConfig, fast_activation: bool = False, portable: bool = False) -> BertEncoder:
    encoder = BertEncoder(config, fast_activation, portable, name="encoder")
    encoder.build((None, None))
    return encoder


def build_tagger(
    config: EncoderConfig, num_labels: int, dropout: float | None = None, fast_activation: bool = False, portable: bool = False
) -> keras.Model:
    """Encoder + dropout + dense head: int32 ``input_ids/attention_mask/token_type_ids`` → float32 logits.

    ``fast_activation`` for training on TensorFlow (see :func:`training_activation`).
    """
    encoder = build_encoder(config, fast_activation, portable)
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
