"""`Coalescer`: concurrent calls of one row-wise async function join one call (a wave).

Why: scoring a few users costs mostly what any call costs, not what each row costs. Measured
on `POST /v1/score/intent` with 8 users per request under 32 connections (py-spy, 2-core
Intel), building the features, reading Redis and sampling the served-score metric took about
half of the server's CPU, and most of that was the fixed price of each numpy call, pipeline
round trip and metric update, paid once per request. The `MicroBatcher` only joins the ORT
call; this joins everything before it too, so each of those prices is paid once per wave of
requests.

Design (the events pipeline's `EventIngestor`, generalised to any row-wise step):

- `submit(key, items)` queues the items and awaits their rows of the wave's output: `run(key,
  items of every joined call)` returns arrays whose first axis follows the items, and each
  caller gets its own slice. Only calls with equal keys join (the same cut time, the same
  store), so a wave is exactly what each call would have computed alone, row for row.
- Waves start as soon as fewer than `max_in_flight` run (no timer, so an idle service adds no
  latency); whatever arrives meanwhile waits for the next wave. One at a time by default:
  measured on the intent route (2 runs each, 2-core Intel), 1 in flight served 1,415-1,517
  requests/s, 2 in flight 1,164-1,189 and 4 1,081-1,127, since concurrent waves meet again in
  the micro-batcher, whose window then holds one wave's ORT call for the other's.
- A wave takes whole calls, oldest first, up to `max_items` items (a larger call runs alone);
  a caller that went away (cancelled) before its wave is skipped.
- A failure of `run` fails every call of its wave with the same exception (the store is down,
  the graph is broken: each caller would have met it alone).
- More than `capacity` items waiting is `Overloaded` (503 with Retry-After), never an
  unbounded queue.
- Calls waiting for a wave are counted in `salecast_batch_queue_depth` with ``graph="wave"``:
  under load requests now wait here rather than in the micro-batcher, and that gauge is what
  the autoscaler scales on, so it must still see them.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np

from service.errors import NotReady, Overloaded
from service.metrics import QUEUE_DEPTH

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")
Rows = dict[str, np.ndarray]
WaveFn = Callable[[K, list[T]], Awaitable[Rows]]


@dataclass
class _Call(Generic[T]):
    items: Sequence[T]
    future: asyncio.Future[Rows] = field(repr=False)
    queued: bool = True  # counted in the coalescer's waiting items


class Coalescer(Generic[K, T]):
    """Joins concurrent `submit` calls of equal key into calls of `run`."""

    def __init__(
        self,
        run: WaveFn[K, T],
        *,
        model: str,
        name: str,
        max_items: int = 1024,
        max_in_flight: int = 1,
        capacity: int = 32_768,
        retry_after_s: float = 1.0,
    ) -> None:
        if max_items < 1 or max_in_flight < 1 or capacity < max_items:
            raise ValueError(
                "Coalescer needs max_items >= 1, max_in_flight >= 1, capacity >= max_items"
            )
        self._run = run
        self.name = name
        self.max_items = max_items
        self.max_in_flight = max_in_flight
        self.capacity = capacity
        self.retry_after_s = retry_after_s
        self._queues: dict[K, deque[_Call[T]]] = {}
        self._waiting = 0  # items queued over every key
        self._waiting_calls = 0
        self._depth = QUEUE_DEPTH.labels(model=model, graph="wave")
        self._in_flight: set[asyncio.Task[None]] = set()
        self.waves = 0  # waves run so far (for tests and benchmarks)

    async def submit(self, key: K, items: Sequence[T]) -> Rows:
        """The rows of `run(key, ...)` that belong to `items`, in their order."""
        if not items:
            raise ValueError("submit needs at least one item")
        if self._waiting + len(items) > self.capacity:
            raise Overloaded(
                f"{self.name}: {self._waiting} items are waiting", retry_after_s=self.retry_after_s
            )
        future: asyncio.Future[Rows] = asyncio.get_running_loop().create_future()
        call = _Call(items, future)
        self._queues.setdefault(key, deque()).append(call)
        self._waiting += len(items)
        self._waiting_calls += 1
        self._depth.set(self._waiting_calls)
        self._start_waves()
        try:
            return await future
        finally:
            self._dequeued(call)  # a caller that went away frees its place at once

    def _dequeued(self, call: _Call[T]) -> None:
        if call.queued:
            call.queued = False
            self._waiting -= len(call.items)
            self._waiting_calls -= 1
            self._depth.set(self._waiting_calls)

    def _start_waves(self) -> None:
        """Start waves while slots are free and calls wait, oldest key first."""
        # A wave left on a loop that was closed mid-wave (a test's loop, a worker's old loop)
        # will never finish: its slot is free on this loop.
        loop = asyncio.get_running_loop()
        if len(self._in_flight) >= self.max_in_flight:  # only then can a stale one matter
            self._in_flight = {t for t in self._in_flight if not t.done() and t.get_loop() is loop}
        while len(self._in_flight) < self.max_in_flight and self._queues:
            key = next(iter(self._queues))
            calls = self._take(key)
            if not calls:
                continue
            task = loop.create_task(self._wave(key, calls), name=f"wave-{self.name}")
            self._in_flight.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._start_waves()

    def _take(self, key: K) -> list[_Call[T]]:
        queue = self._queues[key]
        taken: list[_Call[T]] = []
        n = 0
        while queue and (not taken or n + len(queue[0].items) <= self.max_items):
            call = queue.popleft()
            self._dequeued(call)
            if call.future.done():  # the caller went away: nothing to compute for it
                continue
            taken.append(call)
            n += len(call.items)
        if not queue:
            del self._queues[key]
        else:  # the rest goes behind the other keys' calls, so no key starves the others
            self._queues[key] = self._queues.pop(key)
        return taken

    async def _wave(self, key: K, calls: list[_Call[T]]) -> None:
        items = [item for call in calls for item in call.items]
        self.waves += 1
        try:
            rows = await self._run(key, items)
            for name, array in rows.items():
                if array.ndim == 0 or array.shape[0] != len(items):
                    raise ValueError(f"{self.name}: output {name} has no axis of {len(items)} rows")
            start = 0
            for call in calls:
                stop = start + len(call.items)
                if not call.future.done():
                    call.future.set_result({n: a[start:stop] for n, a in rows.items()})
                start = stop
        except Exception as exc:  # every call of the wave would have met it alone
            for call in calls:
                if not call.future.done():
                    call.future.set_exception(exc)
        finally:  # cancelled (the loop is closing): no caller may wait for ever
            for call in calls:
                if not call.future.done():
                    call.future.set_exception(NotReady(f"{self.name}: the wave was cancelled"))
