"""CoNLL files in and out, tag schemes, entity spans and the label list.

A CoNLL file has one token a line (the word first, the NER tag last, any columns
between), sentences separated by blank lines and documents started by ``-DOCSTART-``.
Entity spans follow the ``conlleval`` script's chunk rules exactly, so scoring,
scheme conversion and serving all agree on what an entity is.
"""

from __future__ import annotations

import collections
import dataclasses
import numbers
from collections.abc import Iterable, Iterator, Sequence

from bner import io

SCHEMES = ("IOB1", "IOB2", "IOBES")
MODEL_SCHEMES = ("IOB2", "IOBES")  # the schemes a tagger predicts (model_scheme)
PREFIXES = {"IOB1": "BI", "IOB2": "BI", "IOBES": "BIES"}
OUTSIDE = "O"
NONE = "none"  # a span classifier's label for a candidate that is no entity (bner.data.spans)


class CorpusError(ValueError):
    """A data file that cannot be read; the message names the file and line."""


@dataclasses.dataclass(frozen=True)
class Sentence:
    words: tuple[str, ...]
    tags: tuple[str, ...]
    document: int = 0
    line: int = 0  # line number of the first word in its file (1-based)

    def __len__(self) -> int:
        return len(self.words)


@dataclasses.dataclass(frozen=True)
class Span:
    """An entity: ``type`` over words ``start`` (inclusive) to ``end`` (exclusive)."""

    type: str
    start: int
    end: int


# ---------------------------------------------------------------- reading and writing


def conll_rows(
    text: str | Iterable[str],
    source: str = "<string>",
    min_columns: int = 2,
    expected: str = "a word and a tag",
    same_columns: bool = True,
    docstart_is_token: bool = False,
) -> Iterator[tuple[int, int, list[tuple[int, list[str]]]]]:
    """``(document, first line, [(line number, fields), ...])`` for each sentence of a CoNLL text.

    ``text`` is the whole text, or its lines one by one (an open file: read as it goes).

    The one reader of CoNLL lines (data files and conlleval's prediction files alike):
    blank lines end sentences, ``-DOCSTART-`` lines start documents, and every token line
    has at least ``min_columns`` columns (``expected`` says what they are), and with
    ``same_columns`` as many as the first. With ``docstart_is_token`` (conlleval's reading)
    a ``-DOCSTART-`` line is a token too, a sentence of its own, column-checked like the rest.
    """
    lines = text.splitlines() if isinstance(text, str) else (line.rstrip("\r\n") for line in text)
    document, rows, columns = 0, [], None
    for number, raw in enumerate(lines, start=1):
        if number == 1 and raw.startswith("\ufeff"):
            raw = raw[1:]
        fields = raw.split()
        if not fields or (fields[0] == "-DOCSTART-" and not docstart_is_token):
            if rows:
                yield document, rows[0][0], rows
            rows = []
            document += 1 if fields else 0
            continue
        if fields[0] == "-DOCSTART-" and rows:
            yield document, rows[0][0], rows
            rows = []
        if len(fields) < min_columns:
            raise CorpusError(f"{source}:{number}: expected {expected} separated by a space or tab, got {raw!r}")
        if columns is None:
            columns = len(fields)
        elif same_columns and len(fields) != columns:
            raise CorpusError(f"{source}:{number}: expected {columns} columns like the lines before, got {len(fields)} in {raw!r}")
        rows.append((number, fields))
        if fields[0] == "-DOCSTART-":
            document += 1
            yield document, number, rows
            rows = []
    if rows:
        yield document, rows[0][0], rows


Context = tuple[tuple[str, ...], tuple[str, ...]]  # words before and after a sentence


def document_contexts(words: Sequence[Sequence[str]], documents: Sequence[int], size: int) -> list[Context]:
    """For each sentence, up to ``size`` words of the sentences before and after it in its document.

    ``documents`` gives each sentence's document; context never crosses a change of document
    (a ``-DOCSTART-`` line in CoNLL files, another text in raw input).
    """
    out: list[Context] = []
    for i, document in enumerate(documents):
        left: list[str] = []
        j = i - 1
        while j >= 0 and documents[j] == document and len(left) < size:
            left[:0] = words[j]
            j -= 1
        right: list[str] = []
        j = i + 1
        while j < len(documents) and documents[j] == document and len(right) < size:
            right.extend(words[j])
            j += 1
        out.append((tuple(left[len(left) - size :]) if size else (), tuple(right[:size])))
    return out


