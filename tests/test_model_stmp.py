"""STMP: shapes, loss goes down on tiny synthetic data, ONNX parity, job end to end."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import torch

from models.stmp import STMP, STMPConfig
from training.features.stmp import build_panel, festival_occurrence, gather, instances
from training.schemas import ImportReport, SalesData

torch.set_num_threads(1)


def tiny_sales(seed: int = 0, regions: int = 3, categories: int = 3, weeks: int = 130) -> SalesData:
    """Weekly sales with a yearly festival surge that differs by region."""
    rng = np.random.default_rng(seed)
    dates = pd.date_range("2010-02-05", periods=weeks, freq="7D")
    rows = []
    for r in range(regions):
        for c in range(categories):
            level = 100.0 * (1 + r) * (1 + 0.5 * c)
            for i, date in enumerate(dates):
                fest = "thanksgiving" if (date.month == 11 and 22 <= date.day <= 28) else "ordinary"
                surge = (1.0 + 0.5 * r) if fest != "ordinary" else 0.0
                value = level * (1 + 0.2 * np.sin(2 * np.pi * i / 52) + surge)
                rows.append(
                    {
                        "region": f"s{r}",
                        "category": f"d{c}",
                        "date": date,
                        "sales": value + rng.normal(0, 5),
                        "day_type": fest,
                        "temp": float(rng.normal(60, 10)),
                    }
                )
    sales = pd.DataFrame(rows)
    static = pd.DataFrame(
        {"region": [f"s{r}" for r in range(regions)], "size": [1.0, 2.0, 3.0][:regions]}
    )
    return SalesData(
        sales=sales,
        static=static,
        frequency="W",
        external_columns=["temp"],
        static_columns=["size"],
        report=ImportReport("tiny"),
        sha256="0" * 64,
    )


def small_config(**kw: float | bool) -> STMPConfig:
    return STMPConfig(
        n_dynamic=4,
        n_static=2,
        n_target=5,
        n_categories=3,
        skips=(1, 4, 13),
        skip_steps=(4, 2, 1),
        ar_window=8,
        hidden=8,
        embed=16,
        psi_dim=4,
        n_samples=4,
        use_ar=bool(kw.get("use_ar", True)),
        use_skip=bool(kw.get("use_skip", True)),
        use_meta=bool(kw.get("use_meta", True)),
        use_vi=bool(kw.get("use_vi", True)),
        use_anchor=bool(kw.get("use_anchor", True)),
        anchor_lag=int(kw.get("anchor_lag", 13)),
        point_loss_weight=float(kw.get("point_loss_weight", 1.0)),
    )


def task_batch(
    cfg: STMPConfig, tasks: int = 3, ctx: int = 4, qry: int = 5
) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    out: dict[str, torch.Tensor] = {}
    for p, n in (("ctx", ctx), ("qry", qry)):
        out[f"{p}_hist"] = torch.randn(tasks, n, cfg.window, cfg.n_dynamic, generator=g)
        out[f"{p}_static"] = torch.randn(tasks, n, cfg.n_static, generator=g)
        out[f"{p}_category"] = torch.randint(0, cfg.n_categories, (tasks, n), generator=g)
        out[f"{p}_target"] = torch.randn(tasks, n, cfg.n_target, generator=g)
        out[f"{p}_y"] = out[f"{p}_hist"][..., -1, 0] * 0.5 + 1.0
        out[f"{p}_mask"] = torch.ones(tasks, n)
    return out


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        small_config().__class__(
            n_dynamic=1, n_static=0, n_target=0, n_categories=1, skips=(2,), skip_steps=(1,)
        )
    cfg = small_config()
    assert cfg.window == 13
    assert STMPConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    "switches",
    [
        {},
        {"use_ar": False},
        {"use_skip": False},
        {"use_meta": False},
        {"use_vi": False},
        {"use_anchor": False},
        {"point_loss_weight": 0.0},
    ],
)
def test_shapes_and_loss_decreases(switches: dict[str, bool]) -> None:
    torch.manual_seed(0)
    cfg = small_config(**switches)
    model = STMP(cfg)
    batch = task_batch(cfg)
    ex = model.example_inputs(batch=5, k=7)
    point, samples, std = model.forecast(*ex.values())
    assert point.shape == (5,) and samples.shape == (5, 7) and std.shape == (5,)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = float(model.calculate_loss(batch))
    for _ in range(60):
        loss = model.calculate_loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(model.calculate_loss(batch)) < first


def _assert_forecast_parity(
    model: STMP, graph: Path, ex: dict[str, torch.Tensor]
) -> ort.InferenceSession:
    """The exported forecast graph gives the torch model's outputs on `ex`; its session."""
    with torch.no_grad():
        ref = model.forecast(*ex.values())
    sess = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    got = sess.run(["point", "samples", "std"], {k: v.numpy() for k, v in ex.items()})
    for a, b in zip(got, ref, strict=False):
        np.testing.assert_allclose(a, b.numpy(), atol=1e-4)
    return sess


