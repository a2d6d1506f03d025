"""Table 2 baselines for promotion-day forecasts: DNN, Wide&Deep, LSTM, LightGBM.

Every baseline sees exactly DINOP's inputs (DIS, DU, SU, SII, SIS of the same split) and is
trained one task at a time, as Table 2 does. Section 5.2 sizes: the DNN has three hidden
layers 1024/512/256 trained with Adagrad; Wide&Deep adds a linear (wide) part on the same
features to that DNN; the LSTM reads [DIS_t, DU_t] as ordinary inputs (the contrast with
TUC-GRU) and its last state is joined with the static features. LightGBM stands in for
GBDT/XGBoost (the issue names LightGBM) on the flattened features.

NOTE: the paper trains the wide part with FTRL; PyTorch has no FTRL, so the wide part
uses the same Adagrad as the deep part (FTRL-proximal is an Adagrad-style per-coordinate
method; its L1 sparsity does not matter for ~300 dense features).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from training.features.dinop import Featurizer, PromoSet

TASKS: tuple[str, ...] = ("gmv", "bsp", "ss")
OUT_DIM = {"gmv": 1, "bsp": 1, "ss": 10}


def flat(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """All inputs in one row per instance (what the non-sequential baselines see)."""
    n = len(arrays["gmv"])
    return np.concatenate(
        [
            arrays["dis"].reshape(n, -1),
            arrays["du"].reshape(n, -1),
            arrays["su"],
            arrays["sii"],
            arrays["sis"],
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


def _loss(task: str, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if task == "gmv":
        return F.mse_loss(out.squeeze(-1), y)
    if task == "bsp":
        return F.binary_cross_entropy_with_logits(out.squeeze(-1), y)
    return F.cross_entropy(out, y.long())


def _fit_predict(
    make: Any,
    task: str,
    train: dict[str, np.ndarray],
    test: dict[str, np.ndarray],
    epochs: int,
    seed: int,
    lr: float = 0.02,
    batch_size: int = 128,
) -> np.ndarray:
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    rng = np.random.default_rng(seed)
    model: nn.Module = make()
    opt = torch.optim.Adagrad(model.parameters(), lr=lr, weight_decay=1e-5)
    n = len(train[task])
    keys = [k for k in train if k not in TASKS]
    for _ in range(epochs):
        model.train()
        order = rng.permutation(n)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            batch = {k: torch.from_numpy(train[k][idx]) for k in keys}
            loss = _loss(task, model(batch), torch.from_numpy(train[task][idx]))
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
    model.eval()
    with torch.no_grad():
        out = model({k: torch.from_numpy(test[k]) for k in keys})
    if task == "gmv":
        return out.squeeze(-1).numpy()
    if task == "bsp":
        return torch.sigmoid(out.squeeze(-1)).numpy()
    return out.softmax(-1).numpy()


def _metrics(feat: Featurizer, test_ps: PromoSet, preds: dict[str, np.ndarray]) -> dict[str, float]:
    from training.jobs.dinop import sales_metrics

    return sales_metrics(
        test_ps,
        gmv=feat.gmv_from(preds["gmv"], test_ps.scale),
        bsp=preds["bsp"],
        ss=preds["ss"],
    )


def _labels(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {t: arrays[t] for t in TASKS}


def run_dnn(
    feat: Featurizer,
    train_ps: PromoSet,
    test_ps: PromoSet,
    tr: dict[str, np.ndarray],
    te: dict[str, np.ndarray],
    epochs: int,
    seed: int,
) -> dict[str, float]:
    xtr, xte = {"x": flat(tr), **_labels(tr)}, {"x": flat(te)}
    d = xtr["x"].shape[1]
    preds = {
        t: _fit_predict(lambda t=t: DNN(d, OUT_DIM[t]), t, xtr, xte, epochs, seed) for t in TASKS
    }
    return _metrics(feat, test_ps, preds)


def run_wide_deep(
    feat: Featurizer,
    train_ps: PromoSet,
    test_ps: PromoSet,
    tr: dict[str, np.ndarray],
    te: dict[str, np.ndarray],
    epochs: int,
    seed: int,
) -> dict[str, float]:
    xtr, xte = {"x": flat(tr), **_labels(tr)}, {"x": flat(te)}
    d = xtr["x"].shape[1]
    preds = {
        t: _fit_predict(lambda t=t: WideDeep(d, OUT_DIM[t]), t, xtr, xte, epochs, seed)
        for t in TASKS
    }
    return _metrics(feat, test_ps, preds)


def run_lstm(
    feat: Featurizer,
    train_ps: PromoSet,
    test_ps: PromoSet,
    tr: dict[str, np.ndarray],
    te: dict[str, np.ndarray],
    epochs: int,
    seed: int,
) -> dict[str, float]:
    def inputs(a: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        static = np.concatenate([a["su"], a["sii"], a["sis"]], axis=1).astype(np.float32)
        return {"dis": a["dis"], "du": a["du"], "static": static}

    xtr, xte = {**inputs(tr), **_labels(tr)}, inputs(te)
    seq_dim = tr["dis"].shape[-1] + tr["du"].shape[-1]
    static_dim = xte["static"].shape[1]
    preds = {
        t: _fit_predict(
            lambda t=t: LSTMBaseline(seq_dim, static_dim, OUT_DIM[t]), t, xtr, xte, epochs, seed
        )
        for t in TASKS
    }
    return _metrics(feat, test_ps, preds)


def run_lightgbm(
    feat: Featurizer,
    train_ps: PromoSet,
    test_ps: PromoSet,
    tr: dict[str, np.ndarray],
    te: dict[str, np.ndarray],
    epochs: int,
    seed: int,
) -> dict[str, float]:
    """LightGBM per task; 200 rounds at step 0.05, 31 leaves (library defaults otherwise).

    `epochs` is unused: boosting rounds are its own budget.
    """
    import lightgbm as lgb

    xtr, xte = flat(tr), flat(te)
    common: dict[str, Any] = {
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
    preds: dict[str, np.ndarray] = {}
    reg = lgb.LGBMRegressor(**common)
    reg.fit(xtr, tr["gmv"])
    preds["gmv"] = np.asarray(reg.predict(xte))
    clf = lgb.LGBMClassifier(**common)
    clf.fit(xtr, tr["bsp"].astype(int))
    preds["bsp"] = np.asarray(clf.predict_proba(xte))[:, 1]
    multi = lgb.LGBMClassifier(**common)
    multi.fit(xtr, tr["ss"])
    proba = np.asarray(multi.predict_proba(xte))
    full = np.zeros((len(xte), 10))
    full[:, multi.classes_] = proba
    preds["ss"] = full
    return _metrics(feat, test_ps, preds)


# ---- binary task (BOP) on an event log's pairs ----------------------------------------------
def _pair_flat(a: dict[str, np.ndarray]) -> np.ndarray:
    n = len(a["bop"])
    parts = [a["dis"].reshape(n, -1), a["du"].reshape(n, -1), a["su"], a["sii"], a["sis"]]
    return np.concatenate([*parts, a["user"]], axis=1).astype(np.float32)


def run_binary_dnn(
    tr: dict[str, np.ndarray], te: dict[str, np.ndarray], task: str, epochs: int, seed: int
) -> np.ndarray:
    xtr, xte = {"x": _pair_flat(tr)}, {"x": _pair_flat(te)}
    d = xtr["x"].shape[1]
    return _fit_predict(lambda: DNN(d, 1), "bsp", {**xtr, "bsp": tr[task]}, xte, epochs, seed)


def run_binary_wide_deep(
    tr: dict[str, np.ndarray], te: dict[str, np.ndarray], task: str, epochs: int, seed: int
) -> np.ndarray:
    xtr, xte = {"x": _pair_flat(tr)}, {"x": _pair_flat(te)}
    d = xtr["x"].shape[1]
    return _fit_predict(lambda: WideDeep(d, 1), "bsp", {**xtr, "bsp": tr[task]}, xte, epochs, seed)


def run_binary_lstm(
    tr: dict[str, np.ndarray], te: dict[str, np.ndarray], task: str, epochs: int, seed: int
) -> np.ndarray:
    def inputs(a: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        static = np.concatenate([a["su"], a["sii"], a["sis"], a["user"]], axis=1)
        return {"dis": a["dis"], "du": a["du"], "static": static.astype(np.float32)}

    xtr, xte = inputs(tr), inputs(te)
    seq_dim = tr["dis"].shape[-1] + tr["du"].shape[-1]
    static_dim = xte["static"].shape[1]
    return _fit_predict(
        lambda: LSTMBaseline(seq_dim, static_dim, 1),
        "bsp",
        {**xtr, "bsp": tr[task]},
        xte,
        epochs,
        seed,
    )


def run_binary_lightgbm(
    tr: dict[str, np.ndarray], te: dict[str, np.ndarray], task: str, epochs: int, seed: int
) -> np.ndarray:
    """LightGBM on the flattened pair features; small data: 100 rounds, 15 leaves."""
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
    clf.fit(_pair_flat(tr), tr[task].astype(int))
    return np.asarray(clf.predict_proba(_pair_flat(te)))[:, 1]
