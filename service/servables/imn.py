"""IMN-Net serving: the events pipeline's state updater and next-item recommendations.

Two ONNX graphs per version (see `models/imn.py`): ``update`` (one event per row -> new user
and item states) and ``score`` (a user's state -> top-k over the item table). No torch here.

State in Redis (model name ``imn``, through `service.state.store.StateStore`):

- user: ``[h_u^g (D), h_u^l (D), last item index, seconds from the last purchase to the
  state's time]`` (float32, 2D + 2). Keeping the last item and the purchase clock in the
  vector means a recommendation is one Redis read; the state's own ``ts`` is the time of the
  user's last event.
- item: ``h_i`` (D).

Each replica holds the scoring table ``[h_i, i_bar]`` for every vocabulary item in memory,
bound to the ``score`` graph as its shared input (on the GPU when there is one). It starts
from the artifact's table, is overlaid with the item states in Redis when the version loads,
is written through by this process's own updates (so a replica sees its own events at
once on the CPU; with the table on the GPU, at the next re-bind, to avoid copying the whole
table after every event) and is re-read from Redis every `REFRESH_S` seconds in the
background (so it sees other replicas' events within that delay).

NOTE: states are tied to the model version that wrote them (the last-item index refers to its
vocabulary); a new version with another vocabulary should start from an empty state prefix.
Items outside the vocabulary get states in Redis but cannot be recommended until a version
that knows them is trained.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from starlette.datastructures import State

from service.actions import ACTIONS
from service.errors import InvalidInput, NotReady
from service.runtime.coalesce import Coalescer, Rows
from service.runtime.registry import LoadedModel, ModelRegistry
from service.servables.loaded import Loaded, per_version
from service.servables.observe import observe_served
from service.servables.wiring import Wiring
from service.state import keys
from service.state.store import StateStore, VersionedState

log = logging.getLogger(__name__)

MODEL = "imn"
REFRESH_S = 5.0


@dataclass
class IMNTables:
    """Per-version objects built by the load hook (stored in ``loaded.state``)."""

    dim: int
    k_max: int
    items: list[str]  # index -> item id ("" = unknown)
    item_index: dict[str, int]
    user_index: dict[str, int]
    table: np.ndarray  # [N, 2D] float32, bound as the score graph's shared input
    popularity: np.ndarray  # [N] float64 counts in the artifact (the fallback without Redis)
    init_user: np.ndarray  # [2D + 2]
    init_item: np.ndarray  # [D]
    on_device: bool  # the bound copy lives on the GPU: in-place edits need a re-bind
    refreshed_at: float = 0.0
    refreshing: asyncio.Task[None] | None = field(default=None, repr=False)

    def user_idx(self, user_ids: Sequence[str]) -> np.ndarray:
        return np.asarray([self.user_index.get(u, 0) for u in user_ids], dtype=np.int64)

    def item_idx(self, item_ids: Sequence[str]) -> np.ndarray:
        return np.asarray([self.item_index.get(i, 0) for i in item_ids], dtype=np.int64)

    def popular(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k item indices by count (stable: lower index first on ties), item 0 excluded."""
        counts = self.popularity[1:]
        order = np.argsort(-counts, kind="stable")[:k]
        return order + 1, counts[order]


def build_tables(loaded: LoadedModel) -> IMNTables:
    """Read the artifact's files into an `IMNTables` and bind the table to the score graph."""
    cfg = loaded.manifest.config
    dim = int(cfg["embed_dim"])
    items = list(loaded.manifest.vocabularies["items"])
    users = list(loaded.manifest.vocabularies["users"])
    table = np.load(loaded.path / "item_table.npy").astype(np.float32)
    if table.shape != (len(items), 2 * dim):
        raise NotReady(f"imn item table {table.shape} does not match the vocabulary")
    init_user = np.concatenate(
        [
            np.load(loaded.path / "initial_user_state.npy").astype(np.float32),
            np.zeros(2, np.float32),
        ]
    )
    tables = IMNTables(
        dim=dim,
        k_max=int(min(cfg["top_k"], len(items) - 1)),
        items=items,
        item_index={item: i for i, item in enumerate(items) if i},
        user_index={user: i for i, user in enumerate(users) if i},
        table=np.ascontiguousarray(table),
        popularity=np.load(loaded.path / "popularity.npy").astype(np.float64),
        init_user=init_user,
        init_item=np.load(loaded.path / "initial_item_state.npy").astype(np.float32),
        on_device=bool(getattr(loaded.sessions.get("score"), "use_io_binding", False)),
    )
    loaded.set_shared_inputs("score", {"item_table": tables.table})
    return tables


def tables_of(loaded: Loaded) -> IMNTables:
    tables = loaded.state.get(MODEL)
    if not isinstance(tables, IMNTables):
        raise NotReady("imn tables are not built for this version yet")
    return tables


def popularity_key(loaded: Loaded) -> str:
    """The version's shared popularity counts in Redis (`StateStore.seed_counts`)."""
    return keys.popularity(MODEL, loaded.version)


