"""`bench.reproduce.compare`: a re-run reproduces a result when every method's mean moved by
at most its seed sd (or a small relative tolerance for a method without seeds)."""

from __future__ import annotations

from typing import Any

from bench.reproduce import compare


def _result(means: dict[str, float], sds: dict[str, float]) -> dict[str, Any]:
    return {
        "primary_metric": "auc",
        "methods": {m: {"auc": v} for m, v in means.items()},
        "methods_sd": {m: {"auc": s} for m, s in sds.items()},
    }


def test_within_the_seed_sd_reproduces_and_outside_does_not() -> None:
    committed = _result({"ours": 0.70, "lr": 0.65}, {"ours": 0.02})
    again = _result({"ours": 0.715, "lr": 0.65}, {"ours": 0.01})
    assert all(r["ok"] for r in compare(committed, again, tolerance=0.01))
    drifted = _result({"ours": 0.75, "lr": 0.65}, {"ours": 0.01})
    rows = {r["method"]: r for r in compare(committed, drifted, tolerance=0.01)}
    assert not rows["ours"]["ok"] and rows["lr"]["ok"]


def test_a_method_without_seeds_gets_the_relative_tolerance_and_a_missing_one_fails() -> None:
    committed = _result({"lr": 0.60, "gone": 0.5}, {})
    again = _result({"lr": 0.6059}, {})
    rows = {r["method"]: r for r in compare(committed, again, tolerance=0.01)}
    assert rows["lr"]["ok"] and abs(rows["lr"]["allowed"] - 0.006) < 1e-12
    assert not rows["gone"]["ok"] and rows["gone"]["again"] is None
    assert not compare(committed, _result({"lr": 0.62}, {}), tolerance=0.01)[0]["ok"]
