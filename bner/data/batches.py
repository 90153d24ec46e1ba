"""Examples → padded batches: which examples share a batch, in what order, padded to what length.

Training plans every epoch's batches once (:class:`BatchPlan`); evaluation and serving plan
theirs per call (:func:`plan_batches`, :func:`cheapest_cuts`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence

import numpy as np

from bner.data.features import IGNORE, Example


def bucket_lengths(max_seq_length: int) -> list[int]:
    """A bounded set of padded lengths: every 8 up to 64, every 16 up to 128, then wider steps.

    Finer than powers of two, because padding is paid for in compute and short sentences
    would otherwise be padded to nearly twice their length. Still few enough that a
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
    without XLA), where the buckets' only effect is padding. With a seed (training), the
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


# What one more model call costs, in word pieces' worth of compute: a call's fixed cost over a
# padded piece's, as profiled on a CPU. Serving speed is not sensitive to it (docs/history.md).
CALL_COST_PIECES = 48


def cheapest_cuts(sorted_lengths: np.ndarray, batch_size: int, call_cost: int = CALL_COST_PIECES) -> list[int]:
    """Where to cut examples sorted by length into batches of at most ``batch_size``, each padded
    to its longest, so that the padded pieces plus ``call_cost`` per batch are fewest.

    A micro-batch of requests mixes lengths (a few random tweets, padded to the longest, are
    mostly padding): splitting it where the lengths jump saves more than the extra call costs, while
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
    batch can straddle two buckets and is padded to the upper one.
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

    ``epoch_members`` (training on documents, whose windows move from epoch to epoch): the
    examples of each epoch, as indices into ``lengths``, epoch ``e`` taking entry ``e`` (the last
    for later epochs). Every entry holds as many examples, so every epoch has as many steps.
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
        epoch_members: Sequence[np.ndarray] | None = None,
    ):
        self.lengths = np.asarray(lengths)
        self.epoch_members = [np.asarray(m) for m in epoch_members] if epoch_members is not None else None
        if self.epoch_members is not None and len({len(m) for m in self.epoch_members}) > 1:
            raise ValueError("every epoch must hold as many examples")
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
            members = None if self.epoch_members is None else self.epoch_members[min(epoch, len(self.epoch_members) - 1)]
            lengths = self.lengths if members is None else self.lengths[members]
            plan = plan_batches(lengths, self.batch_size, self.buckets, self.seed + epoch, self.drop_remainder, self.group)
            self._epochs = {epoch: plan if members is None else [(members[indices], length) for indices, length in plan]}
        return self._epochs[epoch]
