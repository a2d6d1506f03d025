"""What every job shares: the evaluation options, the training budget, data set names, the
comparison over the test units and the reliability curves.

Each job's `add_arguments` calls `add_common_arguments` once, so `--seeds`, `--patience`,
`--bootstrap`, `--threads` and `--plot` mean the same for every model. Namespaces built by
hand (tests, demos) may leave them out: the helpers here fall back to the same defaults.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from service.errors import InvalidInput
from training.comparison import Comparison
from training.loop import Budget
from training.metrics import reliability_curve
from training.stats import TestKind, TestSize

DEFAULT_SEEDS = 3
DEFAULT_PATIENCE = 3
DEFAULT_RESAMPLES = 1000


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("evaluation and training budget (every model)")
    g.add_argument(
        "--seeds",
        type=int,
        default=DEFAULT_SEEDS,
        help="evaluate: seeds per learned method (--seed, --seed+1, ...); train uses --seed",
    )
    g.add_argument(
        "--patience",
        type=int,
        default=DEFAULT_PATIENCE,
        help="early stopping: epochs without a validation gain before a method stops",
    )
    g.add_argument(
        "--bootstrap",
        type=int,
        default=DEFAULT_RESAMPLES,
        help="evaluate: resamples of the paired bootstrap interval",
    )
    g.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    g.add_argument("--plot", action="store_true", help="evaluate: write the result's PNG(s)")


def budget(args: argparse.Namespace, epochs: int | None = None) -> Budget:
    """The epoch budget and patience of this run, the same for ours and every baseline."""
    return Budget(
        max_epochs=int(epochs if epochs is not None else args.epochs),
        patience=int(getattr(args, "patience", DEFAULT_PATIENCE)),
    )


def seed_list(args: argparse.Namespace) -> list[int]:
    """The seeds `evaluate` trains every learned method with."""
    count = int(getattr(args, "seeds", DEFAULT_SEEDS))
    if count < 1:
        raise InvalidInput("seeds", f"must be at least 1, got {count}")
    return [int(args.seed) + k for k in range(count)]


def resamples(args: argparse.Namespace) -> int:
    count = int(getattr(args, "bootstrap", DEFAULT_RESAMPLES))
    if count < 1:
        raise InvalidInput("bootstrap", f"must be at least 1, got {count}")
    return count


def set_threads(args: argparse.Namespace) -> None:
    threads = int(getattr(args, "threads", 1) or 1)
    if threads < 1:
        raise InvalidInput("threads", f"must be at least 1, got {threads}")
    torch.set_num_threads(threads)


def dataset_name(args: argparse.Namespace) -> str:
    """The folder the data came from (`walmart_store_sales`), as BENCHMARKS.md names data
    sets; `synthetic` without files."""
    if not getattr(args, "data", None) or args.format == "synthetic":
        return "synthetic"
    first = Path(args.data[0]).resolve()
    return (first if first.is_dir() else first.parent).name


def new_comparison(
    args: argparse.Namespace,
    *,
    units: np.ndarray,
    kind: TestKind,
    unit_name: str,
    primary_metric: str,
    higher_is_better: bool,
    ours: str,
    positives: int | None = None,
) -> Comparison:
    """A `Comparison` over the test rows whose resampling unit is `units` (one per row).

    A forecasting test counts its units as series for the verdict's size rule.
    """
    distinct = len(np.unique(units))
    size = TestSize(
        kind=kind,
        rows=len(units),
        units=distinct,
        unit_name=unit_name,
        positives=positives,
        series=distinct if kind == "forecast" else None,
    )
    return Comparison(
        primary_metric=primary_metric,
        higher_is_better=higher_is_better,
        ours=ours,
        units=units,
        size=size,
        resamples=resamples(args),
        seed=int(args.seed),
    )


def reliability(
    args: argparse.Namespace,
    labels: np.ndarray,
    predictions: Mapping[str, np.ndarray],
    *,
    file: str,
    title: str,
    event: str,
) -> dict[str, dict[str, Any]]:
    """Reliability curves of the given methods' test probabilities (for the JSON), drawn to
    `<results dir>/<file>` with `--plot`."""
    curves = {name: reliability_curve(labels, p).to_dict() for name, p in predictions.items()}
    if getattr(args, "plot", False):
        from training.plots.curves import plot_reliability

        plot_reliability(curves, Path(args.results_dir) / file, title=title, event=event)
    return curves
