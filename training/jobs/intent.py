"""`salecast train|evaluate intent`: TPG-DNN user intent and order volume (issue 4).

Samples are (user, cut time) rows built by `training.features.intent`: features strictly
before the cut, labels in the window after it (next day by default, the paper's setting).
The split is by cut time: the last cut is the test set, the one before it validation, and
every earlier cut whose label window ends before validation is training data.

`evaluate` trains and scores, in one run on the same split: logistic/linear regression,
LightGBM, a shared-bottom multi-task net, MMOE, TPG-DNN, and TPG-DNN without the
total-probability fusion and without the uncertainty weighting. It also measures coupon
allocation on the test window (issue item 5): purchasers captured by the `budget` and the
`threshold` strategies at the same spend, against random allocation.
"""

from __future__ import annotations

import argparse
import copy
import logging
import tempfile
import time
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import f1_score, roc_auc_score
from torch import nn

from models.tpgdnn import OUTPUTS, TASKS, TPGDNN, TPGDNNConfig
from service.runtime.manifest import DataWindow
from service.servables.coupons import allocate
from service.servables.intent_features import FIELD_NAMES, FIELD_VOCABS, FeatureSpec
from training import distributed
from training.artifacts import write_artifact
from training.baselines.multitask import MMOE, ClassicalBaselines, MultiTaskConfig, SharedBottom
from training.features.intent import IntentSamples, build_samples, choose_cuts, time_split
from training.reporting import write_accuracy

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
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument(
        "--max-minutes", type=float, default=3.0, help="wall limit per neural model"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument(
        "--dropout", type=float, default=None, help="override the model's dropout (0: off)"
    )
    parser.add_argument("--coupon-cost", type=float, default=1.0, help="allocation benchmark cost")
    parser.add_argument(
        "--coupon-value", type=float, default=10.0, help="allocation benchmark value"
    )


def _spec(args: argparse.Namespace) -> FeatureSpec:
    return FeatureSpec(
        bucket_seconds=args.bucket_seconds,
        short_len=args.short_len,
        long_len=args.long_len,
        long_group=args.long_group,
    )


def _dataset_name(args: argparse.Namespace) -> str:
    if not args.data:
        return "synthetic"
    first = Path(args.data[0]).resolve()
    return (first if first.is_dir() else first.parent).name


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
    spec = _spec(args)
    cuts = choose_cuts(events["ts"].to_numpy(), spec, args.label_seconds, args.cut_step_seconds)
    samples = build_samples(events, cuts, spec, args.label_seconds)
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


def _mean_auc(pred: Mapping[str, np.ndarray], s: IntentSamples, min_positives: int = 20) -> float:
    """Model-selection score: mean AUC over the tasks with enough positives to rank on.

    A behaviour with a handful of positives in the validation window (carts in the Tmall
    log) would otherwise make the choice of epoch a coin toss.
    """
    enough = [k for k in range(len(TASKS)) if s.labels[:, k].sum() >= min_positives]
    aucs = [_auc(s.labels[:, k], pred[f"p_{TASKS[k]}"]) for k in (enough or range(len(TASKS)))]
    finite = [a for a in aucs if np.isfinite(a)]
    return float(np.mean(finite)) if finite else 0.0


def fit_torch(
    model: nn.Module,
    train: IntentSamples,
    val: IntentSamples,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    max_seconds: float = 180.0,
    ctx: distributed.DistContext | None = None,
) -> tuple[nn.Module, list[float]]:
    """Adam on `model.calculate_loss`; keeps the epoch with the best mean validation AUC.

    Under torchrun (`ctx` with several ranks) every rank draws the same permutation and takes
    its slice of each global batch, so the run follows the single-process one.
    """
    ctx = ctx or distributed.DistContext()
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model.to(ctx.device)
    data = _tensors(train, str(ctx.device))
    trainer = distributed.wrap(distributed.LossModule(model), ctx)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    best_state, best_score, history = copy.deepcopy(model.state_dict()), -1.0, []
    start = time.monotonic()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(train), generator=gen)
        total = 0.0
        for i in range(0, len(train), batch_size):
            idx = order[i : i + batch_size]
            mine = idx[distributed.local_slice(len(idx), ctx)]
            # A rank left without rows still joins the gradient all-reduce, with weight 0.
            weight = distributed.share_weight(len(mine), len(idx), ctx)
            rows = mine if len(mine) else idx[:1]
            loss = trainer({k: v[rows] for k, v in data.items()})
            opt.zero_grad()
            (loss * weight).backward()
            opt.step()
            total += float(loss.detach()) * len(mine)
        total = distributed.mean_across_ranks(total, ctx) * ctx.world_size
        history.append(total / max(len(train), 1))
        score = _mean_auc(predict_torch(model, val), val) if len(val) else -float(history[-1])
        log.info("epoch %d loss %.4f val mean AUC %.4f", epoch, history[-1], score)
        if score > best_score:
            best_score, best_state = score, copy.deepcopy(model.state_dict())
        if time.monotonic() - start > max_seconds:
            log.info("stopping after %d epochs: wall limit", epoch + 1)
            break
    model.load_state_dict(best_state)
    model.eval()
    return model, history


