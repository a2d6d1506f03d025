"""`salecast train|evaluate intent`: TPG-DNN user intent and order volume (issue 4).

Samples are (user, cut time) rows built by `training.features.intent`: features strictly
before the cut, labels in the window after it (next day by default, the paper's setting).
The split is by cut time: the last cut is the test set, the one before it validation, and
every earlier cut whose label window ends before validation is training data. `--split
users` splits users instead (every cut's rows of a user in one part), for logs whose
purchases all fall in one label window, where a split by cut leaves no purchaser to train
on (IJCAI-15 data_format2: its lines are Double 11's new buyers).

This module holds the data, the fit and the artifact (`train`); `training.jobs.intent_evaluate`
holds the evaluation against the baselines (`evaluate`). Every neural net, ours and the
baselines, trains through `training.loop.fit`: the epoch budget `--epochs`, early stopping
on the mean validation AUC with `--patience`, the best epoch restored. `train` also fits the
classical baselines on the same split and records ours beside the best of them in the
manifest (`metrics.validation`), so an operator sees a served model that is behind a simple
baseline on its own data.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import f1_score
from torch import nn

from models.tpgdnn import OUTPUTS, TASKS, TPGDNN, TPGDNNConfig
from service.runtime.manifest import DataWindow
from service.servables.intent_features import FIELD_NAMES, FIELD_VOCABS, FeatureSpec
from training import distributed
from training.artifacts import write_artifact
from training.baselines.multitask import ClassicalBaselines
from training.comparison import validation_summary
from training.features.intent import (
    IntentSamples,
    build_samples,
    choose_cuts,
    time_split,
    user_split,
)
from training.jobs.common import add_common_arguments, budget, dataset_name, set_threads
from training.loop import Budget, FitReport, fit, minibatch_epoch, seed_everything
from training.metrics import auc
from training.splits import USER_SPLIT_FRACTIONS

log = logging.getLogger(__name__)


# ---- CLI -----------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bucket-seconds", type=int, default=86_400, help="count bucket (day)")
    parser.add_argument("--label-seconds", type=int, default=86_400, help="label window (next day)")
    parser.add_argument("--cut-step-seconds", type=int, default=None, help="between cuts (= label)")
    parser.add_argument("--short-len", type=int, default=7, help="short-term series, buckets")
    parser.add_argument("--long-len", type=int, default=8, help="long-term series, periods")
    parser.add_argument("--long-group", type=int, default=7, help="buckets per long period")
    parser.add_argument("--val-cuts", type=int, default=None, help="default: 10 %% of the cuts")
    parser.add_argument("--test-cuts", type=int, default=None, help="default: 15 %% of the cuts")
    parser.add_argument(
        "--split",
        choices=("time", "users"),
        default="time",
        help="time: by cut (the last cuts test); users: every cut, users split "
        f"{'/'.join(str(round(100 * f)) for f in USER_SPLIT_FRACTIONS)} %% by --seed, for "
        "logs whose purchases all fall in one label window (IJCAI-15 data_format2)",
    )
    parser.add_argument(
        "--epochs", type=int, default=20, help="epoch budget of every neural net (early stop)"
    )
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument(
        "--dropout", type=float, default=None, help="override the model's dropout (0: off)"
    )
    parser.add_argument("--coupon-cost", type=float, default=1.0, help="allocation benchmark cost")
    parser.add_argument(
        "--coupon-value", type=float, default=10.0, help="allocation benchmark value"
    )
    add_common_arguments(parser)


def _spec(args: argparse.Namespace) -> FeatureSpec:
    return FeatureSpec(
        bucket_seconds=args.bucket_seconds,
        short_len=args.short_len,
        long_len=args.long_len,
        long_group=args.long_group,
    )


def load_data(args: argparse.Namespace) -> tuple[pd.DataFrame, str]:
    """Canonical events and the sha256 of the inputs (synthetic when no --data is given)."""
    if not args.data or args.format == "synthetic":
        from training.synthetic import generate_events

        synthetic = generate_events(seed=args.seed)
        return synthetic.events, synthetic.sha256
    from training.data import load_events

    log_ = load_events([Path(p) for p in args.data], args.format)
    log.info("%s", log_.report.summary())
    return log_.events, log_.sha256


def prepare(
    events: pd.DataFrame, args: argparse.Namespace
) -> tuple[IntentSamples, IntentSamples, IntentSamples]:
    """(train, validation, test) samples: by cut time, or by user with `--split users`."""
    spec = _spec(args)
    cuts = choose_cuts(events["ts"].to_numpy(), spec, args.label_seconds, args.cut_step_seconds)
    samples = build_samples(events, cuts, spec, args.label_seconds)
    if getattr(args, "split", "time") == "users":
        return user_split(samples, args.seed)
    n_cuts = len(np.unique(samples.cut_ts))
    val_cuts = args.val_cuts or max(1, round(0.10 * n_cuts))
    test_cuts = args.test_cuts or max(1, round(0.15 * n_cuts))
    return time_split(samples, args.label_seconds, val_cuts, test_cuts)


# ---- torch training ------------------------------------------------------------------------
def _tensors(s: IntentSamples, device: str = "cpu") -> dict[str, torch.Tensor]:
    return {
        "fields": torch.from_numpy(s.fields).to(device),
        "short": torch.from_numpy(s.short).to(device),
        "long": torch.from_numpy(s.long).to(device),
        "labels": torch.from_numpy(s.labels).to(device),
        "order_volume": torch.from_numpy(s.order_volume).to(device),
    }


@torch.no_grad()
def predict_torch(
    model: nn.Module, s: IntentSamples, batch_size: int = 4096
) -> dict[str, np.ndarray]:
    model.eval()
    t = _tensors(s, str(next(model.parameters()).device))
    outs: list[list[np.ndarray]] = [[] for _ in OUTPUTS]
    for i in range(0, len(s), batch_size):
        res = model(
            t["fields"][i : i + batch_size],
            t["short"][i : i + batch_size],
            t["long"][i : i + batch_size],
        )
        for k, r in enumerate(res):
            outs[k].append(r.cpu().numpy())
    return {
        name: np.concatenate(o) if o else np.zeros(0) for name, o in zip(OUTPUTS, outs, strict=True)
    }


def mean_auc(pred: Mapping[str, np.ndarray], s: IntentSamples, min_positives: int = 20) -> float:
    """Model-selection score: mean AUC over the tasks with enough positives to rank on.

    A behaviour with a handful of positives in the validation window (carts in the Tmall
    log) would otherwise make the choice of epoch a coin toss.
    """
    enough = [k for k in range(len(TASKS)) if s.labels[:, k].sum() >= min_positives]
    aucs = [auc(s.labels[:, k], pred[f"p_{TASKS[k]}"]) for k in (enough or range(len(TASKS)))]
    finite = [a for a in aucs if np.isfinite(a)]
    return float(np.mean(finite)) if finite else 0.0


def fit_torch(
    model: nn.Module,
    train: IntentSamples,
    val: IntentSamples,
    *,
    budget: Budget,
    batch_size: int,
    lr: float,
    seed: int,
    label: str,
    ctx: distributed.DistContext | None = None,
) -> FitReport:
    """Adam on `model.calculate_loss` in `training.loop.fit`: early stopping on the mean
    validation AUC, best epoch restored. Ours and the multi-task baselines alike.

    Under torchrun (`ctx` with several ranks) every rank draws the same permutation and takes
    its slice of each global batch, so the run follows the single-process one.
    """
    ctx = ctx or distributed.DistContext()
    rng = seed_everything(seed)
    model.to(ctx.device)
    data = _tensors(train, str(ctx.device))
    trainer = distributed.wrap(distributed.LossModule(model), ctx)
    opt = torch.optim.Adam(model.parameters(), lr=lr)

    def batch(rows: np.ndarray) -> tuple[dict[str, torch.Tensor]]:
        index = torch.from_numpy(rows).to(ctx.device)
        return ({k: v[index] for k, v in data.items()},)

    def run_epoch(epoch: int) -> float:
        return minibatch_epoch(trainer, opt, len(train), batch_size, batch, rng, ctx)

    def validate() -> float:
        return mean_auc(predict_torch(model, val), val)

    return fit(model, run_epoch, validate if len(val) else None, budget, label=label, ctx=ctx)


# ---- metrics -------------------------------------------------------------------------------
def best_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The score threshold that maximises F1 on (validation) labels; 0.5 when undefined."""
    if len(y) == 0 or y.sum() == 0:
        return 0.5
    candidates = np.unique(np.quantile(p, np.linspace(0.0, 0.995, 200)))
    f1s = [f1_score(y, p >= c, zero_division=0) for c in candidates]
    return float(candidates[int(np.argmax(f1s))])


