"""Prediction over files of any size: read a chunk, tag it, write it, repeat.

Inputs (``format``): ``conll`` (one word a line, blank lines between sentences; tags, if
any, are ignored), ``text`` (one text a line) or ``jsonl`` (one JSON object a line with a
``text`` field; its other fields are passed through), from a path (local or ``gs://``) or
``-`` for standard input. ``auto`` goes by the file's extension (``.conll``, ``.jsonl``
or ``.ndjson``; anything else, standard input included, is text).

Outputs: CoNLL with a predicted tag column (in the training data's scheme) for CoNLL
input; otherwise JSONL, one record per input line with ``entities`` (character offsets)
added. Memory stays bounded: at most one chunk of texts is held at a time. A named
output file appears only when complete (``-`` streams to standard output).

The parsing of one input line (:func:`text_record`, :func:`jsonl_record`) and the
writing of one result (:func:`output_line`) are shared with the Beam pipeline, so a
cluster labels a corpus exactly as this module does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import io as std_io
import json
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator
from typing import IO

from bner import io
from bner.config import ConfigError
from bner.data import corpus

FORMATS = ("auto", "text", "jsonl", "conll")
STDIO = "-"
DOCSTART = "-DOCSTART- O"


@dataclasses.dataclass(frozen=True)
class Record:
    """One unit of input: a text (text and JSONL lines) or a sentence's words (CoNLL)."""

    where: str  # file:line, for messages
    text: str | None = None
    words: tuple[str, ...] | None = None
    fields: dict | None = None  # a JSONL record's fields, passed through to the output
    document: int = 0  # CoNLL: how many -DOCSTART- lines came before it


def input_format(path: str, given: str = "auto") -> str:
    if given not in FORMATS:
        raise ConfigError(f"input format {given!r}: expected one of {', '.join(FORMATS)}")
    if given != "auto":
        return given
    name = path.lower()
    if name.endswith(".conll"):
        return "conll"
    if name.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    return "text"


def check_output(path: str, output: str | None) -> None:
    """Refuse an output that is the input: it replaces its file once complete, and the input would be lost."""
    if output in (None, STDIO):
        return
    if io.is_local(output) and os.path.isdir(output):
        raise ConfigError(f"--output {output}: a folder; give a file name")
    if path != STDIO and io.same_file(path, output):
        raise ConfigError(f"--output {output}: that is the input file; its predictions would replace it")


def output_suffix(fmt: str) -> str:
    return "conll" if fmt == "conll" else "jsonl"


# ---------------------------------------------------------------- reading


def text_record(line: str, where: str) -> Record:
    return Record(where, text=line.rstrip("\r\n"))


def jsonl_record(line: str, where: str) -> Record | None:
    """The record of one JSONL line; None for a blank line; an error naming the line for anything else."""
    if not line.strip():
        return None
    try:
        fields = json.loads(line)
    except json.JSONDecodeError as e:
        raise corpus.CorpusError(f"{where}: not a JSON object ({e.msg} at column {e.colno})") from None
    if not isinstance(fields, dict):
        raise corpus.CorpusError(f"{where}: expected a JSON object with a \"text\" field, got {type(fields).__name__}")
    text = fields.get("text")
    if not isinstance(text, str):
        raise corpus.CorpusError(f"{where}: expected a \"text\" field holding a string, got {json.dumps(text)[:40]}")
    return Record(where, text=text, fields=fields)


@contextlib.contextmanager
def open_input(path: str) -> Iterator[IO[bytes]]:
    """The input's lines as bytes (each decoded on its own by :func:`read_units`): standard input for ``-``, else the file."""
    if path == STDIO:
        yield sys.stdin.buffer
        return
    if io.is_local(path) and os.path.isdir(path):
        raise ConfigError(f"{path}: is a folder; expected a file to label")
    try:
        handle = io.open_file(path, "rb")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    with handle:
        yield handle


