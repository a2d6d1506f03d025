"""`salecast train|evaluate cvr`: MetaCVR's two-stage training, baselines, prototype refresh.

Stage 1 trains BASE (FRN + ranking head) on the training days D; prototypes per occasion and
class are the mean frozen-FRN representation of the support days of that occasion in D_recent
(the last days of D; every such day by default, the paper's one day as an ablation); stage 2
trains only the DMN and EPN on D_recent (paper Algorithm 1).

Split (`training.features.cvr.chronological_split`): by click day into D, validation and
test, D_recent the last days of D; training clicks whose label window reaches validation
(and validation clicks whose window reaches test) are purged, and the vocabulary holds ids
seen in D only. `--split users` (`training.features.cvr.user_split`) splits users instead,
for logs whose buys all fall on one day, where a day split leaves no buy to train on.
Both stages, and every neural baseline, train through `training.loop.fit` with early
stopping on the validation AUC (best epoch restored).

`--refresh-prototypes-from ARTIFACT_DIR --data ...` recomputes the prototypes (and the item
statistics snapshot) from new days with the artifact's frozen weights and writes a new
artifact version: no gradient step, so it takes seconds and the registry picks it up.

This module holds the data, the fit and the artifact; `training.jobs.cvr_evaluate` the
evaluation against the baselines.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import logging
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from models.metacvr import DISTANCES, BaseCVR, MetaCVR, MetaCVRConfig
from service.errors import InvalidInput
from service.occasions import OCCASIONS, OccasionCalendar, default_calendar, parse_promotion
from service.runtime.manifest import DataWindow
from service.servables.cvr_features import FIELDS, GROUPS, FeatureSpec
from training import distributed
from training.artifacts import write_artifact
from training.baselines.cvr import LightGBMRecent
from training.comparison import validation_summary
from training.features.cvr import (
    CvrSamples,
    DaySplit,
    Vocab,
    build_samples,
    chronological_split,
    click_days,
    item_stats_table,
    last_days,
    promo_click_log,
    split_days,
    user_split,
)
from training.jobs.common import add_common_arguments, budget, dataset_name, set_threads
from training.loop import Budget, FitReport, fit, minibatch_epoch, seed_everything
from training.metrics import auc, log_loss
from training.splits import USER_SPLIT_FRACTIONS, user_parts

log = logging.getLogger(__name__)

NAME = "cvr"
#: Where prototype support days may come from, in the order they are tried (`--prototype-pool`).
PROTOTYPE_POOLS = ("recent", "pretest")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("cvr")
    g.add_argument("--label-days", type=float, default=3.0, help="click -> buy window (days)")
    g.add_argument("--seq-len", type=int, default=20)
    g.add_argument("--stats-window", type=int, default=100)
    g.add_argument(
        "--split",
        choices=("time", "users"),
        default="time",
        help="time: by click day (the last days test); users: every click of a user in one "
        f"part, users split {'/'.join(str(round(100 * f)) for f in USER_SPLIT_FRACTIONS)} %% "
        "by --seed, for logs whose buys all fall on one day (IJCAI-15 data_format2)",
    )
    g.add_argument("--test-frac", type=float, default=0.2, help="last days' share of samples")
    g.add_argument("--val-frac", type=float, default=0.1, help="validation: share before test")
    g.add_argument("--recent-frac", type=float, default=0.25, help="D_recent: last share of days")
    g.add_argument("--lgb-recent-frac", type=float, default=0.33, help="LightGBM's recent days")
    g.add_argument("--distance", choices=DISTANCES, default="spdm")
    g.add_argument("--d-model", type=int, default=64)
    g.add_argument("--heads", type=int, default=4)
    g.add_argument(
        "--epochs", type=int, default=10, help="epoch budget on D: BASE (stage 1), ESMM-style"
    )
    g.add_argument(
        "--stage2-epochs",
        type=int,
        default=10,
        help="epoch budget on D_recent: DMN + EPN (stage 2) and BASE-F's fine-tuning",
    )
    g.add_argument("--batch-size", type=int, default=256)
    g.add_argument("--lr", type=float, default=1e-3)
    g.add_argument("--stage2-lr", type=float, default=1e-2)
    g.add_argument(
        "--support-days",
        type=int,
        default=0,
        help="support days per prototype: the latest N of the occasion; 0 (default) every "
        "day of it in the pool (the paper: 1, kept as an ablation)",
    )
    g.add_argument(
        "--prototype-pool",
        choices=PROTOTYPE_POOLS,
        default="recent",
        help="recent: support days from D_recent (the paper); pretest: the validation days "
        "first (the latest labelled days before test), then D_recent",
    )
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
    add_common_arguments(parser)


# ---- data --------------------------------------------------------------------------------
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


def fit_module(
    module: nn.Module,
    loss_fn: Callable[[Mapping[str, torch.Tensor]], torch.Tensor],
    params: list[nn.Parameter],
    data: CvrSamples,
    validate: Callable[[], float] | None,
    budget: Budget,
    *,
    batch_size: int,
    lr: float,
    seed: int,
    label: str,
    ctx: distributed.DistContext | None = None,
) -> FitReport:
    """Adam minibatches in `training.loop.fit`: early stopping on `validate()` (a validation
    AUC), best epoch restored. BASE, BASE-F and ESMM-style alike.

    Under torchrun (`ctx` with several ranks) every rank draws the same permutation and takes
    its slice of each global batch; DDP averages the gradients, weighted by each rank's share,
    so the run follows the single-process one (stage 1 of `train`).
    """
    ctx = ctx or distributed.DistContext()
    rng = seed_everything(seed)
    module.to(ctx.device)  # a no-op on the CPU (and so for `evaluate`)
    trainer = distributed.wrap(distributed.LossModule(module, loss_fn), ctx)
    opt = torch.optim.Adam(params, lr=lr)

    def batch(rows: np.ndarray) -> tuple[dict[str, torch.Tensor]]:
        return ({k: v.to(ctx.device) for k, v in _batch(data, rows).items()},)

    def run_epoch(epoch: int) -> float:
        return minibatch_epoch(trainer, opt, len(data), batch_size, batch, rng, ctx)

    report = fit(module, run_epoch, validate, budget, label=label, ctx=ctx)
    module.cpu()
    return report


def val_auc(
    module: nn.Module,
    fn: Callable[[Mapping[str, torch.Tensor]], torch.Tensor],
    val: CvrSamples,
) -> Callable[[], float] | None:
    """The early-stopping score (validation AUC), or None when validation has one class."""
    if len(np.unique(val.label)) < 2:
        log.warning("validation days hold one class only: training runs its full budget")
        return None

    def score() -> float:
        return auc(val.label, predict(module, fn, val))

    return score


@torch.no_grad()
def predict(
    module: nn.Module,
    fn: Callable[[Mapping[str, torch.Tensor]], torch.Tensor],
    data: CvrSamples,
    batch_size: int = 2048,
) -> np.ndarray:
    module.eval()
    device = next(module.parameters()).device
    out = [
        fn({k: v.to(device) for k, v in _batch(data, slice(i, i + batch_size)).items()}).cpu()
        for i in range(0, len(data), batch_size)
    ]
    return torch.cat(out).numpy().astype(np.float64) if out else np.zeros(0)


@torch.no_grad()
def represent(base: BaseCVR, data: CvrSamples, batch_size: int = 2048) -> torch.Tensor:
    base.eval()
    reps = [
        base.represent(b["fields"], b["seq_items"], b["seq_cats"], b["seq_actions"])
        for b in (_batch(data, slice(i, i + batch_size)) for i in range(0, len(data), batch_size))
    ]
    return torch.cat(reps) if reps else torch.zeros(0, base.repr_dim)


def support_day_choice(pool: CvrSamples, occ: int, support_days: int) -> list[int]:
    """The latest days of occasion `occ` in `pool` holding both a buy and a non-buy.

    `support_days` 0 takes every such day (a prototype averaged over the whole occasion in
    the pool), N the latest N (the paper: 1). A day with one class cannot give both
    prototypes, so it never counts.
    """
    m = pool.occasion == occ
    days = sorted(np.unique(pool.day[m]).tolist(), reverse=True)
    good = [
        d for d in days if 0 < pool.label[m & (pool.day == d)].sum() < (m & (pool.day == d)).sum()
    ]
    return good if support_days <= 0 else good[:support_days]


def compute_prototypes(
    base: BaseCVR,
    recent: CvrSamples,
    train: CvrSamples,
    support_days: int,
    pretest: CvrSamples | None = None,
) -> tuple[torch.Tensor, dict[str, str]]:
    """[4, 2, D] prototypes (cls 0 = buy, 1 = no buy) and where each occasion's came from.

    Paper Sec. III-D: pick support days of the occasion in D_recent (`support_days`, 0 =
    all of them), positive support = their purchases, negative = their other clicks,
    prototype = mean FRN representation. `pretest` (the validation clicks, whose label
    windows close before the test days) is tried first when given: at serving time those
    are the latest labelled days, so e.g. the run-up to Double 11 supports BP instead of the
    run-up to 618. When no pool has a day of an occasion with both classes, the latest such
    day in D is used; failing that, every sample of the occasion, then every sample of D
    (recorded as the source, so the artifact says how it was built). The test split is never
    an argument, so no test label can enter a prototype.
    """
    protos = torch.zeros(len(OCCASIONS), 2, base.repr_dim)
    sources: dict[str, str] = {}
    global_rep = represent(base, train)
    pools = [("recent", recent), ("train", train)]
    if pretest is not None:
        pools.insert(0, ("pretest", pretest))
    for occ, occ_name in enumerate(OCCASIONS):
        chosen: CvrSamples | None = None
        for pool_name, pool in pools:
            good = support_day_choice(pool, occ, support_days)
            if good:
                chosen = pool.subset((pool.occasion == occ) & np.isin(pool.day, good))
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


def prototypes_for(
    args: argparse.Namespace,
    base: BaseCVR,
    prep: Prepared,
    support_days: int | None = None,
    pool: str | None = None,
) -> tuple[torch.Tensor, dict[str, str]]:
    """`compute_prototypes` with the job's settings (`--support-days`, `--prototype-pool`),
    either overridable, so the evaluation's ablations differ from ours in one setting only."""
    days = args.support_days if support_days is None else support_days
    pool = getattr(args, "prototype_pool", "recent") if pool is None else pool
    pretest = prep.val if pool == "pretest" else None
    return compute_prototypes(base, prep.recent, prep.train, days, pretest)


