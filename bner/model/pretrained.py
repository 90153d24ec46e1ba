"""Pretrained BERT checkpoints: where they are, what shape they have, and their weights.

Three formats load into the same encoder (:class:`bner.model.network.BertEncoder`):

* a Google BERT release: ``bert_config.json``, ``bert_model.ckpt*``, ``vocab.txt``;
* a Hugging Face folder: ``config.json``, ``model.safetensors``, ``vocab.txt`` or ``tokenizer.json``;
* a KerasHub preset folder (``config.json`` naming ``BertBackbone``, ``model.weights.h5``).

Locating a checkpoint reads only its JSON files, so flags are checked before TensorFlow
or KerasHub are imported; the weights are read when :attr:`Pretrained.load_weights` runs.
Every weight is accounted for, as nanoGPT's loader asserts: an encoder weight in the
checkpoint that is not loaded, or a model weight that gets no value, is an error.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from bner import io
from bner.data.features import read_vocabulary
from bner.model.metadata import ACTIVATION_NAMES, BERT_SPECIAL_TOKENS, FAMILIES, EncoderConfig

if TYPE_CHECKING:
    from bner.model.network import BertEncoder

log = logging.getLogger(__name__)

# What each family calls its encoder's weights in a Hugging Face checkpoint, once the model's
# prefix (``bert.``, ``roberta.``, ...) is taken off. ``{i}`` is a layer (ALBERT: a layer group).
_BERT_NAMES = {
    "word": "embeddings.word_embeddings", "position": "embeddings.position_embeddings",
    "segment": "embeddings.token_type_embeddings", "embedding_norm": "embeddings.LayerNorm", "projection": None,
    "layer": "encoder.layer.{i}", "query": "attention.self.query", "key": "attention.self.key",
    "value": "attention.self.value", "attention_output": "attention.output.dense",
    "attention_norm": "attention.output.LayerNorm", "intermediate": "intermediate.dense", "output": "output.dense",
    "output_norm": "output.LayerNorm",
}
WEIGHT_NAMES = {
    "bert": _BERT_NAMES,
    "roberta": _BERT_NAMES,
    "xlm-roberta": _BERT_NAMES,
    "electra": {**_BERT_NAMES, "projection": "embeddings_project"},
    "albert": {
        **_BERT_NAMES, "projection": "encoder.embedding_hidden_mapping_in",
        "layer": "encoder.albert_layer_groups.{i}.albert_layers.0", "query": "attention.query", "key": "attention.key",
        "value": "attention.value", "attention_output": "attention.dense", "attention_norm": "attention.LayerNorm",
        "intermediate": "ffn", "output": "ffn_output", "output_norm": "full_layer_layer_norm",
    },
    "distilbert": {
        **_BERT_NAMES, "layer": "transformer.layer.{i}", "query": "attention.q_lin", "key": "attention.k_lin",
        "value": "attention.v_lin", "attention_output": "attention.out_lin", "attention_norm": "sa_layer_norm",
        "intermediate": "ffn.lin1", "output": "ffn.lin2", "output_norm": "output_layer_norm",
    },
    "deberta-v2": {
        **_BERT_NAMES, "projection": "embeddings.embed_proj", "query": "attention.self.query_proj",
        "key": "attention.self.key_proj", "value": "attention.self.value_proj",
    },
}
# The prefix of a task or pre-training model's encoder weights (``RobertaForMaskedLM`` → ``roberta.``).
_PREFIX = re.compile(r"^(bert|roberta|deberta|distilbert|electra|albert|model)\.")
# Weights of the encoder, once the prefix is off; the rest (poolers, pre-training and task heads,
# buffers) play no part in tagging.
_ENCODER = re.compile(r"^(embeddings\.|embeddings_project\.|encoder\.|transformer\.)")
_BUFFERS = re.compile(r"\.position_ids$")


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
    special_tokens: dict[str, str] = dataclasses.field(default_factory=lambda: dict(BERT_SPECIAL_TOKENS))
    mask_token: str = "[MASK]"  # the piece masked-language pre-training put where a word was missing


class PretrainedError(ValueError):
    pass


def assign_huggingface_weights(encoder: BertEncoder, tensors: dict[str, np.ndarray]) -> None:
    """Copy weights named as in Hugging Face's models into the encoder, by name and shape.

    The names are the encoder family's (:data:`WEIGHT_NAMES`). Google's TF1 checkpoints and
    KerasHub presets are renamed to BERT's first, so one mapping serves all formats.
    """
    config = encoder.config
    names = WEIGHT_NAMES[config.family]
    tensors = {_PREFIX.sub("", k): v for k, v in tensors.items()}
    tensors = {re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", k): v for k, v in tensors.items()}
    tensors = {re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", k): v for k, v in tensors.items()}
    used: set[str] = set()
    assigned: set[str] = set()

    def take(name: str) -> np.ndarray:
        if name not in tensors:
            raise PretrainedError(f"the checkpoint has no weight {name!r}")
        used.add(name)
        return np.asarray(tensors[name], dtype=np.float32)

    def put(variable, value: np.ndarray, name: str):
        # Attention kernels are [hidden, heads, head_dim] here and [hidden, hidden] in the checkpoint.
        value = value.reshape(variable.shape) if value.size == np.prod(variable.shape) else value
        if tuple(value.shape) != tuple(variable.shape):
            raise PretrainedError(f"weight {name!r} has shape {value.shape}, the model expects {tuple(variable.shape)}")
        variable.assign(value)
        assigned.add(variable.path)

    def linear(layer, name: str):  # PyTorch's Linear keeps [out, in]; Keras' kernels are [in, out]
        put(layer.kernel, take(f"{name}.weight").T, f"{name}.weight")
        if getattr(layer, "bias", None) is not None:
            put(layer.bias, take(f"{name}.bias"), f"{name}.bias")

    def norm(layer, name: str):
        put(layer.gamma, take(f"{name}.weight"), f"{name}.weight")
        put(layer.beta, take(f"{name}.bias"), f"{name}.bias")

    embeddings = encoder.embeddings
    put(embeddings.token.embeddings, take(f"{names['word']}.weight"), names["word"])
    if embeddings.position is not None:
        put(embeddings.position.embeddings, take(f"{names['position']}.weight"), names["position"])
    if embeddings.segment is not None:
        put(embeddings.segment.embeddings, take(f"{names['segment']}.weight"), names["segment"])
    norm(embeddings.norm, names["embedding_norm"])
    if embeddings.projection is not None:
        linear(embeddings.projection, names["projection"])
    for i, block in enumerate(encoder.blocks):
        prefix = names["layer"].format(i=i)
        attention = block.attention
        for part, dense in (("query", attention.query), ("key", attention.key), ("value", attention.value)):
            linear(dense, f"{prefix}.{names[part]}")
        if getattr(attention, "position_key", None) is not None:
            linear(attention.position_key, f"{prefix}.attention.self.pos_key_proj")
        if getattr(attention, "position_query", None) is not None:
            linear(attention.position_query, f"{prefix}.attention.self.pos_query_proj")
        linear(attention.output_dense, f"{prefix}.{names['attention_output']}")
        norm(block.attention_norm, f"{prefix}.{names['attention_norm']}")
        linear(block.intermediate, f"{prefix}.{names['intermediate']}")
        linear(block.output_dense, f"{prefix}.{names['output']}")
        norm(block.output_norm, f"{prefix}.{names['output_norm']}")
    relative = encoder.relative
    if relative is not None:
        put(relative.embeddings.embeddings, take("encoder.rel_embeddings.weight"), "encoder.rel_embeddings.weight")
        if relative.norm is not None:
            norm(relative.norm, "encoder.LayerNorm")
        if relative.conv is not None:
            # PyTorch's Conv1d keeps [out, in / groups, width]; Keras' Conv1D [width, in / groups, out].
            put(relative.conv.kernel, take("encoder.conv.conv.weight").transpose(2, 1, 0), "encoder.conv.conv.weight")
            put(relative.conv.bias, take("encoder.conv.conv.bias"), "encoder.conv.conv.bias")
            norm(relative.conv_norm, "encoder.conv.LayerNorm")
    check_all_weights_used(encoder, tensors, used, assigned)


def check_all_weights_used(encoder: BertEncoder, tensors: dict, used: set[str], assigned: set[str]) -> None:
    """Every encoder weight of the checkpoint was loaded, and every model weight got a value.

    Weights outside the encoder (the [CLS] pooler, pre-training and task heads, buffers) play
    no part in tagging and are left, with a log line.
    """
    def is_encoder(name: str) -> bool:
        return bool(_ENCODER.match(name)) and not _BUFFERS.search(name)

    unused = sorted(k for k in tensors if k not in used and is_encoder(k))
    if unused:
        shown = ", ".join(unused[:5]) + (f" and {len(unused) - 5} more" if len(unused) > 5 else "")
        raise PretrainedError(
            f"the checkpoint has {len(unused)} encoder weight(s) this model has no place for ({shown}): "
            f"is it a {encoder.config.family} model of another shape?"
        )
    heads = sorted(k for k in tensors if k not in used and not is_encoder(k))
    if heads:
        log.info("not loaded (outside the encoder): %s", ", ".join(heads))
    missing = [v.path for v in encoder.weights if v.path not in assigned]
    if missing:
        raise PretrainedError(f"the checkpoint gave no value to {len(missing)} model weight(s): {', '.join(missing[:5])}")


# KerasHub's BertBackbone weight paths → Hugging Face names (kernels transposed where the name is a Linear's weight).
_KERAS_HUB_NAMES = (
    (r"^token_embedding/embeddings$", "embeddings.word_embeddings.weight"),
    (r"^position_embedding/embeddings$", "embeddings.position_embeddings.weight"),
    (r"^segment_embedding/embeddings$", "embeddings.token_type_embeddings.weight"),
    (r"^embeddings_layer_norm/(gamma|beta)$", r"embeddings.LayerNorm.\1"),
    (r"^transformer_layer_(\d+)/self_attention_layer/(query|key|value)/(kernel|bias)$", r"encoder.layer.\1.attention.self.\2.\3"),
    (r"^transformer_layer_(\d+)/self_attention_layer/attention_output/(kernel|bias)$", r"encoder.layer.\1.attention.output.dense.\2"),
    (r"^transformer_layer_(\d+)/self_attention_layer_norm/(gamma|beta)$", r"encoder.layer.\1.attention.output.LayerNorm.\2"),
    (r"^transformer_layer_(\d+)/feedforward_intermediate_dense/(kernel|bias)$", r"encoder.layer.\1.intermediate.dense.\2"),
    (r"^transformer_layer_(\d+)/feedforward_output_dense/(kernel|bias)$", r"encoder.layer.\1.output.dense.\2"),
    (r"^transformer_layer_(\d+)/feedforward_layer_norm/(gamma|beta)$", r"encoder.layer.\1.output.LayerNorm.\2"),
    (r"^pooled_dense/(kernel|bias)$", r"pooler.dense.\1"),
)


def keras_hub_name_to_huggingface(path: str, value: np.ndarray) -> tuple[str, np.ndarray] | None:
    """A KerasHub BertBackbone weight as the Hugging Face weight it is: name, and value in PyTorch's layout."""
    for pattern, replacement in _KERAS_HUB_NAMES:
        if re.match(pattern, path):
            name = re.sub(pattern, replacement, path)
            if name.endswith(".kernel"):  # Keras [in, ..., out] → PyTorch [out, in]
                name = name[: -len(".kernel")] + ".weight"
                if "attention.output" in name:
                    value = value.reshape(-1, value.shape[-1])
                else:
                    value = value.reshape(value.shape[0], -1)
                value = value.T
            elif name.endswith(".bias") and value.ndim > 1:
                value = value.reshape(-1)
            return name.replace(".gamma", ".weight").replace(".beta", ".bias"), value
    return None


