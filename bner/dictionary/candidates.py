"""A dictionary's matches in labelled sentences, as span classification examples.

Every match is a candidate, overlapping and nested ones included, and every candidate gets a
label: the gold type where a gold entity has exactly its words and a type the dictionary
gives the name, else :data:`bner.data.spans.NONE`. This is how the consensus training sets of
dictionary-plus-classifier systems are made from an annotated corpus.
"""

from __future__ import annotations

from collections.abc import Sequence

from bner.data import corpus
from bner.data.spans import NONE, SpanExample
from bner.dictionary.matcher import Matcher


def labelled_candidates(sentences: Sequence[corpus.Sentence], matcher: Matcher, source: str = "") -> list[SpanExample]:
    """Each sentence's candidates, in order, each with its label."""
    out = []
    for s in sentences:
        gold = {(span.start, span.end): span.type for span in corpus.entity_spans(s.tags)}
        for match in matcher.match_words(s.words):
            gold_type = gold.get((match.start, match.end))
            types = {t for t, _ in matcher.entries(match.key)}
            label = gold_type if gold_type in types else NONE
            out.append(SpanExample(s.words, match.start, match.end, label, f"{source}:{s.line}" if source else ""))
    return out
