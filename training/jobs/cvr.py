"""`salecast train|evaluate cvr`: MetaCVR's two-stage training, baselines, prototype refresh.

Stage 1 trains BASE (FRN + ranking head) on the training days D; prototypes per occasion and
class are the mean frozen-FRN representation of one support day of that occasion in D_recent
(the last days of D); stage 2 trains only the DMN and EPN on D_recent (paper Algorithm 1).

`--refresh-prototypes-from ARTIFACT_DIR --data ...` recomputes the prototypes (and the item
statistics snapshot) from new days with the artifact's frozen weights and writes a new
artifact version: no gradient step, so it takes seconds and the registry picks it up.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import logging
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import log_loss, roc_auc_score
from torch import nn

from models.metacvr import DISTANCES, BaseCVR, MetaCVR, MetaCVRConfig
from service.runtime.manifest import DataWindow
from training import distributed
from training.artifacts import write_artifact
from training.baselines.cvr import EsmmCVR, LightGBMRecent
from training.features.cvr import (
    FIELDS,
    GROUPS,
    CvrSamples,
    FeatureSpec,
    Vocab,
    build_samples,
    chronological_split,
    click_days,
    item_stats_table,
    promo_click_log,
    split_days,
)
from training.occasions import (
    OCCASIONS,
    OccasionCalendar,
    default_calendar,
    parse_promotion,
)
from training.reporting import write_accuracy

log = logging.getLogger(__name__)

NAME = "cvr"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("cvr")
    g.add_argument("--label-days", type=float, default=3.0, help="click -> buy window (days)")
    g.add_argument("--seq-len", type=int, default=20)
    g.add_argument("--stats-window", type=int, default=100)
    g.add_argument("--test-frac", type=float, default=0.2, help="last days' share of samples")
    g.add_argument("--recent-frac", type=float, default=0.25, help="D_recent: last share of days")
    g.add_argument("--lgb-recent-frac", type=float, default=0.33, help="LightGBM's recent days")
    g.add_argument("--distance", choices=DISTANCES, default="spdm")
    g.add_argument("--d-model", type=int, default=64)
    g.add_argument("--heads", type=int, default=4)
    g.add_argument("--epochs", type=int, default=4, help="stage 1 (BASE) epochs on D")
    g.add_argument("--stage2-epochs", type=int, default=6, help="DMN + EPN epochs on D_recent")
    g.add_argument("--finetune-epochs", type=int, default=2, help="BASE-F epochs on D_recent")
    g.add_argument("--batch-size", type=int, default=256)
    g.add_argument("--lr", type=float, default=1e-3)
    g.add_argument("--stage2-lr", type=float, default=1e-2)
    g.add_argument("--support-days", type=int, default=1, help="days per prototype (paper: 1)")
    g.add_argument("--repeats", type=int, default=1, help="evaluate: seeds to average")
    g.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    g.add_argument(
        "--promotion",
        action="append",
        type=parse_promotion,
        default=[],
        help="NAME:START[:END] (ISO dates); repeatable; default: the calendar's festivals",
    )
    g.add_argument("--before-days", type=int, default=7, help="BP window width")
    g.add_argument("--after-days", type=int, default=3, help="AP window width")
    g.add_argument(
        "--refresh-prototypes-from",
        type=Path,
        default=None,
        help="artifact dir: recompute prototypes from --data, write a new version",
    )


# ---- data --------------------------------------------------------------------------------
def dataset_name(args: argparse.Namespace) -> str:
    if not args.data or args.format == "synthetic":
        return "synthetic"
    first = Path(args.data[0]).resolve()
    return (first if first.is_dir() else first.parent).name


def load_data(args: argparse.Namespace) -> tuple[pd.DataFrame, str, OccasionCalendar | None]:
    """(events, sha256, calendar of the source or None) for --data / --format.

    `synthetic` is the promotion click log of `training.features.cvr.promo_click_log`, whose
    occasion shift is known; its calendar comes with it.
    """
    if not args.data or args.format == "synthetic":
        events, calendar = promo_click_log(seed=args.seed)
        digest = f"synthetic:promo_click_log:seed={args.seed}"
        return events, digest, calendar
    from training.data import load_events

    event_log = load_events([Path(p) for p in args.data], args.format)
    log.info("%s", event_log.report.summary())
    return event_log.events, event_log.sha256, None


def make_calendar(
    args: argparse.Namespace, events: pd.DataFrame, source: OccasionCalendar | None
) -> OccasionCalendar:
    """--promotion beats the data source's own calendar, which beats the festival default."""
    if args.promotion:
        return OccasionCalendar(
            promotions=list(args.promotion),
            before_days=args.before_days,
            after_days=args.after_days,
        )
    if source is not None:
        return source
    return default_calendar(events["ts"].to_numpy(), args.before_days, args.after_days)


