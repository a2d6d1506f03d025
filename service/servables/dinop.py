"""DINOP serving: item states over the pre-sale period in Redis, promotion-day forecasts.

Why states: DINOP's item representation is a TUC-GRU over the pre-sale periods pooled by
attention (eq. 4). The artifact's `step` graph advances one period with a streaming
softmax, so an item's whole pre-sale history folds into one vector
[h, m, s, acc | SII, SIS, SU, scale | last] kept in Redis, `last` being the newest
folded period's sales (an uplift GMV head predicts the change from it)
(`sc:{i:<region/category>}:st:dinop:<version>:<promotion>`).
The state advances as each period's sales arrive through `POST /v1/sales` (the hook below)
and a forecast reads it back without the caller resending history.

Writes go through the state store's compare-and-set on (period date, "presale"): a state
advanced to week W is never replaced by one computed only up to an earlier week, and two
writers racing on one item cannot interleave (the loser re-reads and retries).

Feature transforms mirror `training/features/dinop.py` (the service imports no training
code): signed-log sales and markdowns, z-scored shopper context with the manifest's
statistics, one-hot region/category/promotion type, the static-window summary.
NOTE: a pre-sale period's festival flag is 1 when a registered promotion falls on it (the
service has no calendar of its own); shopper context missing for a date is carried forward
from the region's history, and is the training mean (z = 0) when none is known.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from starlette.datastructures import State

from service.errors import InvalidInput, NotFound, NotReady
from service.runtime.registry import ModelRegistry
from service.servables.dinop_features import DinopFeatures
from service.servables.loaded import Loaded, per_version
from service.servables.observe import observe_served
from service.servables.stmp import StoreSalesHistory
from service.servables.wiring import Wiring
from service.state import keys
from service.state.store import CasOutcome, StateStore, VersionedState

log = logging.getLogger(__name__)
MODEL = "dinop"
ORDINARY = "ordinary"
PRESALE_EVENT = "presale"
N_SLOTS = 10
PROMOTIONS_KEY = f"{keys.PREFIX}:dinop:promotions"
MAX_CAS_RETRIES = 3


def item_id(region: str, category: str) -> str:
    return f"{region}/{category}"


@dataclass(frozen=True)
class Promotion:
    type: str
    date: dt.date

    @property
    def key(self) -> str:
        return f"{self.type}@{self.date.isoformat()}"


@dataclass(kw_only=True)
class Tables(DinopFeatures):
    """Per-version constants from the manifest (built once per loaded version): the feature
    spec training wrote, plus what serving needs around the graphs."""

    hidden: int
    step_days: int
    profiles: dict[str, dict[str, Any]]
    tasks: list[str]
    act_dim: int

    @property
    def state_dim(self) -> int:
        return 2 * self.hidden + 2 + self.sii_dim + self.sis_dim + self.du_dim + 2

    @classmethod
    def from_loaded(cls, loaded: Loaded) -> Tables:
        config = loaded.manifest.config
        act_spec = next(
            (t for t in loaded.manifest.graphs["forecast"].inputs if t.name == "act"), None
        )
        act_dim = int(act_spec.shape[-1]) if act_spec and isinstance(act_spec.shape[-1], int) else 1
        return cls(
            **DinopFeatures.from_config(config["featurizer"]).to_config(),
            hidden=int(config["hidden"]),
            step_days=7 if config.get("frequency", "W") == "W" else 1,
            profiles=dict(config.get("static_profiles", {})),
            tasks=list(config.get("tasks", [])),
            act_dim=act_dim,
        )

    def sii(self, region: str, category: str, promo_type: str) -> np.ndarray:
        """SII of an item from its region's static profile (stored in the manifest)."""
        return self.sii_row(region, category, self.profiles.get(region, {}), promo_type)


def category_cum_share(values: dict[str, float], item: str) -> tuple[float, float]:
    """(share, eq. 2 cumulative share) of `item` among `values` (item -> sales, >= 0)."""
    g = {k: max(0.0, v) for k, v in values.items() if np.isfinite(v)}
    total = sum(g.values())
    if total <= 0 or item not in g:
        return 0.0, 1.0
    mine = g[item]
    return mine / total, sum(v for v in g.values() if v >= mine) / total


