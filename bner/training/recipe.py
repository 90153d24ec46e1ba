"""``bner.train(config)``: fine-tune, keep the best model, score it and export it, in this process.

The recipe top to bottom: :func:`prepare` reads the data and the pretrained model and
builds everything a run trains with (labels, model inputs, the batch plan, the network,
the optimizer, the step); :func:`train` checks the output folder, runs the loop
(:mod:`bner.training.loop`), saves the trained-model folder, scores dev and test with a
:class:`bner.inference.tagger.Tagger`, exports, and writes ``run.json``: the config it was given
plus what came of it. The command line is a shell over :func:`train`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Sequence

from bner import io
from bner.config import PATH_LIST_SETTINGS, PATH_SETTINGS, ConfigError, TrainConfig, all_fields, path_list
from bner.data import batches, corpus, features, spans, text
from bner.environment import machine_facts
from bner.folders import exports, model_card, model_folder, run_folder
from bner.inference import evaluate
from bner.inference.backends import KerasBackend, RecordingBackend
from bner.inference.loader import load, make_tagger
from bner.model import pretrained
from bner.model.metadata import DICTIONARY_FOLDER, FAMILY_NAMES, METADATA_FILE, TaggerMetadata, read_metadata, write_metadata
from bner.training import plots

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What a run produced: where, how far, how well."""

    output_dir: str
    model_dir: str
    export_path: str | None
    steps: int
    best_step: int | None
    best_dev_f1: float | None
    dev: dict | None  # scores as in dev_results.json
    test: dict | None  # scores as in eval_results.json
    train_seconds: float
    resumed_from_step: int = 0
    already_finished: bool = False
    warnings: tuple[str, ...] = ()  # e.g. a model that learned nothing (also in run.json and the model card)

    @property
    def test_f1(self) -> float | None:
        return self.test["f1"] if self.test else None


@dataclasses.dataclass
class Setup:
    """Everything a run trains with, built once by :func:`prepare`."""

    config: TrainConfig
    splits: dict[str, list[corpus.Sentence]]
    metadata: TaggerMetadata  # labels, schemes, casing and encoder of the model being trained
    tokenizer: object
    examples: list[features.Example]
    plan: batches.BatchPlan
    network: object  # the Keras tagger
    optimizer: object
    step: object  # bner.training.steps.TensorFlowStep or KerasStep
    strategy: object | None
    precision: str
    pretrained: object  # bner.model.pretrained.Pretrained
    checkpoints: object  # bner.training.checkpoints.CheckpointManager
    matcher: object | None = None  # a span classifier's dictionary (bner.dictionary.matcher.Matcher); None for a token tagger


# ---------------------------------------------------------------- preparing


def read_splits(data_dir: str, need_train: bool = True, columns: str | None = None) -> dict[str, list[corpus.Sentence]]:
    splits = {}
    for name in ("train", "dev", "test"):
        path = io.join(data_dir, f"{name}.conll")
        if io.exists(path):
            splits[name] = corpus.read_conll(path, columns=columns)
        elif name == "train" and need_train:
            raise ConfigError(f"{path}: file not found (training needs train.conll in --data_dir)")
    return splits


def describe_data(config: TrainConfig, splits) -> tuple[str, str, list[str]]:
    """(data scheme, label scheme, labels) of the training data."""
    train = splits["train"]
    types = corpus.entity_types(train)
    if not types:
        raise ConfigError(f"{io.join(config.data.data_dir, 'train.conll')}: no entities (every tag is O): nothing to learn")
    wanted = config.data.tag_scheme
    data_scheme = wanted if wanted != "auto" else corpus.detect_scheme(s.tags for s in train)
    label_scheme = corpus.model_scheme(data_scheme)
    return data_scheme, label_scheme, corpus.label_list(types, label_scheme)


def written_scheme(config: TrainConfig, splits) -> str:
    """The scheme a span classifier writes CoNLL tags in: the data's (as given, else detected), IOB2 without tags to go by."""
    if config.data.tag_scheme != "auto":
        return config.data.tag_scheme
    tagged = [s.tags for name in ("train", "dev", "test") for s in splits.get(name, ())]
    return corpus.detect_scheme(tagged) if any(t != corpus.OUTSIDE for tags in tagged for t in tags) else "IOB2"


def data_warnings(config: TrainConfig, splits) -> list[str]:
    """What in the data is legal but probably a mistake: stray scheme tags, types only in dev/test, case variants."""
    warnings = []
    train_file = io.join(config.data.data_dir, "train.conll")
    if config.data.tag_scheme == "auto":
        odd = corpus.scheme_evidence(splits["train"]).inconsistency(train_file)
        if odd:
            warnings.append(odd)
    known = set(corpus.entity_types(splits["train"]))
    for name in ("dev", "test"):
        unseen = sorted(set(corpus.entity_types(splits.get(name, []))) - known)
        if unseen:
            warnings.append(f"{name}.conll has entity types that train.conll never shows: {', '.join(unseen)} "
                            "(the model cannot predict them; they count as misses)")
    everything = {t for split in splits.values() for t in corpus.entity_types(split)}
    for lower in sorted(t for t in everything if t != t.upper() and t.upper() in everything):
        warnings.append(f"entity types {lower!r} and {lower.upper()!r} are different types to bner: is one a typo?")
    return warnings


