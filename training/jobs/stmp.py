"""`salecast train|evaluate stmp`: STMP festival sales forecast (issue 6).

Split (`make_split`): the last year of the data (52 weeks / 364 days) is the test period,
the `--val-steps` before it (default a quarter year) the validation period; training targets
lie before validation, and every statistic (scales, z-scores) comes from the training steps
only. Forecasts are one step ahead with the true history known up to the target (the
paper's setting: predict y_{T+1} from the past T steps), for STMP and every baseline alike;
`evaluate` also rolls forecasts 1..H steps ahead, as the service does (`stmp_horizons`).

ST-training (Algorithm 1): views alternate between the spatial view (a task = a region)
and the temporal view (a task = a day type). Each optimiser step draws `tasks` tasks of
the current view, a context set D^r and a disjoint query set D~^r from each task's
training instances, pools the context into q(psi | D^r) and scores the queries under
p(y~ | x~, psi). An epoch of `training.loop.fit` is `--steps-per-epoch` optimiser steps
(default: one spatial and one temporal phase); `--steps` is the budget, early stopping on the
validation WMAE with the best epoch restored, the same for the neural baselines.

This module holds the data, the fit and the artifact; `training.jobs.stmp_evaluate` the
evaluation against the baselines.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.stmp import STMP, STMPConfig
from service.errors import InvalidInput
from service.runtime.manifest import DataWindow
from training import distributed
from training.artifacts import write_artifact
from training.comparison import validation_summary
from training.features.stmp import (
    ORDINARY,
    Panel,
    build_panel,
    default_skips,
    gather,
    instances,
    steps_per_year,
)
from training.jobs.common import DEFAULT_PATIENCE, add_common_arguments, set_threads
from training.loop import Budget, FitReport, fit
from training.schemas import SalesData

log = logging.getLogger(__name__)

HOLIDAY_WEIGHT = 5.0  # Kaggle Walmart WMAE: holiday weeks weigh 5


# ---- CLI -----------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--steps", type=int, default=1500, help="optimiser-step budget (STMP and the networks)"
    )
    parser.add_argument(
        "--steps-per-epoch",
        type=int,
        default=None,
        help="steps between validations (default: 2 x --view-steps, one phase of each view)",
    )
    parser.add_argument(
        "--val-steps", type=int, default=None, help="validation period (default: a quarter year)"
    )
    parser.add_argument("--tasks", type=int, default=8, help="tasks per optimiser step")
    parser.add_argument("--context", type=int, default=32, help="context instances per task")
    parser.add_argument("--query", type=int, default=32, help="query instances per task")
    parser.add_argument("--view-steps", type=int, default=50, help="steps before switching view")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--embed", type=int, default=128)
    parser.add_argument("--psi-dim", type=int, default=32)
    parser.add_argument("--eval-samples", type=int, default=100, help="psi samples per forecast")
    parser.add_argument(
        "--no-variants", action="store_true", help="evaluate: skip the STMP variants (ablations)"
    )
    parser.add_argument(
        "--few-shot", default="", help="evaluate: comma list of shots for the Figure 7 curve"
    )
    parser.add_argument(
        "--horizons",
        type=int,
        default=8,
        help="evaluate: recursive forecasts 1..H steps ahead (fed-back means) per horizon, "
        "for STMP, its anchor and point-loss ablations and the baselines (0 or 1: one step "
        "only)",
    )
    parser.add_argument(
        "--holdout",
        choices=["year", "none"],
        default="year",
        help="train: hold out the last year as a test period, or train up to the validation "
        "period at the end of the data",
    )
    add_common_arguments(parser)


# ---- data ----------------------------------------------------------------------------------
def load_data(args: argparse.Namespace) -> tuple[SalesData, str]:
    """(data, dataset name) from --data/--format; `synthetic` when no files are given."""
    from training.data import load_sales_dataset

    return load_sales_dataset(args.data or [], args.format, seed=args.seed)


@dataclass(frozen=True)
class Split:
    """Step indices: training targets in [0, val_start), validation, then test to `end`."""

    val_start: int
    test_start: int
    end: int

    def describe(self, panel: Panel) -> str:
        def span(a: int, b: int) -> str:
            if a >= b:
                return "none"
            return f"{panel.dates[a].date()} .. {panel.dates[b - 1].date()} ({b - a} steps)"

        return (
            f"chronological: training targets {span(0, self.val_start)}, validation "
            f"{span(self.val_start, self.test_start)}, test {span(self.test_start, self.end)}; "
            "statistics from the training steps only"
        )


def make_split(
    data: SalesData, args: argparse.Namespace, test_year: bool = True
) -> tuple[Panel, Split]:
    """The panel, its statistics from the training steps only, and where each part begins."""
    year = steps_per_year(data.frequency)
    val_steps = getattr(args, "val_steps", None) or year // 4
    test_steps = year if test_year else 0
    if val_steps < 1:
        raise InvalidInput("val_steps", f"must be at least 1, got {val_steps}")
    panel = build_panel(data, holdout_steps=val_steps + test_steps)
    start = panel.train_end
    return panel, Split(start, start + val_steps, panel.n_steps)


def model_config(panel: Panel, args: argparse.Namespace, **switches: bool | float) -> STMPConfig:
    """The job's STMP configuration for `panel`, with the variant's `switches` applied."""
    skips, steps, ar = default_skips(panel.frequency)
    cfg = STMPConfig(
        n_dynamic=panel.dynamic.shape[2],
        n_static=panel.static.shape[1],
        n_target=panel.calendar_feats.shape[1],
        n_categories=len(panel.categories),
        skips=skips,
        skip_steps=steps,
        ar_window=ar,
        anchor_lag=steps_per_year(panel.frequency),
        hidden=args.hidden,
        embed=args.embed,
        psi_dim=args.psi_dim,
    )
    # `replace` re-runs the config's validation and keeps each field's own type.
    overrides: dict[str, Any] = dict(switches)
    return dataclasses.replace(cfg, **overrides)


def min_history(cfg: STMPConfig) -> int:
    """Observed steps an instance needs: the chains and AR order shorter than the longest
    chain.

    The yearly chain (and an AR order or anchor as long as it or longer) may reach into zero
    padding, so that the first year's festivals are training targets too (see
    `features.instances`). Measured against the longest chain rather than the window, so the
    anchor's 364-day window on daily data does not turn the 360-day chain into a required
    year of history.
    """
    chains = [p * k for p, k in zip(cfg.skips, cfg.skip_steps, strict=False)]
    longest = max(chains)
    short = [c for c in chains if c < longest]
    if cfg.ar_window < longest:
        short.append(cfg.ar_window)
    return max(short, default=1)


# ---- ST-training ---------------------------------------------------------------------------
@dataclass
class TaskPools:
    """Training instance ids grouped by region (spatial view) and by day type (temporal)."""

    spatial: dict[int, np.ndarray]
    temporal: dict[int, np.ndarray]


def task_pools(panel: Panel, n_idx: np.ndarray, t_idx: np.ndarray) -> TaskPools:
    regions = panel.series_region[n_idx]
    types = panel.day_type_idx[t_idx]
    ids = np.arange(len(n_idx))
    return TaskPools(
        spatial={int(r): ids[regions == r] for r in np.unique(regions)},
        temporal={int(d): ids[types == d] for d in np.unique(types)},
    )


def _task_batch(
    panel: Panel,
    n_idx: np.ndarray,
    t_idx: np.ndarray,
    pools: dict[int, np.ndarray],
    rng: np.random.Generator,
    tasks: int,
    context: int,
    query: int,
    window: int,
    query_slice: slice | None = None,
) -> dict[str, torch.Tensor]:
    """`tasks` tasks with `context` context and `query` query instances each.

    `query_slice` keeps only those query positions of every task (a rank's share under
    torchrun); the draws are made in full first, so the RNG advances as in one process.
    """
    keys = list(pools)
    chosen = rng.choice(keys, size=tasks, replace=len(keys) < tasks)
    ctx_ids, qry_ids = [], []
    for key in chosen:
        pool = pools[int(key)]
        if len(pool) >= context + query:
            pick = rng.choice(pool, size=context + query, replace=False)
        else:
            # Few-shot task (a festival seen once): context and query overlap.
            pick = rng.choice(pool, size=context + query, replace=True)
        ctx_ids.append(pick[:context])
        qry_ids.append(pick[context:])
    batch: dict[str, torch.Tensor] = {}
    qry = np.stack(qry_ids)[:, query_slice if query_slice is not None else slice(None)]
    for prefix, ids in (("ctx", np.stack(ctx_ids)), ("qry", qry)):
        flat = ids.reshape(-1)
        parts = gather(panel, n_idx[flat], t_idx[flat], window)
        for name, value in parts.items():
            arr = torch.from_numpy(np.ascontiguousarray(value))
            batch[f"{prefix}_{name}"] = arr.reshape(tasks, -1, *arr.shape[1:])
        batch[f"{prefix}_mask"] = torch.ones(tasks, ids.shape[1])
    return batch


class STTraining:
    """Algorithm 1 with fixed-length view phases, run a number of steps at a time.

    The RNG, optimiser and cosine schedule (over the whole step budget) persist across
    `run` calls, so an epoch boundary of `training.loop.fit` changes nothing in the
    trajectory; it is only where validation happens.

    Under torchrun (`ctx` with several ranks) every rank draws the same tasks, context and
    query sets from the same seeded RNG, keeps every task's full context set and takes its
    slice of every task's query set. Splitting the queries rather than the tasks is what keeps
    the global step equal to the single-process one: the loss is the mean query NLL over all
    tasks, so per-rank means weighted by their share of queries average (in DDP's gradient
    all-reduce) to it exactly; each task's psi comes from its whole context set on every rank;
    and the model's per-task psi noise, drawn with the torch RNG in the shape [tasks, ...], is
    the same draw in every process, whereas a share of the tasks would draw a different shape
    and so different noise. The price is that every rank encodes every context set.
    """

    def __init__(
        self,
        model: STMP,
        panel: Panel,
        n_idx: np.ndarray,
        t_idx: np.ndarray,
        *,
        total_steps: int,
        tasks: int = 8,
        context: int = 32,
        query: int = 32,
        view_steps: int = 50,
        lr: float = 3e-3,
        seed: int = 0,
        ctx: distributed.DistContext | None = None,
    ) -> None:
        self.ctx = ctx or distributed.DistContext()
        torch.manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        self.model, self.panel, self.n_idx, self.t_idx = model, panel, n_idx, t_idx
        pools = task_pools(panel, n_idx, t_idx)
        self.views = [pools.spatial, pools.temporal]
        self.tasks, self.context, self.query, self.view_steps = tasks, context, query, view_steps
        model.to(self.ctx.device)
        self.trainer = distributed.wrap(distributed.LossModule(model), self.ctx)
        self.opt = torch.optim.Adam(model.parameters(), lr=lr)
        self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.opt, T_max=max(total_steps, 1), eta_min=lr / 10
        )
        mine = distributed.local_slice(query, self.ctx)
        n_mine = mine.stop - mine.start
        # A rank left without queries still joins the gradient all-reduce, with weight 0.
        self.weight = distributed.share_weight(n_mine, query, self.ctx)
        self.keep = mine if n_mine else slice(0, 1)
        self.step = 0

    def run(self, steps: int) -> float:
        """`steps` optimiser steps; the mean (all-rank) loss over them."""
        losses = []
        for _ in range(steps):
            view = self.views[(self.step // self.view_steps) % 2]
            batch = _task_batch(
                self.panel, self.n_idx, self.t_idx, view, self.rng, self.tasks, self.context,
                self.query, self.model.cfg.window, self.keep,
            )  # fmt: skip
            loss = self.trainer({k: v.to(self.ctx.device) for k, v in batch.items()})
            self.opt.zero_grad()
            (loss * self.weight).backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.opt.step()
            self.sched.step()
            losses.append(
                distributed.mean_across_ranks(float(loss.detach()) * self.weight, self.ctx)
            )
            self.step += 1
        return float(np.mean(losses)) if losses else float("nan")


@dataclass(frozen=True)
class StepBudget:
    """An optimiser-step budget cut into validation epochs (the same for every network)."""

    steps: int
    per_epoch: int
    patience: int

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> StepBudget:
        per_epoch = getattr(args, "steps_per_epoch", None) or 2 * args.view_steps
        return cls(
            int(args.steps), int(per_epoch), int(getattr(args, "patience", DEFAULT_PATIENCE))
        )

    @property
    def epochs(self) -> Budget:
        return Budget(
            max_epochs=max(1, math.ceil(self.steps / self.per_epoch)), patience=self.patience
        )

    def steps_in(self, epoch: int) -> int:
        """Steps of the 1-based `epoch` (the last one takes what is left of the budget)."""
        return max(0, min(self.per_epoch, self.steps - (epoch - 1) * self.per_epoch))


# ---- task representations -------------------------------------------------------------------
@dataclass
class TaskTables:
    """Pooled context embeddings per region and per day type (NaN rows: no context)."""

    region: np.ndarray  # [R, E]
    day_type: np.ndarray  # [J, E]
    region_count: np.ndarray | None = None  # [R] context instances pooled
    day_type_count: np.ndarray | None = None  # [J]


def pooled_embeddings(
    model: STMP,
    panel: Panel,
    n_idx: np.ndarray,
    t_idx: np.ndarray,
    max_context: int = 512,
    seed: int = 0,
) -> TaskTables:
    """Instance pooling over (a sample of) each task's history, for both views."""
    rng = np.random.default_rng(seed)
    pools = task_pools(panel, n_idx, t_idx)
    window = model.cfg.window
    device = next(model.parameters()).device
    model.eval()

    def pool(groups: dict[int, np.ndarray], size: int) -> tuple[np.ndarray, np.ndarray]:
        out = np.full((size, model.cfg.embed), np.nan, dtype=np.float32)
        count = np.zeros(size, dtype=np.float64)
        for key, ids in groups.items():
            if len(ids) > max_context:
                ids = rng.choice(ids, size=max_context, replace=False)
            inputs = gather(panel, n_idx[ids], t_idx[ids], window)
            with torch.no_grad():
                a = model.encode_instances(
                    *(
                        torch.from_numpy(np.ascontiguousarray(inputs[k])).to(device)
                        for k in ("hist", "static", "category", "target", "y")
                    )
                )
            out[key] = a.mean(0).cpu().numpy()
            count[key] = len(ids)
        return out, count

    region, region_count = pool(pools.spatial, len(panel.regions))
    day_type, day_type_count = pool(pools.temporal, len(panel.day_types))
    return TaskTables(region, day_type, region_count, day_type_count)