# ---- metrics -------------------------------------------------------------------------------
def _auc(y: np.ndarray, p: np.ndarray) -> float:
    return float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else float("nan")


def best_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The score threshold that maximises F1 on (validation) labels; 0.5 when undefined."""
    if len(y) == 0 or y.sum() == 0:
        return 0.5
    candidates = np.unique(np.quantile(p, np.linspace(0.0, 0.995, 200)))
    f1s = [f1_score(y, p >= c, zero_division=0) for c in candidates]
    return float(candidates[int(np.argmax(f1s))])


def volume_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Eqs. 23-25; MAPE's denominator is 1 where the volume is 0 (sec. 4.1)."""
    err = np.abs(pred - y)
    return {
        "order_volume.mae": float(err.mean()) if len(y) else float("nan"),
        "order_volume.mape": float((err / np.where(y > 0, y, 1.0)).mean())
        if len(y)
        else float("nan"),
        "order_volume.wmape": float(err.sum() / y.sum()) if y.sum() > 0 else float("nan"),
    }


def all_metrics(
    pred: Mapping[str, np.ndarray], thresholds: Mapping[str, float], s: IntentSamples
) -> dict[str, float]:
    out: dict[str, float] = {}
    for k, t in enumerate(TASKS):
        y, p = s.labels[:, k], pred[f"p_{t}"]
        out[f"{t}.auc"] = _auc(y, p)
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


def _train_ours(
    args: argparse.Namespace,
    train: IntentSamples,
    val: IntentSamples,
    ctx: distributed.DistContext | None = None,
    **overrides: Any,
) -> TPGDNN:
    torch.set_num_threads(max(1, int(args.threads)))
    if getattr(args, "dropout", None) is not None:
        overrides.setdefault("dropout", args.dropout)
    model = TPGDNN(_model_config(args, **overrides))
    fit_torch(
        model, train, val, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        seed=args.seed, max_seconds=60.0 * args.max_minutes, ctx=ctx,
    )  # fmt: skip
    return model


def _write(
    args: argparse.Namespace,
    model: TPGDNN,
    train: IntentSamples,
    val: IntentSamples,
    test: IntentSamples,
    sha256: str,
    window: tuple[int, int],
) -> Path:
    val_pred = predict_torch(model, val)
    thresholds = thresholds_from(val_pred, val)
    metrics = all_metrics(predict_torch(model, test), thresholds, test) if len(test) else {}
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
                source=_dataset_name(args),
            ),
            vocabularies={"fields": list(FIELD_NAMES), "actions": list(TASKS)},
            metrics={k: v for k, v in metrics.items() if np.isfinite(v)},
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
        torch.manual_seed(args.seed)  # same initial weights in single- and multi-process runs
        model = _train_ours(args, train_s, val_s, ctx=ctx)
        if not ctx.is_main:
            return Path(args.artifacts)
        model.cpu()  # ONNX export and the artifact are device-independent
        ts = events["ts"].to_numpy()
        return _write(args, model, train_s, val_s, test_s, sha, (int(ts.min()), int(ts.max())))
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
    args = parser.parse_args(["--epochs", "3", "--max-minutes", "0.5"])
    args.artifacts, args.seed = Path(artifacts_root), seed
    return train(args)