def check_before_training(config: TrainConfig, overwrite_output_dir: bool = False) -> None:
    """What can be checked without TensorFlow: values, the data folder, the pretrained model and its positions,
    and that the output folder holds no other run."""
    config.check()
    data_dir = config.data.data_dir
    if not io.exists(data_dir):
        raise ConfigError(f"--data_dir={data_dir}: no such folder")
    if not io.exists(io.join(data_dir, "train.conll")) and not config.data.span_examples:
        raise ConfigError(f"{io.join(data_dir, 'train.conll')}: file not found (training needs train.conll in --data_dir)")
    for flag in PATH_LIST_SETTINGS:
        for path in path_list(config.flat()[flag] or ""):
            if not io.exists(path):
                raise ConfigError(f"--{flag}: {path}: no such file")
    for flag, given in (("early_stopping_patience", config.optimization.early_stopping_patience),
                        ("hypertune_metric", config.loop.hypertune_metric)):
        if given and not io.exists(io.join(data_dir, "dev.conll")):
            raise ConfigError(f"--{flag} needs dev.conll in --data_dir={data_dir} to judge the epochs")
    if config.loop.hypertune_metric:
        import importlib.util

        if importlib.util.find_spec("hypertune") is None:
            raise ConfigError("--hypertune_metric needs the cloudml-hypertune package (pip install 'bner[vertex]')")
    locate_pretrained(config)
    run_folder.check_output_paths({"output_dir": config.output.output_dir, "export_dir": config.output.export_dir})
    if not overwrite_output_dir:
        run_folder.check_output_dir(config.output.output_dir, config, run_folder.file_digests(data_dir, config.data.dictionary, config.data.span_examples))


def locate_pretrained(config: TrainConfig):
    """The pretrained encoder the config names, with the config's overrides applied to its shape."""
    m = config.model
    found = pretrained.locate_pretrained(m.pretrained_model, m.bert_config_file, m.init_checkpoint, m.vocab_file, m.tfhub_cache_dir)
    shape = found.config
    if m.hidden_act:
        shape = dataclasses.replace(shape, hidden_act=m.hidden_act)
    if m.dropout is not None:
        shape = dataclasses.replace(shape, dropout=m.dropout)
    if m.max_seq_length > shape.max_positions:
        raise ConfigError(f"--max_seq_length {m.max_seq_length} is longer than the model's {shape.max_positions} positions")
    return dataclasses.replace(found, config=shape)


def default_learning_rate(encoder) -> float:
    """The peak learning rate when none is given: 1e-4 below BERT-base's width, else 5e-5.

    Measured on WNUT-17 with MiniLM-L6-H384 (docs/search.md): 1e-4 gave dev F1 43.0 / 50.5 after
    2 / 3 epochs where 5e-5 gave 36.3 / 42.5, and a 300-sentence corpus at 5e-5 learned nothing in
    2 epochs. 5e-5 is the BERT paper's and the HF recipe's value for base-size encoders.
    """
    return 1e-4 if encoder.hidden_size < 768 else 5e-5


def prepare(config: TrainConfig, splits=None) -> Setup:
    """Read the data and the pretrained model and build the network, optimizer, step and batch plan."""
    import keras

    from bner.training import hardware

    config.check()
    hardware.use_device(config.hardware.device)  # before anything below touches a device
    keras.utils.set_random_seed(config.optimization.seed)
    splits = splits if splits is not None else read_splits(config.data.data_dir, columns=config.data.columns)
    found = locate_pretrained(config)
    if config.optimization.learning_rate is None:
        rate = default_learning_rate(found.config)
        config = dataclasses.replace(config, optimization=dataclasses.replace(config.optimization, learning_rate=rate))
    if config.model.document_windows is None:  # documents: on (chosen on dev, docs/benchmarks.md)
        on = not config.model.context_words and not config.data.dictionary and corpus.has_documents(splits["train"])
        config = dataclasses.replace(config, model=dataclasses.replace(config.model, document_windows=on))
    lowercase = config.model.do_lower_case
    if features.is_wordpiece(found.vocab_file, found.tokenizer_file):  # casing bner may set
        lowercase = pretrained.model_lowercases(found) if lowercase is None else lowercase
        lowercase = True if lowercase is None else lowercase  # the original --do_lower_case default
    try:
        tokenizer = features.build_tokenizer(found.vocab_file, found.tokenizer_file, lowercase, lowercase, found.special_tokens)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    lowercase, strip_accents = features.normalisation(tokenizer)
    if config.data.dictionary:  # labels: span_examples() below
        data_scheme, label_scheme, labels = written_scheme(config, splits), "IOB2", [spans.NONE]
    else:
        data_scheme, label_scheme, labels = describe_data(config, splits)
    metadata = TaggerMetadata(
        labels=labels, label_scheme=label_scheme, data_scheme=data_scheme, max_seq_length=config.model.max_seq_length,
        lowercase=lowercase, strip_accents=strip_accents, encoder=found.config, context_words=config.model.context_words,
        special_tokens=found.special_tokens, document_windows=config.model.document_windows,
        split_sentences=not config.model.document_windows and (
            bool(config.model.context_words) or text.units_are_sentences([s.words for s in splits["train"]])),
        pretrained={"format": found.format, "source": str(found.source)},
    )
    on_tpu = config.hardware.use_tpu
    precision = hardware.select_precision(config.hardware.precision, on_tpu=on_tpu)
    keras.mixed_precision.set_dtype_policy(precision)
    preprocessor = features.Preprocessor(tokenizer, config.model.max_seq_length, special_tokens=found.special_tokens)
    train = splits["train"]
    o = config.optimization
    batch_size = o.train_batch_size
    matcher = None
    if config.data.dictionary:
        matcher, examples, metadata = span_examples(config, preprocessor, train, metadata, found)
        epoch_members = None
    elif config.model.document_windows:
        examples, epoch_members = document_examples(preprocessor, train, token_label_ids(train, metadata), o.num_train_epochs, o.seed)
        batch_size = document_batch_size(o.train_batch_size, config.hardware.num_tpu_cores if on_tpu else 1)
    else:
        examples = preprocessor.encode([s.words for s in train], token_label_ids(train, metadata), contexts=training_contexts(config, train))
        epoch_members = None
    plan = batches.BatchPlan(
        [len(e) for e in examples], batch_size,
        batches.padding_buckets(config.model.max_seq_length, static_shapes=on_tpu or keras.backend.backend() != "tensorflow"),
        o.num_train_epochs, o.seed, drop_remainder=on_tpu, group=config.hardware.iterations_per_loop if on_tpu else 1,
        epoch_members=epoch_members,
    )
    network, optimizer, step, strategy, checkpoints = build_training(config, metadata, plan, found, precision)
    return Setup(config, splits, metadata, tokenizer, examples, plan, network, optimizer, step, strategy, precision, found, checkpoints,
                 matcher)