def combine_tasks(tables: TaskTables, regions: np.ndarray, day_types: np.ndarray) -> np.ndarray:
    """Pooled embedding of SD-tasks (region, day type): the mean of the views present."""
    r = tables.region[regions]
    d = tables.day_type[day_types]
    both = np.stack([r, d])  # [2, B, E]
    present = ~np.isnan(both[:, :, 0])
    total = np.nansum(both, axis=0)
    count = present.sum(0)[:, None]
    return np.where(count > 0, total / np.maximum(count, 1), 0.0).astype(np.float32)


def predict_stmp(
    model: STMP,
    panel: Panel,
    tables: TaskTables,
    n_idx: np.ndarray,
    t_idx: np.ndarray,
    samples: int,
    seed: int = 0,
    batch: int = 1024,
) -> tuple[np.ndarray, np.ndarray]:
    """(point [B], samples [B, K]) in normalised units."""
    gen = torch.Generator().manual_seed(seed)
    window = model.cfg.window
    device = next(model.parameters()).device
    model.eval()
    points, draws = [], []
    for i in range(0, len(n_idx), batch):
        nn_, tt = n_idx[i : i + batch], t_idx[i : i + batch]
        inputs = gather(panel, nn_, tt, window)
        task = combine_tasks(tables, panel.series_region[nn_], panel.day_type_idx[tt])
        b = len(nn_)
        with torch.no_grad():
            point, draw, _ = model.forecast(
                torch.from_numpy(inputs["hist"]).to(device),
                torch.from_numpy(inputs["static"]).to(device),
                torch.from_numpy(inputs["category"]).to(device),
                torch.from_numpy(inputs["target"]).to(device),
                torch.from_numpy(task).to(device),
                torch.randn(b, samples, model.cfg.psi_dim, generator=gen).to(device),
                torch.randn(b, samples, generator=gen).to(device),
            )
        points.append(point.cpu().numpy())
        draws.append(draw.cpu().numpy())
    return np.concatenate(points).astype(np.float64), np.concatenate(draws).astype(np.float64)


