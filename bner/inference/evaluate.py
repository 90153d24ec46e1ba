"""Entity-level scores, identical to the ``conlleval`` script's on the same predictions.

An entity counts as correct only when its type and both boundaries match. Entities are
found with :func:`bner.data.corpus.entity_spans`, which follows conlleval's chunk rules, so
IOB1 and IOB2 files score exactly as conlleval scores them.

``python -m bner.evaluate FILE`` (:mod:`bner.cli.conlleval`) scores any system's output in
conlleval's input format.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import re
from collections.abc import Iterable, Sequence

from bner import io
from bner.config import ConfigError
from bner.data import corpus


@dataclasses.dataclass(frozen=True)
class Counts:
    gold: int = 0
    predicted: int = 0
    correct: int = 0

    @property
    def precision(self) -> float:
        return self.correct / self.predicted if self.predicted else 0.0

    @property
    def recall(self) -> float:
        return self.correct / self.gold if self.gold else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def as_dict(self) -> dict:
        return {
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "gold": self.gold,
            "predicted": self.predicted,
            "correct": self.correct,
        }


@dataclasses.dataclass(frozen=True)
class Scores:
    overall: Counts
    per_type: dict[str, Counts]
    tokens: int
    correct_tokens: int

    @property
    def f1(self) -> float:
        return self.overall.f1

    @property
    def token_accuracy(self) -> float:
        return self.correct_tokens / self.tokens if self.tokens else 0.0

    def as_dict(self) -> dict:
        return {
            **self.overall.as_dict(),
            "token_accuracy": self.token_accuracy,
            "tokens": self.tokens,
            "per_type": {t: c.as_dict() for t, c in self.per_type.items()},
        }


def score(gold: Iterable[Sequence[str]], predicted: Iterable[Sequence[str]]) -> Scores:
    """Scores of predicted tag sequences against gold ones (sentence by sentence)."""
    gold_count: collections.Counter = collections.Counter()
    predicted_count: collections.Counter = collections.Counter()
    correct_count: collections.Counter = collections.Counter()
    tokens = correct_tokens = 0
    for number, (gold_tags, predicted_tags) in enumerate(zip(gold, predicted, strict=True)):
        if len(gold_tags) != len(predicted_tags):
            raise ValueError(
                f"sentence {number + 1}: {len(gold_tags)} gold tags but {len(predicted_tags)} predicted"
            )
        tokens += len(gold_tags)
        correct_tokens += sum(g == p for g, p in zip(gold_tags, predicted_tags))
        gold_spans = set(corpus.entity_spans(gold_tags))
        predicted_spans = set(corpus.entity_spans(predicted_tags))
        gold_count.update(s.type for s in gold_spans)
        predicted_count.update(s.type for s in predicted_spans)
        correct_count.update(s.type for s in gold_spans & predicted_spans)
    types = sorted(set(gold_count) | set(predicted_count))
    per_type = {t: Counts(gold_count[t], predicted_count[t], correct_count[t]) for t in types}
    overall = Counts(
        sum(gold_count.values()), sum(predicted_count.values()), sum(correct_count.values())
    )
    return Scores(overall, per_type, tokens, correct_tokens)


MISSED, SPURIOUS = "(missed)", "(spurious)"


def confusion(gold: Iterable[Sequence[str]], predicted: Iterable[Sequence[str]]) -> dict:
    """Entity-level confusion between types: ``{"types": [...], "matrix": {gold: {predicted: n}}}``.

    A gold entity whose exact span was predicted counts under (its type, the predicted
    type); a gold entity with no predicted entity on exactly its span counts as
    ``(missed)``; a predicted entity on no gold span counts in the ``(spurious)`` row.
    Chunks are found as :func:`score` finds them, so the diagonal is its ``correct``.
    """
    matrix: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    types: set[str] = set()
    for gold_tags, predicted_tags in zip(gold, predicted, strict=True):
        gold_by_span = {(s.start, s.end): s.type for s in corpus.entity_spans(gold_tags)}
        predicted_by_span = {(s.start, s.end): s.type for s in corpus.entity_spans(predicted_tags)}
        types.update(gold_by_span.values(), predicted_by_span.values())
        for span, gold_type in gold_by_span.items():
            matrix[gold_type][predicted_by_span.get(span, MISSED)] += 1
        for span, predicted_type in predicted_by_span.items():
            if span not in gold_by_span:
                matrix[SPURIOUS][predicted_type] += 1
    ordered = sorted(types)
    rows = [*ordered, SPURIOUS]
    columns = [*ordered, MISSED]
    return {"types": ordered, "matrix": {r: {c: matrix[r][c] for c in columns if matrix[r][c]} for r in rows if matrix[r]}}


def format_report(scores: Scores) -> str:
    """The report in conlleval's layout (percentages with two decimals)."""
    o = scores.overall
    lines = [
        f"processed {scores.tokens} tokens with {o.gold} phrases; "
        f"found: {o.predicted} phrases; correct: {o.correct}.",
        f"accuracy: {100 * scores.token_accuracy:6.2f}%; precision: {100 * o.precision:6.2f}%; "
        f"recall: {100 * o.recall:6.2f}%; FB1: {100 * o.f1:6.2f}",
    ]
    for entity_type, c in scores.per_type.items():
        lines.append(
            f"{entity_type:>17}: precision: {100 * c.precision:6.2f}%; recall: {100 * c.recall:6.2f}%; "
            f"FB1: {100 * c.f1:6.2f}  {c.predicted}"
        )
    return "\n".join(lines) + "\n"