# ---- evaluation ----------------------------------------------------------------------------
def allocation_benchmark(
    p_purchase: np.ndarray,
    order_volume: np.ndarray,
    purchased: np.ndarray,
    orders: np.ndarray,
    threshold: float,
    coupon_cost: float,
    coupon_value: float,
    seed: int,
    random_draws: int = 200,
) -> dict[str, Any]:
    """Purchasers captured on the test window by threshold / budget / random at equal spend.

    The threshold strategy (the paper's, sec. 4.3) gives a coupon to everyone whose
    P(purchase) clears the validation F1 threshold; its spend becomes the budget of the
    `budget` strategy and the number of coupons of the random one (the paper's A/B
    baseline, averaged over `random_draws` draws).
    """
    n = len(p_purchase)
    users = [str(i) for i in range(n)]
    scores = [
        {"p_purchase": float(p), "order_volume": float(v)}
        for p, v in zip(p_purchase, order_volume, strict=True)
    ]
    chosen_t = allocate(
        users,
        scores,
        budget=float(n) * coupon_cost,
        strategy="threshold",
        threshold=threshold,
        coupon_cost=coupon_cost,
        coupon_value=coupon_value,
    )
    spend = len(chosen_t) * coupon_cost
    if not chosen_t:  # nothing clears the threshold: compare at the top 10 % instead
        spend = max(1, n // 10) * coupon_cost
    chosen_b = allocate(
        users,
        scores,
        budget=spend,
        strategy="budget",
        coupon_cost=coupon_cost,
        coupon_value=coupon_value,
    )
    k = round(spend / coupon_cost)
    rng = np.random.default_rng(seed)
    draws = [rng.choice(n, k, replace=False) for _ in range(random_draws)]
    random_caught = float(np.mean([purchased[d].sum() for d in draws]))
    random_orders = float(np.mean([orders[d].sum() for d in draws]))

    def caught(chosen: list[dict[str, Any]], target: np.ndarray) -> float:
        return float(sum(target[int(c["user_id"])] for c in chosen))

    t_caught, b_caught = caught(chosen_t, purchased), caught(chosen_b, purchased)
    t_orders, b_orders = caught(chosen_t, orders), caught(chosen_b, orders)
    return {
        "users": n,
        "purchasers": int(purchased.sum()),
        "spend": spend,
        "coupons": k,
        "threshold": threshold,
        "purchasers_captured": {"threshold": t_caught, "budget": b_caught, "random": random_caught},
        "ratio_vs_random": {
            "threshold": t_caught / random_caught if random_caught else float("nan"),
            "budget": b_caught / random_caught if random_caught else float("nan"),
        },
        "orders_captured": {"threshold": t_orders, "budget": b_orders, "random": random_orders},
        "orders_ratio_vs_random": {
            "threshold": t_orders / random_orders if random_orders else float("nan"),
            "budget": b_orders / random_orders if random_orders else float("nan"),
        },
    }


def _classical_predict(
    clf: ClassicalBaselines, series: Callable[[IntentSamples], np.ndarray], s: IntentSamples
) -> dict[str, np.ndarray]:
    return clf.predict(s.fields, series(s))


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    events, sha = load_data(args)
    train_s, val_s, test_s = prepare(events, args)
    log.info("samples: train %d, val %d, test %d", len(train_s), len(val_s), len(test_s))
    torch.set_num_threads(max(1, int(args.threads)))
    methods: dict[str, dict[str, float]] = {}
    timings: dict[str, float] = {}

    def record(name: str, predict: Callable[[IntentSamples], Mapping[str, np.ndarray]]) -> None:
        thresholds = thresholds_from(predict(val_s), val_s)
        methods[name] = all_metrics(predict(test_s), thresholds, test_s)
        log.info("%s: %s", name, methods[name])

    def series(s: IntentSamples) -> np.ndarray:
        return np.concatenate([s.short.reshape(len(s), -1), s.long.reshape(len(s), -1)], axis=1)

    for kind in ("lr", "lightgbm"):
        t0 = time.monotonic()
        clf = ClassicalBaselines(kind, seed=args.seed).fit(
            (train_s.fields, series(train_s), train_s.labels, train_s.order_volume),
            (val_s.fields, series(val_s), val_s.labels, val_s.order_volume),
        )
        record(kind, partial(_classical_predict, clf, series))
        timings[kind] = time.monotonic() - t0

    mt_cfg = MultiTaskConfig(
        field_vocabs=list(FIELD_VOCABS), short_len=args.short_len, long_len=args.long_len
    )
    for name, cls in (("shared-bottom", SharedBottom), ("mmoe", MMOE)):
        t0 = time.monotonic()
        torch.manual_seed(args.seed)
        net, _ = fit_torch(
            cls(mt_cfg), train_s, val_s, epochs=args.epochs, batch_size=args.batch_size,
            lr=args.lr, seed=args.seed, max_seconds=60.0 * args.max_minutes,
        )  # fmt: skip
        record(name, partial(predict_torch, net))
        timings[name] = time.monotonic() - t0

    ours_model: TPGDNN | None = None
    for name, overrides in (
        ("tpg-dnn", {}),
        ("tpg-dnn-no-fusion", {"use_fusion": False}),
        ("tpg-dnn-no-uncertainty", {"use_uncertainty": False}),
    ):
        t0 = time.monotonic()
        model = _train_ours(args, train_s, val_s, None, **overrides)
        record(name, partial(predict_torch, model))
        timings[name] = time.monotonic() - t0
        if name == "tpg-dnn":
            ours_model = model
    assert ours_model is not None

    val_pred = predict_torch(ours_model, val_s)
    test_pred = predict_torch(ours_model, test_s)
    allocation = allocation_benchmark(
        test_pred["p_purchase"],
        test_pred["order_volume"],
        test_s.labels[:, TASKS.index("purchase")],
        test_s.order_volume, threshold=best_threshold(val_s.labels[:, 3], val_pred["p_purchase"]),
        coupon_cost=args.coupon_cost, coupon_value=args.coupon_value, seed=args.seed,
    )  # fmt: skip
    log.info("allocation: %s", allocation)
    cuts = np.unique(np.concatenate([train_s.cut_ts, val_s.cut_ts, test_s.cut_ts]))
    spec = _spec(args)
    n_cuts = [len(np.unique(s.cut_ts)) for s in (train_s, val_s, test_s)]
    first, last = (pd.Timestamp(int(c), unit="s") for c in (cuts[0], cuts[-1]))
    split = (
        f"time split by cut: {n_cuts[0]} train cuts ({len(train_s)} user rows), "
        f"{n_cuts[1]} validation ({len(val_s)}), {n_cuts[2]} test ({len(test_s)}), "
        f"cuts {first} .. {last}; features strictly before each cut, labels in "
        f"[cut, cut + {args.label_seconds}s); buckets {spec.bucket_seconds}s, "
        f"short {spec.short_len}, long {spec.long_len}x{spec.long_group}"
    )
    notes = (
        "F1 uses the threshold that maximises F1 on the validation cut, per method and task. "
        "Only users with at least one event in the feature window are scored (others get the "
        "service's cold-start answer). Neural nets: best epoch by mean validation AUC, "
        f"{args.epochs} epochs max, CPU ({args.threads} thread(s)); no GPU in this session. "
        "Allocation: purchasers captured on the test cut at equal spend (see `allocation`)."
    )
    write_accuracy(
        args.results_dir,
        model="intent",
        dataset=_dataset_name(args),
        data_sha256=sha,
        split=split,
        primary_metric="purchase.auc",
        higher_is_better=True,
        methods=methods,
        ours="tpg-dnn",
        notes=notes,
        extra={"allocation": allocation, "train_seconds": timings},
    )
    return {"methods": methods, "allocation": allocation}
