"""The ``bner`` command: ``bner train | evaluate | predict | search | export | serve | dictionary``.

A shell over the library, beside the unchanged ``python -m bner.ner.task``. ``bner train``'s
options are made from :class:`bner.TrainConfig`'s fields (as the absl flags are), grouped
as the config is; every verb checks its arguments before TensorFlow is imported.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys

from bner.arguments import Parser
from bner.cli.options import add_decoding_options, flag_type, load_options
from bner.config import SECTIONS, ConfigError, TrainConfig, all_fields, boolean
from bner.data.corpus import CorpusError
from bner.environment import configure_environment, import_tensorflow_quietly
from bner.inference.prediction import MAX_LINE_BYTES

GROUP_TITLES = {
    "data": "data",
    "model": "model",
    "optimization": "training",
    "loop": "training",
    "hardware": "hardware/TPU",
    "output": "output",
}


def add_train_options(parser: argparse.ArgumentParser) -> None:
    groups = {}
    for section, section_cls in SECTIONS.items():
        title = GROUP_TITLES[section]
        group = groups.get(title) or groups.setdefault(title, parser.add_argument_group(title))
        for field in section_cls.__dataclass_fields__.values():
            meta = field.metadata
            shown = "follows the model" if field.name == "do_lower_case" else field.default
            switch = {"nargs": "?", "const": True} if meta["kind"] is bool else {}  # --keep_checkpoints alone means true
            group.add_argument(
                f"--{field.name}", type=flag_type(meta["kind"]), choices=meta["choices"], default=argparse.SUPPRESS, **switch,
                metavar=None if meta["choices"] else field.name.upper() if meta["kind"] is not bool else "true|false",
                help=f"{meta['help']} (default: {shown})",
            )
    extra = parser.add_argument_group("run")
    extra.add_argument("--config", help="a run.json to replay; options given beside it override its values")
    extra.add_argument("--overwrite_output_dir", type=boolean, nargs="?", const=True, default=False, metavar="true|false",
                       help="start over in an output folder that holds another run (default: false)")


def train_command(args: argparse.Namespace) -> int:
    from bner.training.recipe import check_before_training, train

    base = TrainConfig.read(args.config) if args.config else TrainConfig()
    given = {k: v for k, v in vars(args).items() if k not in ("command", "config", "overwrite_output_dir", "handler")}
    if not args.config and "do_lower_case" not in given:
        given["do_lower_case"] = None
    config = TrainConfig.from_settings(base, **given)
    check_before_training(config, args.overwrite_output_dir)
    import_tensorflow_quietly()
    result = train(config, overwrite_output_dir=args.overwrite_output_dir)
    if result.export_path:
        from bner.cli.steps import next_steps

        next_steps(result.export_path, run_dir=result.output_dir)
    return 0


def evaluate_command(args: argparse.Namespace) -> int:
    from bner.cli.steps import check_model_window
    from bner.inference import evaluate

    check_model_window(args.model, args.max_seq_length)
    if args.output_dir:
        evaluate.check_results_name(args.output_dir, args.name)
    tagger = _load(args)
    try:
        scores = tagger.evaluate(args.data, args.batch_size, args.columns)
    except CorpusError as e:
        if not looks_tagged(args.data):
            raise CorpusError(f"{e}. Evaluation needs CoNLL with gold tags (a word and its tag a line, a blank line "
                              "between sentences); to label plain text, use bner predict") from None
        raise
    unknown = sorted(t for t, counts in scores.per_type.items() if counts.gold and t not in tagger.entity_types)
    if unknown:
        print(f"warning: {args.data} has entity types this model does not predict: {', '.join(unknown)} (they all count "
              f"as missed; the model's types: {', '.join(tagger.entity_types)})", file=sys.stderr)
    if args.output_dir:
        evaluate.write_results(scores, args.output_dir, args.name, tagger.scoring)
    print(json.dumps(scores.as_dict(), indent=2) if args.json else evaluate.format_report(scores), end="\n" if args.json else "")
    return 0


def looks_tagged(path: str, lines: int = 20) -> bool:
    """Whether a file's first non-blank lines end in tags (O, B-X, I-PER, ...), as CoNLL lines do."""
    import re

    from bner import io

    try:
        with io.open_file(path, "r", encoding="utf-8", errors="replace") as handle:
            rows = [line.split() for line, _ in zip((x for x in handle if x.strip()), range(lines))]
    except OSError:
        return True  # nothing to add to the reader's own message
    tagged = [row for row in rows if re.fullmatch(r"O|[BIES]-\S+|[BIES]_\S+", row[-1]) and not row[0].startswith("-DOCSTART-")]
    return not rows or len(tagged) * 2 >= len([r for r in rows if not r[0].startswith("-DOCSTART-")])


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: must be at least 1")
    return value


