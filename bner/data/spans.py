"""Span classification data: a candidate span in its words, its label, and the model input that
shows the candidate to a classifier, masked or marked.

A candidate (a dictionary match, or a span of a user's example file) is words ``[start,
end)`` of a sentence or text. The classifier decides its type, or :data:`NONE` for no entity.
It sees the candidate one of two ways (:data:`STYLES`):

- ``replace``: the candidate's pieces are replaced by one mask piece, the model's own
  (``[MASK]``, ``<mask>``), which masked-language pre-training taught it to read as "a word
  missing here". The classifier decides from the context alone and cannot memorise names,
  as the seed system did with ``--replace_span="[unused1]"``.
- ``markers``: the candidate stays, between the words ``[`` and ``]``: punctuation that every
  vocabulary holds as one piece, which works as well as new marker tokens do without adding
  any (Zhou and Chen, 2021, "An Improved Baseline for Sentence-level Relation Extraction").

The classifier reads the encoder's output at the mask or at the opening marker. Around the
candidate, the window holds as many of the nearest words on each side as fit
(:func:`bner.data.features.fit_context`), so a candidate near the end of a long sentence
still gets the window where it has most context. Training and tagging both go through
:func:`encode_spans`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence

import numpy as np

from bner import io
from bner.config import MASKINGS
from bner.data import corpus, features, text
from bner.data.corpus import NONE  # the label of a candidate that is no entity

STYLES = MASKINGS
MARKERS = ("[", "]")


class SpanDataError(corpus.CorpusError):
    """An example file that cannot be read; the message names the file and line."""


@dataclasses.dataclass(frozen=True)
class SpanExample:
    """Words ``[start, end)`` of ``words`` are a candidate; ``label`` is its type or :data:`NONE`."""

    words: tuple[str, ...]
    start: int
    end: int
    label: str = NONE
    where: str = ""  # file and line it came from, for messages


def check_label(label: str, where: str) -> None:
    problem = None if label == NONE else corpus.type_name_problem(label)
    if problem:
        raise SpanDataError(f"{where}: label {label!r}: {problem}, or {NONE} for no entity")


# ---------------------------------------------------------------- example files


def read_span_examples(path: str) -> list[SpanExample]:
    """Examples of a file with a text, a candidate's character ``start`` and ``end`` in it, and its
    ``label`` a line: TSV (``text<TAB>start<TAB>end<TAB>label``, an optional header line) or, for
    a ``.jsonl`` file, JSON objects with those four fields. The text is segmented into words as
    raw text is everywhere (:mod:`bner.data.text`); a candidate must start and end at word
    boundaries. Errors name the file and line."""
    jsonl = str(path).endswith(".jsonl")
    out = []
    for number, line in io.numbered_lines(path, SpanDataError):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        fields = _json_fields(line, where) if jsonl else _tsv_fields(line, where, number)
        if fields is not None:
            out.append(span_example(*fields, where=where))
    return out


def _tsv_fields(line: str, where: str, number: int):
    fields = line.split("\t")
    if number == 1 and [f.strip().lower() for f in fields] == ["text", "start", "end", "label"]:
        return None
    if len(fields) != 4:
        raise SpanDataError(f"{where}: expected text<TAB>start<TAB>end<TAB>label, got {len(fields)} tab-separated fields")
    return fields


def _json_fields(line: str, where: str):
    try:
        record = json.loads(line)
    except ValueError as e:
        raise SpanDataError(f"{where}: not JSON ({e})") from None
    if not isinstance(record, dict) or any(k not in record for k in ("text", "start", "end", "label")):
        raise SpanDataError(f"{where}: expected an object with text, start, end and label")
    return record["text"], record["start"], record["end"], record["label"]


def span_example(source, start, end, label, where: str = "") -> SpanExample:
    """A candidate given by character offsets into a raw text, as words of that text."""
    if not isinstance(source, str) or not isinstance(label, str):
        raise SpanDataError(f"{where}: text and label must be strings")
    if not all(isinstance(x, int) and not isinstance(x, bool) or isinstance(x, str) and x.strip().isdigit() for x in (start, end)):
        raise SpanDataError(f"{where}: start and end must be whole numbers, got {start!r} and {end!r}")
    start, end = int(start), int(end)
    if not 0 <= start < end <= len(source):
        raise SpanDataError(f"{where}: characters {start}–{end} are not a span of the {len(source)}-character text")
    check_label(label, where)
    words = text.segment(text.readable(source))
    first = next((i for i, w in enumerate(words) if w.start == start), None)
    last = next((i for i, w in enumerate(words) if w.end == end), None)
    if first is None or last is None or last < first:
        near = " ".join(repr(w.text) for w in words if w.end > start - 20 and w.start < end + 20)
        raise SpanDataError(f"{where}: characters {start}–{end} ({source[start:end]!r}) do not start and end at word "
                            f"boundaries; the words there: {near}")
    return SpanExample(tuple(w.text for w in words), first, last + 1, label, where)


# ---------------------------------------------------------------- model inputs


def encode_spans(
    preprocessor: features.Preprocessor, examples: Sequence[SpanExample], style: str, mask_id: int | None = None,
    label_ids: Sequence[int] | None = None,
) -> list[features.Example]:
    """Classifier inputs of candidates, in ``style`` (``replace`` needs the model's ``mask_id``):
    ``[CLS] left-context candidate right-context [SEP]``, as the token tagger's examples are, with
    the one position the classifier reads (the mask piece, or the opening marker) as the only
    owned position, and there the label, if ``label_ids`` gives one. So a span classifier is a
    token classifier trained and read at one piece an input: the same network, training loop,
    batches, export and runtimes serve both.

    A candidate longer than the window keeps its first pieces; the context around it then is empty.
    """
    if style not in STYLES:
        raise ValueError(f"masking style {style!r}: expected one of {', '.join(STYLES)}")
    if style == "replace" and mask_id is None:
        raise ValueError("the replace style needs the model's mask piece (mask_id)")
    cls, sep, unk = preprocessor.special_id("cls"), preprocessor.special_id("sep"), preprocessor.special_id("unk")
    room = preprocessor.max_pieces
    # Every word takes at least one piece, so no word further than ``room`` from the candidate can
    # fit beside it: each input tokenizes at most that many words a side, however long the text.
    near = [(max(0, e.start - room), e.end + room) for e in examples]
    if style == "markers":
        shown = [(*e.words[a : e.start], MARKERS[0], *e.words[e.start : e.end], MARKERS[1], *e.words[e.end : b])
                 for e, (a, b) in zip(examples, near)]
        centres = [(e.start - a, e.end - a + 2) for e, (a, _) in zip(examples, near)]
    else:
        shown = [e.words[a:b] for e, (a, b) in zip(examples, near)]
        centres = [(e.start - a, e.end - a) for e, (a, _) in zip(examples, near)]
    out = []
    for i, (tokenized, (first, last)) in enumerate(zip(features.tokenize(preprocessor.tokenizer, shown, room, unk), centres)):
        left, centre, right = _cut(tokenized, first, last)
        if style == "replace":
            centre = np.asarray([mask_id], np.int32)
        centre = centre[:room]
        before, after = features.fit_context(left, right, room - len(centre))
        ids = np.concatenate([[cls], before, centre, after, [sep]]).astype(np.int32)
        position = 1 + len(before)
        labels = np.full(len(ids), features.IGNORE, np.int32)
        if label_ids is not None:
            labels[position] = label_ids[i]
        e = examples[i]
        window = features.Window(i, e.start, e.end, e.start, e.end)
        out.append(features.Example(window, ids, labels, np.array([position], np.int64)))
    return out


def _cut(sentence: features.TokenizedSentence, first: int, last: int):
    """A tokenized sentence as the words before ``first``, the pieces of ``[first, last)``, and the words from ``last``."""
    starts = sentence.word_starts
    a = int(starts[first])
    b = int(starts[last]) if last < sentence.num_words else len(sentence.pieces)
    left = features.TokenizedSentence(sentence.pieces[:a], starts[:first])
    right = features.TokenizedSentence(sentence.pieces[b:], starts[last:] - b)
    return left, sentence.pieces[a:b], right


def span_labels(examples: Sequence[SpanExample], types: Sequence[str] = ()) -> list[str]:
    """A classifier's labels: :data:`NONE` first, then the examples' types and ``types`` (a dictionary's), sorted."""
    return [NONE, *sorted(({e.label for e in examples} | set(types)) - {NONE})]

