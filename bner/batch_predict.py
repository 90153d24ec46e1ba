"""Label a corpus on Apache Beam: many files in, sharded JSONL out, on this machine or on Dataflow.

    python -m bner.batch_predict MODEL 'gs://bucket/texts/*.jsonl' --output gs://bucket/labelled/part
    python -m bner.batch_predict MODEL 'data/*.txt' --output runs/labelled/part --num_workers 2

Inputs are text (one text a line), JSONL (a ``text`` field; other fields are kept) or
CoNLL files, by extension or ``--format``, from local paths or ``gs://`` globs. Each file
is read line by line (so its line numbers are known), each line parsed by the same
functions as ``bner predict`` (:mod:`bner.inference.prediction`); a text travels alone, a CoNLL
document's sentences together (so a model trained with document context sees the same
neighbours as with ``bner predict``), through
Beam's ``RunInference`` with a :class:`TaggerHandler`: batches grouped by text length
(Beam's length-bucketed batching) and tagged by the same :class:`bner.inference.tagger.Tagger`,
so the entities and offsets are exactly ``bner predict``'s. Results are written as
sharded JSONL (``<output>-00000-of-0000N.jsonl``): a text's record with ``entities``,
plus ``source`` (file:line) for text and CoNLL input; a CoNLL sentence's ``words`` and
``tags``. A line that cannot be read (malformed JSON, no ``text`` field, not UTF-8)
goes to the dead-letter output ``<output>-errors-*.jsonl`` with its file and line, and
the job goes on.

Runners: by default Beam's in-process FnApiRunner (``--num_workers`` > 1 runs that many
worker processes); it never downloads anything, unlike the default DirectRunner, which
may fetch the Prism runner binary. ``--runner=DataflowRunner`` with ``--project``,
``--region`` and ``--temp_location`` runs on Dataflow (docs/cloud.md).

Beam is an optional extra: ``pip install 'bner[beam]'``.
"""

from __future__ import annotations

import argparse
import dataclasses
import io as text_io
import json
import sys
from collections.abc import Iterator, Sequence

from bner.cli.options import add_decoding_options, load_options
from bner.config import ConfigError
from bner.inference import prediction

DEAD_LETTER = "dead_letter"
LENGTH_BUCKETS = (64, 256, 1024, 4096)  # characters: texts of similar length share a model batch


def _beam():
    try:
        import apache_beam as beam
    except ImportError:
        raise ConfigError("batch prediction on Beam needs Apache Beam: pip install 'bner[beam]'") from None
    return beam


MAX_DOCUMENT_SENTENCES = 1000  # a CoNLL document longer than this travels in parts (context breaks between them)


def record_length(record: prediction.Record) -> int:
    return len(record.text) if record.words is None else sum(len(w) + 1 for w in record.words)


def unit_length(unit: tuple[prediction.Record, ...]) -> int:
    return sum(record_length(r) for r in unit)


def units(records: Iterator[prediction.Record]) -> Iterator[tuple[prediction.Record, ...]]:
    """What travels through the pipeline as one element: a text alone, or a CoNLL document's
    sentences together, so a model trained with document context sees each sentence's
    neighbours, as ``bner predict`` gives them."""
    document: list[prediction.Record] = []
    for record in records:
        if record.words is None:
            yield (record,)
            continue
        if document and (record.document != document[-1].document or len(document) >= MAX_DOCUMENT_SENTENCES):
            yield tuple(document)
            document = []
        document.append(record)
    if document:
        yield tuple(document)


def tag_units(tagger, batch: Sequence[tuple[prediction.Record, ...]], batch_size: int) -> list[list]:
    """Each unit's results; sentences are neighbours only within their unit.

    Units are numbered from 1; a unit of sentences outside any ``-DOCSTART-`` document gets a
    negative number, so its sentences are still not made consistent with each other
    (:mod:`bner.inference.consistency`), as ``bner predict`` leaves them.
    """
    flat = [dataclasses.replace(r, document=(n + 1) if r.document else -(n + 1)) for n, unit in enumerate(batch) for r in unit]
    results = iter(prediction.tag_records(tagger, flat, batch_size))
    return [[next(results) for _ in unit] for unit in batch]


