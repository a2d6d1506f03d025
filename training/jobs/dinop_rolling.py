"""Rolling-origin refits for DINOP's evaluation: one fit per test promotion day.

The year split (`training.jobs.dinop.prepare`) trains once on the train year and tests every
later day with that model, so Christmas 2011 is forecast without Labor Day or Thanksgiving
2011, which lie before it. Rolling origin refits for each test day d: the `val_days`
promotion dates just before d validate (early stopping), every date before those trains,
and z-scores and the GMV unit are fitted on those training days alone. Nothing at or after
d is seen; an earlier test day can train a later one, as it would in production.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.errors import InvalidInput
from training.features.dinop import fit_statistics
from training.jobs.dinop import Prepared, model_arrays


@dataclass
class Origin:
    """One test promotion day's refit: its own split, and where its rows sit in the test."""

    date: np.datetime64
    prep: Prepared
    positions: np.ndarray  # rows of the full test set (`Prepared.test`) this day holds


def origin_dates(
    dates: np.ndarray, test_date: np.datetime64, val_days: int
) -> tuple[np.ndarray, np.ndarray]:
    """(training dates, validation dates) of the origin at `test_date`: the `val_days`
    promotion dates just before it validate, every earlier date trains."""
    before = np.unique(dates[dates < test_date])
    if val_days < 1 or len(before) <= val_days:
        raise InvalidInput(
            "val_days",
            f"{len(before)} promotion dates lie before {_days([test_date])}; "
            f"rolling origin needs --val-days ({val_days}) of them to validate and one to train",
        )
    return before[:-val_days], before[-val_days:]


def rolling_origins(prep: Prepared, val_days: int) -> list[Origin]:
    """One `Origin` per promotion date of `prep.test` (its test rows, in the same order)."""
    if prep.full is None:
        raise ValueError("rolling origin needs the full promotion set (Prepared.full)")
    full = prep.full
    origins: list[Origin] = []
    for date in np.unique(prep.test.promo_date):
        train_dates, val_dates = origin_dates(full.promo_date, date, val_days)
        positions = np.flatnonzero(prep.test.promo_date == date)
        parts = (
            full.subset(np.flatnonzero(np.isin(full.promo_date, train_dates))),
            full.subset(np.flatnonzero(np.isin(full.promo_date, val_dates))),
            full.subset(prep.test_idx[positions]),
        )
        feat = copy.deepcopy(prep.feat)
        fit_statistics(feat, parts[0])  # this origin's training days only
        tr, va, te = (model_arrays(feat, p, prep.naive_slot) for p in parts)
        split = f"rolling origin {_days([date])}: train {_days(train_dates)}; validation " + (
            _days(val_dates)
        )
        origin_prep = Prepared(
            feat, *parts, tr, va, te, split, full=full, test_idx=prep.test_idx[positions]
        )
        origins.append(Origin(date, origin_prep, positions))
    return origins


def rolling_predictions(
    origins: list[Origin],
    n_test: int,
    predict: Callable[[Prepared], dict[str, np.ndarray]],
) -> dict[str, np.ndarray]:
    """Each origin's `predict(origin.prep)` (its test day's rows) put back in test order."""
    out: dict[str, np.ndarray] = {}
    for origin in origins:
        for task, values in predict(origin.prep).items():
            if task not in out:
                out[task] = np.zeros((n_test, *values.shape[1:]), dtype=np.float64)
            out[task][origin.positions] = values
    return out


def _days(dates: Any) -> str:
    return ", ".join(str(d)[:10] for d in np.asarray(dates, dtype="datetime64[D]"))


def describe(origins: list[Origin]) -> str:
    """The origins' splits, for the results' split text."""
    return "; ".join(o.prep.split for o in origins)
