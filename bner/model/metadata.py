"""What a trained tagger needs besides its weights: labels, scheme, tokenisation, encoder shape.

Stored as ``metadata.json`` beside the weights and in every export. It is the source of
truth for serving; it is plain JSON, never a pickle. This module needs only the standard
library, so a server or a script can read a model's metadata without TensorFlow.
"""

from __future__ import annotations

import dataclasses
import json
import os
import posixpath

from bner import io
from bner.config import MASKINGS
from bner.data import corpus
from bner.data.corpus import NONE

METADATA_FILE = "metadata.json"
TOKENIZER_FILE = "tokenizer.json"
DICTIONARY_FOLDER = "dictionary"  # a span classifier's compiled dictionary, inside its model folder
# The newest metadata format this bner reads. A model trained on document windows is written as 2,
# so that a bner that would tag it sentence by sentence refuses it; a dictionary's span classifier
# as 3, so that a bner without one refuses it; every other model stays 1.
FORMAT_VERSION = 3

# How a trained-model folder's Keras weights are laid out: 2, bner's own encoder (bner.model.network);
# 1, KerasHub's BertBackbone, which bner no longer builds. Exports do not depend on it.
NETWORK_LAYOUT = 2

# The export's serving signature: what TensorFlow Serving and bner's backends call.
SIGNATURE = "serving_default"
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


# Encoder families bner builds, by Hugging Face's model_type, and what a person reads for each.
# RoBERTa and XLM-RoBERTa share one architecture; DeBERTa-v3 checkpoints say "deberta-v2".
FAMILY_NAMES = {"bert": "BERT", "roberta": "RoBERTa", "xlm-roberta": "XLM-RoBERTa", "deberta-v2": "DeBERTa-v2/v3",
                "distilbert": "DistilBERT", "electra": "ELECTRA", "albert": "ALBERT"}
FAMILIES = tuple(FAMILY_NAMES)

# Activations bner's encoder implements, by their Hugging Face names (bner.model.network).
ACTIVATION_NAMES = ("gelu", "gelu_exact", "gelu_new", "gelu_pytorch_tanh", "gelu_fast", "gelu_tanh", "relu", "tanh")

# What a model's word pieces around a window are called: BERT's (bner.data.features.SPECIAL), unless
# the pretrained tokenizer says otherwise.
BERT_SPECIAL_TOKENS = {"cls": "[CLS]", "sep": "[SEP]", "pad": "[PAD]", "unk": "[UNK]"}


