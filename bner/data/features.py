"""Words → word pieces → model windows, and model outputs → word labels.

Training, evaluation, prediction and serving all go through these functions, so the
tokenisation, casing, windowing and decoding cannot drift apart.

Sentences longer than the model's window are split at word boundaries into windows that
overlap; each word is *owned* by exactly one window (the one where it has the most
context on both sides). Its label is learned and predicted only there, so no word is
ever dropped and none is counted twice.
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import logging
from collections.abc import Sequence

import numpy as np
import tokenizers
from tokenizers import normalizers, pre_tokenizers

from bner import io
from bner.data import corpus
from bner.errors import first_line

log = logging.getLogger(__name__)

IGNORE = -1  # label id of pieces that carry no label (padding, special, non-first pieces)
SPECIAL = {"cls": "[CLS]", "sep": "[SEP]", "pad": "[PAD]", "unk": "[UNK]"}  # BERT's; a model's own are in its metadata


# ---------------------------------------------------------------- tokenizer


def is_wordpiece(vocab_file: str | None = None, tokenizer_file: str | None = None) -> bool:
    """Whether a model's tokenizer is BERT's WordPiece, the one whose casing bner may set."""
    if tokenizer_file:
        try:
            return json.loads(io.read_text(tokenizer_file)).get("model", {}).get("type") == "WordPiece"
        except (ValueError, AttributeError):
            return False
    return bool(vocab_file)


def build_tokenizer(
    vocab_file: str | None = None,
    tokenizer_file: str | None = None,
    lowercase: bool | None = None,
    strip_accents: bool | None = None,
    special_tokens: dict[str, str] | None = None,
) -> tokenizers.Tokenizer:
    """A model's tokenizer from its ``tokenizer.json``, or a BERT word-piece one from ``vocab.txt``.

    ``lowercase=None`` keeps what ``tokenizer.json`` says. Only a WordPiece tokenizer's casing
    can be set (uncased BERT strips accents as well as lowercasing; ``strip_accents=None``
    follows ``lowercase`` as BERT's recipe does): byte-level BPE and SentencePiece models
    normalise as they were trained to, and asking otherwise is an error.
    """
    if tokenizer_file:
        tokenizer = tokenizers.Tokenizer.from_str(io.read_text(tokenizer_file))
        if isinstance(tokenizer.model, tokenizers.models.WordPiece):
            if lowercase is not None:
                tokenizer.normalizer = bert_normalizer(lowercase, strip_accents)
        elif lowercase is not None and lowercase != normalisation(tokenizer)[0]:
            raise ValueError(
                f"{tokenizer_file}: this tokenizer {'lowercases' if not lowercase else 'keeps case'} by its own rules; "
                "--do_lower_case applies to WordPiece (BERT-style) vocabularies only"
            )
    elif vocab_file:
        model = tokenizers.models.WordPiece(read_vocabulary(vocab_file), unk_token=SPECIAL["unk"])
        tokenizer = tokenizers.Tokenizer(model)
        tokenizer.normalizer = bert_normalizer(True if lowercase is None else lowercase, strip_accents)
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    else:
        raise ValueError("a tokenizer needs a vocab.txt or a tokenizer.json")
    tokenizer.post_processor = None  # [CLS]/[SEP] (or <s>/</s>) are added per window, not per sentence
    tokenizer.no_truncation()
    tokenizer.no_padding()
    for name in (special_tokens or SPECIAL).values():
        if tokenizer.token_to_id(name) is None:
            raise ValueError(f"the vocabulary has no {name} token")
    return tokenizer


def normalisation(tokenizer: tokenizers.Tokenizer) -> tuple[bool, bool]:
    """Whether the tokenizer lowercases, and whether it strips accents, as its normaliser shows."""
    if tokenizer.normalizer is None:
        return False, False
    return tokenizer.normalizer.normalize_str("A") == "a", tokenizer.normalizer.normalize_str("\u00e9") in ("e", "E")


def read_tokenizer(path: str, special_tokens: dict[str, str] | None = None) -> tokenizers.Tokenizer:
    """A model folder's ``tokenizer.json`` (as bner saved it), with a one-line error for a bad file."""
    try:
        tokenizer = tokenizers.Tokenizer.from_str(io.read_text(path))
    except FileNotFoundError:
        raise ValueError(f"{path}: file not found") from None
    except Exception as e:  # noqa: BLE001 — the Rust parser raises plain Exception
        raise ValueError(f"{path}: not a tokenizer file ({first_line(e)})") from None
    for name in (special_tokens or SPECIAL).values():
        if tokenizer.token_to_id(name) is None:
            raise ValueError(f"{path}: the vocabulary has no {name} token")
    return tokenizer


def read_vocabulary(vocab_file: str) -> dict[str, int]:
    """``vocab.txt`` as piece → id (the line number), from any path :mod:`bner.io` opens."""
    # split("\n"), not splitlines(): vocabularies hold pieces such as U+2028 that
    # splitlines() would treat as line breaks.
    lines = io.read_text(vocab_file).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return {line.rstrip("\r"): i for i, line in enumerate(lines)}


def bert_normalizer(lowercase: bool, strip_accents: bool | None = None) -> normalizers.Normalizer:
    return normalizers.BertNormalizer(
        clean_text=True,
        handle_chinese_chars=True,
        strip_accents=lowercase if strip_accents is None else strip_accents,
        lowercase=lowercase,
    )


@dataclasses.dataclass(frozen=True)
class TokenizedSentence:
    pieces: np.ndarray  # int32 piece ids of all words, in order
    word_starts: np.ndarray  # int64 index into ``pieces`` of each word's first piece

    @property
    def num_words(self) -> int:
        return len(self.word_starts)

    def word_end(self, word: int) -> int:
        return int(self.word_starts[word + 1]) if word + 1 < self.num_words else len(self.pieces)


def tokenize(
    tokenizer: tokenizers.Tokenizer, sentences: Sequence[Sequence[str]], max_pieces_per_word: int, unk_id: int | None = None
) -> list[TokenizedSentence]:
    """Word pieces of each sentence's words, exactly as the tokenizer splits the running text.

    Each sentence is tokenised as its words joined by single spaces, and each piece belongs to
    the word its characters end in (a piece made only of the space before a word, as
    SentencePiece's ``▁`` can be, belongs to that word). So a word that is not first keeps the
    leading space byte-level BPE (RoBERTa) saw in pre-training, and SentencePiece's ``▁``
    marks each word as it did there; WordPiece splits on spaces either way.

    A word the tokenizer reduces to nothing (a control or zero-width character) becomes
    ``unk_id`` (default: BERT's ``[UNK]``) so it keeps its place; a word with more pieces than
    fit in a window keeps its first ``max_pieces_per_word`` (its label sits on the first piece).
    """
    if unk_id is None:
        unk_id = tokenizer.token_to_id(SPECIAL["unk"])
    texts = [" ".join(words) for words in sentences]
    result = []
    for words, encoding in zip(sentences, tokenizer.encode_batch(texts, add_special_tokens=False)):
        n = len(words)
        if n == 0:
            result.append(TokenizedSentence(np.zeros(0, np.int32), np.zeros(0, np.int64)))
            continue
        word_ends = np.cumsum([len(w) + 1 for w in words]) - 1  # character where each word ends
        ids = np.asarray(encoding.ids, dtype=np.int32)
        piece_ends = np.fromiter((end for _, end in encoding.offsets), dtype=np.int64, count=len(ids))
        owner = np.minimum(np.searchsorted(word_ends, piece_ends, side="left"), n - 1)
        order = np.argsort(owner, kind="stable")
        ids, owner = ids[order], owner[order]
        first = np.searchsorted(owner, np.arange(n))  # each word's first piece among ``ids``
        rank = np.arange(len(ids)) - first[owner]
        keep = rank < max_pieces_per_word
        count = np.maximum(np.minimum(np.bincount(owner, minlength=n), max_pieces_per_word), 1)  # an empty word: one [UNK]
        starts = np.concatenate([[0], np.cumsum(count)[:-1]]).astype(np.int64)
        pieces = np.full(int(count.sum()), unk_id, dtype=np.int32)
        pieces[starts[owner[keep]] + rank[keep]] = ids[keep]
        result.append(TokenizedSentence(pieces, starts))
    return result


# ---------------------------------------------------------------- windows


@dataclasses.dataclass(frozen=True)
class Window:
    """Words ``[start, end)`` of a sentence go into one model input; it owns ``[own_start, own_end)``."""

    sentence: int
    start: int
    end: int
    own_start: int
    own_end: int


def plan_windows(
    sentence: TokenizedSentence, max_pieces: int, overlap: int, index: int = 0
) -> list[Window]:
    """Overlapping windows of at most ``max_pieces`` pieces covering every word."""
    n = sentence.num_words
    if n == 0:
        return []
    starts = sentence.word_starts
    ends = np.append(starts[1:], len(sentence.pieces))

    def furthest_end(first: int) -> int:
        # Words fit while their pieces stay within the budget; a word always fits alone.
        return max(first + 1, bisect.bisect_right(ends, starts[first] + max_pieces, lo=first))

    spans = []
    first = 0
    while True:
        last = furthest_end(first)
        spans.append((first, last))
        if last >= n:
            break
        following = bisect.bisect_left(starts, ends[last - 1] - overlap, lo=first + 1)
        following = min(following, last)
        while following < last and furthest_end(following) <= last:
            following += 1  # make progress past ``last`` even next to a very long word
        first = following
    windows = []
    own_start = 0
    for i, (first, last) in enumerate(spans):
        if i + 1 < len(spans):
            next_first = spans[i + 1][0]
            own_end = (next_first + last + 1) // 2  # split the overlap in the middle
        else:
            own_end = n
        windows.append(Window(index, first, last, own_start, own_end))
        own_start = own_end
    return windows


def document_units(documents: Sequence[int]) -> list[tuple[int, int]]:
    """Runs ``[start, end)`` of consecutive sentences of one document (numbered from 1, as CoNLL
    reading counts ``-DOCSTART-``; any other value names a document too); a sentence outside
    any document (:func:`bner.data.corpus.outside_documents`) is a unit alone."""
    units: list[tuple[int, int]] = []
    for i, document in enumerate(documents):
        if units and not corpus.outside_documents(document) and documents[units[-1][0]] == document:
            units[-1] = (units[-1][0], i + 1)
        else:
            units.append((i, i + 1))
    return units


def pack_sentences(
    pieces: Sequence[int], documents: Sequence[int], room: int, rng: np.random.Generator | None = None
) -> list[tuple[int, int]]:
    """Consecutive sentences of one document packed into training windows: ``[start, end)`` runs of
    sentences whose pieces sum to at most ``room``, in order, covering every sentence once.

    No run crosses a document (:func:`document_units`); a sentence longer than ``room`` is a run
    alone (the encoder splits it into overlapping windows). Each document takes the fewest runs
    that hold it. Without ``rng`` they are packed greedily from its start. With ``rng`` (a new
    draw each epoch) each boundary is drawn at random among those that still leave the fewest
    runs: between where packing greedily from the end would put it and how far the run it
    closes can reach. So boundaries move from epoch to epoch, and every epoch has as many windows.
    """

    def furthest(i: int, end: int) -> int:  # the end of the longest run from sentence i
        j, total = i + 1, pieces[i]
        while j < end and total + pieces[j] <= room:
            total += pieces[j]
            j += 1
        return j

    def earliest(j: int, start: int) -> int:  # the start of the longest run ending at sentence j
        i, total = j - 1, pieces[j - 1]
        while i > start and total + pieces[i - 1] <= room:
            i -= 1
            total += pieces[i]
        return i

    packed = []
    for start, end in document_units(documents):
        cuts = [start]  # where each run starts
        while (last := furthest(cuts[-1], end)) < end:
            cuts.append(last)
        if rng is not None and len(cuts) > 1:
            latest = [end]  # each run's start, packing greedily from the document's end
            while len(latest) <= len(cuts) - 1:
                latest.append(earliest(latest[-1], start))
            latest = latest[::-1]  # latest[i]: the earliest start of run i that leaves the rest packable
            for i in range(1, len(cuts)):
                low, high = max(latest[i - 1], cuts[i - 1] + 1), furthest(cuts[i - 1], end)
                cuts[i] = int(rng.integers(low, high + 1))
        packed += list(zip(cuts, [*cuts[1:], end]))
    return packed


# ---------------------------------------------------------------- model inputs


@dataclasses.dataclass(frozen=True)
class Example:
    """One model input: a window of a sentence with [CLS]/[SEP], its labels and decoding map."""

    window: Window
    input_ids: np.ndarray  # int32 [length]
    labels: np.ndarray  # int32 [length], IGNORE where no label is learned
    owned_positions: np.ndarray  # int64: position of the first piece of each owned word

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclasses.dataclass(frozen=True)
class Preprocessor:
    """Turns word sequences into model inputs exactly the same way for training and serving.

    (KerasHub's name for this role: the step between text and the network.)
    """

    tokenizer: tokenizers.Tokenizer
    max_seq_length: int
    overlap: int | None = None
    special_tokens: dict[str, str] | None = None  # the model's cls/sep/pad/unk; None: BERT's

    @property
    def max_pieces(self) -> int:
        return self.max_seq_length - 2  # room for [CLS] and [SEP]

    def special_id(self, role: str) -> int:
        """The id of the model's ``cls``, ``sep``, ``pad`` or ``unk`` piece."""
        return self.tokenizer.token_to_id((self.special_tokens or SPECIAL)[role])

    @property
    def pad_id(self) -> int:
        return self.special_id("pad")

    def encode(
        self,
        sentences: Sequence[Sequence[str]],
        label_ids: Sequence[Sequence[int]] | None = None,
        contexts: Sequence[tuple[Sequence[str], Sequence[str]]] | None = None,
    ) -> list[Example]:
        """Model inputs of sentences: ``[CLS] words [SEP]`` per window.

        With ``contexts`` (the words before and after each sentence in its document), each
        input is ``[CLS] left [SEP] words [SEP] right [SEP]``: the context fills what room the
        window leaves, closest words first, shared between the sides; it is never labelled
        and the sentence is never cut for it.
        """
        if self.max_seq_length < 3 + (2 if contexts is not None else 0):
            raise ValueError(f"max_seq_length must be at least {3 + (2 if contexts is not None else 0)}, got {self.max_seq_length}")
        cls, sep, unk = self.special_id("cls"), self.special_id("sep"), self.special_id("unk")
        room = self.max_pieces - (2 if contexts is not None else 0)  # two more [SEP] around the sentence
        overlap = room // 4 if self.overlap is None else self.overlap
        examples = []
        tokenized = tokenize(self.tokenizer, sentences, room, unk)
        if contexts is not None:
            lefts = tokenize(self.tokenizer, [c[0] for c in contexts], room, unk)
            rights = tokenize(self.tokenizer, [c[1] for c in contexts], room, unk)
        for index, sentence in enumerate(tokenized):
            # Converted once a sentence, not once a window: a sentence of a million words has thousands.
            sentence_labels = None if label_ids is None else np.asarray(label_ids[index], dtype=np.int32)
            for window in plan_windows(sentence, room, overlap, index):
                first_piece = int(sentence.word_starts[window.start])
                last_piece = sentence.word_end(window.end - 1)
                centre = sentence.pieces[first_piece:last_piece]
                if contexts is None:
                    parts, offset = [[cls], centre, [sep]], 1
                else:
                    left, right = fit_context(lefts[index], rights[index], room - len(centre))
                    parts, offset = [[cls], left, [sep], centre, [sep], right, [sep]], 2 + len(left)
                ids = np.concatenate(parts).astype(np.int32)
                owned = np.arange(window.own_start, window.own_end)
                positions = sentence.word_starts[owned] - first_piece + offset
                labels = np.full(len(ids), IGNORE, dtype=np.int32)
                if sentence_labels is not None:
                    labels[positions] = sentence_labels[owned]
                examples.append(Example(window, ids, labels, positions))
        return examples


def fit_context(left: TokenizedSentence, right: TokenizedSentence, room: int) -> tuple[np.ndarray, np.ndarray]:
    """The pieces of whole context words nearest the sentence that fit in ``room``, shared between
    the sides: each gets half, and what one side does not need goes to the other."""

    def take(sentence: TokenizedSentence, budget: int, from_end: bool) -> np.ndarray:
        if budget <= 0 or sentence.num_words == 0:
            return sentence.pieces[:0]
        if from_end:
            # The last words: start at the first word boundary that leaves at most ``budget`` pieces.
            cut = int(np.searchsorted(sentence.word_starts, len(sentence.pieces) - budget))
            return sentence.pieces[sentence.word_starts[cut]:] if cut < sentence.num_words else sentence.pieces[:0]
        ends = np.append(sentence.word_starts[1:], len(sentence.pieces))
        words = int(np.searchsorted(ends, budget, side="right"))
        return sentence.pieces[: ends[words - 1]] if words else sentence.pieces[:0]

    room = max(room, 0)
    half = room // 2
    left_pieces = take(left, max(half, room - min(len(right.pieces), room - half)), True)
    return left_pieces, take(right, room - len(left_pieces), False)


def word_values(examples: Sequence[Example], piece_values: Sequence[np.ndarray], num_sentences: int) -> list[np.ndarray]:
    """Per sentence, each word's value (a score, or a row of label probabilities), read at its
    first piece in its owning window."""
    words_per_sentence = [0] * num_sentences
    for example in examples:
        w = example.window
        words_per_sentence[w.sentence] = max(words_per_sentence[w.sentence], w.end)
    trailing = piece_values[0].shape[1:] if len(piece_values) else ()
    out = [np.zeros((n, *trailing), dtype=np.float32) for n in words_per_sentence]
    for example, values in zip(examples, piece_values):
        w = example.window
        out[w.sentence][w.own_start : w.own_end] = values[example.owned_positions]
    return out
