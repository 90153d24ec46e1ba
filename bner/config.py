"""One frozen record of everything that determines a training run: :class:`TrainConfig`.

It is the single input of :func:`bner.train`. The command line builds it (both
``python -m bner.ner.task``'s absl flags and ``bner train``'s options are made from the
fields below, so they cannot drift), ``run.json`` stores it in the same shape, and
``--config run.json`` reads it back to replay a run. Standard library only: a config is
checked before TensorFlow is imported, so a mistake fails in well under a second.

Each field's metadata gives its help text and whether it *determines the result*
(``result=True``): a rerun in an existing output folder may resume only when all of
those are equal.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Any

from bner import io

SAMPLE_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "sample")
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
TAG_SCHEMES = ("auto", "IOB1", "IOB2", "IOBES")
DEVICES = ("auto", "cpu", "gpu")
MASKINGS = ("replace", "markers")  # how a span classifier sees a candidate (bner.data.spans)


class ConfigError(ValueError):
    """A setting that cannot work: reported as one line naming the setting."""


def setting(default: Any, help: str, result: bool = False, choices: tuple[str, ...] | None = None, kind: type | None = None):
    """A config field; ``kind`` is the flag's type where the default (None) does not say."""
    meta = {"help": help, "result": result, "choices": choices, "kind": kind or type(default)}
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(frozen=True)
class DataConfig:
    data_dir: str = setting(SAMPLE_DATA, "Folder with train.conll, test.conll and optionally dev.conll (local or gs://). Defaults to the bundled sample.")
    tag_scheme: str = setting("auto", "Tag scheme of the data files; auto detects it from train.conll.", result=True, choices=TAG_SCHEMES)
    columns: str | None = setting(None, "Where the word and the tag are in the data files' columns, e.g. tag,word or word,pos,chunk,tag (other names: columns not read). Default: the word first, the tag last.", result=True, kind=str)
    dictionary: str | None = setting(None, "Dictionary NER checked by a classifier: dictionary TSV file(s) (name<TAB>type[<TAB>identifier] a line; several comma-separated give their union). Training then fits a span classifier that decides, for every match of a dictionary name, its type or none; the model tags text with the dictionary and keeps what the classifier accepts, with the dictionary's identifiers. Default: train a token tagger.", result=True, kind=str)
    span_examples: str | None = setting(None, "With --dictionary: span classification examples to train on, besides the dictionary's matches in train.conll (which may then be absent): file(s), comma-separated, of text<TAB>start<TAB>end<TAB>label lines, or .jsonl objects with those fields (character offsets on word boundaries; label a type or none).", result=True, kind=str)
    dictionary_plurals: bool = setting(False, "With --dictionary: also match the English plural of each name's last word (tumor: tumors).", result=True)
    dictionary_uninvert: bool = setting(True, "With --dictionary: also match inverted names turned round (Scleroderma, Systemic: Systemic Scleroderma).", result=True)
    dictionary_keep_case: bool = setting(False, "With --dictionary: match case as written (default: case-insensitive).", result=True)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    pretrained_model: str | None = setting(None, "Pretrained BERT as one folder: a Hugging Face folder (config.json, model.safetensors, vocab.txt or tokenizer.json), a KerasHub preset folder, or a Google BERT folder. Instead of the original trio.", result=True, kind=str)
    bert_config_file: str | None = setting(None, "bert_config.json of a Google BERT checkpoint: the model architecture.", result=True, kind=str)
    vocab_file: str | None = setting(None, "vocab.txt the BERT model was trained with.", result=True, kind=str)
    init_checkpoint: str | None = setting(None, "Initial checkpoint, usually from a pre-trained BERT model (e.g. .../bert_model.ckpt).", result=True, kind=str)
    # None: follow the model (what it says, else its vocabulary).
    do_lower_case: bool | None = setting(None, "Lower-case (and strip accents from) the input: true for uncased models. If not given, follows the model.", result=True, kind=bool)
    max_seq_length: int = setting(128, "Maximum word pieces per model input, [CLS] and [SEP] included. Longer sentences are split into overlapping windows, never cut.", result=True)
    context_words: int = setting(0, "Document context (FLERT): up to this many words of the neighbouring sentences of the same document (never across -DOCSTART-) on each side of every sentence, as unlabelled input within --max_seq_length; the sentence itself is never cut for it. Raw text is split into sentences and each gets its neighbours. 0: each sentence alone.", result=True)
    document_windows: bool | None = setting(None, "Train on windows of consecutive sentences of each -DOCSTART- document, packed up to --max_seq_length (their boundaries move each epoch), every word labelled; evaluation and prediction then tag each document, and serving each raw text, whole in overlapping windows, without splitting sentences. Sentences outside any document are windows of their own. Not with --context_words. Default: on when train.conll is made of -DOCSTART- documents (chosen on dev, docs/benchmarks.md).", result=True, kind=bool)
    masking: str = setting("markers", "With --dictionary: how the classifier sees a candidate. markers: the candidate stays, between [ and ]; replace: the candidate's pieces become the model's mask piece ([MASK], <mask>), so it decides from the context alone. Default: markers (better on NCBI-disease dev, docs/benchmarks.md).", result=True, choices=MASKINGS)
    context_dropout: float = setting(0.5, "Training with --context_words: the chance that a training sentence's left, and separately its right, context is left out (drawn once per sentence per run), so the model also learns without context.", result=True)
    dropout: float | None = setting(None, "Dropout of the encoder and head. Default: the pretrained model's hidden_dropout_prob.", result=True, kind=float)
    hidden_act: str | None = setting(None, "Override the encoder's feed-forward activation (gelu = exact erf, gelu_tanh = tanh approximation, relu).", result=True, kind=str)
    tfhub_cache_dir: str | None = setting(None, "Cache folder for models downloaded by name (KerasHub presets, via KaggleHub).", kind=str)


