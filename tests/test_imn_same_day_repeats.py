"""IMN's evaluation also ranks the methods without same-day repeats (issue 13, item 5).

On a day-resolution log, a row that repeats the user's previous item on the same day is
what last-item co-occurrence guesses for free; these tests pin which rows count as such
repeats and that the re-scored comparison uses only the other events.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import pytest

from training.jobs.imn_evaluate import ScoredRun, same_day_repeats, without_repeats

DAY = 86_400.0


def test_a_repeat_is_the_users_previous_item_on_the_same_day() -> None:
    events = pd.DataFrame(
        {
            "user_id": ["a", "b", "a", "a", "b", "a", "a", "a"],
            "item_id": ["x", "x", "x", "x", "y", "y", "y", "x"],
            # a: x d0, x d0 (repeat), x d1 (other day), y d1, y d1 (repeat), x d1 (other item)
            "ts": [0.0, 10.0, 3600.0, DAY + 5, DAY + 6, DAY + 7, DAY + 8, DAY + 9],
        }
    )
    assert same_day_repeats(events).tolist() == [
        False,  # a's first row
        False,  # b's first row, although a just had x
        True,
        False,
        False,  # b: y after x
        False,  # a: y after x
        True,
        False,
    ]


def _args() -> argparse.Namespace:
    return argparse.Namespace(seed=0, bootstrap=200)


def test_without_repeats_scores_only_the_other_events() -> None:
    n = 400
    rng = np.random.default_rng(0)
    units = rng.integers(0, 80, n)
    repeats = np.arange(n) % 2 == 0  # half the events repeat
    # co-occurrence hits every repeat and nothing else; IMN hits a third of the others
    cooc = np.where(repeats, 1, 500)
    imn = np.where(~repeats & (np.arange(n) % 3 == 0), 1, 500)
    runs = [
        ScoredRun("cooccurrence", "baseline", None, cooc),
        ScoredRun("imn", "ours", 0, imn),
    ]
    out = without_repeats(_args(), runs, units, np.ones(n, bool), repeats)
    assert out["same_day_repeats"] == n // 2
    assert out["share_repeats"] == pytest.approx(0.5)
    assert out["methods"]["cooccurrence"]["recall@20"] == 0.0
    assert out["methods"]["imn"]["recall@20"] == pytest.approx(np.mean(imn[~repeats] <= 20))
    comparison = out["comparison"]
    assert comparison["best_baseline"] == "cooccurrence"
    assert comparison["test"]["rows"] == n // 2
    assert comparison["verdict"] == "ahead"
    assert "versus_sasrec" not in out  # no SASRec run, no comparison with it


def test_without_repeats_compares_with_sasrec_on_the_same_events() -> None:
    n = 400
    units = np.random.default_rng(0).integers(0, 80, n)
    repeats = np.arange(n) % 2 == 0
    cooc = np.where(repeats, 1, 500)
    sasrec = np.where(np.arange(n) % 4 == 1, 1, 500)  # half the other events
    imn = np.where(~repeats, 1, 500)  # every other event
    runs = [
        ScoredRun("cooccurrence", "baseline", None, cooc),
        ScoredRun("sasrec", "baseline", 0, sasrec),
        ScoredRun("imn", "ours", 0, imn),
    ]
    versus = without_repeats(_args(), runs, units, np.ones(n, bool), repeats)["versus_sasrec"]
    assert versus["baseline"] == "sasrec" and versus["test"]["rows"] == n // 2
    assert versus["difference"] == pytest.approx(0.5)  # 1.0 - 0.5 on the other events
    assert versus["verdict"] == "ahead"


def test_without_repeats_is_empty_when_the_log_has_none() -> None:
    runs = [ScoredRun("imn", "ours", 0, np.ones(10))]
    out = without_repeats(_args(), runs, np.arange(10), np.ones(10, bool), np.zeros(10, bool))
    assert out == {"test_events": 10, "same_day_repeats": 0, "share_repeats": 0.0}
