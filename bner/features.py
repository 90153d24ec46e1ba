"""Words → word pieces → model windows → batches, and model outputs → word labels.

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
import logging
import math
from collections.abc import Iterator, Sequence

import numpy as np
import tokenizers
from tokenizers import normalizers, pre_tokenizers

from bner import io

log = logging.getLogger(__name__)

IGNORE = -1  # label id of pieces that carry no label (padding, special, non-first pieces)
SPECIAL = {"cls": "[CLS]", "sep": "[SEP]", "pad": "[PAD]", "unk": "[UNK]"}


# ---------------------------------------------------------------- tokenizer


def build_tokenizer(
    vocab_file: str | None = None,
    tokenizer_file: str | None = None,
    lowercase: bool | None = None,
    strip_accents: bool | None = None,
) -> tokenizers.Tokenizer:
    """A BERT word-piece tokenizer from ``tokenizer.json`` or from ``vocab.txt``.

    ``lowercase=None`` keeps what ``tokenizer.json`` says. Uncased BERT strips accents as
    well as lowercasing; ``strip_accents=None`` follows ``lowercase`` as BERT's recipe does.
    """
    if tokenizer_file:
        tokenizer = tokenizers.Tokenizer.from_str(io.read_text(tokenizer_file))
        if lowercase is not None:
            tokenizer.normalizer = bert_normalizer(lowercase, strip_accents)
    elif vocab_file:
        model = tokenizers.models.WordPiece(read_vocabulary(vocab_file), unk_token=SPECIAL["unk"])
        tokenizer = tokenizers.Tokenizer(model)
        tokenizer.normalizer = bert_normalizer(True if lowercase is None else lowercase, strip_accents)
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    else:
        raise ValueError("a tokenizer needs a vocab.txt or a tokenizer.json")
    tokenizer.post_processor = None  # [CLS]/[SEP] are added per window, not per sentence
    tokenizer.no_truncation()
    tokenizer.no_padding()
    for name in SPECIAL.values():
        if tokenizer.token_to_id(name) is None:
            raise ValueError(f"the vocabulary has no {name} token")
    return tokenizer


def read_tokenizer(path: str) -> tokenizers.Tokenizer:
    """A model folder's ``tokenizer.json`` (as bner saved it), with a one-line error for a bad file."""
    try:
        tokenizer = tokenizers.Tokenizer.from_str(io.read_text(path))
    except FileNotFoundError:
        raise ValueError(f"{path}: file not found") from None
    except Exception as e:  # noqa: BLE001 — the Rust parser raises plain Exception
        raise ValueError(f"{path}: not a tokenizer file ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    for name in SPECIAL.values():
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
    tokenizer: tokenizers.Tokenizer, sentences: Sequence[Sequence[str]], max_pieces_per_word: int
) -> list[TokenizedSentence]:
    """Word pieces of each sentence's words.

    A word the tokenizer reduces to nothing (a control or zero-width character) becomes
    ``[UNK]`` so it keeps its place; a word with more pieces than fit in a window keeps its
    first ``max_pieces_per_word`` (its label sits on the first piece).
    """
    unk = tokenizer.token_to_id(SPECIAL["unk"])
    result = []
    encodings = tokenizer.encode_batch(
        [list(words) for words in sentences], is_pretokenized=True, add_special_tokens=False
    )
    for words, encoding in zip(sentences, encodings):
        per_word: list[list[int]] = [[] for _ in words]
        for piece, word in zip(encoding.ids, encoding.word_ids):
            if word is not None:
                per_word[word].append(piece)
        pieces: list[int] = []
        starts = np.empty(len(words), dtype=np.int64)
        for i, word_pieces in enumerate(per_word):
            starts[i] = len(pieces)
            pieces.extend(word_pieces[:max_pieces_per_word] or [unk])
        result.append(TokenizedSentence(np.asarray(pieces, dtype=np.int32), starts))
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

    @property
    def max_pieces(self) -> int:
        return self.max_seq_length - 2  # room for [CLS] and [SEP]

    @property
    def pad_id(self) -> int:
        return self.tokenizer.token_to_id(SPECIAL["pad"])

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
        cls = self.tokenizer.token_to_id(SPECIAL["cls"])
        sep = self.tokenizer.token_to_id(SPECIAL["sep"])
        room = self.max_pieces - (2 if contexts is not None else 0)  # two more [SEP] around the sentence
        overlap = room // 4 if self.overlap is None else self.overlap
        examples = []
        tokenized = tokenize(self.tokenizer, sentences, room)
        if contexts is not None:
            lefts = tokenize(self.tokenizer, [c[0] for c in contexts], room)
            rights = tokenize(self.tokenizer, [c[1] for c in contexts], room)
        for index, sentence in enumerate(tokenized):
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
                if label_ids is not None:
                    labels[positions] = np.asarray(label_ids[index], dtype=np.int32)[owned]
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


# ---------------------------------------------------------------- batches