# ---- metrics --------------------------------------------------------------------------------
def holiday_weights(day_type: np.ndarray) -> np.ndarray:
    """WMAE weights: 1 on ordinary steps, HOLIDAY_WEIGHT on every other day type."""
    return np.where(day_type == 0, 1.0, HOLIDAY_WEIGHT)


def wmae(
    actual: np.ndarray, pred: np.ndarray, day_type: np.ndarray, rows: np.ndarray | None = None
) -> float:
    """Holiday-weighted MAE in source units; `rows` = bootstrap weights per instance."""
    w = holiday_weights(day_type) * (1.0 if rows is None else rows)
    return float(np.sum(w * np.abs(pred - actual)) / np.sum(w)) if np.sum(w) > 0 else float("nan")


def forecast_metrics(
    actual: np.ndarray,
    pred: np.ndarray,
    scale: np.ndarray,
    day_type: np.ndarray,
    day_type_names: list[str],
    samples: np.ndarray | None = None,
) -> dict[str, float]:
    """MSE/RMSE/holiday-weighted MAE in source units, RMSE of normalised values, per day
    type, and interval coverage when predictive samples (normalised) are given."""
    err = pred - actual
    out: dict[str, float] = {
        "mse": float(np.mean(err**2)),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "wmae": wmae(actual, pred, day_type),
        "rmse_scaled": float(np.sqrt(np.mean((err / scale) ** 2))),
    }
    fest = day_type != 0
    if fest.any():
        out["festival.rmse"] = float(np.sqrt(np.mean(err[fest] ** 2)))
        out["festival.mae"] = float(np.mean(np.abs(err[fest])))
        out["festival.rmse_scaled"] = float(np.sqrt(np.mean((err[fest] / scale[fest]) ** 2)))
    if samples is not None:
        y_norm = actual / scale
        for level in (80, 95):
            lo, hi = np.percentile(samples, [50 - level / 2, 50 + level / 2], axis=1)
            out[f"coverage@{level}"] = float(np.mean((y_norm >= lo) & (y_norm <= hi)))
    for j, name in enumerate(day_type_names):
        sel = day_type == j
        if not sel.any():
            continue
        key = name.lower().replace(" ", "_")
        out[f"{key}.mse"] = float(np.mean(err[sel] ** 2))
        out[f"{key}.rmse"] = float(np.sqrt(np.mean(err[sel] ** 2)))
        # MAE within one day type is its holiday-weighted MAE: the weight is constant there.
        out[f"{key}.mae"] = float(np.mean(np.abs(err[sel])))
        out[f"{key}.rmse_scaled"] = float(np.sqrt(np.mean((err[sel] / scale[sel]) ** 2)))
    return out


