"""Figure 6 for salecast: forecast against actual for four representative stores.

Called by `salecast evaluate stmp --plot` with the test-period predictions of every method;
the four regions are the ones at the 10th, 40th, 70th and 100th percentile of total sales
(small to large, as the paper picks regions with different purchase volumes). Each panel
sums the region's categories per step and marks the festival steps.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from training.features.stmp import Panel

SHOWN = ("seasonal-naive", "lightgbm", "lstnet", "metagru", "stmp")


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


def plot_forecasts(
    panel: Panel,
    test_n: np.ndarray,
    test_t: np.ndarray,
    actual: np.ndarray,
    predictions: Mapping[str, np.ndarray],
    out_path: Path,
) -> Path:
    """Write a 2x2 PNG of region totals: actual vs each method over the test period."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    regions = representative_regions(panel)
    steps = np.unique(test_t)
    dates = panel.dates[steps]
    fig, axes = plt.subplots(2, 2, figsize=(13, 8), squeeze=False)
    for ax, region in zip(axes.ravel(), regions, strict=False):
        sel = panel.series_region[test_n] == region
        pos = np.searchsorted(steps, test_t[sel])

        def total(values: np.ndarray, sel: np.ndarray = sel, pos: np.ndarray = pos) -> np.ndarray:
            out = np.zeros(len(steps))
            np.add.at(out, pos, values[sel])
            return out

        ax.plot(dates, total(actual), color="black", linewidth=2, label="actual")
        for name in SHOWN:
            if name in predictions:
                ax.plot(dates, total(predictions[name]), linewidth=1, label=name)
        for step in steps[panel.day_type_idx[steps] != 0]:
            ax.axvline(panel.dates[step], color="grey", alpha=0.3, linestyle="--")
        ax.set_title(f"region {panel.regions[region]} (festival steps dashed)")
        ax.tick_params(axis="x", labelrotation=30)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("STMP vs baselines: one-step-ahead forecasts over the test year")
    fig.tight_layout()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=90)
    plt.close(fig)
    return out_path


def plot_few_shot(curve: Mapping[str, Any], out_path: Path) -> Path:
    """Figure 7 for salecast: festival-week error against past festival occurrences seen."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shots = list(curve["shots"])
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), squeeze=False)
    for ax, metric in zip(axes.ravel(), ("rmse", "mae"), strict=True):
        for method in ("stmp", "metagru"):
            ax.plot(shots, curve[f"{method}.{metric}"], marker="o", label=method)
        ax.set_xlabel("past occurrences of each festival kept in training")
        ax.set_ylabel(f"festival-week {metric} (source units)")
        ax.set_xticks(shots)
        ax.legend()
    fig.suptitle("Few-shot festivals: error on the test year's festival weeks")
    fig.tight_layout()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=90)
    plt.close(fig)
    return out_path