def token_label_ids(train: list[corpus.Sentence], metadata: TaggerMetadata) -> list[list[int]]:
    index = {label: i for i, label in enumerate(metadata.labels)}
    return [[index[t] for t in corpus.convert_tags(s.tags, metadata.label_scheme)] for s in train]


def dictionary_matcher(config: TrainConfig):
    """The compiled dictionary of ``--dictionary`` (its files' union), with the variants asked for."""
    from bner.dictionary.matcher import Matcher
    from bner.dictionary.names import DictionaryError

    d = config.data
    try:
        return Matcher.from_files(path_list(d.dictionary), fold_case=not d.dictionary_keep_case,
                                  uninvert=d.dictionary_uninvert, plurals=d.dictionary_plurals)
    except (DictionaryError, OSError) as e:
        raise ConfigError(f"--dictionary: {e}") from None


def span_examples(config: TrainConfig, preprocessor: features.Preprocessor, train: list[corpus.Sentence],
                  metadata: TaggerMetadata, found):
    """A span classifier's dictionary, training inputs and metadata: every dictionary match in
    train.conll is an example, labelled with the gold entity it equals or none
    (:func:`bner.dictionary.candidates.labelled_candidates`)."""
    from bner.dictionary.candidates import labelled_candidates

    matcher = dictionary_matcher(config)
    candidates = labelled_candidates(train, matcher, source=io.join(config.data.data_dir, "train.conll"))
    for path in path_list(config.data.span_examples or ""):
        try:
            candidates += spans.read_span_examples(path)
        except OSError as e:
            raise ConfigError(f"--span_examples: {e}") from None
    if not candidates:
        raise ConfigError(f"--dictionary: none of its {matcher.names:,} names occurs in train.conll, and no --span_examples: "
                          "nothing to train the classifier on")
    masking = config.model.masking
    mask_id = preprocessor.tokenizer.token_to_id(found.mask_token) if masking == "replace" else None
    if masking == "replace" and mask_id is None:
        raise ConfigError(f"--masking=replace: the model's vocabulary has no {found.mask_token} piece; use --masking=markers")
    labels = spans.span_labels(candidates, matcher.types)
    index = {label: i for i, label in enumerate(labels)}
    examples = spans.encode_spans(preprocessor, candidates, masking, mask_id, label_ids=[index[c.label] for c in candidates])
    metadata = dataclasses.replace(metadata, labels=labels, label_scheme="IOB2", spans={
        "masking": masking, "mask_token": found.mask_token, "dictionary": DICTIONARY_FOLDER, "names": matcher.names})
    return matcher, examples, metadata