def read_records(lines: Iterable[str], source: str, fmt: str, columns: str | None = None) -> Iterator[Record]:
    """Records of an input's lines, read lazily; errors name ``source`` and the line."""
    try:
        if fmt == "conll":
            word, _, needed = corpus.column_indices(columns)
            for document, first, rows in corpus.conll_rows(lines, source, min_columns=needed, expected="a word", same_columns=False):
                yield Record(f"{source}:{first}", words=tuple(fields[word] for _, fields in rows), document=document)
        else:
            for number, line in enumerate(lines, start=1):
                where = f"{source}:{number}"
                record = jsonl_record(line, where) if fmt == "jsonl" else text_record(line, where)
                if record is not None:
                    yield record
    except UnicodeDecodeError as e:
        raise corpus.CorpusError(f"{source}: expected UTF-8 text ({e.reason})") from None


# Tagging a line takes about 0.6 GB per MB of it (its words, pieces, windows and probabilities);
# a longer line is refused on its own, so memory is bounded by this setting (the README's "Predict"),
# not by the longest line of a file.
MAX_LINE_BYTES = 500_000


def bounded_lines(lines, limit: int) -> Iterator[bytes | int]:
    """Each line's bytes, or for a line over ``limit`` bytes its length (read in pieces, never held whole).

    ``lines`` is a binary file (read with ``readline(size)``) or any iterable of lines.
    """
    readline = getattr(lines, "readline", None)
    if readline is not None and not _takes_a_size(readline):
        lines = std_io.BufferedReader(lines)  # fsspec's remote files read whole lines only; this reads them in pieces
        readline = lines.readline
    if readline is None:
        yield from (raw if len(raw.rstrip(b"\r\n")) <= limit else len(raw) for raw in lines)
        return
    while raw := readline(limit + 2):  # the line and its line break
        if len(raw.rstrip(b"\r\n")) <= limit and (raw.endswith(b"\n") or len(raw) <= limit):
            yield raw
            continue
        size = len(raw)
        while not raw.endswith(b"\n") and (raw := readline(1 << 20)):
            size += len(raw)
        yield size


def _takes_a_size(readline) -> bool:
    try:
        return "size" in inspect.signature(readline).parameters or any(
            p.kind is p.VAR_POSITIONAL for p in inspect.signature(readline).parameters.values())
    except (TypeError, ValueError):  # a builtin without a signature: io's own readline, which takes one
        return True


def read_units(lines: Iterable[bytes], source: str, fmt: str, max_line_bytes: int = MAX_LINE_BYTES,
               columns: str | None = None) -> Iterator[tuple[str, object]]:
    """``("record", Record)`` for each readable unit of a file, ``("error", dict)`` for each line that is not.

    Lines are decoded one by one, so a stray byte costs its line, not the file; a line over
    ``max_line_bytes`` is an error of its own, never read into memory whole.
    """

    def decoded() -> Iterator[tuple[int, str | None, bytes, str]]:
        for number, raw in enumerate(bounded_lines(lines, max_line_bytes), start=1):
            if isinstance(raw, int):
                yield number, None, b"", f"a line of {raw} bytes, over the limit of {max_line_bytes} (--max_line_bytes)"
                continue
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                yield number, raw.decode("utf-8"), raw, ""
            except UnicodeDecodeError:
                yield number, None, raw, "expected UTF-8 text" + corpus.encoding_hint(raw, None if source == "<stdin>" else source)

    if fmt == "conll":
        problems: list[dict] = []

        def good_lines():
            for number, line, raw, reason in decoded():
                if line is None:
                    problems.append(error_record(source, number, reason, raw))
                    yield ""  # keeps the numbering; a blank line ends the sentence
                else:
                    yield line

        for record in read_records(good_lines(), source, "conll", columns):
            while problems:
                yield "error", problems.pop(0)
            yield "record", record
        for problem in problems:
            yield "error", problem
        return
    for number, line, raw, reason in decoded():
        where = f"{source}:{number}"
        if line is None:
            yield "error", error_record(source, number, reason, raw)
            continue
        try:
            record = jsonl_record(line, where) if fmt == "jsonl" else text_record(line, where)
        except corpus.CorpusError as e:
            yield "error", error_record(source, number, str(e).split(": ", 1)[-1], raw)
            continue
        if record is not None:
            yield "record", record