def column_indices(columns: str | None) -> tuple[int, int, int]:
    """(word column, tag column, columns needed) from a spec such as ``tag,word`` or ``word,pos,chunk,tag``.

    None: the word first and the tag last, as CoNLL files have them. Other names in the spec
    (``pos``, ``-``) are columns that are there and not read.
    """
    if not columns:
        return 0, -1, 1
    names = [n.strip().lower() for n in columns.split(",")]
    if names.count("word") != 1 or names.count("tag") != 1:
        raise CorpusError(f"--columns={columns}: name each column, with word and tag once each (e.g. tag,word or word,pos,tag)")
    return names.index("word"), names.index("tag"), len(names)


def parse_conll(text: str, source: str = "<string>", require_tags: bool = True, columns: str | None = None) -> list[Sentence]:
    """Sentences of a CoNLL text. ``source`` names the file in error messages; ``columns`` says
    where the word and the tag are (:func:`column_indices`)."""
    word, tag, needed = column_indices(columns)
    sentences = []
    minimum = max(needed, 2 if require_tags else 1)
    for document, first_line, rows in conll_rows(text, source, minimum, same_columns=require_tags):
        if require_tags:
            for number, fields in rows:
                try:
                    check_tag(fields[tag], f"{source}:{number}" + (f" (column {tag + 1}, --columns={columns})" if columns else ""))
                except CorpusError as e:
                    if not columns and all(is_tag(f[0]) for _, f in rows) and not all(is_tag(f[-1]) for _, f in rows):
                        raise CorpusError(f"{e}: the first column holds the tags here, and bner reads the word from the "
                                          "first column and the tag from the last; pass --columns=tag,word") from None
                    raise
        words = tuple(fields[word] for _, fields in rows)
        tags = tuple(fields[tag] for _, fields in rows) if require_tags else (OUTSIDE,) * len(rows)
        sentences.append(Sentence(words, tags, document, first_line))
    return sentences


def is_tag(field: str, scheme: str = "IOBES") -> bool:
    """Whether ``field`` is ``O`` or a tag of ``scheme`` (``B-PER``; with IOBES also ``E-``, ``S-``)."""
    prefix, dash, entity_type = field.partition("-")
    return field == OUTSIDE or (prefix in tuple(PREFIXES[scheme]) and bool(dash) and bool(entity_type))


def check_tag(tag: str, where: str) -> None:
    if not is_tag(tag):
        raise CorpusError(
            f"{where}: expected a tag like O, B-PER, I-LOC, E-ORG or S-MISC in the last column, "
            f"got {tag!r}"
        )


def encoding_hint(raw: bytes, path: str | None = None) -> str:
    """What bytes that are not UTF-8 probably are, and the iconv line that converts them ("" when unsure)."""
    target = f"'{path}' > '{path}.utf8'" if path and path != "-" else "< in > out"
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return f"; it looks like UTF-16: convert it with iconv -f UTF-16 -t UTF-8 {target}"
    try:
        raw.decode("cp1252")
    except UnicodeDecodeError:
        return ""
    return f"; it reads as Windows-1252 (Latin-1): convert it with iconv -f WINDOWS-1252 -t UTF-8 {target}"


def read_conll(path: str, require_tags: bool = True, columns: str | None = None) -> list[Sentence]:
    try:
        text = io.read_text(path)
    except FileNotFoundError:
        raise CorpusError(f"{path}: file not found") from None
    except UnicodeDecodeError as e:
        raw = io.read_bytes(path)
        line = text_line_of_byte(raw, e.start)
        raise CorpusError(f"{path}:{line}: expected UTF-8 text ({e.reason}){encoding_hint(raw, path)}") from None
    sentences = parse_conll(text, source=str(path), require_tags=require_tags, columns=columns)
    if not sentences:
        raise CorpusError(f"{path}: no sentences found (expected one token a line, blank lines between sentences)")
    return sentences