def output_json(record: prediction.Record, result) -> str:
    """One output line: ``bner predict``'s record, plus where it came from for text and CoNLL input."""
    data = prediction.output_record(record, result)
    if record.fields is None:
        data["source"] = record.where
    return prediction.json_line(data)


def check_load_options(options: dict) -> dict:
    """``options`` if each is a keyword of :func:`bner.load` the pipeline may set, else a ConfigError
    naming it, before any worker loads the model."""
    import inspect

    from bner.inference.loader import load

    allowed = set(inspect.signature(load).parameters) - {"path", "batch_size"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ConfigError(f"not a bner.load option: {', '.join(unknown)} (expected some of {', '.join(sorted(allowed))})")
    return options


def tagger_handler(model: str, batch_size: int, max_batch_size: int, **load_options):
    """A Beam ``ModelHandler`` over ``bner.load`` (Beam's TensorFlow handler needs a Keras model);
    ``load_options`` are its keywords (decoding, consistent, runtime, threshold, combine_with, combine)."""
    check_load_options(load_options)
    beam = _beam()  # noqa: F841 — fails with the install hint before the imports below
    from apache_beam.ml.inference.base import ModelHandler, PredictionResult

    class TaggerHandler(ModelHandler):
        def __init__(self):
            super().__init__()
            self._model, self._batch_size, self._max_batch_size = model, batch_size, max_batch_size
            self._load_options = dict(load_options)

        def load_model(self):
            import bner

            return bner.load(self._model, batch_size=self._batch_size, **self._load_options)

        def run_inference(self, batch: Sequence[tuple[prediction.Record, ...]], tagger, inference_args=None):
            results = tag_units(tagger, batch, self._batch_size)
            return [PredictionResult(unit, result) for unit, result in zip(batch, results, strict=True)]

        def batch_elements_kwargs(self):
            return {"min_batch_size": 1, "max_batch_size": self._max_batch_size,
                    "length_fn": unit_length, "bucket_boundaries": list(LENGTH_BUCKETS)}

        def get_metrics_namespace(self) -> str:
            return "bner"

    return TaggerHandler()


def build_pipeline(pipeline, model: str, inputs: Sequence[str], output: str, fmt: str = "auto", batch_size: int = 32,
                   max_batch_size: int = 256, **load_options):
    """Add the labelling steps to ``pipeline``: read → tag → write, with a dead-letter output.

    ``load_options`` are :func:`bner.load`'s keywords (its default runtime, ``auto``, runs ONNX
    Runtime where the export has model.onnx, so workers need no TensorFlow)."""
    beam = _beam()
    from apache_beam.io import fileio
    from apache_beam.ml.inference.base import RunInference

    class ReadRecords(beam.DoFn):
        def process(self, readable):
            path = readable.metadata.path
            problems = []

            def records():
                with readable.open(compression_type=beam.io.filesystem.CompressionTypes.UNCOMPRESSED) as handle:
                    for kind, value in prediction.read_units(iter(text_io.BufferedReader(handle)), path, prediction.input_format(path, fmt)):
                        if kind == "record":
                            yield value
                        else:
                            problems.append(value)

            for unit in units(records()):
                while problems:
                    yield beam.pvalue.TaggedOutput(DEAD_LETTER, problems.pop(0))
                yield unit
            for problem in problems:
                yield beam.pvalue.TaggedOutput(DEAD_LETTER, problem)

    files = (
        pipeline
        | "Patterns" >> beam.Create(list(inputs))
        | "Match" >> fileio.MatchAll()
        | "Open" >> fileio.ReadMatches()
    )
    read = files | "Read" >> beam.ParDo(ReadRecords()).with_outputs(DEAD_LETTER, main="records")
    tagged, failures = read.records | "Tag" >> RunInference(tagger_handler(model, batch_size, max_batch_size, **load_options)).with_exception_handling()
    lines = tagged | "Format" >> beam.FlatMap(
        lambda result: [output_json(record, r) for record, r in zip(result.example, result.inference, strict=True)])
    lines | "Write" >> beam.io.WriteToText(output, file_name_suffix=".jsonl")
    failed = failures.failed_inferences | "Describe failures" >> beam.Map(
        lambda failure: json.dumps({"records": [r.where for unit in failure[0] for r in unit], "error": str(failure[1])}, ensure_ascii=False))
    bad_lines = read[DEAD_LETTER] | "Describe bad lines" >> beam.Map(lambda problem: json.dumps(problem, ensure_ascii=False))
    ((bad_lines, failed) | "Dead letters" >> beam.Flatten()
     | "Write dead letters" >> beam.io.WriteToText(f"{output}-errors", file_name_suffix=".jsonl"))
    return pipeline


def pipeline_options(args: argparse.Namespace, extra: Sequence[str] = ()):
    from apache_beam.options.pipeline_options import PipelineOptions

    values = {"save_main_session": False}
    if args.runner == "DataflowRunner":
        missing = [name for name in ("project", "region", "temp_location") if not getattr(args, name)]
        if missing:
            raise ConfigError(f"--runner=DataflowRunner needs {', '.join('--' + m for m in missing)}")
        values.update(runner="DataflowRunner", project=args.project, region=args.region, temp_location=args.temp_location)
    else:
        values.update(direct_num_workers=args.num_workers,
                      direct_running_mode="multi_processing" if args.num_workers > 1 else "in_memory")
    return PipelineOptions(list(extra), **values)


def local_runner(name: str):
    """Runners that work offline, in this process or its workers."""
    if name in (None, "FnApiRunner"):
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        return FnApiRunner()
    if name == "BundleBasedDirectRunner":
        from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner

        return BundleBasedDirectRunner()
    return None  # Beam resolves the name (DataflowRunner and others)


def run(model: str, inputs: Sequence[str], output: str, fmt: str = "auto", runner: str | None = None, num_workers: int = 1,
        batch_size: int = 32, extra_options: Sequence[str] = (), *, project: str | None = None, region: str | None = None,
        temp_location: str | None = None, **load_options) -> None:
    """Build and run the pipeline to the end (the Python API of ``python -m bner.batch_predict``);
    ``load_options`` are :func:`bner.load`'s keywords."""
    check_load_options(load_options)
    beam = _beam()
    args = argparse.Namespace(runner=runner, num_workers=num_workers, project=project, region=region, temp_location=temp_location)
    options = pipeline_options(args, extra_options)
    with beam.Pipeline(runner=local_runner(runner), options=options) as pipeline:
        build_pipeline(pipeline, model, inputs, output, fmt, batch_size, **load_options)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bner.batch_predict", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a model as bner.load takes it (an export, a folder of versions, a run folder), local or gs://")
    parser.add_argument("inputs", nargs="+", help="files or globs (local or gs://): .txt, .jsonl, .conll")
    parser.add_argument("--output", required=True, help="output prefix: <output>-SSSSS-of-NNNNN.jsonl, dead letters <output>-errors-*")
    parser.add_argument("--format", default="auto", choices=prediction.FORMATS, help="input format (default: by extension)")
    parser.add_argument("--runner", default=None, help="FnApiRunner (default, offline), BundleBasedDirectRunner or DataflowRunner")
    parser.add_argument("--num_workers", type=int, default=1, help="local worker processes (default: 1)")
    parser.add_argument("--batch_size", type=int, default=32, help="texts per model call (default: 32)")
    parser.add_argument("--project", help="Dataflow: Google Cloud project")
    parser.add_argument("--region", help="Dataflow: region, e.g. us-central1")
    parser.add_argument("--temp_location", help="Dataflow: gs:// folder for temporary files")
    add_decoding_options(parser)
    args, extra = parser.parse_known_args(argv)
    try:
        if args.num_workers < 1 or args.batch_size < 1:
            raise ConfigError("--num_workers and --batch_size must be at least 1")
        run(args.model, args.inputs, args.output, args.format, args.runner, args.num_workers, args.batch_size, extra,
            project=args.project, region=args.region, temp_location=args.temp_location, **load_options(args))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