def volume_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Eqs. 23-25 (MAE, MAPE, WMAPE; MAPE's denominator is 1 where the volume is 0, sec.
    4.1), plus RMSE and the mean Poisson deviance.

    Order volumes are mostly 0, and there WMAPE rewards predicting 0 for everyone (its
    error is then exactly the actual volume: WMAPE 1.0), so a method is judged against
    the zero reference (`volume_references`) on RMSE and Poisson deviance, which charge
    missing the buyers.
    """
    n = len(y)
    err = np.abs(pred - y)
    mu = np.clip(pred.astype(np.float64), 1e-6, None)  # a count's mean is > 0
    yy = y.astype(np.float64)
    ratio = np.where(yy > 0, yy / mu, 1.0)
    deviance = 2.0 * (np.where(yy > 0, yy * np.log(ratio), 0.0) - (yy - mu))
    nan = float("nan")
    return {
        "order_volume.mae": float(err.mean()) if n else nan,
        "order_volume.mape": float((err / np.where(y > 0, y, 1.0)).mean()) if n else nan,
        "order_volume.wmape": float(err.sum() / y.sum()) if y.sum() > 0 else nan,
        "order_volume.rmse": float(np.sqrt((err.astype(np.float64) ** 2).mean())) if n else nan,
        "order_volume.poisson_deviance": float(deviance.mean()) if n else nan,
    }


def volume_references(train: IntentSamples, test: IntentSamples) -> dict[str, dict[str, float]]:
    """What the order-volume figures of a method must beat: 0 for everyone, and the
    training rows' mean volume for everyone."""
    y = test.order_volume
    mean = float(train.order_volume.mean()) if len(train) else 0.0
    return {
        "zero": volume_metrics(y, np.zeros_like(y, dtype=np.float64)),
        "training mean": volume_metrics(y, np.full(len(y), mean)),
    }


