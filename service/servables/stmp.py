"""STMP serving: festival sales forecasts with intervals, from ingested region history.

No torch here: the artifact ships two ONNX graphs (`forecast`, `encode`) and `tables.npz`
(per-series scales and static features, the calendar's day types and target features for
the training span plus a few years, the export-time task embeddings of every region and
day type, and the last window of every series).

Forecast of one region: every requested category is a series with its own last known
period (training data, overlaid by ingested sales); the graph is called once per future
period for all series still short of the end, the point forecast is appended to each
series' window (a mean path), and the predictive samples of each period give the
intervals. psi is sampled inside the graph; this module only supplies standard normal
noise. NOTE: past the first period the intervals are conditional on the mean path, so they
understate the uncertainty of long horizons; the evaluation measures coverage on exactly
this mean path, 1-8 periods ahead (the `horizons` block of the STMP accuracy results).

Task representations: the SD-task (region, day type) uses the mean of the region's and the
day type's pooled embeddings (as in training's evaluation). A region's embedding is
refreshed when sales are ingested: the `encode` graph embeds the ingested periods as
context instances and the pooled mean is blended with the export-time embedding by
instance counts, then kept in Redis.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from starlette.datastructures import State

from service.errors import InvalidInput, NotFound
from service.runtime.manifest import Manifest
from service.servables.loaded import Loaded, per_version
from service.servables.wiring import Wiring
from service.state import keys
from service.state.store import StateStore, decode_vector, encode_vector

MODEL = "stmp"
DEFAULT_SAMPLES = 200  # predictive samples per period; fixed so the batcher can concatenate
HISTORY_LIMIT = 400  # periods of history kept per region x category in Redis
MAX_CONTEXT = 256  # ingested instances one refresh encodes


class SalesHistory(Protocol):
    """What the servable needs from the state store (see `service.api.routes.sales`)."""

    async def revision(self, region: str) -> int | None:
        """A number that changes whenever the region's histories or task change (None: not
        kept, so nothing read may be reused)."""
        ...

    async def sales_history(
        self, region: str, categories: Sequence[str]
    ) -> dict[str, dict[str, float]]: ...

    async def external_factors(
        self, region: str, factors: Sequence[str]
    ) -> dict[str, dict[str, float]]: ...

    async def get_task(self, region: str) -> tuple[np.ndarray, float] | None: ...

    async def set_task(self, region: str, vector: np.ndarray, weight: float) -> None: ...


@dataclass
class STMPTables:
    """Everything per version that is not per request; loaded once per artifact version."""

    version: str
    frequency: str
    period: int  # days per step
    window: int
    regions: list[str]
    categories: list[str]
    day_types: list[str]
    series: dict[tuple[str, str], int]
    scale: np.ndarray  # [N]
    static: np.ndarray  # [N, S]
    series_category: np.ndarray  # [N]
    series_region: np.ndarray  # [N]
    region_task: np.ndarray  # [R, E] (NaN rows: no context)
    region_task_count: np.ndarray  # [R]
    day_type_task: np.ndarray  # [J, E]
    calendar_start: dt.date
    calendar_day_type: np.ndarray  # [Tc]
    calendar_feats: np.ndarray  # [Tc, G]
    history: np.ndarray  # [N, W, F] last window of the training data
    history_end_step: int  # calendar step of the last training period
    ext_columns: list[str]
    ext_mean: np.ndarray
    ext_std: np.ndarray
    psi_dim: int
    samples: int
    region_index: dict[str, int] = field(default_factory=dict)
    category_index: dict[str, int] = field(default_factory=dict)
    # Derived once per version for the request path: the calendar's festival flag per step
    # and the step of every period date's ISO text (the form the store keeps dates in), so a
    # request looks its dates up instead of parsing each one.
    festival_flags: np.ndarray = field(init=False)
    step_by_date: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.festival_flags = (self.calendar_day_type != 0).astype(np.float32)
        self.step_by_date = {
            self.date_of(step).isoformat(): step for step in range(len(self.calendar_day_type))
        }

    @classmethod
    def load(cls, path: Path, manifest: Manifest, version: str) -> STMPTables:
        cfg = manifest.config
        arrays = np.load(Path(path) / "tables.npz")
        vocab = manifest.vocabularies
        regions, categories = list(vocab["region"]), list(vocab["category"])
        series_region = arrays["series_region"]
        series_category = arrays["series_category"]
        series = {
            (regions[int(r)], categories[int(c)]): i
            for i, (r, c) in enumerate(zip(series_region, series_category, strict=False))
        }
        start = dt.date.fromisoformat(cfg["calendar_start"][:10])
        period = 7 if cfg["frequency"] == "W" else 1
        end = dt.date.fromisoformat(cfg["history_end"][:10])
        ext = manifest.normalisation.get("external") or {}
        cols = list(manifest.normalisation.get("external_columns", []))
        return cls(
            version=version,
            frequency=cfg["frequency"],
            period=period,
            window=int(cfg["window"]),
            regions=regions,
            categories=categories,
            day_types=list(vocab["day_type"]),
            series=series,
            scale=arrays["scale"].astype(np.float64),
            static=arrays["static"].astype(np.float32),
            series_category=series_category.astype(np.int64),
            series_region=series_region.astype(np.int64),
            region_task=arrays["region_task"].astype(np.float32),
            region_task_count=arrays["region_task_count"].astype(np.float64),
            day_type_task=arrays["day_type_task"].astype(np.float32),
            calendar_start=start,
            calendar_day_type=arrays["calendar_day_type"].astype(np.int64),
            calendar_feats=arrays["calendar_feats"].astype(np.float32),
            history=arrays["history"].astype(np.float32),
            history_end_step=(end - start).days // period,
            ext_columns=cols,
            ext_mean=np.asarray(ext.get("mean", [0.0] * len(cols)), dtype=np.float64),
            ext_std=np.asarray(ext.get("std", [1.0] * len(cols)), dtype=np.float64),
            psi_dim=int(cfg["model"]["psi_dim"]),
            samples=int(cfg.get("samples", DEFAULT_SAMPLES)),
            region_index={r: i for i, r in enumerate(regions)},
            category_index={c: i for i, c in enumerate(categories)},
        )

    # ---- calendar ---------------------------------------------------------------------
    def step_of(self, date: dt.date) -> int | None:
        """Calendar step of a period date; None when the date is not on the period grid."""
        days = (date - self.calendar_start).days
        if days % self.period:
            return None
        step = days // self.period
        return step if 0 <= step < len(self.calendar_day_type) else None

    def step_of_text(self, date_s: str) -> int | None:
        """`step_of` for a stored ISO date; other spellings are parsed."""
        step = self.step_by_date.get(date_s)
        return step if step is not None else self.step_of(dt.date.fromisoformat(date_s))

    def steps_of(self, by_date: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray]:
        """The calendar steps and values of a {ISO date: value} history, dates off the
        model's calendar left out."""
        at = [
            (step, value)
            for date_s, value in by_date.items()
            if (step := self.step_of_text(date_s)) is not None
        ]
        steps = np.fromiter((step for step, _ in at), dtype=np.int64, count=len(at))
        values = np.fromiter((value for _, value in at), dtype=np.float64, count=len(at))
        return steps, values

    def date_of(self, step: int) -> dt.date:
        return self.calendar_start + dt.timedelta(days=step * self.period)

    def day_type_of(self, step: int) -> str:
        return self.day_types[int(self.calendar_day_type[step])]

    def festival(self, step: int) -> float:
        return float(self.festival_flags[step])


