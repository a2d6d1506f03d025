"""CVR serving: MetaCVR conversion rate for a batch of clicked (user, item, context) pairs.

No torch here. Per pair the servable

1. finds the occasion (BP / DP / AP / NP) from the promotion calendar stored in the loaded
   artifact's manifest at the pair's time, unless the request names one;
2. takes the user's behaviour sequence from the request when carried there (stateless), or
   from the Redis sequence the `/v1/events` pipeline keeps;
3. computes the same user / interaction fields as training with
   `service.servables.cvr_features.history_fields` (pure numpy), item fields from the artifact's
   item table (the snapshot at the end of its data window), context fields;
4. sends all rows through the `score` graph in one call (the runtime micro-batches it with
   other requests). Prototypes and distances are constants inside that graph, so a
   prototype refresh is simply a new version the registry swaps in.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np
from starlette.datastructures import State

from service.actions import ACTION_IDS
from service.errors import InvalidInput, NotReady
from service.occasions import OCCASION_INDEX, OCCASIONS, OccasionCalendar
from service.servables.cvr_features import FIELDS, FeatureSpec, context_fields, history_fields
from service.servables.loaded import Loaded, per_version
from service.servables.observe import observe_served
from service.servables.wiring import Wiring
from service.state.store import StateStore

MODEL = "cvr"
GRAPH = "score"
MAX_PAIRS = 4_000  # per call: a full body parses in about 16 ms, so probes stay under 100 ms
MAX_SEQUENCE = 1_000  # events per carried sequence
SLICE = 256  # pairs read, featurised and scored between two yields to the event loop


class SeqEvent(NamedTuple):
    """One past behaviour: (item, category or "", action, unix seconds). A named tuple: a
    request builds hundreds of them, and a frozen dataclass costs several times as much."""

    item_id: str
    category_id: str
    action: str
    ts: int


@dataclass(frozen=True)
class SeqColumns:
    """One user's behaviour sequence as columns (oldest first when `ordered`).

    Features take a pair's events before its click from these with one comparison over the
    times instead of a Python step per event; a user's columns (and their vocabulary ids,
    `vocab_ids`) are built once and shared by every pair of that user in a call.
    """

    items: np.ndarray  # object: raw item ids
    cats: np.ndarray  # object: raw category ids, "" when unknown
    acts: np.ndarray  # int64: ACTION_IDS
    ts: np.ndarray  # int64: unix seconds
    ordered: bool  # times never decrease (the stored sequence always; a carried one maybe)
    _ids: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, compare=False)

    @classmethod
    def of(cls, events: Sequence[SeqEvent]) -> SeqColumns:
        ts = np.fromiter((e.ts for e in events), dtype=np.int64, count=len(events))
        return cls(
            np.array([e.item_id for e in events], dtype=object),
            np.array([e.category_id for e in events], dtype=object),
            np.fromiter((ACTION_IDS[e.action] for e in events), dtype=np.int64, count=len(ts)),
            ts,
            bool(len(ts) < 2 or np.all(ts[1:] >= ts[:-1])),
        )

    def vocab_ids(self, cfg: CvrVersionConfig) -> tuple[np.ndarray, np.ndarray]:
        """Item and category vocabulary ids of every event (0 = unknown), once per version."""
        key = id(cfg)
        if key not in self._ids:
            self._ids[key] = (
                np.fromiter((cfg.items.get(i, 0) for i in self.items), np.int64, len(self.items)),
                np.fromiter((cfg.cats.get(c, 0) for c in self.cats), np.int64, len(self.cats)),
            )
        return self._ids[key]


UserEvents = Sequence[SeqEvent] | SeqColumns


class SequenceSource(Protocol):
    """Each user's recent behaviour sequence (oldest first), as the events pipeline keeps it."""

    async def sequences(self, user_ids: Sequence[str]) -> Sequence[UserEvents]: ...


@dataclass
class PairInput:
    user_id: str
    item_id: str
    category_id: str | None = None  # default: the item's category in the artifact
    ts: int | None = None  # click time; default: the request's `at`
    occasion: str | None = None  # default: from the artifact's calendar at `ts`
    sequence: UserEvents | None = None  # carried: Redis is not read for this pair


