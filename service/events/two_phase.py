"""`TwoPhaseWriter`: the events pipeline's writes on Redis Cluster.

On a cluster a user's keys and an item's keys live in different hash slots, so no script can
write both. Each wave is written in two steps instead:

1. read the users' guards (idempotency key, newest event) and drop duplicates and stale
   events before any compute; read the user and item states, compute;
2. **item side first**: a compare-and-set per item state (`cas_state.lua`) remembering
   ``(ts, event id)``; equal means this event was already applied there (a retry after a
   crash), newer means the item moved on and keeps its state; **then the user side**: one
   script in the user's slot (`apply_user.lua`) checks idempotency and order again, compares
   and sets every model's user state, appends to the sequence, bumps the counts and sets the
   idempotency key, atomically.

If the process dies between the two, the client never got a 200 and sends the batch again:
the item side recognises the event (equal version, not re-applied) and the user side applies
it. A conflict on either side re-reads and recomputes that event (`CAS_CONFLICTS`).

NOTE: weaker than `AtomicWaveWriter` (documented in docs/consistency.md): an event whose user
side then turns out stale or conflicting may already have written its item state, and a user
state retried after its item side landed is computed from the item state it used the first
time. Both need concurrent writers on the same user, or a crash, to arise.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from service.events import outcomes
from service.events.outcomes import EventOutcome
from service.events.schema import Event
from service.events.updater import StateUpdater, compute_states
from service.events.waves import make_waves
from service.metrics import CAS_CONFLICTS
from service.state.store import (
    CasOutcome,
    StateStore,
    UserOutcome,
    UserWrite,
    VersionedState,
)


class TwoPhaseWriter:
    """Applies ordered, validated events wave by wave with item-then-user compare-and-set."""

    def __init__(self, store: StateStore, max_retries: int = 5) -> None:
        self.store = store
        self.max_retries = max_retries

    async def apply(
        self, events: Sequence[Event], updaters: Sequence[StateUpdater]
    ) -> list[EventOutcome]:
        out: list[EventOutcome] = []
        for wave in make_waves(events, by_item=bool(updaters)):
            out += await self._wave(wave, updaters)
        return out

    async def _wave(
        self, wave: list[Event], updaters: Sequence[StateUpdater]
    ) -> list[EventOutcome]:
        out: list[EventOutcome] = []
        guards = await self.store.user_guards([(e.user_id, e.event_id) for e in wave])
        pending: list[Event] = []
        for e, g in zip(wave, guards, strict=True):
            if g.seen or (g.last is not None and g.last == e.order):
                out.append(outcomes.duplicate(e.index, e.event_id, "already applied"))
            elif g.last is not None and e.order < g.last:
                out.append(outcomes.stale(e, g.last))
            else:
                pending.append(e)
        # (model, event index) -> item state the event's update was computed from, once its
        # item side is written: a retry of the user side must not see the item twice.
        item_used: dict[tuple[str, int], VersionedState | None] = {}
        for attempt in range(self.max_retries + 1):
            if not pending:
                break
            pending = await self._attempt(pending, updaters, item_used, out)
            if pending and attempt == self.max_retries:
                out.extend(outcomes.conflict_exhausted(e) for e in pending)
        return out

    async def _attempt(
        self,
        events: list[Event],
        updaters: Sequence[StateUpdater],
        item_used: dict[tuple[str, int], VersionedState | None],
        out: list[EventOutcome],
    ) -> list[Event]:
        """One read-compute-write pass; returns the events to retry after a conflict."""
        retry: set[int] = set()
        user_new: dict[int, list[tuple[str, np.ndarray, VersionedState | None]]] = {
            e.index: [] for e in events
        }
        for upd in updaters:
            states = await self.store.get_states_of(
                upd.model,
                [("user", e.user_id) for e in events] + [("item", e.item_id) for e in events],
            )
            users, items = states[: len(events)], states[len(events) :]
            # A retried event whose item side is already written computes from the item state
            # it used before (the stored one now includes this very event).
            item_inputs = [
                item_used.get((upd.model, e.index), s) for e, s in zip(events, items, strict=True)
            ]
            new_users, new_items = await compute_states(upd, events, users, item_inputs)
            writes = []
            write_rows = []
            for row, e in enumerate(events):
                if (upd.model, e.index) in item_used:
                    continue
                writes.append((e.item_id, new_items[row], e.ts, e.event_id, items[row]))
                write_rows.append(row)
            results = await self.store.cas_states(upd.model, "item", writes)
            committed = []
            for row, res in zip(write_rows, results, strict=True):
                e = events[row]
                if res is CasOutcome.CONFLICT:
                    CAS_CONFLICTS.labels(state=f"{upd.model}:item").inc()
                    retry.add(e.index)
                elif res is CasOutcome.APPLIED:
                    item_used[(upd.model, e.index)] = items[row]
                    committed.append(row)
                # SAME (already applied by an earlier try) / STALE (item moved on): keep it.
            if committed:
                upd.committed([events[r] for r in committed], new_items[committed])
            for row, e in enumerate(events):
                user_new[e.index].append((upd.model, new_users[row], users[row]))
        writable = [e for e in events if e.index not in retry]
        user_writes = [
            UserWrite(
                e.user_id,
                e.event_id,
                e.ts,
                e.action,
                e.item_id,
                e.category_id,
                tuple(user_new[e.index]),
            )
            for e in writable
        ]
        results_u = await self.store.apply_user_events(user_writes)
        await self.store.count_items(
            [key for u in updaters for key in u.counters],
            [e.item_id for e, r in zip(writable, results_u, strict=True)
             if r.outcome is UserOutcome.APPLIED],
        )  # fmt: skip
        for e, r in zip(writable, results_u, strict=True):
            if r.outcome is UserOutcome.APPLIED:
                out.append(outcomes.applied(e))
            elif r.outcome is UserOutcome.DUPLICATE:
                out.append(outcomes.duplicate(e.index, e.event_id, "already applied"))
            elif r.outcome is UserOutcome.STALE:
                out.append(outcomes.stale(e, r.newer or e.order))
            else:
                CAS_CONFLICTS.labels(state=f"{r.conflict_model}:user").inc()
                retry.add(e.index)
        return [e for e in events if e.index in retry]
