"""The result pictures: written as PNGs, never with an empty panel or nothing to show."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.test_model_stmp import tiny_sales
from training.features.stmp import build_panel, instances
from training.metrics import reliability_curve
from training.plots.curves import plot_recall_curves, plot_reliability
from training.plots.stmp import festival_occurrences, plot_festivals, plot_forecasts

PNG = b"\x89PNG"


def test_reliability_and_recall_curves(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    p = rng.random(500) * 0.2
    y = (rng.random(500) < p).astype(float)
    curves = {
        "ours": reliability_curve(y, p).to_dict(),
        "lr": reliability_curve(y, p / 2).to_dict(),
    }
    out = plot_reliability(curves, tmp_path / "r.png", title="t", event="a buy")
    assert out.read_bytes()[:4] == PNG
    with pytest.raises(ValueError):
        plot_reliability({}, tmp_path / "none.png", title="t", event="a buy")
    out = plot_recall_curves({"imn": [0.1, 0.3, 0.5]}, (1, 10, 100), tmp_path / "k.png", title="t")
    assert out.read_bytes()[:4] == PNG and not (tmp_path / "none.png").exists()


def test_stmp_figures_with_bands(tmp_path: Path) -> None:
    panel = build_panel(tiny_sales())
    n, t = instances(panel, 16, panel.train_end, panel.n_steps)
    actual = panel.raw[n, t]
    rng = np.random.default_rng(1)
    draws = actual[:, None] * rng.normal(1.0, 0.1, (len(n), 30))
    lines = {"stmp": draws.mean(1), "lightgbm": actual * 1.05}
    runs = festival_occurrences(panel, np.unique(t))
    assert runs and all(panel.day_type_idx[s] != 0 for run in runs for s in run)
    for plot, name in ((plot_forecasts, "f.png"), (plot_festivals, "fest.png")):
        out = plot(panel, n, t, actual, lines, tmp_path / name, bands=draws)
        assert out.read_bytes()[:4] == PNG
    ordinary = panel.day_type_idx[t] == 0
    with pytest.raises(ValueError, match="no festival"):
        plot_festivals(panel, n[ordinary], t[ordinary], actual[ordinary],
                       {k: v[ordinary] for k, v in lines.items()}, tmp_path / "x.png")  # fmt: skip