def predict_command(args: argparse.Namespace) -> int:
    from bner.cli.steps import check_model_window
    from bner.inference import prediction

    check_model_window(args.model, args.max_seq_length)
    prediction.input_format(args.input, args.format)
    prediction.check_output(args.input, args.output)
    tagger = _load(args)
    # SIGTERM (a scheduler stopping the job) unwinds like Ctrl-C, so no half-written file is left behind.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    progress = args.progress if args.progress is not None else args.output != "-"
    done = prediction.predict_file(tagger, args.input, args.output, args.format, args.batch_size, progress=progress,
                                   errors=args.errors, max_line_bytes=args.max_line_bytes, columns=args.columns)
    if done.written != "standard output":
        print(f"wrote predictions for {done.count} texts or sentences of {args.input} to {done.written}", file=sys.stderr)
    if done.errors:
        where = done.errors_file or "standard error"
        print(f"warning: {done.errors} line(s) could not be read and were not labelled: file, line and reason in {where}",
              file=sys.stderr)
    return 0


def search_command(args: argparse.Namespace) -> int:
    from bner.training import search

    spec = search.SearchSpec.read(args.spec)
    import_tensorflow_quietly()
    search.run_search(spec, args.output_dir)
    return 0


def export_command(args: argparse.Namespace) -> int:
    from bner.folders.locate import run_of
    from bner.training.recipe import export_model

    try:
        run_dir = run_of(args.run_dir)  # the run, its model folder, or one of its exports
    except FileNotFoundError as e:
        raise ConfigError(str(e)) from None
    config = TrainConfig.from_settings(output_dir=run_dir, export_dir=args.export_dir, model_name=args.model_name,
                                       export_int8=args.export_int8, int8_f1_budget=args.int8_f1_budget)
    config.check()
    import_tensorflow_quietly()
    export_model(config, print)
    return 0


def dictionary_compile_command(args: argparse.Namespace) -> int:
    from bner.dictionary.matcher import Matcher

    matcher = Matcher.from_files(args.names, fold_case=not args.keep_case, uninvert=args.uninvert, plurals=args.plurals)
    matcher.save(args.output)
    print(f"compiled {matcher.names:,} names ({len(matcher):,} after normalisation; types: {', '.join(matcher.types)}) "
          f"into {args.output}; tag with it: bner predict {args.output} <texts>", file=sys.stderr)
    return 0


def dictionary_harvest_command(args: argparse.Namespace) -> int:
    from bner.data import corpus
    from bner.dictionary import names

    harvested = names.harvest([s for path in args.conll for s in corpus.read_conll(path, columns=args.columns)])
    count = names.write_names(harvested, args.output)
    print(f"wrote {count:,} names (distinct mention and type) of {', '.join(args.conll)} to {args.output}", file=sys.stderr)
    return 0


def add_dictionary_verbs(verbs) -> None:
    dictionary = verbs.add_parser("dictionary", help="compile a dictionary of names (TSV) for dictionary NER, or harvest one")
    steps = dictionary.add_subparsers(dest="step", required=True, metavar="{compile,harvest}")
    build = steps.add_parser("compile", help="compile dictionary TSV files (name, type, optional identifier) into a matcher "
                                             "folder that bner evaluate and predict take as a model")
    build.add_argument("names", nargs="+", help="dictionary TSV files: name<TAB>type[<TAB>identifier] a line; several give their union")
    build.add_argument("--output", required=True, help="the compiled dictionary's folder")
    build.add_argument("--keep_case", action="store_true", help="match case as written (default: case-insensitive)")
    build.add_argument("--uninvert", type=boolean, nargs="?", const=True, default=True, metavar="true|false",
                       help='also match inverted names turned round, "Scleroderma, Systemic" as "Systemic Scleroderma" (default: true)')
    build.add_argument("--plurals", type=boolean, nargs="?", const=True, default=False, metavar="true|false",
                       help='also match the English plural of each name\'s last word, "tumor" as "tumors" (default: false)')
    build.set_defaults(handler=dictionary_compile_command)
    harvest = steps.add_parser("harvest", help="a dictionary TSV of the entity mentions of labelled CoNLL files")
    harvest.add_argument("conll", nargs="+", help="labelled CoNLL files (train, dev)")
    harvest.add_argument("--output", required=True, help="the dictionary TSV to write")
    harvest.add_argument("--columns", help="where the word and the tag are, e.g. tag,word (default: the word first, the tag last)")
    harvest.set_defaults(handler=dictionary_harvest_command)


def _load(args):
    import bner

    return bner.load(args.model, batch_size=args.batch_size, max_seq_length=args.max_seq_length, **load_options(args))


