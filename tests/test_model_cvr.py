"""MetaCVR: shapes, two-stage learning, ONNX parity, occasions, features, refresh."""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import torch

from models.metacvr import DISTANCES, BaseCVR, MetaCVR, MetaCVRConfig, example_inputs
from service.occasions import OccasionCalendar, Promotion, default_calendar, parse_promotion
from service.servables.cvr_features import FIELD_INDEX, GROUPS, FeatureSpec
from training.features.cvr import (
    CvrSamples,
    Vocab,
    build_samples,
    chronological_split,
    promo_click_log,
    split_days,
)
from training.jobs import cvr as job
from training.loop import Budget

torch.set_num_threads(1)


def _cfg(distance: str = "spdm") -> MetaCVRConfig:
    spec = FeatureSpec(seq_len=6)
    return MetaCVRConfig(
        field_cards=spec.cardinalities(12, 30, 5),
        groups={k: list(v) for k, v in GROUPS.items()},
        d_model=16,
        heads=2,
        main_hidden=(32, 16),
        bias_hidden=(16, 8),
        head_hidden=(16, 8),
        proj_dim=8,
        nndm_hidden=8,
        distance=distance,
        seq_len=6,
    )


def test_config_validates() -> None:
    with pytest.raises(ValueError):
        MetaCVRConfig(field_cards=[], groups={})
    with pytest.raises(ValueError):
        _cfg("manhattan")


@pytest.mark.parametrize("distance", DISTANCES)
def test_shapes_and_onnx_parity(distance: str, tmp_path: Path) -> None:
    cfg = _cfg(distance)
    torch.manual_seed(0)
    model = MetaCVR(cfg)
    model.set_prototypes(torch.randn(4, 2, model.base.repr_dim))
    with torch.no_grad():  # move the EPN off its identity start so the DMN path matters
        model.epn.weight.normal_()
    model.eval()
    x = example_inputs(cfg, batch=7, seed=3)
    x["seq_actions"][0] = 0  # a user with no history at all
    with torch.no_grad():
        cvr, base_cvr, s_occ = model(**x)
    assert cvr.shape == (7,) and base_cvr.shape == (7,) and s_occ.shape == (7, 4)
    assert torch.isfinite(cvr).all() and ((cvr > 0) & (cvr < 1)).all()
    graphs = model.export_graphs(tmp_path)
    sess = ort.InferenceSession(str(graphs["score"]), providers=["CPUExecutionProvider"])
    for batch in (1, 7):
        feeds = {k: v[:batch].numpy() for k, v in x.items()}
        out = sess.run(["cvr", "base_cvr", "occasion_scores"], feeds)
        np.testing.assert_allclose(out[0], cvr[:batch].numpy(), atol=1e-4)
        np.testing.assert_allclose(out[1], base_cvr[:batch].numpy(), atol=1e-4)
        np.testing.assert_allclose(out[2], s_occ[:batch].numpy(), atol=1e-4)


def test_two_stage_training_learns_and_freezes_frn() -> None:
    events, calendar = promo_click_log(seed=1, n_users=25, n_items=30, days=30)
    spec = FeatureSpec(seq_len=6, stats_window=50)
    vocab = Vocab.build(events)
    samples = build_samples(events, calendar, vocab, spec)
    train, recent, _, _ = chronological_split(samples, split_days(samples.day), 3.0)
    n_users, n_items, n_cats = vocab.sizes()
    cfg = _cfg()
    cfg.field_cards = spec.cardinalities(n_users, n_items, n_cats)
    base = BaseCVR(cfg)
    four = Budget(max_epochs=4)
    fit = functools.partial(job.fit_module, batch_size=64, seed=0, label="BASE")
    report = fit(base, base.calculate_loss, list(base.parameters()), train, None, four, lr=3e-3)
    losses = [h["loss"] for h in report.history]
    assert report.epochs_run == 4 and losses[-1] < losses[0]
    protos, sources = job.compute_prototypes(base, recent, train, 1)
    assert protos.shape == (4, 2, base.repr_dim) and set(sources) == {"BP", "DP", "AP", "NP"}
    model = MetaCVR(cfg, base=base)
    model.set_prototypes(protos)
    frozen = {k: v.clone() for k, v in model.base.state_dict().items()}
    with torch.no_grad():  # stage 2 starts exactly at BASE (EPN identity on s_b)
        b = job._batch(recent, slice(0, 16))
        torch.testing.assert_close(model.predict(b)["cvr"], base.predict(b)["cvr"])
    model.freeze_frn()
    s2 = fit(model, model.calculate_loss, model.stage2_parameters(), recent, None,
             Budget(max_epochs=5), lr=1e-2)  # fmt: skip
    assert s2.history[-1]["loss"] < s2.history[0]["loss"]
    for k, v in model.base.state_dict().items():
        torch.testing.assert_close(v, frozen[k])


