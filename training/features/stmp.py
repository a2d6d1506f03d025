"""STMP features: a canonical sales frame -> a dense region x category x time panel.

Works on any `SalesData` (Walmart weekly, M5 daily totals, the synthetic generator, any
other adapter): regions, categories and day types come from the canonical columns, external
factors from `external_columns`, static region features from `static_columns`.

Why a dense panel: every model here (STMP, LSTNet, MetaGRU, AR, LightGBM) consumes fixed
windows of history ending right before a target step, so the panel is built once and
instances are (series, step) index pairs gathered on the fly, which keeps memory at
N x T x F instead of N x T x W x F.

Normalisation (the paper reports errors on normalised purchases): each series is divided by
its mean absolute value over the training period, so departments of very different sizes
share one model; external and static factors are z-scored on the training period. All
statistics come from the training period only, and are written into the artifact so
serving applies the same transformation.

The calendar features of a step (its day-type one-hot, the paper's "festival interval":
steps since the last and until the next festival, and the position in the year) depend only
on the date. They are computed for the data's dates and for a few years past its end, and
shipped with the artifact as a table, so serving looks them up instead of re-implementing
them.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from training.schemas import SalesData

ORDINARY = "ordinary"
FUTURE_YEARS = 3  # calendar rows written past the end of the data, for serving


def period_days(frequency: str) -> int:
    return 7 if frequency == "W" else 1


def steps_per_year(frequency: str) -> int:
    return 52 if frequency == "W" else 364


def default_skips(frequency: str) -> tuple[tuple[int, ...], tuple[int, ...], int]:
    """(skips, chain steps, AR order) matched to the data's frequency (issue 6).

    The AR order covers the whole window on weekly data (the paper's h_t = W[h_1..h_{t-1}]
    + b, which includes the same week last year); on daily data four weeks, because a
    360-lag linear map on one short series overfits.
    """
    if frequency == "W":
        # 1, 4 and 52 weeks; the 52-week chain has one step (the same week last year),
        # which is all a 143-week data set with a held-out final year can feed.
        return (1, 4, 52), (8, 4, 1), 52
    return (1, 7, 30), (14, 8, 12), 28


@dataclass
class Panel:
    """Dense arrays of one data set; index conventions are shared by every model here."""

    frequency: str  # "D" or "W"
    regions: list[str]
    categories: list[str]
    day_types: list[str]  # vocabulary; ORDINARY first
    dates: pd.DatetimeIndex  # the data's steps, regular
    series_region: np.ndarray  # [N] int64
    series_category: np.ndarray  # [N] int64
    raw: np.ndarray  # [N, T] float64 sales in source units, NaN where missing
    scale: np.ndarray  # [N] float64 per-series scale (mean |sales| on the training period)
    dynamic: np.ndarray  # [N, T, F] float32 per-step features: sales/scale, externals, festival
    static: np.ndarray  # [N, S] float32 z-scored region statics + log scale
    calendar_dates: pd.DatetimeIndex  # dates + FUTURE_YEARS years
    calendar_day_type: np.ndarray  # [Tc] int64 index into day_types
    calendar_feats: np.ndarray  # [Tc, G] float32 target-step features
    external_columns: list[str]
    static_columns: list[str]
    train_end: int  # first step index of the held-out period (T when nothing is held out)
    normalisation: dict[str, Any] = field(default_factory=dict)

    @property
    def n_series(self) -> int:
        return int(self.raw.shape[0])

    @property
    def n_steps(self) -> int:
        return int(self.raw.shape[1])

    @property
    def y(self) -> np.ndarray:
        """[N, T] normalised sales (NaN where missing)."""
        return self.raw / self.scale[:, None]

    @property
    def observed(self) -> np.ndarray:
        return ~np.isnan(self.raw)

    @property
    def day_type_idx(self) -> np.ndarray:
        return self.calendar_day_type[: self.n_steps]

    @property
    def target_feats(self) -> np.ndarray:
        return self.calendar_feats[: self.n_steps]


def _regular_dates(dates: pd.Series, frequency: str) -> pd.DatetimeIndex:
    start, end = pd.Timestamp(dates.min()), pd.Timestamp(dates.max())
    return pd.date_range(start, end, freq=f"{period_days(frequency)}D")


def project_day_types(
    dates: pd.DatetimeIndex, known: pd.Series, frequency: str, until: pd.Timestamp
) -> pd.Series:
    """Day type per date of a calendar that runs past the data.

    Inside the data the source's label wins. Past its end a festival is projected one year
    ahead by whole weeks (364 days), which keeps weekly dates on the same weekday and lands
    the US festivals of the two public data sets (Super Bowl Sunday, Labor Day Monday,
    Thanksgiving Thursday, Christmas week) on the right week; a daily calendar can be off
    by a day for fixed-date holidays, which is why the source's own labels are preferred.
    """
    step = pd.Timedelta(days=period_days(frequency))
    full = pd.date_range(dates[0], until, freq=step)
    out = pd.Series(ORDINARY, index=full, dtype="object")
    out.loc[known.index] = known.values
    festivals = known[known != ORDINARY]
    shift = pd.Timedelta(days=364)
    for k in range(1, FUTURE_YEARS + 2):
        for date, name in festivals.items():
            projected = pd.Timestamp(date) + k * shift
            if projected > dates[-1] and projected in out.index and out.loc[projected] == ORDINARY:
                out.loc[projected] = name
    return out


def calendar_features(
    day_types: pd.Series, vocab: Sequence[str], frequency: str
) -> tuple[np.ndarray, np.ndarray]:
    """(day-type index [Tc], features [Tc, G]) for the calendar `day_types` (date -> name).

    Features: day-type one-hot; the paper's festival interval as steps since the previous and
    until the next festival, divided by a year and clipped to [0, 1]; sin/cos of the position
    in the year; for daily data the weekday one-hot (weekends are day types in the paper).
    """
    index = {name: i for i, name in enumerate(vocab)}
    idx = np.array([index.get(str(v), 0) for v in day_types.values], dtype=np.int64)
    n = len(idx)
    one_hot = np.zeros((n, len(vocab)), dtype=np.float32)
    one_hot[np.arange(n), idx] = 1.0
    year = float(steps_per_year(frequency))
    is_fest = idx != index.get(ORDINARY, -1)
    since = np.full(n, year, dtype=np.float64)
    until = np.full(n, year, dtype=np.float64)
    last = None
    for t in range(n):
        if is_fest[t]:
            last = t
        if last is not None:
            since[t] = t - last
    nxt = None
    for t in range(n - 1, -1, -1):
        if is_fest[t]:
            nxt = t
        if nxt is not None:
            until[t] = nxt - t
    dates = pd.DatetimeIndex(day_types.index)
    phase = 2 * np.pi * (dates.day_of_year.to_numpy() - 1) / 365.25
    cols = [
        one_hot,
        np.clip(since / year, 0, 1)[:, None],
        np.clip(until / year, 0, 1)[:, None],
        np.sin(phase)[:, None],
        np.cos(phase)[:, None],
    ]
    if frequency == "D":
        weekday = np.zeros((n, 7), dtype=np.float32)
        weekday[np.arange(n), dates.dayofweek.to_numpy()] = 1.0
        cols.append(weekday)
    return idx, np.concatenate(cols, axis=1).astype(np.float32)


def build_panel(data: SalesData, holdout_steps: int | None = None) -> Panel:
    """Pivot `data` into a Panel; the last `holdout_steps` steps (default: one year) are
    held out from every statistic (scales, z-scores). Pass 0 to use everything."""
    with warnings.catch_warnings():
        # All-NaN columns (Walmart's markdowns before Nov 2011) are expected: they become 0.
        warnings.simplefilter("ignore", RuntimeWarning)
        return _build_panel(data, holdout_steps)


def _build_panel(data: SalesData, holdout_steps: int | None) -> Panel:
    frame = data.sales
    if frame.empty:
        raise ValueError("sales frame is empty")
    frequency = data.frequency
    dates = _regular_dates(frame["date"], frequency)
    n_steps = len(dates)
    if holdout_steps is None:
        holdout_steps = steps_per_year(frequency)
    train_end = n_steps - holdout_steps
    if train_end < 2:
        raise ValueError(
            f"{n_steps} steps leave no training period before a {holdout_steps}-step holdout"
        )

    frame = frame.copy()
    frame["region"] = frame["region"].astype(str)
    frame["category"] = frame["category"].astype(str)
    step = pd.Timedelta(days=period_days(frequency))
    t_index = (
        ((pd.to_datetime(frame["date"]) - dates[0]) / step).round().astype(np.int64).to_numpy()
    )
    frame["_t"] = t_index

    regions = sorted(frame["region"].unique())
    categories = sorted(frame["category"].unique())
    r_of = {r: i for i, r in enumerate(regions)}
    c_of = {c: i for i, c in enumerate(categories)}
    pairs = frame[["region", "category"]].drop_duplicates().sort_values(["region", "category"])
    series_region = pairs["region"].map(r_of).to_numpy(np.int64)
    series_category = pairs["category"].map(c_of).to_numpy(np.int64)
    s_of = {
        (r, c): i for i, (r, c) in enumerate(zip(pairs["region"], pairs["category"], strict=False))
    }

    raw = np.full((len(pairs), n_steps), np.nan)
    s_idx = np.array(
        [s_of[(r, c)] for r, c in zip(frame["region"], frame["category"], strict=False)]
    )
    raw[s_idx, t_index] = frame["sales"].to_numpy(np.float64)
    # A missing step of a series that exists before and after it is a week without sales
    # (Walmart leaves such rows out); steps before a series starts stay missing.
    first = np.argmax(~np.isnan(raw), axis=1)
    for i in range(raw.shape[0]):
        row = raw[i, first[i] :]
        row[np.isnan(row)] = 0.0
    scale = np.nanmean(np.abs(raw[:, :train_end]), axis=1)
    known_scale = scale[np.isfinite(scale) & (scale > 0)]
    # A floor at the 10th percentile of the scales keeps near-empty departments from
    # turning a few dollars of noise into huge normalised values; a series with no
    # training data takes the median scale.
    floor = float(np.percentile(known_scale, 10)) if len(known_scale) else 1.0
    median = float(np.median(known_scale)) if len(known_scale) else 1.0
    scale = np.where(np.isfinite(scale), np.maximum(scale, floor), median)
    scale = np.where(scale > 0, scale, 1.0)

    # Day types: the source's label per date (the most common one if rows disagree).
    labels = frame.groupby("_t")["day_type"].agg(lambda s: s.astype(str).mode().iloc[0])
    known = pd.Series(ORDINARY, index=dates, dtype="object")
    known.iloc[labels.index.to_numpy()] = labels.to_numpy()
    vocab = [ORDINARY, *sorted(set(known.unique()) - {ORDINARY})]
    until = dates[-1] + pd.Timedelta(days=366 * FUTURE_YEARS)
    full_calendar = project_day_types(dates, known, frequency, until)
    cal_idx, cal_feats = calendar_features(full_calendar, vocab, frequency)

    # External factors per region and step, z-scored on the training period.
    ext_cols = [c for c in data.external_columns if c in frame.columns]
    # A factor the training period never observes, or observes only as a constant
    # (Walmart's markdowns start one week after the test year begins; the adapter fills
    # them with 0), cannot be learned from and cannot be z-scored: drop it.
    train_frame = frame[frame["_t"] < train_end]
    dropped = []
    for c in ext_cols:
        values = pd.to_numeric(train_frame[c], errors="coerce")
        if values.notna().mean() < 0.05 or not np.nanstd(values.to_numpy(np.float64)) > 1e-9:
            dropped.append(c)
    ext_cols = [c for c in ext_cols if c not in dropped]
    ext = np.zeros((len(regions), n_steps, len(ext_cols)), dtype=np.float64)
    ext_norm: dict[str, list[float]] = {}
    if ext_cols:
        per = frame.groupby(["region", "_t"])[ext_cols].first().reset_index()
        values = per[ext_cols].to_numpy(np.float64)
        train_rows = per["_t"].to_numpy() < train_end
        mean = (
            np.nanmean(values[train_rows], axis=0) if train_rows.any() else np.zeros(len(ext_cols))
        )
        std = np.nanstd(values[train_rows], axis=0) if train_rows.any() else np.ones(len(ext_cols))
        mean = np.nan_to_num(mean)
        std = np.where(np.isfinite(std) & (std > 1e-9), std, 1.0)
        z = np.nan_to_num((values - mean) / std)
        ext[per["region"].map(r_of).to_numpy(), per["_t"].to_numpy()] = z
        ext_norm = {"mean": mean.tolist(), "std": std.tolist()}

    # Static: region statics z-scored, plus the series' log scale (its size).
    st_cols = [c for c in data.static_columns if c in data.static.columns]
    static_region = np.zeros((len(regions), len(st_cols)), dtype=np.float64)
    st_norm: dict[str, list[float]] = {}
    if st_cols and not data.static.empty:
        table = data.static.assign(region=data.static["region"].astype(str)).set_index("region")
        table = table.reindex(regions)[st_cols].to_numpy(np.float64)
        mean = np.nan_to_num(np.nanmean(table, axis=0))
        std = np.nanstd(table, axis=0)
        std = np.where(np.isfinite(std) & (std > 1e-9), std, 1.0)
        static_region = np.nan_to_num((table - mean) / std)
        st_norm = {"mean": mean.tolist(), "std": std.tolist()}
    log_scale = np.log1p(scale)
    ls_mean, ls_std = float(log_scale.mean()), float(log_scale.std() or 1.0)
    static = np.concatenate(
        [static_region[series_region], ((log_scale - ls_mean) / ls_std)[:, None]], axis=1
    ).astype(np.float32)

    fest = (cal_idx[:n_steps] != 0).astype(np.float32)
    y = np.nan_to_num(raw / scale[:, None])
    present = (np.arange(n_steps)[None, :] >= first[:, None]).astype(np.float32)  # [N, T]
    dynamic = np.concatenate(
        [
            y[:, :, None],
            present[:, :, None],
            ext[series_region] * present[:, :, None],
            np.broadcast_to(fest[None, :, None], (len(pairs), n_steps, 1)),
        ],
        axis=2,
    ).astype(np.float32)

    normalisation = {
        "external_columns": ext_cols,
        "external_dropped": dropped,
        "external": ext_norm,
        "static_columns": st_cols,
        "static": st_norm,
        "log_scale": {"mean": ls_mean, "std": ls_std},
        "sales_scale": "per series: mean |sales| over the training period",
    }
    return Panel(
        frequency=frequency,
        regions=regions,
        categories=categories,
        day_types=vocab,
        dates=dates,
        series_region=series_region,
        series_category=series_category,
        raw=raw,
        scale=scale,
        dynamic=dynamic,
        static=static,
        calendar_dates=pd.DatetimeIndex(full_calendar.index),
        calendar_day_type=cal_idx,
        calendar_feats=cal_feats,
        external_columns=ext_cols,
        static_columns=st_cols,
        train_end=train_end,
        normalisation=normalisation,
    )


def instances(
    panel: Panel, min_history: int, start: int, stop: int
) -> tuple[np.ndarray, np.ndarray]:
    """(series, step) pairs with an observed target in [start, stop) and at least
    `min_history` observed steps before it.

    Windows may reach back before a series' first observation: those steps are zeros with
    the `present` channel at 0. Requiring a full year of history would leave the first
    year's festivals (Walmart's only Thanksgiving and Christmas before the test year)
    out of training altogether, which is exactly the few-shot data STMP exists for.
    """
    start = max(start, min_history)
    obs = panel.observed[:, start:stop]
    n_idx, t_rel = np.nonzero(obs)
    t_idx = t_rel + start
    first = np.argmax(panel.observed, axis=1)
    keep = t_idx - min_history >= first[n_idx]
    return n_idx[keep].astype(np.int64), t_idx[keep].astype(np.int64)


def window_steps(t_idx: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Step indices [B, W] of the windows ending right before `t_idx`, and their validity."""
    steps = t_idx[:, None] - window + np.arange(window)[None, :]
    return np.clip(steps, 0, None), steps >= 0


