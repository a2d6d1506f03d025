"""`salecast evaluate imn`: IMN-Net against the next-item baselines, over seeds, one split.

Every method goes through the same streaming protocol on the split of
`training.jobs.imn.prepare` (each test event ranked against the full item set before it is
applied): popularity and last-item co-occurrence (counting online, nothing random: one run
each), GRU4Rec (hidden states carried per user), JODIE (IMN without the resource branch
and the MI head) and IMN-Net, the learned ones once per seed (`--seeds`) within the same
epoch budget and early-stopping rule (validation Recall@20, `training.loop`).

The verdict compares IMN with the best baseline by seed-mean test Recall@20, with a paired
bootstrap interval over test *users* (a user's events move together). Every method ranks
the test events in the same order, so the per-event hits line up for the pairing. The
Recall@k curve of every method (first seed) is recorded, and drawn with `--plot`.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.baselines.nextitem import (
    LastItemCooccurrence,
    Popularity,
    RankingMetrics,
    SessionGRU,
)
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


def recall_scorer(ranks: np.ndarray, k: int = 20) -> Scorer:
    hits = (ranks <= k).astype(np.float64)
    return lambda weights: weighted_mean(hits, weights)


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    set_threads(args)
    frame, sha, source = job.load_frame(args)
    prep = job.prepare(frame, sha, source, args.max_events)
    test = prep.test
    reference: dict[str, np.ndarray] = {}
    comparison: Comparison | None = None
    curves: dict[str, list[float]] = {}
    fusion: dict[str, dict[str, Any]] = {}

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
    dataset = dataset_name(args)
    notes = (
        f"{len(prep.events)} events"
        + (f" (the first {args.max_events} by time)" if args.max_events else "")
        + f", {len(prep.vocab.users) - 1} train users, "
        f"{len(prep.vocab.items) - 1} train items; ranking over all train items, a test "
        "target unseen in training counts as a miss for every method. Each test event is "
        "ranked before it is applied (streaming replay); popularity and co-occurrence count "
        "online, GRU4Rec carries hidden states, JODIE = IMN without resource branch and MI "
        f"head (a baseline: the JODIE paper's model). Learned methods: Adam lr {args.lr}, at "
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
        "ended with (truncated BPTT), as its replay carries it. Recall@k curves: first seed."
    )
    record_kwargs = comparison.record()
    path = write_accuracy(
        args.results_dir,
        model="imn",
        dataset=dataset,
        data_sha256=prep.sha256,
        split=job.SPLIT,
        notes=notes,
        extra={"recall_curve": {"k": list(CURVE_KS), **curves}, "fusion_search": fusion},
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
