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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np
from starlette.datastructures import State

from service.actions import ACTION_IDS
from service.errors import InvalidInput, NotReady
from service.occasions import OCCASION_INDEX, OCCASIONS, OccasionCalendar
from service.runtime.coalesce import Coalescer, Rows
from service.servables.cvr_features import (
    FIELDS,
    FeatureSpec,
    Histories,
    history_fields_many,
    row_ranges,
)
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


class SequenceSource(Protocol):
    """Each user's recent behaviour sequence, as the events pipeline keeps it."""

    async def histories(self, user_ids: Sequence[str]) -> Histories:
        """History k is the sequence of `user_ids[k]`."""
        ...

    def __hash__(self) -> int: ...  # concurrent requests' waves join per source (the store)


@dataclass
class PairInput:
    user_id: str
    item_id: str
    category_id: str | None = None  # default: the item's category in the artifact
    ts: int | None = None  # click time; default: the request's `at`
    occasion: str | None = None  # default: from the artifact's calendar at `ts`
    sequence: Sequence[SeqEvent] | None = None  # carried: Redis is not read for this pair


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
        sequences: Sequence[Sequence[SeqEvent]],
        at: int,
    ) -> tuple[dict[str, np.ndarray], list[tuple[str, str, int]]]:
        """Graph inputs, and per pair (occasion, where it came from, events before the click).

        `sequences[k]` is pair k's user history (any order; only events before the click
        count)."""
        return self.features_of(cfg, pairs, histories_of(sequences), np.arange(len(pairs)), at)

    def features_of(
        self,
        cfg: CvrVersionConfig,
        pairs: Sequence[PairInput],
        hist: Histories,
        owner: np.ndarray,
        at: int,
    ) -> tuple[dict[str, np.ndarray], list[tuple[str, str, int]]]:
        """`features` with pair k reading history `owner[k]` of `hist`: one history per user
        of a wave, however many of its pairs read it, and array operations over all pairs."""
        n, seq_len = len(pairs), cfg.spec.seq_len
        ts = np.fromiter((at if p.ts is None else p.ts for p in pairs), np.int64, n)
        item_ids = np.fromiter((cfg.items.get(p.item_id, 0) for p in pairs), np.int64, n)
        categories = [
            p.category_id
            if p.category_id is not None
            else (cfg.cat_names[int(cfg.item_table[i, 3])] if i else "")
            for p, i in zip(pairs, item_ids.tolist(), strict=True)
        ]
        occasions = [
            (p.occasion, "request") if p.occasion is not None else (cfg.occasion_at(t), "calendar")
            for p, t in zip(pairs, ts.tolist(), strict=True)
        ]
        values, seq_lo, hi = history_fields_many(
            hist, owner, [p.item_id for p in pairs], categories, ts, cfg.spec
        )
        day = ts // 86400
        values.update(
            occasion=np.fromiter((OCCASION_INDEX[o] for o, _ in occasions), np.int64, n),
            dow=(day + 3) % 7,  # as `context_fields`: Monday = 0, UTC
            hour=(ts % 86400) // 3600,
            user=np.fromiter((cfg.users.get(p.user_id, 0) for p in pairs), np.int64, n),
            item=item_ids,
            category=np.fromiter((cfg.cats.get(c, 0) for c in categories), np.int64, n),
            i_clicks=cfg.item_table[item_ids, 0],
            i_buys=cfg.item_table[item_ids, 1],
            i_cvr=cfg.item_table[item_ids, 2],
        )
        fields = np.stack([np.asarray(values[f], dtype=np.int64) for f in FIELDS], axis=1)
        rows, pair = row_ranges(seq_lo, hi)  # each pair's sequence, right-aligned
        col = seq_len - (hi[pair] - rows)
        seq_i = np.zeros((n, seq_len), dtype=np.int64)
        seq_c = np.zeros((n, seq_len), dtype=np.int64)
        seq_a = np.zeros((n, seq_len), dtype=np.int64)
        seq_i[pair, col] = [cfg.items.get(hist.items[r], 0) for r in rows.tolist()]
        seq_c[pair, col] = [cfg.cats.get(hist.categories[r], 0) for r in rows.tolist()]
        seq_a[pair, col] = hist.actions[rows]
        before = (hi - hist.starts[owner]).tolist()
        used = [(o, src, b) for (o, src), b in zip(occasions, before, strict=True)]
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
            for j, event in enumerate(pair.sequence or ()):
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

    def waves(self, loaded: Loaded) -> Coalescer[SequenceSource, PairInput]:
        """This version's coalescer: concurrent requests' stored pairs scored in one wave.

        Keyed by the sequence source (the store), so a wave is one Redis pipeline for every
        user of its pairs and one ORT call; each pair carries its own click time.
        """
        return per_version(loaded, "cvr.waves", self._new_waves)

    def _new_waves(self, loaded: Loaded) -> Coalescer[SequenceSource, PairInput]:
        async def wave(source: SequenceSource, pairs: list[PairInput]) -> Rows:
            need = sorted({p.user_id for p in pairs})
            index = {u: k for k, u in enumerate(need)}
            owner = np.fromiter((index[p.user_id] for p in pairs), np.int64, len(pairs))
            hist = await source.histories(need)
            return await self._model_scores(loaded, self.config(loaded), pairs, hist, owner)

        return Coalescer(wave, model=MODEL, name=f"{MODEL}-{loaded.version}")

    async def _model_scores(
        self,
        loaded: Loaded,
        cfg: CvrVersionConfig,
        pairs: Sequence[PairInput],
        hist: Histories,
        owner: np.ndarray,
    ) -> Rows:
        """Per pair (each with its `ts`; pair k reads history `owner[k]`): the scores, the
        occasion's index, whether the request named it, and the events before the click."""
        inputs, used = self.features_of(cfg, pairs, hist, owner, 0)
        out = await loaded.infer(GRAPH, inputs, joined=True)
        cvr, base = np.asarray(out["cvr"]).reshape(-1), np.asarray(out["base_cvr"]).reshape(-1)
        observe_served(MODEL, {"cvr": cvr, "base_cvr": base})
        return {
            "cvr": cvr,
            "base_cvr": base,
            "occasion": np.asarray([OCCASION_INDEX[u[0]] for u in used], dtype=np.int64),
            "from_request": np.asarray([u[1] == "request" for u in used], dtype=bool),
            "history_events": np.asarray([u[2] for u in used], dtype=np.int64),
        }

    async def _score_slice(
        self,
        loaded: Loaded,
        cfg: CvrVersionConfig,
        pairs: Sequence[PairInput],
        source: SequenceSource | None,
        at: int,
    ) -> list[dict[str, Any]]:
        pairs = [p if p.ts is not None else replace(p, ts=at) for p in pairs]
        carried = [k for k, p in enumerate(pairs) if p.sequence is not None]
        stored = [k for k, p in enumerate(pairs) if p.sequence is None]
        parts: list[tuple[list[int], Rows]] = []
        if carried:
            hist = histories_of([pairs[k].sequence or () for k in carried])
            owner = np.arange(len(carried))
            rows = await self._model_scores(loaded, cfg, [pairs[k] for k in carried], hist, owner)
            parts.append((carried, rows))
        if stored:
            if source is None:
                raise NotReady("no state store: carry each pair's `sequence` in the request")
            rows = await self.waves(loaded).submit(source, [pairs[k] for k in stored])
            parts.append((stored, rows))
        answers: list[dict[str, Any]] = [{} for _ in pairs]
        for where, part in parts:
            cvr, base, occasion, from_request, history = (
                part[name].tolist()
                for name in ("cvr", "base_cvr", "occasion", "from_request", "history_events")
            )
            for j, k in enumerate(where):
                answers[k] = {
                    "user_id": pairs[k].user_id,
                    "item_id": pairs[k].item_id,
                    "cvr": cvr[j],
                    "base_cvr": base[j],
                    "occasion": OCCASIONS[occasion[j]],
                    "occasion_source": "request" if from_request[j] else "calendar",
                    "history_events": history[j],
                }
        return answers


