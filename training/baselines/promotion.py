"""Table 2 baselines for promotion-day forecasts: DNN, Wide&Deep, LSTM, LightGBM.

Every baseline sees exactly DINOP's inputs (DIS, DU, SU, SII, SIS of the same split) and is
trained one task at a time, as Table 2 does. Section 5.2 sizes: the DNN has three hidden
layers 1024/512/256 trained with Adagrad; Wide&Deep adds a linear (wide) part on the same
features to that DNN; the LSTM reads [DIS_t, DU_t] as ordinary inputs (the contrast with
TUC-GRU) and its last state is joined with the static features. LightGBM stands in for
GBDT/XGBoost (the issue names LightGBM) on the flattened features.

Every network trains through `training.loop.fit` (the job's epoch budget and patience,
early stopping on the task's validation metric: GMV MAE in currency, BSP AUC, SS accuracy;
BOP AUC), and LightGBM early-stops on the same validation split. `SalesTargets` holds what
the sales runners are scored on, so DINOP and every baseline share one definition of
Table 2's metrics (`sales_metrics`).

NOTE: the paper trains the wide part with FTRL; PyTorch has no FTRL, so the wide part
uses the same Adagrad as the deep part (FTRL-proximal is an Adagrad-style per-coordinate
method; its L1 sparsity does not matter for ~300 dense features).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from training.features.dinop import Featurizer, PromoSet
from training.loop import Budget, FitReport, fit, minibatch_epoch, seed_everything
from training.metrics import auc

TASKS: tuple[str, ...] = ("gmv", "bsp", "ss")
OUT_DIM = {"gmv": 1, "bsp": 1, "ss": 10}


NAIVE_SLOT = "naive_ss"  # optional input: one-hot of `naive_slots` [N, 10]


def _optional(arrays: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The naive slot's one-hot when the job added it: every baseline then sees what DINOP's
    SS head sees, so the feature cannot be what separates DINOP from them."""
    return [arrays[NAIVE_SLOT]] if NAIVE_SLOT in arrays else []


