"""bner's main job: ``python -m bner.ner.task`` trains, evaluates, predicts and exports.

The flags of the original TensorFlow 1 project keep their names, defaults and meaning;
new ones are added below them. ``--helpfull`` lists them all.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import sys
import time
from importlib import metadata as package_metadata

from absl import app, flags
from absl import logging as absl_logging

from bner.settings import configure_environment, import_tensorflow_quietly

configure_environment()

FLAGS = flags.FLAGS
SAMPLE_DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "sample")

# ---------------------------------------------------------------- the original interface
flags.DEFINE_string("data_dir", SAMPLE_DATA, "Folder with train.conll, test.conll and optionally dev.conll (local or gs://). Defaults to the bundled sample.")
flags.DEFINE_string("output_dir", "output", "Folder for checkpoints, results, the trained model and the export (local or gs://).")
flags.DEFINE_string("bert_config_file", None, "bert_config.json of a Google BERT checkpoint: the model architecture.")
flags.DEFINE_string("vocab_file", None, "vocab.txt the BERT model was trained with.")
flags.DEFINE_string("init_checkpoint", None, "Initial checkpoint, usually from a pre-trained BERT model (e.g. .../bert_model.ckpt).")
flags.DEFINE_bool("do_lower_case", True, "Lower-case (and strip accents from) the input: true for uncased models. If not given, follows the model.")
flags.DEFINE_bool("do_train", False, "Fine-tune on train.conll.")
flags.DEFINE_bool("do_eval", False, "Score the model on test.conll (and dev.conll): eval_results.txt, test_results.tsv.")
flags.DEFINE_bool("do_predict", False, "Label --predict_file (default: test.conll) and write the predictions.")
flags.DEFINE_integer("max_seq_length", 128, "Maximum word pieces per model input, [CLS] and [SEP] included. Longer sentences are split into overlapping windows, never cut.")
flags.DEFINE_integer("train_batch_size", 32, "Total batch size for training (across all replicas).")
flags.DEFINE_integer("eval_batch_size", 8, "Batch size for evaluation.")
flags.DEFINE_integer("predict_batch_size", 8, "Batch size for prediction.")
flags.DEFINE_float("learning_rate", 5e-5, "Peak learning rate of AdamW.")
flags.DEFINE_float("num_train_epochs", 3.0, "Number of training epochs (may be fractional).")
flags.DEFINE_float("warmup_proportion", 0.1, "Proportion of training steps with linear learning-rate warm-up.")
flags.DEFINE_integer("save_checkpoints_steps", 1000, "Save a checkpoint every this many steps (and at the end of each epoch).")
flags.DEFINE_integer("iterations_per_loop", 1000, "Steps run on the TPU per host call (TPU only): up to this many batches of one shape run as one device execution.")
flags.DEFINE_bool("use_tpu", False, "Train on a Cloud TPU.")
flags.DEFINE_string("tpu_name", None, "Name or grpc:// address of the Cloud TPU to use with --use_tpu.")
flags.DEFINE_string("tpu_zone", None, "GCE zone of the Cloud TPU. If not given, looked up from metadata.")
flags.DEFINE_string("gcp_project", None, "Google Cloud project of the Cloud TPU. If not given, looked up from metadata.")
flags.DEFINE_string("master", None, "TensorFlow master address of the TPU (used when --tpu_name is not given).")
flags.DEFINE_integer("num_tpu_cores", 8, "Number of TPU cores to use with --use_tpu.")
flags.DEFINE_string("tfhub_cache_dir", None, "Cache folder for downloaded models (TF-Hub / Kaggle / KerasHub presets).")

# ---------------------------------------------------------------- added by bner
flags.DEFINE_string("pretrained_model", None, "Pretrained BERT as one folder: a Hugging Face folder (config.json, model.safetensors, vocab.txt or tokenizer.json), a KerasHub preset folder, or a Google BERT folder. Instead of the original trio.")
flags.DEFINE_bool("do_export", False, "Export a versioned SavedModel with metadata.json and tokenizer.json (also done at the end of --do_train).")
flags.DEFINE_string("export_dir", None, "Where exports go: <export_dir>/<model_name>/<version>/. Default: <output_dir>/export.")
flags.DEFINE_string("model_name", "bner", "Model name in the export path and in TensorFlow Serving.")
flags.DEFINE_enum("precision", "auto", ["auto", "float32", "mixed_bfloat16", "mixed_float16"], "Training precision; auto uses bfloat16 where the CPU/GPU/TPU computes it natively.")
flags.DEFINE_integer("seed", 42, "Random seed for initialisation, dropout and shuffling.")
flags.DEFINE_enum("tag_scheme", "auto", ["auto", "IOB1", "IOB2", "IOBES"], "Tag scheme of the data files; auto detects it from train.conll.")
flags.DEFINE_float("weight_decay", 0.01, "AdamW weight decay (not applied to LayerNorm parameters and biases).")
flags.DEFINE_float("adam_epsilon", 1e-8, "AdamW epsilon.")
flags.DEFINE_float("max_grad_norm", 1.0, "Clip gradients to this global norm (0 turns clipping off).")
flags.DEFINE_float("dropout", None, "Dropout of the encoder and head. Default: the pretrained model's hidden_dropout_prob.")
flags.DEFINE_string("hidden_act", None, "Override the encoder's feed-forward activation (gelu = exact erf, gelu_tanh = tanh approximation, relu).")
flags.DEFINE_string("predict_file", None, "File to label with --do_predict: a .conll file, or plain text with one text a line. Default: test.conll.")
flags.DEFINE_integer("keep_checkpoints", 2, "How many training checkpoints to keep.")
flags.DEFINE_bool("progress", True, "Show progress bars.")
flags.DEFINE_multi_string("show", [], "Raw sentences to label with the export at the end, to see it work.")

log = logging.getLogger("bner")


class UserError(Exception):
    """A mistake in flags or data: reported as one line, exit status 2."""


def say(message: str) -> None:
    print(message, flush=True)


# ---------------------------------------------------------------- steps


def read_splits(data_dir: str, need_train: bool):
    from bner import corpus, io

    splits = {}
    for name in ("train", "dev", "test"):
        path = io.join(data_dir, f"{name}.conll")
        if io.exists(path):
            splits[name] = corpus.read_conll(path)
        elif name == "train" and need_train:
            raise UserError(f"{path}: file not found (--do_train needs train.conll in --data_dir)")
    return splits


def file_digest(path: str) -> str:
    from bner import io

    return hashlib.sha256(io.read_bytes(path)).hexdigest()


def package_versions() -> dict:
    names = ["bner", "keras", "keras-hub", "tensorflow", "tokenizers", "numpy", "jax"]
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = package_metadata.version(name)
        except package_metadata.PackageNotFoundError:
            pass
    return versions


def choose_casing(pretrained) -> tuple[bool, bool]:
    """(lowercase, strip_accents): the flag if given, else what the model says, else its vocabulary."""
    from bner.model import model_lowercases

    said = None if FLAGS["do_lower_case"].present else model_lowercases(pretrained)
    lowercase = FLAGS.do_lower_case if said is None else said
    return lowercase, lowercase


def train(splits) -> str:
    """Fine-tune and save the tagger folder; returns its path."""
    import dataclasses

    import keras

    from bner import corpus, features, io, metadata, model, predict
    from bner import train as training
    from bner.checkpoints import CheckpointManager, load_tagger, save_tagger
    from bner.evaluate import score

    keras.utils.set_random_seed(FLAGS.seed)
    pretrained = model.locate_pretrained(
        FLAGS.pretrained_model, FLAGS.bert_config_file, FLAGS.init_checkpoint, FLAGS.vocab_file
    )
    config = pretrained.config
    if FLAGS.hidden_act:
        config = dataclasses.replace(config, hidden_act=FLAGS.hidden_act)
    if FLAGS.dropout is not None:
        config = dataclasses.replace(config, dropout=FLAGS.dropout)
    if FLAGS.max_seq_length > config.max_position_embeddings:
        raise UserError(
            f"--max_seq_length {FLAGS.max_seq_length} is longer than the model's {config.max_position_embeddings} positions"
        )
    lowercase, strip_accents = choose_casing(pretrained)
    tokenizer = features.build_tokenizer(pretrained.vocab_file, pretrained.tokenizer_file, lowercase, strip_accents)

    data_scheme = FLAGS.tag_scheme if FLAGS.tag_scheme != "auto" else corpus.detect_scheme(s.tags for s in splits["train"])
    label_scheme = corpus.model_scheme(data_scheme)
    labels = corpus.label_list(corpus.entity_types(splits["train"]), label_scheme)
    label_index = {label: i for i, label in enumerate(labels)}
    say(
        f"data: {data_scheme} tags, {len(splits['train'])} training sentences, "
        f"entity types {', '.join(corpus.entity_types(splits['train']))}; learning {label_scheme} labels"
    )

    on_tpu = FLAGS.use_tpu
    precision = training.select_precision(FLAGS.precision, on_tpu=on_tpu)
    keras.mixed_precision.set_dtype_policy(precision)
    encoder = features.Encoder(tokenizer, FLAGS.max_seq_length)
    train_words = [s.words for s in splits["train"]]
    train_labels = [[label_index[t] for t in corpus.convert_tags(s.tags, label_scheme)] for s in splits["train"]]
    examples = encoder.encode(train_words, train_labels)
    buckets = features.bucket_lengths(FLAGS.max_seq_length)
    settings = training.LoopSettings(
        batch_size=FLAGS.train_batch_size,
        num_epochs=FLAGS.num_train_epochs,
        seed=FLAGS.seed,
        save_checkpoints_steps=FLAGS.save_checkpoints_steps,
        drop_remainder=on_tpu,
        steps_per_execution=max(1, FLAGS.iterations_per_loop) if on_tpu else 1,
    )
    if on_tpu and FLAGS.train_batch_size % FLAGS.num_tpu_cores:
        raise UserError(f"--train_batch_size={FLAGS.train_batch_size} must divide evenly over --num_tpu_cores={FLAGS.num_tpu_cores}")
    per_epoch = training.steps_per_epoch(examples, settings, buckets)
    planned = training.total_steps(per_epoch, FLAGS.num_train_epochs)
    windows = len(examples) - len(train_words)
    say(
        f"model: {pretrained.format} BERT from {pretrained.source} ({config.num_layers} layers, hidden {config.hidden_size}, "
        f"{'uncased' if lowercase else 'cased'}); {precision} on {keras.backend.backend()}; "
        f"{planned} steps ({per_epoch} per epoch){f'; {windows} extra windows for long sentences' if windows else ''}"
    )

    strategy = training.select_strategy(
        training.TpuSettings(FLAGS.use_tpu, FLAGS.tpu_name, FLAGS.tpu_zone, FLAGS.gcp_project, FLAGS.master, FLAGS.num_tpu_cores)
    ) if keras.backend.backend() == "tensorflow" else None
    chief = training.is_chief()
    checkpoints = CheckpointManager(io.join(FLAGS.output_dir, "checkpoints"), keep=FLAGS.keep_checkpoints, writer=chief)
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    with scope:
        # On TPUs the whole step is compiled by XLA already.
        tagger = model.build_tagger(config, len(labels), compiled_activation=not on_tpu)
        clip = FLAGS.max_grad_norm or None
        optimizer = training.make_optimizer(
            FLAGS.learning_rate,
            planned,
            int(planned * FLAGS.warmup_proportion),
            FLAGS.weight_decay,
            clip_norm=clip if strategy is None else None,
            loss_scaling=precision == "mixed_float16",
            epsilon=FLAGS.adam_epsilon,
        )
        optimizer.build(tagger.trainable_variables)
        if checkpoints.latest() is None:
            pretrained.load_weights(model.encoder_of(tagger))
        else:
            say(f"resuming from {checkpoints.latest()}")
    step = (
        training.TensorFlowStep(tagger, optimizer, strategy, clip, static_shapes=on_tpu)
        if strategy is not None
        else training.KerasStep(tagger, optimizer)
    )

    info = metadata.TaggerMetadata(
        labels=labels,
        label_scheme=label_scheme,
        data_scheme=data_scheme,
        max_seq_length=FLAGS.max_seq_length,
        lowercase=lowercase,
        strip_accents=strip_accents,
        encoder=config,
        pretrained={"format": pretrained.format, "source": str(pretrained.source)},
    )
    model_dir = io.join(FLAGS.output_dir, "model")
    best_dir = io.join(FLAGS.output_dir, "best_model")

    callbacks = []
    if "dev" in splits:
        dev = splits["dev"]

        def dev_f1() -> float:
            tagged = predict.tag_words([s.words for s in dev], encoder, predict.keras_piece_labels_fn(tagger), labels, FLAGS.eval_batch_size)
            return score([s.tags for s in dev], [t.tags for t in tagged]).f1

        def keep_best(at_step: int) -> None:
            if chief:
                save_tagger(tagger, dataclasses.replace(info, training={"best_step": at_step}), tokenizer, best_dir)

        callbacks.append(training.DevEvaluation(dev_f1, keep_best))
    if chief:
        callbacks.append(training.TensorBoardLogs(io.join(FLAGS.output_dir, "logs")))
    callbacks.append(training.ProgressBar(FLAGS.progress))

    started = time.time()
    state = training.run_training(tagger, optimizer, step, examples, settings, buckets, encoder.tokenizer.token_to_id("[PAD]"), checkpoints, callbacks)
    elapsed = time.time() - started
    replicas = strategy.num_replicas_in_sync if strategy is not None else 1
    say(f"trained to step {state.step} on {replicas} replica(s), global batch {FLAGS.train_batch_size}")
    summary = {
        "steps": state.step,
        "epochs": FLAGS.num_train_epochs,
        "seconds_this_run": round(elapsed, 1),
        "train_seconds": round(state.train_seconds, 2),
        "real_pieces_per_epoch": int(sum(len(e) for e in examples)),
        "precision": precision,
        "backend": keras.backend.backend(),
        "replicas": replicas,
        "history": state.history,
        "best_dev_f1": state.best_dev_f1 if "dev" in splits else None,
        "best_step": state.best_step if "dev" in splits else None,
        "train_examples": len(examples),
    }
    if chief:
        if "dev" in splits and io.exists(best_dir):
            say(f"best dev F1 {100 * state.best_dev_f1:.2f} at step {state.best_step}: keeping that model")
            best_model, _, _ = load_tagger(best_dir)
            save_tagger(best_model, dataclasses.replace(info, training=summary), tokenizer, model_dir)
        else:
            save_tagger(tagger, dataclasses.replace(info, training=summary), tokenizer, model_dir)
        record = {
            "flags": {f.name: f.value for f in FLAGS.get_key_flags_for_module(sys.modules[__name__])},
            "versions": package_versions(),
            "labels": labels,
            "data_scheme": data_scheme,
            "data_files": {
                name: {
                    "path": io.join(FLAGS.data_dir, f"{name}.conll"),
                    "sha256": file_digest(io.join(FLAGS.data_dir, f"{name}.conll")),
                    **corpus.corpus_statistics(splits[name]),
                }
                for name in splits
            },
            "seed": FLAGS.seed,
            "training": summary,
        }
        training.write_run_record(FLAGS.output_dir, record)
    return model_dir


def load_inference_tagger():
    """The trained tagger in float32, as evaluation, prediction and export all use it."""
    import keras

    from bner import features, io, predict
    from bner.checkpoints import load_tagger

    model_dir = io.join(FLAGS.output_dir, "model")
    if not io.exists(io.join(model_dir, "metadata.json")):
        raise UserError(f"{model_dir}: no trained model (run with --do_train first, or point --output_dir at a finished run)")
    keras.mixed_precision.set_dtype_policy("float32")
    tagger, info, tokenizer = load_tagger(model_dir)
    encoder = features.Encoder(tokenizer, info.max_seq_length)
    return predict.keras_piece_labels_fn(tagger), info, encoder


def evaluate(splits, logits_fn, info, encoder) -> None:
    from bner import corpus, io, predict
    from bner import evaluate as scoring

    for name in ("dev", "test"):
        if name not in splits:
            continue
        sentences = splits[name]
        tagged = predict.tag_words([s.words for s in sentences], encoder, logits_fn, info.labels, FLAGS.eval_batch_size)
        predicted = [corpus.convert_tags(t.tags, info.data_scheme) for t in tagged]
        scores = scoring.score([s.tags for s in sentences], predicted)
        results_name = "eval_results" if name == "test" else "dev_results"
        scoring.write_results(scores, FLAGS.output_dir, results_name)
        if name == "test":
            rows = [[(w, g, p) for w, g, p in zip(s.words, s.tags, pred)] for s, pred in zip(sentences, predicted)]
            io.write_text(io.join(FLAGS.output_dir, "test_results.tsv"), corpus.format_conll(rows))
        say(f"\n{name} ({len(sentences)} sentences): entity precision {100 * scores.overall.precision:.2f}  "
            f"recall {100 * scores.overall.recall:.2f}  F1 {100 * scores.f1:.2f}")
        say(f"  {'type':<16} {'precision':>9} {'recall':>7} {'F1':>7} {'support':>8}")
        for entity_type, c in scores.per_type.items():
            say(f"  {entity_type:<16} {100 * c.precision:9.2f} {100 * c.recall:7.2f} {100 * c.f1:7.2f} {c.gold:8d}")
    say(f"wrote {io.join(FLAGS.output_dir, 'eval_results.txt')} (+ .json) and test_results.tsv")


def run_predictions(splits, logits_fn, info, encoder) -> None:
    from bner import corpus, io, predict

    path = FLAGS.predict_file or io.join(FLAGS.data_dir, "test.conll")
    if path.endswith(".conll"):
        sentences = corpus.read_conll(path, require_tags=False)
        tagged = predict.tag_words([s.words for s in sentences], encoder, logits_fn, info.labels, FLAGS.predict_batch_size)
        rows = [
            [(w, tag) for w, tag in zip(s.words, corpus.convert_tags(t.tags, info.data_scheme))]
            for s, t in zip(sentences, tagged)
        ]
        out = io.join(FLAGS.output_dir, "predictions.conll")
        io.write_text(out, corpus.format_conll(rows))
    else:
        lines = io.read_text(path).splitlines()
        results = predict.tag_texts(lines, encoder, logits_fn, info.labels, FLAGS.predict_batch_size)
        out = io.join(FLAGS.output_dir, "predictions.jsonl")
        records = [
            json.dumps({"text": r.text, "entities": [e.as_dict() for e in r.entities]}, ensure_ascii=False) for r in results
        ]
        io.write_text(out, "\n".join(records) + ("\n" if records else ""))
    say(f"wrote predictions for {path} to {out}")


def export() -> str | None:
    import importlib.util

    import keras

    from bner import export as exporting
    from bner import io

    model_dir = io.join(FLAGS.output_dir, "model")
    if not io.exists(io.join(model_dir, "metadata.json")):
        raise UserError(f"{model_dir}: no trained model to export (run with --do_train first)")
    export_dir = FLAGS.export_dir or io.join(FLAGS.output_dir, "export")
    if keras.backend.backend() != "tensorflow":
        # A SavedModel is a TensorFlow artefact; the weights file is backend-neutral.
        command = [sys.executable, "-m", "bner.ner.task", "--do_export", f"--output_dir={FLAGS.output_dir}",
                   f"--export_dir={export_dir}", f"--model_name={FLAGS.model_name}"]
        if importlib.util.find_spec("tensorflow") is None:
            say("TensorFlow is not installed here: export on a machine that has it with\n  KERAS_BACKEND=tensorflow python " + " ".join(command[1:]))
            return None
        import subprocess

        say("exporting under the TensorFlow backend")
        subprocess.run(command, env={**os.environ, "KERAS_BACKEND": "tensorflow"}, check=True)
        return exporting.latest_export(io.join(export_dir, FLAGS.model_name))
    path = exporting.export_tagger(model_dir, export_dir, FLAGS.model_name)
    say(f"exported SavedModel to {path}")
    return path


def show_examples(export_path: str, sentences: list[str]) -> None:
    """Label raw sentences with the reloaded export, the way the server does."""
    from bner import features, predict
    from bner.serving.backends import SavedModelBackend

    backend = SavedModelBackend(export_path)
    encoder = features.Encoder(backend.tokenizer, backend.metadata.max_seq_length)
    say("\npredictions of the exported model:")
    for result in predict.tag_texts(sentences, encoder, backend.piece_labels, backend.metadata.labels):
        shown = ", ".join(f"{e.text!r} {e.type} [{e.start}:{e.end}] {e.score:.2f}" for e in result.entities) or "(no entities)"
        say(f"  {result.text}\n    → {shown}")


def main(argv) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    absl_logging.set_verbosity(absl_logging.WARNING)
    if FLAGS.tfhub_cache_dir:
        os.environ["TFHUB_CACHE_DIR"] = FLAGS.tfhub_cache_dir
        os.environ["KAGGLEHUB_CACHE"] = FLAGS.tfhub_cache_dir
    import_tensorflow_quietly()
    from bner import corpus, model
    from bner.train import is_chief

    try:
        if not (FLAGS.do_train or FLAGS.do_eval or FLAGS.do_predict or FLAGS.do_export):
            raise UserError("nothing to do: pass at least one of --do_train, --do_eval, --do_predict, --do_export")
        splits = read_splits(FLAGS.data_dir, FLAGS.do_train)
        if FLAGS.do_eval and "test" not in splits:
            raise UserError(f"{FLAGS.data_dir}: --do_eval needs test.conll")
        if FLAGS.do_train:
            train(splits)
        export_path = None
        if not is_chief():
            # Every worker trained; the chief alone evaluates and writes (they share --output_dir).
            say("training done on this worker; the chief writes results and the export")
            return 0
        if FLAGS.do_eval or FLAGS.do_predict:
            logits_fn, info, encoder = load_inference_tagger()
            if FLAGS.do_eval:
                evaluate(splits, logits_fn, info, encoder)
            if FLAGS.do_predict:
                run_predictions(splits, logits_fn, info, encoder)
        if FLAGS.do_export or FLAGS.do_train:
            export_path = export()
        if FLAGS.show and export_path:
            show_examples(export_path, FLAGS.show)
    except (UserError, corpus.CorpusError, model.PretrainedError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def run() -> None:
    app.run(main)


if __name__ == "__main__":
    run()
