"""`salecast train|evaluate stmp`: STMP festival sales forecast (issue 6).

Split: the last year of the data (52 weeks / 364 days) is the test period; every statistic
(scales, z-scores) and every fitted parameter comes from the steps before it. Forecasts are
one step ahead with the true history known up to the target (the paper's setting: predict
y_{T+1} from the past T steps), for STMP and every baseline alike.

ST-training (Algorithm 1): views alternate between the spatial view (a task = a region)
and the temporal view (a task = a day type). Each optimiser step draws `tasks` tasks of
the current view, a context set D^r and a disjoint query set D~^r from each task's
training instances, pools the context into q(psi | D^r) and scores the queries under
p(y~ | x~, psi).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.stmp import STMP, STMPConfig
from service.runtime.manifest import DataWindow
from training import distributed
from training.artifacts import write_artifact
from training.features.stmp import (
    ORDINARY,
    Panel,
    build_panel,
    default_skips,
    festival_occurrence,
    gather,
    instances,
)
from training.schemas import SalesData

log = logging.getLogger(__name__)

VARIANTS: dict[str, dict[str, bool]] = {
    "stmp": {},
    "stmp-ar": {"use_ar": False},
    "stmp-skip": {"use_skip": False},
    "stmp-meta": {"use_meta": False},
    "stmp-vi": {"use_vi": False},
}
HOLIDAY_WEIGHT = 5.0  # Kaggle Walmart WMAE: holiday weeks weigh 5


# ---- CLI -----------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, default=1500, help="ST-training optimiser steps")
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
        "--baseline-steps", type=int, default=1500, help="optimiser steps of LSTNet/MetaGRU"
    )
    parser.add_argument(
        "--no-variants", action="store_true", help="evaluate: skip the four STMP variants"
    )
    parser.add_argument(
        "--few-shot", default="", help="evaluate: comma list of shots for the Figure 7 curve"
    )
    parser.add_argument("--plot", action="store_true", help="evaluate: write the forecast PNG")
    parser.add_argument(
        "--holdout",
        choices=["year", "none"],
        default="year",
        help="train: hold out the last year for validation metrics, or train on everything",
    )


# ---- data ----------------------------------------------------------------------------------
def load_data(args: argparse.Namespace) -> tuple[SalesData, str]:
    """(data, dataset name) from --data/--format; `synthetic` when no files are given."""
    from training.data import load_sales_dataset

    return load_sales_dataset(args.data or [], args.format, seed=args.seed)


def model_config(panel: Panel, args: argparse.Namespace, **switches: bool) -> STMPConfig:
    skips, steps, ar = default_skips(panel.frequency)
    cfg = STMPConfig(
        n_dynamic=panel.dynamic.shape[2],
        n_static=panel.static.shape[1],
        n_target=panel.calendar_feats.shape[1],
        n_categories=len(panel.categories),
        skips=skips,
        skip_steps=steps,
        ar_window=ar,
        hidden=args.hidden,
        embed=args.embed,
        psi_dim=args.psi_dim,
    )
    for name, value in switches.items():
        setattr(cfg, name, bool(value))
    return cfg


def min_history(cfg: STMPConfig) -> int:
    """Observed steps an instance needs: the chains and AR order shorter than the window.

    The yearly chain (and an AR order as long as it) may reach into zero padding, so that
    the first year's festivals are training targets too (see `features.instances`).
    """
    short = [p * k for p, k in zip(cfg.skips, cfg.skip_steps, strict=False) if p * k < cfg.window]
    if cfg.ar_window < cfg.window:
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


def st_train(
    model: STMP,
    panel: Panel,
    n_idx: np.ndarray,
    t_idx: np.ndarray,
    *,
    steps: int,
    tasks: int = 8,
    context: int = 32,
    query: int = 32,
    view_steps: int = 50,
    lr: float = 3e-3,
    seed: int = 0,
    ctx: distributed.DistContext | None = None,
) -> list[float]:
    """Algorithm 1 with fixed-length view phases; returns the loss per step.

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
    ctx = ctx or distributed.DistContext()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    pools = task_pools(panel, n_idx, t_idx)
    views = [pools.spatial, pools.temporal]
    model.to(ctx.device)
    trainer = distributed.wrap(distributed.LossModule(model), ctx)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1), eta_min=lr / 10)
    window = model.cfg.window
    mine = distributed.local_slice(query, ctx)
    n_mine = mine.stop - mine.start
    # A rank left without queries still joins the gradient all-reduce, with weight 0.
    weight = distributed.share_weight(n_mine, query, ctx)
    keep = mine if n_mine else slice(0, 1)
    losses = []
    model.train()
    for step in range(steps):
        view = views[(step // view_steps) % 2]
        batch = _task_batch(panel, n_idx, t_idx, view, rng, tasks, context, query, window, keep)
        loss = trainer({k: v.to(ctx.device) for k, v in batch.items()})
        opt.zero_grad()
        (loss * weight).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(distributed.mean_across_ranks(float(loss.detach()) * weight, ctx))
        if step % 250 == 0:
            log.info(
                "stmp step %d view %s loss %.4f", step, "ST"[(step // view_steps) % 2], losses[-1]
            )
    model.cpu().eval()
    return losses


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
                        torch.from_numpy(np.ascontiguousarray(inputs[k]))
                        for k in ("hist", "static", "category", "target", "y")
                    )
                )
            out[key] = a.mean(0).numpy()
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
    points, draws = [], []
    for i in range(0, len(n_idx), batch):
        nn_, tt = n_idx[i : i + batch], t_idx[i : i + batch]
        inputs = gather(panel, nn_, tt, window)
        task = combine_tasks(tables, panel.series_region[nn_], panel.day_type_idx[tt])
        b = len(nn_)
        with torch.no_grad():
            point, draw, _ = model.forecast(
                torch.from_numpy(inputs["hist"]),
                torch.from_numpy(inputs["static"]),
                torch.from_numpy(inputs["category"]),
                torch.from_numpy(inputs["target"]),
                torch.from_numpy(task),
                torch.randn(b, samples, model.cfg.psi_dim, generator=gen),
                torch.randn(b, samples, generator=gen),
            )
        points.append(point.numpy())
        draws.append(draw.numpy())
    return np.concatenate(points).astype(np.float64), np.concatenate(draws).astype(np.float64)


# ---- metrics --------------------------------------------------------------------------------
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
    weight = np.where(day_type == 0, 1.0, HOLIDAY_WEIGHT)
    out: dict[str, float] = {
        "mse": float(np.mean(err**2)),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "wmae": float(np.sum(weight * np.abs(err)) / np.sum(weight)),
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
def _fit(
    panel: Panel,
    args: argparse.Namespace,
    switches: dict[str, bool],
    keep: np.ndarray | None = None,
    ctx: distributed.DistContext | None = None,
) -> tuple[STMP, np.ndarray, np.ndarray, list[float]]:
    cfg = model_config(panel, args, **switches)
    n_idx, t_idx = instances(panel, min_history(cfg), 0, panel.train_end)
    if keep is not None:
        n_idx, t_idx = n_idx[keep[t_idx]], t_idx[keep[t_idx]]
    torch.manual_seed(args.seed)
    model = STMP(cfg)
    losses = st_train(
        model,
        panel,
        n_idx,
        t_idx,
        steps=args.steps,
        tasks=args.tasks,
        context=args.context,
        query=args.query,
        view_steps=args.view_steps,
        lr=args.lr,
        seed=args.seed,
        ctx=ctx,
    )
    return model, n_idx, t_idx, losses


def train(args: argparse.Namespace) -> Path:
    """ST-training, task tables, validation metrics and the artifact.

    Under torchrun ST-training is data-parallel (see `st_train`); the task tables and the
    validation forecasts are computed by rank 0 alone, which writes the artifact.
    """
    torch.set_num_threads(1)
    data, dataset = load_data(args)
    holdout = None if args.holdout == "year" else 0
    panel = build_panel(data, holdout_steps=holdout)
    ctx = distributed.setup(getattr(args, "device", "cpu"))
    try:
        model, n_idx, t_idx, losses = _fit(panel, args, {}, ctx=ctx)
        if not ctx.is_main:
            return Path(args.artifacts)
    finally:
        distributed.teardown(ctx)
    tables = pooled_embeddings(model, panel, n_idx, t_idx, seed=args.seed)
    metrics: dict[str, Any] = {"train_loss_last50": float(np.mean(losses[-50:]))}
    if panel.train_end < panel.n_steps:
        vn, vt = instances(panel, min_history(model.cfg), panel.train_end, panel.n_steps)
        point, draws = predict_stmp(model, panel, tables, vn, vt, args.eval_samples, args.seed)
        scale = panel.scale[vn]
        metrics["validation"] = forecast_metrics(
            panel.raw[vn, vt],
            point * scale,
            scale,
            panel.day_type_idx[vt],
            panel.day_types,
            draws,
        )
        metrics["validation_split"] = "last year of the data"
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


# ---- evaluate -------------------------------------------------------------------------------
def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """STMP, its variants and every baseline on the last year, in one run (one JSON)."""
    from training.baselines import forecast as bl
    from training.reporting import write_accuracy

    torch.set_num_threads(1)  # the 2-core machine is shared; one thread per job
    t0 = time.time()
    data, dataset = load_data(args)
    panel = build_panel(data)
    base_cfg = model_config(panel, args)
    window = base_cfg.window
    hist_min = min_history(base_cfg)
    train_n, train_t = instances(panel, hist_min, 0, panel.train_end)
    test_n, test_t = instances(panel, hist_min, panel.train_end, panel.n_steps)
    actual = panel.raw[test_n, test_t]
    scale = panel.scale[test_n]
    dtype = panel.day_type_idx[test_t]
    log.info(
        "panel: %d series x %d steps; %d train / %d test instances",
        panel.n_series,
        panel.n_steps,
        len(train_n),
        len(test_n),
    )

    methods: dict[str, dict[str, float]] = {}
    timings: dict[str, float] = {}
    preds: dict[str, np.ndarray] = {}

    def record(name: str, pred_norm: np.ndarray, draws: np.ndarray | None = None) -> None:
        preds[name] = pred_norm * scale
        methods[name] = forecast_metrics(
            actual, pred_norm * scale, scale, dtype, panel.day_types, draws
        )
        log.info(
            "%s: rmse %.2f wmae %.2f (%.0fs)",
            name,
            methods[name]["rmse"],
            methods[name]["wmae"],
            time.time() - t0,
        )

    record("seasonal-naive", bl.seasonal_naive(panel, test_n, test_t))
    ar = bl.fit_ar(panel, train_n, train_t, window=window)
    record("ar", ar.predict(panel, test_n, test_t))
    lgb_predict = bl.fit_lightgbm(panel, train_n, train_t, seed=args.seed)
    record("lightgbm", lgb_predict(test_n, test_t))

    skips, _, ar_order = default_skips(panel.frequency)
    torch.manual_seed(args.seed)
    lstnet = bl.LSTNet(
        base_cfg.n_dynamic,
        base_cfg.n_target,
        # The conv/GRU part reads at most 64 recent steps (a 360-step GRU on daily data
        # costs minutes per epoch on 2 cores); the AR highway covers the AR order.
        min(window, 64),
        skip=skips[1],
        ar_window=ar_order,
    )
    bl.fit_network(
        lstnet,
        bl.call_lstnet,
        panel,
        train_n,
        train_t,
        window,
        steps=args.baseline_steps,
        seed=args.seed,
    )
    record("lstnet", bl.predict_network(lstnet, bl.call_lstnet, panel, test_n, test_t, window))

    def metagru() -> torch.nn.Module:
        torch.manual_seed(args.seed)
        return bl.MetaGRU(
            base_cfg.n_dynamic,
            base_cfg.n_static,
            base_cfg.n_target,
            base_cfg.n_categories,
            steps=min(window, hist_min),
        )

    mgru = bl.fit_network(
        metagru(),
        bl.call_metagru,
        panel,
        train_n,
        train_t,
        window,
        steps=args.baseline_steps,
        seed=args.seed,
    )
    record("metagru", bl.predict_network(mgru, bl.call_metagru, panel, test_n, test_t, window))

    variants = ["stmp"] if args.no_variants else list(VARIANTS)
    models: dict[str, STMP] = {}
    for name in variants:
        start = time.time()
        model, n_idx, t_idx, _ = _fit(panel, args, VARIANTS[name])
        tables = pooled_embeddings(model, panel, n_idx, t_idx, seed=args.seed)
        point, draws = predict_stmp(
            model, panel, tables, test_n, test_t, args.eval_samples, args.seed
        )
        timings[name] = time.time() - start
        record(name, point, draws)
        models[name] = model

    extra: dict[str, Any] = {"timings_s": timings}
    if args.few_shot:
        shots = [int(s) for s in args.few_shot.split(",") if s.strip()]
        extra["few_shot"] = few_shot_curve(
            panel, args, shots, test_n, test_t, actual, scale, hist_min, window
        )
    notes = (
        f"{panel.n_series} series ({len(panel.regions)} regions x {len(panel.categories)} "
        f"categories), {panel.n_steps} {panel.frequency} steps; test = last "
        f"{panel.n_steps - panel.train_end} steps ({panel.dates[panel.train_end].date()} .. "
        f"{panel.dates[-1].date()}), {len(test_n)} one-step-ahead forecasts with the true "
        "history known (the paper's setting). mse/rmse/wmae in source units (wmae: "
        "non-ordinary day types weigh 5); rmse_scaled on sales divided by the series' "
        "training mean |sales|; '<day type>.*' per day type. Coverage from "
        f"{args.eval_samples} samples of psi and the observation noise. DeepAR not run: "
        "gluonts 0.17 would downgrade pandas 3.1 to 2.3 (pip --dry-run), so it does not "
        "install cleanly here. Trained on CPU only (no GPU in this session). "
        f"Day types: {', '.join(panel.day_types)}."
    )
    path = write_accuracy(
        args.results_dir,
        model="stmp",
        dataset=dataset,
        data_sha256=data.sha256,
        split=f"chronological: last {panel.n_steps - panel.train_end} steps (one year) as test",
        primary_metric="wmae",
        higher_is_better=False,
        methods=methods,
        ours="stmp",
        notes=notes,
        extra=extra,
    )
    if args.plot:
        from bench.stmp_plot import plot_few_shot, plot_forecasts

        if "few_shot" in extra:
            plot_few_shot(
                extra["few_shot"], Path(args.results_dir) / f"stmp-few-shot-{dataset}.png"
            )

        plot_forecasts(
            panel,
            test_n,
            test_t,
            actual,
            preds,
            Path(args.results_dir) / f"stmp-forecast-{dataset}.png",
        )
    log.info("wrote %s in %.0fs", path, time.time() - t0)
    return {"path": str(path), "methods": methods, **extra}


def few_shot_curve(
    panel: Panel,
    args: argparse.Namespace,
    shots: list[int],
    test_n: np.ndarray,
    test_t: np.ndarray,
    actual: np.ndarray,
    scale: np.ndarray,
    hist_min: int,
    window: int,
) -> dict[str, Any]:
    """Figure 7: festival error on the test year against past occurrences kept in training.

    With k shots, training keeps only the k most recent occurrences (years) of each festival
    before the test year; k = 0 drops every festival target from training. STMP and
    MetaGRU (the paper's pair) are retrained for each k.
    """
    from training.baselines import forecast as bl

    occurrence = festival_occurrence(panel)
    dtypes = panel.day_type_idx
    before = {
        int(d): int(occurrence[: panel.train_end][dtypes[: panel.train_end] == d].max()) + 1
        for d in np.unique(dtypes[: panel.train_end])
        if d != 0
    }
    fest = dtypes[test_t] != 0
    # RMSE in source units leads: scaled by each series' mean, a few departments whose
    # festival weeks sell tens of times their mean dominate every method's error alike.
    curve: dict[str, Any] = {
        "shots": shots,
        "metric": "festival-week rmse in source units on the test year (mae, rmse_scaled too)",
        "occurrences_before_test": {panel.day_types[d]: n for d, n in before.items()},
    }
    for method in ("stmp", "metagru"):
        for metric in ("rmse", "mae", "rmse_scaled"):
            curve[f"{method}.{metric}"] = []

    def record(method: str, pred: np.ndarray) -> None:
        err = pred - actual[fest]
        curve[f"{method}.rmse"].append(float(np.sqrt(np.mean(err**2))))
        curve[f"{method}.mae"].append(float(np.mean(np.abs(err))))
        curve[f"{method}.rmse_scaled"].append(float(np.sqrt(np.mean((err / scale[fest]) ** 2))))

    for k in shots:
        keep = np.ones(panel.n_steps, dtype=bool)
        for t in range(panel.train_end):
            d = int(dtypes[t])
            if d != 0 and occurrence[t] < before[d] - k:
                keep[t] = False
        model, n_idx, t_idx, _ = _fit(panel, args, {}, keep=keep)
        tables = pooled_embeddings(model, panel, n_idx, t_idx, seed=args.seed)
        point, _ = predict_stmp(model, panel, tables, test_n[fest], test_t[fest], 10, args.seed)
        record("stmp", point * scale[fest])
        torch.manual_seed(args.seed)
        tn, tt = instances(panel, hist_min, 0, panel.train_end)
        tn, tt = tn[keep[tt]], tt[keep[tt]]
        net = bl.MetaGRU(
            panel.dynamic.shape[2],
            panel.static.shape[1],
            panel.calendar_feats.shape[1],
            len(panel.categories),
            steps=min(window, hist_min),
        )
        bl.fit_network(
            net, bl.call_metagru, panel, tn, tt, window, steps=args.baseline_steps, seed=args.seed
        )
        pred = bl.predict_network(net, bl.call_metagru, panel, test_n[fest], test_t[fest], window)
        record("metagru", pred * scale[fest])  # the network predicts normalised sales
        log.info(
            "few-shot k=%d: festival rmse stmp %.1f metagru %.1f",
            k,
            curve["stmp.rmse"][-1],
            curve["metagru.rmse"][-1],
        )
    return curve
