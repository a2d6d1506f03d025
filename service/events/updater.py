"""`StateUpdater`: a model's recurrent state update plugged into the events pipeline, and
`compute_states`, the one place that turns stored states into an updater's inputs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from service.errors import NotReady
from service.events.schema import Event
from service.state.store import VersionedState


class StateUpdater(Protocol):
    """A model's recurrent state update (IMN registers one).

    `update` gets one wave: B events whose users are distinct and whose items are distinct,
    the current user and item states ``[B, user_dim]`` / ``[B, item_dim]`` float32 (initial
    states where none is stored), and the times of those states (``[B]`` float64; the event's
    own time where there is no state, so the elapsed time is 0). It returns the new states,
    same shapes, row i for event i. `committed` is told which of them the store accepted
    (events whose write conflicted are recomputed and come again), so an in-memory copy (an
    item table) only ever holds states that are in Redis.
    """

    # Read-only: a model's widths follow its loaded version, so an updater may compute them.
    @property
    def model(self) -> str: ...

    @property
    def user_dim(self) -> int: ...

    @property
    def item_dim(self) -> int: ...

    @property
    def counters(self) -> Sequence[str]:
        """Sorted sets the store adds one to per applied event, for the event's item (a
        shared popularity fallback); empty when the model keeps none."""
        ...

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

    def committed(self, events: Sequence[Event], item_states: np.ndarray) -> None: ...


def ready_updaters(updaters: Sequence[StateUpdater]) -> list[StateUpdater]:
    """The updaters that can run now. One whose model is not loaded (its `user_dim` raises
    NotReady) is skipped for this batch, so events still keep sequences, counts and
    idempotency while a model is missing or warming up."""
    ready = []
    for upd in updaters:
        try:
            _ = (upd.user_dim, upd.item_dim)
        except NotReady:
            continue
        ready.append(upd)
    return ready


def _fit(state: VersionedState | None, dim: int, initial: np.ndarray) -> np.ndarray:
    """A stored state of another size (a model version with a new width) restarts from the
    initial state rather than failing every event of that user."""
    if state is None or state.vector.shape != (dim,):
        return initial
    return state.vector


async def compute_states(
    upd: StateUpdater,
    events: Sequence[Event],
    users: Sequence[VersionedState | None],
    items: Sequence[VersionedState | None],
) -> tuple[np.ndarray, np.ndarray]:
    """New user and item states of `events` from the states they apply to (one updater call).

    Elapsed times come from the states' own times; an item state newer than the event (an
    out-of-order delivery) decays by nothing rather than by a negative time.
    """
    u0 = np.asarray(upd.initial_user_state(), dtype=np.float32).reshape(-1)
    i0 = np.asarray(upd.initial_item_state(), dtype=np.float32).reshape(-1)
    user_states = np.stack([_fit(s, upd.user_dim, u0) for s in users])
    item_states = np.stack([_fit(s, upd.item_dim, i0) for s in items])
    event_ts = np.fromiter((e.ts for e in events), dtype=np.float64, count=len(events))
    user_prev = np.fromiter(
        (e.ts if s is None else s.ts for e, s in zip(events, users, strict=True)),
        dtype=np.float64,
        count=len(events),
    )
    item_prev = np.fromiter(
        (e.ts if s is None else s.ts for e, s in zip(events, items, strict=True)),
        dtype=np.float64,
        count=len(events),
    )
    item_prev = np.minimum(item_prev, event_ts)
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