_TYPE_WORDS = {"int": "a whole number", "float": "a number", "str": "a string", "bool": "true or false",
               "tuple[str, ...]": "a list of strings"}


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """The shape of a transformer encoder, as read from a pretrained checkpoint's config.

    The first fields describe every family; the rest default to BERT's and say where a family
    differs: factorised embeddings (ELECTRA, ALBERT, DeBERTa), RoBERTa's position offset,
    ALBERT's shared layers, DeBERTa's relative attention and convolution.
    """

    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    max_position_embeddings: int = 512
    type_vocab_size: int = 2  # 0: no segment embeddings (DistilBERT, DeBERTa-v3)
    hidden_act: str = "gelu"  # in Hugging Face's meaning (gelu = exact erf)
    layer_norm_eps: float = 1e-12
    dropout: float = 0.1
    family: str = "bert"
    embedding_size: int = 0  # 0: the hidden size; else embeddings are projected to it
    position_offset: int = 0  # RoBERTa counts positions from padding_idx + 1
    absolute_positions: bool = True  # DeBERTa's position_biased_input
    layer_groups: int = 0  # ALBERT: layers share the weights of this many groups
    relative_attention: bool = False  # DeBERTa's disentangled attention, and its settings below
    position_buckets: int = -1
    max_relative_positions: int = -1
    pos_att_type: tuple[str, ...] = ()
    share_att_key: bool = False
    norm_rel_ebd: bool = False
    conv_kernel_size: int = 0  # DeBERTa-v2's convolution after the first layer
    conv_groups: int = 1
    conv_act: str = "tanh"

    def __post_init__(self):
        # Types are checked here, where a config enters (a checkpoint's config.json, an export's
        # metadata.json): a "512" or a null would otherwise fail deep inside the network, or at the first request.
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type == "tuple[str, ...]":
                ok = isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
            else:
                kind = {"int": int, "float": (int, float), "str": str, "bool": bool}[f.type]
                ok = isinstance(value, kind) and (f.type == "bool" or not isinstance(value, bool))
            if not ok:
                raise ValueError(f"encoder.{f.name} must be {_TYPE_WORDS[f.type]}, got {value!r:.80}")
        object.__setattr__(self, "pos_att_type", tuple(self.pos_att_type))
        for name in ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size", "max_position_embeddings"):
            if getattr(self, name) < 1:
                raise ValueError(f"encoder.{name} must be at least 1, got {getattr(self, name)}")
        if self.hidden_act not in ACTIVATION_NAMES:
            raise ValueError(f"encoder.hidden_act {self.hidden_act!r} is not one bner implements ({', '.join(ACTIVATION_NAMES)})")

    @property
    def max_positions(self) -> int:
        """The longest input (in pieces) the position embeddings cover."""
        return self.max_position_embeddings - self.position_offset

    @property
    def embedding_dim(self) -> int:
        return self.embedding_size or self.hidden_size

    @property
    def relative_span(self) -> int:
        """DeBERTa: how many relative positions each side of a piece have their own embedding."""
        if self.position_buckets > 0:
            return self.position_buckets
        return self.max_relative_positions if self.max_relative_positions > 0 else self.max_position_embeddings

    def to_json(self) -> dict:
        data = dataclasses.asdict(self)
        data["pos_att_type"] = list(self.pos_att_type)
        return data

    @classmethod
    def from_json(cls, data: dict) -> EncoderConfig:
        if not isinstance(data, dict):
            raise ValueError(f"encoder must be a JSON object, got {type(data).__name__}")
        config = cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})
        if config.family not in FAMILIES:
            raise ValueError(f"encoder family {config.family!r} is not one bner builds ({', '.join(FAMILIES)})")
        return config


