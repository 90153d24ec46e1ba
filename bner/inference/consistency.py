"""Document-level consistency: one reading of a name throughout a document.

A sentence decoded alone can tag a disease's abbreviation in one sentence and miss it three
sentences later, or tag a word once that the model rejects everywhere else in the text.
Annotators label a name the same way throughout a document (in NCBI-disease's abstracts,
nearly always: docs/history.md).
:func:`agree` makes the decoded tags of a document agree the same way, by a vote weighted
by the model's own confidence:

1. every name the decoder tagged in the document (its words, exactly as written) is a
   candidate, with the type it was tagged with most often;
2. where the document disagrees (the name is tagged as exactly that entity in one place and
   not tagged at all in another), each of those occurrences votes with the model's mean
   probability over its words of the type and of ``O`` (occurrences that overlap another
   entity keep their tags and do not vote);
3. if the type gets at least as much as ``O``, every occurrence is tagged as the entity; if
   not, none is. A document that already agrees is left as it is.

Longer names are decided first, so ``breast cancer`` is settled before ``cancer``. Nothing
is learned and the model is unchanged. It needs the document: a ``-DOCSTART-`` document of
a CoNLL file, or one raw text. Sentences outside any document are left as decoded: a CoNLL
file without ``-DOCSTART-`` lines is often a list of unrelated sentences (tweets, shuffled
examples), where one vote over the whole file would force one reading of "Apple" on all.

Written by hand because it works on bner's word tags and probabilities; no library does this.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence

import numpy as np

from bner.data import corpus

MAX_NAME_WORDS = 8  # longer entities are not propagated: rare as repeated names, and bounds the work


def agree(
    sentences: Sequence[Sequence[str]],
    tags: Sequence[Sequence[str]],
    type_probabilities: Sequence[np.ndarray],
    documents: Sequence[int],
    types: Sequence[str],
    scheme: str,
) -> list[list[str]]:
    """The tags of every sentence, made consistent within each document.

    ``tags`` are in the model's label ``scheme`` (IOB2 or IOBES); ``type_probabilities[k]``
    is ``[words, len(types)]``: each word's probability of each entity type (the rest is
    ``O``'s). ``documents``
    numbers each sentence's document as CoNLL reading does (from 1 at each ``-DOCSTART-``);
    0 (or less) marks a sentence outside any document, made consistent only within itself.
    Any other value (a string too) names a document.
    """
    out = [list(t) for t in tags]
    members: dict[object, list[int]] = collections.defaultdict(list)
    for k, document in enumerate(documents):
        members[("alone", k) if corpus.outside_documents(document) else document].append(k)
    column = {t: j for j, t in enumerate(types)}
    for ks in members.values():
        _agree_in_document(sentences, out, type_probabilities, ks, column, scheme)
    return out


def _agree_in_document(sentences, tags, probabilities, ks, column, scheme) -> None:
    spans = {k: set(corpus.entity_spans(tags[k])) for k in ks}
    votes: dict[tuple[str, ...], collections.Counter] = {}
    for k in ks:
        for span in sorted(spans[k], key=lambda s: s.start):  # first seen first: ties in type go to it
            name = tuple(sentences[k][span.start : span.end])
            if len(name) <= MAX_NAME_WORDS and any(c.isalnum() for word in name for c in word):
                votes.setdefault(name, collections.Counter())[span.type] += 1
    if not votes:
        return
    # Every place each candidate occurs, found in one pass per name length (linear in the document).
    places: dict[tuple[str, ...], list[tuple[int, int]]] = collections.defaultdict(list)
    lengths = {len(name) for name in votes}
    for k in ks:
        words = sentences[k]
        for n in lengths:
            for i in range(len(words) - n + 1):
                if (name := tuple(words[i : i + n])) in votes:
                    places[name].append((k, i))
    # Running sums of each word's type probabilities and, last, of O's: a place's mean is one subtraction.
    sums = {k: _running_sums(probabilities[k], len(column)) for k in ks}
    outside = len(column)
    for name in sorted(votes, key=len, reverse=True):  # stable: first seen first among equals
        entity_type = votes[name].most_common(1)[0][0]
        n, j = len(name), column[entity_type]
        entity = corpus.Span(entity_type, 0, n)
        tagged, untagged = [], []
        free_from = {}  # per sentence, where the next untagged place may start (places of a name can overlap: "Bora Bora Bora")
        for k, i in places[name]:
            if corpus.Span(entity_type, i, i + n) in spans[k]:
                tagged.append((k, i))
            elif i >= free_from.get(k, 0) and _outside(tags[k], i, i + n):
                untagged.append((k, i))
                free_from[k] = i + n
        if not tagged or not untagged:  # the document agrees (or a longer name's decision undid it)
            continue
        votes_for = sum(sums[k][i + n][j] - sums[k][i][j] for k, i in tagged + untagged)
        votes_outside = sum(sums[k][i + n][outside] - sums[k][i][outside] for k, i in tagged + untagged)
        if votes_for >= votes_outside:  # both are n × the number of places × the mean
            for k, i in untagged:
                tags[k][i : i + n] = corpus.spans_to_tags([entity], n, scheme)
                spans[k].add(corpus.Span(entity_type, i, i + n))
        else:
            for k, i in tagged:
                tags[k][i : i + n] = [corpus.OUTSIDE] * n
                spans[k].discard(corpus.Span(entity_type, i, i + n))


def _running_sums(type_probabilities: np.ndarray, types: int) -> list[list[float]]:
    """Row ``i``: the sums over words before ``i`` of each type's probability, then of O's."""
    p = np.asarray(type_probabilities, dtype=np.float64).reshape(-1, types)
    with_outside = np.concatenate([p, 1 - p.sum(-1, keepdims=True)], axis=1)
    return np.concatenate([np.zeros((1, with_outside.shape[1])), np.cumsum(with_outside, axis=0)]).tolist()


def _outside(tags: Sequence[str], start: int, end: int) -> bool:
    """Words ``start`` … ``end`` are untagged and no entity runs on into them from the word after
    (which only an invalid sequence, from arg-max decoding, could do), so tagging them as one
    entity adds exactly that entity."""
    if any(tag != corpus.OUTSIDE for tag in tags[start:end]):
        return False
    return end >= len(tags) or corpus.split_tag(tags[end])[0] not in ("I", "E")