# ---- train ----------------------------------------------------------------------------------
def validation_wmae(
    panel: Panel, n_idx: np.ndarray, t_idx: np.ndarray
) -> Callable[[np.ndarray], float]:
    """WMAE in source units of normalised point forecasts of the given instances."""
    actual = panel.raw[n_idx, t_idx]
    scale = panel.scale[n_idx]
    day_type = panel.day_type_idx[t_idx]
    return lambda pred_norm: wmae(actual, pred_norm * scale, day_type)


def fit_stmp(
    panel: Panel,
    split: Split,
    args: argparse.Namespace,
    switches: Mapping[str, bool | float],
    seed: int,
    keep: np.ndarray | None = None,
    ctx: distributed.DistContext | None = None,
    label: str = "stmp",
) -> tuple[STMP, np.ndarray, np.ndarray, FitReport]:
    """ST-training in `training.loop.fit`, early-stopped on the validation WMAE.

    `keep` [T] drops training targets at the steps it marks False (the few-shot curve).
    """
    cfg = model_config(panel, args, **switches)
    hist = min_history(cfg)
    n_idx, t_idx = instances(panel, hist, 0, split.val_start)
    if keep is not None:
        n_idx, t_idx = n_idx[keep[t_idx]], t_idx[keep[t_idx]]
    val_n, val_t = instances(panel, hist, split.val_start, split.test_start)
    torch.manual_seed(seed)
    model = STMP(cfg)
    steps = StepBudget.from_args(args)
    training = STTraining(
        model, panel, n_idx, t_idx, total_steps=steps.steps, tasks=args.tasks,
        context=args.context, query=args.query, view_steps=args.view_steps, lr=args.lr,
        seed=seed, ctx=ctx,
    )  # fmt: skip
    score = validation_wmae(panel, val_n, val_t)

    def validate() -> float:
        tables = pooled_embeddings(model, panel, n_idx, t_idx, seed=seed)
        point, _ = predict_stmp(model, panel, tables, val_n, val_t, 1, seed)
        return score(point)

    report = fit(
        model, lambda epoch: training.run(steps.steps_in(epoch)),
        validate if len(val_n) else None, steps.epochs, label=label, higher_is_better=False,
        ctx=ctx,
    )  # fmt: skip
    model.cpu().eval()
    return model, n_idx, t_idx, report