def google_name_to_huggingface(name: str) -> str | None:
    """``bert/encoder/layer_3/attention/self/query/kernel`` → ``encoder.layer.3.attention.self.query.weight``."""
    if not name.startswith("bert/") or re.search(r"/adam_[mv]$", name):
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
    except (TypeError, ValueError) as e:  # a value of the wrong kind, or an activation bner lacks
        raise PretrainedError(f"{source}: {e}") from None


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


def _config_from_huggingface(data: dict, source: str) -> EncoderConfig:
    """An encoder's shape from a Hugging Face ``config.json`` of any family bner builds."""
    family = data.get("model_type", "bert")
    if family not in FAMILIES:
        raise PretrainedError(f"{source}: model_type is {family!r}; bner builds {', '.join(FAMILIES)} encoders")
    if family == "distilbert":  # DistilBERT names its fields its own way
        data = {"hidden_size": data.get("dim"), "num_hidden_layers": data.get("n_layers"), "num_attention_heads": data.get("n_heads"),
                "intermediate_size": data.get("hidden_dim"), "hidden_act": data.get("activation", "gelu"),
                "hidden_dropout_prob": data.get("dropout", 0.1), "type_vocab_size": 0, "layer_norm_eps": 1e-12,
                **{k: v for k, v in data.items() if k in ("vocab_size", "max_position_embeddings")}}
        data = {k: v for k, v in data.items() if v is not None}
    config = _config_from_bert_json(data, source, {})
    try:
        extra: dict = {"family": family}
        if family in ("roberta", "xlm-roberta"):
            extra["position_offset"] = int(data.get("pad_token_id", 1)) + 1
        if family in ("electra", "albert", "deberta-v2"):
            extra["embedding_size"] = int(data.get("embedding_size") or config.hidden_size)
        if family == "albert":
            if int(data.get("inner_group_num", 1)) != 1:
                raise PretrainedError(f"{source}: ALBERT with inner_group_num {data['inner_group_num']} is not supported (only 1)")
            extra["layer_groups"] = int(data.get("num_hidden_groups", 1))
            extra["hidden_act"] = data.get("hidden_act", "gelu_new")
        if family == "deberta-v2":
            if int(data.get("attention_head_size", config.hidden_size // config.num_heads)) * config.num_heads != config.hidden_size:
                raise PretrainedError(f"{source}: attention_head_size × heads must equal hidden_size")
            types = data.get("pos_att_type") or []
            types = [t.strip() for t in types.lower().split("|")] if isinstance(types, str) else list(types)
            kernel = int(data.get("conv_kernel_size", 0))
            if kernel and kernel % 2 == 0:
                raise PretrainedError(f"{source}: conv_kernel_size must be odd, got {kernel}")
            extra.update(
                absolute_positions=bool(data.get("position_biased_input", True)),
                type_vocab_size=int(data.get("type_vocab_size", 0)),
                layer_norm_eps=float(data.get("layer_norm_eps", 1e-7)),
                relative_attention=bool(data.get("relative_attention", False)),
                position_buckets=int(data.get("position_buckets", -1)),
                max_relative_positions=int(data.get("max_relative_positions", -1)),
                pos_att_type=tuple(t for t in types if t in ("c2p", "p2c")),
                share_att_key=bool(data.get("share_att_key", False)),
                norm_rel_ebd="layer_norm" in str(data.get("norm_rel_ebd", "none")).lower(),
                conv_kernel_size=kernel,
                conv_groups=int(data.get("conv_groups", 1)),
                conv_act=data.get("conv_act", "tanh"),
            )
        config = dataclasses.replace(config, **extra)
    except PretrainedError:
        raise
    except (TypeError, ValueError) as e:
        raise PretrainedError(f"{source}: {e}") from None
    for name, act in (("hidden_act", config.hidden_act), ("conv_act", config.conv_act)):
        if act not in ACTIVATION_NAMES:
            raise PretrainedError(f"{source}: {name} {act!r} is not one bner implements ({', '.join(ACTIVATION_NAMES)})")
    return config


def huggingface_folder(folder: str) -> Pretrained:
    config_path = io.join(folder, "config.json")
    config = _config_from_huggingface(_read_json(config_path), config_path)
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
    has_tokenizer = io.exists(tokenizer_file)
    if not has_tokenizer and config.family not in WORDPIECE_FAMILIES:
        raise PretrainedError(
            f"{folder}: no tokenizer.json; a {config.family} model's tokenizer is read from tokenizer.json "
            "(transformers writes it: AutoTokenizer.from_pretrained(folder).save_pretrained(folder))"
        )
    return Pretrained(
        "huggingface",
        folder,
        config,
        load,
        vocab_file=vocab_file if io.exists(vocab_file) else None,
        tokenizer_file=tokenizer_file if has_tokenizer else None,
        lowercase=tokenizer_config.get("do_lower_case"),
        special_tokens=special_tokens(tokenizer_config, config.family),
        mask_token=mask_token(tokenizer_config, config.family),
    )


# Families whose tokenizer is BERT's WordPiece, which bner can also build from a vocab.txt.
WORDPIECE_FAMILIES = ("bert", "distilbert", "electra")
# Each family's special tokens when tokenizer_config.json does not name them.
_FAMILY_SPECIAL_TOKENS = {
    "roberta": {"cls": "<s>", "sep": "</s>", "pad": "<pad>", "unk": "<unk>"},
    "xlm-roberta": {"cls": "<s>", "sep": "</s>", "pad": "<pad>", "unk": "<unk>"},
    "albert": {"cls": "[CLS]", "sep": "[SEP]", "pad": "<pad>", "unk": "<unk>"},
}


def mask_token(tokenizer_config: dict, family: str) -> str:
    """The model's mask piece: as ``tokenizer_config.json`` names it, else the family's."""
    named = tokenizer_config.get("mask_token")
    if isinstance(named, dict):  # {"content": "<mask>", "lstrip": true, ...}
        named = named.get("content")
    if isinstance(named, str) and named:
        return named
    return "<mask>" if family in ("roberta", "xlm-roberta") else "[MASK]"


def special_tokens(tokenizer_config: dict, family: str) -> dict[str, str]:
    """The model's cls/sep/pad/unk pieces: as ``tokenizer_config.json`` names them, else the family's."""
    tokens = dict(_FAMILY_SPECIAL_TOKENS.get(family, BERT_SPECIAL_TOKENS))
    for role in tokens:
        named = tokenizer_config.get(f"{role}_token")
        if isinstance(named, dict):  # {"content": "<s>", "lstrip": false, ...}
            named = named.get("content")
        if isinstance(named, str) and named:
            tokens[role] = named
    return tokens


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
        import keras_hub

        with io.local_copy(folder) as local:
            backbone = keras_hub.models.BertBackbone.from_preset(local)
        tensors = {}
        for weight in backbone.weights:
            named = keras_hub_name_to_huggingface(weight.path, np.asarray(weight.numpy()))
            if named is None:
                raise PretrainedError(f"{folder}: the preset's weight {weight.path!r} is not a BERT weight bner knows")
            tensors[named[0]] = named[1]
        assign_huggingface_weights(encoder, tensors)

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


def resolve_preset(name: str, cache_dir: str | None = None) -> str:
    """A local folder for a KerasHub preset name or ``kaggle://`` handle (cached, else downloaded).

    A preset name is looked up in KerasHub's list of BERT presets for its Kaggle handle, which
    KaggleHub downloads into its cache folder (``KAGGLEHUB_CACHE``, read at each call:
    ``--tfhub_cache_dir``, the original flag's role, sets it).
    """
    import kagglehub
    import keras_hub

    if cache_dir:
        os.environ["KAGGLEHUB_CACHE"] = cache_dir
    handle = name if name.startswith("kaggle://") else keras_hub.models.BertBackbone.presets.get(name, {}).get("kaggle_handle")
    if handle is None:
        known = ", ".join(sorted(keras_hub.models.BertBackbone.presets))
        raise PretrainedError(f"{name}: not a local folder, and not a KerasHub BERT preset (those are: {known})")
    try:
        return kagglehub.model_download(handle.removeprefix("kaggle://"))
    except Exception as e:  # noqa: BLE001 — network, auth and lookup errors all mean "cannot get it"
        raise PretrainedError(f"{name}: not a local folder, and no KerasHub preset of that name could be loaded ({e})") from None


def missing_model_message(name: str) -> str:
    """What to do about a --pretrained_model that is not a folder: most often a Hugging Face Hub name."""
    hub_name = re.fullmatch(r"[\w.-]+(/[\w.-]+)?", name) and not name.startswith((".", "/"))
    if hub_name:
        local = "models/" + name.rsplit("/", 1)[-1]
        return (f"{name}: no such folder. bner reads Hugging Face models from a folder; "
                f"download it first (pip install huggingface_hub): hf download {name} config.json model.safetensors "
                f"tokenizer.json tokenizer_config.json --local-dir {local}, then --pretrained_model={local}")
    return f"{name}: no such folder"


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
    cache_dir: str | None = None,
) -> Pretrained:
    """The pretrained encoder named by the flags: a model folder, or the original trio."""
    if model_dir:
        if not io.exists(model_dir):
            if model_dir.startswith("kaggle://") or re.fullmatch(r"[a-z0-9]+(_[a-z0-9]+)+", model_dir):
                model_dir = resolve_preset(model_dir, cache_dir)  # KerasHub preset names: bert_base_en_uncased
            else:
                raise PretrainedError(missing_model_message(model_dir))
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
