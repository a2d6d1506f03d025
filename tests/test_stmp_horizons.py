"""STMP's multi-step evaluation: rollouts match the one-step forecast at h = 1, never read
the unknown future, and give per-horizon WMAE and coverage."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import pytest
import torch

from models.stmp import STMP
from tests.test_model_stmp import tiny_sales
from training.baselines import forecast as bl
from training.features.stmp import Panel, instances
from training.jobs import stmp as job
from training.jobs import stmp_evaluate as ev
from training.jobs import stmp_horizons as hz

torch.set_num_threads(1)
H = 4


def _setup() -> tuple[Panel, job.Split, STMP, job.TaskTables, np.ndarray, np.ndarray]:
    args = argparse.Namespace(val_steps=8, hidden=8, embed=16, psi_dim=4)
    panel, split = job.make_split(tiny_sales(weeks=120), args)
    torch.manual_seed(0)
    model = STMP(job.model_config(panel, args)).eval()
    hist = job.min_history(model.cfg)
    train_n, train_t = instances(panel, hist, 0, split.val_start)
    tables = job.pooled_embeddings(model, panel, train_n, train_t)
    test_n, test_t = instances(panel, hist, split.test_start, split.end)
    return panel, split, model, tables, test_n, test_t


@pytest.fixture(scope="module")
def setup() -> tuple[Panel, job.Split, STMP, job.TaskTables, np.ndarray, np.ndarray]:
    return _setup()


def test_h1_is_the_one_step_forecast_and_every_horizon_is_scored(setup: tuple) -> None:
    panel, split, model, tables, test_n, test_t = setup
    horizons = ev.Horizons(panel, split, test_n, test_t, H)
    forecaster = ev.stmp_forecaster(model, tables, 30, 0)
    rolls = hz.rollout(panel, forecaster, horizons.series, horizons.origins, H)
    one_step, _ = job.predict_stmp(model, panel, tables, test_n, test_t, 30, 0)
    point, bands = hz.horizon_forecasts(rolls, horizons.targets, 1)
    # Weekly data: origins every step, so h = 1 scores every test instance, in order.
    np.testing.assert_array_equal(horizons.targets.rows[1], np.arange(len(test_n)))
    np.testing.assert_allclose(point, one_step, rtol=1e-5, atol=1e-6)
    assert set(bands) == {80, 95}
    # Later horizons read fed-back means, so they differ from the true-history forecast.
    later, _ = hz.horizon_forecasts(rolls, horizons.targets, H)
    assert not np.allclose(later, one_step[horizons.targets.rows[H]])

    horizons.add("stmp", forecaster)
    horizons.add("seasonal-naive", lambda p, n, t: (bl.seasonal_naive(p, n, t), None))
    horizons.add("points-only", ev.stmp_forecaster(model, tables, 0, 0))  # as the ablations
    block = horizons.block()
    rows = block["table"]
    assert [r["h"] for r in rows] == list(range(1, H + 1))
    for r in rows:
        assert r["targets"] == len(test_n)
        for level in (80, 95):
            assert 0.0 <= r[f"stmp.coverage@{level}"] <= 1.0
        assert "seasonal-naive.coverage@80" not in r and "points-only.coverage@80" not in r
        assert r["points-only.wmae"] == pytest.approx(r["stmp.wmae"])  # points need no draws
    # Seasonal naive reads y(t - 52): true history at every horizon <= a season.
    assert len({r["seasonal-naive.wmae"] for r in rows}) == 1
    assert rows[0]["stmp.wmae"] == pytest.approx(
        job.wmae(
            panel.raw[test_n, test_t], one_step * panel.scale[test_n], panel.day_type_idx[test_t]
        )
    )


def test_rollout_never_reads_the_unknown_future(setup: tuple) -> None:
    """Changing sales and factors from an origin on leaves that origin's rollout unchanged."""
    panel, split, model, tables, test_n, _ = setup
    series = np.unique(test_n)
    origin = np.array([split.test_start + 5])
    forecaster = ev.stmp_forecaster(model, tables, 10, 0)
    ref = hz.rollout(panel, forecaster, series, origin, H)
    noisy = hz.rolled_panel(panel)
    rng = np.random.default_rng(0)
    noisy.raw[:, origin[0] :] *= 3.0
    noisy.dynamic[:, origin[0] :, :-1] += rng.normal(size=noisy.dynamic[:, origin[0] :, :-1].shape)
    got = hz.rollout(noisy, forecaster, series, origin, H)
    np.testing.assert_allclose(got.point, ref.point, rtol=1e-5)
    # ... while the true-history forecast of the last step does read them.
    last = np.full(len(series), origin[0] + H - 1)
    assert not np.allclose(forecaster(noisy, series, last)[0], forecaster(panel, series, last)[0])


def test_strided_origins_score_only_their_targets() -> None:
    origins = hz.horizon_origins(100, 150, 8, 7)
    assert origins[0] == 93 and np.all(np.diff(origins) == 7)
    targets = hz.horizon_targets(
        np.zeros(50, dtype=np.int64), np.arange(100, 150), origins, np.array([0]), 8
    )
    for h in range(1, 9):
        assert np.all(np.isin(np.arange(100, 150)[targets.rows[h]] - h + 1, origins))


def test_a_table_block_reads_as_a_markdown_table() -> None:
    from training.reporting import accuracy_markdown

    record: dict[str, Any] = {
        "model": "stmp", "dataset": "tiny", "command": "x", "machine": "m", "created": "c",
        "split": "s", "primary_metric": "wmae", "higher_is_better": False, "ours": "stmp",
        "methods": {"stmp": {"wmae": 1.0}}, "notes": "n",
        "horizons": {"stride": 1, "table": [{"h": 1, "stmp.wmae": 2.5}, {"h": 2, "x": 3}]},
    }  # fmt: skip
    text = accuracy_markdown(record)
    assert "| h | stmp.wmae | x |" in text and "| 2 | - | 3 |" in text
    assert '"stride": 1' in text and '"table"' not in text
    only = accuracy_markdown({**record, "horizons": {"table": record["horizons"]["table"]}})
    assert "| h | stmp.wmae | x |" in only and "```json" not in only
