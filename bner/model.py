"""The tagger (BERT encoder + dropout + dense head) and loading pretrained encoders.

Three checkpoint formats load into the same encoder:

* a Google BERT release: ``bert_config.json``, ``bert_model.ckpt*``, ``vocab.txt``;
* a Hugging Face folder: ``config.json``, ``model.safetensors``, ``vocab.txt`` or ``tokenizer.json``;
* a KerasHub preset folder (``config.json`` naming ``BertBackbone``, ``model.weights.h5``).

The encoder is KerasHub's ``BertBackbone`` with the two facts KerasHub fixes made
configurable: the feed-forward activation (KerasHub always uses tanh-GELU; Hugging Face's
``"gelu"`` is the exact erf form, 3.9e-3 apart on MiniLM) and the LayerNorm epsilon.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Callable

import keras
import keras_hub
import numpy as np

from bner import io
from bner.features import read_vocabulary

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


_XLA_ACTIVATIONS: dict[str, Callable] = {}


def xla_activation(name: str) -> Callable:
    """The activation ``name`` compiled by XLA into one kernel (forward and gradient), for TensorFlow.

    TensorFlow runs exact GELU as separate erfc, multiply and cast ops, and its gradient
    as as many again: on a CPU about a fifth of a MiniLM training step. XLA fuses each
    into one loop (and compiles it once per shape, in milliseconds); the matrix
    multiplications around it stay on oneDNN. Used for training only: exports keep the
    plain ops, so TensorFlow Serving needs no XLA.
    """
    if name not in _XLA_ACTIVATIONS:
        import tensorflow as tf

        _XLA_ACTIVATIONS[name] = tf.function(
            ACTIVATIONS[name], jit_compile=True, autograph=False, reduce_retracing=True
        )
    return _XLA_ACTIVATIONS[name]


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


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    hidden_act: str = "gelu"  # one of ACTIVATIONS, in Hugging Face's meaning
    layer_norm_eps: float = 1e-12
    dropout: float = 0.1

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> EncoderConfig:
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})


@keras.saving.register_keras_serializable(package="bner")
class BertEncoder(keras_hub.models.BertBackbone):
    """KerasHub's BERT backbone with the checkpoint's own activation and LayerNorm epsilon.

    ``compiled_activation`` runs the activation as one XLA kernel on TensorFlow (see
    :func:`xla_activation`); it changes speed, not results, and is not part of the config.
    """

    def __init__(
        self,
        *args,
        hidden_act: str = "gelu_tanh",
        layer_norm_epsilon: float = 1e-12,
        compiled_activation: bool = False,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        if hidden_act not in ACTIVATIONS:
            raise ValueError(f"unsupported hidden_act {hidden_act!r}; expected one of {', '.join(ACTIVATIONS)}")
        compiled = compiled_activation and keras.backend.backend() == "tensorflow"
        activation = xla_activation(hidden_act) if compiled else ACTIVATIONS[hidden_act]
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


def build_encoder(config: EncoderConfig, compiled_activation: bool = False) -> BertEncoder:
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
        compiled_activation=compiled_activation,
        name="encoder",
    )


def build_tagger(
    config: EncoderConfig, num_labels: int, dropout: float | None = None, compiled_activation: bool = False
) -> keras.Model:
    """Encoder + dropout + dense head: int32 ``input_ids/attention_mask/token_type_ids`` → float32 logits.

    ``compiled_activation`` for training on TensorFlow (see :func:`xla_activation`).
    """
    encoder = build_encoder(config, compiled_activation)
    encoder.pooled_dense.trainable = False  # the [CLS] pooler plays no part in tagging
    names = ("input_ids", "attention_mask", "token_type_ids")
    inputs = {name: keras.Input(shape=(None,), dtype="int32", name=name) for name in names}
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


# ---------------------------------------------------------------- pretrained checkpoints


@dataclasses.dataclass
class Pretrained:
    """Where a pretrained encoder comes from and how its text is tokenised."""

    format: str  # "google", "huggingface" or "keras_hub"
    source: str
    config: EncoderConfig
    load_weights: Callable[[BertEncoder], None]
    vocab_file: str | None = None
    tokenizer_file: str | None = None
    lowercase: bool | None = None  # what the model says; None when it does not say


class PretrainedError(ValueError):
    pass


def assign_huggingface_weights(encoder: BertEncoder, tensors: dict[str, np.ndarray]) -> None:
    """Copy weights named as in Hugging Face's ``BertModel`` into the encoder.

    Written by hand because KerasHub's own converter builds a backbone with a fixed
    activation and does not read Google's TF1 checkpoints; this one mapping serves both.
    """
    tensors = {re.sub(r"^(bert|model)\.", "", k): v for k, v in tensors.items()}
    tensors = {re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", k): v for k, v in tensors.items()}
    tensors = {re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", k): v for k, v in tensors.items()}
    used = set()

    def take(name: str) -> np.ndarray:
        if name not in tensors:
            raise PretrainedError(f"the checkpoint has no weight {name!r}")
        used.add(name)
        return np.asarray(tensors[name], dtype=np.float32)

    def put(variable, value: np.ndarray, name: str):
        value = value.reshape(variable.shape) if value.size == np.prod(variable.shape) else value
        if tuple(value.shape) != tuple(variable.shape):
            raise PretrainedError(f"weight {name!r} has shape {value.shape}, the model expects {tuple(variable.shape)}")
        variable.assign(value)

    def linear(layer, name: str):
        put(layer.kernel, take(f"{name}.weight").T, f"{name}.weight")
        put(layer.bias, take(f"{name}.bias"), f"{name}.bias")

    def norm(layer, name: str):
        put(layer.gamma, take(f"{name}.weight"), f"{name}.weight")
        put(layer.beta, take(f"{name}.bias"), f"{name}.bias")

    put(encoder.token_embedding.embeddings, take("embeddings.word_embeddings.weight"), "word_embeddings")
    put(
        encoder.position_embedding.position_embeddings,
        take("embeddings.position_embeddings.weight"),
        "position_embeddings",
    )
    put(encoder.segment_embedding.embeddings, take("embeddings.token_type_embeddings.weight"), "token_type_embeddings")
    norm(encoder.embeddings_layer_norm, "embeddings.LayerNorm")
    for i, layer in enumerate(encoder.transformer_layers):
        prefix = f"encoder.layer.{i}"
        attention = layer._self_attention_layer
        for part, dense in (("query", attention.query_dense), ("key", attention.key_dense), ("value", attention.value_dense)):
            linear(dense, f"{prefix}.attention.self.{part}")
        linear(attention.output_dense, f"{prefix}.attention.output.dense")
        norm(layer._self_attention_layer_norm, f"{prefix}.attention.output.LayerNorm")
        linear(layer._feedforward_intermediate_dense, f"{prefix}.intermediate.dense")
        linear(layer._feedforward_output_dense, f"{prefix}.output.dense")
        norm(layer._feedforward_layer_norm, f"{prefix}.output.LayerNorm")
    if "pooler.dense.weight" in tensors:
        linear(encoder.pooled_dense, "pooler.dense")


def google_name_to_huggingface(name: str) -> str | None:
    """``bert/encoder/layer_3/attention/self/query/kernel`` → ``encoder.layer.3.attention.self.query.weight``."""
    if not name.startswith("bert/"):
        return None  # pre-training heads, global_step, optimizer slots
    parts = name[len("bert/") :].split("/")
    parts = [re.sub(r"^layer_(\d+)$", r"layer.\1", p) for p in parts]
    last = {"kernel": "weight", "gamma": "weight", "beta": "bias", "bias": "bias"}.get(parts[-1], parts[-1])
    if parts[-1] in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
        return ".".join(parts) + ".weight"
    converted = ".".join(parts[:-1] + [last])
    return converted


def _read_json(path: str) -> dict:
    try:
        return json.loads(io.read_text(path))
    except FileNotFoundError:
        raise PretrainedError(f"{path}: file not found") from None
    except json.JSONDecodeError as e:
        raise PretrainedError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None


def _config_from_bert_json(data: dict, source: str, activation_names: dict[str, str]) -> EncoderConfig:
    try:
        act = data.get("hidden_act", "gelu")
        return EncoderConfig(
            vocab_size=int(data["vocab_size"]),
            hidden_size=int(data["hidden_size"]),
            num_layers=int(data["num_hidden_layers"]),
            num_heads=int(data["num_attention_heads"]),
            intermediate_size=int(data["intermediate_size"]),
            max_position_embeddings=int(data.get("max_position_embeddings", 512)),
            type_vocab_size=int(data.get("type_vocab_size", 2)),
            hidden_act=activation_names.get(act, act),
            layer_norm_eps=float(data.get("layer_norm_eps", 1e-12)),
            dropout=float(data.get("hidden_dropout_prob", 0.1)),
        )
    except KeyError as e:
        raise PretrainedError(f"{source}: missing field {e.args[0]!r} of a BERT config") from None


def google_checkpoint(bert_config_file: str, init_checkpoint: str | None, vocab_file: str | None) -> Pretrained:
    """The original flags' trio. Google's BERT code computes ``"gelu"`` with the tanh approximation."""
    config = _config_from_bert_json(
        _read_json(bert_config_file), bert_config_file, {"gelu": "gelu_tanh"}
    )

    def load(encoder: BertEncoder) -> None:
        import tensorflow as tf  # TF1 checkpoints are read with TensorFlow's reader

        tensors = {}
        with io.local_checkpoint(init_checkpoint) as prefix:
            try:
                reader = tf.train.load_checkpoint(prefix)
            except Exception as e:  # noqa: BLE001 — TF raises several types for a bad path
                raise PretrainedError(f"{init_checkpoint}: cannot read a TensorFlow checkpoint ({e})") from None
            for name in reader.get_variable_to_shape_map():
                hf_name = google_name_to_huggingface(name)
                if hf_name is not None:
                    tensors[hf_name] = reader.get_tensor(name)
        # TF1 kernels are [in, out]; the Hugging Face layout the mapping expects is [out, in].
        tensors = {k: (v.T if k.endswith(".weight") and v.ndim == 2 and "embeddings" not in k else v) for k, v in tensors.items()}
        assign_huggingface_weights(encoder, tensors)

    return Pretrained(
        "google", init_checkpoint or bert_config_file, config, load if init_checkpoint else (lambda e: None), vocab_file=vocab_file
    )


def huggingface_folder(folder: str) -> Pretrained:
    config_path = io.join(folder, "config.json")
    data = _read_json(config_path)
    if data.get("model_type", "bert") != "bert":
        raise PretrainedError(f"{config_path}: model_type is {data.get('model_type')!r}; bner loads BERT models")
    config = _config_from_bert_json(data, config_path, {})
    weights = io.join(folder, "model.safetensors")
    if not io.exists(weights):
        if io.exists(io.join(folder, "pytorch_model.bin")):
            raise PretrainedError(
                f"{folder} has only pytorch_model.bin, a pickle that bner will not load (unpickling runs code); "
                "convert it to model.safetensors first"
            )
        raise PretrainedError(f"{folder}: no model.safetensors")

    def load(encoder: BertEncoder) -> None:
        from safetensors.numpy import load as load_safetensors

        assign_huggingface_weights(encoder, load_safetensors(io.read_bytes(weights)))

    tokenizer_config_path = io.join(folder, "tokenizer_config.json")
    tokenizer_config = _read_json(tokenizer_config_path) if io.exists(tokenizer_config_path) else {}
    tokenizer_file = io.join(folder, "tokenizer.json")
    vocab_file = io.join(folder, "vocab.txt")
    lowercase = tokenizer_config.get("do_lower_case")
    return Pretrained(
        "huggingface",
        folder,
        config,
        load,
        vocab_file=vocab_file if io.exists(vocab_file) else None,
        tokenizer_file=tokenizer_file if io.exists(tokenizer_file) else None,
        lowercase=lowercase,
    )


def keras_hub_preset(folder: str) -> Pretrained:
    data = _read_json(io.join(folder, "config.json"))
    if not str(data.get("class_name", "")).endswith("BertBackbone"):
        raise PretrainedError(f"{folder}/config.json describes {data.get('class_name')!r}, not a BertBackbone preset")
    c = data.get("config", {})
    config = EncoderConfig(
        vocab_size=c["vocabulary_size"],
        hidden_size=c["hidden_dim"],
        num_layers=c["num_layers"],
        num_heads=c["num_heads"],
        intermediate_size=c["intermediate_dim"],
        max_position_embeddings=c.get("max_sequence_length", 512),
        type_vocab_size=c.get("num_segments", 2),
        hidden_act=c.get("hidden_act", "gelu_tanh"),  # KerasHub's BERT uses tanh-GELU
        layer_norm_eps=c.get("layer_norm_epsilon", 1e-12),
        dropout=c.get("dropout", 0.1),
    )

    def load(encoder: BertEncoder) -> None:
        with io.local_copy(folder) as local:
            backbone = keras_hub.models.BertBackbone.from_preset(local)
        encoder.set_weights(backbone.get_weights())

    tokenizer_json = io.join(folder, "tokenizer.json")
    lowercase = None
    if io.exists(tokenizer_json):
        lowercase = _read_json(tokenizer_json).get("config", {}).get("lowercase")
    return Pretrained(
        "keras_hub",
        folder,
        config,
        load,
        vocab_file=io.join(folder, "assets", "tokenizer", "vocabulary.txt"),
        lowercase=lowercase,
    )


def resolve_preset(name: str) -> str:
    """A local folder for a KerasHub preset name or ``kaggle://`` handle (cached, else downloaded)."""
    from keras_hub.src.utils.preset_utils import get_file

    try:
        return os.path.dirname(get_file(name, "config.json"))
    except Exception as e:  # noqa: BLE001 — network, auth and lookup errors all mean "cannot get it"
        raise PretrainedError(f"{name}: not a local folder, and no KerasHub preset of that name could be loaded ({e})") from None


