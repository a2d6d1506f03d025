"""`EventPipeline`: validate, order, de-duplicate and apply a batch of behaviour events.

An accepted event is never lost and never applied twice. How:

1. **Validate** each event on its own (`validate_events`): a bad event is `rejected` with a
   reason and the rest of the batch still goes through; only a malformed batch is a 422.
   An event more than `max_future_seconds` ahead of the clock is rejected too: it would make
   every real event of its user stale until that time.
2. **Order** the accepted events by ``(ts, event_id)`` and split them into waves in which no
   user (and, when a model updates item states, no item) appears twice (`make_waves`).
3. **Write** with the store's writer: on one server `AtomicWaveWriter` (each wave one atomic
   script: users and items, sequence, counts and idempotency key together, with a commit
   number), on Redis Cluster `TwoPhaseWriter` (item side, then the user's slot). Both compare
   and set on ``(ts, event id)``, so an older or repeated event never overwrites newer state,
   and both retry a conflict (another replica wrote in between) from a fresh read. In the
   single-writer mode (an `event_log` given) `LogAppendWriter` instead writes the user side
   and appends to the event log; the model states follow from `LogApplier`.

Without a ready updater (no IMN model loaded) sequences, counts and idempotency are still
kept, so count-based models (intent) work from the first event.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from service.errors import InvalidInput
from service.events import outcomes
from service.events.atomic import AtomicWaveWriter
from service.events.event_log import EventLog
from service.events.log_writer import LogAppendWriter
from service.events.outcomes import BatchResult, EventOutcome
from service.events.schema import MAX_EVENTS, Event, EventIn, Invalid, validate_events
from service.events.two_phase import TwoPhaseWriter
from service.events.updater import StateUpdater, ready_updaters
from service.state.store import StateStore

UpdaterSource = Callable[[], Sequence[StateUpdater]] | Sequence[StateUpdater]


class EventPipeline:
    """Applies event batches to one `StateStore` with the given `StateUpdater`s."""

    def __init__(
        self,
        store: StateStore,
        updaters: UpdaterSource = (),
        *,
        max_future_seconds: float = 300.0,
        max_conflict_retries: int = 5,
        clock: Callable[[], float] = time.time,
        event_log: EventLog | None = None,
        on_append: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self._updaters = updaters
        self.max_future_seconds = max_future_seconds
        self.clock = clock
        self.writer: AtomicWaveWriter | TwoPhaseWriter | LogAppendWriter
        if event_log is not None:
            if store.cluster:
                raise InvalidInput("events_mode", "the event log needs one Redis server")
            self.writer = LogAppendWriter(event_log, on_append=on_append)
        elif store.cluster:
            self.writer = TwoPhaseWriter(store, max_conflict_retries)
        else:
            self.writer = AtomicWaveWriter(store, max_conflict_retries)

    def updaters(self) -> list[StateUpdater]:
        """The updaters that can run now (see `ready_updaters`)."""
        source = self._updaters
        return ready_updaters(source() if callable(source) else source)

    async def process(self, raw_events: Sequence[EventIn | Mapping[str, Any]]) -> BatchResult:
        """Apply a batch; returns one outcome per input event, in input order."""
        if len(raw_events) > MAX_EVENTS:
            raise InvalidInput("events", f"at most {MAX_EVENTS} events per call")
        updaters = self.updaters()
        results: list[EventOutcome | None] = [None] * len(raw_events)
        accepted: list[Event] = []
        seen: set[tuple[str, str]] = set()
        horizon = self.clock() + self.max_future_seconds
        for i, ev in enumerate(validate_events(raw_events)):
            if isinstance(ev, Invalid):
                results[i] = outcomes.rejected(i, ev.event_id, ev.field, ev.reason)
            elif ev.timestamp > horizon:
                results[i] = outcomes.rejected(
                    i,
                    ev.event_id,
                    "timestamp",
                    f"timestamp: more than {self.max_future_seconds:.0f}s in the future",
                )
            elif (ev.user_id, ev.event_id) in seen:
                results[i] = outcomes.duplicate(i, ev.event_id, "repeated within the batch")
            else:
                seen.add((ev.user_id, ev.event_id))
                accepted.append(
                    Event(
                        i,
                        ev.event_id,
                        ev.user_id,
                        ev.item_id,
                        ev.action,
                        ev.timestamp,
                        ev.category_id,
                        ev.features or {},
                    )
                )
        accepted.sort(key=lambda e: (e.ts, e.event_id, e.index))
        for outcome in await self.writer.apply(accepted, updaters):
            results[outcome.index] = outcome
        done = [o for o in results if o is not None]
        if len(done) != len(results):  # every path above fills its slot; guard the invariant
            raise RuntimeError("events pipeline left an event without an outcome")
        outcomes.count(done)
        return BatchResult(done, [u.model for u in updaters])