def format_summary(scores: Scores) -> str:
    """Overall entity scores and a per-type table, as the command line shows them."""
    o = scores.overall
    lines = [
        f"entity precision {100 * o.precision:.2f}  recall {100 * o.recall:.2f}  F1 {100 * scores.f1:.2f}",
        f"  {'type':<16} {'precision':>9} {'recall':>7} {'F1':>7} {'support':>8}",
    ]
    for entity_type, c in scores.per_type.items():
        lines.append(f"  {entity_type:<16} {100 * c.precision:9.2f} {100 * c.recall:7.2f} {100 * c.f1:7.2f} {c.gold:8d}")
    return "\n".join(lines)


def read_predictions(path: str) -> tuple[list[list[str]], list[list[str]]]:
    """Gold and predicted tag sequences from a file in conlleval's input format.

    As conlleval reads it: ``-DOCSTART-`` lines are tokens (they count in the token total
    and accuracy, and end any entity), and every line has as many columns as the first.
    """
    gold, predicted = [], []
    expected = "a word, a gold tag and a predicted tag"
    try:
        text = io.read_text(path)
    except UnicodeDecodeError as e:
        raw = io.read_bytes(path)
        raise corpus.CorpusError(f"{path}:{corpus.text_line_of_byte(raw, e.start)}: expected UTF-8 text ({e.reason})"
                                 f"{corpus.encoding_hint(raw, path)}") from None
    except IsADirectoryError:
        raise corpus.CorpusError(f"{path}: is a folder; expected a file with a word, a gold and a predicted tag a line") from None
    for _, _, rows in corpus.conll_rows(text, path, min_columns=3, expected=expected, docstart_is_token=True):
        for number, fields in rows:
            for tag in fields[-2:]:
                corpus.check_tag(tag, f"{path}:{number}")
        gold.append([fields[-2] for _, fields in rows])
        predicted.append([fields[-1] for _, fields in rows])
    return gold, predicted




def check_results_name(output_dir: str, name: str) -> None:
    """Refuse a ``name`` that is not a plain file name stem, or results that would replace a file of
    a run, model or export folder (one that holds run.json or metadata.json)."""
    if not re.fullmatch(r"[\w.-]+", name) or name.startswith("."):
        raise ConfigError(f"--name {name!r}: expected a file name stem (letters, digits, '.', '_', '-')")
    if not any(io.exists(io.join(output_dir, marker)) for marker in ("run.json", "metadata.json")):
        return
    taken = [f"{name}{ext}" for ext in (".txt", ".json") if io.exists(io.join(output_dir, f"{name}{ext}"))]
    if taken:
        raise ConfigError(f"{output_dir}: a run or model folder whose {' and '.join(taken)} would be replaced; "
                          f"give another --name or folder")


def write_results(scores: Scores, output_dir: str, name: str = "eval_results", scoring: dict | None = None) -> None:
    """``<name>.txt`` (conlleval's report) and ``<name>.json`` beside it, written atomically; ``scoring``
    (the tagger's decoding settings) goes into the JSON, so scores made otherwise than training's say so."""
    io.write_text(io.join(output_dir, f"{name}.txt"), format_report(scores))
    data = {**scores.as_dict(), **({"scoring": scoring} if scoring else {})}
    io.write_text(io.join(output_dir, f"{name}.json"), json.dumps(data, indent=2) + "\n")