def all_metrics(
    pred: Mapping[str, np.ndarray], thresholds: Mapping[str, float], s: IntentSamples
) -> dict[str, float]:
    out: dict[str, float] = {}
    for k, t in enumerate(TASKS):
        y, p = s.labels[:, k], pred[f"p_{t}"]
        out[f"{t}.auc"] = auc(y, p)
        out[f"{t}.f1"] = float(f1_score(y, p >= thresholds[t], zero_division=0))
    out.update(volume_metrics(s.order_volume, pred["order_volume"]))
    return out


def thresholds_from(pred: Mapping[str, np.ndarray], val: IntentSamples) -> dict[str, float]:
    return {t: best_threshold(val.labels[:, k], pred[f"p_{t}"]) for k, t in enumerate(TASKS)}


# ---- artifact ------------------------------------------------------------------------------
def _model_config(args: argparse.Namespace, **overrides: Any) -> TPGDNNConfig:
    return TPGDNNConfig(
        field_vocabs=list(FIELD_VOCABS),
        short_len=args.short_len,
        long_len=args.long_len,
        **overrides,
    )


def train_ours(
    args: argparse.Namespace,
    train: IntentSamples,
    val: IntentSamples,
    seed: int,
    ctx: distributed.DistContext | None = None,
    label: str = "tpg-dnn",
    overrides: Mapping[str, Any] | None = None,
) -> tuple[TPGDNN, FitReport]:
    """TPG-DNN (or an ablation, via config `overrides`) from `seed`: same initial weights
    in single- and multi-process runs."""
    set_threads(args)
    overrides = dict(overrides or {})
    if getattr(args, "dropout", None) is not None:
        overrides.setdefault("dropout", args.dropout)
    torch.manual_seed(seed)
    model = TPGDNN(_model_config(args, **overrides))
    report = fit_torch(
        model, train, val, budget=budget(args), batch_size=args.batch_size, lr=args.lr,
        seed=seed, label=label, ctx=ctx,
    )  # fmt: skip
    return model, report


def series(s: IntentSamples) -> np.ndarray:
    """The behaviour series flattened, as the classical baselines read them."""
    return np.concatenate([s.short.reshape(len(s), -1), s.long.reshape(len(s), -1)], axis=1)


