"""`salecast evaluate imn`: IMN-Net against the next-item baselines, over seeds, one split.

Every method goes through the same streaming protocol on the split of
`training.jobs.imn.prepare` (each test event ranked against the full item set before it is
applied): popularity and last-item co-occurrence (counting online, nothing random: one run
each), GRU4Rec (hidden states carried per user), SASRec (causal self-attention over the
user's last items, `training.baselines.sasrec`), JODIE (IMN without the resource branch
and the MI head) and IMN-Net, the learned ones once per seed (`--seeds`) within the same
epoch budget and early-stopping rule (validation Recall@20, `training.loop`).

The verdict compares IMN with the best baseline by seed-mean test Recall@20, with a paired
bootstrap interval over test *users* (a user's events move together), and IMN with SASRec,
the paper's strongest baseline, by the same interval (`versus_sasrec`). Every method ranks
the test events in the same order, so the per-event hits line up for the pairing. The
Recall@k curve of every method (first seed) is recorded, and drawn with `--plot`.

Same-day repeats: a log with day-resolution timestamps (Tmall brand) lists a user's rows of
one day in file order, and a row that repeats the user's previous item on the same day is
exactly what last-item co-occurrence is built to guess. The result therefore also ranks
the methods on the test events that are *not* such repeats (`without_same_day_repeats`:
the same runs, the repeats left out of the scoring but still applied to every state), so
a lead that only comes from file order shows as such.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from training.baselines.nextitem import (
    LastItemCooccurrence,
    Popularity,
    RankingMetrics,
    SessionGRU,
)
from training.baselines.sasrec import SASRec, SASRecConfig
from training.comparison import Comparison, Role
from training.jobs import imn as job
from training.jobs.common import budget, dataset_name, new_comparison, seed_list, set_threads
from training.loop import FitReport, fit
from training.metrics import recall_curve, weighted_mean
from training.reporting import write_accuracy
from training.stats import Scorer

log = logging.getLogger(__name__)
OURS = "imn"
CURVE_KS = (1, 2, 5, 10, 20, 50, 100)
# the IMN paper's strongest baseline, compared with IMN by name whichever baseline is best
VERSUS_SASREC = "versus_sasrec"


def fit_gru(
    prep: job.Prepared, args: argparse.Namespace, seed: int
) -> tuple[SessionGRU, FitReport]:
    """GRU4Rec in the shared loop, validated like IMN: replay train, rank the validation."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    gru = SessionGRU(len(prep.vocab.items), args.dim)
    pieces = SessionGRU.sequences(prep.train)
    opt = torch.optim.Adam(gru.parameters(), lr=args.lr)

    def run_epoch(epoch: int) -> float:
        return gru.train_epoch(pieces, opt, gen)

    def validate() -> float:
        hidden = torch.zeros(prep.stream.num_user_slots, args.dim)
        gru.replay(prep.train, hidden)
        metrics = RankingMetrics()
        gru.replay(prep.val, hidden, metrics)
        return metrics.result().get(job.PRIMARY, 0.0)

    report = fit(gru, run_epoch, validate if len(prep.val) else None, budget(args),
                 label=f"gru4rec seed {seed}")  # fmt: skip
    return gru, report


def score_gru(gru: SessionGRU, prep: job.Prepared, dim: int) -> RankingMetrics:
    hidden = torch.zeros(prep.stream.num_user_slots, dim)
    gru.replay(prep.train, hidden)
    gru.replay(prep.val, hidden)
    metrics = RankingMetrics()
    gru.replay(prep.test, hidden, metrics)
    return metrics


