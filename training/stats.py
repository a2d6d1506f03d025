"""Paired bootstrap intervals and the verdicts every accuracy result carries.

A gap between two methods on one test set means nothing without its sampling error: the
same two models scored on another week of the same shop would differ by some amount, and a
"win" smaller than that is a coin toss. So every result reports a paired bootstrap interval
of (ours - best baseline) and a verdict read off it:

- resampling unit: the test *units* (users, clicks, series, events; `units` maps every test
  row to its unit) are drawn with replacement, and every row of a drawn unit comes along.
  Rows of one unit (one user's days, one series' weeks) are not independent; drawing them
  together keeps the interval honest about that.
- paired: both methods are scored on the same resample, so what the interval measures is
  their difference, not each method's own noise.
- seeds: a learned method trained with several seeds enters with its seed-mean metric: for
  each resample the metric is computed for every seed's predictions and averaged (the same
  quantity as the table's mean). The interval thus covers test sampling of the seed-mean;
  the spread between seeds is reported separately as the sd.
- percentile interval (2.5 % and 97.5 % quantiles of the replicate differences), 1,000
  replicates by default.

Verdict: `ahead` / `behind` only when the interval excludes 0 (in the direction the metric
improves), `inconclusive` otherwise, and `too small to rank` whatever the interval says when
the test set holds fewer than 100 positives (classification, ranking) or 30 series
(forecasting): an interval over a handful of positives is itself too unstable to trust.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

Scorer = Callable[[np.ndarray | None], float]
"""A metric of one fixed prediction under row weights (`None`: every row once)."""

TestKind = Literal["classification", "ranking", "forecast"]
AHEAD, BEHIND, INCONCLUSIVE, TOO_SMALL = "ahead", "behind", "inconclusive", "too small to rank"
VERDICTS = (AHEAD, BEHIND, INCONCLUSIVE, TOO_SMALL)
MIN_POSITIVES = 100  # classification and ranking: positives (targets) in the test set
MIN_SERIES = 30  # forecasting: distinct series in the test set


@dataclass(frozen=True)
class TestSize:
    """How much evidence the test set holds, in the unit the verdict rule counts."""

    kind: TestKind
    rows: int
    units: int  # distinct resampling units
    unit_name: str  # "users", "clicks", "series", "events", ...
    positives: int | None = None  # classification / ranking
    series: int | None = None  # forecasting

    __test__ = False  # not a pytest class, whatever its name

    @property
    def big_enough(self) -> bool:
        if self.kind == "forecast":
            return (self.series or 0) >= MIN_SERIES
        return (self.positives or 0) >= MIN_POSITIVES

    @property
    def rule(self) -> str:
        if self.kind == "forecast":
            return f"at least {MIN_SERIES} series"
        return f"at least {MIN_POSITIVES} positives"

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "big_enough": self.big_enough, "rule": self.rule}


@dataclass(frozen=True)
class Interval:
    """Point estimate and percentile bootstrap interval of (ours - baseline)."""

    estimate: float
    low: float
    high: float
    level: float
    resamples: int

    def excludes_zero(self) -> bool:
        return bool(self.low > 0 or self.high < 0)

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def unit_codes(units: np.ndarray) -> tuple[np.ndarray, int]:
    """(code per row in 0..U-1, U) for any array of unit labels."""
    uniques, codes = np.unique(np.asarray(units), return_inverse=True)
    return codes.reshape(-1), len(uniques)


def bootstrap_weights(units: np.ndarray, resamples: int, seed: int = 0) -> Iterator[np.ndarray]:
    """Row weights of `resamples` draws of the units with replacement (a cluster bootstrap).

    A unit drawn k times gives each of its rows weight k; a unit not drawn, weight 0.
    """
    codes, n_units = unit_codes(units)
    rng = np.random.default_rng(seed)
    for _ in range(resamples):
        counts = np.bincount(rng.integers(0, n_units, size=n_units), minlength=n_units)
        yield counts[codes].astype(np.float64)


def seed_mean(scorers: Sequence[Scorer]) -> Scorer:
    """The metric averaged over a method's seeds, under the same weights."""
    if not scorers:
        raise ValueError("a method needs at least one scored run")

    def score(weights: np.ndarray | None) -> float:
        return float(np.mean([s(weights) for s in scorers]))

    return score


def paired_bootstrap(
    ours: Scorer,
    baseline: Scorer,
    units: np.ndarray,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Interval of ours - baseline over resamples of the test units (see the module doc).

    Replicates where either metric is undefined (an AUC on a resample with one class) are
    dropped; with fewer than half left, the interval is NaN and the verdict inconclusive.
    """
    if resamples < 1:
        raise ValueError("resamples: must be at least 1")
    if not 0 < level < 1:
        raise ValueError("level: must lie strictly between 0 and 1")
    estimate = ours(None) - baseline(None)
    diffs = np.array(
        [ours(w) - baseline(w) for w in bootstrap_weights(units, resamples, seed)],
        dtype=np.float64,
    )
    diffs = diffs[np.isfinite(diffs)]
    if len(diffs) < resamples / 2:
        return Interval(float(estimate), float("nan"), float("nan"), level, resamples)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(diffs, [tail, 100 - tail])
    return Interval(float(estimate), float(low), float(high), level, resamples)


def verdict(interval: Interval, higher_is_better: bool, size: TestSize) -> str:
    """`ahead`, `behind`, `inconclusive` or `too small to rank` (see the module doc)."""
    if not size.big_enough:
        return TOO_SMALL
    if not np.isfinite(interval.low) or not interval.excludes_zero():
        return INCONCLUSIVE
    better = interval.low > 0 if higher_is_better else interval.high < 0
    return AHEAD if better else BEHIND


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample sd (ddof 1; 0 for a single run) of the finite values, NaN if none."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64)
    if len(v) == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0
