"""Valid-sequence decoding: the most probable label sequence the tag scheme allows.

Taking each word's most probable label on its own can produce sequences no scheme allows
(``I-PER`` after ``O``, ``B-LOC I-ORG``); conlleval then repairs them by its chunk rules,
often wrongly. :func:`best_sequence` instead finds, by Viterbi over the words' label
probabilities, the sequence with the highest product of probabilities among those the
scheme allows. Where the per-word arg-max is already valid, it is the answer. Nothing is
learned: the transitions are the scheme's rules, so the model and training are unchanged.

Written by hand (numpy, a few lines) because the libraries that have Viterbi (CRF layers
in TensorFlow Addons, pytorch-crf) tie it to a trained transition matrix and a framework.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from bner.data import corpus

SCHEMES = corpus.MODEL_SCHEMES
# How a Tagger turns word probabilities into labels: the most probable valid sequence, or each
# word's own most probable label (as Hugging Face's recipe does).
DECODINGS = ("constrained", "argmax")
# The two choices a model is loaded with (bner.load's decoding and consistent), as every command explains them.
DECODING_HELP = "constrained: the most probable label sequence the tag scheme allows; argmax: each word's most probable label alone"
CONSISTENT_HELP = "tag a name the same way throughout its document: one text, or a -DOCSTART- document of a CoNLL file"
# A dictionary model's decision (bner.inference.span_tagger.SpanTagger.decide): accept a match's
# most probable listed type when it holds more than this share of its and none's probability. 0.5 is the arg-max.
THRESHOLD = 0.5
THRESHOLD_HELP = ("a dictionary model accepts a match when its most probable listed type holds more than this share of "
                  "that type's and none's probability together (0.5: the arg-max); lower keeps more of the dictionary's recall")
# How a token tagger and a dictionary model combine (bner.inference.combined.CombinedTagger).
COMBINE_MODES = ("union", "confirm")
COMBINE_HELP = ("union: both models' entities, overlaps longest first; confirm: the tagger's entities the "
                "classifier gives the same type")


def check_threshold(threshold: float) -> float:
    """``threshold`` as a float, or a ValueError saying what a threshold is."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold {threshold!r}: expected a probability from 0 up to (not including) 1")
    return float(threshold)


@dataclasses.dataclass(frozen=True)
class Transitions:
    """Which label may follow which (``allowed[i, j]``: j after i), start and end a sentence."""

    allowed: np.ndarray  # [labels, labels] bool
    start: np.ndarray  # [labels] bool
    end: np.ndarray  # [labels] bool


@functools.lru_cache(maxsize=32)
def transitions(labels: tuple[str, ...], scheme: str) -> Transitions:
    """The scheme's rules over ``labels`` (``O``, ``B-X``, ``I-X`` and for IOBES ``E-X``, ``S-X``)."""
    if scheme not in SCHEMES:
        raise ValueError(f"valid-sequence decoding knows {', '.join(SCHEMES)}, not {scheme}")
    parts = [label.partition("-")[::2] if label != "O" else ("O", "") for label in labels]
    n = len(labels)
    allowed = np.zeros((n, n), bool)
    start, end = np.zeros(n, bool), np.zeros(n, bool)
    for j, (kind, entity_type) in enumerate(parts):
        inside = kind in ("I", "E")  # continues an entity of its type
        start[j] = not inside
        for i, (before, before_type) in enumerate(parts):
            open_entity = before in ("B", "I")
            if inside:
                allowed[i, j] = open_entity and before_type == entity_type
            elif scheme == "IOBES":
                allowed[i, j] = not open_entity  # B-X, I-X must be continued to their E-X
            else:
                allowed[i, j] = True
        if scheme == "IOBES":
            end[j] = kind in ("O", "E", "S")
        else:
            end[j] = True
    return Transitions(allowed, start, end)


def is_valid(label_ids, rules: Transitions) -> bool:
    ids = list(label_ids)
    if not ids:
        return True
    if not rules.start[ids[0]] or not rules.end[ids[-1]]:
        return False
    return all(rules.allowed[a, b] for a, b in zip(ids, ids[1:]))


def best_sequence(probabilities: np.ndarray, rules: Transitions) -> np.ndarray:
    """Label ids of the most probable valid sequence; ``probabilities`` is ``[words, labels]``."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    words = probabilities.shape[0]
    if words == 0:
        return np.zeros(0, np.int64)
    log_p = np.log(np.clip(probabilities, 1e-30, None))
    forbidden = np.where(rules.allowed, 0.0, -np.inf)
    score = np.where(rules.start, log_p[0], -np.inf)
    back = np.zeros((words, probabilities.shape[1]), np.int64)
    for t in range(1, words):
        candidates = score[:, None] + forbidden  # [from, to]
        back[t] = candidates.argmax(axis=0)
        score = candidates[back[t], np.arange(candidates.shape[1])] + log_p[t]
    score = np.where(rules.end, score, -np.inf)
    path = np.zeros(words, np.int64)
    path[-1] = int(score.argmax())
    for t in range(words - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return path