def _spec(args: argparse.Namespace) -> FeatureSpec:
    return FeatureSpec(seq_len=args.seq_len, stats_window=args.stats_window)


def model_config(args: argparse.Namespace, vocab: Vocab, distance: str) -> MetaCVRConfig:
    n_users, n_items, n_cats = vocab.sizes()
    return MetaCVRConfig(
        field_cards=_spec(args).cardinalities(n_users, n_items, n_cats),
        groups={k: list(v) for k, v in GROUPS.items()},
        d_model=args.d_model,
        heads=args.heads,
        distance=distance,
        seq_len=args.seq_len,
    )


# ---- torch loops ---------------------------------------------------------------------------
def _batch(s: CvrSamples, idx: np.ndarray | slice) -> dict[str, torch.Tensor]:
    return {
        "fields": torch.from_numpy(s.fields[idx]),
        "seq_items": torch.from_numpy(s.seq_items[idx]),
        "seq_cats": torch.from_numpy(s.seq_cats[idx]),
        "seq_actions": torch.from_numpy(s.seq_actions[idx]),
        "label": torch.from_numpy(s.label[idx]),
        "label_deep": torch.from_numpy(s.label_deep[idx]),
    }


def fit(
    module: nn.Module,
    loss_fn: Callable[[Mapping[str, torch.Tensor]], torch.Tensor],
    params: list[nn.Parameter],
    data: CvrSamples,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    ctx: distributed.DistContext | None = None,
) -> list[float]:
    """Plain Adam minibatch loop; returns the mean loss per epoch.

    Under torchrun (`ctx` with several ranks) every rank draws the same permutation and takes
    its slice of each global batch; DDP averages the gradients, weighted by each rank's share,
    so the run follows the single-process one (stage 1 of `train`).
    """
    if len(data) == 0 or epochs <= 0:
        return []
    ctx = ctx or distributed.DistContext()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    module.to(ctx.device)  # a no-op on the CPU (and so for `evaluate`)
    trainer = distributed.wrap(distributed.LossModule(module, loss_fn), ctx)
    opt = torch.optim.Adam(params, lr=lr)
    history = []
    module.train()
    for _ in range(epochs):
        order = rng.permutation(len(data))
        total, count = 0.0, 0
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            mine = idx[distributed.local_slice(len(idx), ctx)]
            # A rank left without rows still joins the gradient all-reduce, with weight 0.
            weight = distributed.share_weight(len(mine), len(idx), ctx)
            batch = _batch(data, mine if len(mine) else idx[:1])
            loss = trainer({k: v.to(ctx.device) for k, v in batch.items()})
            opt.zero_grad()
            (loss * weight).backward()
            opt.step()
            total += loss.item() * len(mine)
            count += len(idx)
        history.append(distributed.mean_across_ranks(total, ctx) * ctx.world_size / count)
    module.eval()
    return history


@torch.no_grad()
def predict(
    module: nn.Module,
    fn: Callable[[Mapping[str, torch.Tensor]], torch.Tensor],
    data: CvrSamples,
    batch_size: int = 2048,
) -> np.ndarray:
    module.eval()
    out = [fn(_batch(data, slice(i, i + batch_size))) for i in range(0, len(data), batch_size)]
    return torch.cat(out).numpy().astype(np.float64) if out else np.zeros(0)