def fit_sasrec(prep: job.Prepared, args: argparse.Namespace, seed: int) -> tuple[SASRec, FitReport]:
    """SASRec in the shared loop with GRU4Rec's budget, dim and validation replay."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = SASRec(SASRecConfig(num_items=len(prep.vocab.items), dim=args.dim))
    windows = model.sequences(prep.train)
    # Sec. IV-C: Adam, lr 1e-3 (the shared --lr), beta2 = 0.98
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.98))

    def run_epoch(epoch: int) -> float:
        return model.train_epoch(windows, opt, gen)

    def validate() -> float:
        history = model.new_history(prep.stream.num_user_slots)
        model.replay(prep.train, history)
        metrics = RankingMetrics()
        model.replay(
            prep.val, history, metrics, popularity=job.popularity_counts(prep, with_val=False)
        )
        return metrics.result().get(job.PRIMARY, 0.0)

    report = fit(model, run_epoch, validate if len(prep.val) else None, budget(args),
                 label=f"sasrec seed {seed}")  # fmt: skip
    return model, report


def score_sasrec(model: SASRec, prep: job.Prepared) -> RankingMetrics:
    history = model.new_history(prep.stream.num_user_slots)
    model.replay(prep.train, history)
    model.replay(prep.val, history)
    metrics = RankingMetrics()
    model.replay(prep.test, history, metrics, popularity=job.popularity_counts(prep, with_val=True))
    return metrics


def recall_scorer(ranks: np.ndarray, k: int = 20) -> Scorer:
    hits = (ranks <= k).astype(np.float64)
    return lambda weights: weighted_mean(hits, weights)


DAY_SECONDS = 86_400.0


def same_day_repeats(events: pd.DataFrame) -> np.ndarray:
    """[n] True where a row repeats its user's previous row's item on the same UTC day.

    `events` must be in stream order (as `Prepared.events` is). The previous row is looked
    up within `events` only, so pass the whole stream and slice the result: a test user's
    previous row may lie in validation.
    """
    users = events["user_id"].astype(str)
    items = events["item_id"].astype(str)
    days = pd.Series(np.floor(events["ts"].to_numpy(np.float64) / DAY_SECONDS), index=events.index)
    previous_item = items.groupby(users, sort=False).shift(1)
    previous_day = days.groupby(users, sort=False).shift(1)
    return ((items == previous_item) & (previous_day == days)).to_numpy(bool)


@dataclass
class ScoredRun:
    """One method's per-event test ranks, kept to re-score the run on a subset of events."""

    name: str
    role: Role
    seed: int | None
    ranks: np.ndarray


