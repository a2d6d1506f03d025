"""STMP's per-request series state: the dense rows equal the per-step rows they replaced.

`STMPServable.series_states` and `window_of` keep one [calendar, features] array per series
(a request's windows are slices). The reference below is the per-step dict version they
replaced, kept here as the specification: training tail, ingested sales overlaid (a
correction inside the tail keeps that period's factors), external factors carried forward
past training, gaps filled from the newest row, and the rollout's forecast rows appended.
Random histories with gaps, corrections, dates off the grid and partly reported factors
must give the same windows at every step.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from service.servables.stmp import STMPServable, STMPTables

WINDOW, N_EXT, STEPS, END = 8, 2, 60, 30  # END: calendar step of the last training period


def tables(seed: int) -> STMPTables:
    rng = np.random.default_rng(seed)
    n_series, n_feat = 3, 2 + N_EXT + 1
    day_type = rng.integers(0, 3, STEPS) * (rng.random(STEPS) < 0.3)
    start = dt.date(2020, 1, 3)
    return STMPTables(
        version="v",
        frequency="W",
        period=7,
        window=WINDOW,
        regions=["r"],
        categories=["a", "b", "c"],
        day_types=["ordinary", "f1", "f2"],
        series={("r", c): i for i, c in enumerate("abc")},
        scale=rng.uniform(1, 5, n_series),
        static=np.zeros((n_series, 1), np.float32),
        series_category=np.arange(n_series),
        series_region=np.zeros(n_series, np.int64),
        region_task=np.zeros((1, 4), np.float32),
        region_task_count=np.ones(1),
        day_type_task=np.zeros((3, 4), np.float32),
        calendar_start=start,
        calendar_day_type=day_type,
        calendar_feats=np.zeros((STEPS, 2), np.float32),
        history=rng.normal(size=(n_series, WINDOW, n_feat)).astype(np.float32),
        history_end_step=END,
        ext_columns=["temperature", "price"],
        ext_mean=np.array([10.0, 2.0]),
        ext_std=np.array([5.0, 0.5]),
        psi_dim=4,
        samples=10,
    )


def reference_rows(tb: STMPTables, n: int, sales: dict, ext_raw: dict) -> dict[int, np.ndarray]:
    """The per-step dict of rows of one series (the replaced implementation)."""
    ext_rows = {}
    for date_s, values in ext_raw.items():
        step = tb.step_of(dt.date.fromisoformat(date_s))
        if step is None:
            continue
        raw = np.array([values.get(c, np.nan) for c in tb.ext_columns], dtype=np.float64)
        ext_rows[step] = (raw - tb.ext_mean) / tb.ext_std
    rows = {}
    first = tb.history_end_step - tb.window + 1
    for i in range(tb.window):
        rows[first + i] = tb.history[n, i].copy()
    for date_s, value in sales.get(tb.categories[n], {}).items():
        step = tb.step_of(dt.date.fromisoformat(date_s))
        if step is None:
            continue
        row = rows[step].copy() if step in rows else np.zeros(tb.history.shape[2], np.float32)
        row[0], row[1], row[-1] = value / tb.scale[n], 1.0, tb.festival(step)
        rows[step] = row
    carry = rows[first + tb.window - 1][2 : 2 + N_EXT].copy()
    for step in sorted(rows):
        if step in ext_rows:
            z = ext_rows[step]
            carry = np.where(np.isnan(z), carry, z).astype(np.float32)
        if step > tb.history_end_step:
            rows[step][2 : 2 + N_EXT] = carry
    return rows


def reference_window(tb: STMPTables, rows: dict[int, np.ndarray], step: int) -> np.ndarray:
    out = np.zeros((tb.window, tb.history.shape[2]), np.float32)
    latest = rows[max(rows)]
    for i, s in enumerate(range(step - tb.window, step)):
        row = rows.get(s)
        if row is None:
            row = np.zeros(tb.history.shape[2], np.float32)
            row[1], row[2:-1] = 1.0, latest[2:-1]
            row[-1] = tb.festival(s) if 0 <= s < len(tb.calendar_day_type) else 0.0
        out[i] = row
    return out


def random_history(tb: STMPTables, seed: int) -> tuple[dict, dict]:
    """Sales of random steps (some in the training tail, some before it, gaps after it,
    one date off the weekly grid) and factors reported for some periods, some partly."""
    rng = np.random.default_rng(seed)
    sales: dict[str, dict[str, float]] = {}
    for c in tb.categories:
        steps = rng.choice(np.arange(END - 12, STEPS - 10), size=int(rng.integers(0, 15)))
        sales[c] = {tb.date_of(int(s)).isoformat(): float(rng.uniform(0, 100)) for s in steps}
    sales["a"][(tb.date_of(END + 2) + dt.timedelta(days=1)).isoformat()] = 5.0  # off the grid
    ext: dict[str, dict[str, float]] = {}
    for s in rng.choice(np.arange(END - 5, STEPS - 10), size=12, replace=False):
        reported = [c for c in tb.ext_columns if rng.random() < 0.7]
        ext[tb.date_of(int(s)).isoformat()] = {c: float(rng.normal(5, 3)) for c in reported}
    return sales, ext


def by_factor(ext: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Factors by period as the store keeps them: a history per factor."""
    out: dict[str, dict[str, float]] = {}
    for date_s, values in ext.items():
        for factor, value in values.items():
            out.setdefault(factor, {})[date_s] = value
    return out


@pytest.mark.parametrize("seed", range(12))
def test_dense_states_give_the_reference_windows(seed: int) -> None:
    tb, servable = tables(seed), STMPServable(seed=0)
    sales, ext = random_history(tb, seed)
    states = servable.series_states(tb, [0, 1, 2], sales, by_factor(ext))
    for n, state in enumerate(states):
        ref = reference_rows(tb, n, sales, ext)
        assert state.last == max(ref)
        for step in range(END - 3, STEPS):
            np.testing.assert_array_equal(
                servable.window_of(tb, state, step), reference_window(tb, ref, step)
            )


def test_forecast_rows_are_carried_into_later_windows() -> None:
    """A forecast row put after the history (as the rollout does) is the newest row: later
    windows contain it, and their gaps take its factors."""
    tb, servable = tables(99), STMPServable(seed=0)
    sales, ext = random_history(tb, 99)
    (state,) = servable.series_states(tb, [1], sales, by_factor(ext))
    ref = reference_rows(tb, 1, sales, ext)
    step = state.last + 1
    row = np.arange(tb.history.shape[2], dtype=np.float32)
    state.put(step, row)
    ref[step] = row
    assert state.newest == step
    for later in (step + 1, step + 3, step + WINDOW + 2):
        np.testing.assert_array_equal(
            servable.window_of(tb, state, later), reference_window(tb, ref, later)
        )
