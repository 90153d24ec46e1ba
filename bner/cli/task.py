"""bner's main job: python -m bner.ner.task trains, evaluates, predicts and exports.

The flags of the original TensorFlow 1 project keep their names, defaults and meaning
(bner/cli/flags.py); the learning rate's default follows the encoder's width: 5e-5, the
original's, for base-size encoders, 1e-4 for narrower ones. --help lists every flag, and
--learning-rate reads as --learning_rate. Flags and paths are checked before TensorFlow is
imported, so a mistake fails in well under a second. (This module is a shell: flags →
bner.TrainConfig → bner.train and bner/cli/steps.py.)
"""

from __future__ import annotations

import logging
import subprocess
import sys

from absl import app
from absl import logging as absl_logging

from bner.cli.flags import FLAGS, config_from_flags
from bner.config import ConfigError, TrainConfig
from bner.environment import configure_environment, import_tensorflow_quietly

configure_environment()


def say(message: str) -> None:
    # With predictions going to standard output, everything else goes to standard error.
    print(message, flush=True, file=sys.stderr if FLAGS.is_parsed() and FLAGS.predict_output == "-" else sys.stdout)


def check_before_starting(config: TrainConfig) -> None:
    """Everything that can be checked without TensorFlow: values, folders, the pretrained model's shape."""
    from bner import io
    from bner.cli.steps import check_model_window
    from bner.folders import model_folder, run_folder

    if not (FLAGS.do_train or FLAGS.do_eval or FLAGS.do_predict or FLAGS.do_export):
        raise ConfigError("nothing to do: pass at least one of --do_train, --do_eval, --do_predict, --do_export")
    if FLAGS.do_predict and FLAGS.predict_file and FLAGS.predict_output:
        from bner.inference import prediction

        prediction.check_output(FLAGS.predict_file, FLAGS.predict_output)
    if FLAGS.do_eval and FLAGS.eval_output_dir and not io.same_file(FLAGS.eval_output_dir, config.output.output_dir):
        from bner.inference import evaluate

        for name in run_folder.RESULTS_NAMES.values():  # another run's results are not replaced
            evaluate.check_results_name(FLAGS.eval_output_dir, name)
    if FLAGS.do_train:
        from bner.training.recipe import check_before_training

        return check_before_training(config, FLAGS.overwrite_output_dir)
    config.check()
    data_dir = config.data.data_dir
    if (FLAGS.do_eval or (FLAGS.do_predict and not FLAGS.predict_file)) and not io.exists(data_dir):
        raise ConfigError(f"--data_dir={data_dir}: no such folder")
    if FLAGS.do_eval and not io.exists(io.join(data_dir, "test.conll")):
        raise ConfigError(f"{data_dir}: --do_eval needs test.conll")
    model_dir = run_folder.model_dir(config.output.output_dir)
    if not model_folder.is_model_folder(model_dir):
        raise ConfigError(f"{model_dir}: no trained model (run with --do_train first, or point --output_dir at a finished run)")
    check_model_window(model_dir, window_override())


def window_override() -> int | None:
    return FLAGS.max_seq_length if FLAGS["max_seq_length"].present else None


def run_steps(config: TrainConfig) -> None:
    from bner import io
    from bner.cli import steps as commands
    from bner.folders import run_folder
    from bner.inference.loader import load
    from bner.training import hardware
    from bner.training.recipe import export_model, train

    out = config.output.output_dir
    export_path = None
    if FLAGS.do_train:
        export_path = train(config, overwrite_output_dir=FLAGS.overwrite_output_dir, say=say).export_path
        if not hardware.is_chief():
            return  # every worker trained; the chief alone evaluated and wrote (they share --output_dir)
    if (FLAGS.do_eval and not FLAGS.do_train) or FLAGS.do_predict:
        tagger = load(run_folder.model_dir(out), batch_size=config.loop.eval_batch_size, max_seq_length=window_override())
        if FLAGS.do_eval and not FLAGS.do_train:
            folder = commands.evaluation_folder(out, config.data.data_dir, FLAGS.eval_output_dir)
            commands.evaluate_files(tagger, config.data.data_dir, folder, say, columns=config.data.columns)
        if FLAGS.do_predict:
            from bner.inference import prediction

            path = FLAGS.predict_file or io.join(config.data.data_dir, "test.conll")
            fmt = prediction.input_format(path, FLAGS.predict_format)
            target = FLAGS.predict_output or io.join(out, f"predictions.{prediction.output_suffix(fmt)}")
            done = prediction.predict_file(
                tagger, path, target, fmt, FLAGS.predict_batch_size, progress=config.loop.progress and target != "-",
                columns=config.data.columns,
            )
            if done.written != "standard output":
                say(f"wrote predictions for {done.count} {'sentences' if fmt == 'conll' else 'texts'} of {path} to {done.written}")
            if done.errors:
                say(f"warning: {done.errors} line(s) could not be read and were not labelled: file, line and reason in "
                    f"{done.errors_file or 'standard error'}")
    if FLAGS.do_export and not FLAGS.do_train:
        export_path = export_model(config, say)
    if FLAGS.show and export_path:
        commands.show_examples(load(export_path), FLAGS.show, say)
    if FLAGS.do_train and export_path:
        commands.next_steps(export_path, say, run_dir=out)


def main(argv) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    absl_logging.set_verbosity(absl_logging.WARNING)
    from bner.data.corpus import CorpusError
    from bner.model.pretrained import PretrainedError

    try:
        config = config_from_flags()
        check_before_starting(config)
        import_tensorflow_quietly()
        run_steps(config)
    except (ConfigError, CorpusError, PretrainedError, ValueError, OSError, subprocess.CalledProcessError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def run() -> None:
    from bner.arguments import underscored

    sys.argv = [sys.argv[0], *(underscored(a) for a in sys.argv[1:])]  # --learning-rate, as bner's other command lines take it
    app.run(main)


if __name__ == "__main__":
    run()