def document_examples(preprocessor: features.Preprocessor, train: list[corpus.Sentence], label_ids, epochs: float, seed: int):
    """Training windows of packed document sentences (:func:`bner.data.features.pack_sentences`), a packing
    per epoch, every word labelled once in each; all epochs' examples and which belong to each epoch.

    The first epoch packs greedily; each later one draws the boundaries at random (from the run's
    seed), so the model meets sentence boundaries in new places. A sentence's pieces are counted as
    they fall within its document's running text (byte-level BPE gives a word after a space other
    pieces than one alone), and windows are packed one piece short of the room, as a window's first
    word has no space before it. An epoch whose windows still come out fewer or more than the
    first's reuses the first epoch's windows, so every epoch has as many.
    """
    import numpy as np

    words = [s.words for s in train]
    documents = [s.document for s in train]
    units = features.document_units(documents)
    unk = preprocessor.special_id("unk")
    pieces: list[int] = []
    for (a, b), running in zip(units, features.tokenize(
            preprocessor.tokenizer, [[w for s in words[a:b] for w in s] for a, b in units], preprocessor.max_pieces, unk)):
        ends = np.append(running.word_starts[1:], len(running.pieces))
        first = 0
        for sentence in words[a:b]:
            last = first + len(sentence)
            pieces.append(int(ends[last - 1] - running.word_starts[first]) if sentence else 0)
            first = last
    examples: list[features.Example] = []
    members = []
    for epoch in range(max(1, math.ceil(epochs))):
        rng = np.random.default_rng([seed, epoch]) if epoch else None
        runs = features.pack_sentences(pieces, documents, preprocessor.max_pieces - 1, rng)
        packed = preprocessor.encode([[w for s in words[a:b] for w in s] for a, b in runs],
                                     [[i for s in label_ids[a:b] for i in s] for a, b in runs])
        if members and len(packed) != len(members[0]):
            members.append(members[0])
            continue
        members.append(np.arange(len(examples), len(examples) + len(packed)))
        examples += packed
    return examples, members


# A batch of document windows holds --train_batch_size / 4 windows. Chosen on NCBI-disease's dev set
# (5 seeds, docs/benchmarks.md): at the recipe's 32 sentences, 8 windows (2.9 sentences each, 696
# steps in 3 epochs) beat 11 (as much text a step as 32 sentences, 507 steps) and 32 (174 steps).
DOCUMENT_BATCH_DIVISOR = 4


def document_batch_size(train_batch_size: int, multiple: int = 1) -> int:
    """Windows a batch of document windows holds (a whole multiple of ``multiple``, the TPU cores, at least one each)."""
    return max(round(train_batch_size / DOCUMENT_BATCH_DIVISOR / multiple) * multiple, multiple)


def training_contexts(config: TrainConfig, train: list[corpus.Sentence]):
    """Each training sentence's document context, each side left out with ``context_dropout``
    (drawn once, from the run's seed), as FLERT trains; None without ``context_words``."""
    import numpy as np

    m = config.model
    if not m.context_words:
        return None
    contexts = corpus.document_contexts([s.words for s in train], [s.document for s in train], m.context_words)
    keep = np.random.default_rng(config.optimization.seed).random((len(train), 2)) >= m.context_dropout
    return [(left if keep_left else (), right if keep_right else ()) for (left, right), (keep_left, keep_right) in zip(contexts, keep)]


def build_training(config: TrainConfig, metadata: TaggerMetadata, plan: batches.BatchPlan, found, precision: str):
    """The network (pretrained encoder, fresh head), optimizer and step, under the run's strategy."""
    import keras

    from bner.model import network as model
    from bner.training import hardware, optimizer, steps
    from bner.training.checkpoints import CheckpointManager

    h, o = config.hardware, config.optimization
    strategy = None
    if keras.backend.backend() == "tensorflow":
        tpu = hardware.TpuSettings(h.use_tpu, h.tpu_name, h.tpu_zone, h.gcp_project, h.master, h.num_tpu_cores)
        strategy = hardware.select_strategy(tpu)
    checkpoints = CheckpointManager(
        io.join(config.output.output_dir, run_folder.CHECKPOINTS), keep=config.loop.max_checkpoints, writer=hardware.is_chief()
    )
    clip = o.max_grad_norm or None
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        # On TPUs the whole step is compiled by XLA already.
        network = model.build_tagger(metadata.encoder, len(metadata.labels), fast_activation=not h.use_tpu)
        adamw = optimizer.make_optimizer(
            o.learning_rate, plan.total_steps, int(plan.total_steps * o.warmup_proportion), o.weight_decay,
            clip_norm=clip if strategy is None else None, loss_scaling=precision == "mixed_float16", epsilon=o.adam_epsilon,
        )
        adamw.build(network.trainable_variables)
        if checkpoints.latest() is None:
            found.load_weights(model.encoder_of(network))
    if strategy is not None:
        step = steps.TensorFlowStep(network, adamw, strategy, clip, static_shapes=h.use_tpu)
    else:
        step = steps.KerasStep(network, adamw)
    return network, adamw, step, strategy, checkpoints


# ---------------------------------------------------------------- training