def test_occasion_calendar_windows_and_roundtrip() -> None:
    cal = OccasionCalendar(
        promotions=[Promotion("d11", dt.date(2015, 11, 11), dt.date(2015, 11, 11))],
        before_days=3,
        after_days=2,
    )
    got = [cal.occasion_of_day(dt.date(2015, 11, d)) for d in (7, 8, 10, 11, 12, 13, 14)]
    assert got == ["NP", "BP", "BP", "DP", "AP", "AP", "NP"]
    again = OccasionCalendar.from_dict(json.loads(json.dumps(cal.to_dict())))
    ts = np.array([dt.datetime(2015, 11, d, 12, tzinfo=dt.UTC).timestamp() for d in (9, 11, 13)])
    assert again.occasion_ids(ts.astype(np.int64)).tolist() == [0, 1, 2]
    assert parse_promotion("x:2020-06-16:2020-06-18").end == dt.date(2020, 6, 18)
    with pytest.raises(ValueError):
        parse_promotion("x:2020-06-18:2020-06-01")
    names = {p.name for p in default_calendar(np.array([ts[0]], dtype=np.int64)).promotions}
    assert any(n.startswith("double11-2015") or "2015" in n for n in names)


def test_features_have_no_label_leak() -> None:
    events, calendar = promo_click_log(seed=2, n_users=10, n_items=15, days=20)
    spec = FeatureSpec(seq_len=5, stats_window=30)
    samples = build_samples(events, calendar, Vocab.build(events), spec)
    # The first click of each user has no history: all user / interaction fields are 0.
    first = samples.fields[:, FIELD_INDEX["u_events"]] == 0
    assert first.any()
    assert (samples.seq_actions[first] == 0).all()
    assert (samples.fields[first, FIELD_INDEX["ui_bought"]] == 0).all()
    assert 0 < samples.label.mean() < 1 and (samples.label <= samples.label_deep).all()


def test_split_purges_clicks_whose_label_window_reaches_the_next_part() -> None:
    events, calendar = promo_click_log(seed=4, n_users=15, n_items=20, days=24)
    samples = build_samples(events, calendar, Vocab.build(events), FeatureSpec(seq_len=4), 2.0)
    days = split_days(samples.day, test_frac=0.25, recent_frac=0.5, val_frac=0.2, label_days=2.0)
    assert days.recent_start < days.val_start < days.test_start
    train, recent, val, test = chronological_split(samples, days, label_days=2.0)
    window = 2 * 86400
    assert (train.ts + window < days.val_start * 86400).all()
    assert (val.ts + window < days.test_start * 86400).all()
    assert (val.day >= days.val_start).all() and (test.day >= days.test_start).all()
    assert (recent.day >= days.recent_start).all() and len(recent) <= len(train)
    # The purge drops exactly the clicks whose window crosses a boundary, and some exist.
    crosses_val = (samples.day < days.val_start) & (samples.ts + window >= days.val_start * 86400)
    assert crosses_val.any()
    assert len(train) == (samples.day < days.val_start).sum() - crosses_val.sum()
    assert len(test) == (samples.day >= days.test_start).sum()


def test_vocabulary_holds_training_days_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def small_log(args: argparse.Namespace) -> tuple[object, str, OccasionCalendar]:
        events, calendar = promo_click_log(seed=6, n_users=20, n_items=25, days=30)
        late = events["ts"].max() - 86400
        extra = events.iloc[-1:].assign(item_id="brand-new", ts=late, event_id="late")
        return pd.concat([events, extra]).sort_values("ts"), "tiny", calendar

    monkeypatch.setattr(job, "load_data", small_log)
    prep = job.prepare(_args(tmp_path))
    assert "brand-new" not in prep.vocab.items
    assert prep.days is not None
    train_items = set(
        prep.events.loc[prep.events["ts"] < prep.days.val_start * 86400, "item_id"].astype(str)
    )
    assert set(prep.vocab.items) == train_items