def detect_format(folder: str) -> str:
    """``huggingface`` or ``keras_hub`` for a model folder, from its files."""
    if io.exists(io.join(folder, "config.json")):
        data = _read_json(io.join(folder, "config.json"))
        return "keras_hub" if "class_name" in data else "huggingface"
    if io.exists(io.join(folder, "bert_config.json")):
        return "google"
    raise PretrainedError(
        f"{folder}: not a model folder (expected config.json of a Hugging Face BERT or a KerasHub preset, "
        "or bert_config.json of a Google BERT release)"
    )


def locate_pretrained(
    model_dir: str | None = None,
    bert_config_file: str | None = None,
    init_checkpoint: str | None = None,
    vocab_file: str | None = None,
) -> Pretrained:
    """The pretrained encoder named by the flags: a model folder, or the original trio."""
    if model_dir:
        if not io.exists(model_dir) and (model_dir.startswith("kaggle://") or "/" not in model_dir):
            model_dir = resolve_preset(model_dir)
        fmt = detect_format(model_dir)
        if fmt == "huggingface":
            pretrained = huggingface_folder(model_dir)
        elif fmt == "keras_hub":
            pretrained = keras_hub_preset(model_dir)
        else:
            pretrained = google_checkpoint(
                io.join(model_dir, "bert_config.json"),
                init_checkpoint or io.join(model_dir, "bert_model.ckpt"),
                vocab_file or io.join(model_dir, "vocab.txt"),
            )
    elif bert_config_file:
        pretrained = google_checkpoint(bert_config_file, init_checkpoint, vocab_file)
    else:
        raise PretrainedError(
            "no pretrained model given: pass --pretrained_model (a Hugging Face folder or KerasHub preset folder) "
            "or --bert_config_file with --vocab_file and --init_checkpoint"
        )
    if vocab_file and pretrained.format != "google":
        pretrained.vocab_file, pretrained.tokenizer_file = vocab_file, None
    if not pretrained.vocab_file and not pretrained.tokenizer_file:
        raise PretrainedError(f"{pretrained.source}: no vocab.txt or tokenizer.json found; pass --vocab_file")
    for path in filter(None, (pretrained.vocab_file, pretrained.tokenizer_file)):
        if not io.exists(path):
            raise PretrainedError(f"{path}: file not found")
    return pretrained


def model_lowercases(pretrained: Pretrained) -> bool | None:
    """Whether the model's text is lowercased: what it says, else what its vocabulary shows; None if neither."""
    if pretrained.lowercase is not None:
        return bool(pretrained.lowercase)
    if pretrained.vocab_file:
        return not vocabulary_is_cased(pretrained.vocab_file)
    return None


def vocabulary_is_cased(vocab_file: str) -> bool:
    """Whether a vocab.txt holds capitalised words (a cased model), for checkpoints that do not say."""
    words = [w for w in read_vocabulary(vocab_file) if w.isalpha()]
    upper = sum(w[0].isupper() for w in words)
    return upper > 0.05 * max(1, len(words))