@dataclasses.dataclass(frozen=True)
class OptimizationConfig:
    learning_rate: float | None = setting(None, "Peak learning rate of AdamW. Default: 1e-4 for encoders narrower than 768 (MiniLM and other small ones: 5e-5 left them untrained in 2-3 epochs, docs/search.md), else 5e-5 (BERT-base's usual).", result=True, kind=float)
    num_train_epochs: float = setting(3.0, "Number of training epochs (may be fractional).", result=True)
    warmup_proportion: float = setting(0.1, "Proportion of training steps with linear learning-rate warm-up.", result=True)
    train_batch_size: int = setting(32, "Total batch size for training (across all replicas), in sentences; with --document_windows a batch holds a quarter as many windows (each holds several sentences; chosen on dev, docs/benchmarks.md).", result=True)
    weight_decay: float = setting(0.01, "AdamW weight decay (not applied to LayerNorm parameters and biases).", result=True)
    adam_epsilon: float = setting(1e-8, "AdamW epsilon.", result=True)
    max_grad_norm: float = setting(1.0, "Clip gradients to this global norm (0 turns clipping off).", result=True)
    seed: int = setting(42, "Random seed for initialisation, dropout and shuffling.", result=True)
    early_stopping_patience: int = setting(0, "Stop after this many epochs without a better dev F1 and keep the best model (needs dev.conll). 0: off, train every epoch.", result=True)


@dataclasses.dataclass(frozen=True)
class LoopConfig:
    save_checkpoints_steps: int = setting(1000, "Save a checkpoint every this many steps (and at the end of each epoch).")
    max_checkpoints: int = setting(2, "How many resumable training checkpoints to keep while training.")
    keep_checkpoints: bool = setting(False, "Keep the resumable training checkpoints (model and optimizer state) once the run has finished; by default they are removed, leaving the trained model and the export.")
    eval_batch_size: int = setting(8, "Batch size for evaluation.")
    progress: bool = setting(True, "Show progress bars.")
    hypertune_metric: str | None = setting(None, "Report dev F1 after each epoch to Vertex AI hyperparameter tuning under this metric id (needs the cloudml-hypertune package, as in the training image).", kind=str)


