"""Dynamic micro-batching: concurrent requests share one model call.

Requests put their texts on a queue; one worker thread takes what has arrived (up to
``max_batch_size`` texts, waiting at most ``max_wait_ms`` for more after the first),
runs them through the model together and hands each request its own results. A request
whose client has gone (its future cancelled) is dropped before the model call. When a
shared call fails, each request is run again alone, so only the one that caused the
failure gets the error.
"""

from __future__ import annotations

import asyncio
import dataclasses
import queue
import threading
import time
from collections.abc import Callable, Sequence


@dataclasses.dataclass
class _Job:
    texts: Sequence[str]
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop


class Overloaded(RuntimeError):
    """Too many texts wait for the model: the client should retry later (503)."""


class MicroBatcher:
    def __init__(
        self,
        process: Callable[[list[str]], list],
        max_batch_size: int = 16,
        max_wait_ms: float = 5.0,
        on_batch: Callable[[int, float], None] | None = None,
        max_queued_texts: int = 4096,
    ):
        self.process = process
        self.max_queued_texts = max_queued_texts
        self._queued = 0  # texts submitted and not yet answered
        self._lock = threading.Lock()
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000.0
        self.on_batch = on_batch
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._worker = threading.Thread(target=self._run, name="bner-batcher", daemon=True)
        self._worker.start()

    async def submit(self, texts: Sequence[str]) -> list:
        with self._lock:
            if self._queued + len(texts) > self.max_queued_texts:
                raise Overloaded(f"{self._queued} texts are waiting for the model; try again shortly")
            self._queued += len(texts)
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put(_Job(list(texts), future, loop))
        try:
            return await future
        finally:
            with self._lock:
                self._queued -= len(texts)

    def close(self) -> None:
        self._queue.put(None)
        self._worker.join(timeout=5)

    def _collect(self, first: _Job) -> list[_Job]:
        jobs, size = [first], len(first.texts)
        deadline = time.monotonic() + self.max_wait
        while size < self.max_batch_size:
            remaining = deadline - time.monotonic()
            try:
                job = self._queue.get(timeout=max(remaining, 0)) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                self._queue.put(None)  # let the loop see the stop signal after this batch
                break
            jobs.append(job)
            size += len(job.texts)
        return jobs

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs = [job for job in self._collect(first) if not job.future.done()]
            if not jobs:
                continue
            try:
                self._run_together(jobs)
            except Exception as e:  # noqa: BLE001 — retried alone, handed to the culprit
                if len(jobs) == 1:
                    jobs[0].loop.call_soon_threadsafe(_set_exception, jobs[0].future, e)
                    continue
                for job in jobs:
                    try:
                        self._run_together([job])
                    except Exception as alone:  # noqa: BLE001
                        job.loop.call_soon_threadsafe(_set_exception, job.future, alone)

    def _run_together(self, jobs: list[_Job]) -> None:
        texts = [t for job in jobs for t in job.texts]
        started = time.perf_counter()
        results = self.process(texts)
        if self.on_batch:
            self.on_batch(len(texts), time.perf_counter() - started)
        offset = 0
        for job in jobs:
            job.loop.call_soon_threadsafe(_set_result, job.future, results[offset : offset + len(job.texts)])
            offset += len(job.texts)


def _set_result(future: asyncio.Future, value) -> None:
    if not future.done():
        future.set_result(value)


def _set_exception(future: asyncio.Future, error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
