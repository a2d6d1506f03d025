"""Metrics with bootstrap weights, the paired bootstrap, verdicts and the comparison table."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from training.comparison import Comparison, validation_summary
from training.metrics import AucScorer, auc, mean_absolute_error, reliability_curve
from training.stats import (
    AHEAD,
    BEHIND,
    INCONCLUSIVE,
    TOO_SMALL,
    TestSize,
    bootstrap_weights,
    mean_sd,
    paired_bootstrap,
    verdict,
)

BIG = TestSize(kind="classification", rows=2000, units=400, unit_name="users", positives=500)


def _data(n: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.25).astype(float)
    good = y + rng.normal(0, 0.6, n)  # separates the classes well
    poor = y + rng.normal(0, 3.0, n)  # barely
    return y, good, poor


def test_weighted_auc_matches_sklearn_and_duplication() -> None:
    y, good, _ = _data(500)
    ties = np.round(good, 1)  # many tied scores
    assert auc(y, ties) == pytest.approx(roc_auc_score(y, ties), abs=1e-12)
    w = np.random.default_rng(1).integers(0, 4, len(y)).astype(float)
    rows = np.repeat(np.arange(len(y)), w.astype(int))
    assert AucScorer.build(y, ties)(w) == pytest.approx(roc_auc_score(y[rows], ties[rows]))
    assert np.isnan(auc(np.zeros(10), np.arange(10.0)))  # one class: undefined


def test_bootstrap_draws_whole_units() -> None:
    units = np.array(["a", "a", "a", "b", "c", "c"])
    for w in bootstrap_weights(units, resamples=50, seed=3):
        assert w.sum() % 1 == 0
        assert w[0] == w[1] == w[2] and w[4] == w[5]  # a unit's rows move together
        assert (w[[0, 3, 4]]).sum() == 3  # three units drawn per resample


def test_interval_and_verdicts() -> None:
    y, good, poor = _data()
    units = np.arange(len(y)) // 5  # 400 users of five rows each
    better = paired_bootstrap(AucScorer.build(y, good), AucScorer.build(y, poor), units, 300)
    assert better.low > 0 and better.estimate > 0
    assert verdict(better, True, BIG) == AHEAD
    worse = paired_bootstrap(AucScorer.build(y, poor), AucScorer.build(y, good), units, 300)
    assert verdict(worse, True, BIG) == BEHIND
    same = paired_bootstrap(AucScorer.build(y, good), AucScorer.build(y, good), units, 300)
    assert same.low == same.high == 0.0 and verdict(same, True, BIG) == INCONCLUSIVE
    # Lower-is-better metrics read the interval the other way round.
    actual = y * 10
    near, far = actual + 1.0, actual + 3.0
    mae = paired_bootstrap(
        lambda w: mean_absolute_error(actual, near, w),
        lambda w: mean_absolute_error(actual, far, w),
        units,
        200,
    )
    assert mae.high < 0 and verdict(mae, False, BIG) == AHEAD
    small = TestSize(kind="classification", rows=90, units=30, unit_name="users", positives=99)
    assert verdict(better, True, small) == TOO_SMALL
    few = TestSize(kind="forecast", rows=500, units=29, unit_name="series", series=29)
    assert not few.big_enough and verdict(mae, False, few) == TOO_SMALL


def test_mean_sd_ignores_missing_runs() -> None:
    assert mean_sd([1.0, 3.0]) == (2.0, pytest.approx(np.sqrt(2.0)))
    assert mean_sd([5.0, float("nan")]) == (5.0, 0.0)
    assert all(np.isnan(v) for v in mean_sd([]))


def test_comparison_ranks_against_the_best_baseline_not_a_variant() -> None:
    y, good, poor = _data()
    units = np.arange(len(y)) // 5
    comparison = Comparison(
        primary_metric="auc", higher_is_better=True, ours="ours", units=units, size=BIG,
        resamples=200,
    )  # fmt: skip
    for seed, noise in enumerate((0.0, 0.05, 0.1)):
        p = good + noise
        comparison.add("ours", metrics={"auc": auc(y, p)}, scorer=AucScorer.build(y, p), seed=seed)
    comparison.add("weak", metrics={"auc": auc(y, poor)}, scorer=AucScorer.build(y, poor),
                   seed=None)  # fmt: skip
    middle = (good + poor) / 2
    comparison.add("middle", metrics={"auc": auc(y, middle)},
                   scorer=AucScorer.build(y, middle), seed=0)  # fmt: skip
    comparison.add("ours-ablation", metrics={"auc": 0.99}, scorer=lambda w: 0.99, seed=0,
                   role="variant")  # fmt: skip
    record = comparison.record()
    result = record["comparison"]
    assert result["best_baseline"] == "middle"  # the variant's 0.99 is not a baseline
    assert result["verdict"] == AHEAD and result["interval"][0] > 0
    assert record["runs"]["ours"]["seeds"] == [0, 1, 2]
    assert record["methods_sd"]["ours"]["auc"] == pytest.approx(0.0, abs=1e-12)  # AUC: ranks
    with pytest.raises(ValueError):
        comparison.add("middle", metrics={"auc": 0.5}, scorer=lambda w: 0.5, seed=9, role="variant")
    named = comparison.against("weak")  # a named baseline that is not the best one
    assert named["baseline"] == "weak" and named["verdict"] == AHEAD
    assert named["difference"] > result["difference"]  # weak is further behind than middle
    assert comparison.against("middle")["interval"] == result["interval"]  # the same bootstrap
    with pytest.raises(ValueError):
        comparison.against("absent")


def test_validation_summary_flags_a_model_behind_its_baseline() -> None:
    summary = validation_summary(
        metric="wmae",
        higher_is_better=False,
        ours=("stmp", {"wmae": 120.0, "rmse": float("nan")}),
        baselines={"seasonal-naive": {"wmae": 150.0}, "lightgbm": {"wmae": 100.0}},
        split="last quarter",
    )
    assert summary["best_baseline"]["name"] == "lightgbm"
    assert summary["behind_baseline"] is True
    assert "rmse" not in summary["ours"]  # NaN is not JSON


def test_reliability_bins_are_never_empty() -> None:
    y, good, _ = _data(1000)
    p = 1 / (1 + np.exp(-(good - 2)))
    curve = reliability_curve(y, p, bins=10)
    assert len(curve.count) == 10 and min(curve.count) > 0 and sum(curve.count) == 1000
    assert curve.predicted == sorted(curve.predicted)
