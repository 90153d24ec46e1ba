"""Dictionary matches checked by a span classifier: the words → every dictionary match → the
classifier's decision for each (a type, or none) → the accepted matches, overlaps resolved
longest first (then leftmost, then the more probable) → tags and entities with the dictionary's identifiers.

The classifier is a token classifier read at one piece an input (:func:`bner.data.spans.encode_spans`),
so it runs on every backend a token tagger runs on (Keras in training, a SavedModel, ONNX
Runtime, TensorFlow Serving), batched the same way. Every match gets a decision; the model's
``none`` is a decision too.

The decision (:meth:`SpanTagger.decide`): the most probable of the types the dictionary lists
for the name is accepted when it holds more than ``threshold`` of its own and ``none``'s
probability together. At the default 0.5 that is the arg-max over ``none`` and the listed types
(ties go to ``none``); a lower threshold trades precision for recall, a higher one the reverse.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence

import numpy as np
import tokenizers

from bner.data import corpus, spans
from bner.dictionary.matcher import Match, Matcher, longest_first
from bner.inference.decoding import THRESHOLD, check_threshold
from bner.inference.dictionary_tagger import IDENTIFIER_SEPARATOR
from bner.inference.tagger import TaggedSentence, Tagger
from bner.model.metadata import TaggerMetadata


class SpanTagger(Tagger):
    """Tags with a dictionary (:class:`bner.dictionary.matcher.Matcher`) whose every match a trained classifier checks."""

    def __init__(self, backend, metadata: TaggerMetadata, tokenizer: tokenizers.Tokenizer, matcher: Matcher, batch_size: int = 32,
                 max_seq_length: int | None = None, source: str = "", threshold: float = THRESHOLD):
        super().__init__(backend, metadata, tokenizer, batch_size, max_seq_length, source, consistent=False)
        self.matcher = matcher
        self.threshold = check_threshold(threshold)
        self.masking = metadata.spans["masking"]
        self.mask_id = None
        if self.masking == "replace":
            self.mask_id = tokenizer.token_to_id(metadata.spans["mask_token"])
            if self.mask_id is None:
                raise ValueError(f"{source or 'the model'}: the tokenizer has no {metadata.spans['mask_token']} piece")

    def __repr__(self) -> str:
        return (f"SpanTagger({self.source or 'in memory'!s}, types={self.entity_types}, masking={self.masking}, "
                f"threshold={self.threshold}, backend={self.backend.name})")

    @property
    def scoring(self) -> dict:
        return {"decoding": "dictionary + span classifier", "masking": self.masking, "threshold": self.threshold, "overlaps": "longest first"}

    def tag_sentences_in_steps(
        self, sentences: Sequence[Sequence[str]], batch_size: int | None = None, documents: Sequence[int] | None = None
    ) -> Generator[None, None, list[TaggedSentence]]:
        checked = yield from self.checked_matches_in_steps(sentences, batch_size)
        return self.decided(sentences, checked)

    def checked_matches_in_steps(
        self, sentences: Sequence[Sequence[str]], batch_size: int | None = None
    ) -> Generator[None, None, list[tuple[int, Match, np.ndarray]]]:
        """Every dictionary match of the sentences with the classifier's label probabilities:
        (sentence index, match, probabilities), one model call per step."""
        shared = [tuple(words) for words in sentences]  # one tuple a sentence, however many candidates it holds
        found = [(i, m) for i, words in enumerate(shared) for m in self.matcher.match_words(words)]
        candidates = [spans.SpanExample(shared[i], m.start, m.end) for i, m in found]
        probabilities = yield from self.candidate_probabilities_in_steps(candidates, batch_size)
        return [(i, m, p) for (i, m), p in zip(found, probabilities)]

    def decided(self, sentences: Sequence[Sequence[str]], checked: Sequence[tuple[int, Match, np.ndarray]],
                threshold: float | None = None) -> list[TaggedSentence]:
        """The sentences tagged with the checked matches the decision accepts (at ``threshold``,
        default the tagger's own), overlaps resolved longest first."""
        threshold = self.threshold if threshold is None else check_threshold(threshold)
        accepted: list[list] = [[] for _ in sentences]
        for i, match, p in checked:
            # The choice is among none and the types the dictionary lists for the name, as training
            # labelled candidates (bner.dictionary.candidates).
            listed = [self._label_ids[t] for t in dict.fromkeys(t for t, _ in self.matcher.entries(match.key)) if t in self._label_ids]
            label = self._decide(p, listed, threshold)
            if label:
                accepted[i].append((match, self.labels[label], float(p[label])))
        return [self._tagged_spans(len(words), kept) for words, kept in zip(sentences, accepted)]

    def decide(self, probabilities: np.ndarray, types: Sequence[int], threshold: float | None = None) -> int:
        """The label id a candidate gets: the most probable of ``types`` (label ids) when it holds
        more than ``threshold`` of its and ``none``'s probability together; else 0, ``none``
        (also for probabilities that are not numbers)."""
        return self._decide(probabilities, types, self.threshold if threshold is None else check_threshold(threshold))

    @staticmethod
    def _decide(probabilities: np.ndarray, types: Sequence[int], threshold: float) -> int:
        """:meth:`decide` at a threshold already checked (once a call, not once a candidate)."""
        if not types:
            return 0
        best = int(types[int(np.asarray(probabilities)[list(types)].argmax())])
        entity, none = float(probabilities[best]), float(probabilities[0])
        # Written so that NaN compares false: a damaged answer is no entity.
        return best if entity + none > 0 and entity > threshold * (entity + none) else 0

    def candidate_probabilities_in_steps(
        self, candidates: Sequence[spans.SpanExample], batch_size: int | None = None
    ) -> Generator[None, None, list[np.ndarray]]:
        """The classifier's label probabilities of each candidate, one model call per step."""
        if not candidates:
            return []
        examples = spans.encode_spans(self.preprocessor, candidates, self.masking, self.mask_id)
        piece_probabilities = yield from self.example_probabilities_in_steps(examples, batch_size)
        return [np.asarray(p[e.owned_positions[0]], np.float32) for e, p in zip(examples, piece_probabilities)]

    def _tagged_spans(self, length: int, accepted: list) -> TaggedSentence:
        kept = longest_first(accepted, start=lambda a: a[0].start, end=lambda a: a[0].end, score=lambda a: a[2])
        scores, identifiers = np.ones(length, np.float32), [""] * length
        for match, entity_type, score in kept:
            scores[match.start : match.end] = score
            identifiers[match.start] = IDENTIFIER_SEPARATOR.join(i for t, i in self.matcher.entries(match.key) if t == entity_type and i)
        tags = corpus.spans_to_tags([corpus.Span(t, m.start, m.end) for m, t, _ in kept], length, "IOB2")
        return TaggedSentence(tags, scores, identifiers)