@dataclass(frozen=True)
class StoreSequences:
    """Behaviour sequences from the Redis state the events pipeline keeps.

    Reads `StateStore.sequences` (each user's newest events, oldest first; the store's
    `sequence_max` bounds them) and keeps the newest `stats_window` plus a margin, since
    the features never look further back than that.
    """

    store: StateStore  # equal for one store, so a wave's key joins requests on it
    n: int | None = None

    async def histories(self, user_ids: Sequence[str]) -> Histories:
        rows = await self.store.sequences(list(user_ids), self.n)
        lengths: list[int] = []
        stamps: list[np.ndarray] = []
        actions: list[str] = []
        items: list[str] = []
        categories: list[str | None] = []
        for row in rows:
            keep = [k for k, a in enumerate(row.actions) if a in ACTION_IDS]
            if len(keep) == len(row):  # the pipeline writes known actions: the usual case
                stamps.append(row.timestamps)
                actions += row.actions
                items += row.items
                categories += row.categories
            else:  # entries of an action this version does not know carry no feature
                stamps.append(row.timestamps[keep])
                actions += [row.actions[k] for k in keep]
                items += [row.items[k] for k in keep]
                categories += [row.categories[k] for k in keep]
            lengths.append(len(keep))
        return Histories.from_columns(
            lengths,
            np.concatenate(stamps).astype(np.int64) if stamps else np.zeros(0, np.int64),
            np.fromiter((ACTION_IDS[a] for a in actions), np.int64, len(actions)),
            items,
            [c or "" for c in categories],
        )


def histories_of(sequences: Sequence[Sequence[SeqEvent]]) -> Histories:
    """Carried sequences (one per pair, any order) as `Histories`, each in time order."""
    events = [e for seq in sequences for e in seq]
    return Histories.from_columns(
        [len(seq) for seq in sequences],
        np.fromiter((e.ts for e in events), np.int64, len(events)),
        np.fromiter((ACTION_IDS[e.action] for e in events), np.int64, len(events)),
        [e.item_id for e in events],
        [e.category_id for e in events],
    )


def sequence_source(store: StateStore | None) -> SequenceSource | None:
    """The Redis-backed source, or None when the app runs without a state store."""
    if store is None:
        return None
    if not hasattr(store, "sequences"):
        raise NotReady("the state store does not keep behaviour sequences yet")
    return StoreSequences(store)


SERVABLE = CvrServable()