def bucket_lengths(max_seq_length: int) -> list[int]:
    """A bounded set of padded lengths: every 8 up to 64, every 16 up to 128, then wider steps.

    Finer than powers of two, because padding is paid for in compute: on WNUT-17 (mean 31
    pieces) powers of two waste 31% of each batch, these 10%. Still few enough that a
    static-shape device (TPU) compiles a handful of graphs.
    """
    lengths = []
    length = 8
    while length < max_seq_length:
        lengths.append(length)
        length += 8 if length < 64 else 16 if length < 128 else 32 if length < 256 else 64
    lengths.append(max_seq_length)
    return lengths


def padding_buckets(max_seq_length: int, static_shapes: bool) -> list[int] | None:
    """How batches are padded: to :func:`bucket_lengths` where every new shape is compiled
    (XLA: JAX, TPUs), else ``None``, to each batch's longest example (TensorFlow runs any
    shape through one traced function)."""
    return bucket_lengths(max_seq_length) if static_shapes else None


@dataclasses.dataclass(frozen=True)
class Batch:
    indices: np.ndarray  # which examples, in order
    inputs: dict[str, np.ndarray]  # input_ids, attention_mask, token_type_ids: int32 [batch, length]
    labels: np.ndarray  # int32 [batch, length]

    @property
    def real_pieces(self) -> int:
        return int(self.inputs["attention_mask"].sum())


def make_batch(examples: Sequence[Example], indices: np.ndarray, length: int, pad_id: int) -> Batch:
    n = len(indices)
    input_ids = np.full((n, length), pad_id, dtype=np.int32)
    mask = np.zeros((n, length), dtype=np.int32)
    labels = np.full((n, length), IGNORE, dtype=np.int32)
    for row, i in enumerate(indices):
        e = examples[i]
        input_ids[row, : len(e)] = e.input_ids
        mask[row, : len(e)] = 1
        labels[row, : len(e)] = e.labels
    inputs = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(mask)}
    return Batch(np.asarray(indices), inputs, labels)


def plan_batches(
    lengths: Sequence[int],
    batch_size: int,
    buckets: Sequence[int] | None,
    shuffle_seed: int | None = None,
    drop_remainder: bool = False,
    group: int = 1,
) -> list[tuple[np.ndarray, int]]:
    """Group example indices into batches of similar length: ``(indices, padded_length)``.

    Each batch is padded to the bucket of its longest example, or with ``buckets=None`` to
    its longest example itself: for runtimes that take any shape at no extra cost (TensorFlow
    without XLA), where the buckets' only effect is padding (WNUT-17: 14% of the pieces
    against 5%). With a seed (training), the
    order is that of Hugging Face's ``group_by_length`` sampler, which its token-classification
    recipe uses: see :func:`length_grouped_order`. It is deterministic for a seed. Without one
    (prediction), examples fill full batches within their length bucket, what is left over in
    every bucket is pooled, sorted by length and batched together, and order is kept;
    without buckets, examples are sorted by length and cut into batches where that saves
    the most padding for the calls it adds (:func:`cheapest_cuts`).

    With ``group > 1`` (several steps per device execution, as on TPUs), batches of the
    same shape are kept together in runs of up to ``group``, and the runs are shuffled.
    """
    lengths = np.asarray(lengths)
    exact = buckets is None
    if exact:  # every length is its own bucket
        buckets = np.arange(1, int(lengths.max(initial=0)) + 1)
    buckets = np.asarray(buckets)
    bucket_of = np.searchsorted(buckets, lengths, side="left")
    if len(lengths) and bucket_of.max() >= len(buckets):
        raise ValueError(f"an example of {lengths.max()} pieces is longer than the largest bucket {buckets[-1]}")
    rng = np.random.default_rng(shuffle_seed) if shuffle_seed is not None else None
    if rng is not None:
        order = length_grouped_order(lengths, batch_size, rng)
    elif exact:
        order = np.argsort(lengths, kind="stable")
    else:
        full, leftovers = [], []
        for b in range(len(buckets)):
            members = np.flatnonzero(bucket_of == b)
            cut = len(members) - len(members) % batch_size
            full.append(members[:cut])
            leftovers.append(members[cut:])
        pooled = np.concatenate(leftovers)
        order = np.concatenate([*full, pooled[np.argsort(lengths[pooled], kind="stable")]])
    if exact and rng is None and group == 1 and not drop_remainder:
        cuts = cheapest_cuts(lengths[order], batch_size)
        return [(order[a:b], int(lengths[order[b - 1]])) for a, b in zip(cuts, cuts[1:])]
    plan = []
    for i in range(0, len(order), batch_size):
        chunk = order[i : i + batch_size]
        if drop_remainder and len(chunk) < batch_size:
            continue
        plan.append((chunk, int(buckets[bucket_of[chunk].max()])))
    if group > 1:
        runs = []
        for shape in sorted({(len(indices), length) for indices, length in plan}):
            same = [b for b in plan if (len(b[0]), b[1]) == shape]
            runs.extend(same[i : i + group] for i in range(0, len(same), group))
        order = rng.permutation(len(runs)) if rng is not None else range(len(runs))
        return [batch for i in order for batch in runs[i]]
    return plan