@dataclasses.dataclass(frozen=True)
class HardwareConfig:
    precision: str = setting("auto", "Training precision; auto uses bfloat16 where the CPU/GPU/TPU computes it natively.", result=True, choices=PRECISIONS)
    device: str = setting("auto", "What to train on: auto (every GPU TensorFlow sees, else the CPU), gpu (fail at once, in one line, when there is none) or cpu (hide the GPUs). TPUs: --use_tpu.", choices=DEVICES)
    use_tpu: bool = setting(False, "Train on a Cloud TPU.", result=True)
    tpu_name: str | None = setting(None, "Name or grpc:// address of the Cloud TPU to use with --use_tpu.", kind=str)
    tpu_zone: str | None = setting(None, "GCE zone of the Cloud TPU. If not given, looked up from metadata.", kind=str)
    gcp_project: str | None = setting(None, "Google Cloud project of the Cloud TPU. If not given, looked up from metadata.", kind=str)
    master: str | None = setting(None, "TensorFlow master address of the TPU (used when --tpu_name is not given).", kind=str)
    num_tpu_cores: int = setting(8, "Number of TPU cores to use with --use_tpu.", result=True)
    # It groups same-shape batches on TPUs, which changes their order: it determines the result there.
    iterations_per_loop: int = setting(1000, "Steps run on the TPU per host call (TPU only): up to this many batches of one shape run as one device execution.", result=True)


@dataclasses.dataclass(frozen=True)
class OutputConfig:
    output_dir: str = setting("output", "Folder for checkpoints, results, the trained model and the export (local or gs://).")
    export_dir: str | None = setting(None, "Where exports go: <export_dir>/<model_name>/<version>/. Default: <output_dir>/export.", kind=str)
    model_name: str = setting("bner", "Model name in the export path and in TensorFlow Serving.")
    export: bool = setting(True, "Export a versioned SavedModel at the end of training.")
    export_int8: bool = setting(False, "Also write model.int8.onnx into the export: model.onnx with its matrix products in int8 (activations per token, smoothed as calibrated on 256 training sentences), faster on CPUs but not exact (--runtime onnx-int8 runs it). It is kept only if its F1 on each of the run's dev and test files is at most --int8_f1_budget points below float32's; the model card says what was measured.")
    int8_f1_budget: float = setting(0.3, "With --export_int8: the largest F1 loss, in points on each of the dev and test files, at which the int8 model is kept.")