def fit_classical(
    kind: str, train: IntentSamples, val: IntentSamples, seed: int
) -> ClassicalBaselines:
    """LR or LightGBM per task; LightGBM early-stops on the same validation split."""
    return ClassicalBaselines(kind, seed=seed).fit(
        (train.fields, series(train), train.labels, train.order_volume),
        (val.fields, series(val), val.labels, val.order_volume),
    )


def predict_classical(clf: ClassicalBaselines, s: IntentSamples) -> dict[str, np.ndarray]:
    return clf.predict(s.fields, series(s))


PRIMARY = "purchase.auc"


def baseline_validation(
    train: IntentSamples, val: IntentSamples, seed: int
) -> dict[str, dict[str, float]]:
    """Validation metrics of the classical baselines (the manifest's comparison)."""
    out: dict[str, dict[str, float]] = {}
    for kind in ("lr", "lightgbm"):
        pred = predict_classical(fit_classical(kind, train, val, seed), val)
        out[kind] = all_metrics(pred, thresholds_from(pred, val), val)
    return out


def _write(
    args: argparse.Namespace,
    model: TPGDNN,
    report: FitReport,
    train: IntentSamples,
    val: IntentSamples,
    test: IntentSamples,
    sha256: str,
    window: tuple[int, int],
) -> Path:
    val_pred = predict_torch(model, val)
    thresholds = thresholds_from(val_pred, val)
    test_metrics = all_metrics(predict_torch(model, test), thresholds, test) if len(test) else {}
    validation = validation_summary(
        metric=PRIMARY,
        higher_is_better=True,
        ours=("tpg-dnn", all_metrics(val_pred, thresholds, val)),
        baselines=baseline_validation(train, val, args.seed),
        split=(
            "the validation users (every cut)"
            if getattr(args, "split", "time") == "users"
            else "the validation cuts (between training and test)"
        ),
    )
    priors = {t: float(train.labels[:, k].mean()) for k, t in enumerate(TASKS)}
    priors["order_volume"] = float(train.order_volume.mean())
    cfg = model.config
    with tempfile.TemporaryDirectory() as tmp:
        graphs = model.export_graphs(Path(tmp))
        return write_artifact(
            args.artifacts,
            "intent",
            graphs,
            data_window=DataWindow(
                start=pd.Timestamp(window[0], unit="s").isoformat(),
                end=pd.Timestamp(window[1], unit="s").isoformat(),
                sha256=sha256,
                source=dataset_name(args),
            ),
            vocabularies={"fields": list(FIELD_NAMES), "actions": list(TASKS)},
            metrics={
                "validation": validation,
                "test": {k: v for k, v in test_metrics.items() if np.isfinite(v)},
                "fit": report.to_dict(),
            },
            config={
                "features": _spec(args).to_dict(),
                "label_seconds": int(args.label_seconds),
                "thresholds": thresholds,
                "priors": priors,
                "field_vocabs": list(cfg.field_vocabs),
                "use_fusion": cfg.use_fusion,
                "use_uncertainty": cfg.use_uncertainty,
                "embed_dim": cfg.embed_dim,
            },
        )


def train(args: argparse.Namespace) -> Path:
    events, sha = load_data(args)
    train_s, val_s, test_s = prepare(events, args)
    log.info("samples: train %d, val %d, test %d", len(train_s), len(val_s), len(test_s))
    # Under torchrun: DistributedDataParallel over the ranks; only rank 0 writes the artifact.
    ctx = distributed.setup(getattr(args, "device", "cpu"))
    try:
        model, report = train_ours(args, train_s, val_s, args.seed, ctx=ctx)
        if not ctx.is_main:
            return Path(args.artifacts)
        model.cpu()  # ONNX export and the artifact are device-independent
        ts = events["ts"].to_numpy()
        window = (int(ts.min()), int(ts.max()))
        return _write(args, model, report, train_s, val_s, test_s, sha, window)
    finally:
        distributed.teardown(ctx)


def train_demo(artifacts_root: Path, seed: int = 0) -> Path:
    """TPG-DNN on the synthetic funnel data; well under a minute on one core."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", nargs="*", default=[])
    parser.add_argument("--format", default="synthetic")
    parser.add_argument("--artifacts", type=Path)
    parser.add_argument("--seed", type=int)
    add_arguments(parser)
    args = parser.parse_args(["--epochs", "3"])
    args.artifacts, args.seed = Path(artifacts_root), seed
    return train(args)


# ---- evaluation ----------------------------------------------------------------------------