@dataclass
class CvrVersionConfig:
    """Everything per version that the servable derives from the manifest and extra files."""

    spec: FeatureSpec
    calendar: OccasionCalendar
    users: dict[str, int]
    items: dict[str, int]
    cats: dict[str, int]
    cat_names: list[str]  # vocab id -> raw category ("" for 0)
    item_table: np.ndarray  # [n_items, 4]: clicks, buys, cvr buckets, category id
    _occasion_by_day: dict[int, str] = field(default_factory=dict)

    def occasion_at(self, ts: int) -> str:
        """The calendar's occasion at `ts`, memoised per UTC day (the calendar is per version)."""
        day = int(ts) // 86400
        occ = self._occasion_by_day.get(day)
        if occ is None:
            occ = OCCASIONS[int(self.calendar.occasion_ids([day * 86400])[0])]
            if len(self._occasion_by_day) > 10_000:
                self._occasion_by_day.clear()
            self._occasion_by_day[day] = occ
        return occ

    @classmethod
    def from_loaded(cls, loaded: Loaded) -> CvrVersionConfig:
        cfg = loaded.manifest.config
        feats = cfg["features"]
        if list(feats["fields"]) != list(FIELDS):
            raise NotReady(f"cvr artifact {loaded.version} has another field layout")
        vocab = loaded.manifest.vocabularies
        table = np.load(Path(loaded.path) / cfg["item_stats_file"])
        return cls(
            spec=FeatureSpec(
                seq_len=int(feats["seq_len"]), stats_window=int(feats["stats_window"])
            ),
            calendar=OccasionCalendar.from_dict(cfg["calendar"]),
            users={v: i + 1 for i, v in enumerate(vocab["user"])},
            items={v: i + 1 for i, v in enumerate(vocab["item"])},
            cats={v: i + 1 for i, v in enumerate(vocab["category"])},
            cat_names=["", *vocab["category"]],
            item_table=np.asarray(table, dtype=np.int64),
        )


class CvrServable:
    """Request logic; one instance per process, per-version config kept on the version."""

    model = MODEL

    def wiring(self, state: State) -> Wiring:
        """Nothing beyond its routes (`service.servables.wiring`)."""
        return Wiring(self.model)

    def config(self, loaded: Loaded) -> CvrVersionConfig:
        return per_version(loaded, "cvr.config", CvrVersionConfig.from_loaded)

    def features(
        self,
        cfg: CvrVersionConfig,
        pairs: Sequence[PairInput],
        sequences: Sequence[UserEvents],
        at: int,
    ) -> tuple[dict[str, np.ndarray], list[tuple[str, str, int]]]:
        """Graph inputs, and per pair (occasion, where it came from, events before the click)."""
        shared: dict[int, SeqColumns] = {}  # one SeqColumns per distinct sequence object
        n, seq_len = len(pairs), cfg.spec.seq_len
        fields = np.zeros((n, len(FIELDS)), dtype=np.int64)
        seq_i = np.zeros((n, seq_len), dtype=np.int64)
        seq_c = np.zeros((n, seq_len), dtype=np.int64)
        seq_a = np.zeros((n, seq_len), dtype=np.int64)
        used: list[tuple[str, str, int]] = []
        for k, (pair, seq) in enumerate(zip(pairs, sequences, strict=True)):
            ts = at if pair.ts is None else pair.ts
            item_id = cfg.items.get(pair.item_id, 0)
            if pair.category_id is not None:
                category = pair.category_id
            else:
                category = cfg.cat_names[int(cfg.item_table[item_id, 3])] if item_id else ""
            if pair.occasion is not None:
                occ, source = pair.occasion, "request"
            else:
                occ, source = cfg.occasion_at(ts), "calendar"
            if isinstance(seq, SeqColumns):
                cols = seq
            else:
                cols = shared.get(id(seq)) or shared.setdefault(id(seq), SeqColumns.of(seq))
            # The events strictly before the click, oldest first (stable for equal times).
            if cols.ordered:
                before: np.ndarray | slice = slice(0, int(np.searchsorted(cols.ts, ts, "left")))
            else:
                earlier = np.flatnonzero(cols.ts < ts)
                before = earlier[np.argsort(cols.ts[earlier], kind="stable")]
            h_items, h_cats = cols.items[before], cols.cats[before]
            h_acts, h_ts = cols.acts[before], cols.ts[before]
            used.append((occ, source, len(h_ts)))
            values, window = history_fields(
                h_items, h_cats, h_acts, h_ts, pair.item_id, category, ts, cfg.spec
            )
            values.update(context_fields(ts, OCCASION_INDEX[occ]))
            values.update(
                user=cfg.users.get(pair.user_id, 0),
                item=item_id,
                category=cfg.cats.get(category, 0),
                i_clicks=int(cfg.item_table[item_id, 0]),
                i_buys=int(cfg.item_table[item_id, 1]),
                i_cvr=int(cfg.item_table[item_id, 2]),
            )
            fields[k] = [values[f] for f in FIELDS]
            m = len(h_acts[window])
            if m:
                item_ids, cat_ids = cols.vocab_ids(cfg)
                seq_i[k, -m:] = item_ids[before][window]
                seq_c[k, -m:] = cat_ids[before][window]
                seq_a[k, -m:] = h_acts[window]
        inputs = {"fields": fields, "seq_items": seq_i, "seq_cats": seq_c, "seq_actions": seq_a}
        return inputs, used

    async def score(
        self,
        loaded: Loaded,
        pairs: Sequence[PairInput],
        source: SequenceSource | None,
        at: int | None = None,
    ) -> tuple[int, list[dict[str, Any]]]:
        """(request time, one result per pair in request order)."""
        if not pairs:
            raise InvalidInput("pairs", "at least one pair is required")
        if len(pairs) > MAX_PAIRS:
            raise InvalidInput("pairs", f"at most {MAX_PAIRS} pairs per call")
        for k, pair in enumerate(pairs):
            if pair.occasion is not None and pair.occasion not in OCCASION_INDEX:
                raise InvalidInput(f"pairs.{k}.occasion", f"must be one of {list(OCCASIONS)}")
            carried = pair.sequence if not isinstance(pair.sequence, SeqColumns) else ()
            for j, event in enumerate(carried or ()):
                if event.action not in ACTION_IDS:
                    raise InvalidInput(f"pairs.{k}.sequence.{j}.action", "unknown action")
        at = int(time.time()) if at is None else int(at)
        cfg = self.config(loaded)
        results: list[dict[str, Any]] = []
        # Slice by slice, each awaiting its Redis read and its ORT call, so a 10,000-pair
        # call never holds the event loop for long (liveness probes answer meanwhile).
        for start in range(0, len(pairs), SLICE):
            results += await self._score_slice(
                loaded, cfg, pairs[start : start + SLICE], source, at
            )
        return at, results

    async def _score_slice(
        self,
        loaded: Loaded,
        cfg: CvrVersionConfig,
        pairs: Sequence[PairInput],
        source: SequenceSource | None,
        at: int,
    ) -> list[dict[str, Any]]:
        need = sorted({p.user_id for p in pairs if p.sequence is None})
        stored: dict[str, UserEvents] = {}
        if need:
            if source is None:
                raise NotReady("no state store: carry each pair's `sequence` in the request")
            stored = dict(zip(need, await source.sequences(need), strict=True))
        sequences: list[UserEvents] = [
            p.sequence if p.sequence is not None else stored.get(p.user_id, []) for p in pairs
        ]
        inputs, used = self.features(cfg, pairs, sequences, at)
        out = await loaded.infer(GRAPH, inputs)
        cvr, base = np.asarray(out["cvr"]), np.asarray(out["base_cvr"])
        observe_served(MODEL, {"cvr": cvr, "base_cvr": base})
        return [
            {
                "user_id": p.user_id,
                "item_id": p.item_id,
                "cvr": float(cvr[k]),
                "base_cvr": float(base[k]),
                "occasion": used[k][0],
                "occasion_source": used[k][1],
                "history_events": used[k][2],
            }
            for k, p in enumerate(pairs)
        ]