def train(config: TrainConfig, callbacks: Sequence = (), overwrite_output_dir: bool = False, say=print) -> TrainResult:
    """Fine-tune as ``config`` says, resuming an interrupted run in the same output folder.

    ``callbacks`` are Keras callbacks the loop calls besides bner's own (see :mod:`bner.training.loop`);
    ``say`` receives the lines a user sees (``print`` by default).
    """
    from bner.environment import configure_environment, import_tensorflow_quietly, require_training

    require_training()
    config.check()
    configure_environment()  # as the command line: TensorFlow's C++ start-up lines stay hidden
    import_tensorflow_quietly()
    from bner.training import hardware

    splits = read_splits(config.data.data_dir, need_train=not config.data.span_examples, columns=config.data.columns)
    splits.setdefault("train", [])  # a span classifier may learn from --span_examples alone
    if config.optimization.early_stopping_patience and "dev" not in splits:
        raise ConfigError(f"--early_stopping_patience needs dev.conll in --data_dir={config.data.data_dir} to judge the epochs")
    out = config.output.output_dir
    if overwrite_output_dir:
        run_folder.clear_run(out)
    previous = run_folder.check_output_dir(out, config, run_folder.file_digests(config.data.data_dir, config.data.dictionary, config.data.span_examples))
    if previous:
        config = run_folder.with_recorded_defaults(config, previous)
    digests = run_folder.data_digests(config.data.data_dir, splits, config.data.dictionary, config.data.span_examples)
    model_dir = run_folder.model_dir(out)
    if previous and previous.get("status") == "finished" and model_folder.is_model_folder(model_dir):
        say(f"{out} holds this run, finished: nothing to train")
        return finished_result(config, previous, out, say)
    for warning in data_warnings(config, splits) if splits["train"] else ():
        say(f"warning: {warning}")
    setup = prepare(config, splits)
    config = setup.config  # defaults resolved (learning rate, document windows): run.json records what ran
    if previous and previous.get("precision") not in (None, setup.precision):
        raise run_folder.OutputDirError(
            f"{out} holds a run trained in {previous['precision']}, which this machine would resume in {setup.precision}: "
            f"pass --precision={previous['precision']} to resume it, or --overwrite_output_dir to start over"
        )
    chief = hardware.is_chief()
    def record(status: str) -> dict:
        labels, scheme = setup.metadata.labels, setup.metadata.data_scheme
        return run_folder.run_record(config, labels, scheme, setup.precision, digests, status)

    if chief and not previous:
        run_folder.write_record(out, record("running"))
    state, seconds = fit(setup, callbacks, say)
    if not chief:
        say("training done on this worker; the chief writes results and the export")
        return TrainResult(out, model_dir, None, state.step, None, None, None, None, state.train_seconds)
    summary = save_trained_model(setup, state, seconds, digests, say)
    scores = evaluate_splits(load(model_dir, batch_size=config.loop.eval_batch_size), splits, out, say)
    describe_model(model_dir, scores, say)
    plots.write_run_plots(out, state.loss_curve, state.history, scores, pictured_confusion(scores), say)
    export_path = export_model(config, say) if config.output.export else None
    finished = record("finished")
    finished["training"] = {**summary, "loss_curve": state.loss_curve}
    finished["result"] = {"dev": scores.get("dev"), "test": scores.get("test"), "export": export_path}
    run_folder.write_record(out, finished)
    if not config.loop.keep_checkpoints:
        run_folder.remove_checkpoints(out, say)
    return TrainResult(
        out, model_dir, export_path, state.step, summary["best_step"], summary["best_dev_f1"], scores.get("dev"),
        scores.get("test"), state.train_seconds, resumed_from_step=summary["resumed_from_step"],
        warnings=tuple(summary.get("warnings", ())),
    )


def fit(setup: Setup, callbacks: Sequence, say):
    """Run the loop with bner's callbacks (dev F1 and best-model keeping, TensorBoard, progress) and the caller's."""
    import keras

    from bner.training import callbacks as plugins
    from bner.training import hardware, loop

    config, out = setup.config, setup.config.output.output_dir
    per_epoch, planned = setup.plan.steps_per_epoch, setup.plan.total_steps
    members = setup.plan.epoch_members
    if setup.metadata.spans:
        windows = ""  # an input a candidate
    elif members is not None:
        windows = f"; {len(members[0])} document windows an epoch, {setup.plan.batch_size} a batch"
    else:
        extra = len(setup.examples) - len(setup.splits["train"])
        windows = f"; {extra} extra windows for long sentences" if extra else ""
    replicas = setup.strategy.num_replicas_in_sync if setup.strategy is not None else 1
    device = hardware.device_description(setup.config.hardware.use_tpu, replicas)
    if setup.metadata.spans:
        entities = sum(int(e.labels[e.owned_positions[0]]) > 0 for e in setup.examples)
        files = " and the --span_examples" if config.data.span_examples else ""
        say(
            f"data: {len(setup.examples)} candidates, {entities} of them entities, from the dictionary's ({setup.matcher.names:,} "
            f"names) matches in {len(setup.splits['train'])} training sentences{files}; learning "
            f"{', '.join(setup.metadata.entity_types)} or none, candidates shown by {setup.metadata.spans['masking']}"
        )
    else:
        say(
            f"data: {setup.metadata.data_scheme} tags, {len(setup.splits['train'])} training sentences, entity types "
            f"{', '.join(setup.metadata.entity_types)}; learning {setup.metadata.label_scheme} labels"
        )
    say(
        f"model: {FAMILY_NAMES[setup.metadata.encoder.family]} ({setup.pretrained.format} format) from "
        f"{setup.pretrained.source} ({setup.metadata.encoder.num_layers} layers, "
        f"hidden {setup.metadata.encoder.hidden_size}, {'uncased' if setup.metadata.lowercase else 'cased'}); "
        f"{setup.precision} on {keras.backend.backend()}, {device}; {planned} step{'s' * (planned != 1)} ({per_epoch} per epoch) "
        f"at learning rate {config.optimization.learning_rate:g}"
        f"{windows}"
    )
    slow = hardware.precision_warning(setup.precision)
    if slow:
        say(f"warning: {slow}")
    if setup.checkpoints.latest() is not None:
        say(f"resuming from {setup.checkpoints.latest()}")
    chief = hardware.is_chief()
    own = []
    if "dev" in setup.splits:
        own.append(dev_evaluation(setup, chief))
    if chief:
        own.append(plugins.TensorBoardLogs(io.join(out, "logs")))
    if config.loop.hypertune_metric and "dev" in setup.splits:
        own.append(plugins.HypertuneReport(config.loop.hypertune_metric))
    own.append(plugins.ProgressBar(config.loop.progress))
    started = time.time()
    tensorflow_cpu = keras.backend.backend() == "tensorflow" and not config.hardware.use_tpu
    with hardware.cpu_training_graphs() if tensorflow_cpu else contextlib.nullcontext():
        state = loop.run_training(
            setup.network, setup.optimizer, setup.step, setup.examples, setup.plan,
            setup.tokenizer.token_to_id(setup.metadata.special_tokens["pad"]), setup.checkpoints, [*own, *callbacks],
            config.loop.save_checkpoints_steps, steps_per_execution=setup.plan.group,
        )
    replicas = setup.strategy.num_replicas_in_sync if setup.strategy is not None else 1
    unit = " document windows" if setup.plan.epoch_members is not None else ""
    say(f"trained to step {state.step} on {replicas} replica(s), global batch {setup.plan.batch_size}{unit}")
    return state, time.time() - started