@torch.no_grad()
def represent(base: BaseCVR, data: CvrSamples, batch_size: int = 2048) -> torch.Tensor:
    base.eval()
    reps = [
        base.represent(b["fields"], b["seq_items"], b["seq_cats"], b["seq_actions"])
        for b in (_batch(data, slice(i, i + batch_size)) for i in range(0, len(data), batch_size))
    ]
    return torch.cat(reps) if reps else torch.zeros(0, base.repr_dim)


def compute_prototypes(
    base: BaseCVR, recent: CvrSamples, train: CvrSamples, support_days: int
) -> tuple[torch.Tensor, dict[str, str]]:
    """[4, 2, D] prototypes (cls 0 = buy, 1 = no buy) and where each occasion's came from.

    Paper Sec. III-D: pick a day of the occasion in D_recent, positive support = its
    purchases, negative = its other clicks, prototype = mean FRN representation. When
    D_recent has no day of an occasion with both classes, the latest such day in D is used;
    failing that, every sample of the occasion, then every sample of D (recorded as the
    source, so the artifact says how it was built).
    """
    protos = torch.zeros(len(OCCASIONS), 2, base.repr_dim)
    sources: dict[str, str] = {}
    global_rep = represent(base, train)
    for occ, occ_name in enumerate(OCCASIONS):
        chosen: CvrSamples | None = None
        for pool_name, pool in (("recent", recent), ("train", train)):
            m = pool.occasion == occ
            days = sorted(np.unique(pool.day[m]).tolist(), reverse=True)
            good = [
                d
                for d in days
                if 0 < pool.label[m & (pool.day == d)].sum() < (m & (pool.day == d)).sum()
            ][:support_days]
            if good:
                chosen = pool.subset(m & np.isin(pool.day, good))
                first = pd.Timestamp(min(good) * 86400, unit="s").date().isoformat()
                sources[occ_name] = f"{pool_name}:{first}+{len(good)}d"
                break
        if chosen is None:
            m = train.occasion == occ
            if 0 < train.label[m].sum() < m.sum():
                chosen, sources[occ_name] = train.subset(m), "train:all-days-of-occasion"
        if chosen is not None:
            rep, labels = represent(base, chosen), chosen.label
        else:
            rep, labels, sources[occ_name] = global_rep, train.label, "train:all"
        for cls, want in ((0, 1.0), (1, 0.0)):
            sel = torch.from_numpy(labels == want)
            if sel.any():
                protos[occ, cls] = rep[sel].mean(0)
    return protos, sources


# ---- one full run: ours + baselines -----------------------------------------------------------
def _auc(y: np.ndarray, p: np.ndarray) -> float | None:
    return float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else None


def score_all(y: np.ndarray, p: np.ndarray, occasion: np.ndarray) -> dict[str, Any]:
    """AUC (primary), log loss, and AUC per occasion where both classes occur."""
    out: dict[str, Any] = {
        "auc": _auc(y, p),
        "logloss": float(log_loss(y, np.clip(p, 1e-6, 1 - 1e-6), labels=[0, 1])),
    }
    for k, name in enumerate(OCCASIONS):
        m = occasion == k
        if m.any():
            out[f"auc_{name}"] = _auc(y[m], p[m])
    return out


def run_stage1(
    args: argparse.Namespace,
    cfg: MetaCVRConfig,
    train: CvrSamples,
    seed: int,
    ctx: distributed.DistContext | None = None,
) -> BaseCVR:
    torch.manual_seed(seed)
    base = BaseCVR(cfg)
    losses = fit(base, base.calculate_loss, list(base.parameters()), train, args.epochs,
                 args.batch_size, args.lr, seed, ctx)  # fmt: skip
    log.info("BASE stage 1 losses %s", [round(v, 4) for v in losses])
    return base