def _combine_task(region: np.ndarray, day_type: np.ndarray) -> np.ndarray:
    """Mean of the views that have context (NaN rows have none); zeros when neither has."""
    has_region = ~np.isnan(region[:, :1])
    has_day_type = ~np.isnan(day_type[:, :1])
    count = has_region.astype(np.float32) + has_day_type
    total = np.where(np.isnan(region), 0.0, region) + np.where(np.isnan(day_type), 0.0, day_type)
    return np.where(count > 0, total / np.maximum(count, 1), 0.0).astype(np.float32)


@dataclass
class SeriesState:
    """One series' dynamic rows by calendar step, and where its history ends.

    `rows` [Tc, F] holds a row for every step `known` marks (training tail, ingested sales,
    then the rollout's forecasts); `newest` is the latest of them, whose factors a gap and a
    forecast period carry.
    """

    rows: np.ndarray
    known: np.ndarray
    last: int
    newest: int = -1

    def __post_init__(self) -> None:
        if self.newest < 0:
            self.newest = self.last

    def copy(self) -> SeriesState:
        return SeriesState(self.rows.copy(), self.known.copy(), self.last, self.newest)

    def put(self, step: int, row: np.ndarray) -> None:
        self.rows[step] = row
        self.known[step] = True
        self.newest = max(self.newest, step)