@dataclasses.dataclass
class TaggerMetadata:
    labels: list[str]  # label id → tag, ``O`` first
    label_scheme: str  # the scheme the model predicts (IOB2 or IOBES)
    data_scheme: str  # the scheme of the training files (IOB1, IOB2 or IOBES), used when writing tags back
    max_seq_length: int
    lowercase: bool
    strip_accents: bool
    encoder: EncoderConfig
    context_words: int = 0  # words of document context on each side of a sentence (0: sentences alone)
    # Raw text is split into sentences before tagging (always with context; without it, when the
    # training units were sentences, not tweets or paragraphs: bner.data.text.units_are_sentences).
    split_sentences: bool = False
    # Trained on packed windows of documents: CoNLL documents and raw texts are tagged whole, in
    # overlapping windows (bner.inference.tagger), never split into sentences.
    document_windows: bool = False
    tokenizer_file: str = TOKENIZER_FILE
    special_tokens: dict = dataclasses.field(default_factory=lambda: dict(BERT_SPECIAL_TOKENS))
    # A dictionary's span classifier: {"masking": "replace" | "markers", "mask_token": "[MASK]",
    # "dictionary": "dictionary"} (the compiled dictionary's folder, inside the model folder);
    # its labels are "none" then the entity types. Empty for a token tagger.
    spans: dict = dataclasses.field(default_factory=dict)
    # An export's ONNX model for ONNX Runtime: {"file": "model.onnx", "opset": 17, "sha256": ...}; empty when none.
    onnx: dict = dataclasses.field(default_factory=dict)
    # Its int8 copy, where the export was asked for one and it kept its F1 (bner.model.quantize):
    # the same keys, and "check", what the F1 check at export measured; empty when none.
    onnx_int8: dict = dataclasses.field(default_factory=dict)
    pretrained: dict = dataclasses.field(default_factory=dict)
    training: dict = dataclasses.field(default_factory=dict)  # how it was trained: data files, settings, machine, steps
    evaluation: dict = dataclasses.field(default_factory=dict)  # dev and test scores of this model, overall and per type
    format_version: int = 1
    network_layout: int = NETWORK_LAYOUT

    @property
    def entity_types(self) -> list[str]:
        if self.spans:
            return sorted(self.labels[1:])
        return sorted({label.partition("-")[2] for label in self.labels if label != "O"})

    def to_json(self) -> dict:
        data = dataclasses.asdict(self)
        data["encoder"] = self.encoder.to_json()
        data["format_version"] = max(self.format_version, 3 if self.spans else 2 if self.document_windows else 1)
        return data

    @classmethod
    def from_json(cls, data, source: str = METADATA_FILE) -> TaggerMetadata:
        if not isinstance(data, dict):
            raise ValueError(f"{source}: not a bner metadata file (expected a JSON object, got {type(data).__name__})")
        version = data.get("format_version", 1)
        if not isinstance(version, int):
            raise ValueError(f"{source}: format_version must be a whole number, got {version!r}")
        if version > FORMAT_VERSION:
            raise ValueError(f"{source}: written by a newer bner (format {version}); upgrade bner")
        try:
            fields = {f.name for f in dataclasses.fields(cls)}
            values = {k: v for k, v in data.items() if k in fields}
            values.setdefault("network_layout", 1)  # written before the field existed
            # Context models written before split_sentences existed always split raw text.
            values.setdefault("split_sentences", bool(values.get("context_words")))
            try:
                values["encoder"] = EncoderConfig.from_json(data["encoder"])
            except TypeError as e:  # a required field missing
                raise ValueError(f"{source}: encoder: {e}") from None
            except ValueError as e:
                raise ValueError(f"{source}: {e}") from None
            metadata = cls(**values)
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"{source}: not a bner metadata file ({e})") from None
        metadata.check(source)
        return metadata

    def check(self, source: str) -> None:
        """Refuse values a model folder cannot mean: they would fail later, far from the cause."""
        if not (isinstance(self.labels, list) and self.labels and all(isinstance(x, str) for x in self.labels)):
            raise ValueError(f"{source}: labels must be a non-empty list of tags")
        # The schemes decoding and writing tags know.
        if self.label_scheme not in corpus.MODEL_SCHEMES:
            raise ValueError(f"{source}: label_scheme must be one of {', '.join(corpus.MODEL_SCHEMES)}, got {self.label_scheme!r:.80}")
        if self.data_scheme not in corpus.SCHEMES:
            raise ValueError(f"{source}: data_scheme must be one of {', '.join(corpus.SCHEMES)}, got {self.data_scheme!r:.80}")
        if self.spans:
            self._check_spans(source)
        else:
            self._check_tags(source)
        for name in ("lowercase", "strip_accents"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{source}: {name} must be true or false, got {getattr(self, name)!r:.80}")
        if not isinstance(self.context_words, int) or self.context_words < 0:
            raise ValueError(f"{source}: context_words must be a whole number of at least 0, got {self.context_words!r}")
        for name in ("split_sentences", "document_windows"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{source}: {name} must be true or false, got {getattr(self, name)!r:.80}")
        if not isinstance(self.max_seq_length, int) or self.max_seq_length < 3:
            raise ValueError(f"{source}: max_seq_length must be a whole number of at least 3, got {self.max_seq_length!r:.80}")
        if self.encoder.absolute_positions and self.max_seq_length > self.encoder.max_positions:
            raise ValueError(f"{source}: max_seq_length {self.max_seq_length} is longer than the encoder's "
                             f"{self.encoder.max_positions} positions")
        tokens = self.special_tokens
        if not (isinstance(tokens, dict) and set(tokens) == set(BERT_SPECIAL_TOKENS) and all(isinstance(v, str) and v for v in tokens.values())):
            raise ValueError(f"{source}: special_tokens must name the {', '.join(BERT_SPECIAL_TOKENS)} tokens, got {tokens!r}")
        if not is_file_name(self.tokenizer_file):
            raise ValueError(f"{source}: tokenizer_file must be a file name inside the model folder, got {self.tokenizer_file!r}")
        for key in ("onnx", "onnx_int8"):
            facts = getattr(self, key)
            if facts and not (isinstance(facts, dict) and is_file_name(facts.get("file"))
                              and isinstance(facts.get("sha256"), str) and isinstance(facts.get("opset"), int)):
                raise ValueError(f"{source}: {key} must name a file inside the model folder with its opset and sha256, got {facts!r:.200}")


    def _check_tags(self, source: str) -> None:
        odd = [x for x in self.labels if not corpus.is_tag(x, self.label_scheme)]
        if self.labels[0] != "O" or odd or len(set(self.labels)) != len(self.labels):
            problem = f"{odd[0]!r:.80} is not a {self.label_scheme} tag" if odd else "O must come first, once, and no tag twice"
            raise ValueError(f"{source}: labels: {problem}")

    def _check_spans(self, source: str) -> None:
        spans = self.spans
        if not isinstance(spans, dict) or spans.get("masking") not in MASKINGS:
            raise ValueError(f"{source}: spans.masking must be one of {', '.join(MASKINGS)}, got {spans!r:.120}")
        if not is_file_name(spans.get("dictionary")):
            raise ValueError(f"{source}: spans.dictionary must name a folder inside the model folder, got {spans.get('dictionary')!r:.80}")
        if spans["masking"] == "replace" and not (isinstance(spans.get("mask_token"), str) and spans["mask_token"]):
            raise ValueError(f"{source}: spans.mask_token must name the model's mask piece")
        odd = [x for x in self.labels[1:] if corpus.type_name_problem(x)]
        if self.labels[0] != NONE or odd or len(set(self.labels)) != len(self.labels):
            raise ValueError(f"{source}: labels: a span classifier's are {NONE} first, then distinct type names")


def is_file_name(name) -> bool:
    """Whether ``name`` is a plain file name: paths read from metadata stay inside their folder."""
    return isinstance(name, str) and bool(name) and name == posixpath.basename(name) and name not in (".", "..") and "\\" not in name


def write_metadata(metadata: TaggerMetadata, folder: str) -> None:
    io.write_text(io.join(folder, METADATA_FILE), json.dumps(metadata.to_json(), indent=2, ensure_ascii=False) + "\n")


MAX_METADATA_CHARS = 16 * 2**20  # labels, settings and scores take kilobytes


def read_metadata(path: str) -> TaggerMetadata:
    """Metadata from a ``metadata.json`` file or the folder holding one."""
    if not path.endswith(".json"):
        path = io.join(path, METADATA_FILE)
    try:
        if io.is_local(path) and os.path.isfile(path) and os.path.getsize(path) > 4 * MAX_METADATA_CHARS:
            raise ValueError(f"{path}: {os.path.getsize(path)} bytes, more than a metadata file holds")
        text = io.read_text(path)
        if len(text) > MAX_METADATA_CHARS:
            raise ValueError(f"{path}: {len(text)} characters, more than a metadata file holds ({MAX_METADATA_CHARS})")
        data = json.loads(text)
    except FileNotFoundError:
        raise ValueError(f"{path}: file not found") from None
    except RecursionError:
        raise ValueError(f"{path}: nested too deeply to be bner metadata") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: expected UTF-8 JSON text") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    return TaggerMetadata.from_json(data, path)