# What one more model call costs, in word pieces' worth of compute: a call on a tiny batch of
# MiniLM's SavedModel takes about 14 ms on a 2-core CPU (TensorFlow's profiler puts most of it in
# the matrix products), a padded piece in a full batch about 0.25 ms. Results are not sensitive
# to it: 24 to 160 gave the same serving speed (docs/benchmarks.md, "Serving throughput").
CALL_COST_PIECES = 48


def cheapest_cuts(sorted_lengths: np.ndarray, batch_size: int, call_cost: int = CALL_COST_PIECES) -> list[int]:
    """Where to cut examples sorted by length into batches of at most ``batch_size``, each padded
    to its longest, so that the padded pieces plus ``call_cost`` per batch are fewest.

    A micro-batch of requests mixes lengths (on WNUT-17, 16 random tweets are 59% padding in
    one call): splitting it where the lengths jump saves more than the extra call costs, while
    same-length examples stay in full batches. Exact, by dynamic programming over the sorted
    lengths (each cut point looks back at most ``batch_size`` examples).
    """
    n = len(sorted_lengths)
    best = np.zeros(n + 1)
    back = np.zeros(n + 1, dtype=np.int64)
    for end in range(1, n + 1):
        first = max(0, end - batch_size)
        starts = np.arange(first, end)
        costs = best[first:end] + (end - starts) * sorted_lengths[end - 1] + call_cost
        k = int(np.argmin(costs))
        best[end], back[end] = costs[k], first + k
    cuts = [n]
    while cuts[-1] > 0:
        cuts.append(int(back[cuts[-1]]))
    return cuts[::-1]


def length_grouped_order(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> np.ndarray:
    """Example indices shuffled, then sorted longest first within megabatches.

    Hugging Face's ``LengthGroupedSampler`` (``group_by_length``): megabatches of 50 batches,
    or of a quarter of the data when it makes fewer than 200 batches (one batch at least);
    the longest example overall moves to the front, so the largest batch comes first. bner follows it rather than shuffling
    whole batches because the batch order is part of the recipe users compare with: same
    head, same batches, the two train alike (``bench/wnut17.py --paired``), so a different
    order is the one draw left that differs between them. It costs some padding: a sorted
    batch can straddle two buckets and is padded to the upper one (WNUT-17: 14% of the
    pieces, against 11% when every batch came from one bucket).
    """
    multiple = max(min(len(lengths) // (batch_size * 4), 50), 1)
    shuffled = rng.permutation(len(lengths))
    size = multiple * batch_size
    megabatches = [shuffled[i : i + size] for i in range(0, len(shuffled), size)]
    megabatches = [m[np.argsort(-lengths[m], kind="stable")] for m in megabatches]
    if megabatches:
        longest = int(np.argmax([lengths[m[0]] for m in megabatches]))
        megabatches[0][0], megabatches[longest][0] = megabatches[longest][0], megabatches[0][0]
    return np.concatenate(megabatches) if megabatches else np.empty(0, dtype=np.int64)


def iterate_batches(
    examples: Sequence[Example], plan: Sequence[tuple[np.ndarray, int]], pad_id: int
) -> Iterator[Batch]:
    """The batches of a plan (from :func:`plan_batches` or :meth:`BatchPlan.epoch`), built as they are needed."""
    for indices, length in plan:
        yield make_batch(examples, indices, length, pad_id)


class BatchPlan:
    """Every training batch of a run, planned once: which examples, padded to which length, epoch by epoch.

    Epoch ``e`` is ordered with seed ``seed + e`` (:func:`plan_batches`), so a resumed run
    sees exactly the batches it would have seen without the interruption. The training
    loop, the progress bar and the run record all read the step counts from here.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        buckets: Sequence[int] | None,
        num_epochs: float,
        seed: int,
        drop_remainder: bool = False,
        group: int = 1,
    ):
        self.lengths = np.asarray(lengths)
        self.batch_size, self.num_epochs = batch_size, num_epochs
        self.buckets = list(buckets) if buckets is not None else None
        self.seed, self.drop_remainder, self.group = seed, drop_remainder, group
        self._epochs: dict[int, list[tuple[np.ndarray, int]]] = {}
        self.steps_per_epoch = len(self.epoch(0))
        if self.steps_per_epoch == 0:
            raise ValueError(f"no full training batch: {len(self.lengths)} examples for a batch of {batch_size}")
        self.total_steps = max(1, math.ceil(self.steps_per_epoch * num_epochs))

    def epoch(self, epoch: int) -> list[tuple[np.ndarray, int]]:
        if epoch not in self._epochs:
            self._epochs = {
                epoch: plan_batches(
                    self.lengths, self.batch_size, self.buckets, self.seed + epoch, self.drop_remainder, self.group
                )
            }
        return self._epochs[epoch]
