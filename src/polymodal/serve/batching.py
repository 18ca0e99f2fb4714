"""Dynamic batching: concurrent requests gathered into one model call.

A request puts its rows on an asyncio queue and awaits its share of the result. One worker
task takes the first waiting request, then gathers more for up to ``max_wait_ms`` or until
``max_batch`` rows are waiting, and runs one call over all their rows on the model's worker
thread. Fewer, larger model passes: under load, throughput grows with the batch while a lone
request waits at most ``max_wait_ms`` more.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass
class _Job(Generic[Item, Result]):
    items: list[Item]
    done: asyncio.Future[list[Result]] = field(repr=False)


class MicroBatcher(Generic[Item, Result]):
    """Runs ``run_batch(items) -> results`` (one result per item, same order) over the items of
    every request that arrived within ``max_wait_ms`` of the first, up to ``max_batch`` items.

    A request larger than ``max_batch`` runs alone, whole. An error in a call fails every
    request of that call. The worker starts on the first :meth:`submit` (in the running loop).
    """

    def __init__(
        self,
        run_batch: Callable[[list[Item]], list[Result]],
        executor: Executor,
        *,
        max_batch: int = 32,
        max_wait_ms: float = 5.0,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.run_batch = run_batch
        self.executor = executor
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self._queue: asyncio.Queue[_Job[Item, Result]] | None = None
        self._worker: asyncio.Task[None] | None = None

    async def submit(self, items: list[Item]) -> list[Result]:
        """The results of ``items``, computed in a batch with other waiting requests."""
        if self._worker is None or self._worker.done():
            self._queue = asyncio.Queue()
            self._worker = asyncio.create_task(self._work())
        assert self._queue is not None
        job: _Job[Item, Result] = _Job(items, asyncio.get_running_loop().create_future())
        await self._queue.put(job)
        return await job.done

    @property
    def waiting(self) -> int:
        """Requests queued and not yet taken into a batch."""
        return 0 if self._queue is None else self._queue.qsize()

    async def stop(self) -> None:
        """Cancel the worker (requests still queued are cancelled with it)."""
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None

    async def _work(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self._queue.get()]
            size = len(jobs[0].items)
            deadline = loop.time() + self.max_wait
            while size < self.max_batch:
                try:
                    job = await asyncio.wait_for(self._queue.get(), deadline - loop.time())
                except asyncio.TimeoutError:  # TimeoutError itself from Python 3.11
                    break
                if size + len(job.items) > self.max_batch:
                    await self._run(jobs)  # the batch is full: this job starts the next one
                    jobs, size = [], 0
                    deadline = loop.time() + self.max_wait
                jobs.append(job)
                size += len(job.items)
            await self._run(jobs)

    async def _run(self, jobs: list[_Job[Item, Result]]) -> None:
        """One call over the jobs' items; each job gets its slice (or the error)."""
        items = [item for job in jobs for item in job.items]
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(self.executor, self.run_batch, items)
        except Exception as err:  # every request of the batch learns why
            for job in jobs:
                if not job.done.done():
                    job.done.set_exception(err)
            return
        start = 0
        for job in jobs:
            if not job.done.done():  # a client that went away cancelled its future
                job.done.set_result(results[start : start + len(job.items)])
            start += len(job.items)
