"""`LogApplier`: the event log's one writer, applying appended events to the model states.

Every replica in the single-writer mode runs one; the one holding the lease
(`keys.EVENT_LOG_LEASE`, taken and extended by `EventLog.hold`) writes, the others wait for
the lease to fall free (a crashed holder's lapses after `lease_ms`). A Kafka consumer group
with one partition behaves the same way; the log here is a Redis Stream on the state's own
server, so appending, applying and fencing are Redis scripts and nothing else has to run.

One chunk at a time, in commit order:

1. **Read** the next `chunk_events` entries after the last chunk sent.
2. **Compute** the chunk's waves (`make_waves`: no user or item twice per wave) with the
   ready `StateUpdater`s, from states this writer keeps in memory. The memory is exact, not a
   cache that may be stale: nobody else writes model states while the lease is held, so only
   entities this writer has not seen since it took the lease are read from Redis (one
   pipeline per model and chunk).
3. **Write** the chunk's final states, its popularity counts and the applied mark in one
   `apply_log.lua` call, fenced by the lease and by the previous chunk's mark: a writer that
   lost the lease, or whose previous chunk did not land, writes nothing.

Why this is faster than compare-and-set: step 3 is not awaited before the next chunk's step 2
(up to `in_flight` chunks are on the wire), so the Python pass of one chunk runs while Valkey
executes the previous one's script; a wave writes no idempotency key, sequence or count (the
append did) and compares nothing; and states an entity touches several times in a chunk are
written once. It is safe because of the fence: any failure (a refused chunk, a lost
connection, the lease lost) stops the writer, drops the memory, and it starts again from the
mark in Redis, so the store only ever holds whole chunks in commit order, none twice.

What a log costs that compare-and-set does not: a chunk that a model cannot compute (an ONNX
Runtime failure) stays at the head of the log and is retried every second, holding back every
event after it (logged, and visible as `salecast_event_log_pending`), where compare-and-set
would have answered that request 503 and gone on with the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from service.errors import StateStoreError
from service.events.event_log import ChunkWrite, EventLog, LogEntry
from service.events.schema import Event
from service.events.updater import StateUpdater, compute_states, ready_updaters
from service.events.waves import make_waves
from service.metrics import EVENT_LOG_LAG, EVENT_LOG_PENDING, EVENT_LOG_WRITER, EVENTS_APPLIED
from service.state import keys
from service.state.store import StateStore, VersionedState, encode_vector, format_ts

log = logging.getLogger(__name__)

StoreSource = Callable[[], StateStore | None]
UpdaterSource = Callable[[], Sequence[StateUpdater]] | Sequence[StateUpdater]
States = dict[str, VersionedState | None]


class LeaseLost(Exception):
    """Another writer holds the log, or this writer's chunk was refused: start over."""


@dataclass
class _Sent:
    """A chunk whose write is on the wire, and what to do once it lands."""

    write: asyncio.Task[int]
    entries: list[LogEntry]
    items: list[tuple[StateUpdater, list[Event], np.ndarray]]  # for `committed`