SECTIONS = {
    "data": DataConfig,
    "model": ModelConfig,
    "optimization": OptimizationConfig,
    "loop": LoopConfig,
    "hardware": HardwareConfig,
    "output": OutputConfig,
}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run, in six sections."""

    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    optimization: OptimizationConfig = OptimizationConfig()
    loop: LoopConfig = LoopConfig()
    hardware: HardwareConfig = HardwareConfig()
    output: OutputConfig = OutputConfig()

    # ------------------------------------------------------------ building and storing

    @classmethod
    def from_settings(cls, base: TrainConfig | None = None, **values: Any) -> TrainConfig:
        """A config from flat settings (``learning_rate=1e-4``), on top of ``base`` or the defaults."""
        base = base or cls()
        unknown = set(values) - set(field_sections())
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        fields = all_fields()
        values = {k: _coerce(k, v, fields[k].metadata["kind"]) for k, v in values.items()}
        sections = {}
        for name, section_cls in SECTIONS.items():
            own = {k: v for k, v in values.items() if k in section_cls.__dataclass_fields__}
            sections[name] = dataclasses.replace(getattr(base, name), **own)
        return cls(**sections)

    def flat(self) -> dict[str, Any]:
        """Every setting by its flag name."""
        return {f.name: getattr(getattr(self, s), f.name) for s, section_cls in SECTIONS.items() for f in dataclasses.fields(section_cls)}

    def to_json(self) -> dict:
        """The settings as run.json stores them: input paths that exist here made absolute, so
        ``--config`` replays the run from any folder (names such as a KerasHub preset, remote
        paths and outputs stay as given: outputs are where the record is)."""
        inputs = {name: os.path.abspath(value) for name, value in self.flat().items()
                  if name in INPUT_PATH_SETTINGS and isinstance(value, str) and value and "://" not in value
                  and os.path.exists(value)}
        inputs.update({name: ",".join(_absolute(p) for p in path_list(value)) for name, value in self.flat().items()
                       if name in PATH_LIST_SETTINGS and value})
        return dataclasses.asdict(TrainConfig.from_settings(self, **inputs))

    @classmethod
    def from_json(cls, data: dict, source: str = "run.json") -> TrainConfig:
        """The config stored in run.json (under ``config``) or given alone."""
        record = isinstance(data, dict) and isinstance(data.get("config"), dict)
        data = data.get("config", data) if isinstance(data, dict) else data
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a JSON object with the sections {', '.join(SECTIONS)}")
        flat = {}
        for name, section in data.items():
            if name not in SECTIONS:
                raise ConfigError(f"{source}: unknown section {name!r}; expected {', '.join(SECTIONS)}")
            if not isinstance(section, dict):
                raise ConfigError(f"{source}: section {name!r} must be a JSON object")
            for key, value in section.items():
                if key == "keep_checkpoints" and isinstance(value, int) and not isinstance(value, bool):
                    key = "max_checkpoints"  # older run records used this name for the count
                if key not in SECTIONS[name].__dataclass_fields__:
                    raise ConfigError(f"{source}: unknown setting {name}.{key}")
                flat[key] = value
        if record and isinstance(data.get("model"), dict) and "document_windows" not in data["model"]:
            flat["document_windows"] = False  # a run recorded before document windows trained on sentences
        return cls.from_settings(**flat)

    @classmethod
    def read(cls, path: str) -> TrainConfig:
        try:
            data = json.loads(io.read_text(path))
        except FileNotFoundError:
            raise ConfigError(f"{path}: file not found") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: not a JSON file ({e})") from None
        return cls.from_json(data, path)

    def differences(self, other: TrainConfig) -> list[str]:
        """Settings that determine the result and differ: ``name (self → other)``. Paths compare as
        the files they name (``./bert`` and ``bert/`` are one folder)."""
        mine, theirs = self.flat(), other.flat()
        return [f"{name} ({mine[name]!r} → {theirs[name]!r})" for name, f in all_fields().items()
                if f.metadata["result"] and not _same(name, mine[name], theirs[name])]

    # ------------------------------------------------------------ checks

    def check(self) -> None:
        """Refuse values that cannot work, with one line naming the setting (no TensorFlow needed)."""
        o, m, loop = self.optimization, self.model, self.loop
        positive = {"learning_rate": o.learning_rate, "num_train_epochs": o.num_train_epochs,
                    "train_batch_size": o.train_batch_size, "eval_batch_size": loop.eval_batch_size,
                    "save_checkpoints_steps": loop.save_checkpoints_steps, "max_checkpoints": loop.max_checkpoints,
                    "num_tpu_cores": self.hardware.num_tpu_cores, "iterations_per_loop": self.hardware.iterations_per_loop}
        for name, value in positive.items():
            if value is None and name == "learning_rate":
                continue  # chosen from the encoder's size (training.recipe.default_learning_rate)
            if not value > 0:
                raise ConfigError(f"--{name}={value}: must be greater than 0")
        for name, value in {"int8_f1_budget": self.output.int8_f1_budget, "early_stopping_patience": o.early_stopping_patience, "weight_decay": o.weight_decay, "adam_epsilon": o.adam_epsilon, "max_grad_norm": o.max_grad_norm}.items():
            if not value >= 0:
                raise ConfigError(f"--{name}={value}: must be 0 or more")
        if not 0 <= o.warmup_proportion <= 1:
            raise ConfigError(f"--warmup_proportion={o.warmup_proportion}: must be between 0 and 1")
        out = self.output
        if out.export_int8 and not out.export:
            raise ConfigError("--export_int8 writes model.int8.onnx into the export: it needs --export (drop --export=false)")
        if not out.export_int8 and out.int8_f1_budget != OutputConfig.int8_f1_budget:
            raise ConfigError(f"--int8_f1_budget={out.int8_f1_budget} applies to the int8 model: add --export_int8")
        if m.context_words < 0:
            raise ConfigError(f"--context_words={m.context_words}: must be 0 or more")
        if m.document_windows and m.context_words:
            raise ConfigError("--document_windows and --context_words: choose one (document windows hold their own context)")
        if self.data.span_examples and not self.data.dictionary:
            raise ConfigError("--span_examples trains a dictionary's span classifier: give the dictionary too (--dictionary)")
        if self.data.dictionary and (m.document_windows or m.context_words):
            raise ConfigError("--dictionary trains a span classifier on each candidate's sentence: "
                              "--document_windows and --context_words apply to a token tagger")
        if not 0 <= m.context_dropout <= 1:
            raise ConfigError(f"--context_dropout={m.context_dropout}: must be between 0 and 1")
        if m.dropout is not None and not 0 <= m.dropout < 1:
            raise ConfigError(f"--dropout={m.dropout}: must be at least 0 and below 1")
        if m.max_seq_length < 3:
            raise ConfigError(f"--max_seq_length={m.max_seq_length}: must be at least 3 ([CLS], one piece, [SEP])")
        # A folder of its own under the export folder, and a name TensorFlow Serving takes.
        if not re.fullmatch(r"[A-Za-z0-9][\w.-]*", self.output.model_name):
            raise ConfigError(f"--model_name={self.output.model_name!r}: expected a plain name (letters, digits, '_', '.', '-')")
        if self.hardware.use_tpu and o.train_batch_size % self.hardware.num_tpu_cores:
            raise ConfigError(
                f"--train_batch_size={o.train_batch_size} must divide evenly over --num_tpu_cores={self.hardware.num_tpu_cores}"
            )
        if m.hidden_act is not None and m.hidden_act not in ACTIVATION_NAMES:
            raise ConfigError(f"--hidden_act={m.hidden_act}: expected one of {', '.join(ACTIVATION_NAMES)}")
        for name, choices in (("tag_scheme", TAG_SCHEMES), ("precision", PRECISIONS), ("device", DEVICES)):
            value = self.flat()[name]
            if value not in choices:
                raise ConfigError(f"--{name}={value}: expected one of {', '.join(choices)}")


# The activations bner's encoder computes (bner.model.network.ACTIVATIONS), named here without importing Keras.
ACTIVATION_NAMES = ("gelu", "gelu_exact", "gelu_new", "gelu_pytorch_tanh", "gelu_fast", "gelu_tanh", "relu")


INPUT_PATH_SETTINGS = ("data_dir", "pretrained_model", "bert_config_file", "vocab_file", "init_checkpoint")
PATH_SETTINGS = (*INPUT_PATH_SETTINGS, "output_dir", "export_dir")
PATH_LIST_SETTINGS = ("dictionary", "span_examples")  # input files, comma-separated


def path_list(setting: str) -> list[str]:
    """The files of a comma-separated setting (``--dictionary``, ``--span_examples``)."""
    return [p.strip() for p in setting.split(",") if p.strip()]


def _absolute(path: str) -> str:
    return os.path.abspath(path) if "://" not in path and os.path.exists(path) else path


BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def boolean(text: str) -> bool:
    """A true/false flag or environment value (true, 1, yes; false, 0, no; any case)."""
    try:
        return BOOLEANS[text.strip().lower()]
    except KeyError:  # a ValueError: argparse reports "invalid boolean value", the server names its variable
        raise ValueError(f"{text!r}: expected true or false") from None


def _same(name: str, a: Any, b: Any) -> bool:
    if name in PATH_SETTINGS and isinstance(a, str) and isinstance(b, str):
        return io.same_file(a, b)
    if name in PATH_LIST_SETTINGS and isinstance(a, str) and isinstance(b, str):
        a_files, b_files = path_list(a), path_list(b)
        return len(a_files) == len(b_files) and all(io.same_file(x, y) for x, y in zip(a_files, b_files))
    return a == b


def _coerce(name: str, value: Any, kind: type) -> Any:
    """A setting's value as its field's type (5 → 5.0 for a float), or an error naming it."""
    if value is None:
        if all_fields()[name].default is not None:
            raise ConfigError(f"{name}: expected {kind.__name__}, got null")
        return None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{name}: expected {kind.__name__}, got {value!r}")
    return value


def all_fields() -> dict[str, dataclasses.Field]:
    return {f.name: f for section_cls in SECTIONS.values() for f in dataclasses.fields(section_cls)}


def field_sections() -> dict[str, str]:
    """Flag name → section name."""
    return {f.name: s for s, section_cls in SECTIONS.items() for f in dataclasses.fields(section_cls)}