# ---- the two stages ---------------------------------------------------------------------------
def score_all(y: np.ndarray, p: np.ndarray, occasion: np.ndarray) -> dict[str, float | None]:
    """AUC (primary), log loss, and AUC per occasion where both classes occur."""
    out: dict[str, float | None] = {"auc": _finite(auc(y, p)), "logloss": log_loss(y, p)}
    for k, name in enumerate(OCCASIONS):
        m = occasion == k
        if m.any():
            out[f"auc_{name}"] = _finite(auc(y[m], p[m]))
    return out


def _finite(value: float) -> float | None:
    return value if np.isfinite(value) else None


def base_prob(base: BaseCVR) -> Callable[[Mapping[str, torch.Tensor]], torch.Tensor]:
    return lambda b: base.predict(b)["cvr"]


def run_stage1(
    args: argparse.Namespace,
    cfg: MetaCVRConfig,
    train: CvrSamples,
    val: CvrSamples,
    seed: int,
    ctx: distributed.DistContext | None = None,
    *,
    early_stop: bool = True,
) -> tuple[BaseCVR, FitReport]:
    """BASE (FRN + ranking head) on D, early-stopped on the validation AUC.

    `early_stop=False` runs the whole epoch budget and keeps the last epoch: the ablation
    that measures what early stopping stage 1 (issue 13) does to MetaCVR downstream.
    """
    torch.manual_seed(seed)
    base = BaseCVR(cfg)
    validate = val_auc(base, base_prob(base), val) if early_stop else None
    report = fit_module(
        base, base.calculate_loss, list(base.parameters()), train,
        validate, budget(args), batch_size=args.batch_size,
        lr=args.lr, seed=seed, label=f"BASE seed {seed}", ctx=ctx,
    )  # fmt: skip
    return base, report