def _stage2_loss(
    model: MetaCVR, rep: torch.Tensor, s_b: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    logit, _ = model.scores_from_representation(rep, s_b)
    return nn.functional.binary_cross_entropy_with_logits(logit, labels)


def run_stage2(
    args: argparse.Namespace,
    cfg: MetaCVRConfig,
    base: BaseCVR,
    prototypes: torch.Tensor,
    recent: CvrSamples,
    seed: int,
    ctx: distributed.DistContext | None = None,
) -> MetaCVR:
    """Freeze the FRN; train DMN + EPN on D_recent (Algorithm 1, stage 2).

    The frozen FRN's representation and base logit are computed once, then the DMN and EPN
    train on them: the same gradients as running the frozen network every step, far cheaper.
    Under torchrun only the DMN and EPN are DDP-wrapped (the frozen FRN has nothing to sync):
    every rank holds the same representations and prototypes, draws the same permutation and
    trains on its slice of each global batch.
    """
    ctx = ctx or distributed.DistContext()
    torch.manual_seed(seed)
    model = MetaCVR(cfg, base=copy.deepcopy(base))
    model.set_prototypes(prototypes)
    model.freeze_frn()
    model.eval()
    with torch.no_grad():
        rep = represent(model.base, recent)  # [N, D]
        s_b = model.base.head(rep)[:, 0] if len(rep) else torch.zeros(0)  # [N]
    labels = torch.from_numpy(recent.label)
    model.to(ctx.device)
    rep, s_b, labels = rep.to(ctx.device), s_b.to(ctx.device), labels.to(ctx.device)
    trainable = nn.ModuleDict({"dmn": model.dmn, "epn": model.epn})
    trainer = distributed.wrap(
        distributed.LossModule(trainable, functools.partial(_stage2_loss, model)), ctx
    )
    params = model.stage2_parameters()
    opt = torch.optim.Adam(params, lr=args.stage2_lr)
    rng = np.random.default_rng(seed)
    losses = []
    for _ in range(args.stage2_epochs if len(recent) else 0):
        order = torch.from_numpy(rng.permutation(len(recent)))
        total = 0.0
        for start in range(0, len(order), args.batch_size):
            idx = order[start : start + args.batch_size]
            mine = idx[distributed.local_slice(len(idx), ctx)]
            weight = distributed.share_weight(len(mine), len(idx), ctx)
            rows = mine if len(mine) else idx[:1]
            loss = trainer(rep[rows], s_b[rows], labels[rows])
            opt.zero_grad()
            (loss * weight).backward()
            opt.step()
            total += loss.item() * len(mine)
        losses.append(distributed.mean_across_ranks(total, ctx) * ctx.world_size / len(recent))
    model.cpu().eval()
    log.info("MetaCVR[%s] stage 2 losses %s", cfg.distance, [round(v, 4) for v in losses])
    return model


def _metacvr_prob(model: MetaCVR) -> Callable[[Mapping[str, torch.Tensor]], torch.Tensor]:
    return lambda b: model.predict(b)["cvr"]


def compare(
    args: argparse.Namespace,
    vocab: Vocab,
    train: CvrSamples,
    recent: CvrSamples,
    test: CvrSamples,
    seed: int,
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Every method of Table III on one split; returns metrics per method, proto sources."""
    results: dict[str, dict[str, Any]] = {}
    y, occ = test.label, test.occasion

    def record(name: str, p: np.ndarray, seconds: float) -> None:
        results[name] = {**score_all(y, p, occ), "train_s": round(seconds, 2)}

    days = np.unique(train.day)
    n_lgb = max(1, int(np.ceil(args.lgb_recent_frac * len(days))))
    t0 = time.perf_counter()
    lgb_recent = LightGBMRecent(seed=seed).fit(train.subset(train.day >= days[-n_lgb]))
    record(f"LightGBM (last {n_lgb} days)", lgb_recent.predict(test), time.perf_counter() - t0)
    t0 = time.perf_counter()
    lgb_all = LightGBMRecent(seed=seed).fit(train)
    record("LightGBM (all of D)", lgb_all.predict(test), time.perf_counter() - t0)

    cfg = model_config(args, vocab, "spdm")
    t0 = time.perf_counter()
    base = run_stage1(args, cfg, train, seed)
    base_s = time.perf_counter() - t0
    record("BASE", predict(base, lambda b: base.predict(b)["cvr"], test), base_s)

    t0 = time.perf_counter()
    base_f = copy.deepcopy(base)
    fit(base_f, base_f.calculate_loss, list(base_f.parameters()), recent, args.finetune_epochs,
        args.batch_size, args.lr, seed)  # fmt: skip
    record("BASE-F", predict(base_f, lambda b: base_f.predict(b)["cvr"], test),
           base_s + time.perf_counter() - t0)  # fmt: skip

    t0 = time.perf_counter()
    torch.manual_seed(seed)
    esmm = EsmmCVR(cfg)
    fit(esmm, esmm.calculate_loss, list(esmm.parameters()), train, args.epochs,
        args.batch_size, args.lr, seed)  # fmt: skip
    record("ESMM-style", predict(esmm, lambda b: esmm.predict(b)["cvr"], test),
           time.perf_counter() - t0)  # fmt: skip

    t0 = time.perf_counter()
    protos, sources = compute_prototypes(base, recent, train, args.support_days)
    proto_s = time.perf_counter() - t0
    for distance in ("cosine", "euclidean", "nndm", "spdm"):
        t0 = time.perf_counter()
        model = run_stage2(args, model_config(args, vocab, distance), base, protos, recent, seed)
        record(f"MetaCVR ({distance.upper() if distance in ('spdm', 'nndm') else distance})",
               predict(model, _metacvr_prob(model), test),
               base_s + proto_s + time.perf_counter() - t0)  # fmt: skip
    return results, sources


def prepare(
    args: argparse.Namespace,
) -> tuple[Vocab, CvrSamples, CvrSamples, CvrSamples, OccasionCalendar, pd.DataFrame, str]:
    events, digest, source_calendar = load_data(args)
    calendar = make_calendar(args, events, source_calendar)
    spec = _spec(args)
    # The vocabulary holds ids seen before the test days only: a test click on an item that
    # first appears in the test days is scored as an unknown item, as it would be online.
    _, test_start = split_days(click_days(events), args.test_frac, args.recent_frac)
    vocab = Vocab.build(events[events["ts"] < test_start * 86400])
    samples = build_samples(events, calendar, vocab, spec, args.label_days)
    train, recent, test = chronological_split(samples, args.test_frac, args.recent_frac)
    log.info(
        "samples: D %d (pos %.3f), D_recent %d, test %d (pos %.3f)",
        len(train), train.label.mean(), len(recent), len(test), test.label.mean(),
    )  # fmt: skip
    return vocab, train, recent, test, calendar, events, digest


def _split_text(train: CvrSamples, recent: CvrSamples, test: CvrSamples) -> str:
    def days(s: CvrSamples) -> str:
        a = pd.Timestamp(int(s.day.min()) * 86400, unit="s").date()
        b = pd.Timestamp(int(s.day.max()) * 86400, unit="s").date()
        return f"{a}..{b}"

    return (
        f"chronological by click day: D {days(train)} ({len(train)} clicks), "
        f"D_recent {days(recent)} ({len(recent)}), test {days(test)} ({len(test)})"
    )


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    vocab, train, recent, test, calendar, _events, digest = prepare(args)
    runs = []
    sources: dict[str, str] = {}
    for r in range(max(1, args.repeats)):
        res, sources = compare(args, vocab, train, recent, test, args.seed + r)
        runs.append(res)
    methods: dict[str, dict[str, Any]] = {}
    for name in runs[0]:
        entry: dict[str, Any] = {}
        for key in runs[0][name]:
            vals = [run[name][key] for run in runs if run[name][key] is not None]
            entry[key] = float(np.mean(vals)) if vals else None
            if key == "auc" and len(vals) > 1:
                entry["auc_std"] = float(np.std(vals))
        methods[name] = entry
    occ_counts = {}
    for k, name in enumerate(OCCASIONS):
        m = test.occasion == k
        occ_counts[name] = f"{int(m.sum())} clicks, {int(test.label[m].sum())} buys"
    notes = (
        f"Click-then-buy samples (label: same user buys the item within {args.label_days:g} days). "
        f"MetaCVR ({args.distance.upper()}) is the proposed model; Table III compares its four "
        "distances. LightGBM stands in for the paper's XGBoost (its settings: 70 trees, depth 5). "
        "ESMM-style uses click -> collect/cart/buy -> buy as its chain (no impressions in "
        f"public logs). Test clicks per occasion: {occ_counts}. Prototype support: {sources}. "
        f"{max(1, args.repeats)} seed(s), mean shown. CPU only; no GPU in this session."
    )
    ours = (
        f"MetaCVR ({args.distance.upper() if args.distance in ('spdm', 'nndm') else args.distance})"
    )
    path = write_accuracy_file(args, digest, methods, ours, notes, train, recent, test, calendar)
    log.info("wrote %s", path)
    return {"methods": methods, "path": str(path)}


def write_accuracy_file(
    args: argparse.Namespace,
    digest: str,
    methods: dict[str, dict[str, Any]],
    ours: str,
    notes: str,
    train: CvrSamples,
    recent: CvrSamples,
    test: CvrSamples,
    calendar: OccasionCalendar,
) -> Path:
    return write_accuracy(
        args.results_dir,
        model=NAME,
        dataset=dataset_name(args),
        data_sha256=digest,
        split=_split_text(train, recent, test),
        primary_metric="auc",
        higher_is_better=True,
        methods=methods,
        ours=ours,
        notes=notes,
        extra={"calendar": calendar.to_dict()},
    )


# ---- artifact -----------------------------------------------------------------------------------
def _write(
    args: argparse.Namespace,
    model: MetaCVR,
    vocab: Vocab,
    calendar: OccasionCalendar,
    events: pd.DataFrame,
    digest: str,
    metrics: Mapping[str, Any],
    sources: Mapping[str, str],
    source_name: str,
) -> Path:
    spec = _spec(args)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        graphs = model.export_graphs(tmp_dir / "graphs")
        weights = tmp_dir / "metacvr.pt"
        torch.save(model.state_dict(), weights)
        stats = tmp_dir / "item_stats.npy"
        np.save(stats, item_stats_table(events, vocab))
        ts = events["ts"]
        return write_artifact(
            args.artifacts,
            NAME,
            graphs,
            data_window=DataWindow(
                start=pd.Timestamp(int(ts.min()), unit="s").isoformat(),
                end=pd.Timestamp(int(ts.max()), unit="s").isoformat(),
                sha256=digest,
                source=source_name,
            ),
            vocabularies=vocab.to_lists(),
            metrics=dict(metrics),
            config={
                "model": {
                    **{k: v for k, v in model.cfg.__dict__.items()},
                },
                "features": {
                    "fields": list(FIELDS),
                    "seq_len": spec.seq_len,
                    "stats_window": spec.stats_window,
                    "label_days": args.label_days,
                },
                "calendar": calendar.to_dict(),
                "prototype_sources": dict(sources),
                "item_stats_file": "item_stats.npy",
                "weights_file": "metacvr.pt",
            },
            extra_files={"metacvr.pt": weights, "item_stats.npy": stats},
        )


def train(args: argparse.Namespace) -> Path:
    """Stage 1, prototypes, stage 2, artifact; data-parallel under torchrun.

    Under torchrun both stages run DDP (gloo on CPU, NCCL on GPU) and only rank 0 writes.
    Every rank computes the prototypes from the same stage-1 weights and the full D_recent,
    then takes rank 0's (`broadcast_from_main`), so stage 2 starts from identical state.
    """
    torch.set_num_threads(args.threads)
    ctx = distributed.setup(getattr(args, "device", "cpu"))
    try:
        if args.refresh_prototypes_from is not None:
            # No gradient step: one process does it all; other ranks only must not write.
            return refresh_prototypes(args) if ctx.is_main else Path(args.artifacts)
        vocab, train_s, recent, test, calendar, events, digest = prepare(args)
        cfg = model_config(args, vocab, args.distance)
        base = run_stage1(args, cfg, train_s, args.seed, ctx).cpu()
        protos, sources = compute_prototypes(base, recent, train_s, args.support_days)
        distributed.broadcast_from_main(protos, ctx)
        model = run_stage2(args, cfg, base, protos, recent, args.seed, ctx)
        if not ctx.is_main:
            return Path(args.artifacts)
        metrics = {
            "test_auc": _auc(test.label, predict(model, _metacvr_prob(model), test)),
            "test_auc_base": _auc(
                test.label, predict(base, lambda b: base.predict(b)["cvr"], test)
            ),
            "test_clicks": len(test),
        }
        return _write(
            args, model, vocab, calendar, events, digest, metrics, sources, dataset_name(args)
        )
    finally:
        distributed.teardown(ctx)


def load_artifact_model(artifact_dir: Path) -> tuple[MetaCVR, dict[str, Any]]:
    """Rebuild the torch model of an artifact from its config and saved weights."""
    manifest = json.loads((Path(artifact_dir) / "manifest.json").read_text())
    cfg_dict = dict(manifest["config"]["model"])
    for key in ("main_hidden", "bias_hidden", "head_hidden"):
        cfg_dict[key] = tuple(cfg_dict[key])
    cfg = MetaCVRConfig(**cfg_dict)
    model = MetaCVR(cfg)
    state = torch.load(Path(artifact_dir) / manifest["config"]["weights_file"], weights_only=True)
    model.load_state_dict(state)
    model.eval()
    return model, manifest


def refresh_prototypes(args: argparse.Namespace) -> Path:
    """New artifact version: same weights, prototypes from the latest days of --data."""
    model, manifest = load_artifact_model(args.refresh_prototypes_from)
    vocab = Vocab.from_lists(manifest["vocabularies"])
    feats = manifest["config"]["features"]
    args.seq_len, args.stats_window = int(feats["seq_len"]), int(feats["stats_window"])
    args.label_days = float(feats["label_days"])
    events, digest, source_calendar = load_data(args)
    if args.promotion:
        calendar = make_calendar(args, events, None)
    elif source_calendar is not None:
        calendar = source_calendar
    else:
        calendar = OccasionCalendar.from_dict(manifest["config"]["calendar"])
    samples = build_samples(events, calendar, vocab, _spec(args), args.label_days)
    # Support days come from the most recent quarter of the new data, else from all of it.
    days = np.unique(samples.day)
    recent = samples.subset(
        samples.day >= days[-max(1, int(np.ceil(args.recent_frac * len(days))))]
    )
    protos, sources = compute_prototypes(model.base, recent, samples, args.support_days)
    model.set_prototypes(protos)
    metrics = {
        **manifest.get("metrics", {}),
        "refreshed_from": manifest["version"],
        "refresh_clicks": len(samples),
    }
    return _write(args, model, vocab, calendar, events, digest, metrics, sources,
                  f"prototype refresh of {manifest['version']}: {dataset_name(args)}")  # fmt: skip


def train_demo(artifacts_root: Path, seed: int = 0) -> Path:
    """MetaCVR on the synthetic promotion log; small sizes so it fits in well under a minute."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", nargs="+", default=[])
    parser.add_argument("--format", default="synthetic")
    parser.add_argument("--artifacts", type=Path)
    parser.add_argument("--results-dir", type=Path, default=Path("bench/results"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    add_arguments(parser)
    args = parser.parse_args(
        ["--artifacts", str(artifacts_root), "--seed", str(seed), "--d-model", "32",
         "--heads", "4", "--epochs", "2", "--stage2-epochs", "3"]
    )  # fmt: skip
    return train(args)
