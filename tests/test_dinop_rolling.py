"""DINOP's evaluation additions: the naive-slot feature, rolling origin, paired ablations."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch

from models.dinop import DINOP, N_SLOTS, DINOPConfig
from training.ablations import Ablations, accuracy_scorer
from training.baselines.promotion import NAIVE_SLOT, flat, naive_slots
from training.comparison import Comparison
from training.features.dinop import fit_statistics
from training.jobs import dinop as job
from training.jobs.dinop_evaluate import ITEM_INPUTS, without_item_inputs
from training.jobs.dinop_rolling import origin_dates, rolling_origins, rolling_predictions
from training.stats import TestSize
from training.synthetic import generate_sales


@pytest.fixture(scope="module")
def prep() -> job.Prepared:
    args = argparse.Namespace(presale_steps=4, static_steps=13, train_year=None, test_year=None)
    data = generate_sales(n_regions=3, n_categories=2, years=3, seed=2)
    return job.prepare(data, args, naive_slot=True)


def test_naive_slot_feature_is_the_one_hot_of_naive_slots(prep: job.Prepared) -> None:
    for ps, arrays in ((prep.train, prep.tr), (prep.val, prep.va), (prep.test, prep.te)):
        one_hot = arrays[NAIVE_SLOT]
        assert one_hot.shape == (len(ps), N_SLOTS) and (one_hot.sum(1) == 1).all()
        assert (one_hot.argmax(1) == naive_slots(ps)).all()
    plain = prep.without_naive_slot()
    assert not plain.naive_slot and prep.naive_slot
    assert all(NAIVE_SLOT not in a for a in (plain.tr, plain.va, plain.te))
    # the baselines see it too (flat inputs), 10 columns wider
    assert flat(prep.tr).shape[1] == flat(plain.tr).shape[1] + N_SLOTS


def test_ss_head_starts_half_way_on_the_naive_slot_and_needs_it(tmp_path: Path) -> None:
    """With the head's own output at 0 the naive slot gets half the mass (NOTE in the model)."""
    cfg = DINOPConfig(dis_dim=2, du_dim=1, su_dim=1, sii_dim=2, sis_dim=2, naive_slot=True)
    model = DINOP(cfg).eval()
    ss_head = model.heads["ss"]
    assert isinstance(ss_head, torch.nn.Sequential)
    last = ss_head[-1]
    assert isinstance(last, torch.nn.Linear)
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)
    slots = torch.tensor([0, 3, 9, 3])
    batch = {
        "dis": torch.randn(4, 3, 2), "du": torch.randn(4, 3, 1), "su": torch.randn(4, 1),
        "sii": torch.randn(4, 2), "sis": torch.randn(4, 2),
        "naive_ss": torch.nn.functional.one_hot(slots, N_SLOTS).float(),
    }  # fmt: skip
    ss = model.predict(batch)["ss"]
    assert (ss.argmax(-1) == slots).all()
    torch.testing.assert_close(ss[torch.arange(4), slots], torch.full((4,), 0.5))
    with pytest.raises(ValueError, match="naive_ss"):
        model.predict({k: v for k, v in batch.items() if k != "naive_ss"})
    with pytest.raises(ValueError, match="evaluation-only"):
        model.export_graphs(tmp_path)


def test_rolling_origin_never_trains_or_validates_on_or_after_the_test_day(
    prep: job.Prepared,
) -> None:
    origins = rolling_origins(prep, val_days=1)
    test_dates = np.unique(prep.test.promo_date)
    assert [o.date for o in origins] == list(test_dates) and len(origins) > 1
    covered = np.concatenate([o.positions for o in origins])
    assert sorted(covered.tolist()) == list(range(len(prep.test)))  # each test row once
    for o in origins:
        p = o.prep
        assert (p.test.promo_date == o.date).all()
        assert p.train.promo_date.max() < p.val.promo_date.min()
        assert p.val.promo_date.max() < o.date
        assert len(np.unique(p.val.promo_date)) == 1
        np.testing.assert_array_equal(p.test.gmv, prep.test.gmv[o.positions])
        # statistics from this origin's training days only, not the year split's
        own = job.Featurizer.from_config(p.feat.to_config())
        fit_statistics(own, p.train)
        assert (p.feat.gmv_mean, p.feat.gmv_std) == (own.gmv_mean, own.gmv_std)
        assert p.tr["gmv"].mean() == pytest.approx(0.0, abs=1e-5)
        assert (p.te[NAIVE_SLOT].argmax(1) == naive_slots(p.test)).all()
    # later origins train on earlier test days; the year split never does
    assert origins[-1].prep.train.promo_date.max() > prep.train.promo_date.max()
    assert origins[0].prep.train.promo_date.max() == prep.train.promo_date.max()


def test_rolling_predictions_go_back_to_test_order(prep: job.Prepared) -> None:
    origins = rolling_origins(prep, val_days=1)
    out = rolling_predictions(
        origins, len(prep.test), lambda p: {"gmv": p.test.gmv, "ss": p.te[NAIVE_SLOT]}
    )
    np.testing.assert_array_equal(out["gmv"], prep.test.gmv)
    assert (out["ss"].argmax(1) == naive_slots(prep.test)).all()


def test_origin_dates_refuse_too_little_history() -> None:
    dates = np.array(["2010-01-01", "2010-02-01", "2010-03-01"], dtype="datetime64[D]")
    train, val = origin_dates(dates, dates[2], 1)
    assert train.tolist() == dates[:1].tolist() and val.tolist() == dates[1:2].tolist()
    with pytest.raises(Exception, match="val_days"):
        origin_dates(dates, dates[1], 1)  # one date before: nothing left to train on


def _comparison(units: np.ndarray) -> Comparison:
    size = TestSize(kind="forecast", rows=len(units), units=len(set(units)), unit_name="items",
                    series=len(set(units)))  # fmt: skip
    return Comparison(
        primary_metric="ss_acc", higher_is_better=True, ours="a", units=units, size=size,
        resamples=200,
    )  # fmt: skip


def test_ablation_pairs_judge_a_change_on_its_own_metric() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 200)
    units = np.arange(200) % 50
    ablations = Ablations(_comparison(units))
    right, noisy = labels.copy(), np.where(rng.random(200) < 0.5, labels, (labels + 1) % 10)
    ablations.add("with", "ss_acc", accuracy_scorer(labels, right))
    ablations.add("without", "ss_acc", accuracy_scorer(labels, noisy))
    ablations.add("same", "ss_acc", accuracy_scorer(labels, noisy))
    row = ablations.pair("feature", "with", "without", "ss_acc", True)
    assert row is not None and row["verdict"] == "ahead" and row["low"] > 0
    assert row["method_value"] == 1.0
    tie = ablations.pair("nothing", "same", "without", "ss_acc", True)
    assert tie is not None and tie["verdict"] == "inconclusive" and tie["difference"] == 0
    assert ablations.pair("not run", "with", "missing", "ss_acc", True) is None
    assert [r["ablation"] for r in ablations.rows] == ["feature", "nothing"]


def test_without_item_inputs_leaves_only_the_user_features() -> None:
    rng = np.random.default_rng(1)
    arrays = {k: rng.normal(size=(5, 3)) for k in (*ITEM_INPUTS, "user", "mask", "bop")}
    out = without_item_inputs(arrays)
    assert all((out[k] == 0).all() for k in ITEM_INPUTS)
    for k in ("user", "mask", "bop"):
        np.testing.assert_array_equal(out[k], arrays[k])