def without_repeats(
    args: argparse.Namespace,
    runs: list[ScoredRun],
    units: np.ndarray,
    known: np.ndarray,
    repeats: np.ndarray,
) -> dict[str, Any]:
    """The same runs scored on the test events that are not same-day repeats.

    `units` are the test events' users (the bootstrap unit), `known` marks the events whose
    target is a training item (the positives the size rule counts, as in the main verdict).
    """
    keep = ~repeats
    out: dict[str, Any] = {
        "test_events": len(repeats),
        "same_day_repeats": int(repeats.sum()),
        "share_repeats": float(repeats.mean()) if len(repeats) else 0.0,
    }
    if not keep.any() or not repeats.any():
        return out
    sub = new_comparison(
        args, units=units[keep], kind="ranking", unit_name="users",
        primary_metric=job.PRIMARY, higher_is_better=True, ours=OURS,
        positives=int(known[keep].sum()),
    )  # fmt: skip
    for run in runs:
        ranks = run.ranks[keep]
        metrics = dict(zip(("recall@10", "recall@20"), recall_curve(ranks, (10, 20)), strict=True))
        sub.add(run.name, metrics=metrics, scorer=recall_scorer(ranks), seed=run.seed,
                role=run.role)  # fmt: skip
    out = {**out, "methods": sub.methods(), "comparison": sub.comparison()}
    if any(run.name == SASRec.name for run in runs):
        out[VERSUS_SASREC] = sub.against(SASRec.name)
    return out


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    set_threads(args)
    frame, sha, source = job.load_frame(args)
    prep = job.prepare(frame, sha, source, args.max_events)
    test = prep.test
    reference: dict[str, np.ndarray] = {}
    comparison: Comparison | None = None
    curves: dict[str, list[float]] = {}
    fusion: dict[str, dict[str, Any]] = {}
    scored: list[ScoredRun] = []

    def record(
        name: str,
        role: Role,
        seed: int | None,
        metrics: RankingMetrics,
        started: float,
        report: FitReport | None = None,
    ) -> None:
        nonlocal comparison
        ranks, units = metrics.all_ranks(), metrics.all_units()
        if comparison is None:
            reference["units"] = units
            comparison = new_comparison(
                args, units=units, kind="ranking", unit_name="users",
                primary_metric=job.PRIMARY, higher_is_better=True, ours=OURS,
                positives=int((test.item_index > 0).sum()),
            )  # fmt: skip
        if not np.array_equal(units, reference["units"]):
            raise RuntimeError(f"{name} ranked the test events in another order")
        scored.append(ScoredRun(name, role, seed, ranks))
        comparison.add(
            name,
            metrics=metrics.result(),
            scorer=recall_scorer(ranks),
            seed=seed,
            role=role,
            fit=report.to_dict() if report else None,
            seconds=time.perf_counter() - started,
        )
        curves.setdefault(name, recall_curve(ranks, CURVE_KS))
        log.info("%s seed %s: recall@20 %.4f", name, seed, metrics.result().get(job.PRIMARY))

    n_items = len(prep.vocab.items)
    for cls in (Popularity, LastItemCooccurrence):
        t0 = time.perf_counter()
        method = cls(n_items)
        record(method.name, "baseline", None, job.score_counting(method, prep), t0)
    for seed in seed_list(args):
        t0 = time.perf_counter()
        gru, report = fit_gru(prep, args, seed)
        record(SessionGRU.name, "baseline", seed, score_gru(gru, prep, args.dim), t0, report)
        t0 = time.perf_counter()
        sasrec, report = fit_sasrec(prep, args, seed)
        record(SASRec.name, "baseline", seed, score_sasrec(sasrec, prep), t0, report)
        for name, overrides in (
            ("jodie", {"use_resource": False, "use_mi": False, "alpha_n": 0.0}),
            (OURS, {}),
        ):
            t0 = time.perf_counter()
            cfg = job.imn_config(prep, args, **overrides)
            model, report, found = job.fit_imn(prep, cfg, args, f"{name} seed {seed}", seed)
            if found:
                fusion[f"{name} seed {seed}"] = found
            metrics, _ = job.score_test(model, prep)
            role: Role = "ours" if name == OURS else "baseline"
            record(name, role, seed, metrics, t0, report)
    assert comparison is not None
    if not np.array_equal(reference["units"], test.user_slot):
        raise RuntimeError("the test events were ranked out of stream order")
    repeats = same_day_repeats(prep.events)[prep.n_train + prep.n_val :]
    collapsed = without_repeats(args, scored, test.user_slot, test.item_index > 0, repeats)
    dataset = dataset_name(args)
    sas = SASRecConfig(num_items=n_items, dim=args.dim)
    notes = (
        f"{len(prep.events)} events"
        + (f" (the first {args.max_events} by time)" if args.max_events else "")
        + f", {len(prep.vocab.users) - 1} train users, "
        f"{len(prep.vocab.items) - 1} train items; ranking over all train items, a test "
        "target unseen in training counts as a miss for every method. Each test event is "
        "ranked before it is applied (streaming replay); popularity and co-occurrence count "
        "online, GRU4Rec carries hidden states, SASRec attends over each user's last "
        f"{sas.max_len} items ({sas.blocks} blocks, {sas.heads} head, dropout {sas.dropout}, "
        "full-softmax loss), JODIE = IMN without resource branch and MI "
        f"head (a baseline: the JODIE paper's model). {collapsed['share_repeats']:.1%} of the "
        "test events repeat the user's previous item on the same day; "
        "`without_same_day_repeats` ranks the same runs on the others (the repeats still "
        f"applied to the states). Learned methods: Adam lr {args.lr}, at "
        f"most {args.epochs} epochs, early stopping on the validation Recall@20 (patience "
        f"{budget(args).patience}), best epoch restored; dim {args.dim}, IMN's N "
        f"{args.negatives}, "
        + (
            "eq. 23's alpha_m/alpha_n chosen per seed on the validation Recall@20 from "
            f"{'; '.join(f'{m:g}/{n:g}' for m, n in job.FUSION_GRID)} (`fusion_search`). "
            if getattr(args, "fusion_search", True)
            else f"alpha {args.alpha_m}/{args.alpha_n} (fixed). "
        )
        + f"{getattr(args, 'threads', 1)} torch CPU thread(s). GRU4Rec trains on windows of "
        "20 steps per user, each window starting from the hidden state the previous one "
        "ended with (truncated BPTT), as its replay carries it; SASRec trains on windows of "
        f"{sas.max_len} + 1 items per user and ranks a user with no history by popularity, "
        "as IMN and JODIE do. "
        "Recall@k curves: first seed."
    )
    record_kwargs = comparison.record()
    path = write_accuracy(
        args.results_dir,
        model="imn",
        dataset=dataset,
        data_sha256=prep.sha256,
        split=job.SPLIT,
        notes=notes,
        extra={
            "recall_curve": {"k": list(CURVE_KS), **curves},
            "fusion_search": fusion,
            VERSUS_SASREC: comparison.against(SASRec.name),
            "without_same_day_repeats": collapsed,
        },
        **record_kwargs,
    )
    if getattr(args, "plot", False):
        from training.plots.curves import plot_recall_curves

        plot_recall_curves(
            curves,
            CURVE_KS,
            Path(args.results_dir) / f"imn-recall-{dataset}.png",
            title=f"Next-item Recall@k on {dataset}: every test event ranked before it is applied",
        )
    log.info("wrote %s", path)
    return record_kwargs["methods"]