def text_line_of_byte(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def format_conll(rows: Iterable[Sequence[Sequence[str]]], separator: str = " ") -> str:
    """CoNLL text from sentences given as lists of column tuples."""
    out = []
    for sentence in rows:
        for columns in sentence:
            out.append(separator.join(columns))
        out.append("")
    return "\n".join(out) + ("\n" if out else "")


# ---------------------------------------------------------------- tag schemes and spans


def split_tag(tag: str) -> tuple[str, str]:
    """('B', 'PER') from 'B-PER'; ('O', '') from 'O'. Types may contain hyphens."""
    if tag == OUTSIDE:
        return OUTSIDE, ""
    prefix, _, entity_type = tag.partition("-")
    return prefix, entity_type


def _starts(prev: str, prev_type: str, tag: str, entity_type: str) -> bool:
    # conlleval's startOfChunk, plus S (single) which always starts a chunk.
    if tag == OUTSIDE:
        return False
    if tag in ("B", "S"):
        return True
    if prev in (OUTSIDE, "E", "S"):
        return True
    return prev_type != entity_type


def entity_spans(tags: Sequence[str]) -> list[Span]:
    """Entities in a tag sequence, by conlleval's chunk rules (IOB1, IOB2 and IOBES alike).

    Ill-formed sequences are read as conlleval reads them: ``I-X`` after ``O`` or after
    another type starts an entity; a type change inside a run ends one and starts another.
    """
    spans: list[Span] = []
    start = None
    prev, prev_type = OUTSIDE, ""
    for i, tag in enumerate(tags):
        kind, entity_type = split_tag(tag)
        if start is not None and (kind == OUTSIDE or _starts(prev, prev_type, kind, entity_type)):
            spans.append(Span(prev_type, start, i))
            start = None
        if start is None and kind != OUTSIDE:
            start = i
        if start is not None and kind in ("E", "S"):
            spans.append(Span(entity_type, start, i + 1))
            start = None
            kind = "E"  # what follows an ended chunk must start a new one
        prev, prev_type = kind, entity_type
    if start is not None:
        spans.append(Span(prev_type, start, len(tags)))
    return spans


def spans_to_tags(spans: Iterable[Span], length: int, scheme: str) -> list[str]:
    """Render entities as tags in ``scheme``."""
    tags = [OUTSIDE] * length
    previous_end, previous_type = -1, None
    for span in sorted(spans, key=lambda s: s.start):
        n = span.end - span.start
        for i in range(span.start, span.end):
            tags[i] = f"I-{span.type}"
        if scheme == "IOB2":
            tags[span.start] = f"B-{span.type}"
        elif scheme == "IOB1":
            if previous_end == span.start and previous_type == span.type:
                tags[span.start] = f"B-{span.type}"
        elif scheme == "IOBES":
            if n == 1:
                tags[span.start] = f"S-{span.type}"
            else:
                tags[span.start] = f"B-{span.type}"
                tags[span.end - 1] = f"E-{span.type}"
        else:
            raise ValueError(f"unknown tag scheme {scheme!r}; expected one of {', '.join(SCHEMES)}")
        previous_end, previous_type = span.end, span.type
    return tags


def convert_tags(tags: Sequence[str], scheme: str) -> list[str]:
    return spans_to_tags(entity_spans(tags), len(tags), scheme)


@dataclasses.dataclass
class SchemeEvidence:
    """How entities start in a corpus: with ``B-`` (IOB2's way) or ``I-`` (IOB1's way), and where."""

    b_opens: int = 0
    i_opens: int = 0
    es_tags: int = 0  # E- and S- tags: IOBES ends every entity with one
    b_lines: list[int] = dataclasses.field(default_factory=list)  # first few lines of each kind
    i_lines: list[int] = dataclasses.field(default_factory=list)
    es_lines: list[int] = dataclasses.field(default_factory=list)

    @property
    def iobes(self) -> bool:
        # In IOBES data about every entity carries an E- or S- tag; a few typos in IOB data do not.
        return self.es_tags > 0 and 2 * self.es_tags >= self.b_opens + self.i_opens

    @property
    def scheme(self) -> str:
        if self.iobes:
            return "IOBES"
        return "IOB1" if self.i_opens > self.b_opens else "IOB2"

    def inconsistency(self, source: str = "") -> str | None:
        """A warning naming the tags that disagree with the detected scheme, or None."""
        if self.es_tags and not self.iobes:
            where = ", ".join(f"{source}:{n}" if source else str(n) for n in self.es_lines)
            return (f"{self.es_tags} E-/S- tags in data read as {self.scheme} (first at {where}): they count as I-/B-; "
                    "pass --tag_scheme to choose")
        if self.iobes and self.i_opens:
            where = ", ".join(f"{source}:{n}" if source else str(n) for n in self.i_lines)
            return (f"{_entities_start(self.i_opens)} with I- after O or another type, where IOBES starts them with B- or S-; "
                    f"read as IOBES (first at {where}); pass --tag_scheme to choose")
        if self.iobes or not (self.b_opens and self.i_opens):
            return None
        if self.scheme == "IOB1":
            odd, lines, how = self.b_opens, self.b_lines, "start with B- after O or another type"
        else:
            odd, lines, how = self.i_opens, self.i_lines, "start with I- after O or another type"
        where = ", ".join(f"{source}:{n}" if source else str(n) for n in lines)
        return (f"{_entities_start(odd)} {how.removeprefix('start ')}, against {max(self.b_opens, self.i_opens)} that follow {self.scheme}; "
                f"read as {self.scheme} (first at {where}); pass --tag_scheme to choose")


def _entities_start(count: int) -> str:
    return f"{count} {'entity starts' if count == 1 else 'entities start'}"


def scheme_evidence(sentences: Iterable[Sentence | Sequence[str]], keep: int = 5) -> SchemeEvidence:
    evidence = SchemeEvidence()
    for sentence in sentences:
        tags = sentence.tags if isinstance(sentence, Sentence) else sentence
        first = sentence.line if isinstance(sentence, Sentence) else 0
        prev, prev_type = OUTSIDE, ""
        for offset, tag in enumerate(tags):
            kind, entity_type = split_tag(tag)
            if kind in ("E", "S"):
                evidence.es_tags += 1
                if len(evidence.es_lines) < keep:
                    evidence.es_lines.append(first + offset)
            continues = prev != OUTSIDE and prev_type == entity_type
            if kind == "B" and not continues:
                evidence.b_opens += 1
                if len(evidence.b_lines) < keep:
                    evidence.b_lines.append(first + offset)
            elif kind == "I" and not continues:
                evidence.i_opens += 1
                if len(evidence.i_lines) < keep:
                    evidence.i_lines.append(first + offset)
            prev, prev_type = kind, entity_type
    return evidence


def detect_scheme(tag_sequences: Iterable[Sequence[str]]) -> str:
    """IOB1, IOB2 or IOBES, from how entities start in the data, by the majority of the evidence.

    IOB2 starts every entity with ``B-``; IOB1 starts entities with ``I-`` and uses ``B-``
    only between two adjacent entities of one type. A few stray tags (well-known IOB1
    corpora hold some ``B-`` after ``O``) do not flip the answer; :func:`scheme_evidence`
    says where they are. Data with no evidence either way counts as IOB2.
    """
    return scheme_evidence(tag_sequences).scheme


def model_scheme(data_scheme: str) -> str:
    """The scheme the tagger predicts: IOB1 data is learned as IOB2, whose ``B-`` marks every start."""
    return "IOBES" if data_scheme == "IOBES" else "IOB2"


def type_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name an entity type (empty, with spaces, or reserved: O, none), else None."""
    if not name or any(c.isspace() for c in name):
        return "expected a type name without spaces (Disease, PER)"
    if name.lower() == NONE or name == OUTSIDE:
        return "is reserved (O: outside any entity; none: a candidate that is no entity); choose another name"
    return None


def outside_documents(document) -> bool:
    """Whether a sentence's document number marks it as outside any document: 0 (before any
    ``-DOCSTART-``) or less (Beam's numbering of such sentences); any other value names a document."""
    return isinstance(document, numbers.Integral) and document <= 0  # numpy integers too


def has_documents(sentences: Sequence[Sentence]) -> bool:
    """Whether the sentences come in ``-DOCSTART-`` documents: two or more, some of more than one
    sentence (one ``-DOCSTART-`` at the top of a file is a header, not a document boundary)."""
    inside = [s.document for s in sentences if not outside_documents(s.document)]
    return 1 < len(set(inside)) < len(inside)


def entity_types(sentences: Iterable[Sentence]) -> list[str]:
    return sorted({split_tag(t)[1] for s in sentences for t in s.tags if t != OUTSIDE})


def label_list(types: Iterable[str], scheme: str) -> list[str]:
    """Deterministic labels: ``O`` first, then every tag of every type, sorted."""
    return [OUTSIDE] + sorted(f"{p}-{t}" for t in set(types) for p in PREFIXES[scheme])


def corpus_statistics(sentences: Sequence[Sentence]) -> dict:
    entities = collections.Counter(span.type for s in sentences for span in entity_spans(s.tags))
    return {
        "sentences": len(sentences),
        "tokens": sum(len(s) for s in sentences),
        "documents": len({s.document for s in sentences}),
        "entities": dict(sorted(entities.items())),
    }