async def refresh_from_store(loaded: LoadedModel, store: StateStore) -> int:
    """Overlay the item states stored in Redis onto the in-memory table, and make sure the
    version's shared popularity counts start from the artifact's; returns rows set."""
    tables = tables_of(loaded)
    await store.seed_counts(
        popularity_key(loaded),
        [(item, float(tables.popularity[i])) for i, item in enumerate(tables.items) if i],
    )
    n = 0
    async for item_id, state in store.scan_states(MODEL, "item"):
        idx = tables.item_index.get(item_id)
        if idx is not None and state.vector.shape == (tables.dim,):
            tables.table[idx, : tables.dim] = state.vector
            n += 1
    tables.refreshed_at = time.monotonic()
    if tables.on_device:
        loaded.set_shared_inputs("score", {"item_table": tables.table})
    return n


class IMNUpdater:
    """`service.events.StateUpdater` for IMN: one ``update`` graph call per wave."""

    model = MODEL

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry

    @property
    def counters(self) -> list[str]:
        """Applied events count into the served version's shared popularity."""
        return [popularity_key(self.registry.get(MODEL))]

    def _tables(self) -> tuple[Any, IMNTables]:
        loaded = self.registry.get(MODEL)
        return loaded, tables_of(loaded)

    # Widths follow the loaded version.
    @property
    def user_dim(self) -> int:
        return 2 * self._tables()[1].dim + 2

    @property
    def item_dim(self) -> int:
        return self._tables()[1].dim

    def initial_user_state(self) -> np.ndarray:
        return self._tables()[1].init_user

    def initial_item_state(self) -> np.ndarray:
        return self._tables()[1].init_item

    async def update(
        self,
        events: Sequence[Any],
        user_states: np.ndarray,
        item_states: np.ndarray,
        user_prev_ts: np.ndarray,
        item_prev_ts: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        loaded, t = self._tables()
        d = t.dim
        ts = np.asarray([e.ts for e in events], dtype=np.float64)
        dt_user = np.maximum(ts - user_prev_ts, 0.0)
        dt_purchase = dt_user + user_states[:, 2 * d + 1].astype(np.float64)
        is_purchase = np.asarray([e.action == "purchase" for e in events], dtype=np.float32)
        features = np.zeros((len(events), len(ACTIONS)), dtype=np.float32)
        for row, e in enumerate(events):
            if e.action in ACTIONS:
                features[row, ACTIONS.index(e.action)] = 1.0
        item_idx = t.item_idx([e.item_id for e in events])
        out = await loaded.infer(
            "update",
            {
                "user_state": user_states[:, : 2 * d],
                "item_state": item_states,
                "user_index": t.user_idx([e.user_id for e in events]),
                "item_index": item_idx,
                "dt_user": dt_user.astype(np.float32),
                "dt_item": np.maximum(ts - item_prev_ts, 0.0).astype(np.float32),
                "dt_purchase": dt_purchase.astype(np.float32),
                "features": features,
                "is_purchase": is_purchase,
            },
            joined=True,  # a wave of events
        )
        new_user = np.empty((len(events), 2 * d + 2), dtype=np.float32)
        new_user[:, : 2 * d] = out["new_user_state"]
        new_user[:, 2 * d] = item_idx
        new_user[:, 2 * d + 1] = np.where(is_purchase > 0, 0.0, dt_purchase)
        new_item = np.asarray(out["new_item_state"], dtype=np.float32)
        return new_user, new_item

    def committed(self, events: Sequence[Any], item_states: np.ndarray) -> None:
        """Write-through of the item states the store accepted: this replica ranks with its
        own events at once (see module doc), and never with a state Redis refused."""
        _, t = self._tables()
        item_idx = t.item_idx([e.item_id for e in events])
        known = item_idx > 0
        t.table[item_idx[known], : t.dim] = item_states[known]


@dataclass(frozen=True)
class Recommendation:
    items: list[tuple[str, float]]
    fallback: bool
    reason: str | None
    version: str


async def recommend(
    loaded: LoadedModel, store: StateStore | None, user_id: str, k: int, at: float | None = None
) -> Recommendation:
    """Top-k next items for `user_id` at time `at` (default now), popularity if no state.

    With a store, concurrent requests are scored in waves (`recommendation_waves`): one state
    read and one `score` call for all of them.
    """
    t = tables_of(loaded)
    if not 1 <= k <= t.k_max:
        raise InvalidInput("k", f"must be between 1 and {t.k_max}")
    now = time.time() if at is None else float(at)
    if store is None:
        return Recommendation(await _popular(loaded, None, t, k), True, NO_STATE, loaded.version)
    _maybe_refresh(loaded, store, t)
    rows = await recommendation_waves(loaded).submit(store, [(user_id, now)])
    reason = STATE_REASONS[int(rows["state"][0])]
    if reason is not None:
        return Recommendation(await _popular(loaded, store, t, k), True, reason, loaded.version)
    ids = rows["item_ids"][0][:k].tolist()
    scores = rows["scores"][0][:k].tolist()
    items = t.items
    return Recommendation(
        [(items[i], s) for i, s in zip(ids, scores, strict=True)],
        False,
        None,
        loaded.version,
    )


NO_STATE = "no state for this user"
# Users per wave: one `score` call, whose [users, items] score matrix bounds it (256 rows of a
# 1M-item table are 1 GB of float32), as the micro-batcher's default row bound did before.
WAVE_USERS = 256
STATE_REASONS: tuple[str | None, ...] = (None, NO_STATE, "state from another model width")


def recommendation_waves(loaded: Loaded) -> Coalescer[StateStore, tuple[str, float]]:
    """This version's coalescer of (user, time) lookups on one store (`Coalescer`)."""
    return per_version(loaded, "imn.waves", _new_recommendation_waves)


def _new_recommendation_waves(loaded: Loaded) -> Coalescer[StateStore, tuple[str, float]]:
    async def wave(store: StateStore, asked: list[tuple[str, float]]) -> Rows:
        t = tables_of(loaded)
        d, n = t.dim, len(asked)
        states = await store.get_states(MODEL, "user", [u for u, _ in asked])
        code = np.ones(n, dtype=np.int64)  # STATE_REASONS index: 1 = no state
        found: list[tuple[int, VersionedState]] = []
        for r, state in enumerate(states):
            if state is not None:
                code[r] = 0 if state.vector.shape == (2 * d + 2,) else 2
                if not code[r]:
                    found.append((r, state))
        item_ids = np.zeros((n, t.k_max), dtype=np.int64)
        scores = np.zeros((n, t.k_max), dtype=np.float32)
        if found:
            rows = [r for r, _ in found]
            vec = np.stack([state.vector for _, state in found])
            dt_user = np.maximum(np.asarray([asked[r][1] - st.ts for r, st in found]), 0.0)
            last = vec[:, 2 * d].astype(np.int64)
            out = await loaded.infer(
                "score",
                {
                    "user_state": vec[:, : 2 * d],
                    "user_index": t.user_idx([asked[r][0] for r in rows]),
                    "last_item": np.where((last >= 0) & (last < len(t.items)), last, 0),
                    "dt_user": dt_user.astype(np.float32),
                    "dt_limited": (dt_user + vec[:, 2 * d + 1]).astype(np.float32),
                },
                joined=True,  # a wave of users: a small table's call runs on the loop
            )
            item_ids[rows] = out["item_ids"][:, : t.k_max]
            scores[rows] = out["scores"][:, : t.k_max]
            observe_served(MODEL, {"top_score": scores[rows, 0]})
        return {"item_ids": item_ids, "scores": scores, "state": code}

    return Coalescer(wave, model=MODEL, name=f"{MODEL}-{loaded.version}", max_items=WAVE_USERS)


async def _popular(
    loaded: Loaded, store: StateStore | None, t: IMNTables, k: int
) -> list[tuple[str, float]]:
    """The k most interacted-with items: the counts every replica shares in Redis (artifact
    counts plus applied events), or the artifact's own without a store."""
    shared = await store.top_counts(popularity_key(loaded), k) if store is not None else []
    if len(shared) >= k:
        return shared
    seen = {item for item, _ in shared}
    ids, counts = t.popular(k + len(shared))
    rest = [(t.items[i], c) for i, c in zip(ids.tolist(), counts.tolist(), strict=True)]
    return (shared + [(i, c) for i, c in rest if i not in seen])[:k]


def _maybe_refresh(loaded: LoadedModel, store: StateStore, t: IMNTables) -> None:
    """Start a background re-read of the item states when the last one is `REFRESH_S` old."""
    if t.refreshing is not None and not t.refreshing.done():
        return
    if time.monotonic() - t.refreshed_at < REFRESH_S:
        return

    async def run() -> None:
        try:
            await refresh_from_store(loaded, store)
        except Exception as exc:  # a failed refresh keeps the current table; retried later
            log.warning("imn item table refresh failed", extra={"reason": str(exc)})
            t.refreshed_at = time.monotonic()

    t.refreshing = asyncio.get_running_loop().create_task(run())


class IMNServable:
    """Request logic of `/v1/recommendations` and IMN's part of `/v1/events`."""

    model = MODEL

    async def recommend(
        self,
        loaded: LoadedModel,
        store: StateStore | None,
        user_id: str,
        k: int,
        at: float | None = None,
    ) -> Recommendation:
        return await recommend(loaded, store, user_id, k, at)

    def wiring(self, state: State) -> Wiring:
        """IMN binds its item table (from the artifact, overlaid with Redis) when a version
        loads, and updates user and item states on every accepted event."""
        return _imn_wiring(state)


def _imn_wiring(state: State) -> Wiring:
    async def on_load(loaded: LoadedModel) -> None:
        tables = build_tables(loaded)
        loaded.state[MODEL] = tables
        store = getattr(state, "store", None)  # connected by the lifespan, maybe later
        if store is not None:
            n = await refresh_from_store(loaded, store)
            log.info("imn item table loaded", extra={"from_redis": n, "items": len(tables.items)})

    return Wiring(MODEL, load_hooks=(on_load,), updaters=(IMNUpdater(state.registry),))


SERVABLE = IMNServable()
