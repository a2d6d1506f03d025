"""Accuracy pictures written next to the results: reliability curves and Recall@k curves.

Called by `salecast evaluate <model> --plot` with what the run measured (the curves are also
in the result's JSON). matplotlib with the Agg backend: no display needed. Every axis says
what it holds and in which unit; a panel with nothing to draw is not drawn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig: Any, out_path: Path) -> Path:
    """Lay out, write as PNG (creating the folder), close."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out_path, dpi=90)
    pyplot().close(fig)
    return out_path


def plot_reliability(
    curves: Mapping[str, Mapping[str, Sequence[float]]],
    out_path: Path,
    *,
    title: str,
    event: str,
) -> Path:
    """Observed frequency against predicted probability per method, plus the diagonal.

    `curves[method]` = `training.metrics.ReliabilityCurve.to_dict()`; both axes run over the
    predictions' own range (a 1 % event squeezed into [0, 1] would be an empty plot).
    """
    plt = pyplot()
    drawn = {name: c for name, c in curves.items() if len(c.get("predicted", ()))}
    if not drawn:
        raise ValueError("no reliability curve to draw")
    fig, ax = plt.subplots(figsize=(6, 5))
    top = 0.0
    for name, curve in drawn.items():
        ax.plot(curve["predicted"], curve["observed"], marker="o", label=name)
        top = max(top, *curve["predicted"], *curve["observed"])
    top = min(1.0, top * 1.05 or 1.0)
    ax.plot([0, top], [0, top], color="grey", linestyle="--", label="perfectly calibrated")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel("predicted probability (mean per equal-count bin)")
    ax.set_ylabel(f"observed rate of {event} (fraction of rows)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return save(fig, out_path)


def plot_recall_curves(
    curves: Mapping[str, Sequence[float]],
    ks: Sequence[int],
    out_path: Path,
    *,
    title: str,
) -> Path:
    """Recall@k against k for every method (k = list length, in items)."""
    plt = pyplot()
    if not curves:
        raise ValueError("no recall curve to draw")
    fig, ax = plt.subplots(figsize=(7, 5))
    for name, values in curves.items():
        ax.plot(list(ks), [100 * v for v in values], marker=".", label=name)
    ax.set_xscale("log")
    ax.set_xlabel("k: length of the recommendation list (items, log scale)")
    ax.set_ylabel("Recall@k: test events whose next item is in the top k (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, out_path)
