"""The absl flags of ``python -m bner.ner.task``: the original project's, plus bner's own.

The settings of a run are :class:`bner.config.TrainConfig`'s fields, defined here as
flags from the fields themselves (same names, defaults and help), so the flags and the
config cannot disagree. The flags below them choose what the task does.
"""

from __future__ import annotations

import os

from absl import flags

from bner.config import ConfigError, TrainConfig, all_fields

FLAGS = flags.FLAGS


def _define_setting(name: str, field) -> None:
    meta, default = field.metadata, field.default
    if name == "do_lower_case":
        # The original default; when the flag is not given the model decides (see config_from_flags).
        flags.DEFINE_bool(name, True, meta["help"])
    elif meta["choices"]:
        flags.DEFINE_enum(name, default, list(meta["choices"]), meta["help"])
    elif meta["kind"] is bool:
        flags.DEFINE_bool(name, default, meta["help"])
    elif meta["kind"] is int:
        flags.DEFINE_integer(name, default, meta["help"])
    elif meta["kind"] is float:
        flags.DEFINE_float(name, default, meta["help"])
    else:
        flags.DEFINE_string(name, default, meta["help"])


for _name, _field in all_fields().items():
    _define_setting(_name, _field)

# ---------------------------------------------------------------- what to do (not part of the run's config)
flags.DEFINE_bool("do_train", False, "Fine-tune on train.conll.")
flags.DEFINE_bool("do_eval", False, "Score the model on test.conll (and dev.conll): eval_results.txt, test_results.tsv.")
flags.DEFINE_bool("do_predict", False, "Label --predict_file (default: test.conll) and write the predictions to --predict_output.")
flags.DEFINE_bool("do_export", False, "Export a versioned SavedModel with metadata.json and tokenizer.json (also done at the end of --do_train).")
flags.DEFINE_integer("predict_batch_size", 8, "Batch size for prediction.")
flags.DEFINE_string("predict_file", None, "File to label with --do_predict (local or gs://, - for standard input): CoNLL (.conll), JSONL with a text field (.jsonl), or plain text with one text a line. Default: test.conll.")
flags.DEFINE_enum("predict_format", "auto", ["auto", "text", "jsonl", "conll"], "Format of --predict_file; auto goes by its extension (standard input: text).")
flags.DEFINE_string("predict_output", None, "Where --do_predict writes (- for standard output). Default: <output_dir>/predictions.conll for CoNLL input, else predictions.jsonl.")
flags.DEFINE_string("eval_output_dir", None, "Where --do_eval writes its results. Default: <output_dir> for the run's own data, else <output_dir>/eval_<name of --data_dir> (the run's results are never overwritten by another data set's).")
flags.DEFINE_multi_string("show", [], "Raw sentences to label with the export at the end, to see it work.")
flags.DEFINE_string("config", None, "A run.json (or a config JSON of the same shape) to replay; flags given beside it override its values.")
flags.DEFINE_bool("overwrite_output_dir", False, "Start over in an --output_dir that holds another run (its checkpoints, model and results are removed; exports stay).")


def config_from_flags() -> TrainConfig:
    """The run's config: --config's values (if given) under the flags given on the command line."""
    base = TrainConfig.read(FLAGS.config) if FLAGS.config else TrainConfig()
    values = {}
    for name in all_fields():
        if FLAGS[name].present:
            values[name] = FLAGS[name].value
        elif not FLAGS.config:
            # Without --config every flag counts, at its default; --do_lower_case only when given.
            values[name] = None if name == "do_lower_case" else FLAGS[name].value
    if not FLAGS["output_dir"].present and not FLAGS.config and os.environ.get("AIP_MODEL_DIR"):
        # A Vertex AI job (each hyperparameter-tuning trial its own) names its folder for the model:
        # the run's output goes beside it, model/ and all.
        values["output_dir"] = os.environ["AIP_MODEL_DIR"].rstrip("/").rsplit("/", 1)[0]
    try:
        return TrainConfig.from_settings(base, **values)
    except TypeError as e:
        raise ConfigError(f"--config {FLAGS.config}: {e}") from None
