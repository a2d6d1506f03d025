"""`AtomicWaveWriter`: the events pipeline's writes on a single Redis server.

One pass over a batch:

1. **Read once**: every user's newest applied event (its sequence tail) and, per model, the
   states of every user and item of the batch, in one pipeline (`StateStore.heads`).
2. **Per wave** (no user and no item twice, `make_waves`): compute the new states from the
   newest states this pass knows (what it read, or what its own earlier waves committed), then
   write the whole wave with one `apply_wave.lua` call. The script checks, per event, the
   idempotency key, the user's order and that every state is still the one the computation
   started from, and writes users, items, sequence, counts and idempotency key all together
   or nothing (see the script). Round trips: 1 + number of waves, whatever the wave sizes.
3. **Conflicts** (another replica committed one of the same users or items in between) and
   everything after them on the same user or item in this batch go to the next pass, which
   reads again; after `max_retries` passes they are rejected with a "retry" reason, having
   written nothing.

Because each applied event was computed from exactly the states it replaced and committed
atomically, replicas sharing one server end in the states that one process applying the
applied events serially in commit order (the `commit` number of each outcome) would reach.
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
    ModelStates,
    StateStore,
    VersionedState,
    WaveCode,
    WaveEvent,
    format_ts,
)

Version = tuple[float, str]


class AtomicWaveWriter:
    """Applies ordered, validated events to one `StateStore` on a single server."""

    def __init__(self, store: StateStore, max_retries: int = 5) -> None:
        self.store = store
        self.max_retries = max_retries

    async def apply(
        self, events: Sequence[Event], updaters: Sequence[StateUpdater]
    ) -> list[EventOutcome]:
        out: list[EventOutcome] = []
        pending = list(events)
        for _ in range(self.max_retries + 1):
            if not pending:
                break
            pending = await self._pass(pending, updaters, out)
        out.extend(outcomes.conflict_exhausted(e) for e in pending)
        return out

    async def _pass(
        self, events: list[Event], updaters: Sequence[StateUpdater], out: list[EventOutcome]
    ) -> list[Event]:
        """One read and one write per wave; returns the events to try again, in order."""
        models = [u.model for u in updaters]
        counters = [key for u in updaters for key in u.counters]
        users = list(dict.fromkeys(e.user_id for e in events))
        items = list(dict.fromkeys(e.item_id for e in events)) if updaters else []
        tails, user_rows, item_rows = await self.store.heads(models, users, items)
        tail: dict[str, Version | None] = dict(zip(users, tails, strict=True))
        user_state = [dict(zip(users, rows, strict=True)) for rows in user_rows]
        item_state = [dict(zip(items, rows, strict=True)) for rows in item_rows]
        retry: list[Event] = []
        blocked_users: set[str] = set()
        blocked_items: set[str] = set()

        def block(e: Event) -> None:
            retry.append(e)
            blocked_users.add(e.user_id)
            blocked_items.add(e.item_id)

        for wave in make_waves(events, by_item=bool(updaters)):
            go: list[Event] = []
            for e in wave:
                if e.user_id in blocked_users or (updaters and e.item_id in blocked_items):
                    block(e)  # an earlier event of this user/item must land first
                else:
                    go.append(e)
            if not go:
                continue
            # An event at or behind the user's newest needs no compute: the server only says
            # whether it is a duplicate (its id was applied) or stale.
            verdict = [e for e in go if (t := tail[e.user_id]) is not None and e.order <= t]
            compute = [e for e in go if (t := tail[e.user_id]) is None or e.order > t]
            computed = await self._compute(compute, updaters, user_state, item_state)
            states = [
                ModelStates(
                    new_u,
                    [user_state[m][e.user_id] for e in compute],
                    new_i,
                    [item_state[m][e.item_id] for e in compute],
                )
                for m, (new_u, new_i) in enumerate(computed)
            ]
            wave_events = [
                WaveEvent(e.user_id, e.event_id, e.ts, e.action, e.item_id, e.category_id)
                for e in compute
            ] + [
                WaveEvent(e.user_id, e.event_id, e.ts, e.action, e.item_id, e.category_id, True)
                for e in verdict
            ]
            results = await self.store.apply_wave(models, wave_events, states, counters)
            written_items: list[list[int]] = [[] for _ in updaters]
            for row, (e, res) in enumerate(zip(compute + verdict, results, strict=True)):
                if res.code is WaveCode.APPLIED:
                    out.append(outcomes.applied(e, res.commit))
                    tail[e.user_id] = e.order
                    ts_text = format_ts(e.ts)
                    for m, (new_u, new_i) in enumerate(computed):
                        user_state[m][e.user_id] = VersionedState(
                            new_u[row], e.ts, e.event_id, ts_text
                        )
                        before = item_state[m][e.item_id]
                        if before is None or e.order > before.version:  # the script wrote it
                            item_state[m][e.item_id] = VersionedState(
                                new_i[row], e.ts, e.event_id, ts_text
                            )
                            written_items[m].append(row)
                elif res.code in (WaveCode.DUPLICATE, WaveCode.STALE):
                    if res.code is WaveCode.DUPLICATE:
                        out.append(outcomes.duplicate(e.index, e.event_id, "already applied"))
                    else:
                        out.append(outcomes.stale(e, res.newer or e.order))
                    if row < len(compute):  # not what the read said: someone moved the user on
                        blocked_users.add(e.user_id)
                else:
                    model_index, side = res.conflict or (0, "user")
                    label = models[model_index - 1] if 0 < model_index <= len(models) else "user"
                    CAS_CONFLICTS.labels(state=f"{label}:{side}").inc()
                    block(e)
            for upd, rows, (_, new_i) in zip(updaters, written_items, computed, strict=True):
                if rows:
                    upd.committed([compute[r] for r in rows], new_i[rows])
        retry.sort(key=lambda e: (e.ts, e.event_id, e.index))
        return retry

    @staticmethod
    async def _compute(
        events: list[Event],
        updaters: Sequence[StateUpdater],
        user_state: list[dict[str, VersionedState | None]],
        item_state: list[dict[str, VersionedState | None]],
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        if not events:
            return [
                (np.zeros((0, u.user_dim), np.float32), np.zeros((0, u.item_dim), np.float32))
                for u in updaters
            ]
        return [
            await compute_states(
                upd,
                events,
                [user_state[m][e.user_id] for e in events],
                [item_state[m][e.item_id] for e in events],
            )
            for m, upd in enumerate(updaters)
        ]