def fine_tune(
    args: argparse.Namespace,
    base: BaseCVR,
    recent: CvrSamples,
    val: CvrSamples,
    seed: int,
) -> tuple[BaseCVR, FitReport]:
    """BASE-F: BASE trained on from its weights on D_recent, within stage 2's budget."""
    tuned = copy.deepcopy(base)
    report = fit_module(
        tuned, tuned.calculate_loss, list(tuned.parameters()), recent,
        val_auc(tuned, base_prob(tuned), val), budget(args, args.stage2_epochs),
        batch_size=args.batch_size, lr=args.lr, seed=seed, label=f"BASE-F seed {seed}",
    )  # fmt: skip
    return tuned, report


def _stage2_loss(
    model: MetaCVR, rep: torch.Tensor, s_b: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    logit, _ = model.scores_from_representation(rep, s_b)
    return nn.functional.binary_cross_entropy_with_logits(logit, labels)


@torch.no_grad()
def _frozen(model: MetaCVR, data: CvrSamples) -> tuple[torch.Tensor, torch.Tensor]:
    """The frozen FRN's representation [N, D] and base logit [N] of `data`."""
    rep = represent(model.base, data)
    s_b = model.base.head(rep)[:, 0] if len(rep) else torch.zeros(0)
    return rep, s_b


def run_stage2(
    args: argparse.Namespace,
    cfg: MetaCVRConfig,
    base: BaseCVR,
    prototypes: torch.Tensor,
    recent: CvrSamples,
    val: CvrSamples,
    seed: int,
    ctx: distributed.DistContext | None = None,
) -> tuple[MetaCVR, FitReport]:
    """Freeze the FRN; train DMN + EPN on D_recent (Algorithm 1, stage 2), early-stopped on
    the validation AUC.

    The frozen FRN's representation and base logit are computed once (for D_recent and the
    validation days), then the DMN and EPN train on them: the same gradients as running the
    frozen network every step, far cheaper. Under torchrun only the DMN and EPN are
    DDP-wrapped (the frozen FRN has nothing to sync): every rank holds the same
    representations and prototypes, draws the same permutation and trains on its slice of
    each global batch.
    """
    ctx = ctx or distributed.DistContext()
    rng = seed_everything(seed)
    model = MetaCVR(cfg, base=copy.deepcopy(base))
    model.set_prototypes(prototypes)
    model.freeze_frn()
    model.eval()
    rep, s_b = _frozen(model, recent)
    val_rep, val_s_b = _frozen(model, val)
    labels = torch.from_numpy(recent.label)
    model.to(ctx.device)
    rep, s_b, labels = rep.to(ctx.device), s_b.to(ctx.device), labels.to(ctx.device)
    val_rep, val_s_b = val_rep.to(ctx.device), val_s_b.to(ctx.device)
    trainable = nn.ModuleDict({"dmn": model.dmn, "epn": model.epn})
    trainer = distributed.wrap(
        distributed.LossModule(trainable, functools.partial(_stage2_loss, model)), ctx
    )
    opt = torch.optim.Adam(model.stage2_parameters(), lr=args.stage2_lr)

    def batch(rows: np.ndarray) -> tuple[torch.Tensor, ...]:
        index = torch.from_numpy(rows).to(ctx.device)
        return rep[index], s_b[index], labels[index]

    def run_epoch(epoch: int) -> float:
        return minibatch_epoch(trainer, opt, len(recent), args.batch_size, batch, rng, ctx)

    @torch.no_grad()
    def validate() -> float:
        model.eval()
        logit, _ = model.scores_from_representation(val_rep, val_s_b)
        return auc(val.label, logit.cpu().numpy())

    has_classes = len(np.unique(val.label)) == 2
    report = fit(
        model, run_epoch, validate if has_classes else None,
        budget(args, args.stage2_epochs), label=f"MetaCVR[{cfg.distance}] seed {seed}", ctx=ctx,
    )  # fmt: skip
    model.cpu().eval()
    return model, report


def metacvr_prob(model: MetaCVR) -> Callable[[Mapping[str, torch.Tensor]], torch.Tensor]:
    return lambda b: model.predict(b)["cvr"]


def method_name(distance: str) -> str:
    return f"MetaCVR ({distance.upper() if distance in ('spdm', 'nndm') else distance})"


@dataclass
class Prepared:
    """One data set cut into the chronological split, with what the job needs around it."""

    vocab: Vocab
    train: CvrSamples  # D (purged)
    recent: CvrSamples  # D_recent: the last days of D
    val: CvrSamples  # validation days (purged)
    test: CvrSamples
    calendar: OccasionCalendar
    events: pd.DataFrame
    digest: str
    days: DaySplit | None  # None: split by user (`--split users`)
    seed: int  # the user split's seed

    def split_text(self) -> str:
        def days(s: CvrSamples) -> str:
            if not len(s):
                return "none"
            a = pd.Timestamp(int(s.day.min()) * 86400, unit="s").date()
            b = pd.Timestamp(int(s.day.max()) * 86400, unit="s").date()
            return f"{a}..{b}"

        parts = (
            f"D {days(self.train)} ({len(self.train)} clicks), D_recent {days(self.recent)} "
            f"({len(self.recent)}), validation {days(self.val)} ({len(self.val)}), test "
            f"{days(self.test)} ({len(self.test)})"
        )
        if self.days is None:
            shares = "/".join(str(round(100 * f)) for f in USER_SPLIT_FRACTIONS)
            return (
                f"by user, {shares} % train/validation/test (seed {self.seed}): {parts}; "
                "D_recent the training users' last days; vocabulary from training users only"
            )
        return (
            f"chronological by click day: {parts}; clicks whose label window reaches the next "
            "part are purged; vocabulary from D's days only"
        )


def prepare(args: argparse.Namespace) -> Prepared:
    events, digest, source_calendar = load_data(args)
    calendar = make_calendar(args, events, source_calendar)
    spec = _spec(args)
    days: DaySplit | None = None
    if getattr(args, "split", "time") == "users":
        users = events["user_id"].astype(str).to_numpy()
        in_train, in_val, _ = user_parts(users, args.seed)
        # Vocabulary from the training users' events only: a test user is a new user.
        vocab = Vocab.build(events[in_train])
        samples = build_samples(events, calendar, vocab, spec, args.label_days)
        train, recent, val, test = user_split(
            samples, np.unique(users[in_train]), np.unique(users[in_val]), args.recent_frac
        )
    else:
        days = split_days(
            click_days(events), args.test_frac, args.recent_frac, args.val_frac, args.label_days
        )
        # The vocabulary holds ids seen in the training days only: a later click on an item
        # that first appears in validation or test is scored as an unknown item, as online.
        vocab = Vocab.build(events[events["ts"] < days.val_start * 86400])
        samples = build_samples(events, calendar, vocab, spec, args.label_days)
        train, recent, val, test = chronological_split(samples, days, args.label_days)
    log.info(
        "samples: D %d (pos %.3f), D_recent %d, val %d, test %d (pos %.3f)",
        len(train), train.label.mean() if len(train) else 0.0, len(recent), len(val),
        len(test), test.label.mean() if len(test) else 0.0,
    )  # fmt: skip
    if len(train) and not train.label.any():
        raise InvalidInput(
            "data",
            f"no buy among the {len(train)} training clicks once clicks whose "
            f"{args.label_days:g}-day label window reaches validation are purged: this log's "
            "buys all fall after its training days (a day split cannot evaluate it: "
            "try --split users)",
        )
    if not len(train) or not len(val) or not len(test):
        raise InvalidInput(
            "data",
            f"empty split after purging label windows: {len(train)} training, {len(val)} "
            f"validation and {len(test)} test clicks (shorten --label-days or widen "
            "--val-frac / --test-frac)",
        )
    return Prepared(vocab, train, recent, val, test, calendar, events, digest, days, args.seed)


def baseline_validation(prep: Prepared, seed: int) -> dict[str, dict[str, float | None]]:
    """LightGBM on all of D and on its recent days, scored on the validation days."""
    out: dict[str, dict[str, float | None]] = {}
    for name, model in lightgbm_baselines(prep, seed).items():
        out[name] = score_all(prep.val.label, model.predict(prep.val), prep.val.occasion)
    return out


def lightgbm_baselines(prep: Prepared, seed: int, recent_frac: float = 0.33) -> dict[str, Any]:
    """The paper's tree baseline on D's last days and on all of D, early-stopped on val."""
    recent, n_recent = last_days(prep.train, recent_frac)
    return {
        f"LightGBM (last {n_recent} days)": LightGBMRecent(seed=seed).fit(recent, prep.val),
        "LightGBM (all of D)": LightGBMRecent(seed=seed).fit(prep.train, prep.val),
    }


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
    set_threads(args)
    ctx = distributed.setup(getattr(args, "device", "cpu"))
    try:
        if args.refresh_prototypes_from is not None:
            # No gradient step: one process does it all; other ranks only must not write.
            return refresh_prototypes(args) if ctx.is_main else Path(args.artifacts)
        prep = prepare(args)
        cfg = model_config(args, prep.vocab, args.distance)
        base, stage1 = run_stage1(args, cfg, prep.train, prep.val, args.seed, ctx)
        protos, sources = prototypes_for(args, base, prep)
        distributed.broadcast_from_main(protos, ctx)
        model, stage2 = run_stage2(args, cfg, base, protos, prep.recent, prep.val, args.seed, ctx)
        if not ctx.is_main:
            return Path(args.artifacts)
        val = prep.val
        metrics = {
            "validation": validation_summary(
                metric="auc",
                higher_is_better=True,
                ours=(
                    method_name(args.distance),
                    score_all(val.label, predict(model, metacvr_prob(model), val), val.occasion),
                ),
                baselines=baseline_validation(prep, args.seed),
                split="the validation days (between D and test)",
            ),
            "test": {
                "auc": _finite(
                    auc(prep.test.label, predict(model, metacvr_prob(model), prep.test))
                ),
                "auc_base": _finite(
                    auc(prep.test.label, predict(base, base_prob(base), prep.test))
                ),
                "clicks": len(prep.test),
            },
            "fit": {"stage1": stage1.to_dict(), "stage2": stage2.to_dict()},
        }
        return _write(
            args, model, prep.vocab, prep.calendar, prep.events, prep.digest, metrics, sources,
            dataset_name(args),
        )  # fmt: skip
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
    recent, _ = last_days(samples, args.recent_frac)
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