def dev_evaluation(setup: Setup, chief: bool):
    """Score dev after each epoch through the same Tagger as evaluation (the loop keeps the best one's checkpoint)."""
    from bner.training import callbacks as plugins

    dev = setup.splits["dev"]
    backend = KerasBackend(setup.network)
    tagger = make_tagger(backend, setup.metadata, setup.tokenizer, setup.config.loop.eval_batch_size, matcher=setup.matcher)
    return plugins.DevEvaluation(
        lambda: tagger.evaluate(dev), patience=setup.config.optimization.early_stopping_patience,
        model_seconds=lambda: backend.model_seconds,
    )


def save_trained_model(setup: Setup, state, seconds: float, digests: dict, say) -> dict:
    """Write ``<output_dir>/model``: the best dev model if there is a dev set, else the last; its summary."""
    import keras

    from bner.training import hardware

    out = setup.config.output.output_dir
    has_dev = "dev" in setup.splits
    members = setup.plan.epoch_members
    first_epoch = members[0] if members is not None else range(len(setup.examples))
    summary = {
        "steps": state.step,
        "epochs": setup.config.optimization.num_train_epochs,
        "seconds_this_run": round(seconds, 1),
        "train_seconds": round(state.train_seconds, 2),
        "real_pieces_per_epoch": int(sum(len(setup.examples[i]) for i in first_epoch)),
        "precision": setup.precision,
        "backend": keras.backend.backend(),
        "replicas": setup.strategy.num_replicas_in_sync if setup.strategy is not None else 1,
        "history": state.history,
        "best_dev_f1": state.best_dev_f1 if has_dev else None,
        "best_step": state.best_step if has_dev else None,
        "train_examples": len(first_epoch),
        "train_batch_examples": setup.plan.batch_size,
        "resumed_from_step": state.resumed_from_step,
        "epochs_trained": len(state.history),
        "stopped_early": state.stopped_early,
        "data_files": digests,
        "settings": result_settings(setup.config),
        "machine": {**machine_facts(), "accelerators": hardware.accelerator_kinds()},
        "versions": run_folder.package_versions(),
    }
    network = setup.network
    if has_dev and state.best_step >= 0:
        say(f"best dev F1 {100 * state.best_dev_f1:.2f} at step {state.best_step}: keeping that model")
        failed = learned_nothing(state.history, setup.config)
        if failed:
            say(f"warning: {failed}")
            summary["warnings"] = [failed]
        best = setup.checkpoints.best()
        if state.best_step == state.step:
            pass  # the network as it stands
        elif best is not None and best.endswith(f"ckpt-{state.best_step:09d}.npz"):
            setup.checkpoints.restore_model(best, network)
        else:
            say(f"warning: the checkpoint of step {state.best_step} is gone; keeping the last model instead")
    model_folder.save(network, dataclasses.replace(setup.metadata, training=summary), setup.tokenizer, run_folder.model_dir(out),
                      matcher=setup.matcher)
    return summary


