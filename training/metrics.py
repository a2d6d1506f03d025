"""Accuracy metrics shared by every job, each with optional per-row weights.

Why weights: the paired bootstrap (`training.stats`) resamples test units with replacement,
and a resample is exactly a vector of non-negative integer weights over the rows (how often
each row was drawn). Writing every metric once with weights means the point estimate
(weights all 1) and each bootstrap replicate run the same code, and no resampled copy of
the test set is ever built.

`AucScorer` precomputes the sort order of one prediction vector, so the thousands of
weighted AUCs a bootstrap needs cost O(n) each instead of a sort each.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def _weights(n: int, weights: np.ndarray | None) -> np.ndarray:
    if weights is None:
        return np.ones(n, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,):
        raise ValueError(f"weights: expected shape ({n},), got {w.shape}")
    return w


@dataclass(frozen=True)
class AucScorer:
    """Weighted ROC AUC of one fixed (labels, scores) pair under any row weights.

    AUC = P(score of a positive > score of a negative), ties counting one half (the
    Mann-Whitney statistic, what `sklearn.metrics.roc_auc_score` computes when unweighted).
    """

    labels: np.ndarray  # [n] 0/1, in score order
    order: np.ndarray  # [n] argsort of the scores
    group_starts: np.ndarray  # first position of each run of equal scores

    @classmethod
    def build(cls, labels: np.ndarray, scores: np.ndarray) -> AucScorer:
        y = np.asarray(labels, dtype=np.float64).reshape(-1)
        p = np.asarray(scores, dtype=np.float64).reshape(-1)
        if y.shape != p.shape:
            raise ValueError(f"labels {y.shape} and scores {p.shape} differ in length")
        order = np.argsort(p, kind="mergesort")
        sorted_p = p[order]
        starts = np.flatnonzero(np.r_[True, sorted_p[1:] != sorted_p[:-1]]) if len(p) else order
        return cls(labels=y[order], order=order, group_starts=starts)

    def __call__(self, weights: np.ndarray | None = None) -> float:
        n = len(self.order)
        if n == 0:
            return float("nan")
        w = _weights(n, weights)[self.order]
        pos = np.add.reduceat(w * self.labels, self.group_starts)
        neg = np.add.reduceat(w * (1.0 - self.labels), self.group_starts)
        total_pos, total_neg = pos.sum(), neg.sum()
        if total_pos <= 0 or total_neg <= 0:
            return float("nan")
        below = np.cumsum(neg) - neg  # negative weight strictly below each tie group
        return float((pos * (below + 0.5 * neg)).sum() / (total_pos * total_neg))


def auc(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray | None = None) -> float:
    """ROC AUC (NaN when only one class is present)."""
    return AucScorer.build(labels, scores)(weights)


def log_loss(labels: np.ndarray, probs: np.ndarray, weights: np.ndarray | None = None) -> float:
    y = np.asarray(labels, dtype=np.float64)
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-6, 1 - 1e-6)
    w = _weights(len(y), weights)
    if w.sum() <= 0:
        return float("nan")
    return float(-(w * (y * np.log(p) + (1 - y) * np.log(1 - p))).sum() / w.sum())


def weighted_mean(values: np.ndarray, weights: np.ndarray | None = None) -> float:
    v = np.asarray(values, dtype=np.float64)
    w = _weights(len(v), weights)
    return float((w * v).sum() / w.sum()) if w.sum() > 0 else float("nan")


def mean_absolute_error(
    actual: np.ndarray, predicted: np.ndarray, weights: np.ndarray | None = None
) -> float:
    return weighted_mean(np.abs(np.asarray(predicted) - np.asarray(actual)), weights)


@dataclass(frozen=True)
class ReliabilityCurve:
    """Predicted probability against observed frequency in equal-count bins."""

    predicted: list[float]  # mean predicted probability per bin
    observed: list[float]  # fraction of positives per bin
    count: list[int]  # rows per bin

    def to_dict(self) -> dict[str, list[float] | list[int]]:
        return {"predicted": self.predicted, "observed": self.observed, "count": self.count}


def reliability_curve(labels: np.ndarray, probs: np.ndarray, bins: int = 10) -> ReliabilityCurve:
    """Equal-count bins (quantiles of the predictions), so no bin is empty.

    Equal-width bins leave most of them empty for a rare event (a 1 % conversion rate puts
    nearly every prediction below 0.1); equal-count bins show the range the model uses.
    """
    y = np.asarray(labels, dtype=np.float64)
    p = np.asarray(probs, dtype=np.float64)
    order = np.argsort(p, kind="mergesort")
    parts = [part for part in np.array_split(order, max(1, min(bins, len(p)))) if len(part)]
    return ReliabilityCurve(
        predicted=[float(p[part].mean()) for part in parts],
        observed=[float(y[part].mean()) for part in parts],
        count=[len(part) for part in parts],
    )


def recall_curve(ranks: np.ndarray, ks: Sequence[int]) -> list[float]:
    """Recall@k for each k from the 1-based rank of each event's target (inf = a miss)."""
    r = np.asarray(ranks, dtype=np.float64)
    return [float((r <= k).mean()) if len(r) else float("nan") for k in ks]