def _args(tmp_path: Path, *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", nargs="+", default=[])
    parser.add_argument("--format", default="synthetic")
    parser.add_argument("--artifacts", type=Path)
    parser.add_argument("--results-dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    job.add_arguments(parser)
    return parser.parse_args(
        ["--artifacts", str(tmp_path / "art"), "--results-dir", str(tmp_path / "res"),
         "--d-model", "16", "--heads", "2", "--epochs", "1", "--stage2-epochs", "1", *extra]
    )  # fmt: skip


def test_train_then_refresh_prototypes_writes_new_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def small_log(args: argparse.Namespace) -> tuple[object, str, OccasionCalendar]:
        events, calendar = promo_click_log(seed=args.seed, n_users=20, n_items=25, days=30)
        return events, f"tiny-{args.seed}", calendar

    monkeypatch.setattr(job, "load_data", small_log)
    first = job.train(_args(tmp_path))
    manifest = json.loads((first / "manifest.json").read_text())
    assert manifest["graphs"]["score"]["inputs"][0]["name"] == "fields"
    assert manifest["config"]["calendar"]["promotions"]
    refreshed = job.train(_args(tmp_path, "--refresh-prototypes-from", str(first), "--seed", "5"))
    assert refreshed != first and refreshed.parent == first.parent
    m2 = json.loads((refreshed / "manifest.json").read_text())
    assert m2["metrics"]["refreshed_from"] == manifest["version"]
    model1, _ = job.load_artifact_model(first)
    model2, _ = job.load_artifact_model(refreshed)
    assert not torch.allclose(model1.prototypes, model2.prototypes)
    torch.testing.assert_close(model1.base.state_dict(), model2.base.state_dict())


def test_cli_promotions_override_the_default_calendar(tmp_path: Path) -> None:
    args = _args(tmp_path, "--promotion", "sale:2024-03-08:2024-03-10", "--before-days", "2")
    events, source = promo_click_log(seed=0, n_users=3, n_items=20, days=3)
    cal = job.make_calendar(args, events, source)
    assert [p.name for p in cal.promotions] == ["sale"] and cal.before_days == 2
    assert cal.occasion_of_day(dt.date(2024, 3, 7)) == "BP"
    assert job.make_calendar(_args(tmp_path), events, source) is source


def _proto_setup() -> tuple[BaseCVR, CvrSamples, CvrSamples, CvrSamples, CvrSamples]:
    events, calendar = promo_click_log(seed=2, n_users=25, n_items=30, days=40)
    spec = FeatureSpec(seq_len=6, stats_window=50)
    vocab = Vocab.build(events)
    samples = build_samples(events, calendar, vocab, spec)
    train, recent, val, test = chronological_split(samples, split_days(samples.day), 3.0)
    cfg = _cfg()
    cfg.field_cards = spec.cardinalities(*vocab.sizes())
    torch.manual_seed(0)
    return BaseCVR(cfg), train, recent, val, test


def test_prototypes_average_exactly_the_chosen_support_days() -> None:
    base, train, recent, _, _ = _proto_setup()
    np_occ = 3  # NP: the synthetic D_recent holds several NP days with both classes
    every = job.support_day_choice(recent, np_occ, 0)
    assert len(every) >= 2 and job.support_day_choice(recent, np_occ, 1) == [max(every)]
    for days, chosen in ((0, every), (1, [max(every)]), (2, sorted(every)[-2:])):
        protos, sources = job.compute_prototypes(base, recent, train, days)
        assert sources["NP"].startswith("recent:") and sources["NP"].endswith(f"+{len(chosen)}d")
        sup = recent.subset((recent.occasion == np_occ) & np.isin(recent.day, chosen))
        rep = job.represent(base, sup)
        buys = torch.from_numpy(sup.label == 1.0)
        torch.testing.assert_close(protos[np_occ, 0], rep[buys].mean(0))
        torch.testing.assert_close(protos[np_occ, 1], rep[~buys].mean(0))
    one, _ = job.compute_prototypes(base, recent, train, 1)
    assert not torch.allclose(
        one[np_occ], job.compute_prototypes(base, recent, train, 0)[0][np_occ]
    )


def test_pretest_pool_uses_validation_days_and_never_a_test_day() -> None:
    base, train, recent, val, test = _proto_setup()
    assert val.day.max() < test.day.min()
    protos, sources = job.compute_prototypes(base, recent, train, 0, pretest=val)
    used = [o for o, s in sources.items() if s.startswith("pretest:")]
    assert used, sources  # the validation days hold an occasion with both classes
    for name, source in sources.items():
        if ":" in source and source.split(":")[1][:1].isdigit():
            first = pd.Timestamp(source.split(":")[1].split("+")[0]).value // 86_400_000_000_000
            assert first < test.day.min(), (name, source)
    occ = ("BP", "DP", "AP", "NP").index(used[0])
    sup = val.subset((val.occasion == occ) & np.isin(val.day, job.support_day_choice(val, occ, 0)))
    rep = job.represent(base, sup)
    torch.testing.assert_close(protos[occ, 0], rep[torch.from_numpy(sup.label == 1.0)].mean(0))
    _, plain = job.compute_prototypes(base, recent, train, 0)
    assert not plain[used[0]].startswith("pretest:")
