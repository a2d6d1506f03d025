"""Paired intervals for ablation rows (with vs without one change), in one run.

`training.comparison` ranks ours against the best baseline on the primary metric only; an
ablation is judged on the metric the change is meant to move (DINOP's naive-slot feature on
SS accuracy, not GMV MAE; a MetaCVR prototype setting on AUC), so this keeps per-metric
scorers for the methods an ablation pairs and scores each pair with the same paired
bootstrap over the same test units and the same verdict rule (an interval including 0 is
`inconclusive`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from training.comparison import Comparison
from training.metrics import weighted_mean
from training.stats import Scorer, paired_bootstrap, seed_mean, verdict


def accuracy_scorer(labels: np.ndarray, predicted: np.ndarray) -> Scorer:
    """SS accuracy of fixed predictions (labels or distributions) under row weights."""
    chosen = predicted if predicted.ndim == 1 else predicted.argmax(-1)
    hits = (np.asarray(chosen) == np.asarray(labels)).astype(np.float64)
    return lambda weights: weighted_mean(hits, weights)


class Ablations:
    """Scorers per (method, metric) over seeds; `pair` judges one ablation row."""

    def __init__(self, comparison: Comparison) -> None:
        self.comparison = comparison
        self.scorers: dict[tuple[str, str], list[Scorer]] = {}
        self.rows: list[dict[str, Any]] = []

    def add(self, method: str, metric: str, scorer: Scorer) -> None:
        self.scorers.setdefault((method, metric), []).append(scorer)

    def pair(
        self, ablation: str, method: str, reference: str, metric: str, higher_is_better: bool
    ) -> dict[str, Any] | None:
        """`method` - `reference` on `metric` (seed means), interval and verdict, recorded
        in `rows`; None when either side was not scored (the row was not run)."""
        a, b = self.scorers.get((method, metric)), self.scorers.get((reference, metric))
        if not a or not b:
            return None
        c = self.comparison
        ours, theirs = seed_mean(a), seed_mean(b)
        interval = paired_bootstrap(
            ours, theirs, c.units, resamples=c.resamples, level=c.level, seed=c.seed
        )
        row = {
            "ablation": ablation,
            "method": method,
            "reference": reference,
            "metric": metric,
            "higher_is_better": higher_is_better,
            "method_value": ours(None),
            "reference_value": theirs(None),
            "difference": interval.estimate,
            "low": interval.low,
            "high": interval.high,
            "verdict": verdict(interval, higher_is_better, c.size),
        }
        self.rows.append(row)
        return row