class StoreSequences:
    """Behaviour sequences from the Redis state the events pipeline keeps.

    Reads `StateStore.sequences` (each user's newest events, oldest first; the store's
    `sequence_max` bounds them) and keeps the newest `stats_window` plus a margin, since
    the features never look further back than that.
    """

    def __init__(self, store: StateStore, n: int | None = None) -> None:
        self.store = store
        self.n = n

    async def sequences(self, user_ids: Sequence[str]) -> list[SeqColumns]:
        rows = await self.store.sequences(list(user_ids), self.n)
        out: list[SeqColumns] = []
        for row in rows:
            acts = np.fromiter(
                (ACTION_IDS.get(a, 0) for a in row.actions), np.int64, len(row.actions)
            )
            known = acts > 0  # actions this model does not know are left out, as in training
            ts = np.asarray(row.timestamps, dtype=np.float64).astype(np.int64)[known]
            out.append(
                SeqColumns(
                    np.array(row.items, dtype=object)[known],
                    np.array([c or "" for c in row.categories], dtype=object)[known],
                    acts[known],
                    ts,
                    # The store keeps each user's events in (ts, event id) order; checked,
                    # not assumed, since an out-of-order list would silently change features.
                    bool(len(ts) < 2 or np.all(ts[1:] >= ts[:-1])),
                )
            )
        return out


def sequence_source(store: StateStore | None) -> SequenceSource | None:
    """The Redis-backed source, or None when the app runs without a state store."""
    if store is None:
        return None
    if not hasattr(store, "sequences"):
        raise NotReady("the state store does not keep behaviour sequences yet")
    return StoreSequences(store)


SERVABLE = CvrServable()