def error_record(source: str, line: int, reason: str, raw: bytes) -> dict:
    return {"file": source, "line": line, "error": reason, "content": raw.decode("utf-8", "replace").rstrip("\r\n")[:1000]}


def chunks(records: Iterable[Record], size: int) -> Iterator[list[Record]]:
    """Lists of about ``size`` records. CoNLL sentences of one document stay together where
    they can (a model trained with context sees their neighbours), up to 8 × ``size``."""
    chunk: list[Record] = []
    for record in records:
        full = len(chunk) >= size
        if full and (record.words is None or record.document != chunk[-1].document or len(chunk) >= 8 * size):
            yield chunk
            chunk = []
        chunk.append(record)
    if chunk:
        yield chunk


# ---------------------------------------------------------------- tagging and writing


def tag_records(tagger, records: list[Record], batch_size: int | None = None) -> list:
    """Each record's result, in order: entities for a text, tags (in the data's scheme) for CoNLL words.

    The one place files are tagged: ``--do_predict``, ``bner predict`` and the Beam
    pipeline all call it, so they give the same entities and offsets.
    """
    results: list = [None] * len(records)
    sentences = [i for i, r in enumerate(records) if r.words is not None]
    texts = [i for i, r in enumerate(records) if r.words is None]
    if sentences:
        words = [list(records[i].words) for i in sentences]
        for i, tags in zip(sentences, tagger.tag(words, documents=[records[i].document for i in sentences]), strict=True):
            results[i] = tags
    if texts:
        for i, entities in zip(texts, tagger.predict([records[i].text for i in texts], batch_size=batch_size), strict=True):
            results[i] = entities
    return results


def tag_chunk(tagger, chunk: list[Record], batch_size: int | None = None, document: int = 0) -> list[str]:
    """The output lines (CoNLL blocks or JSONL records) of one chunk, in input order.

    CoNLL output keeps the input's document boundaries: a ``-DOCSTART-`` block comes before
    the first sentence of each document after ``document`` (the previous chunk's last).
    """
    lines = []
    for record, result in zip(chunk, tag_records(tagger, chunk, batch_size), strict=True):
        if record.words is None:
            lines.append(output_line(record, result))
            continue
        if record.document != document:
            lines.append(f"{DOCSTART}\n\n")
            document = record.document
        lines.append(output_conll(record, result))
    return lines


def output_record(record: Record, result) -> dict:
    """A text's JSON record: the input record (or ``{"text": ...}``) with its ``entities``;
    a CoNLL sentence's: its ``words`` and predicted ``tags``."""
    if record.words is not None:
        return {"words": list(record.words), "tags": list(result)}
    base = dict(record.fields) if record.fields is not None else {"text": record.text}
    base["entities"] = [e.as_dict() for e in result]
    return base


def output_line(record: Record, entities) -> str:
    """One JSONL line of a text's record."""
    return json_line(output_record(record, entities)) + "\n"


def json_line(data: dict) -> str:
    """``data`` as one line of UTF-8 JSON. Strings that UTF-8 cannot hold (lone surrogates, valid in
    JSON input) are written as JSON escapes, so the output stays valid and the record as given."""
    line = json.dumps(data, ensure_ascii=False)
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(data)
    return line


def output_conll(record: Record, tags) -> str:
    return corpus.format_conll([[(w, t) for w, t in zip(record.words, tags, strict=True)]])


