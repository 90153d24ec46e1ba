"""Dictionary matches checked by a span classifier: the words → every dictionary match → the
classifier's decision for each (a type, or none) → the accepted matches, overlaps resolved
longest first (then the more probable) → tags and entities with the dictionary's identifiers.

The classifier is a token classifier read at one piece an input (:func:`bner.data.spans.encode_spans`),
so it runs on every backend a token tagger runs on (Keras in training, a SavedModel, ONNX
Runtime, TensorFlow Serving), batched the same way. Every match gets a decision; the model's
``none`` is a decision too.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence

import numpy as np
import tokenizers

from bner.data import batches, corpus, spans
from bner.dictionary.matcher import Matcher, longest_first
from bner.inference.dictionary_tagger import IDENTIFIER_SEPARATOR
from bner.inference.tagger import TaggedSentence, Tagger
from bner.model.metadata import TaggerMetadata


class SpanTagger(Tagger):
    """Tags with a dictionary (:class:`bner.dictionary.matcher.Matcher`) whose every match a trained classifier checks."""

    def __init__(self, backend, metadata: TaggerMetadata, tokenizer: tokenizers.Tokenizer, matcher: Matcher, batch_size: int = 32,
                 max_seq_length: int | None = None, source: str = ""):
        super().__init__(backend, metadata, tokenizer, batch_size, max_seq_length, source, consistent=False)
        self.matcher = matcher
        self.masking = metadata.spans["masking"]
        self.mask_id = None
        if self.masking == "replace":
            self.mask_id = tokenizer.token_to_id(metadata.spans["mask_token"])
            if self.mask_id is None:
                raise ValueError(f"{source or 'the model'}: the tokenizer has no {metadata.spans['mask_token']} piece")

    def __repr__(self) -> str:
        return f"SpanTagger({self.source or 'in memory'!s}, types={self.entity_types}, masking={self.masking}, backend={self.backend.name})"

    @property
    def scoring(self) -> dict:
        return {"decoding": "dictionary + span classifier", "masking": self.masking, "overlaps": "longest first"}

    @property
    def split_sentences(self) -> bool:
        return False  # a candidate's window is its sentence's words, or a raw text's, around it

    def tag_sentences_in_steps(
        self, sentences: Sequence[Sequence[str]], batch_size: int | None = None, documents: Sequence[int] | None = None
    ) -> Generator[None, None, list[TaggedSentence]]:
        found = [(i, m) for i, words in enumerate(sentences) for m in self.matcher.match_words(words)]
        candidates = [spans.SpanExample(tuple(sentences[i]), m.start, m.end) for i, m in found]
        probabilities = yield from self.candidate_probabilities_in_steps(candidates, batch_size)
        accepted: list[list] = [[] for _ in sentences]
        for (i, match), p in zip(found, probabilities):
            label = int(p.argmax())
            if label:  # 0 is none
                accepted[i].append((match, self.labels[label], float(p[label])))
        return [self._tagged_spans(len(words), kept) for words, kept in zip(sentences, accepted)]

    def candidate_probabilities_in_steps(
        self, candidates: Sequence[spans.SpanExample], batch_size: int | None = None
    ) -> Generator[None, None, list[np.ndarray]]:
        """The classifier's label probabilities of each candidate, one model call per step."""
        if not candidates:
            return []
        examples = spans.encode_spans(self.preprocessor, candidates, self.masking, self.mask_id)
        buckets = batches.padding_buckets(self.preprocessor.max_seq_length, getattr(self.backend, "static_shapes", True))
        plan = batches.plan_batches([len(e) for e in examples], batch_size or self.batch_size, buckets)
        out: list[np.ndarray] = [np.empty(0)] * len(examples)
        for call, batch in enumerate(batches.iterate_batches(examples, plan, self.preprocessor.pad_id)):
            if call:
                yield
            probabilities = self.backend.piece_probabilities(batch.inputs)
            for row, i in enumerate(batch.indices):
                out[i] = np.asarray(probabilities[row, examples[i].owned_positions[0]], np.float32)
        return out

    def _tagged_spans(self, length: int, accepted: list) -> TaggedSentence:
        tags, scores, identifiers = [corpus.OUTSIDE] * length, np.ones(length, np.float32), [""] * length
        for match, entity_type, score in longest_first(accepted, start=lambda a: a[0].start, end=lambda a: a[0].end,
                                                       score=lambda a: a[2]):
            tags[match.start : match.end] = [f"B-{entity_type}"] + [f"I-{entity_type}"] * (match.end - match.start - 1)
            scores[match.start : match.end] = score
            entries = self.matcher.entries(match.key)
            identifiers[match.start] = IDENTIFIER_SEPARATOR.join(i for t, i in entries if t == entity_type and i)
        return TaggedSentence(tags, scores, identifiers)