def baseline_validation(
    panel: Panel, split: Split, hist_min: int, window: int, seed: int
) -> dict[str, dict[str, float]]:
    """Seasonal naive, AR and LightGBM on the validation period (the manifest's peers)."""
    from training.baselines import forecast as bl

    train_n, train_t = instances(panel, hist_min, 0, split.val_start)
    val_n, val_t = instances(panel, hist_min, split.val_start, split.test_start)
    if not len(val_n):
        return {}
    actual, scale = panel.raw[val_n, val_t], panel.scale[val_n]
    day_type = panel.day_type_idx[val_t]
    predictions = {
        "seasonal-naive": bl.seasonal_naive(panel, val_n, val_t),
        "ar": bl.fit_ar(panel, train_n, train_t, window=window).predict(panel, val_n, val_t),
        "lightgbm": bl.fit_lightgbm(panel, train_n, train_t, val_n, val_t, seed=seed)[0](
            val_n, val_t
        ),
    }
    return {
        name: forecast_metrics(actual, pred * scale, scale, day_type, panel.day_types)
        for name, pred in predictions.items()
    }


def train(args: argparse.Namespace) -> Path:
    """ST-training, task tables, validation (and test) metrics and the artifact.

    Under torchrun ST-training is data-parallel (see `STTraining`); the task tables and the
    forecasts are computed by rank 0 alone, which writes the artifact.
    """
    set_threads(args)
    data, dataset = load_data(args)
    panel, split = make_split(data, args, test_year=getattr(args, "holdout", "year") == "year")
    ctx = distributed.setup(getattr(args, "device", "cpu"))
    try:
        model, n_idx, t_idx, report = fit_stmp(panel, split, args, {}, args.seed, ctx=ctx)
        if not ctx.is_main:
            return Path(args.artifacts)
    finally:
        distributed.teardown(ctx)
    tables = pooled_embeddings(model, panel, n_idx, t_idx, seed=args.seed)
    hist = min_history(model.cfg)

    def scored(start: int, stop: int) -> dict[str, float]:
        vn, vt = instances(panel, hist, start, stop)
        if not len(vn):
            return {}
        point, draws = predict_stmp(model, panel, tables, vn, vt, args.eval_samples, args.seed)
        scale = panel.scale[vn]
        return forecast_metrics(
            panel.raw[vn, vt], point * scale, scale, panel.day_type_idx[vt], panel.day_types,
            draws,
        )  # fmt: skip

    metrics: dict[str, Any] = {
        "validation": validation_summary(
            metric="wmae",
            higher_is_better=False,
            ours=("stmp", scored(split.val_start, split.test_start)),
            baselines=baseline_validation(panel, split, hist, model.cfg.window, args.seed),
            split=split.describe(panel),
        ),
        "fit": report.to_dict(),
    }
    if split.test_start < split.end:
        metrics["test"] = scored(split.test_start, split.end)
    return export_artifact(
        model, panel, tables, data, dataset, args.artifacts, metrics, samples=args.eval_samples
    )


