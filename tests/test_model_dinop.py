"""DINOP: shapes, eq. 1-2 labels, loss decreases, streaming state == full pass, ONNX parity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from models.dinop import DINOP, NEG_INF, DINOPConfig
from training.features.dinop import bsp_labels, ss_labels

B, T = 16, 5


def _config(**kw: object) -> DINOPConfig:
    base: dict[str, object] = dict(
        dis_dim=4, du_dim=3, su_dim=3, sii_dim=6, sis_dim=5, user_dim=4, act_dim=2
    )
    base.update(kw)
    return DINOPConfig(**base)  # type: ignore[arg-type]


def _batch(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    dis = torch.randn(B, T, 4, generator=g)
    mask = torch.ones(B, T)
    mask[:3, :2] = 0.0  # items that start late
    signal = dis[:, :, 0].mean(1)
    return {
        "dis": dis,
        "du": torch.randn(B, T, 3, generator=g),
        "su": torch.randn(B, 3, generator=g),
        "sii": torch.randn(B, 6, generator=g),
        "sis": torch.randn(B, 5, generator=g),
        "mask": mask,
        "user": torch.randn(B, 4, generator=g),
        "act": torch.randn(B, 2, generator=g),
        "gmv": 2 * signal,
        "bsp": (signal > 0).float(),
        "ss": torch.clamp(((signal + 1.5) * 3).long(), 0, 9),
        "bop": (signal > 0.2).float(),
        "ja": (signal < 0).float(),
    }


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        _config(tasks=("gmv", "nope"))
    with pytest.raises(ValueError):
        _config(dropout=1.0)
    with pytest.raises(ValueError):
        _config(dis_dim=0)
    assert _config().rep_dim == 256  # section 4.2


def test_shapes_and_all_heads() -> None:
    model = DINOP(_config(tasks=("gmv", "bsp", "ss", "bop", "ja")))
    model.eval()
    out = model.predict(_batch())
    assert out["rep"].shape == (B, 256)
    assert out["gmv"].shape == (B,)
    assert out["ss"].shape == (B, 10)
    assert torch.allclose(out["ss"].sum(-1), torch.ones(B), atol=1e-5)
    for task in ("bsp", "bop", "ja"):
        assert out[task].shape == (B,)
        assert bool(((out[task] > 0) & (out[task] < 1)).all())


def test_du_only_controls_gates() -> None:
    """Eq. 3: with the update gate fixed, DU_t cannot reach the candidate state."""
    model = DINOP(_config())
    cell = model.cell
    h = torch.randn(B, 128)
    dis = torch.randn(B, 4)
    with torch.no_grad():
        cell.gates_u.weight.zero_()  # DU's only path is through the gates
        a = cell(dis, torch.randn(B, 3), h)
        b = cell(dis, torch.randn(B, 3), h)
    assert torch.allclose(a, b)


def test_padding_leaves_state_unchanged() -> None:
    model = DINOP(_config())
    model.eval()
    h, m, s, acc = model.initial_state(B)
    z = torch.zeros(B, 1)
    out = model.step(h, m, s, acc, torch.randn(B, 4), torch.randn(B, 3), torch.randn(B, 3), z)
    assert torch.equal(out[0], h) and torch.equal(out[3], acc)
    assert float(out[1].max()) == pytest.approx(NEG_INF)


def test_submodel_switches_ignore_inputs() -> None:
    batch = _batch()
    for switches, key in (({"use_su": False}, "su"), ({"use_su": False, "use_du": False}, "du")):
        model = DINOP(_config(**switches))
        model.eval()
        other = dict(batch)
        other[key] = torch.randn_like(batch[key])
        with torch.no_grad():
            assert torch.allclose(model.represent(batch), model.represent(other))


@pytest.mark.parametrize("tasks", [("gmv", "bsp", "ss", "bop", "ja"), ("ss",)])
def test_loss_decreases(tasks: tuple[str, ...]) -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = DINOP(_config(tasks=tasks, dropout=0.0))
    batch = _batch()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = float(model.calculate_loss(batch))
    for _ in range(60):
        loss = model.calculate_loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss) < 0.5 * first


def test_bsp_and_ss_labels_follow_eqs_1_and_2() -> None:
    gmv = np.array([50.0, 30.0, 10.0, 5.0, 5.0, 0.0, -3.0])
    # shares of {j: G_j >= G_i}: 0.5, 0.8, 0.9, 1.0 (ties counted), 1.0, 1.0, 1.0
    assert bsp_labels(gmv).tolist() == [0, 0, 0, 0, 0, 0, 0]
    gmv2 = np.array([10.0] + [90.0 / 60] * 60)  # the top item holds 10% < 20%
    assert bsp_labels(gmv2)[0] == 1 and bsp_labels(gmv2)[1:].sum() == 0
    industry = np.array(["a"] * 4 + ["b"] * 3)
    g = np.array([40.0, 30.0, 20.0, 10.0, 5.0, 5.0, 90.0])
    # industry a: cum shares .4 .7 .9 1.0 -> slots 4, 7, 9, 10 (0-based 3, 6, 8, 9)
    # industry b: 90 -> .9 -> slot 9; the tied 5s -> 1.0 -> slot 10
    assert ss_labels(g, industry).tolist() == [3, 6, 8, 9, 9, 9, 8]


def _ort(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_onnx_parity_streaming(tmp_path: Path) -> None:
    """The step graph applied period by period + forecast graph == the PyTorch full pass."""
    torch.manual_seed(1)
    model = DINOP(_config(tasks=("gmv", "bsp", "ss", "bop", "ja")))
    model.eval()
    batch = _batch(3)
    with torch.no_grad():
        ref = model.predict(batch)
    graphs = model.export_graphs(tmp_path)
    step, forecast, bop = _ort(graphs["step"]), _ort(graphs["forecast"]), _ort(graphs["bop"])
    h, m, s, acc = (x.numpy() for x in model.initial_state(B))
    for t in range(T):
        h, m, s, acc = step.run(
            None,
            {
                "h": h,
                "m": m,
                "s": s,
                "acc": acc,
                "dis": batch["dis"][:, t].numpy(),
                "du": batch["du"][:, t].numpy(),
                "su": batch["su"].numpy(),
                "valid": batch["mask"][:, t : t + 1].numpy(),
            },
        )
    rep, gmv, bsp, ss, ja = forecast.run(
        None,
        {
            "s": s,
            "acc": acc,
            "sii": batch["sii"].numpy(),
            "sis": batch["sis"].numpy(),
            "act": batch["act"].numpy(),
        },
    )
    np.testing.assert_allclose(rep, ref["rep"].numpy(), atol=1e-4)
    np.testing.assert_allclose(gmv, ref["gmv"].numpy(), atol=1e-4)
    np.testing.assert_allclose(bsp, ref["bsp"].numpy(), atol=1e-4)
    np.testing.assert_allclose(ss, ref["ss"].numpy(), atol=1e-4)
    np.testing.assert_allclose(ja, ref["ja"].numpy(), atol=1e-4)
    (p,) = bop.run(None, {"rep": rep, "user": batch["user"].numpy()})
    np.testing.assert_allclose(p, ref["bop"].numpy(), atol=1e-4)
    # a batch of one works too (dynamic batch axis)
    (p1,) = bop.run(None, {"rep": rep[:1], "user": batch["user"][:1].numpy()})
    np.testing.assert_allclose(p1, p[:1], atol=1e-5)


def test_promo_set_from_synthetic_sales() -> None:
    """Any canonical sales frame maps onto the factor groups; dims match the featurizer."""
    from training.features.dinop import build_promo_set, fit_statistics, tensors
    from training.synthetic import generate_sales

    data = generate_sales(n_regions=3, n_categories=2, years=3, seed=2)
    ps, feat = build_promo_set(data, presale_steps=4, static_steps=13)
    assert len(ps) > 0 and set(ps.promo_type) <= set(feat.promo_types)
    assert ps.dis.shape[1:] == (4, feat.dis_dim)
    assert ps.du.shape[-1] == feat.du_dim and ps.sii.shape[-1] == feat.sii_dim
    assert ps.sis.shape[-1] == feat.sis_dim
    fit_statistics(feat, ps)
    arrays = tensors(feat, ps)
    assert all(np.isfinite(v).all() for v in arrays.values())
    # the GMV target converts back exactly
    back = feat.gmv_from(arrays["gmv"].astype(np.float64), ps.scale)
    np.testing.assert_allclose(back, ps.gmv, rtol=1e-4, atol=1e-2)
    # labels per promotion day follow eqs. 1 and 2
    for date in np.unique(ps.promo_date):
        idx = np.flatnonzero(ps.promo_date == date)
        assert (ps.bsp[idx] == bsp_labels(ps.gmv[idx])).all()
        assert (ps.ss[idx] == ss_labels(ps.gmv[idx], ps.category[idx])).all()


def test_split_validates_between_train_and_test_with_training_statistics() -> None:
    import argparse

    from training.jobs import dinop as job
    from training.synthetic import generate_sales

    args = argparse.Namespace(presale_steps=4, static_steps=13, train_year=None, test_year=None)
    prep = job.prepare(generate_sales(n_regions=3, n_categories=2, years=3, seed=2), args)
    # time-ordered: training year, then the next year's first promotion date, then the rest
    assert prep.train.promo_date.max() < prep.val.promo_date.min()
    assert prep.val.promo_date.max() < prep.test.promo_date.min()
    assert len(np.unique(prep.val.promo_date)) == 1
    assert set(prep.val.years) == set(prep.test.years) == {prep.train.years.max() + 1}
    # z-scored with the training item-days' own statistics: exactly mean 0, sd 1 there
    assert prep.tr["gmv"].mean() == pytest.approx(0.0, abs=1e-5)
    assert prep.tr["gmv"].std() == pytest.approx(1.0, abs=1e-4)
    with pytest.raises(Exception, match="val_days"):
        job.prepare(generate_sales(n_regions=3, n_categories=2, years=3, seed=2),
                    argparse.Namespace(**{**vars(args), "val_days": 99}))  # fmt: skip


def test_split_refuses_a_test_year_that_is_not_after_the_train_year() -> None:
    import argparse

    from service.errors import InvalidInput
    from training.jobs import dinop as job
    from training.synthetic import generate_sales

    sales = generate_sales(n_regions=3, n_categories=2, years=3, seed=2)
    years = sorted(set(job.build_promo_set(sales, 4, 13)[0].years.tolist()))
    last = years[-1]
    for test_year in (last, years[0]):  # the same year would train on its own test days
        args = argparse.Namespace(
            presale_steps=4, static_steps=13, train_year=last, test_year=test_year
        )
        with pytest.raises(InvalidInput, match="must come after the train year") as err:
            job.prepare(sales, args)
        assert err.value.field == "test_year"


def test_date_split_cuts_one_timeline_for_a_single_year_log() -> None:
    """`--split dates`: the last date tests, the one before validates, the rest train; a log
    whose promotion days fall in one year is refused by the year split and named the option."""
    import argparse

    from service.errors import InvalidInput
    from training.jobs import dinop as job
    from training.synthetic import generate_sales

    sales = generate_sales(n_regions=3, n_categories=2, years=3, seed=2)
    ps = job.build_promo_set(sales, 4, 13)[0]
    busiest = max(
        set(ps.years.tolist()), key=lambda y: len(np.unique(ps.promo_date[ps.years == y]))
    )
    one_year = ps.years == busiest
    assert len(np.unique(ps.promo_date[one_year])) >= 3  # enough for train, validation, test
    with pytest.raises(InvalidInput, match="--split dates"):
        job.split_years(ps.subset(np.flatnonzero(one_year)), None, None)

    args = argparse.Namespace(presale_steps=4, static_steps=13, split="dates", test_days=2)
    prep = job.prepare(sales, args)
    every = np.unique(ps.promo_date)
    assert set(np.unique(prep.test.promo_date)) == set(every[-2:])
    assert set(np.unique(prep.val.promo_date)) == {every[-3]}
    assert prep.train.promo_date.max() < prep.val.promo_date.min()
    assert len(prep.train) + len(prep.val) + len(prep.test) == len(ps)
    assert prep.split.startswith("one timeline of promotion dates: train (")
    assert prep.tr["gmv"].mean() == pytest.approx(0.0, abs=1e-5)  # training statistics
    for val_days, test_days in ((0, 1), (1, 0), (len(every) - 1, 1)):
        bad = argparse.Namespace(**{**vars(args), "val_days": val_days, "test_days": test_days})
        with pytest.raises(InvalidInput, match="leave a date to train on"):
            job.prepare(sales, bad)


def test_uplift_target_is_the_change_from_the_last_presale_period() -> None:
    """An uplift GMV head's 0 (before z-scoring) is the naive forecast, so an unseen
    promotion type falls back to it; both kinds invert exactly; a level head ignores it."""
    from service.servables.dinop_features import DinopFeatures

    def features(kind: str) -> DinopFeatures:
        return DinopFeatures(
            presale_steps=4, static_steps=13, regions=["r"], categories=["c"],
            promo_types=["p"], dis_columns=[], du_columns=[], static_numeric=[],
            static_text={}, gmv_mean=0.3, gmv_std=2.0, scale_floor=1.0,
            gmv_target_kind=kind,
        )  # fmt: skip

    gmv = np.array([120.0, -5.0, 0.0, 900.0])
    scale = np.array([100.0, 0.5, 10.0, 300.0])
    last = np.array([100.0, 3.0, 0.0, 250.0])
    uplift, level = features("uplift"), features("level")
    for f in (uplift, level):
        z = f.gmv_target(gmv, scale, last)
        np.testing.assert_allclose(f.gmv_from(z, scale, last), gmv)
    zero_change = (0.0 - uplift.gmv_mean) / uplift.gmv_std
    np.testing.assert_allclose(uplift.gmv_from(np.full(4, zero_change), scale, last), last)
    np.testing.assert_allclose(level.gmv_target(gmv, scale), level.gmv_target(gmv, scale, last))
    assert not np.allclose(uplift.gmv_target(gmv, scale, last), level.gmv_target(gmv, scale))
    with pytest.raises(ValueError, match="last pre-sale"):
        uplift.gmv_target(gmv, scale)
    with pytest.raises(ValueError, match="gmv_target_kind"):
        features("ratio")
    # an artifact written before the uplift existed has no such key: it reads as "level"
    old = {k: v for k, v in level.to_config().items() if k != "gmv_target_kind"}
    assert DinopFeatures.from_config(old).gmv_target_kind == "level"
