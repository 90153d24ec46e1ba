"""A token tagger and a dictionary's span classifier, one answer.

Two ways to combine them (:data:`bner.inference.decoding.COMBINE_MODES`):

- ``union``: the entities of both. Where they overlap, the longer is kept (then the
  leftmost, then the more probable), so a dictionary name the tagger cut short is whole, and a name the dictionary
  lacks still comes from the tagger. For recall.
- ``confirm``: the tagger's entities, each kept only where the span classifier, shown that
  span as a candidate, gives it the same type: the most probable of all its types, accepted
  at its threshold (:meth:`~bner.inference.span_tagger.SpanTagger.decide`; at 0.5, its arg-max). For precision: the tagger finds the spans,
  the classifier checks them whether or not the dictionary lists them.

Either way an entity carries the dictionary's identifier where the dictionary lists its
name with its type.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence

import numpy as np

from bner.data import corpus, spans
from bner.dictionary.matcher import longest_first
from bner.inference.decoding import COMBINE_MODES
from bner.inference.dictionary_tagger import IDENTIFIER_SEPARATOR
from bner.inference.span_tagger import SpanTagger
from bner.inference.tagger import TaggedSentence, Tagger, TextTagger


class CombinedTagger(TextTagger):
    """``tagger``'s and ``checker``'s entities combined as ``mode`` says."""

    def __init__(self, tagger: Tagger, checker: SpanTagger, mode: str = "union"):
        if mode not in COMBINE_MODES:
            raise ValueError(f"combine mode {mode!r}: expected one of {', '.join(COMBINE_MODES)}")
        if not isinstance(checker, SpanTagger) or isinstance(tagger, SpanTagger):
            raise ValueError("combining takes a token tagger and a dictionary model with its span classifier, in that order")
        self.tagger, self.checker, self.mode = tagger, checker, mode
        self.batch_size, self.source = tagger.batch_size, f"{tagger.source} + {checker.source}"

    def __repr__(self) -> str:
        return f"CombinedTagger({self.tagger!r}, {self.checker!r}, mode={self.mode})"

    @property
    def entity_types(self) -> list[str]:
        return self.tagger.entity_types if self.mode == "confirm" else sorted({*self.tagger.entity_types, *self.checker.entity_types})

    @property
    def scoring(self) -> dict:
        return {"combine": self.mode, "tagger": self.tagger.scoring, "checker": self.checker.scoring}

    @property
    def split_sentences(self) -> bool:
        return self.tagger.split_sentences

    @property
    def data_scheme(self) -> str:
        return self.tagger.data_scheme

    # What a server reads of the model it serves: the token tagger's runtime, metadata and
    # windows (both models run in this process, loaded the same way).
    @property
    def backend(self):
        return self.tagger.backend

    @property
    def metadata(self):
        return self.tagger.metadata

    @property
    def preprocessor(self):
        return self.tagger.preprocessor

    def check(self, full_length: bool = False) -> None:
        """Both models' :meth:`~bner.inference.tagger.Tagger.check`."""
        self.tagger.check(full_length)
        self.checker.check(full_length)

    def tag_sentences_in_steps(
        self, sentences: Sequence[Sequence[str]], batch_size: int | None = None, documents: Sequence[int] | None = None
    ) -> Generator[None, None, list[TaggedSentence]]:
        tagged = yield from self.tagger.tag_sentences_in_steps(sentences, batch_size, documents)
        found = [[(x.start, x.end, x.type, float(np.mean(t.scores[x.start : x.end]))) for x in t.spans()] for t in tagged]
        if self.mode == "union":
            checked = yield from self.checker.tag_sentences_in_steps(sentences, batch_size, documents)
            for spans_, t in zip(found, checked):
                spans_ += [(x.start, x.end, x.type, float(t.scores[x.start])) for x in t.spans()]
            return [self._tagged(words, kept) for words, kept in zip(sentences, found)]
        shared = [tuple(words) for words in sentences]  # one tuple a sentence, however many spans it holds
        candidates = [spans.SpanExample(shared[i], start, end) for i, own in enumerate(found) for start, end, _, _ in own]
        probabilities = iter((yield from self.checker.candidate_probabilities_in_steps(candidates, batch_size)))
        every_type = range(1, len(self.checker.labels))  # a span the tagger found need not be listed in the dictionary
        confirmed = []
        for own in found:
            kept = []
            for start, end, entity_type, score in own:
                p = next(probabilities)
                if self.checker.labels[self.checker.decide(p, every_type)] == entity_type:
                    kept.append((start, end, entity_type, score))
            confirmed.append(kept)
        return [self._tagged(words, kept) for words, kept in zip(sentences, confirmed)]

    def _tagged(self, words: Sequence[str], found: list) -> TaggedSentence:
        kept = longest_first(found, start=lambda f: f[0], end=lambda f: f[1], score=lambda f: f[3])
        listed = {(m.start, m.end): self.checker.matcher.entries(m.key) for m in self.checker.matcher.match_words(words)}
        scores, identifiers = np.ones(len(words), np.float32), [""] * len(words)
        for start, end, entity_type, score in kept:
            scores[start:end] = score
            identifiers[start] = IDENTIFIER_SEPARATOR.join(i for t, i in listed.get((start, end), ()) if t == entity_type and i)
        tags = corpus.spans_to_tags([corpus.Span(t, start, end) for start, end, t, _ in kept], len(words), "IOB2")
        return TaggedSentence(tags, scores, identifiers)