class LogApplier:
    """Applies the event log to the model states while it holds the log's writer lease."""

    def __init__(
        self,
        store: StoreSource,
        updaters: UpdaterSource = (),
        *,
        chunk_events: int = 1024,  # a chunk is one script call; 1024 events run ~10 ms in Valkey
        in_flight: int = 2,  # chunks written while the next is computed
        lease_ms: int = 5_000,  # a crashed writer's successor waits at most this long
        idle_poll_s: float = 0.02,  # how often an idle writer looks for other replicas' events
        max_states: int = 200_000,  # states kept in memory (about 1 kB each) before dropped
    ) -> None:
        self._store = store
        self._updaters = updaters
        self.chunk_events = chunk_events
        self.in_flight = max(1, in_flight)
        self.lease_ms = lease_ms
        self.idle_poll_s = idle_poll_s
        self.max_states = max_states
        self.token = secrets.token_hex(8)
        self.holding = False
        self.applied: int | None = None  # the mark of the last chunk known to have landed
        self._states: dict[tuple[str, str], States] = {}
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._closing = False
            self._task = asyncio.get_running_loop().create_task(self._run())

    def notify(self) -> None:
        """Events were appended here: the writer looks at once instead of at its next poll
        (a replica waiting for the lease keeps its own pace)."""
        if self.holding:
            self._wakeup.set()

    async def close(self) -> None:
        """Finish the chunks on the wire, give the lease up, stop."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None

    def event_log(self) -> EventLog | None:
        store = self._store()
        return None if store is None else EventLog(store)

    def updaters(self) -> list[StateUpdater]:
        source = self._updaters
        return ready_updaters(source() if callable(source) else source)

    async def _run(self) -> None:
        while not self._closing:
            event_log = self.event_log()
            if event_log is None:
                await self._sleep(self.idle_poll_s * 10)
                continue
            try:
                if await event_log.hold(self.token, self.lease_ms):
                    self._set_holding(True)
                    await self._follow(event_log)
                else:
                    self._set_holding(False)
                    await self._sleep(self.lease_ms / 3000)
            except (StateStoreError, LeaseLost) as exc:
                log.warning("event log writer restarts", extra={"reason": str(exc)})
                self._set_holding(False)
                await self._sleep(self.idle_poll_s)
            except Exception:  # a model failed on a chunk: it stays at the head, retried
                log.exception("event log writer failed on a chunk; retrying in a second")
                self._set_holding(False)
                await self._sleep(1.0)
        event_log = self.event_log()
        if self.holding and event_log is not None:
            with contextlib.suppress(StateStoreError):
                await event_log.release(self.token, self.lease_ms)
        self._set_holding(False)

    def _set_holding(self, holding: bool) -> None:
        if not holding:
            self._states.clear()  # another writer may write next: what it writes is unknown
        self.holding = holding
        EVENT_LOG_WRITER.set(1 if holding else 0)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), seconds)
        self._wakeup.clear()

    # ---- applying ------------------------------------------------------------------------

    async def _follow(self, event_log: EventLog) -> None:
        """Apply chunks while the lease holds; returns when closing, raises when it does not."""
        applied, _, backlog = await event_log.marks()
        self.applied = sent = applied
        EVENT_LOG_PENDING.set(backlog)
        renewed = time.monotonic()
        flight: deque[_Sent] = deque()
        try:
            while not self._closing:
                if time.monotonic() - renewed > self.lease_ms / 3000:
                    if not await event_log.hold(self.token, self.lease_ms):
                        raise LeaseLost("the writer lease is another replica's")
                    renewed = time.monotonic()
                    EVENT_LOG_PENDING.set((await event_log.marks())[2])
                if sum(map(len, self._states.values())) > self.max_states:
                    while flight:  # nothing on the wire may depend on what is dropped
                        await self._land(flight.popleft())
                    self._states.clear()
                entries = await event_log.read_after(sent, self.chunk_events)
                if not entries:
                    while flight:
                        await self._land(flight.popleft())
                    EVENT_LOG_PENDING.set(0)
                    await self._sleep(self.idle_poll_s)
                    continue
                flight.append(await self._send(event_log, sent, entries))
                sent = entries[-1].commit
                await asyncio.sleep(0)  # let the write leave before the next chunk's read
                while len(flight) > self.in_flight:
                    await self._land(flight.popleft())
            while flight:
                await self._land(flight.popleft())
        finally:
            for on_wire in flight:  # what is on the wire still runs on the server: wait for it
                with contextlib.suppress(Exception):
                    await on_wire.write

    async def apply_once(self, event_log: EventLog) -> int:
        """Apply the next chunk after `applied` and wait for it to land (no overlap): the
        number of events applied. For callers that hold the lease and step the log
        themselves (tests, tools); the running writer overlaps chunks instead."""
        entries = await event_log.read_after(self.applied, self.chunk_events)
        if entries:
            await self._land(await self._send(event_log, self.applied, entries))
        return len(entries)

    async def _send(self, event_log: EventLog, after: int | None, entries: list[LogEntry]) -> _Sent:
        """Compute a chunk and put its write on the wire, without waiting for the answer."""
        updaters = self.updaters()
        write, items = await self._compute(event_log.store, entries, updaters)
        task = asyncio.ensure_future(
            event_log.write_chunk(
                self.token,
                after,
                entries[-1].commit,
                write,
                [c for u in updaters for c in u.counters],
            )
        )
        return _Sent(task, entries, items)

    async def _land(self, sent: _Sent) -> None:
        result = await sent.write
        if result != 1:
            reason = "lease lost" if result == -1 else "applied mark moved"
            raise LeaseLost(f"chunk up to commit {sent.entries[-1].commit} refused: {reason}")
        self.applied = sent.entries[-1].commit
        for upd, events, item_states in sent.items:
            upd.committed(events, item_states)
        now = time.time()
        for action, n in Counter(en.event.action for en in sent.entries).items():
            EVENTS_APPLIED.labels(action=action).inc(n)
        for en in sent.entries:
            EVENT_LOG_LAG.observe(max(0.0, now - en.appended_at))

    async def _compute(
        self, store: StateStore, entries: list[LogEntry], updaters: Sequence[StateUpdater]
    ) -> tuple[ChunkWrite, list[tuple[StateUpdater, list[Event], np.ndarray]]]:
        """The chunk's final states and popularity counts, computed in waves from memory."""
        events = [en.event for en in entries]
        write = ChunkWrite()
        if not updaters:
            return write, []
        write.item_counts = dict(Counter(e.item_id for e in events))
        users = list(dict.fromkeys(e.user_id for e in events))
        items = list(write.item_counts)
        committed = []
        for upd in updaters:
            user_states = await self._known(store, upd.model, "user", users)
            item_states = await self._known(store, upd.model, "item", items)
            last_on_item: dict[str, Event] = {}
            for wave in make_waves(events, by_item=True):
                new_u, new_i = await compute_states(
                    upd,
                    wave,
                    [user_states[e.user_id] for e in wave],
                    [item_states[e.item_id] for e in wave],
                )
                for row, e in enumerate(wave):
                    ts_text = format_ts(e.ts)
                    user_states[e.user_id] = VersionedState(new_u[row], e.ts, e.event_id, ts_text)
                    before = item_states[e.item_id]
                    if before is None or e.order > before.version:
                        item_states[e.item_id] = VersionedState(
                            new_i[row], e.ts, e.event_id, ts_text
                        )
                        last_on_item[e.item_id] = e
            for entity, ids, states in (("user", users, user_states), ("item", items, item_states)):
                for identifier in ids:
                    s = states[identifier]
                    if s is not None and (entity == "user" or identifier in last_on_item):
                        write.states.append(
                            (
                                keys.state(upd.model, entity, identifier),
                                encode_vector(s.vector),
                                s.ts_text,
                                s.event_id,
                                entity == "user",
                            )
                        )
            if last_on_item:
                written = list(last_on_item)
                committed.append(
                    (
                        upd,
                        [last_on_item[i] for i in written],
                        np.stack([item_states[i].vector for i in written]),  # type: ignore[union-attr]
                    )
                )
        return write, committed

    async def _known(self, store: StateStore, model: str, entity: str, ids: list[str]) -> States:
        """The memory's states of `model`/`entity`, with `ids` it lacks read from Redis."""
        memory = self._states.setdefault((model, entity), {})
        missing = [i for i in ids if i not in memory]
        if missing:
            found = await store.get_states(model, entity, missing)
            memory.update(zip(missing, found, strict=True))
        return memory
