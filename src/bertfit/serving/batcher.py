"""Texts of concurrent requests gathered into one forward pass, each caller answered with its own rows.

``bertfit serve`` runs one :class:`Batcher` on its event loop. It knows nothing of HTTP: callers
``await submit(texts)`` and get the model's records back, in their own order. It needs asyncio and
the classifier only (no FastAPI), and it does not check requests (``serve`` does).
"""

import asyncio
import contextlib
import logging
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class Job:
    """One request's texts waiting for a forward pass, and where its answer goes."""

    texts: list[str]
    pairs: list[str] | None
    threshold: float | None
    future: asyncio.Future


class Batcher:
    """Texts of concurrent requests gathered (at most ``max_wait`` s or ``max_batch`` texts), scored in one pass.

    Runs as one task on the server's event loop; forward passes run in worker threads so the loop
    keeps accepting requests meanwhile. Up to ``parallel`` batches run at once (the model releases
    the GIL while it computes): on a CPU, two one-thread batches side by side keep two cores busier
    than one batch on two threads, whose small matrices split poorly, and the next batch is
    gathered while the last one runs. Each job gets its own rows back, in its own order. A job whose
    caller was cancelled (it disconnected) is skipped, wherever it is in the queue; a failure
    reaches only the callers it belongs to, and the task lives on.
    """

    def __init__(self, classifier: Any, max_batch: int = 64, max_wait: float = 0.005, parallel: int = 1):
        self.classifier = classifier
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.parallel = parallel
        self.stats = {"batches": 0, "texts": 0, "requests": 0, "largest_batch": 0}
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self._getter: asyncio.Future | None = None  # a pending queue.get(), kept (not cancelled) across waits
        self._carry: Job | None = None  # a job that would have overfilled the last batch
        self._slots: asyncio.Semaphore | None = None  # batches that may run at once
        self._running: set[asyncio.Task] = set()
        self._executor = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="bertfit-predict")

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._slots = asyncio.Semaphore(self.parallel)
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        for task in (self._task, self._getter, *self._running):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._executor.shutdown(wait=False)

    async def submit(self, texts: list[str], pairs: list[str] | None = None,
                     threshold: float | None = None) -> list[dict[str, Any]]:
        """The records of these texts, once the batch they joined has run."""
        if self._queue is None or self._task.done():
            raise RuntimeError("the batcher is not running; start() it inside the server's event loop")
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(Job(texts, pairs, threshold, future))
        return await future  # cancelling the caller cancels the future: the batcher then skips this job

    def queued(self) -> int:
        """Requests waiting for a forward pass (a cancelled one counts until the batcher drops it)."""
        return (self._queue.qsize() if self._queue is not None else 0) + (self._carry is not None)

    async def _next(self, timeout: float | None) -> Job | None:
        if self._getter is None:
            self._getter = asyncio.ensure_future(self._queue.get())
        done, _ = await asyncio.wait({self._getter}, timeout=timeout)
        if not done:
            return None
        job, self._getter = self._getter.result(), None
        return job

    def _ready(self) -> Job | None:
        """A job already queued, without waiting; None when there is none."""
        if self._getter is not None:
            if not self._getter.done():
                return None
            job, self._getter = self._getter.result(), None
            return job
        try:
            return self._queue.get_nowait()
        except asyncio.QueueEmpty:
            return None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._slots.acquire()  # a free slot first: texts that arrive meanwhile join the next batch
            first, self._carry = self._carry or await self._next(None), None
            if first.future.done():  # its caller went away while it waited
                self._slots.release()
                continue
            jobs, count = [first], len(first.texts)
            others_free = self.parallel - 1 - len(self._running)  # slots besides this one, free now
            # What has queued is shared among the free slots, so no slot idles while one batch takes it all.
            share = math.ceil((1 + self._queue.qsize()) / (1 + others_free))
            while count is not None and len(jobs) < share and count < self.max_batch:
                if (job := self._ready()) is None:
                    break
                count = self._join(jobs, count, job)
            if others_free == 0:  # no other batch could start now: wait a while for company
                deadline = loop.time() + self.max_wait
                while count is not None and count < self.max_batch and (left := deadline - loop.time()) > 0:
                    if (job := await self._next(left)) is None:
                        break
                    count = self._join(jobs, count, job)
            task = asyncio.create_task(self._score(jobs, loop))
            self._running.add(task)
            task.add_done_callback(self._finished)

    def _join(self, jobs: list[Job], count: int, job: Job) -> int | None:
        """Add the job to the batch: the batch's new text count, or None when the job would overfill it
        (it then leads the next batch). A job whose caller went away is dropped."""
        if job.future.done():
            return count
        if count + len(job.texts) > self.max_batch:
            self._carry = job
            return None
        jobs.append(job)
        return count + len(job.texts)

    def _finished(self, task: asyncio.Task) -> None:
        self._running.discard(task)
        self._slots.release()

    async def _score(self, jobs: list[Job], loop: asyncio.AbstractEventLoop) -> None:
        jobs = [job for job in jobs if not job.future.done()]  # a caller that went away needs no answer
        if not jobs:
            return
        texts = [text for job in jobs for text in job.texts]
        pairs = [pair for job in jobs for pair in job.pairs] if jobs[0].pairs is not None else None
        try:
            logits = await loop.run_in_executor(self._executor, self.classifier.logits, texts, self.max_batch,
                                                False, pairs)
        except Exception as err:  # noqa: BLE001 - the failure goes to its callers, the server lives on
            if len(jobs) > 1:  # one request's texts may be the cause: score each alone, so only its caller fails
                for job in jobs:
                    await self._score([job], loop)
                return
            log.warning("a request failed in the model: %r", err)
            if not jobs[0].future.done():
                jobs[0].future.set_exception(err)
            return
        self.stats["batches"] += 1
        self.stats["texts"] += len(texts)
        self.stats["requests"] += len(jobs)
        self.stats["largest_batch"] = max(self.stats["largest_batch"], len(texts))
        start = 0
        for job in jobs:
            rows = logits[start:start + len(job.texts)]
            start += len(job.texts)
            if job.future.done():
                continue
            try:
                job.future.set_result(list(self.classifier.records(job.texts, rows, job.pairs, job.threshold)))
            except Exception as err:  # noqa: BLE001 - as above: this caller fails, the others get their rows
                job.future.set_exception(err)
