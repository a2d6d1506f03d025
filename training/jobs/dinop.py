"""`salecast train|evaluate dinop`: promotion-day item forecasts (DINOP, paper 001).

Split (paper section 5.1.1: train on 2017's 11.11, test on 2018's): the promotion days of
`--train-year` train; the first `--val-days` promotion dates of `--test-year` validate
(early stopping with the best epoch restored, the manifest's comparison); the rest of the
test year tests. On Walmart that is Labor Day, Thanksgiving and Christmas 2010 to train
(the 2010 Super Bowl has no pre-sale history in the data), the 2011 Super Bowl to validate,
and Labor Day, Thanksgiving and Christmas 2011 to test. Statistics (z-scores,
the GMV target's scale) come from the training item-days only. GMV, BSP (eq. 1) and SS
(eq. 2) are supported by sales data; BOP needs user-item purchases on the promotion day (an
event log such as Tmall IJCAI-15); JA needs activity participation labels, which none of the
available data sets has, so it is reported as unsupported instead of being invented.

Every network (DINOP and the Table 2 baselines) trains through `training.loop.fit` with the
same epoch budget `--epochs` and patience. This module holds the data, the fit and the
artifact; `training.jobs.dinop_evaluate` the evaluation against the baselines.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.dinop import DINOP, DINOPConfig
from service.errors import InvalidInput
from service.runtime.manifest import DataWindow
from service.servables.dinop_features import GMV_TARGET_KINDS
from training import distributed
from training.artifacts import write_artifact
from training.baselines.promotion import (
    NAIVE_SLOT,
    TASK_METRIC,
    SalesTargets,
    naive_slots,
    run_lightgbm,
    sales_metrics,
)
from training.comparison import validation_summary
from training.features.dinop import Featurizer, PromoSet, build_promo_set, fit_statistics, tensors
from training.jobs.common import add_common_arguments, budget, set_threads
from training.loop import Budget, FitReport, fit, minibatch_epoch, seed_everything
from training.schemas import SalesData

log = logging.getLogger(__name__)
SALES_TASKS: tuple[str, ...] = ("gmv", "bsp", "ss")
# NOTE: TensorFlow's Adagrad (the paper's framework) starts every accumulator at 0.1;
# PyTorch's default of 0 makes the first step lr * sign(gradient) for every parameter, which
# at our step of 0.05 throws a head far off in one step (a BSP probability of 1e-10 after
# the first epoch on small data). 0.1 follows TensorFlow, for DINOP and the baselines.
ADAGRAD_INITIAL_ACCUMULATOR = 0.1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--presale-steps", type=int, default=4, help="pre-sale periods (weeks)")
    parser.add_argument(
        "--static-steps", type=int, default=13, help="static window (paper: 90 days)"
    )
    parser.add_argument("--train-year", type=int, default=None, help="default: first full year")
    parser.add_argument("--test-year", type=int, default=None, help="default: train year + 1")
    parser.add_argument(
        "--split",
        choices=("years", "dates"),
        default="years",
        help="years: train year -> test year (paper); dates: one timeline of promotion dates, "
        "the last --test-days test, the --val-days before them validate, the rest train "
        "(logs whose promotion days fall in one year)",
    )
    parser.add_argument(
        "--val-days",
        type=int,
        default=1,
        help="promotion dates that validate: the test year's first N (years) or the N before "
        "the test dates (dates)",
    )
    parser.add_argument(
        "--test-days", type=int, default=1, help="--split dates: the last N promotion dates test"
    )
    parser.add_argument(
        "--epochs", type=int, default=40, help="epoch budget of every network (early stop)"
    )
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument(
        "--lr", type=float, default=0.05, help="Adagrad step (paper 1e-3; see docs)"
    )
    parser.add_argument("--tasks", default="gmv,bsp,ss", help="comma list of trained tasks")
    parser.add_argument(
        "--gmv-target",
        choices=GMV_TARGET_KINDS,
        default="uplift",
        help="uplift: the GMV head predicts the change from the last pre-sale period (0 = the "
        "naive forecast, so an unseen promotion type falls back to it); level: GMV itself",
    )
    parser.add_argument(
        "--bop-presale-days", type=int, default=10, help="event logs: pre-sale days (BOP)"
    )
    parser.add_argument(
        "--dropout",
        type=float,
        default=None,
        help="train: override the model's dropout (0: off; default: the paper's 0.5)",
    )
    add_common_arguments(parser)


# ---- data ---------------------------------------------------------------------------------
def load_data(args: argparse.Namespace) -> tuple[SalesData, str]:
    """(data, dataset name) from --data/--format; `synthetic` when no files are given."""
    from training.data import load_sales_dataset

    return load_sales_dataset(args.data or [], args.format, seed=args.seed)


def split_years(ps: PromoSet, train_year: int | None, test_year: int | None) -> tuple[int, int]:
    years = sorted(set(ps.years.tolist()))
    if len(years) < 2:
        raise InvalidInput(
            "data",
            f"promotion days span one year only ({years}); need two, or --split dates",
        )
    train_year = train_year if train_year is not None else years[0]
    test_year = test_year if test_year is not None else train_year + 1
    if train_year not in years or test_year not in years:
        raise InvalidInput(
            "train_year", f"years with promotion days: {years}; got {train_year}/{test_year}"
        )
    if test_year <= train_year:  # the test days would be training days, or lie before them
        raise InvalidInput(
            "test_year", f"must come after the train year {train_year}, got {test_year}"
        )
    return train_year, test_year


@dataclass
class Prepared:
    """The promotion item-days of each part, as PromoSets and as model arrays."""

    feat: Featurizer
    train: PromoSet
    val: PromoSet
    test: PromoSet
    tr: dict[str, np.ndarray]
    va: dict[str, np.ndarray]
    te: dict[str, np.ndarray]
    split: str
    full: PromoSet | None = None  # every promotion item-day (rolling-origin refits cut it)
    test_idx: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def targets(self) -> SalesTargets:
        return SalesTargets(self.feat, self.val, self.test)

    @property
    def naive_slot(self) -> bool:
        """Whether the arrays carry the naive slot's one-hot (`with_naive_slot`)."""
        return NAIVE_SLOT in self.tr

    def without_naive_slot(self) -> Prepared:
        """The same split with the naive-slot feature removed from every array (ablation)."""

        def drop(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            return {k: v for k, v in arrays.items() if k != NAIVE_SLOT}

        return replace(self, tr=drop(self.tr), va=drop(self.va), te=drop(self.te))


def naive_slot_one_hot(ps: PromoSet) -> np.ndarray:
    """[N, 10] one-hot of `naive_slots` (eq. 2 on the last pre-sale period's sales).

    The no-model slot is known before the promotion day and beat every learned SS head, so
    the models get it as an input rather than having to rebuild it from the GRU state.
    """
    return np.eye(10, dtype=np.float32)[naive_slots(ps)]


def model_arrays(feat: Featurizer, ps: PromoSet, naive_slot: bool) -> dict[str, np.ndarray]:
    """`tensors`, plus the naive slot's one-hot under `NAIVE_SLOT` when asked for."""
    arrays = tensors(feat, ps)
    if naive_slot:
        arrays[NAIVE_SLOT] = naive_slot_one_hot(ps)
    return arrays


def split_dates(ps: PromoSet, val_days: int, test_days: int) -> tuple[np.ndarray, ...]:
    """Masks (train, validation, test) over `ps` on one timeline of promotion dates.

    The last `test_days` dates test, the `val_days` before them validate, every earlier date
    trains: time order without a year boundary, for logs whose promotion days fall in one
    year (UCI Online Retail II's sample: Black Friday, Cyber Monday and Christmas 2010).
    """
    dates = np.unique(ps.promo_date)
    if val_days < 1 or test_days < 1 or val_days + test_days >= len(dates):
        raise InvalidInput(
            "val_days",
            f"{len(dates)} promotion dates; --val-days ({val_days}) and --test-days "
            f"({test_days}) must each be at least 1 and leave a date to train on",
        )
    test_from, val_from = dates[-test_days], dates[-test_days - val_days]
    is_test = ps.promo_date >= test_from
    is_val = (ps.promo_date >= val_from) & ~is_test
    return ~is_val & ~is_test, is_val, is_test


def prepare(data: SalesData, args: argparse.Namespace, naive_slot: bool = False) -> Prepared:
    """Train on the train year's promotion days; validate on the first `--val-days` of the
    next one's, which lie between training and the rest of the test year; test on the rest.
    `--split dates` cuts one timeline of promotion dates instead (`split_dates`).

    Validating inside the test year keeps every training promotion day for training (a
    train year has few: Walmart's 2010 has three usable ones) while staying in time order:
    nothing the model selects on lies after anything it is tested on. `naive_slot` adds the
    naive slot's one-hot to every array (`model_arrays`).
    """
    ps, feat = build_promo_set(data, args.presale_steps, args.static_steps)
    feat.gmv_target_kind = getattr(args, "gmv_target", "uplift")
    val_days = int(getattr(args, "val_days", 1))
    if getattr(args, "split", "years") == "dates":
        masks = split_dates(ps, val_days, int(getattr(args, "test_days", 1)))
        train_ps, val_ps = (ps.subset(np.flatnonzero(m)) for m in masks[:2])
        test_idx = np.flatnonzero(masks[2])
        parts = ("one timeline of promotion dates: train", "validation", "test")
    else:
        train_year, test_year = split_years(ps, args.train_year, args.test_year)
        in_test_year = np.flatnonzero(ps.years == test_year)
        dates = np.unique(ps.promo_date[in_test_year])
        if not 1 <= val_days < len(dates):
            raise InvalidInput(
                "val_days",
                f"{test_year} has {len(dates)} promotion dates; between 1 and "
                f"{len(dates) - 1} can validate, got {val_days}",
            )
        is_val = np.isin(ps.promo_date[in_test_year], dates[:val_days])
        train_ps = ps.subset(np.flatnonzero(ps.years == train_year))
        val_ps = ps.subset(in_test_year[is_val])
        test_idx = in_test_year[~is_val]
        parts = (
            f"train: promotion days of {train_year}",
            f"validation: the first {val_days} of {test_year}",
            f"test: the rest of {test_year}",
        )
    test_ps = ps.subset(test_idx)
    fit_statistics(feat, train_ps)  # z-scores and the GMV scale from training days only

    def when(p: PromoSet) -> str:
        days = ", ".join(str(np.datetime64(d, "D")) for d in np.unique(p.promo_date))
        return f"({days}; {len(p)} item-days)"

    split = (
        ", ".join(
            f"{name} {when(p)}" for name, p in zip(parts, (train_ps, val_ps, test_ps), strict=True)
        )
        + "; statistics from the training item-days only"
    )
    tr, va, te = (model_arrays(feat, p, naive_slot) for p in (train_ps, val_ps, test_ps))
    return Prepared(feat, train_ps, val_ps, test_ps, tr, va, te, split, ps, test_idx)


def model_config(feat: Featurizer, tasks: tuple[str, ...], **switches: Any) -> DINOPConfig:
    return DINOPConfig(
        dis_dim=feat.dis_dim,
        du_dim=feat.du_dim,
        su_dim=feat.du_dim,
        sii_dim=feat.sii_dim,
        sis_dim=feat.sis_dim,
        tasks=tasks,
        **switches,
    )


# ---- training loop -------------------------------------------------------------------------
def _batch(arrays: dict[str, np.ndarray], idx: np.ndarray, device: str) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v[idx]).to(device) for k, v in arrays.items()}