def learned_nothing(history: list[dict], config: TrainConfig) -> str | None:
    """One line with a next step when dev F1 stayed 0 in every epoch (None when the model learned something)."""
    scored = [entry for entry in history if "dev_f1" in entry]
    if not scored or max(entry["dev_f1"] for entry in scored) > 0:
        return None
    none_predicted = scored[-1].get("dev_predicted_entities") == 0
    what = "the model predicts no entities on dev" if none_predicted else "no entity on dev is right"
    rate = config.optimization.learning_rate
    return (f"{what} (F1 0.00 after each of {len(scored)} epoch(s)): it has not learned the task. Train longer "
            f"(--num_train_epochs, now {config.optimization.num_train_epochs:g}) or faster (--learning_rate, now {rate:g}; "
            "1e-4 suits small encoders such as MiniLM), and check train.conll: words in the first column, tags "
            "with B-/I- prefixes in the last.")


# ---------------------------------------------------------------- results, export, the run record


def result_settings(config: TrainConfig) -> dict:
    """The settings that determine the model (paths of data and model are in the card's own sections)."""
    flat = config.flat()
    return {name: flat[name] for name, f in all_fields().items() if f.metadata["result"] and name not in (*PATH_SETTINGS, *PATH_LIST_SETTINGS)}


def describe_model(model_dir: str, scores: dict[str, dict], say) -> None:
    """Put the dev/test scores into the model's metadata.json and write its model card, README.md."""
    metadata = read_metadata(model_dir)
    metadata.evaluation = {name: {k: v for k, v in s.items() if k != "confusion"} for name, s in scores.items()}
    write_metadata(metadata, model_dir)
    say(f"wrote the model card {model_card.write_card(metadata, model_dir)}")


def pictured_confusion(scores: dict[str, dict]) -> dict | None:
    """The confusion table the run's heatmap shows: test's, else dev's."""
    for name in ("test", "dev"):
        if scores.get(name, {}).get("confusion"):
            return {**scores[name]["confusion"], "split": name}
    return None


def evaluate_splits(tagger, splits, out: str, say) -> dict[str, dict]:
    """Score dev and test with the trained model: ``dev_results.*``, ``eval_results.*``, ``test_results.tsv`` and
    ``confusion.json`` (entity confusion between types); each split's scores carry their ``confusion`` too."""
    scores, confusions = {}, {}
    for name in ("dev", "test"):
        if name not in splits:
            continue
        sentences = splits[name]
        result, predicted = tagger.evaluation(sentences)
        evaluate.write_results(result, out, run_folder.RESULTS_NAMES[name], tagger.scoring)
        confusions[name] = evaluate.confusion([s.tags for s in sentences], predicted)
        if name == "test":
            rows = [[(w, g, p) for w, g, p in zip(s.words, s.tags, pred)] for s, pred in zip(sentences, predicted)]
            io.write_text(io.join(out, "test_results.tsv"), corpus.format_conll(rows))
        say(f"\n{name} ({len(sentences)} sentences): " + evaluate.format_summary(result))
        scores[name] = {**result.as_dict(), "scoring": tagger.scoring, "confusion": confusions[name]}
    if scores:
        io.write_text(io.join(out, "confusion.json"), json.dumps(confusions, indent=2) + "\n")
        say(f"wrote {io.join(out, 'eval_results.txt')} (+ .json), test_results.tsv and confusion.json")
    return scores


def export_model(config: TrainConfig, say) -> str | None:
    """Export ``<output_dir>/model``, unless its latest export is of this very model; the version's path.

    A SavedModel is a TensorFlow artefact: under another Keras backend the export runs in a
    TensorFlow subprocess from the backend-neutral weights, or is left for later with the
    command to run.
    """
    import importlib.util
    import subprocess
    import sys

    import keras

    out = config.output.output_dir
    model_dir = run_folder.model_dir(out)
    export_dir = run_folder.export_dir(out, config.output.export_dir)
    int8 = config.output.export_int8
    existing = exports.existing_export(model_dir, export_dir, config.output.model_name,
                                       int8_budget=config.output.int8_f1_budget if int8 else None)
    if existing:
        say(f"{existing} is already an export of this model")
        return existing
    if keras.backend.backend() != "tensorflow":
        command = ["-m", "bner.ner.task", "--do_export", f"--output_dir={out}", f"--export_dir={export_dir}",
                   f"--model_name={config.output.model_name}", f"--export_int8={int8}",
                   f"--int8_f1_budget={config.output.int8_f1_budget}"]
        if importlib.util.find_spec("tensorflow") is None:
            say("TensorFlow is not installed here: export on a machine that has it with\n  KERAS_BACKEND=tensorflow python " + " ".join(command))
            return None
        say("exporting under the TensorFlow backend")
        subprocess.run([sys.executable, *command], env={**os.environ, "KERAS_BACKEND": "tensorflow"}, check=True)
        return exports.latest_export(io.join(export_dir, config.output.model_name))
    check = int8_check(config.output.int8_f1_budget, say) if int8 else None
    path = exports.export_tagger(model_dir, export_dir, config.output.model_name, int8_check=check,
                                 int8_samples=int8_samples(say) if int8 else None)
    files = "the SavedModel, model.onnx and model.int8.onnx" if int8 and io.exists(io.join(path, exports.INT8_FILE)) \
        else "the SavedModel and model.onnx"
    say(f"exported {files} to {path}")
    return path


# How many training sentences calibrate an int8 model's smoothing: the largest activation of each
# channel, which is all the smoothing reads, is found within a few hundred.
INT8_SAMPLE_SENTENCES = 256


