"""STMP's pictures: forecast against actual with its 80 % / 95 % bands, festivals up close.

Called by `salecast evaluate stmp --plot` with the test-period forecasts of ours, the best
baseline and seasonal naive (source units), and STMP's predictive samples (source units,
[instances, samples]). The bands of a total are quantiles of the per-sample totals.

- `plot_forecasts`: four regions at the 10th, 40th, 70th and 100th percentile of total sales
  (small to large, as the paper picks regions with different volumes); each panel sums the
  region's categories per step over the test year, festival steps shaded.
- `plot_festivals`: every festival occurrence of the test year (up to eight), the total of
  all series from a few steps before to a few after, where the bands matter most.
- `plot_few_shot`: Figure 7, festival-week error against past occurrences seen.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from training.features.stmp import Panel
from training.plots.curves import pyplot, save

LEVELS = ((95, 0.15), (80, 0.3))  # interval level, band opacity
AROUND = 4  # steps shown on each side of a festival
PEER_COLORS = ("tab:orange", "tab:green", "tab:red", "tab:purple")  # ours is blue


def representative_regions(panel: Panel, count: int = 4) -> list[int]:
    totals = np.zeros(len(panel.regions))
    np.add.at(totals, panel.series_region, np.nan_to_num(panel.raw).sum(1))
    order = np.argsort(totals)
    picks = np.linspace(0.1, 1.0, count) * (len(order) - 1)
    out: list[int] = []
    for q in picks:
        region = int(order[round(q)])
        if region not in out:
            out.append(region)
    return out


def _totals(values: np.ndarray, sel: np.ndarray, pos: np.ndarray, n_steps: int) -> np.ndarray:
    """Per step sums of `values[sel]` ([rows] or [rows, samples])."""
    out = np.zeros((n_steps, *values.shape[1:]))
    np.add.at(out, pos, values[sel])
    return out


def _draw(
    ax: Any,
    dates: Any,
    actual: np.ndarray,
    lines: Mapping[str, np.ndarray],
    band_totals: np.ndarray | None,
    ours: str,
) -> None:
    if band_totals is not None:
        for level, alpha in LEVELS:
            lo, hi = np.percentile(band_totals, [50 - level / 2, 50 + level / 2], axis=1)
            label = f"{ours} {level} % interval"
            ax.fill_between(dates, lo, hi, color="tab:blue", alpha=alpha, label=label)
    ax.plot(dates, actual, color="black", linewidth=2, label="actual")
    others = iter(PEER_COLORS)
    for name, values in lines.items():
        color = "tab:blue" if name == ours else next(others, "grey")
        ax.plot(dates, values, label=name, color=color, linewidth=1.5 if name == ours else 1)


def plot_forecasts(
    panel: Panel,
    test_n: np.ndarray,
    test_t: np.ndarray,
    actual: np.ndarray,
    predictions: Mapping[str, np.ndarray],
    out_path: Path,
    bands: np.ndarray | None = None,
    ours: str = "stmp",
) -> Path:
    """A 2x2 PNG of region totals over the test year: actual, each method, ours' bands."""
    plt = pyplot()
    regions = representative_regions(panel)
    steps = np.unique(test_t)
    dates = panel.dates[steps]
    rows = max(1, (len(regions) + 1) // 2)
    cols = 2 if len(regions) > 1 else 1
    fig, axes = plt.subplots(rows, cols, figsize=(13, 4 * rows), squeeze=False)
    for ax, region in zip(axes.ravel(), regions, strict=False):
        sel = panel.series_region[test_n] == region
        pos = np.searchsorted(steps, test_t[sel])
        lines = {k: _totals(v, sel, pos, len(steps)) for k, v in predictions.items()}
        band = None if bands is None else _totals(bands, sel, pos, len(steps))
        _draw(ax, dates, _totals(actual, sel, pos, len(steps)), lines, band, ours)
        for step in steps[panel.day_type_idx[steps] != 0]:
            half = np.timedelta64(3 if panel.frequency == "W" else 0, "D") + np.timedelta64(12, "h")
            ax.axvspan(
                panel.dates[step] - half, panel.dates[step] + half, color="orange", alpha=0.2
            )
        ax.set_title(f"region {panel.regions[region]}: all categories (festival steps shaded)")
        ax.set_xlabel(f"test period ({'weeks' if panel.frequency == 'W' else 'days'})")
        ax.set_ylabel("sales per step, sum over categories (source units)")
        ax.tick_params(axis="x", labelrotation=30)
    for ax in axes.ravel()[len(regions) :]:
        ax.remove()  # never an empty panel
    axes.ravel()[0].legend(fontsize=8)
    fig.suptitle("STMP vs baselines: one-step-ahead forecasts over the test year")
    return save(fig, out_path)


def festival_occurrences(panel: Panel, steps: np.ndarray, limit: int = 8) -> list[list[int]]:
    """Runs of consecutive festival steps of one day type among `steps` (first `limit`)."""
    runs: list[list[int]] = []
    for step in steps:
        kind = int(panel.day_type_idx[step])
        if kind == 0:
            continue
        if runs and step - runs[-1][-1] == 1 and panel.day_type_idx[runs[-1][-1]] == kind:
            runs[-1].append(int(step))
        else:
            runs.append([int(step)])
    return runs[:limit]


def plot_festivals(
    panel: Panel,
    test_n: np.ndarray,
    test_t: np.ndarray,
    actual: np.ndarray,
    predictions: Mapping[str, np.ndarray],
    out_path: Path,
    bands: np.ndarray | None = None,
    ours: str = "stmp",
) -> Path:
    """One panel per test festival occurrence: all series' total around it, with bands."""
    plt = pyplot()
    steps = np.unique(test_t)
    runs = festival_occurrences(panel, steps)
    if not runs:
        raise ValueError("no festival step in the test period to plot")
    cols = min(4, len(runs))
    rows = -(-len(runs) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.6 * rows), squeeze=False)
    everything = np.ones(len(test_n), dtype=bool)
    pos = np.searchsorted(steps, test_t)
    lines = {k: _totals(v, everything, pos, len(steps)) for k, v in predictions.items()}
    band = None if bands is None else _totals(bands, everything, pos, len(steps))
    truth = _totals(actual, everything, pos, len(steps))
    for ax, run in zip(axes.ravel(), runs, strict=False):
        lo = max(0, int(np.searchsorted(steps, run[0])) - AROUND)
        hi = min(len(steps), int(np.searchsorted(steps, run[-1])) + AROUND + 1)
        window = slice(lo, hi)
        _draw(
            ax, panel.dates[steps[window]], truth[window],
            {k: v[window] for k, v in lines.items()}, None if band is None else band[window],
            ours,
        )  # fmt: skip
        for step in run:
            ax.axvline(panel.dates[step], color="orange", linewidth=2, alpha=0.6)
        name = panel.day_types[int(panel.day_type_idx[run[0]])]
        ax.set_title(f"{name} {panel.dates[run[0]].date()}", fontsize=10)
        ax.set_xlabel("date")
        ax.set_ylabel("sales per step, all series (source units)")
        ax.tick_params(axis="x", labelrotation=40, labelsize=7)
    for ax in axes.ravel()[len(runs) :]:
        ax.remove()  # never an empty panel
    axes.ravel()[0].legend(fontsize=7)
    fig.suptitle("Festivals of the test year: forecast vs actual, STMP's 80 % / 95 % bands")
    return save(fig, out_path)


def plot_few_shot(curve: Mapping[str, Any], out_path: Path) -> Path:
    """Figure 7 for salecast: festival-week error against past festival occurrences seen."""
    plt = pyplot()
    shots = list(curve["shots"])
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), squeeze=False)
    for ax, metric in zip(axes.ravel(), ("rmse", "mae"), strict=True):
        for method in ("stmp", "metagru"):
            ax.plot(shots, curve[f"{method}.{metric}"], marker="o", label=method)
        ax.set_xlabel("past occurrences of each festival kept in training")
        ax.set_ylabel(f"festival-step {metric} (source units)")
        ax.set_xticks(shots)
        ax.legend()
    fig.suptitle("Few-shot festivals: error on the test year's festival steps")
    return save(fig, out_path)
