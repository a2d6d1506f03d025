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


class SequenceSource(Protocol):
    """Each user's recent behaviour sequence (oldest first), as the events pipeline keeps it."""

    async def sequences(self, user_ids: Sequence[str]) -> list[list[SeqEvent]]: ...

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
        """Graph inputs, and per pair (occasion, where it came from, events before the click)."""
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
            before = sorted((e for e in seq if e.ts < ts), key=lambda e: e.ts)
            used.append((occ, source, len(before)))
            h_items = np.array([e.item_id for e in before], dtype=object)
            h_cats = np.array([e.category_id for e in before], dtype=object)
            h_acts = np.array([ACTION_IDS[e.action] for e in before], dtype=np.int64)
            h_ts = np.array([e.ts for e in before], dtype=np.int64)
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
            recent = before[window]
            m = len(recent)
            if m:
                seq_i[k, -m:] = [cfg.items.get(e.item_id, 0) for e in recent]
                seq_c[k, -m:] = [cfg.cats.get(e.category_id, 0) for e in recent]
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

        async def wave(source: SequenceSource, pairs: list[PairInput]) -> Rows:
            need = sorted({p.user_id for p in pairs})
            stored = dict(zip(need, await source.sequences(need), strict=True))
            sequences = [stored[p.user_id] for p in pairs]
            return await self._model_scores(loaded, self.config(loaded), pairs, sequences)

        return per_version(
            loaded, "cvr.waves", lambda v: Coalescer(wave, name=f"{MODEL}-{v.version}")
        )

    async def _model_scores(
        self,
        loaded: Loaded,
        cfg: CvrVersionConfig,
        pairs: Sequence[PairInput],
        sequences: Sequence[Sequence[SeqEvent]],
    ) -> Rows:
        """Per pair (each with its `ts`): the scores, the occasion's index, whether the request
        named it, and how many events before the click the features used."""
        inputs, used = self.features(cfg, pairs, sequences, 0)
        out = await loaded.infer(GRAPH, inputs)
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
            sequences = [list(pairs[k].sequence or ()) for k in carried]
            rows = await self._model_scores(loaded, cfg, [pairs[k] for k in carried], sequences)
            parts.append((carried, rows))
        if stored:
            if source is None:
                raise NotReady("no state store: carry each pair's `sequence` in the request")
            rows = await self.waves(loaded).submit(source, [pairs[k] for k in stored])
            parts.append((stored, rows))
        by_pair: list[dict[str, Any]] = [{} for _ in pairs]
        for where, part in parts:
            columns = {name: values.tolist() for name, values in part.items()}
            for j, k in enumerate(where):
                by_pair[k] = {name: values[j] for name, values in columns.items()}
        return [
            {
                "user_id": p.user_id,
                "item_id": p.item_id,
                "cvr": row["cvr"],
                "base_cvr": row["base_cvr"],
                "occasion": OCCASIONS[row["occasion"]],
                "occasion_source": "request" if row["from_request"] else "calendar",
                "history_events": row["history_events"],
            }
            for p, row in zip(pairs, by_pair, strict=True)
        ]


@dataclass(frozen=True)
class StoreSequences:
    """Behaviour sequences from the Redis state the events pipeline keeps.

    Reads `StateStore.sequences` (each user's newest events, oldest first; the store's
    `sequence_max` bounds them) and keeps the newest `stats_window` plus a margin, since
    the features never look further back than that.
    """

    store: StateStore  # equal for one store, so a wave's key joins requests on it
    n: int | None = None

    async def sequences(self, user_ids: Sequence[str]) -> list[list[SeqEvent]]:
        rows = await self.store.sequences(list(user_ids), self.n)
        out: list[list[SeqEvent]] = []
        for row in rows:
            out.append(
                [
                    SeqEvent(str(item), str(cat or ""), str(action), int(ts))
                    for ts, action, cat, item in zip(
                        row.timestamps, row.actions, row.categories, row.items, strict=True
                    )
                    if action in ACTION_IDS
                ]
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
