"""Dictionary NER as a tagger: every name of a compiled dictionary found in the words, and
where matches overlap, the longest kept (then the leftmost).

The same shell as a trained model's (:class:`bner.inference.tagger.TextTagger`): raw text is
segmented into the same words, CoNLL files are read and scored the same way, and entities
carry the dictionary's identifier. A name listed with several types takes the first type the
dictionary gives it, with that type's identifiers ("|" between several).
"""

from __future__ import annotations

from collections.abc import Generator, Sequence

import numpy as np

from bner.data import corpus
from bner.dictionary.matcher import Matcher, longest_first
from bner.inference.tagger import TaggedSentence, TextTagger

IDENTIFIER_SEPARATOR = "|"


class DictionaryTagger(TextTagger):
    """Tags with a dictionary alone (:class:`bner.dictionary.matcher.Matcher`)."""

    def __init__(self, matcher: Matcher, source: str = "", batch_size: int = 32):
        self.matcher, self.source, self.batch_size = matcher, source, batch_size

    def __repr__(self) -> str:
        return f"DictionaryTagger({self.source or 'in memory'!s}, {self.matcher!r})"

    @property
    def entity_types(self) -> list[str]:
        return self.matcher.types

    @property
    def scoring(self) -> dict:
        return {"decoding": "dictionary", "overlaps": "longest first", "fold_case": self.matcher.fold_case}

    def tag_sentences_in_steps(
        self, sentences: Sequence[Sequence[str]], batch_size: int | None = None, documents: Sequence[int] | None = None
    ) -> Generator[None, None, list[TaggedSentence]]:
        return [self.tag_words(words) for words in sentences]
        yield  # a generator, as every tagger's steps are: matching needs no model call to wait for

    def tag_words(self, words: Sequence[str]) -> TaggedSentence:
        identifiers, kept = [""] * len(words), []
        for match in longest_first(self.matcher.match_words(words)):
            entries = self.matcher.entries(match.key)
            entity_type = entries[0][0]
            kept.append(corpus.Span(entity_type, match.start, match.end))
            identifiers[match.start] = IDENTIFIER_SEPARATOR.join(i for t, i in entries if t == entity_type and i)
        return TaggedSentence(corpus.spans_to_tags(kept, len(words), "IOB2"), np.ones(len(words), np.float32), identifiers)
