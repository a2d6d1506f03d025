"""Forecasts 1..H steps ahead for `salecast evaluate stmp` (issue 13).

The one-step evaluation knows the true history up to every target. The service forecasts a
festival weeks ahead instead: from a region's last known period it calls the graph once per
future period and appends each point forecast to the window (`service.servables.stmp`,
`STMPServable.rollout`). Here every method is rolled forward the same way:

* an **origin** o is the first step whose sales are unknown; the target o + h - 1 is the
  h-step-ahead forecast, made after h - 1 fed-back steps;
* a fed-back step s of series n gets, as in the servable, the point forecast as its sales,
  the `present` flag and the external factors of the last known step o - 1 carried forward,
  and the festival flag of its calendar (known in advance);
* each method forecasts from a copy of the panel that holds those rows (`rolled_panel`), so
  the same code path serves the one-step and the multi-step forecast: at h = 1 the copy
  equals the panel and the forecasts are the one-step ones.

Seasonal naive reads y(t - season), true history for h <= season, so its error does not
move with h; ridge AR and LightGBM read their own fed-back lags. For STMP the 80 % / 95 %
intervals at horizon h are the predictive samples of the final step given the fed-back
mean path (what the service returns), so they ignore the uncertainty of the earlier steps.

Cost: origins run from H - 1 steps before the test year to its end, every step, and every
step of a rollout forecasts all test series at once: about H one-step passes over the test
year. Every step, on daily data too: a stride of 7 days would tie each horizon to one
weekday (the targets o + h - 1 of origins 7 days apart share a weekday), and any stride
would drop most single-day festivals from most horizons. `horizon_origins` takes a stride
for a data set where that cost is too high.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from training.features.stmp import Panel

# (rolled panel, series [B], steps [B]) -> (normalised point [B], normalised samples [B, K]
# or None for a method without a predictive distribution).
Forecaster = Callable[[Panel, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray | None]]
LEVELS = (80, 95)


def horizon_origins(test_start: int, end: int, horizons: int, stride: int) -> np.ndarray:
    """Origins whose rollouts reach a test target at some horizon 1..`horizons`."""
    return np.arange(max(test_start - horizons + 1, 1), end, stride, dtype=np.int64)


def rolled_panel(panel: Panel) -> Panel:
    """A copy of `panel` whose steps from an origin on will hold fed-back forecasts."""
    return dataclasses.replace(panel, raw=panel.raw.copy(), dynamic=panel.dynamic.copy())


def feed_back(rolled: Panel, series: np.ndarray, step: int, origin: int, point: np.ndarray) -> None:
    """Write the point forecasts of `step` into `rolled` as the servable appends them."""
    rolled.raw[series, step] = point * rolled.scale[series]
    rolled.dynamic[series, step, 0] = point
    # present + external factors of the last known step, carried forward; the festival
    # flag (last channel) comes from the calendar and is already right.
    rolled.dynamic[series, step, 1:-1] = rolled.dynamic[series, origin - 1, 1:-1]


@dataclass
class Rollouts:
    """Forecasts of every (origin, horizon, series): normalised points and interval bounds."""

    origins: np.ndarray  # [O]
    series: np.ndarray  # [N] panel series ids
    point: np.ndarray  # [O, H, N]
    bands: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # level -> lo, hi


def rollout(
    panel: Panel, forecaster: Forecaster, series: np.ndarray, origins: np.ndarray, horizons: int
) -> Rollouts:
    """Recursive forecasts of `series` from every origin, `horizons` steps each."""
    shape = (len(origins), horizons, len(series))
    out = Rollouts(origins, series, np.full(shape, np.nan))
    for i, origin in enumerate(origins):
        rolled = rolled_panel(panel)
        for j in range(horizons):
            step = int(origin) + j
            if step >= panel.n_steps:
                break
            point, samples = forecaster(rolled, series, np.full(len(series), step))
            out.point[i, j] = point
            if samples is not None:
                for level in LEVELS:
                    lo, hi = np.percentile(samples, [50 - level / 2, 50 + level / 2], axis=1)
                    if level not in out.bands:
                        out.bands[level] = (np.full(shape, np.nan), np.full(shape, np.nan))
                    out.bands[level][0][i, j], out.bands[level][1][i, j] = lo, hi
            feed_back(rolled, series, step, int(origin), point)
    return out


@dataclass(frozen=True)
class HorizonTargets:
    """The test instances each horizon scores, and where their forecasts sit in `Rollouts`."""

    rows: dict[int, np.ndarray]  # h -> indices into the test instances
    origin_pos: dict[int, np.ndarray]  # h -> index into Rollouts.origins
    series_pos: np.ndarray  # [test instances] index into Rollouts.series


def horizon_targets(
    test_n: np.ndarray, test_t: np.ndarray, origins: np.ndarray, series: np.ndarray, horizons: int
) -> HorizonTargets:
    """For h = 1..H the test instances (n, t) whose origin t - h + 1 is one of `origins`."""
    where = {int(o): i for i, o in enumerate(origins)}
    s_of = {int(n): i for i, n in enumerate(series)}
    rows, pos = {}, {}
    for h in range(1, horizons + 1):
        origin = test_t - h + 1
        keep = np.array([int(o) in where for o in origin], dtype=bool)
        rows[h] = np.nonzero(keep)[0]
        pos[h] = np.array([where[int(o)] for o in origin[keep]], dtype=np.int64)
    series_pos = np.array([s_of[int(n)] for n in test_n], dtype=np.int64)
    return HorizonTargets(rows, pos, series_pos)


def horizon_forecasts(
    rolls: Rollouts, targets: HorizonTargets, h: int
) -> tuple[np.ndarray, dict[int, tuple[np.ndarray, np.ndarray]]]:
    """Normalised points [R] and interval bounds of the test rows of horizon `h`."""
    rows = targets.rows[h]
    o, s = targets.origin_pos[h], targets.series_pos[rows]
    bands = {lvl: (lo[o, h - 1, s], hi[o, h - 1, s]) for lvl, (lo, hi) in rolls.bands.items()}
    return rolls.point[o, h - 1, s], bands


def horizon_metrics(
    panel: Panel,
    test_n: np.ndarray,
    test_t: np.ndarray,
    rolls: Rollouts,
    targets: HorizonTargets,
    wmae: Callable[[np.ndarray, np.ndarray, np.ndarray], float],
) -> list[dict[str, float]]:
    """Per horizon: WMAE and festival RMSE in source units, coverage where bands exist."""
    out = []
    for h in sorted(targets.rows):
        rows = targets.rows[h]
        n, t = test_n[rows], test_t[rows]
        point, bands = horizon_forecasts(rolls, targets, h)
        scale = panel.scale[n]
        actual, day_type = panel.raw[n, t], panel.day_type_idx[t]
        pred = point * scale
        entry: dict[str, float] = {"wmae": wmae(actual, pred, day_type)}
        fest = day_type != 0
        if fest.any():
            entry["festival.rmse"] = float(np.sqrt(np.mean((pred[fest] - actual[fest]) ** 2)))
        y_norm = actual / scale
        for level, (lo, hi) in bands.items():
            entry[f"coverage@{level}"] = float(np.mean((y_norm >= lo) & (y_norm <= hi)))
        out.append(entry)
    return out


def horizon_table(
    per_method: Mapping[str, list[list[dict[str, float]]]], targets: HorizonTargets
) -> list[dict[str, float | int]]:
    """One row per horizon: the seed mean of every method's metrics, `<method>.<metric>`."""
    table: list[dict[str, float | int]] = []
    for k, h in enumerate(sorted(targets.rows)):
        row: dict[str, float | int] = {"h": h, "targets": len(targets.rows[h])}
        for method, runs in per_method.items():
            for key in runs[0][k]:
                values = [run[k][key] for run in runs if key in run[k]]
                row[f"{method}.{key}"] = float(np.mean(values))
        table.append(row)
    return table