def _model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="an export (version folder or folder of versions), a trained-model folder or a run folder")
    parser.add_argument("--batch_size", "--eval_batch_size", "--predict_batch_size", dest="batch_size", type=int, default=32,
                        help="texts or sentences per model call (default: 32; the training flags' names are aliases)")
    parser.add_argument("--max_seq_length", type=int, help="window length in word pieces (default: the model's)")
    add_decoding_options(parser)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="bner", description="BERT named-entity recognition: train, evaluate, predict, search, export, serve.")
    verbs = parser.add_subparsers(dest="command", required=True, metavar="{train,evaluate,predict,search,export,serve,dictionary}")
    train = verbs.add_parser("train", help="fine-tune a pretrained BERT on CoNLL files, score it and export it")
    add_train_options(train)
    train.set_defaults(handler=train_command)
    evaluate = verbs.add_parser("evaluate", help="score a model on a CoNLL file, as conlleval does")
    _model_arguments(evaluate)
    evaluate.add_argument("data", help="a CoNLL file with gold tags")
    evaluate.add_argument("--output_dir", help="also write <name>.txt and <name>.json there")
    evaluate.add_argument("--name", default="eval_results", help="file name stem of the written results (default: eval_results)")
    evaluate.add_argument("--columns", help="where the word and the gold tag are, e.g. tag,word or word,pos,chunk,tag "
                                             "(default: the word first, the tag last)")
    # A switch: an optional true|false value would take the next argument (the model) as its value.
    evaluate.add_argument("--json", action="store_true", help="print JSON instead of conlleval's report")
    evaluate.set_defaults(handler=evaluate_command)
    predict = verbs.add_parser("predict", help="label CoNLL, JSONL or plain-text files (or standard input) of any size")
    _model_arguments(predict)
    predict.add_argument("input", help="a .conll file (CoNLL out), a .jsonl file with a text field, or text with one text a line "
                                       "(JSONL out, entities added); local or gs://; - reads standard input")
    predict.add_argument("--format", default="auto", choices=["auto", "text", "jsonl", "conll"],
                         help="input format (default: by extension; standard input is text)")
    predict.add_argument("--output", "--predict_output", dest="output", default="-", help="where to write (default: standard output); a file appears only when complete")
    predict.add_argument("--errors", help="JSONL of the lines that could not be read, with file, line and reason "
                                          "(default: <output>.errors.jsonl, or standard error when writing to standard output)")
    predict.add_argument("--progress", type=flag_type(bool), nargs="?", const=True, metavar="true|false",
                         help="progress bar with texts/s on standard error (default: on when writing to a file)")
    predict.add_argument("--columns", help="CoNLL input: which column holds the word, e.g. tag,word (default: the first)")
    predict.add_argument("--max_line_bytes", type=positive_int, default=MAX_LINE_BYTES,
                         help="a longer line is not labelled but reported in the errors file, and never held in memory whole; "
                              f"tagging takes about 0.6 GB per MB of the longest line allowed (default: {MAX_LINE_BYTES:,})")
    predict.set_defaults(handler=predict_command)
    tune = verbs.add_parser("search", help="grid or random search over training settings, chosen on dev F1")
    tune.add_argument("spec", help="a YAML or JSON file: base settings, parameters and their values, algorithm, max_trials, metric")
    tune.add_argument("--output_dir", required=True, help="trials go to <output_dir>/trial-NNN; results.csv/.md and best.json beside them")
    tune.set_defaults(handler=search_command)
    export = verbs.add_parser("export", help="export a run's trained model as a versioned SavedModel")
    export.add_argument("run_dir", help="the run's --output_dir")
    export.add_argument("--export_dir", help="where exports go (default: <run_dir>/export)")
    export.add_argument("--model_name", default="bner", help="model name in the export path (default: bner)")
    fields = all_fields()
    export.add_argument("--export_int8", type=boolean, nargs="?", const=True, default=False, metavar="true|false",
                        help=fields["export_int8"].metadata["help"])
    export.add_argument("--int8_f1_budget", type=float, default=fields["int8_f1_budget"].default,
                        help=f"{fields['int8_f1_budget'].metadata['help']} (default: {fields['int8_f1_budget'].default})")
    export.set_defaults(handler=export_command)
    add_dictionary_verbs(verbs)
    serve = verbs.add_parser("serve", help="serve an export over HTTP (all of bner-serve's options)", add_help=False)
    serve.set_defaults(handler=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    configure_environment()
    if argv[:1] == ["serve"]:
        from bner.serving.__main__ import main as serve

        rest = argv[1:]
        if rest and not rest[0].startswith("-"):
            rest = ["--model_dir", rest[0], *rest[1:]]
        return serve(rest, prog="bner serve")
    args = build_parser().parse_args(argv)
    from bner.data.corpus import CorpusError
    from bner.dictionary.names import DictionaryError
    from bner.model.pretrained import PretrainedError

    try:
        return args.handler(args)
    except (ConfigError, CorpusError, DictionaryError, PretrainedError, ValueError, OSError, subprocess.CalledProcessError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM during predict: files being written were removed on the way out
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