def test_onnx_parity(tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = STMP(small_config())
    graphs = model.export_graphs(tmp_path)
    model.eval()
    # A batch size and sample count different from the export's example.
    ex = model.example_inputs(batch=6, k=9)
    _assert_forecast_parity(model, graphs["forecast"], ex)
    enc = ort.InferenceSession(str(graphs["encode"]), providers=["CPUExecutionProvider"])
    y = torch.randn(6)
    with torch.no_grad():
        ref_e = model.encode_instances(ex["hist"], ex["static"], ex["category"], ex["target"], y)
    got_e = enc.run(
        None,
        {
            "hist": ex["hist"].numpy(),
            "static": ex["static"].numpy(),
            "category": ex["category"].numpy(),
            "target": ex["target"].numpy(),
            "y": y.numpy(),
        },
    )[0]
    np.testing.assert_allclose(got_e, ref_e.numpy(), atol=1e-4)


def _with_gate(model: STMP, bias: float = 0.7) -> STMP:
    """Give the (zero-initialised) anchor gate a non-zero value, as training would."""
    gate = model.extractor.anchor_gate
    assert gate is not None
    with torch.no_grad():
        gate.bias.fill_(bias)
        gate.weight.normal_(0.0, 0.1)
    return model


def test_anchor_follows_last_year_only_when_switched_on() -> None:
    """With a lag past every chain and the AR order, step t-16 is read by the anchor alone."""
    torch.manual_seed(0)
    ex = STMP(small_config(anchor_lag=16)).example_inputs(batch=4, k=3)
    bumped = {k: v.clone() for k, v in ex.items()}
    bumped["hist"][:, 0, 0] += 2.0  # window index W - 16 = 0: the same step last year
    assert small_config(anchor_lag=16).window == 16

    fresh = STMP(small_config(anchor_lag=16)).eval()
    with torch.no_grad():  # zero start: the untrained anchor changes nothing
        np.testing.assert_allclose(
            fresh.forecast(*ex.values())[0], fresh.forecast(*bumped.values())[0]
        )

    on = _with_gate(STMP(small_config(anchor_lag=16))).eval()
    with torch.no_grad():
        gate = on.extractor.anchor_gate(ex["target"]).squeeze(-1)  # type: ignore[misc]
        delta = on.forecast(*bumped.values())[0] - on.forecast(*ex.values())[0]
    np.testing.assert_allclose(delta.numpy(), (2.0 * gate).numpy(), atol=1e-5)
    assert float(delta.abs().min()) > 0.1

    off = STMP(small_config(anchor_lag=16, use_anchor=False)).eval()
    assert off.extractor.anchor_gate is None
    with torch.no_grad():
        np.testing.assert_allclose(off.forecast(*ex.values())[0], off.forecast(*bumped.values())[0])


def test_point_loss_adds_the_l1_of_the_point_forecast() -> None:
    torch.manual_seed(0)
    with_point = STMP(small_config(point_loss_weight=2.0))
    nll_only = STMP(small_config(point_loss_weight=0.0))
    nll_only.load_state_dict(with_point.state_dict())
    batch = task_batch(with_point.cfg)
    torch.manual_seed(1)
    total = float(with_point.calculate_loss(batch))
    torch.manual_seed(1)
    base = float(nll_only.calculate_loss(batch))
    torch.manual_seed(1)
    _, err = with_point._query_terms(batch)
    assert float(err.mean()) > 0
    assert total == pytest.approx(base + 2.0 * float(err.mean()), rel=1e-5)
    with pytest.raises(ValueError):
        small_config(point_loss_weight=-1.0)


def test_onnx_parity_with_a_trained_anchor(tmp_path: Path) -> None:
    torch.manual_seed(2)
    model = _with_gate(STMP(small_config(anchor_lag=16))).eval()
    graphs = model.export_graphs(tmp_path)
    ex = model.example_inputs(batch=5, k=6)
    sess = _assert_forecast_parity(model, graphs["forecast"], ex)
    # The anchor's input is live in the graph: moving last year's value moves the point.
    bumped = {k: v.numpy().copy() for k, v in ex.items()}
    bumped["hist"][:, 0, 0] += 2.0
    moved = sess.run(["point"], bumped)[0]
    point = sess.run(["point"], {k: v.numpy() for k, v in ex.items()})[0]
    assert np.abs(moved - point).min() > 0.1


def test_panel_features() -> None:
    panel = build_panel(tiny_sales())
    assert panel.n_series == 9 and panel.frequency == "W"
    assert panel.day_types[0] == "ordinary" and "thanksgiving" in panel.day_types
    assert panel.train_end == panel.n_steps - 52
    # The calendar runs past the data and projects the festival a year ahead.
    future = panel.calendar_day_type[panel.n_steps :]
    assert (future == panel.day_types.index("thanksgiving")).any()
    n_idx, t_idx = instances(panel, 16, 0, panel.train_end)
    assert t_idx.min() >= 16 and t_idx.max() < panel.train_end
    inputs = gather(panel, n_idx[:4], t_idx[:4], 52)
    assert inputs["hist"].shape == (4, 52, panel.dynamic.shape[2])
    occ = festival_occurrence(panel)
    fest_steps = np.nonzero(panel.day_type_idx)[0]
    assert list(occ[fest_steps]) == list(range(len(fest_steps)))


def test_job_train_and_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from service.runtime.manifest import read_manifest
    from training.jobs import stmp as job

    monkeypatch.setattr(job, "load_data", lambda args: (tiny_sales(), "tiny"))
    args = argparse.Namespace(
        data=[],
        format="tiny",
        seed=0,
        artifacts=tmp_path,
        steps=20,
        tasks=2,
        context=4,
        query=4,
        view_steps=5,
        lr=3e-3,
        hidden=8,
        embed=16,
        psi_dim=4,
        eval_samples=20,
        holdout="year",
    )
    version_dir = job.train(args)
    manifest = read_manifest(version_dir)
    assert set(manifest.graphs) == {"forecast", "encode"}
    validation = manifest.metrics["validation"]
    assert "coverage@80" in validation["ours"] and "coverage@80" in manifest.metrics["test"]
    # Ours beside the best of the simple baselines, fitted on the same validation period.
    assert validation["best_baseline"]["name"] in {"seasonal-naive", "ar", "lightgbm"}
    assert validation["behind_baseline"] in (True, False)
    assert 1 <= manifest.metrics["fit"]["epochs_run"] <= 2  # 20 steps, validated every 10
    tables = np.load(version_dir / "tables.npz")
    assert tables["region_task"].shape == (3, 16)


def test_split_takes_statistics_from_the_training_steps_only() -> None:
    from training.jobs import stmp as job

    args = argparse.Namespace(val_steps=13)
    data = tiny_sales()
    panel, split = job.make_split(data, args)
    assert split.test_start - split.val_start == 13 and split.end - split.test_start == 52
    assert split.val_start == panel.train_end  # scales and z-scores stop here
    late = data.sales["date"] >= panel.dates[split.val_start]
    louder = data.sales.assign(sales=data.sales["sales"].where(~late, data.sales["sales"] * 10))
    changed = SalesData(**{**data.__dict__, "sales": louder})
    panel2, _ = job.make_split(changed, args)
    np.testing.assert_array_equal(panel.scale, panel2.scale)  # validation/test never leak in
    _, t_idx = instances(panel, 16, 0, split.val_start)
    assert t_idx.max() < split.val_start