def export_artifact(
    model: STMP,
    panel: Panel,
    tables: TaskTables,
    data: SalesData,
    dataset: str,
    root: Path,
    metrics: dict[str, Any],
    samples: int = 200,
) -> Path:
    """Graphs + tables the servable needs: per-series scales, calendar, task embeddings."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        graphs = model.export_graphs(tmp_dir)
        tables_path = tmp_dir / "tables.npz"
        np.savez(
            tables_path,
            series_region=panel.series_region,
            series_category=panel.series_category,
            scale=panel.scale.astype(np.float64),
            static=panel.static,
            region_task=tables.region,
            region_task_count=np.asarray(tables.region_count, dtype=np.float64),
            day_type_task=tables.day_type,
            calendar_day_type=panel.calendar_day_type,
            calendar_feats=panel.calendar_feats,
            # The last window of every series, so a forecast works before any ingestion.
            history=panel.dynamic[:, -model.cfg.window :, :],
        )
        start, end = panel.dates[0], panel.dates[-1]
        return write_artifact(
            root,
            "stmp",
            graphs,
            data_window=DataWindow(
                start=start.isoformat(),
                end=end.isoformat(),
                sha256=data.sha256,
                source=dataset,
            ),
            vocabularies={
                "region": panel.regions,
                "category": panel.categories,
                "day_type": panel.day_types,
            },
            normalisation=panel.normalisation,
            metrics=metrics,
            config={
                "model": model.cfg.to_dict(),
                "frequency": panel.frequency,
                "window": model.cfg.window,
                "samples": samples,
                "calendar_start": panel.calendar_dates[0].isoformat(),
                "calendar_steps": len(panel.calendar_dates),
                "history_end": end.isoformat(),
                "ordinary": ORDINARY,
                "dynamic_layout": ["sales/scale", "present", *panel.external_columns, "festival"],
            },
            extra_files={"tables.npz": tables_path},
        )


def train_demo(artifacts_root: Path, seed: int = 0) -> Path:
    """STMP on the synthetic generator's sales, small enough for under a minute on one core."""
    args = argparse.Namespace(
        data=[],
        format="synthetic",
        seed=seed,
        artifacts=Path(artifacts_root),
        steps=150,
        tasks=4,
        context=16,
        query=16,
        view_steps=25,
        lr=3e-3,
        hidden=16,
        embed=32,
        psi_dim=8,
        eval_samples=50,
        holdout="year",
    )
    return train(args)
