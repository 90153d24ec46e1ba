"""Dynamic micro-batching: concurrent requests share model calls, and a large one cannot starve the rest.

Requests put their texts on a queue; one worker thread takes what has arrived (up to
``max_batch_size`` texts, waiting at most ``max_wait_ms`` for more after the first) and
tags them together. Tagging runs in steps, one model call each
(:meth:`bner.inference.tagger.Tagger.tag_texts_in_steps`), and the worker takes turns between the
groups in progress. Each turn, new small work gets its call at once, then the oldest group in
progress gets one call and the group with the least work (in word pieces) another. So a
request's wait is bounded by its own work, not by how much heavy work is in flight: a request
of k model calls is done within about 2k calls plus the one under way, however many
maximum-size requests work through their hundreds of windows beside it, and the oldest of
those still advances every turn. Admission is by work too: the queue holds at most
``max_queued_pieces`` word pieces (and ``max_queued_texts`` texts), beyond which requests get
503, so a backlog drains in bounded time at shutdown. A request whose client has gone (its
future cancelled) is dropped before its next model call. When a shared group fails, each of
its requests is run again alone, so only the one that caused the failure gets the error.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import queue
import threading
import time
from collections.abc import Callable, Generator, Sequence

from bner.inference.backends import BackendUnavailable


@dataclasses.dataclass
class _Job:
    texts: Sequence[str]
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    cost: int = 0  # word pieces: the model work it needs


@dataclasses.dataclass
class _Group:
    """Jobs tagged together, and the generator doing it (one model call per step)."""

    jobs: list[_Job]
    steps: Generator
    started: float

    @property
    def cost(self) -> int:
        return sum(job.cost for job in self.jobs)

    @property
    def abandoned(self) -> bool:
        return all(job.future.done() for job in self.jobs)


class Overloaded(RuntimeError):
    """Too much work waits for the model: the client should retry later (503)."""


class MicroBatcher:
    def __init__(
        self,
        process_in_steps: Callable[[list[str]], Generator],
        max_batch_size: int = 16,
        max_wait_ms: float = 5.0,
        on_batch: Callable[[int, float], None] | None = None,
        max_queued_texts: int = 4096,
        call_pieces: int = 2048,
        max_queued_pieces: int | None = None,
    ):
        self.process_in_steps = process_in_steps
        # A request that needs more than about one model call's pieces is tagged in a group of
        # its own, so the small requests that arrived with it do not wait for all its calls.
        self.call_pieces = call_pieces
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000.0
        self.on_batch = on_batch
        self.max_queued_texts = max_queued_texts
        self.max_queued_pieces = max_queued_pieces
        self._queued = 0  # texts submitted and not yet answered
        self._queued_pieces = 0  # their word pieces
        self._busy = False  # whether the last take found company (then the next one waits for it)
        self._lock = threading.Lock()
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._worker = threading.Thread(target=self._run, name="bner-batcher", daemon=True)
        self._worker.start()

    async def submit(self, texts: Sequence[str], cost: int = 0) -> list:
        with self._lock:
            if self._queued + len(texts) > self.max_queued_texts:
                raise Overloaded(f"{self._queued} texts are waiting for the model; try again shortly")
            # Past the limit only when others wait: a request within the per-request budget is always taken alone.
            if self.max_queued_pieces is not None and self._queued_pieces and self._queued_pieces + cost > self.max_queued_pieces:
                raise Overloaded(f"{self._queued_pieces} word pieces are waiting for the model; try again shortly")
            self._queued += len(texts)
            self._queued_pieces += cost
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put(_Job(list(texts), future, loop, cost))
        try:
            return await future
        finally:
            with self._lock:
                self._queued -= len(texts)
                self._queued_pieces -= cost

    def close(self) -> None:
        self._queue.put(None)
        self._worker.join(timeout=5)

    # ------------------------------------------------------------ the worker thread

    def _run(self) -> None:
        active: collections.deque[_Group] = collections.deque()
        while True:
            jobs = self._take(wait=not active)
            if jobs is None:
                return
            small = [job for job in jobs or () if job.cost <= self.call_pieces]
            if small:
                # New small work gets its first call at once (a one-sentence request is then done),
                # and the oldest group still gets a call every turn, so steady arrivals starve nobody.
                self._step(self._start(small), active)
            active.extend(self._start([job]) for job in jobs or () if job.cost > self.call_pieces)
            if active:
                # The oldest group advances every turn; the lightest one too, so work that needs a
                # few calls is not held behind every heavy request in flight.
                oldest = active.popleft()
                lightest = min(active, key=lambda g: g.cost, default=None)
                if lightest is not None and lightest.cost < oldest.cost:
                    active.remove(lightest)
                else:
                    lightest = None
                for group in (oldest, lightest):
                    if group is not None and not group.abandoned:
                        self._step(group, active)

    def _take(self, wait: bool) -> list[_Job] | None:
        """Jobs that have arrived (None: stop). When idle, wait for one, then ``max_wait`` for company.

        Company is waited for only when the previous take found more than one request: a
        lone client's request then goes to the model at once (the wait would be pure
        latency), while under concurrent load each call still gathers a fuller batch.
        """
        jobs: list[_Job] = []
        size = 0
        deadline = None
        while size < self.max_batch_size:
            try:
                if wait and not jobs:
                    job = self._queue.get()
                    deadline = time.monotonic() + (self.max_wait if self._busy else 0.0)
                elif deadline is not None and deadline > time.monotonic():
                    job = self._queue.get(timeout=deadline - time.monotonic())
                else:
                    job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                if jobs:
                    self._queue.put(None)  # stop after these
                    break
                return None
            if not job.future.done():
                jobs.append(job)
                size += len(job.texts)
        if jobs:
            self._busy = len(jobs) > 1
        return jobs

    def _start(self, jobs: list[_Job]) -> _Group:
        return _Group(jobs, self.process_in_steps([t for job in jobs for t in job.texts]), time.perf_counter())

    def _step(self, group: _Group, active: collections.deque) -> None:
        """One model call of ``group``; back in line if it is not done."""
        try:
            next(group.steps)
        except StopIteration as done:
            self._deliver(group, done.value)
            return
        except Exception as e:  # noqa: BLE001 — retried alone, handed to the culprit
            if len(group.jobs) == 1 or isinstance(e, BackendUnavailable):
                # An unreachable backend fails everyone alike: retrying each alone would only multiply the wait.
                for job in group.jobs:
                    job.loop.call_soon_threadsafe(_set_exception, job.future, e)
            else:
                active.extend(self._start([job]) for job in group.jobs)
            return
        active.append(group)

    def _deliver(self, group: _Group, results: list) -> None:
        if self.on_batch:
            self.on_batch(sum(len(job.texts) for job in group.jobs), time.perf_counter() - group.started)
        offset = 0
        for job in group.jobs:
            job.loop.call_soon_threadsafe(_set_result, job.future, results[offset : offset + len(job.texts)])
            offset += len(job.texts)


def _set_result(future: asyncio.Future, value) -> None:
    if not future.done():
        future.set_result(value)


def _set_exception(future: asyncio.Future, error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