@dataclass
class RegionStates:
    """Every series state of one region and its task, as of one history revision."""

    revision: int
    states: dict[int, SeriesState]
    task: tuple[np.ndarray, float] | None


class STMPServable:
    """Request logic of `/v1/forecast/festival` and the STMP part of `/v1/sales`."""

    model = MODEL

    def wiring(self, state: State) -> Wiring:
        """Nothing beyond its routes (`service.servables.wiring`)."""
        return Wiring(self.model)

    def __init__(self, seed: int | None = None) -> None:
        self._rng = np.random.default_rng(seed)

    def tables(self, loaded: Loaded) -> STMPTables:
        return per_version(
            loaded, "stmp.tables", lambda v: STMPTables.load(v.path, v.manifest, v.version)
        )

    # ---- history --------------------------------------------------------------------
    def _ext_rows(self, tb: STMPTables, factors: Mapping[str, Mapping[str, float]]) -> np.ndarray:
        """[Tc, X] standardised ingested factors by calendar step; NaN where a period did not
        report a factor. `factors`: factor -> {ISO date: value}, a column each."""
        out = np.full((len(tb.calendar_day_type), len(tb.ext_columns)), np.nan)
        for j, factor in enumerate(tb.ext_columns):
            steps, values = tb.steps_of(factors.get(factor, {}))
            out[steps, j] = (values - tb.ext_mean[j]) / tb.ext_std[j]
        return out

    def series_states(
        self,
        tb: STMPTables,
        series_ids: Sequence[int],
        sales: Mapping[str, Mapping[str, float]],
        factors: Mapping[str, Mapping[str, float]],
    ) -> list[SeriesState]:
        """Training tail overlaid by ingested sales, as dynamic feature rows per step.

        Rows live in one [Tc, F] array per series over the whole calendar (a few hundred
        steps), with a mask of the steps that have one: a request's windows are then slices,
        not a Python loop over a dict of rows per step (measured: the dict version was a third
        of a forecast request's CPU).
        """
        n_ext = len(tb.ext_columns)
        n_steps, n_feat = len(tb.calendar_day_type), tb.history.shape[2]
        ext = self._ext_rows(tb, factors)
        first = tb.history_end_step - tb.window + 1
        states = []
        for n in series_ids:
            rows = np.zeros((n_steps, n_feat), dtype=np.float32)
            known = np.zeros(n_steps, dtype=bool)
            rows[max(first, 0) : tb.history_end_step + 1] = tb.history[n, max(-first, 0) :]
            known[max(first, 0) : tb.history_end_step + 1] = True
            category = tb.categories[int(tb.series_category[n])]
            steps, values = tb.steps_of(sales.get(category, {}))
            # A corrected figure inside the training tail keeps that period's factors; a new
            # period starts from zeros (the array's initial value).
            rows[steps, 0] = values / tb.scale[n]
            rows[steps, 1] = 1.0
            rows[steps, -1] = tb.festival_flags[steps]
            known[steps] = True
            if n_ext:
                self._carry_factors(tb, rows, known, ext)
            states.append(SeriesState(rows=rows, known=known, last=int(np.flatnonzero(known)[-1])))
        return states

    @staticmethod
    def _carry_factors(
        tb: STMPTables, rows: np.ndarray, known: np.ndarray, ext: np.ndarray
    ) -> None:
        """External factors of the periods past training: the ingested ones where given, else
        the newest earlier known period's (carried forward, the training tail's at first)."""
        n_ext = ext.shape[1]
        steps = np.flatnonzero(known)
        given = ext[steps]  # [K, X]
        present = ~np.isnan(given)
        newest = np.maximum.accumulate(
            np.where(present, np.arange(len(steps))[:, None], -1), axis=0
        )
        initial = rows[tb.history_end_step, 2 : 2 + n_ext].copy()
        carried = np.where(
            newest >= 0, given[np.maximum(newest, 0), np.arange(n_ext)], initial
        ).astype(np.float32)
        future = steps > tb.history_end_step
        rows[steps[future], 2 : 2 + n_ext] = carried[future]

    @staticmethod
    def window_of(tb: STMPTables, state: SeriesState, step: int) -> np.ndarray:
        """[W, F] rows for steps step-W .. step-1; a gap is a period without sales."""
        steps = np.arange(step - tb.window, step)
        inside = (steps >= 0) & (steps < len(state.known))
        at = np.where(inside, steps, 0)
        has_row = inside & state.known[at]
        out = np.zeros((tb.window, tb.history.shape[2]), dtype=np.float32)
        out[:, 1] = 1.0
        out[:, 2:-1] = state.rows[state.newest, 2:-1]
        out[:, -1] = np.where(inside, tb.festival_flags[at], 0.0)
        out[has_row] = state.rows[steps[has_row]]
        return out

    # ---- forecast ---------------------------------------------------------------------
    def resolve_categories(
        self, tb: STMPTables, region: str, categories: Sequence[str] | None
    ) -> list[int]:
        if region not in tb.region_index:
            raise NotFound("region", region)
        wanted = list(categories) if categories else tb.categories
        ids = []
        for i, category in enumerate(wanted):
            n = tb.series.get((region, category))
            if n is None:
                if category not in tb.category_index:
                    raise InvalidInput(f"categories.{i}", f"unknown category {category!r}")
                if categories:
                    raise InvalidInput(
                        f"categories.{i}", f"region {region!r} has no history for {category!r}"
                    )
                continue
            ids.append(n)
        return ids

    def resolve_steps(
        self,
        tb: STMPTables,
        origin: int,
        start: dt.date | None,
        end: dt.date | None,
        day_type: str | None,
    ) -> tuple[int, int]:
        """First and last calendar step to return."""
        max_steps = 2 * (52 if tb.frequency == "W" else 364)
        if day_type is not None:
            if day_type not in tb.day_types:
                raise InvalidInput(
                    "day_type", f"unknown day type; known: {', '.join(tb.day_types)}"
                )
            j = tb.day_types.index(day_type)
            future = np.nonzero(tb.calendar_day_type[origin + 1 :] == j)[0]
            if not len(future):
                raise InvalidInput("day_type", "no occurrence inside the model's calendar")
            first = origin + 1 + int(future[0])
            # A multi-period festival (consecutive days): forecast all of it.
            last = first
            while last + 1 < len(tb.calendar_day_type) and tb.calendar_day_type[last + 1] == j:
                last += 1
            return first, last
        assert start is not None
        end = end or start
        days_from = (start - tb.calendar_start).days
        days_to = (end - tb.calendar_start).days
        first = max(-(-days_from // tb.period), 0)
        last = min(days_to // tb.period, len(tb.calendar_day_type) - 1)
        if first > last:
            raise InvalidInput(
                "start",
                f"no period date between start and end inside the model's calendar "
                f"({tb.date_of(0)} .. {tb.date_of(len(tb.calendar_day_type) - 1)}, "
                f"every {tb.period} day(s))",
            )
        if last <= origin:
            raise InvalidInput(
                "end", f"the range lies inside known history (known up to {tb.date_of(origin)})"
            )
        if last - origin > max_steps:
            raise InvalidInput(
                "end",
                f"more than {max_steps} periods past the known history ({tb.date_of(origin)})",
            )
        return max(first, origin + 1), last

    async def forecast(
        self,
        loaded: Loaded,
        history: SalesHistory,
        region: str,
        start: dt.date | None,
        end: dt.date | None,
        day_type: str | None,
        categories: Sequence[str] | None,
    ) -> dict[str, Any]:
        tb = self.tables(loaded)
        ids = self.resolve_categories(tb, region, categories)
        if not ids:
            raise NotFound("history for region", region)
        names = [tb.categories[int(tb.series_category[n])] for n in ids]
        states, task = await self.region_states(loaded, tb, history, region, ids)
        origin = max(s.last for s in states)
        first, last = self.resolve_steps(tb, origin, start, end, day_type)
        region_vec = tb.region_task[tb.region_index[region]]
        if task is not None:
            region_vec = task[0]
        out = await self.rollout(loaded, tb, ids, states, region_vec, first, last)
        return {
            "region": region,
            "model_version": tb.version,
            "frequency": tb.frequency,
            "history_end": tb.date_of(origin),
            "samples": tb.samples,
            "forecasts": [
                {"category": name, "periods": periods}
                for name, periods in zip(names, out, strict=False)
            ],
        }

    async def region_states(
        self,
        loaded: Loaded,
        tb: STMPTables,
        history: SalesHistory,
        region: str,
        ids: Sequence[int],
    ) -> tuple[list[SeriesState], tuple[np.ndarray, float] | None]:
        """Fresh copies of the states of series `ids` of `region`, and its task.

        Histories change when sales are ingested (a few times a day); forecasts read them
        on every request. So the states of all of a region's series are built once per
        history revision and kept with the model version (one entry per region, so bounded
        by the version's regions); a request costs one GET of the revision instead of a read
        per category and factor and the building (measured: about a third of a festival
        forecast's CPU). The revision is read before the histories, and every history write
        increments it in its own script (a task write right after it), so an entry is never
        kept under a revision newer than what it read: any replica sees another's ingest on
        its next request.
        """
        kept: dict[str, RegionStates] = per_version(loaded, "stmp.region_states", lambda _: {})
        revision = await history.revision(region)
        entry = kept.get(region)
        if revision is not None and entry is not None and entry.revision == revision:
            return [entry.states[n].copy() for n in ids], entry.task
        # Without a revision (nothing ingested through this version of the code) nothing is
        # kept, so only the requested series are built.
        every = ids if revision is None else [n for (r, _), n in tb.series.items() if r == region]
        sales, factors, task = await asyncio.gather(
            history.sales_history(
                region, [tb.categories[int(tb.series_category[n])] for n in every]
            ),
            history.external_factors(region, tb.ext_columns),
            history.get_task(region),
        )
        states = self.series_states(tb, every, sales, factors)
        if revision is None:
            return states, task
        by_series = dict(zip(every, states, strict=True))
        kept[region] = RegionStates(revision, by_series, task)
        return [by_series[n].copy() for n in ids], task

    async def rollout(
        self,
        loaded: Loaded,
        tb: STMPTables,
        ids: Sequence[int],
        states: list[SeriesState],
        region_vec: np.ndarray,
        first: int,
        last: int,
    ) -> list[list[dict[str, Any]]]:
        """Recursive one-step forecasts from each series' last known step to `last`."""
        results: list[list[dict[str, Any]]] = [[] for _ in ids]
        next_step = [s.last + 1 for s in states]
        n_feat = tb.history.shape[2]
        while True:
            active = [i for i, step in enumerate(next_step) if step <= last]
            if not active:
                break
            steps = np.array([next_step[i] for i in active])
            series = np.array([ids[i] for i in active])
            hist = np.stack([self.window_of(tb, states[i], next_step[i]) for i in active])
            b = len(active)
            task = _combine_task(
                np.broadcast_to(region_vec, (b, region_vec.shape[0])),
                tb.day_type_task[tb.calendar_day_type[steps]],
            )
            inputs = {
                "hist": hist,
                "static": tb.static[series],
                "category": tb.series_category[series],
                "target": tb.calendar_feats[steps],
                "task": task,
                "noise": self._rng.standard_normal((b, tb.samples, tb.psi_dim)).astype(np.float32),
                "obs_noise": self._rng.standard_normal((b, tb.samples)).astype(np.float32),
            }
            out = await loaded.infer("forecast", inputs)
            point, samples = out["point"], out["samples"]
            q = quantiles(samples, (0.025, 0.10, 0.90, 0.975))  # [4, B]
            scale = tb.scale[series]
            means, bounds = (point * scale).tolist(), (q * scale).tolist()
            for k, i in enumerate(active):
                step = next_step[i]
                row = np.zeros(n_feat, dtype=np.float32)
                row[0] = point[k]
                row[1] = 1.0
                row[2:-1] = states[i].rows[states[i].newest, 2:-1]
                row[-1] = tb.festival_flags[step]
                states[i].put(step, row)
                if step >= first:
                    results[i].append(
                        {
                            "date": tb.date_of(step),
                            "day_type": tb.day_type_of(step),
                            "mean": means[k],
                            "interval_80": {"lower": bounds[1][k], "upper": bounds[2][k]},
                            "interval_95": {"lower": bounds[0][k], "upper": bounds[3][k]},
                        }
                    )
                next_step[i] = step + 1
        return results

    # ---- ingestion ------------------------------------------------------------------
    def check_record(self, tb: STMPTables, date: dt.date) -> str | None:
        """Why a record cannot be used by this model (None when it can)."""
        if tb.step_of(date) is None:
            return (
                f"not a period date of the model's calendar (every {tb.period} day(s) from "
                f"{tb.calendar_start}, until {tb.date_of(len(tb.calendar_day_type) - 1)})"
            )
        return None

    async def refresh_region(self, loaded: Loaded, history: SalesHistory, region: str) -> bool:
        """Re-pool the region's task embedding with its ingested periods as context."""
        tb = self.tables(loaded)
        if region not in tb.region_index:
            return False
        ids = [n for (r, _), n in tb.series.items() if r == region]
        names = [tb.categories[int(tb.series_category[n])] for n in ids]
        sales, factors = await asyncio.gather(
            history.sales_history(region, names), history.external_factors(region, tb.ext_columns)
        )
        states = self.series_states(tb, ids, sales, factors)
        pairs: list[tuple[int, int]] = []
        for k, (_n, name) in enumerate(zip(ids, names, strict=False)):
            for date_s in sales.get(name, {}):
                step = tb.step_of(dt.date.fromisoformat(date_s))
                if step is not None and step > tb.history_end_step:
                    pairs.append((k, step))
        if not pairs:
            return False
        if len(pairs) > MAX_CONTEXT:
            pairs = sorted(pairs, key=lambda p: p[1])[-MAX_CONTEXT:]
        hist = np.stack([self.window_of(tb, states[k], step) for k, step in pairs])
        series = np.array([ids[k] for k, _ in pairs])
        steps = np.array([step for _, step in pairs])
        y = np.array([states[k].rows[step, 0] for k, step in pairs], dtype=np.float32)
        out = await loaded.infer(
            "encode",
            {
                "hist": hist,
                "static": tb.static[series],
                "category": tb.series_category[series],
                "target": tb.calendar_feats[steps],
                "y": y,
            },
        )
        fresh = out["embedding"].mean(0)
        r = tb.region_index[region]
        base, weight = tb.region_task[r], float(tb.region_task_count[r])
        if np.isnan(base).any() or weight <= 0:
            vector = fresh
        else:
            vector = (base * weight + fresh * len(pairs)) / (weight + len(pairs))
        await history.set_task(region, vector.astype(np.float32), weight + len(pairs))
        return True


def quantiles(samples: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    """Row-wise quantiles [len(levels), B] of `samples` [B, K], linear interpolation as
    numpy's default; one sort serves all levels (np.percentile re-partitions per level)."""
    ordered = np.sort(samples, axis=1)
    k = ordered.shape[1]
    out = np.empty((len(levels), ordered.shape[0]), dtype=np.float64)
    for i, level in enumerate(levels):
        pos = level * (k - 1)
        lo = int(np.floor(pos))
        hi = min(lo + 1, k - 1)
        frac = pos - lo
        out[i] = ordered[:, lo] * (1 - frac) + ordered[:, hi] * frac
    return out


def unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


# ---- sales history in the state store ----------------------------------------------------------
# Layout (service.state.keys): `sc:{r:<region>}:h:sales:<category>` holds ISO date -> [sales]
# and `sc:{r:<region>}:h:ext:<factor>` ISO date -> [value], both bounded by the store's
# `history_append.lua`; any model that forecasts from sales (DINOP too) reads the same rows.
# STMP's refreshed task embedding is `sc:{r:<region>}:stmp:task:<version>` (a version's
# embedding space is its own, so a new version starts from its export-time table).
SALES_PREFIX = "sales:"
EXT_PREFIX = "ext:"


def sales_history_name(category: str) -> str:
    return SALES_PREFIX + category


def external_history_name(factor: str) -> str:
    return EXT_PREFIX + factor


class StoreSalesHistory:
    """`SalesHistory` over `service.state.store.StateStore`'s bounded region histories."""

    def __init__(self, store: StateStore, version: str = "", limit: int = HISTORY_LIMIT) -> None:
        self.store = store
        self.version = version
        self.limit = limit

    def _task_key(self, region: str) -> str:
        return f"{keys.PREFIX}:{keys.region_tag(region)}:stmp:task:{keys.escape(self.version)}"

    async def append(
        self,
        region: str,
        sales: Mapping[str, Mapping[str, float]],
        external: Mapping[str, Mapping[str, float]],
    ) -> None:
        """`sales`: category -> {ISO date: value}; `external`: ISO date -> {factor: value}."""
        calls = [
            self.store.append_history(
                region,
                sales_history_name(category),
                [(date_s, [value]) for date_s, value in sorted(values.items())],
                self.limit,
            )
            for category, values in sales.items()
        ]
        by_factor: dict[str, list[tuple[str, list[float]]]] = {}
        for date_s, values in external.items():
            for factor, value in values.items():
                by_factor.setdefault(factor, []).append((date_s, [value]))
        calls += [
            self.store.append_history(region, external_history_name(f), rows, self.limit)
            for f, rows in by_factor.items()
        ]
        await asyncio.gather(*calls)  # each call increments the region's revision with its write

    async def revision(self, region: str) -> int | None:
        raw = await self.store.execute("history_revision", "GET", keys.history_revision(region))
        return None if raw is None else int(raw)

    async def _scalars(
        self, region: str, names: Sequence[str], history_name: Callable[[str], str]
    ) -> dict[str, dict[str, float]]:
        """name -> {ISO date: value} for the names that have any history."""
        rows = await asyncio.gather(
            *(self.store.read_history_scalars(region, history_name(n)) for n in names)
        )
        return {name: found for name, found in zip(names, rows, strict=True) if found}

    async def sales_history(
        self, region: str, categories: Sequence[str]
    ) -> dict[str, dict[str, float]]:
        return await self._scalars(region, categories, sales_history_name)

    async def external_factors(
        self, region: str, factors: Sequence[str]
    ) -> dict[str, dict[str, float]]:
        """factor -> {ISO date: value}, the factors that have any history."""
        return await self._scalars(region, factors, external_history_name)

    async def external_history(
        self, region: str, factors: Sequence[str] = ()
    ) -> dict[str, dict[str, float]]:
        """ISO date -> {factor: value}: `external_factors` by period, as DINOP reads them."""
        out: dict[str, dict[str, float]] = {}
        for factor, found in (await self.external_factors(region, factors)).items():
            for date_s, value in found.items():
                out.setdefault(date_s, {})[factor] = value
        return out

    async def get_task(self, region: str) -> tuple[np.ndarray, float] | None:
        raw = await self.store.execute("stmp_task", "HMGET", self._task_key(region), "v", "weight")
        if not raw or raw[0] is None or raw[1] is None:
            return None
        weight = raw[1].decode() if isinstance(raw[1], bytes) else raw[1]
        return decode_vector(raw[0]), float(weight)

    async def set_task(self, region: str, vector: np.ndarray, weight: float) -> None:
        """Keep the region's task, then move its revision (history writes move it in their own
        script, `StateStore.append_history`), so every replica's kept states
        (`STMPServable.region_states`) see it: after the write, never before."""
        await self.store.execute(
            "stmp_task",
            "HSET",
            self._task_key(region),
            "v",
            encode_vector(vector),
            "weight",
            weight,
        )
        await self.store.execute("history_revision", "INCR", keys.history_revision(region))


SERVABLE = STMPServable()  # one per process; caches each version's tables
