"""What a request costs the model, counted before it is accepted: its word pieces.

A cheap bound from the characters decides most requests; the rest are tokenized, and counting
stops once past the limit, so refusing a huge request costs no more than tokenizing an allowed one.
"""

from __future__ import annotations

import itertools
import unicodedata
from collections.abc import Sequence

from bner.data import features, text
from bner.inference.combined import CombinedTagger
from bner.inference.span_tagger import SpanTagger
from bner.inference.tagger import Tagger

COUNT_CHUNK_WORDS = 2048  # words tokenized at a time when counting a request's pieces against a limit
# A span classifier's input is the candidate's context and up to four pieces more: [CLS], [SEP]
# and the two markers around the candidate (bner.data.spans.encode_spans).
SPAN_INPUT_EXTRA = 4


def piece_bound(texts: Sequence[str]) -> int:
    """At least :func:`count_pieces`, without tokenizing: every piece covers a character of the
    text as BERT's tokenizer normalises it, and that normalisation (NFD for uncased models: a
    Hangul syllable becomes three jamo) makes no more characters than NFD does."""
    return sum(len(unicodedata.normalize("NFD", t)) for t in texts)


def has_classifier(tagger) -> bool:
    """Whether a span classifier adds work beyond the texts' own pieces (:func:`with_classifier`)."""
    return isinstance(tagger, (SpanTagger, CombinedTagger))


def with_classifier(tagger, texts: Sequence[str], pieces: int, limit: int | None = None) -> int:
    """The model work of a request whose texts make ``pieces``, with a span classifier's inputs:

    - a dictionary model: an input for every dictionary match (its texts' pieces bound its tokenizing);
    - combined by union: the token tagger's pieces, and an input for every dictionary match;
    - combined by confirmation: the token tagger's pieces, and an input for every span it could
      find, which is any run of words: each word counts once, as the start of one span.
    """
    if isinstance(tagger, SpanTagger):
        return max(pieces, candidate_pieces(tagger, texts, limit))
    if not isinstance(tagger, CombinedTagger):
        return pieces
    left = None if limit is None else limit - pieces
    if tagger.mode == "union":
        return pieces + candidate_pieces(tagger.checker, texts, left)
    return pieces + possible_span_pieces(tagger, texts, left)


def candidate_pieces(tagger, texts: Sequence[str], limit: int | None = None) -> int:
    """A span classifier's work on the texts: an input for every dictionary match, each at most a
    window long and no longer than its text (counting stops once past ``limit``)."""
    total = 0
    for t in texts:
        window = min(tagger.preprocessor.max_seq_length, piece_bound([t]) + SPAN_INPUT_EXTRA)
        total += window * len(tagger.matcher.match_text(t)[1])
        if limit is not None and total > limit:
            return total
    return total


def possible_span_pieces(tagger, texts: Sequence[str], limit: int | None = None) -> int:
    """The most a classifier checking a tagger's spans can have to read: an input for every word
    (a span may start at any word), each as long as its sentence's pieces (the units
    :meth:`~bner.inference.tagger.TextTagger.text_units` cuts) and at most a window. Counting stops once past ``limit``."""
    preprocessor, total = tagger.checker.preprocessor, 0
    for t in texts:
        t = text.readable(t)
        words = text.segment(t)
        sentences = [[w.text for w in words[start:end]] for start, end in tagger.text_units(t, words)]
        for sentence in features.tokenize(preprocessor.tokenizer, sentences, preprocessor.max_pieces):
            total += sentence.num_words * min(preprocessor.max_seq_length, len(sentence.pieces) + SPAN_INPUT_EXTRA)
        if limit is not None and total > limit:
            return total
    return total


def count_pieces(tagger: Tagger, texts: Sequence[str], limit: int | None = None) -> int:
    """Word pieces the texts make with the tagger's tokenizer (the model's work, before windows).

    With ``limit``, counting stops once the count is past it (the result is then only known to
    exceed it).
    """
    preprocessor = tagger.preprocessor

    def pieces(chunks: list[list[str]]) -> int:  # one call for many texts: the tokenizer runs them in parallel
        return sum(len(t.pieces) for t in features.tokenize(preprocessor.tokenizer, chunks, preprocessor.max_pieces))

    total, chunks, words_in_chunks = 0, [], 0
    for t in texts:
        words = (w.text for w in text.iter_words(text.readable(t)))
        while chunk := list(itertools.islice(words, COUNT_CHUNK_WORDS)):
            chunks.append(chunk)
            words_in_chunks += len(chunk)
            if words_in_chunks >= COUNT_CHUNK_WORDS:
                total += pieces(chunks)
                chunks, words_in_chunks = [], 0
                if limit is not None and total > limit:
                    return total
    return total + (pieces(chunks) if chunks else 0)