@contextlib.contextmanager
def open_output(path: str | None) -> Iterator[IO[str]]:
    """Standard output for ``-``/None; else a file that appears at ``path`` only once complete."""
    if path in (None, STDIO):
        yield sys.stdout
        sys.stdout.flush()
        return
    folder = os.path.dirname(os.path.abspath(path)) if io.is_local(path) else None
    if folder:
        os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix="-" + os.path.basename(path))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            yield handle
        if folder:
            io.publish_mode(tmp)
            os.replace(tmp, path)
        else:
            _upload(tmp, path)  # an object store publishes the object only once its upload completes
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)


def _upload(local: str, remote: str) -> None:
    import fsspec

    fs, root = fsspec.core.url_to_fs(remote)
    fs.put_file(local, root)


def predict_file(
    tagger,
    path: str,
    output: str | None,
    fmt: str = "auto",
    batch_size: int | None = None,
    progress: bool = False,
    chunk_size: int | None = None,
    errors: str | None = None,
    max_line_bytes: int = MAX_LINE_BYTES,
    columns: str | None = None,
) -> Prediction:
    """Label ``path`` (``-``: standard input) into ``output`` (``-``/None: standard output), chunk by chunk.

    A line that cannot be read (not UTF-8, not a JSON object with a ``text`` string) is not
    labelled and does not stop the run: it goes to ``errors`` (default: ``<output>.errors.jsonl``
    beside a named output, else standard error) with its file, line and reason, as the Beam
    pipeline writes its dead letters. So does a line over ``max_line_bytes``, which is never
    held in memory whole.
    """
    fmt = input_format(path, fmt)
    check_output(path, output)
    size = chunk_size or max(64, (batch_size or tagger.batch_size) * 32)
    source = "<stdin>" if path == STDIO else path
    if errors is None and output not in (None, STDIO):
        errors = f"{output}.errors.jsonl"
    check_output(path, errors)
    if errors not in (None, STDIO) and output not in (None, STDIO) and io.same_file(errors, output):
        raise ConfigError(f"--errors {errors}: that is the output file; give the errors a file of their own")
    bar = _bar(progress, "sentences" if fmt == "conll" else "texts")
    count = 0
    with contextlib.ExitStack() as stack:
        if bar is not None:
            stack.callback(bar.close)
        lines = stack.enter_context(open_input(path))
        out = stack.enter_context(open_output(output))
        problems = ErrorSink(errors, stack)
        records = (value for kind, value in read_units(lines, source, fmt, max_line_bytes, columns) if kind == "record" or problems.add(value))
        document = 0
        for chunk in chunks(records, size):
            out.writelines(tag_chunk(tagger, chunk, batch_size, document))
            document = chunk[-1].document
            count += len(chunk)
            if bar is not None:
                bar.update(len(chunk))
    written = "standard output" if output in (None, STDIO) else output
    return Prediction(written, count, problems.count, errors if problems.count and errors not in (None, STDIO) else None)


@dataclasses.dataclass(frozen=True)
class Prediction:
    """What :func:`predict_file` did: where the labels went, how many units, and the lines it could not read."""

    written: str
    count: int
    errors: int = 0
    errors_file: str | None = None  # None: none, or they went to standard error


class ErrorSink:
    """Lines that could not be read, as JSONL: to a file that appears once complete (opened at the
    first error), or to standard error."""

    def __init__(self, path: str | None, stack: contextlib.ExitStack):
        self.path, self.stack, self.handle, self.count = path, stack, None, 0

    def add(self, problem: dict) -> bool:
        """Write ``problem``; False, so a filter that calls it drops the line."""
        if self.handle is None:
            self.handle = sys.stderr if self.path in (None, STDIO) else self.stack.enter_context(open_output(self.path))
        self.handle.write(json_line(problem) + "\n")
        self.count += 1
        return False


def _bar(enabled: bool, unit: str):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(unit=f" {unit}", desc="labelling", file=sys.stderr, dynamic_ncols=True)