def run_files(metadata: TaggerMetadata, splits: Sequence[str]) -> tuple[dict, list[tuple[str, str]]]:
    """The data files of ``splits`` the run recorded, and of those the ones still where training read
    them and unchanged since (their SHA-256), as (split, path): "the run's dev file" must be that."""
    files = {split: facts for split, facts in metadata.training.get("data_files", {}).items() if split in splits and facts}
    found = [(split, facts["path"]) for split, facts in files.items()
             if io.exists(facts["path"]) and hashlib.sha256(io.read_bytes(facts["path"])).hexdigest() == facts.get("sha256")]
    return files, found


def int8_samples(say) -> Callable[[str], tuple[list[dict], int]]:
    """What an export's int8 model is calibrated on: the model inputs of up to INT8_SAMPLE_SENTENCES
    of the run's training sentences, spread evenly over its training file and tagged as any file
    is (with their documents' context or windows, or as span candidates), and how many sentences
    that was. None if the run had no training file or it has moved or changed: the int8 model is
    then made without smoothing."""

    def samples(folder: str) -> tuple[list[dict], int]:
        metadata = read_metadata(io.join(folder, METADATA_FILE))
        files, found = run_files(metadata, ("train",))
        if not found:
            say("model.int8.onnx: its activations are not smoothed: " + (
                "the run's training file is no longer where training read it, or has changed" if files else
                "the run had no training file to calibrate on"))
            return [], 0
        sentences = corpus.read_conll(found[0][1], columns=metadata.training.get("settings", {}).get("columns"))
        count = min(INT8_SAMPLE_SENTENCES, len(sentences))
        chosen = [sentences[i * len(sentences) // count] for i in range(count)]
        # Small calls: the calibration reads every product's input of a call at once.
        tagger = load(folder, runtime="onnx", batch_size=8)
        tagger.backend = RecordingBackend(tagger.backend)
        tagger.evaluation(chosen)
        return tagger.backend.inputs, count

    return samples


def int8_check(budget: float, say) -> Callable[[str], dict]:
    """What decides whether an export keeps its int8 model: the float32 and int8 ONNX models tag
    the run's dev and test files, and int8 stays only if on each its F1 is at most ``budget``
    points below float32's. Its F1 cost depends on the model, so it is measured for each one;
    both files, because one file's change is noisy (a few dozen sentences tagged differently
    move it by half a point either way)."""

    def check(folder: str) -> dict:
        metadata = read_metadata(io.join(folder, METADATA_FILE))
        files, found = run_files(metadata, ("dev", "test"))
        if not found:
            reason = ("the run had no dev or test file to measure its F1 cost on" if not files else
                      "the run's dev and test files are no longer where training read them, or have changed since, "
                      "so its F1 cost cannot be measured")
            say(f"model.int8.onnx not kept: {reason}")
            return {"kept": False, "reason": reason, "budget": budget}
        columns = metadata.training.get("settings", {}).get("columns")
        say(f"model.int8.onnx: tagging the run's {' and '.join(split for split, _ in found)} file(s) with it and with "
            "model.onnx, to measure its F1 cost")
        taggers = {runtime: load(folder, runtime=runtime) for runtime in ("onnx", "onnx-int8")}
        splits = {}
        for split, path in found:
            f1, predicted = {}, {}
            for runtime, tagger in taggers.items():
                scores, predicted[runtime] = tagger.evaluation(path, columns=columns)
                f1[runtime] = round(100 * scores.as_dict()["f1"], 2)
            splits[split] = {"file": path, "sentences": len(predicted["onnx"]),
                             "sentences_differing": sum(a != b for a, b in zip(predicted["onnx"], predicted["onnx-int8"])),
                             "f1_float32": f1["onnx"], "f1_int8": f1["onnx-int8"], "f1_change": round(f1["onnx-int8"] - f1["onnx"], 2)}
        verdict = {"kept": all(m["f1_change"] >= -budget for m in splits.values()), "budget": budget, "splits": splits}
        missing = sorted(set(files) - set(splits))
        if missing:
            verdict["not_measured"] = {split: "no longer where training read it, or changed since" for split in missing}
        outcome = "kept" if verdict["kept"] else f"not kept (the budget is {budget} points on each)"
        measured = "; ".join(f"{split} F1 {m['f1_int8']:.2f} against {m['f1_float32']:.2f} in float32 ({m['f1_change']:+.2f}), "
                             f"{m['sentences_differing']} of {m['sentences']} sentences tagged differently" for split, m in splits.items())
        say(f"model.int8.onnx: {measured}: {outcome}")
        return verdict

    return check


def finished_result(config: TrainConfig, record: dict, out: str, say) -> TrainResult:
    """The result of a finished run, from its record; exports again only if its export is missing."""
    training, result = record.get("training", {}), record.get("result", {})
    export_path = export_model(config, say) if config.output.export else None
    return TrainResult(
        out, run_folder.model_dir(out), export_path, training.get("steps", 0), training.get("best_step"), training.get("best_dev_f1"),
        result.get("dev"), result.get("test"), training.get("train_seconds", 0.0), already_finished=True,
        warnings=tuple(training.get("warnings", ())),
    )