@dataclass
class ItemState:
    """Decoded state of one item for one promotion."""

    vector: np.ndarray
    last_date: dt.date | None  # newest pre-sale period folded in
    stored: VersionedState | None


def _date_ts(day: dt.date) -> float:
    return float(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp())


def _ts_date(ts: float) -> dt.date:
    return dt.datetime.fromtimestamp(ts, dt.UTC).date()


class DinopServable:
    """Request logic around the `step`, `forecast` and `bop` graphs."""

    model = MODEL

    def wiring(self, state: State) -> Wiring:
        """DINOP advances item states when `POST /v1/sales` brings a pre-sale period."""
        return Wiring(self.model, sales_hooks=(self.on_sales,))

    def tables(self, loaded: Loaded) -> Tables:
        return per_version(loaded, "dinop.tables", Tables.from_loaded)

    # ---- promotions ------------------------------------------------------------------------
    async def register(self, store: StateStore, promo: Promotion) -> None:
        value = json.dumps({"type": promo.type, "date": promo.date.isoformat()})
        await store.execute("dinop_promotions", "HSET", PROMOTIONS_KEY, promo.key, value)

    async def promotions(self, store: StateStore) -> list[Promotion]:
        flat = await store.execute("dinop_promotions", "HGETALL", PROMOTIONS_KEY)
        out = []
        for value in (flat or [])[1::2]:
            data = json.loads(value)
            out.append(Promotion(data["type"], dt.date.fromisoformat(data["date"])))
        return sorted(out, key=lambda p: (p.date, p.type))

    def check_promotion(self, tb: Tables, promo: Promotion, field: str) -> None:
        if promo.type not in tb.promo_types:
            raise InvalidInput(
                f"{field}.type",
                f"unknown promotion type {promo.type!r}; this model knows {tb.promo_types}",
            )

    def presale_dates(self, tb: Tables, promo: Promotion) -> list[dt.date]:
        step = dt.timedelta(days=tb.step_days)
        return [promo.date - step * (tb.presale_steps - k) for k in range(tb.presale_steps)]

    def static_dates(self, tb: Tables, promo: Promotion) -> list[dt.date]:
        step = dt.timedelta(days=tb.step_days)
        first = promo.date - step * (tb.presale_steps + tb.static_steps)
        return [first + step * k for k in range(tb.static_steps)]

    # ---- state -----------------------------------------------------------------------------
    def _model_key(self, promo: Promotion, version: str) -> str:
        # A version's hidden space is its own: states never cross versions.
        return f"{MODEL}:{version}:{promo.key}"

    def _split(self, tb: Tables, vec: np.ndarray) -> dict[str, np.ndarray]:
        H = tb.hidden
        o = 0
        parts = {}
        for name, size in (
            ("h", H),
            ("m", 1),
            ("s", 1),
            ("acc", H),
            ("sii", tb.sii_dim),
            ("sis", tb.sis_dim),
            ("su", tb.du_dim),
            ("scale", 1),
            ("last", 1),
        ):
            parts[name] = vec[o : o + size]
            o += size
        return parts

    async def _statics(
        self,
        tb: Tables,
        history: StoreSalesHistory,
        promo: Promotion,
        items: Sequence[tuple[str, str]],
    ) -> dict[tuple[str, str], np.ndarray]:
        """[SII, SIS, SU, GMV scale] per item from the static window in the sales history."""
        sdates = [d.isoformat() for d in self.static_dates(tb, promo)]
        categories = sorted({c for _, c in items})
        # category totals across every known region, for the item's usual standing
        regions = sorted(set(tb.regions) | {r for r, _ in items})
        means: dict[str, dict[str, float]] = defaultdict(dict)
        for region in regions:
            found = await history.sales_history(region, categories)
            for category, rows in found.items():
                vals = [rows[d] for d in sdates if d in rows]
                if vals:
                    means[category][item_id(region, category)] = float(np.mean(vals))
        out: dict[tuple[str, str], np.ndarray] = {}
        ext_cache: dict[str, dict[str, dict[str, float]]] = {}
        for region, category in items:
            rows = (await history.sales_history(region, [category])).get(category, {})
            static_sales = np.array([rows.get(d, np.nan) for d in sdates], dtype=np.float64)
            share, cum = category_cum_share(means[category], item_id(region, category))
            usual = ~np.isnan(static_sales)
            if region not in ext_cache:
                ext_cache[region] = await history.external_history(region, tb.du_columns)
            du = np.array(
                [
                    [ext_cache[region].get(d, {}).get(c, np.nan) for c in tb.du_columns]
                    for d in sdates
                ],
                dtype=np.float64,
            ).reshape(len(sdates), len(tb.du_columns))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                su_raw = np.nanmean(du, axis=0) if tb.du_columns else np.zeros(0)
            out[(region, category)] = np.concatenate(
                [
                    tb.sii(region, category, promo.type),
                    tb.sis_row(static_sales, share, cum),
                    tb.du_norm(su_raw[None, :])[0] if tb.du_columns else np.zeros(1),
                    [float(np.nanmean(np.abs(static_sales))) if usual.any() else 0.0],
                    [0.0],  # `last`: no pre-sale period folded yet (training's 0 too)
                ]
            )
        return out

    async def advance(
        self,
        loaded: Loaded,
        store: StateStore,
        promo: Promotion,
        items: Sequence[tuple[str, str]],
    ) -> dict[tuple[str, str], ItemState]:
        """Fold every pre-sale period in the history that the stored state lacks; write back
        with compare-and-set. Returns each item's current state."""
        tb = self.tables(loaded)
        history = StoreSalesHistory(store)
        model_key = self._model_key(promo, loaded.version)
        result: dict[tuple[str, str], ItemState] = {}
        pending = list(dict.fromkeys(items))
        for _ in range(MAX_CAS_RETRIES):
            if not pending:
                break
            ids = [item_id(r, c) for r, c in pending]
            stored = await store.get_states(model_key, "item", ids)
            missing = [it for it, st in zip(pending, stored, strict=True) if st is None]
            statics = await self._statics(tb, history, promo, missing) if missing else {}
            states: dict[tuple[str, str], ItemState] = {}
            for it, st in zip(pending, stored, strict=True):
                if st is not None and len(st.vector) == tb.state_dim:
                    last = None if st.event_id == "init" else _ts_date(st.ts)
                    states[it] = ItemState(st.vector.astype(np.float32), last, st)
                else:
                    H = tb.hidden
                    init = np.concatenate(
                        [np.zeros(H), [-1e30, 0.0], np.zeros(H), statics.get(it, np.zeros(0))]
                    )
                    if it not in statics:  # a stored state of the wrong size: rebuild
                        statics.update(await self._statics(tb, history, promo, [it]))
                        init = np.concatenate([np.zeros(H), [-1e30, 0.0], np.zeros(H), statics[it]])
                    states[it] = ItemState(init.astype(np.float32), None, st)
            new_vecs, new_last = await self._fold(loaded, tb, history, promo, states)
            writes: list[tuple[tuple[str, str], np.ndarray, float, str, VersionedState | None]] = []
            for it, state in states.items():
                last = new_last.get(it)
                if last is None or (state.last_date is not None and last <= state.last_date):
                    if state.stored is None:  # persist the statics once, as the "init" state
                        writes.append((it, state.vector, 0.0, "init", None))
                    result[it] = state
                    continue
                writes.append((it, new_vecs[it], _date_ts(last), PRESALE_EVENT, state.stored))
                result[it] = ItemState(new_vecs[it], last, None)
            outcomes = await store.cas_states(
                model_key,
                "item",
                [(item_id(*it), vec, ts, eid, exp) for it, vec, ts, eid, exp in writes],
            )
            retry = []
            for (it, *_), outcome in zip(writes, outcomes, strict=True):
                if outcome in (CasOutcome.CONFLICT, CasOutcome.STALE):
                    retry.append(it)  # someone else advanced it: re-read and fold the rest
            pending = retry
        if pending:
            raise NotReady("item states are being updated concurrently; retry", 0.5)
        return result

    async def _fold(
        self,
        loaded: Loaded,
        tb: Tables,
        history: StoreSalesHistory,
        promo: Promotion,
        states: dict[tuple[str, str], ItemState],
    ) -> tuple[dict[tuple[str, str], np.ndarray], dict[tuple[str, str], dt.date]]:
        """Run the `step` graph over the new pre-sale periods of every item, period-major.

        When every state has folded the last pre-sale period already (the common case once a
        promotion's pre-sale window is over) nothing can change and no history is read: those
        reads were the larger part of a promotion-items request.
        """
        dates = [
            day
            for day in self.presale_dates(tb, promo)
            if any(st.last_date is None or day > st.last_date for st in states.values())
        ]
        if not dates:
            return {it: st.vector.copy() for it, st in states.items()}, {}
        festival_dates = {p.date for p in await self.promotions(history.store)}
        by_region: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for it in states:
            by_region[it[0]].append(it)
        cols = tb.dis_columns + tb.du_columns
        rows: dict[tuple[str, str], dict[str, float]] = {}
        ext: dict[str, dict[str, dict[str, float]]] = {}
        for region, its in by_region.items():
            found = await history.sales_history(region, [c for _, c in its])
            for it in its:
                rows[it] = found.get(it[1], {})
            ext[region] = await history.external_history(region, cols) if cols else {}
        vecs = {it: st.vector.copy() for it, st in states.items()}
        last: dict[tuple[str, str], dt.date] = {}
        H = tb.hidden
        for day in dates:
            d = day.isoformat()
            todo = [
                it
                for it, st in states.items()
                if d in rows[it] and (st.last_date is None or day > st.last_date)
            ]
            if not todo:
                continue
            dis = np.stack(
                [
                    tb.dis_row(
                        rows[it][d],
                        np.array(
                            [ext[it[0]].get(d, {}).get(c, np.nan) for c in tb.dis_columns],
                            dtype=np.float64,
                        ),
                        day in festival_dates,
                    )
                    for it in todo
                ]
            ).astype(np.float32)
            du = np.stack([self._du_at(tb, ext[it[0]], d) for it in todo]).astype(np.float32)
            parts = [self._split(tb, vecs[it]) for it in todo]
            out = await loaded.infer(
                "step",
                {
                    "h": np.stack([p["h"] for p in parts]),
                    "m": np.stack([p["m"] for p in parts]),
                    "s": np.stack([p["s"] for p in parts]),
                    "acc": np.stack([p["acc"] for p in parts]),
                    "dis": dis,
                    "du": du,
                    "su": np.stack([p["su"] for p in parts]).astype(np.float32),
                    "valid": np.ones((len(todo), 1), np.float32),
                },
            )
            for k, it in enumerate(todo):
                v = vecs[it]
                v[:H] = out["h_out"][k]
                v[H : H + 1] = out["m_out"][k]
                v[H + 1 : H + 2] = out["s_out"][k]
                v[H + 2 : 2 * H + 2] = out["acc_out"][k]
                v[-1] = rows[it][d]  # the newest folded period's sales: the uplift's base
                last[it] = day
        return vecs, last

    def _du_at(self, tb: Tables, ext: dict[str, dict[str, float]], d: str) -> np.ndarray:
        if not tb.du_columns:
            return np.zeros(1)
        values = []
        earlier = sorted(k for k in ext if k <= d)
        for c in tb.du_columns:
            value = np.nan
            for k in reversed(earlier):  # carry the last known value forward
                if c in ext[k]:
                    value = ext[k][c]
                    break
            values.append(value)
        row: np.ndarray = tb.du_norm(np.asarray(values, dtype=np.float64)[None, :])[0]
        return row

    # ---- requests --------------------------------------------------------------------------
    async def forecast(
        self,
        loaded: Loaded,
        store: StateStore,
        promo: Promotion,
        items: Sequence[tuple[str, str]],
        activity: Sequence[float] | None,
    ) -> tuple[list[dict[str, Any]], list[str]]:
        tb = self.tables(loaded)
        self.check_promotion(tb, promo, "promotion")
        notes: list[str] = []
        if activity is not None and len(activity) != tb.act_dim:
            raise InvalidInput("activity", f"needs {tb.act_dim} features, got {len(activity)}")
        states = await self.advance(loaded, store, promo, items)
        order = list(items)
        parts = [self._split(tb, states[it].vector) for it in order]
        act = np.zeros((len(order), tb.act_dim), np.float32)
        if activity is not None:
            act[:] = np.asarray(activity, dtype=np.float32)
        out = await loaded.infer(
            "forecast",
            {
                "s": np.stack([p["s"] for p in parts]).astype(np.float32),
                "acc": np.stack([p["acc"] for p in parts]).astype(np.float32),
                "sii": np.stack([p["sii"] for p in parts]).astype(np.float32),
                "sis": np.stack([p["sis"] for p in parts]).astype(np.float32),
                "act": act,
            },
        )
        ja_ok = "ja" in tb.tasks and activity is not None
        if "ja" not in tb.tasks:
            notes.append(
                "join_activity_probability is null: this model version was not trained on "
                "activity-participation labels (none of its data records them)"
            )
        presale = set(self.presale_dates(tb, promo))
        observe_served(MODEL, {"best_seller_probability": out["bsp"]})
        if ja_ok:
            observe_served(MODEL, {"join_activity_probability": out["ja"]})
        results = []
        for k, it in enumerate(order):
            st = states[it]
            seen = sum(1 for d in presale if st.last_date is not None and d <= st.last_date)
            slots = out["ss"][k].astype(np.float64)
            results.append(
                {
                    "region": it[0],
                    "category": it[1],
                    "gmv": float(
                        tb.gmv_from(out["gmv"][k], parts[k]["scale"][0], parts[k]["last"][0])
                    ),
                    "best_seller_probability": float(out["bsp"][k]),
                    "slot_probabilities": [float(x) for x in slots],
                    "slot": int(np.argmax(slots)) + 1,
                    "join_activity_probability": float(out["ja"][k]) if ja_ok else None,
                    "presale_periods_seen": seen,
                    "known_item": it[0] in tb.regions and it[1] in tb.categories,
                }
            )
        return results, notes

    async def buy_through_promotion(
        self,
        loaded: Loaded,
        store: StateStore,
        promo: Promotion,
        pairs: Sequence[tuple[str, str, str, Sequence[float]]],
    ) -> list[float]:
        """P(user buys item on the promotion day) from the item state and user features."""
        tb = self.tables(loaded)
        self.check_promotion(tb, promo, "promotion")
        if "bop" not in tb.tasks:
            raise NotFound("trained task of the loaded dinop version", "bop")
        user_spec = next(t for t in loaded.manifest.graphs["bop"].inputs if t.name == "user")
        user_dim = user_spec.shape[-1]
        if not isinstance(user_dim, int):
            raise NotReady("the loaded dinop version has no fixed user feature width")
        for i, (_, _, _, feats) in enumerate(pairs):
            if len(feats) != user_dim:
                raise InvalidInput(f"pairs.{i}.user_features", f"needs {user_dim} values")
        items = [(r, c) for _, r, c, _ in pairs]
        states = await self.advance(loaded, store, promo, items)
        parts = [self._split(tb, states[it].vector) for it in items]
        fc = await loaded.infer(
            "forecast",
            {
                "s": np.stack([p["s"] for p in parts]).astype(np.float32),
                "acc": np.stack([p["acc"] for p in parts]).astype(np.float32),
                "sii": np.stack([p["sii"] for p in parts]).astype(np.float32),
                "sis": np.stack([p["sis"] for p in parts]).astype(np.float32),
                "act": np.zeros((len(items), tb.act_dim), np.float32),
            },
        )
        out = await loaded.infer(
            "bop",
            {
                "rep": fc["rep"].astype(np.float32),
                "user": np.asarray([p[3] for p in pairs], dtype=np.float32),
            },
        )
        return [float(x) for x in out["bop"]]

    async def on_sales(
        self, records: Sequence[Any], registry: ModelRegistry, store: StateStore | None
    ) -> None:
        """`POST /v1/sales` hook: advance the states of every item whose new period lies in a
        registered promotion's pre-sale window."""
        if store is None:  # the sales route refuses without a store; nothing to advance
            return
        try:
            loaded = registry.get(MODEL)
        except NotReady:
            return
        tb = self.tables(loaded)
        promos = [p for p in await self.promotions(store) if p.type in tb.promo_types]
        for promo in promos:
            window = set(self.presale_dates(tb, promo))
            items = list(dict.fromkeys((r.region, r.category) for r in records if r.date in window))
            if items:
                await self.advance(loaded, store, promo, items)


SERVABLE = DinopServable()