def gather(
    panel: Panel, n_idx: np.ndarray, t_idx: np.ndarray, window: int
) -> dict[str, np.ndarray]:
    """Model inputs of instances: hist [B, W, F], static, category, target, y (normalised)."""
    steps, valid = window_steps(t_idx, window)
    hist = panel.dynamic[n_idx[:, None], steps] * valid[:, :, None]
    y = panel.raw[n_idx, t_idx] / panel.scale[n_idx]
    return {
        "hist": hist.astype(np.float32),
        "static": panel.static[n_idx],
        "category": panel.series_category[n_idx],
        "target": panel.target_feats[t_idx],
        "y": np.nan_to_num(y).astype(np.float32),
    }


def festival_occurrence(panel: Panel) -> np.ndarray:
    """[T] for each festival step, how many earlier occurrences (years) of the same festival
    the data holds (0 = its first); -1 for ordinary steps.

    Steps of one festival less than half a year apart count as one occurrence, so a
    multi-day festival of daily data is one shot, as in Figure 7 (shots = years seen).
    """
    idx = panel.day_type_idx
    half_year = steps_per_year(panel.frequency) // 2
    out = np.full(len(idx), -1, dtype=np.int64)
    count: dict[int, int] = {}
    last: dict[int, int] = {}
    for t, d in enumerate(idx):
        d = int(d)
        if d == 0:
            continue
        if d in last and t - last[d] < half_year:
            out[t] = count[d] - 1
        else:
            out[t] = count.get(d, 0)
            count[d] = out[t] + 1
        last[d] = t
    return out
