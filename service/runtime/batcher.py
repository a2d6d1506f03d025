"""Per-graph micro-batcher: many small concurrent requests become one ONNX Runtime call.

Why: an ORT call has a fixed overhead (and on a GPU a launch and copy cost) that dwarfs the
per-row cost of a small graph, so joining concurrent requests along the batch axis multiplies
throughput at the price of at most `max_wait_s` extra latency for the first request.

Design:
- A bounded queue of pending requests; a full queue raises `Overloaded` (HTTP 503 with
  Retry-After) instead of letting latency grow without bound.
- One worker task per graph takes the oldest request, waits up to `max_wait_s` for more rows,
  then joins every queued request with the same trailing shapes and dtypes (requests whose
  non-batch shapes differ cannot be concatenated; they wait for the next call) up to
  `max_rows` rows, and runs ORT on a dedicated single thread so the event loop never blocks.
- The outputs are split back by each request's row count.
- `close()` finishes everything already queued, then stops the worker; later `submit()` calls
  raise `NotReady` (the registry routes those to a direct call instead).
- A *joined* call (`submit(..., joined=True)`: the rows are already a wave of requests that a
  `Coalescer` gathered, so waiting for company would find none) runs on the event loop itself
  when nothing is queued or running on the thread and this graph's recent calls say it will
  take at most `inline_below_s`. Why: measured on recommendations (2-core Intel, 16-user waves
  of a 393-item table), the hop to the thread and back (the worker task's wake-up, the
  executor, the loop's callback from the thread, each waiting its turn behind the requests
  ready on the loop) cost about as much as the 240 us ORT call itself; with the bound at its
  default of 1 ms the route's own cost per request fell from 94 to 83 us in process (at 0.5 ms
  only half the waves ran inline: a wave sent to the thread comes back to a larger next wave).
  The bound keeps a large call (a real catalogue's top-k, a GPU copy) on the thread, so the
  loop is never held for longer than `inline_below_s`. The estimate is the recent calls'
  average time, scaled up by the rows over their average rows when the call is larger (a
  call's fixed part makes that an overestimate, never an underestimate, for larger calls);
  there is none, so the thread, until the graph has run once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from service.errors import ArtifactError, InvalidInput, NotReady, Overloaded
from service.metrics import (
    BATCH_REQUESTS,
    BATCH_SIZE,
    INFERENCE_FAILURES,
    ORT_INFERENCE,
    QUEUE_DEPTH,
    QUEUE_REJECTED,
    QUEUE_WAIT,
)

RunFn = Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]
ShapeKey = tuple[tuple[str, tuple[int, ...], str], ...]


@dataclass
class _Job:
    inputs: dict[str, np.ndarray]
    rows: int
    key: ShapeKey
    future: asyncio.Future[dict[str, np.ndarray]] = field(repr=False)
    queued_at: float = 0.0


def shape_key(inputs: Mapping[str, np.ndarray]) -> ShapeKey:
    """What must agree for two requests to share a call: names, trailing shapes, dtypes."""
    return tuple(
        (name, tuple(array.shape[1:]), array.dtype.str) for name, array in sorted(inputs.items())
    )


class MicroBatcher:
    """Coalesces `submit()` calls for one graph of one model version."""

    def __init__(
        self,
        run: RunFn,
        *,
        model: str,
        graph: str,
        version: str = "",
        max_rows: int = 256,
        max_wait_s: float = 0.001,
        capacity: int = 1024,
        retry_after_s: float = 1.0,
        inline_below_s: float = 0.0,
    ) -> None:
        self._run = run
        self.model = model
        self.graph = graph
        self.max_rows = max(1, max_rows)
        self.max_wait_s = max(0.0, max_wait_s)
        self.capacity = max(1, capacity)
        self.retry_after_s = retry_after_s
        self.inline_below_s = max(0.0, inline_below_s)
        self._call_s: float | None = None  # recent calls' average time and rows (inline bound)
        self._call_rows = 1.0
        self._busy = False  # a call is on the thread
        self.inline_calls = 0  # joined calls run on the loop (for tests and benchmarks)
        self._pending: deque[_Job] = deque()
        self._pending_rows = 0  # rows of the queued jobs, kept so the window check is O(1)
        self._wakeup = asyncio.Event()
        self._closing = False
        # One thread per graph: ORT calls of one session run one after another (its own
        # intra-op threads parallelise inside a call) and the event loop stays free.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"ort-{graph}")
        self._worker: asyncio.Task[None] | None = None
        self._last_requests = 0  # requests joined into the previous call
        self._depth = QUEUE_DEPTH.labels(model=model, graph=graph)
        self._rejected = QUEUE_REJECTED.labels(model=model, graph=graph)
        self._batch_rows = BATCH_SIZE.labels(model=model, graph=graph)
        self._batch_requests = BATCH_REQUESTS.labels(model=model, graph=graph)
        self._ort_time = ORT_INFERENCE.labels(model=model, graph=graph)
        self._queue_wait = QUEUE_WAIT.labels(model=model, version=version, graph=graph)
        self._failures = INFERENCE_FAILURES.labels(model=model, version=version, graph=graph)

    @property
    def depth(self) -> int:
        """Requests waiting (not yet handed to ORT)."""
        return len(self._pending)

    @property
    def closed(self) -> bool:
        return self._closing

    def _ensure_worker(self) -> None:
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(
                self._work(), name=f"batcher-{self.model}-{self.graph}"
            )

    async def submit(
        self, inputs: Mapping[str, np.ndarray], *, joined: bool = False
    ) -> dict[str, np.ndarray]:
        """Queue one request (every array with the same leading row count) and await its rows.

        `joined`: the rows are already a wave of requests; a cheap one runs at once on the
        loop (see the module's notes)."""
        if self._closing:
            raise NotReady(f"{self.model}/{self.graph} batcher is closed")
        arrays = {name: np.asarray(value) for name, value in inputs.items()}
        if not arrays:
            raise InvalidInput("inputs", "no inputs given")
        rows = {name: (a.shape[0] if a.ndim else -1) for name, a in arrays.items()}
        counts = set(rows.values())
        if len(counts) != 1 or -1 in counts:
            raise InvalidInput("inputs", f"inputs disagree on the batch axis: {rows}")
        n = counts.pop()
        if n == 0:
            raise InvalidInput("inputs", "zero rows")
        if len(self._pending) >= self.capacity:
            self._rejected.inc()
            raise Overloaded(
                f"{self.model}/{self.graph} queue is full ({self.capacity} requests)",
                retry_after_s=self.retry_after_s,
            )
        if joined and self._cheap(n):
            return self._run_inline(arrays, n)
        loop = asyncio.get_running_loop()
        job = _Job(arrays, n, shape_key(arrays), loop.create_future(), time.perf_counter())
        self._pending.append(job)
        self._pending_rows += n
        self._depth.set(len(self._pending))
        self._wakeup.set()
        self._ensure_worker()
        return await job.future

    def _cheap(self, rows: int) -> bool:
        """Whether a joined call of `rows` may run on the loop now: nothing waits or runs on
        the thread (so calls of the session stay one after another, in order) and the recent
        calls say it ends within `inline_below_s`."""
        if self._call_s is None or self._pending or self._busy:
            return False
        return self._call_s * max(1.0, rows / self._call_rows) <= self.inline_below_s

    def _run_inline(self, feeds: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
        self.inline_calls += 1
        self._queue_wait.observe(0.0)
        try:
            return self._timed_run(feeds, rows, 1)
        except Exception:
            self._failures.inc()
            raise

    async def close(self) -> None:
        """Finish every queued request, then stop the worker and its thread."""
        self._closing = True
        self._wakeup.set()
        if self._worker is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        self._executor.shutdown(wait=True)
        self._depth.set(0)

    async def _gather_window(self) -> None:
        """Wait up to max_wait for more rows unless a full batch is already queued.

        Adaptive: when the last call carried a single request and only one is queued, there is
        no sign of concurrent traffic, so the request runs at once instead of paying the wait
        for company that is not coming. Under load calls carry several requests and the window
        is used; requests that arrive while ORT runs join the next call either way.
        """
        if self.max_wait_s <= 0:
            return
        if self._last_requests <= 1 and len(self._pending) <= 1:
            return
        deadline = time.perf_counter() + self.max_wait_s
        while not self._closing and self._pending_rows < self.max_rows:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), remaining)

    def _take(self) -> list[_Job]:
        """Pop the oldest job and later ones with its shape key, up to max_rows rows.

        Stops scanning once the call is full, so the cost is bounded by the batch, not by the
        queue; skipped jobs (other shapes) go back to the front in their original order.
        """
        first = self._pending.popleft()
        taken, rows, kept = [first], first.rows, []
        while self._pending and rows < self.max_rows:
            job = self._pending.popleft()
            if job.future.done():  # caller gave up (cancelled): drop it
                self._pending_rows -= job.rows
                continue
            if job.key == first.key and rows + job.rows <= self.max_rows:
                taken.append(job)
                rows += job.rows
            else:
                kept.append(job)
                if job.key == first.key:  # the next same-shape job does not fit: call is full
                    break
        self._pending.extendleft(reversed(kept))
        self._pending_rows -= rows
        self._depth.set(len(self._pending))
        return taken

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._pending:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
            await self._gather_window()
            jobs = [j for j in self._take() if not j.future.done()]
            self._last_requests = len(jobs)
            if not jobs:
                continue
            now = time.perf_counter()
            for job in jobs:
                self._queue_wait.observe(now - job.queued_at)
            self._busy = True
            try:
                outputs = await loop.run_in_executor(self._executor, self._run_batch, jobs)
            except Exception as exc:  # one failure answers every request of the batch
                self._failures.inc(len(jobs))
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            finally:
                self._busy = False
            for job, out in zip(jobs, outputs, strict=True):
                if not job.future.done():
                    job.future.set_result(out)

    def _timed_run(
        self, feeds: Mapping[str, np.ndarray], rows: int, requests: int
    ) -> dict[str, np.ndarray]:
        """One ORT call, with its metrics and the running averages the inline bound reads."""
        start = time.perf_counter()
        results = self._run(feeds)
        elapsed = time.perf_counter() - start
        self._ort_time.observe(elapsed)
        if self._call_s is None:
            self._call_s, self._call_rows = elapsed, float(rows)
        else:
            self._call_s += 0.2 * (elapsed - self._call_s)
            self._call_rows += 0.2 * (rows - self._call_rows)
        self._batch_rows.observe(rows)
        self._batch_requests.observe(requests)
        return results

    def _run_batch(self, jobs: list[_Job]) -> list[dict[str, np.ndarray]]:
        """In the ORT thread: concatenate, run, split back by row counts."""
        if len(jobs) == 1:
            feeds = jobs[0].inputs
        else:
            feeds = {
                name: np.concatenate([job.inputs[name] for job in jobs], axis=0)
                for name in jobs[0].inputs
            }
        total = sum(job.rows for job in jobs)
        results = self._timed_run(feeds, total, len(jobs))
        if len(jobs) == 1:
            return [results]
        offsets = np.cumsum([job.rows for job in jobs])[:-1]
        split: list[dict[str, np.ndarray]] = [{} for _ in jobs]
        for name, array in results.items():
            if array.ndim == 0 or array.shape[0] != total:
                raise ArtifactError(
                    f"{self.model}/{self.graph}: output {name} has no batch axis of {total} rows"
                )
            for index, part in enumerate(np.split(array, offsets, axis=0)):
                split[index][name] = part
        return split
