"""The `/v1/events` pipeline: validate, order, de-duplicate and apply behaviour events.

An accepted event is never lost and never applied twice. How:

1. **Validate** each event on its own (`EventIn`): a bad event is `rejected` with a reason and
   the rest of the batch still goes through; only a malformed batch is a 422.
2. **Order** the accepted events by ``(ts, event_id)`` and split them into *waves* in which no
   user (and, when a model updates item states, no item) appears twice, as JODIE's t-batches:
   each wave is one micro-batched call of every registered `StateUpdater` (one ONNX call), and
   per-user / per-item order is kept because an entity's k-th event is in a later wave than
   its (k-1)-th.
3. For each wave, **read** (pipelined) the users' idempotency keys and newest applied event:
   a seen event is `duplicate`, an event older than the user's newest is `rejected` as stale
   (it would otherwise rewrite history); then read the current user and item states of every
   updater and **compute** new states in one call per updater.
4. **Write, item side first**: a compare-and-set per item state (`cas_state.lua`), remembering
   ``(ts, event id)``; equal means this event was already applied there (a retry after a crash),
   newer means the item moved on and keeps its state. **Then the user side**: one Lua script in
   the user's slot (`apply_user.lua`) checks the idempotency key and order again, compares and
   sets every model's user state, appends to the bounded behaviour sequence, bumps the
   hour/day action count and sets the idempotency key with a TTL, all atomically.

   If the process dies between the two, the client never got a 200 and sends the batch again:
   the item side recognises the event (equal version, not re-applied) and the user side
   applies it. An acknowledged event is in Redis (append-only file) and its idempotency key
   turns every later copy into `duplicate`.
5. A compare-and-set **conflict** (another replica wrote the same user or item between our read
   and our write) re-reads and recomputes just that event, counted in `CAS_CONFLICTS`; after
   `max_conflict_retries` the event is rejected with a "retry" reason, never half-applied.

Without a registered updater (no IMN model loaded) steps 3-4 still keep sequences, counts and
idempotency, so count-based models (intent) work from the first event.

NOTE: approximations, documented rather than hidden: when an item already holds a newer
event's state, that item state is kept and the user side is computed from it; and when a
retried event's item side was applied by an earlier, interrupted request, the user side is
computed from the item state that already includes the event (the pre-event state is gone).
Both only arise with out-of-order or crashed deliveries.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from service.errors import InvalidInput, NotReady
from service.metrics import CAS_CONFLICTS, EVENTS_APPLIED, EVENTS_DUPLICATE, EVENTS_REJECTED
from service.state.store import (
    SEP,
    CasOutcome,
    StateStore,
    UserOutcome,
    UserWrite,
    VersionedState,
)

log = logging.getLogger(__name__)

MAX_EVENTS = 10_000
ACTIONS: tuple[str, ...] = ("browse", "collect", "cart", "purchase")
ACTION_ALIASES: dict[str, str] = {
    **{a: a for a in ACTIONS},
    "click": "browse",
    "pv": "browse",
    "view": "browse",
    "fav": "collect",
    "favorite": "collect",
    "buy": "purchase",
    "order": "purchase",
}
Status = Literal["applied", "duplicate", "rejected"]


def _check_id(value: str) -> str:
    if any(ord(c) < 32 for c in value):
        raise ValueError("must not contain control characters")
    return value


class EventIn(BaseModel):
    """One behaviour event as a client sends it."""

    model_config = ConfigDict(extra="forbid")
    event_id: str = Field(
        min_length=1, max_length=128, description="unique per user; retries resend it"
    )
    user_id: str = Field(min_length=1, max_length=128)
    item_id: str = Field(min_length=1, max_length=128)
    action: str = Field(
        description="browse | collect | cart | purchase (click/pv/view = browse, fav = collect, "
        "buy = purchase)"
    )
    timestamp: float = Field(description="Unix seconds, or an ISO-8601 time (UTC if no zone)")
    category_id: str | None = Field(default=None, min_length=1, max_length=128)
    features: dict[str, float] | None = Field(
        default=None, max_length=64, description="optional numeric context for state updaters"
    )

    @field_validator("event_id", "user_id", "item_id", "category_id")
    @classmethod
    def _ids(cls, value: str | None) -> str | None:
        return value if value is None else _check_id(value)

    @field_validator("action", mode="before")
    @classmethod
    def _action(cls, value: Any) -> str:
        canonical = (
            ACTION_ALIASES.get(str(value).strip().lower()) if isinstance(value, str) else None
        )
        if canonical is None:
            raise ValueError(f"must be one of {', '.join(ACTION_ALIASES)}")
        return canonical

    @field_validator("timestamp", mode="before")
    @classmethod
    def _timestamp(cls, value: Any) -> float:
        if isinstance(value, bool):
            raise ValueError("must be Unix seconds or an ISO-8601 time")
        if isinstance(value, int | float):
            ts = float(value)
        elif isinstance(value, str):
            try:
                ts = float(value)
            except ValueError:
                try:
                    parsed = datetime.fromisoformat(value.strip())
                except ValueError as exc:
                    raise ValueError("must be Unix seconds or an ISO-8601 time") from exc
                if parsed.tzinfo is None:
                    parsed = parsed.replace(tzinfo=UTC)
                ts = parsed.timestamp()
        else:
            raise ValueError("must be Unix seconds or an ISO-8601 time")
        if not math.isfinite(ts) or ts < 0:
            raise ValueError("must be a finite, non-negative time")
        return ts

    @field_validator("features")
    @classmethod
    def _features(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is not None and not all(math.isfinite(v) for v in value.values()):
            raise ValueError("feature values must be finite")
        return value


@dataclass(frozen=True)
class Event:
    """A validated event with its position in the request."""

    index: int
    event_id: str
    user_id: str
    item_id: str
    action: str
    ts: float
    category_id: str | None = None
    features: Mapping[str, float] = field(default_factory=dict)

    @property
    def order(self) -> tuple[float, str]:
        return (self.ts, self.event_id)


class StateUpdater(Protocol):
    """A model's recurrent state update, plugged into the pipeline (IMN registers one).

    `update` gets one wave: B events whose users are distinct and whose items are distinct,
    the current user and item states ``[B, user_dim]`` / ``[B, item_dim]`` float32 (initial
    states where none is stored), and the times of those states (``[B]`` float64; the event's
    own time where there is no state, so the elapsed time is 0). It returns the new states,
    same shapes, row i for event i.
    """

    model: str
    user_dim: int
    item_dim: int

    def initial_user_state(self) -> np.ndarray: ...

    def initial_item_state(self) -> np.ndarray: ...

    async def update(
        self,
        events: Sequence[Event],
        user_states: np.ndarray,
        item_states: np.ndarray,
        user_prev_ts: np.ndarray,
        item_prev_ts: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]: ...


_UPDATERS: dict[str, StateUpdater] = {}


def register_updater(updater: StateUpdater) -> None:
    """Make `updater` part of every following batch (replaces one of the same model)."""
    _UPDATERS[updater.model] = updater


def unregister_updater(model: str) -> None:
    _UPDATERS.pop(model, None)


def registered_updaters() -> list[StateUpdater]:
    return list(_UPDATERS.values())


@dataclass
class EventOutcome:
    index: int
    event_id: str | None
    status: Status
    reason: str | None = None


@dataclass
class BatchResult:
    results: list[EventOutcome]
    models: list[str]

    def count(self, status: Status) -> int:
        return sum(1 for r in self.results if r.status == status)


def make_waves(events: Sequence[Event], by_item: bool) -> list[list[Event]]:
    """Split time-ordered events into waves where no user (and no item if `by_item`) repeats.

    Event k goes to wave ``1 + max(wave of its user's previous event, wave of its item's
    previous event)``, so each entity's events stay in order across waves and every wave is
    as large as the order allows (JODIE's t-batch).
    """
    user_wave: dict[str, int] = {}
    item_wave: dict[str, int] = {}
    waves: list[list[Event]] = []
    for e in events:
        w = user_wave.get(e.user_id, -1) + 1
        if by_item:
            w = max(w, item_wave.get(e.item_id, -1) + 1)
        if w == len(waves):
            waves.append([])
        waves[w].append(e)
        user_wave[e.user_id] = w
        item_wave[e.item_id] = w
    return waves


def _error_reason(exc: ValidationError) -> tuple[str, str]:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err.get("loc", ())) or "event"
    return loc, f"{loc}: {err.get('msg', 'invalid')}"


def _fmt(version: tuple[float, str]) -> str:
    return f"(ts={version[0]!r}, event_id={version[1]!r})"


class EventPipeline:
    """Applies event batches to one `StateStore` with the registered `StateUpdater`s."""

    def __init__(
        self,
        store: StateStore,
        updaters: Callable[[], Sequence[StateUpdater]] | Sequence[StateUpdater] | None = None,
        *,
        max_future_seconds: float = 86_400.0,
        max_conflict_retries: int = 5,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self._updaters = updaters if updaters is not None else registered_updaters
        self.max_future_seconds = max_future_seconds
        self.max_conflict_retries = max_conflict_retries
        self.clock = clock

    def updaters(self) -> list[StateUpdater]:
        """The updaters that can run now. One whose model is not loaded (its `user_dim`
        raises NotReady) is skipped for this batch, so events still keep sequences, counts
        and idempotency while a model is missing or warming up."""
        source = self._updaters
        ready = []
        for upd in source() if callable(source) else source:
            try:
                _ = (upd.user_dim, upd.item_dim)
            except NotReady:
                continue
            ready.append(upd)
        return ready

    async def process(self, raw_events: Sequence[EventIn | Mapping[str, Any]]) -> BatchResult:
        """Apply a batch; returns one outcome per input event, in input order."""
        if len(raw_events) > MAX_EVENTS:
            raise InvalidInput("events", f"at most {MAX_EVENTS} events per call")
        updaters = self.updaters()
        outcomes: list[EventOutcome | None] = [None] * len(raw_events)
        accepted: list[Event] = []
        seen: set[tuple[str, str]] = set()
        horizon = self.clock() + self.max_future_seconds
        for i, raw in enumerate(raw_events):
            try:
                ev = raw if isinstance(raw, EventIn) else EventIn.model_validate(raw)
            except ValidationError as exc:
                field_name, reason = _error_reason(exc)
                event_id = raw.get("event_id") if isinstance(raw, Mapping) else None
                outcomes[i] = self._reject(
                    i, event_id if isinstance(event_id, str) else None, field_name, reason
                )
                continue
            if SEP in ev.item_id or SEP in ev.user_id:
                outcomes[i] = self._reject(i, ev.event_id, "user_id", "invalid character")
                continue
            if ev.timestamp > horizon:
                outcomes[i] = self._reject(
                    i,
                    ev.event_id,
                    "timestamp",
                    f"timestamp: more than {self.max_future_seconds:.0f}s in the future",
                )
                continue
            if (ev.user_id, ev.event_id) in seen:
                outcomes[i] = self._duplicate(i, ev.event_id, "repeated within the batch")
                continue
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
                    dict(ev.features or {}),
                )
            )
        accepted.sort(key=lambda e: (e.ts, e.event_id, e.index))
        for wave in make_waves(accepted, by_item=bool(updaters)):
            for outcome in await self._apply_wave(wave, updaters):
                outcomes[outcome.index] = outcome
        done = [o for o in outcomes if o is not None]
        if len(done) != len(outcomes):  # every path above fills its slot; guard the invariant
            raise RuntimeError("events pipeline left an event without an outcome")
        return BatchResult(done, [u.model for u in updaters])

    # ---- outcomes --------------------------------------------------------------------------

    @staticmethod
    def _reject(index: int, event_id: str | None, field_name: str, reason: str) -> EventOutcome:
        label = field_name.split(".")[0] if field_name else "event"
        if label not in EventIn.model_fields and label not in ("stale", "state"):
            label = "event"  # unknown (extra) field names must not grow the label set
        EVENTS_REJECTED.labels(field=label).inc()
        return EventOutcome(index, event_id, "rejected", reason)

    @staticmethod
    def _duplicate(index: int, event_id: str, reason: str) -> EventOutcome:
        EVENTS_DUPLICATE.inc()
        return EventOutcome(index, event_id, "duplicate", reason)

    @staticmethod
    def _applied(e: Event) -> EventOutcome:
        EVENTS_APPLIED.labels(action=e.action).inc()
        return EventOutcome(e.index, e.event_id, "applied", None)

    # ---- one wave --------------------------------------------------------------------------

    async def _apply_wave(
        self, wave: list[Event], updaters: list[StateUpdater]
    ) -> list[EventOutcome]:
        out: list[EventOutcome] = []
        guards = await self.store.user_guards([(e.user_id, e.event_id) for e in wave])
        pending: list[Event] = []
        for e, g in zip(wave, guards, strict=True):
            if g.seen or (g.last is not None and g.last == e.order):
                out.append(self._duplicate(e.index, e.event_id, "already applied"))
            elif g.last is not None and e.order < g.last:
                out.append(self._stale(e, g.last))
            else:
                pending.append(e)
        # (model, event index) -> item state the event's update was computed from, once its
        # item side is written: a retry of the user side must not see the item twice.
        item_used: dict[tuple[str, int], VersionedState | None] = {}
        for attempt in range(self.max_conflict_retries + 1):
            if not pending:
                break
            pending = await self._attempt(pending, updaters, item_used, out)
            if pending and attempt == self.max_conflict_retries:
                for e in pending:
                    out.append(
                        self._reject(
                            e.index, e.event_id, "state", "conflict: state kept changing; retry"
                        )
                    )
        return out

    def _stale(self, e: Event, newer: tuple[float, str]) -> EventOutcome:
        return self._reject(
            e.index,
            e.event_id,
            "stale",
            f"stale: older than the stored state {_fmt(newer)}",
        )

    async def _attempt(
        self,
        events: list[Event],
        updaters: list[StateUpdater],
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
            new_users, new_items = await self._compute(upd, events, users, item_inputs)
            writes = []
            write_rows = []
            for row, e in enumerate(events):
                if (upd.model, e.index) in item_used:
                    continue
                writes.append((e.item_id, new_items[row], e.ts, e.event_id, items[row]))
                write_rows.append(row)
            results = await self.store.cas_states(upd.model, "item", writes)
            for row, res in zip(write_rows, results, strict=True):
                e = events[row]
                if res is CasOutcome.CONFLICT:
                    CAS_CONFLICTS.labels(state=f"{upd.model}:item").inc()
                    retry.add(e.index)
                elif res is CasOutcome.APPLIED:
                    item_used[(upd.model, e.index)] = items[row]
                # SAME (already applied by an earlier try) / STALE (item moved on): keep it.
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
        for e, r in zip(writable, results_u, strict=True):
            if r.outcome is UserOutcome.APPLIED:
                out.append(self._applied(e))
            elif r.outcome is UserOutcome.DUPLICATE:
                out.append(self._duplicate(e.index, e.event_id, "already applied"))
            elif r.outcome is UserOutcome.STALE:
                out.append(self._stale(e, r.newer or e.order))
            else:
                CAS_CONFLICTS.labels(state=f"{r.conflict_model}:user").inc()
                retry.add(e.index)
        return [e for e in events if e.index in retry]

    async def _compute(
        self,
        upd: StateUpdater,
        events: list[Event],
        users: list[VersionedState | None],
        items: list[VersionedState | None],
    ) -> tuple[np.ndarray, np.ndarray]:
        u0 = np.asarray(upd.initial_user_state(), dtype=np.float32).reshape(-1)
        i0 = np.asarray(upd.initial_item_state(), dtype=np.float32).reshape(-1)
        user_states = np.stack([u0 if s is None else self._fit(s, upd.user_dim, u0) for s in users])
        item_states = np.stack([i0 if s is None else self._fit(s, upd.item_dim, i0) for s in items])
        event_ts = np.asarray([e.ts for e in events], dtype=np.float64)
        user_prev = np.asarray(
            [e.ts if s is None else s.ts for e, s in zip(events, users, strict=True)],
            dtype=np.float64,
        )
        item_prev = np.asarray(
            [e.ts if s is None else s.ts for e, s in zip(events, items, strict=True)],
            dtype=np.float64,
        )
        item_prev = np.minimum(item_prev, event_ts)  # an item newer than the event: no decay
        new_u, new_i = await upd.update(events, user_states, item_states, user_prev, item_prev)
        new_u = np.asarray(new_u, dtype=np.float32)
        new_i = np.asarray(new_i, dtype=np.float32)
        b = len(events)
        if new_u.shape != (b, upd.user_dim) or new_i.shape != (b, upd.item_dim):
            raise NotReady(
                f"state updater {upd.model!r} returned {new_u.shape}/{new_i.shape}, "
                f"expected ({b}, {upd.user_dim})/({b}, {upd.item_dim})"
            )
        if not (np.isfinite(new_u).all() and np.isfinite(new_i).all()):
            raise NotReady(f"state updater {upd.model!r} produced non-finite states")
        return new_u, new_i

    @staticmethod
    def _fit(state: VersionedState, dim: int, initial: np.ndarray) -> np.ndarray:
        """A stored state of another size (a model version with a new width) restarts from
        the initial state rather than failing every event of that user."""
        return state.vector if state.vector.shape == (dim,) else initial