@torch.no_grad()
def predict(model: DINOP, arrays: dict[str, np.ndarray], device: str = "cpu") -> dict[str, Any]:
    model.eval()
    out: dict[str, list[np.ndarray]] = {}
    n = len(next(iter(arrays.values())))
    for start in range(0, n, 2048):
        batch = _batch(arrays, np.arange(start, min(n, start + 2048)), device)
        for k, v in model.predict(batch).items():
            out.setdefault(k, []).append(v.cpu().numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


def selection_task(tasks: tuple[str, ...]) -> str:
    """The task a (multi-task) model early-stops on: GMV, the primary metric, when trained."""
    return next(t for t in ("gmv", "bsp", "ss", "bop") if t in tasks)


def fit_dinop(
    model: DINOP,
    train: dict[str, np.ndarray],
    validate: Any,
    args: argparse.Namespace,
    seed: int,
    label: str,
    params: list[torch.nn.Parameter] | None = None,
    ctx: distributed.DistContext | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
) -> FitReport:
    """Adagrad (section 5.1.2) with L2 via weight decay in `training.loop.fit`.

    Under torchrun (`ctx` with several ranks, whose device replaces `args.device`) every
    rank draws the same permutation and takes its slice of each global batch. The multi-task
    loss is a sum of per-task means over the batch, so weighting each rank's loss by its
    share makes DDP's gradient average the single-process gradient; the clipping then sees
    the same (all-reduced) gradient on every rank.
    """
    ctx = ctx or distributed.DistContext()
    device = str(ctx.device) if ctx.enabled else getattr(args, "device", "cpu")
    rng = seed_everything(seed)
    model.to(device)
    trainer = distributed.wrap(distributed.LossModule(model), ctx)
    opt = torch.optim.Adagrad(
        params if params is not None else list(model.parameters()),
        lr=args.lr,
        weight_decay=model.config.weight_decay,
        initial_accumulator_value=ADAGRAD_INITIAL_ACCUMULATOR,
    )
    n = len(next(iter(train.values())))
    size = int(batch_size or args.batch_size)

    def run_epoch(epoch: int) -> float:
        return minibatch_epoch(
            trainer, opt, n, size, lambda rows: (_batch(train, rows, device),), rng, ctx,
            clip=(model.parameters(), 5.0),
        )  # fmt: skip

    report = fit(model, run_epoch, validate, budget(args, epochs), label=label, ctx=ctx)
    model.cpu()
    return report


def dinop_predictions(
    model: DINOP, feat: Featurizer, ps: PromoSet, arrays: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Per task: GMV in currency, BSP probability, SS distribution."""
    pred = predict(model, arrays)
    out: dict[str, np.ndarray] = {}
    tasks = model.config.tasks
    if "gmv" in tasks:
        out["gmv"] = feat.gmv_from(pred["gmv"], ps.scale, ps.last_presale_sales)
    for task in ("bsp", "ss"):
        if task in tasks:
            out[task] = pred[task]
    return out


def dinop_metrics(
    model: DINOP, feat: Featurizer, ps: PromoSet, arrays: dict[str, np.ndarray]
) -> dict[str, float]:
    return sales_metrics(ps, **dinop_predictions(model, feat, ps, arrays))


def train_dinop(
    prep: Prepared,
    tasks: tuple[str, ...],
    args: argparse.Namespace,
    seed: int,
    label: str = "DINOP",
    ctx: distributed.DistContext | None = None,
    switches: Mapping[str, Any] | None = None,
) -> tuple[DINOP, FitReport]:
    """DINOP (or a sub-model, via `switches`) on `tasks`, early-stopped on the validation
    metric of `selection_task(tasks)`."""
    set_threads(args)
    torch.manual_seed(seed)
    switches = {"naive_slot": prep.naive_slot, **(switches or {})}
    model = DINOP(model_config(prep.feat, tasks, **switches))
    key, higher = TASK_METRIC[selection_task(tasks)]
    has_metric = key != "bsp_auc" or len(np.unique(prep.val.bsp)) == 2

    def validate() -> float:
        value = dinop_metrics(model, prep.feat, prep.val, prep.va)[key]
        return value if higher else -value

    report = fit_dinop(
        model, prep.tr, validate if len(prep.val) and has_metric else None, args, seed,
        f"{label} seed {seed}", ctx=ctx,
    )  # fmt: skip
    return model, report


def naive_predictions(ps: PromoSet) -> dict[str, np.ndarray]:
    """The no-model reference: the last pre-sale period's sales, eq. 2 on them for SS."""
    return {"gmv": ps.last_presale_sales, "bsp": ps.last_presale_sales, "ss": naive_slots(ps)}


def baseline_validation(prep: Prepared, seed: int) -> dict[str, dict[str, float]]:
    """The naive reference and LightGBM on the validation item-days (the manifest's peers)."""
    val_as_test = SalesTargets(prep.feat, prep.val, prep.val)
    # LightGBM's boosting rounds are its own budget: the networks' Budget is not read.
    preds, _ = run_lightgbm(val_as_test, prep.tr, prep.va, prep.va, Budget(max_epochs=1), seed)
    return {
        "naive (last pre-sale period)": sales_metrics(prep.val, **naive_predictions(prep.val)),
        "LightGBM": val_as_test.metrics(preds),
    }


# ---- artifact ------------------------------------------------------------------------------
def export_artifact(
    model: DINOP,
    feat: Featurizer,
    data: SalesData,
    artifacts: Path,
    metrics: dict[str, Any],
    split: str,
) -> Path:
    with tempfile.TemporaryDirectory(prefix="dinop-export-") as tmp:
        graphs = model.export_graphs(Path(tmp))
        dates = data.sales["date"]
        window = DataWindow(
            start=str(dates.min().date()),
            end=str(dates.max().date()),
            sha256=data.sha256,
            source=data.report.source,
        )
        cfg = model.config
        return write_artifact(
            artifacts,
            "dinop",
            graphs,
            data_window=window,
            vocabularies={
                "regions": feat.regions,
                "categories": feat.categories,
                "promo_types": feat.promo_types,
            },
            normalisation={
                "du_mean": feat.du_mean,
                "du_std": feat.du_std,
                "gmv_mean": feat.gmv_mean,
                "gmv_std": feat.gmv_std,
                "scale_floor": feat.scale_floor,
            },
            metrics={**metrics, "split": split},
            config={
                "featurizer": feat.to_config(),
                "hidden": cfg.hidden,
                "tasks": list(cfg.tasks),
                "frequency": data.frequency,
                "n_slots": 10,
                "static_profiles": static_profiles(data),
            },
        )


def static_profiles(data: SalesData) -> dict[str, dict[str, Any]]:
    """region -> its static columns (JSON-safe), for the servable's SII."""
    if "region" not in data.static.columns:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for row in data.static.to_dict(orient="records"):
        region = str(row.pop("region"))
        out[region] = {
            str(k): (float(v) if isinstance(v, int | float | np.number) else str(v))
            for k, v in row.items()
        }
    return out


def train(args: argparse.Namespace) -> Path:
    """Multi-task DINOP and its artifact; data-parallel under torchrun (only rank 0 writes)."""
    data, dataset = load_data(args)
    prep = prepare(data, args)  # no naive slot: the servable cannot rank a category's items
    tasks = tuple(t.strip() for t in args.tasks.split(",") if t.strip() in SALES_TASKS)
    switches: dict[str, Any] = {}
    if getattr(args, "dropout", None) is not None:
        switches["dropout"] = args.dropout
    ctx = distributed.setup(getattr(args, "device", "cpu"))
    try:
        model, report = train_dinop(prep, tasks, args, args.seed, ctx=ctx, switches=switches)
        if not ctx.is_main:
            return Path(args.artifacts)
    finally:
        distributed.teardown(ctx)
    metrics = {
        "validation": validation_summary(
            metric="gmv_mae",
            higher_is_better=False,
            ours=("DINOP multi-task", dinop_metrics(model, prep.feat, prep.val, prep.va)),
            baselines=baseline_validation(prep, args.seed),
            split="the test year's first promotion date(s), before the test dates",
        ),
        "test": dinop_metrics(model, prep.feat, prep.test, prep.te),
        "fit": report.to_dict(),
    }
    log.info("dinop on %s: %s", dataset, metrics["test"])
    return export_artifact(model, prep.feat, data, args.artifacts, metrics, prep.split)


def train_demo(artifacts_root: Path, seed: int = 0) -> Path:
    """A small DINOP on the synthetic sales (the demo path)."""
    args = argparse.Namespace(
        data=[],
        format="synthetic",
        seed=seed,
        artifacts=Path(artifacts_root),
        presale_steps=4,
        static_steps=13,
        train_year=None,
        test_year=None,
        epochs=8,
        batch_size=128,
        lr=0.05,
        tasks="gmv,bsp,ss",
        device="cpu",
    )
    return train(args)