def flat(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """All inputs in one row per instance (what the non-sequential baselines see)."""
    n = len(arrays["dis"])
    return np.concatenate(
        [
            arrays["dis"].reshape(n, -1),
            arrays["du"].reshape(n, -1),
            arrays["su"],
            arrays["sii"],
            arrays["sis"],
            *_optional(arrays),
        ],
        axis=1,
    ).astype(np.float32)


def naive_slots(ps: PromoSet) -> np.ndarray:
    """Eq. 2 applied to the last pre-sale period's sales: the no-model reference."""
    from training.features.dinop import ss_labels

    out = np.zeros(len(ps), dtype=np.int64)
    for date in np.unique(ps.promo_date):
        idx = np.flatnonzero(ps.promo_date == date)
        out[idx] = ss_labels(ps.last_presale_sales[idx], ps.category[idx])
    return out


class DNN(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, dropout: float = 0.5) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for size in (1024, 512, 256):  # section 5.2
            layers += [nn.Linear(in_dim, size), nn.ReLU(), nn.Dropout(dropout)]
            in_dim = size
        layers.append(nn.Linear(in_dim, out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.net(batch["x"])


class WideDeep(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, dropout: float = 0.5) -> None:
        super().__init__()
        self.deep = DNN(in_dim, out_dim, dropout)
        self.wide = nn.Linear(in_dim, out_dim)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.deep(batch) + self.wide(batch["x"])


class LSTMBaseline(nn.Module):
    """LSTM over [DIS_t, DU_t] (both as ordinary inputs) + static features -> task net."""

    def __init__(self, seq_dim: int, static_dim: int, out_dim: int, hidden: int = 128) -> None:
        super().__init__()
        self.lstm = nn.LSTM(seq_dim, hidden, batch_first=True)
        self.head = nn.Sequential(
            nn.Linear(hidden + static_dim, 128),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(128, out_dim),
        )

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        seq = torch.cat([batch["dis"], batch["du"]], dim=-1)  # [B, T, Ddis + Ddu]
        _, (h, _) = self.lstm(seq)
        return self.head(torch.cat([h[-1], batch["static"]], dim=-1))


def sales_metrics(
    ps: PromoSet,
    gmv: np.ndarray | None = None,
    bsp: np.ndarray | None = None,
    ss: np.ndarray | None = None,
) -> dict[str, float]:
    """GMV MAE (currency), BSP AUC, SS accuracy (Table 2's metrics)."""
    result: dict[str, float] = {}
    if gmv is not None:
        result["gmv_mae"] = float(np.mean(np.abs(gmv - ps.gmv)))
    if bsp is not None and len(np.unique(ps.bsp)) == 2:
        result["bsp_auc"] = auc(ps.bsp, bsp)
    if ss is not None:
        labels = ss if ss.ndim == 1 else ss.argmax(-1)
        result["ss_acc"] = float(np.mean(labels == ps.ss))
    return result


# The metric each task early-stops on, as (name in `sales_metrics`, higher is better).
TASK_METRIC: dict[str, tuple[str, bool]] = {
    "gmv": ("gmv_mae", False),
    "bsp": ("bsp_auc", True),
    "ss": ("ss_acc", True),
}


@dataclass
class SalesTargets:
    """The validation and test item-days every sales method is scored on."""

    feat: Featurizer
    val: PromoSet
    test: PromoSet

    def _task_pred(self, task: str, pred: np.ndarray, ps: PromoSet) -> dict[str, np.ndarray]:
        if task == "gmv":
            return {
                "gmv": self.feat.gmv_from(pred.astype(np.float64), ps.scale, ps.last_presale_sales)
            }
        return {task: pred}

    def val_score(self, task: str) -> Callable[[np.ndarray], float] | None:
        """Validation metric of `task` predictions, higher is better (None: undefined)."""
        key, higher = TASK_METRIC[task]
        if key == "bsp_auc" and len(np.unique(self.val.bsp)) < 2:
            return None

        def score(pred: np.ndarray) -> float:
            value = sales_metrics(self.val, **self._task_pred(task, pred, self.val))[key]
            return value if higher else -value

        return score

    def metrics(self, preds: dict[str, np.ndarray]) -> dict[str, float]:
        """Test metrics of per-task predictions (GMV in the trained units)."""
        out: dict[str, np.ndarray] = {}
        for task, pred in preds.items():
            out.update(self._task_pred(task, pred, self.test))
        return sales_metrics(self.test, **out)

    def gmv(self, preds: dict[str, np.ndarray]) -> np.ndarray:
        return self.feat.gmv_from(
            preds["gmv"].astype(np.float64), self.test.scale, self.test.last_presale_sales
        )


def _loss(task: str, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if task == "gmv":
        return F.mse_loss(out.squeeze(-1), y)
    if task == "bsp":
        return F.binary_cross_entropy_with_logits(out.squeeze(-1), y)
    return F.cross_entropy(out, y.long())


def _outputs(task: str, out: torch.Tensor) -> np.ndarray:
    if task in ("gmv",):
        return out.squeeze(-1).numpy()
    if task in ("bsp", "bop"):
        return torch.sigmoid(out.squeeze(-1)).numpy()
    return out.softmax(-1).numpy()


def fit_predict(
    make: Callable[[], nn.Module],
    task: str,
    train: dict[str, np.ndarray],
    val: dict[str, np.ndarray],
    test: dict[str, np.ndarray],
    val_score: Callable[[np.ndarray], float] | None,
    budget: Budget,
    seed: int,
    label: str,
    lr: float = 0.02,
    batch_size: int = 128,
) -> tuple[np.ndarray, FitReport]:
    """One network for one task: Adagrad in `training.loop.fit`, early-stopped on
    `val_score` (higher is better) of its validation predictions; test predictions."""
    rng = seed_everything(seed)
    model: nn.Module = make()
    opt = torch.optim.Adagrad(
        model.parameters(), lr=lr, weight_decay=1e-5, initial_accumulator_value=0.1
    )  # TensorFlow's start, as DINOP's (see `training.jobs.dinop.ADAGRAD_INITIAL_ACCUMULATOR`)
    loss_task = "bsp" if task == "bop" else task
    keys = [k for k in train if k not in (*TASKS, "bop")]

    def batch(rows: np.ndarray) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        return {k: torch.from_numpy(train[k][rows]) for k in keys}, torch.from_numpy(
            train[task][rows]
        )

    def loss(inputs: dict[str, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        return _loss(loss_task, model(inputs), target)

    def predict(arrays: dict[str, np.ndarray]) -> np.ndarray:
        model.eval()
        with torch.no_grad():
            return _outputs(loss_task, model({k: torch.from_numpy(arrays[k]) for k in keys}))

    def run_epoch(epoch: int) -> float:
        return minibatch_epoch(
            loss, opt, len(train[task]), batch_size, batch, rng, clip=(model.parameters(), 5.0)
        )

    validate = None if val_score is None else (lambda: val_score(predict(val)))
    report = fit(model, run_epoch, validate, budget, label=label)
    return predict(test), report


def _labels(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {t: arrays[t] for t in TASKS}


def _run_networks(
    make: Callable[[str], nn.Module],
    inputs: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]],
    targets: SalesTargets,
    tr: dict[str, np.ndarray],
    va: dict[str, np.ndarray],
    te: dict[str, np.ndarray],
    budget: Budget,
    seed: int,
    name: str,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """One network per task (Table 2 learns the tasks separately): test predictions, fits."""
    xtr, xva, xte = {**inputs(tr), **_labels(tr)}, inputs(va), inputs(te)
    preds: dict[str, np.ndarray] = {}
    fits: dict[str, Any] = {}
    for t in TASKS:
        preds[t], report = fit_predict(
            functools.partial(make, t), t, xtr, xva, xte, targets.val_score(t), budget, seed,
            f"{name}[{t}] seed {seed}",
        )  # fmt: skip
        fits[t] = report.to_dict()
    return preds, fits


def _lstm_inputs(a: dict[str, np.ndarray], extra: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    static = np.concatenate(
        [a["su"], a["sii"], a["sis"], *_optional(a), *(a[k] for k in extra)], axis=1
    )
    return {"dis": a["dis"], "du": a["du"], "static": static.astype(np.float32)}


def _architecture(
    name: str, tr: dict[str, np.ndarray], extra: tuple[str, ...] = ()
) -> tuple[Callable[[int], nn.Module], Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]]:
    """(output size -> network, arrays -> its inputs) of a Table 2 network; `extra` are the
    arrays the flat and static inputs also take (BOP's user features)."""

    def flat_inputs(a: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"x": np.concatenate([flat(a), *(a[k] for k in extra)], axis=1)}

    def lstm_inputs(a: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return _lstm_inputs(a, extra)

    if name == "LSTM":
        seq_dim = tr["dis"].shape[-1] + tr["du"].shape[-1]
        static_dim = lstm_inputs(tr)["static"].shape[1]
        return (lambda out: LSTMBaseline(seq_dim, static_dim, out)), lstm_inputs
    d = flat_inputs(tr)["x"].shape[1]
    if name == "DNN":
        return (lambda out: DNN(d, out)), flat_inputs
    if name == "Wide&Deep":
        return (lambda out: WideDeep(d, out)), flat_inputs
    raise ValueError(f"unknown network {name!r}; known: DNN, Wide&Deep, LSTM")


NETWORKS = ("DNN", "Wide&Deep", "LSTM")


def run_network(
    name: str,
    targets: SalesTargets,
    tr: dict[str, np.ndarray],
    va: dict[str, np.ndarray],
    te: dict[str, np.ndarray],
    budget: Budget,
    seed: int,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """A Table 2 network (`NETWORKS`), one per task: test predictions and fits per task."""
    make, inputs = _architecture(name, tr)
    return _run_networks(lambda t: make(OUT_DIM[t]), inputs, targets, tr, va, te, budget, seed,
                         name)  # fmt: skip


def _lgb_params(seed: int) -> dict[str, Any]:
    return {
        "n_estimators": 200,
        "learning_rate": 0.05,
        "num_leaves": 31,
        "min_child_samples": 20,
        "subsample": 0.8,
        "subsample_freq": 1,
        "colsample_bytree": 0.8,
        "random_state": seed,
        "n_jobs": 1,
        "verbose": -1,
    }


def _lgb_fit(model: Any, x: np.ndarray, y: np.ndarray, xv: np.ndarray, yv: np.ndarray) -> int:
    """Fit with early stopping on the validation rows (30 rounds); the rounds kept."""
    import lightgbm as lgb

    if len(yv) and (len(np.unique(yv)) > 1 or isinstance(model, lgb.LGBMRegressor)):
        model.fit(x, y, eval_X=(xv,), eval_y=(yv,),
                  callbacks=[lgb.early_stopping(30, verbose=False)])  # fmt: skip
    else:
        model.fit(x, y)
    best = getattr(model, "best_iteration_", None)
    return int(best) if best else int(model.n_estimators)


def run_lightgbm(
    targets: SalesTargets,
    tr: dict[str, np.ndarray],
    va: dict[str, np.ndarray],
    te: dict[str, np.ndarray],
    budget: Budget,
    seed: int,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """LightGBM per task; at most 200 rounds at step 0.05, 31 leaves, early-stopped on the
    validation item-days (`budget` is the networks': boosting rounds are its own)."""
    import lightgbm as lgb

    xtr, xva, xte = flat(tr), flat(va), flat(te)
    preds: dict[str, np.ndarray] = {}
    fits: dict[str, Any] = {}
    reg = lgb.LGBMRegressor(**_lgb_params(seed))
    fits["gmv"] = {"rounds": _lgb_fit(reg, xtr, tr["gmv"], xva, va["gmv"])}
    preds["gmv"] = np.asarray(reg.predict(xte))
    if len(np.unique(tr["bsp"])) < 2:  # one class in training: its base rate, nothing to fit
        preds["bsp"], fits["bsp"] = np.full(len(xte), float(tr["bsp"].mean())), None
    else:
        clf = lgb.LGBMClassifier(**_lgb_params(seed))
        fits["bsp"] = {
            "rounds": _lgb_fit(clf, xtr, tr["bsp"].astype(int), xva, va["bsp"].astype(int))
        }
        preds["bsp"] = np.asarray(clf.predict_proba(xte))[:, 1]
    full = np.zeros((len(xte), 10))
    classes = np.unique(tr["ss"])
    if len(classes) < 2:
        full[:, int(classes[0]) if len(classes) else 0] = 1.0
        fits["ss"] = None
    else:
        multi = lgb.LGBMClassifier(**_lgb_params(seed))
        seen = np.isin(va["ss"], classes)  # early stopping needs known classes
        fits["ss"] = {"rounds": _lgb_fit(multi, xtr, tr["ss"], xva[seen], va["ss"][seen])}
        full[:, multi.classes_] = np.asarray(multi.predict_proba(xte))
    preds["ss"] = full
    return preds, fits


# ---- binary task (BOP) on an event log's pairs ----------------------------------------------
def run_binary_network(
    name: str,
    tr: dict[str, np.ndarray],
    va: dict[str, np.ndarray],
    te: dict[str, np.ndarray],
    task: str,
    budget: Budget,
    seed: int,
) -> tuple[np.ndarray, dict[str, Any]]:
    """A Table 2 network on a binary pair task (BOP), the user features as extra inputs."""
    make, inputs = _architecture(name, tr, extra=("user",))
    return _binary(lambda: make(1), inputs, tr, va, te, task, budget, seed, name)


def _binary(
    make: Callable[[], nn.Module],
    inputs: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]],
    tr: dict[str, np.ndarray],
    va: dict[str, np.ndarray],
    te: dict[str, np.ndarray],
    task: str,
    budget: Budget,
    seed: int,
    name: str,
) -> tuple[np.ndarray, dict[str, Any]]:
    """A binary network early-stopped on the validation AUC."""
    y_val = va[task]
    score = (lambda p: auc(y_val, p)) if len(np.unique(y_val)) == 2 else None
    pred, report = fit_predict(
        make, task, {**inputs(tr), task: tr[task]}, inputs(va), inputs(te), score, budget,
        seed, f"{name}[{task}] seed {seed}",
    )  # fmt: skip
    return pred, report.to_dict()


def run_binary_lightgbm(
    tr: dict[str, np.ndarray],
    va: dict[str, np.ndarray],
    te: dict[str, np.ndarray],
    task: str,
    budget: Budget,
    seed: int,
) -> tuple[np.ndarray, dict[str, Any]]:
    """LightGBM on the flattened pair features; small data: at most 100 rounds, 15 leaves,
    early-stopped on the validation pairs."""
    import lightgbm as lgb

    clf = lgb.LGBMClassifier(
        n_estimators=100,
        learning_rate=0.05,
        num_leaves=15,
        min_child_samples=10,
        random_state=seed,
        n_jobs=1,
        verbose=-1,
    )

    def x(a: dict[str, np.ndarray]) -> np.ndarray:
        return np.concatenate([flat(a), a["user"]], axis=1)

    rounds = _lgb_fit(clf, x(tr), tr[task].astype(int), x(va), va[task].astype(int))
    return np.asarray(clf.predict_proba(x(te)))[:, 1], {"rounds": rounds}
