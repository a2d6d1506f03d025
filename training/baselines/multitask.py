"""Baselines for the intent job (TPG-DNN paper, sec. 4.1 "Compared methods").

- `SharedBottom`: the paper's "MTL", hard parameter sharing without the time-series
  extraction layer or the GRU loss; equal-weight loss, MSE for the order volume.
- `MMOE` (Ma et al., KDD 2018): experts shared by all tasks, one softmax gate per task.
- `ClassicalBaselines`: logistic regression (the paper's "LR", linear regression for the
  order volume) and LightGBM, one model per task, tuned on the validation split.

Every baseline sees the same inputs as TPG-DNN (binned fields + the two behaviour series),
on the same split, so a difference in the table is a difference in the model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from torch import nn

from models.base import Batch
from models.tpgdnn import TASKS  # the same heads as TPG-DNN, so results line up
from training.metrics import auc

_EPS = 1e-6


@dataclass
class MultiTaskConfig:
    field_vocabs: Sequence[int] = field(default_factory=lambda: [12] * 4)
    short_len: int = 7
    long_len: int = 8
    n_actions: int = 4
    embed_dim: int = 8  # same as TPG-DNN's default
    hidden: int = 64
    tower_hidden: int = 16
    n_experts: int = 4  # MMOE only
    dropout: float = 0.1


class _Inputs(nn.Module):
    """Field embeddings + flattened series: the shared input of both baselines."""

    def __init__(self, cfg: MultiTaskConfig) -> None:
        super().__init__()
        vocabs = list(cfg.field_vocabs)
        offsets = torch.tensor([0, *np.cumsum(vocabs)[:-1].tolist()], dtype=torch.long)
        self.offsets: torch.Tensor
        self.register_buffer("offsets", offsets, persistent=False)
        self.embedding = nn.Embedding(int(sum(vocabs)), cfg.embed_dim)
        nn.init.normal_(self.embedding.weight, std=0.05)
        self.out_dim = len(vocabs) * cfg.embed_dim + (cfg.short_len + cfg.long_len) * cfg.n_actions

    def forward(
        self, fields: torch.Tensor, short: torch.Tensor, long: torch.Tensor
    ) -> torch.Tensor:
        b = fields.shape[0]
        emb = self.embedding(fields + self.offsets).reshape(b, -1)  # [B, M*D]
        return torch.cat([emb, short.reshape(b, -1), long.reshape(b, -1)], dim=1)


def _mlp(n_in: int, n_out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, n_out), nn.ReLU(), nn.Dropout(dropout))


class _MultiTaskBase(nn.Module):
    """Towers for the four behaviours and the order volume; equal-weight loss."""

    def _towers(self, n_in: int, cfg: MultiTaskConfig) -> None:
        heads = [*TASKS, "order_volume"]
        self.towers = nn.ModuleDict(
            {
                t: nn.Sequential(_mlp(n_in, cfg.tower_hidden, 0.0), nn.Linear(cfg.tower_hidden, 1))
                for t in heads
            }
        )

    def _outputs(self, per_task: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        probs = [torch.sigmoid(self.towers[t](per_task[t]).squeeze(1)) for t in TASKS]
        volume = F.softplus(self.towers["order_volume"](per_task["order_volume"]).squeeze(1))
        return (*probs, volume)

    def predict(self, batch: Batch) -> dict[str, torch.Tensor]:
        outs = self(batch["fields"], batch["short"], batch["long"])
        names = ["p_browse", "p_collect", "p_cart", "p_purchase", "order_volume"]
        return dict(zip(names, outs, strict=True))

    def calculate_loss(self, batch: Batch) -> torch.Tensor:
        outs = self(batch["fields"], batch["short"], batch["long"])
        labels = batch["labels"].float()
        loss = sum(
            F.binary_cross_entropy(p.clamp(_EPS, 1 - _EPS), labels[:, k])
            for k, p in enumerate(outs[:4])
        )
        return loss + F.mse_loss(outs[4], batch["order_volume"].float())


class SharedBottom(_MultiTaskBase):
    """Hard parameter sharing: one bottom MLP, one tower per task."""

    def __init__(self, cfg: MultiTaskConfig) -> None:
        super().__init__()
        self.inputs = _Inputs(cfg)
        self.bottom = nn.Sequential(
            _mlp(self.inputs.out_dim, cfg.hidden, cfg.dropout),
            _mlp(cfg.hidden, cfg.hidden, cfg.dropout),
        )
        self._towers(cfg.hidden, cfg)

    def forward(
        self, fields: torch.Tensor, short: torch.Tensor, long: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        h = self.bottom(self.inputs(fields, short, long))  # [B, hidden]
        return self._outputs({t: h for t in self.towers})


class MMOE(_MultiTaskBase):
    """Multi-gate mixture of experts: task k sees sum_e g_k(x)_e * expert_e(x)."""

    def __init__(self, cfg: MultiTaskConfig) -> None:
        super().__init__()
        self.inputs = _Inputs(cfg)
        n_in = self.inputs.out_dim
        self.experts = nn.ModuleList(
            nn.Sequential(_mlp(n_in, cfg.hidden, cfg.dropout), _mlp(cfg.hidden, cfg.hidden, 0.0))
            for _ in range(cfg.n_experts)
        )
        heads = [*TASKS, "order_volume"]
        self.gates = nn.ModuleDict({t: nn.Linear(n_in, cfg.n_experts) for t in heads})
        self._towers(cfg.hidden, cfg)

    def forward(
        self, fields: torch.Tensor, short: torch.Tensor, long: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        x = self.inputs(fields, short, long)  # [B, n_in]
        experts = torch.stack([e(x) for e in self.experts], dim=1)  # [B, E, hidden]
        mixed = {
            t: (torch.softmax(g(x), dim=1).unsqueeze(2) * experts).sum(1)
            for t, g in self.gates.items()
        }  # each [B, hidden]
        return self._outputs(mixed)


# ---- classical baselines ------------------------------------------------------------------
class ClassicalBaselines:
    """LR / linear regression or LightGBM, one model per behaviour plus one for the volume.

    Inputs: the binned fields one-hot encoded (LR) or as categorical codes (LightGBM),
    plus the log1p behaviour series as numbers. A task whose training labels are all one
    class predicts its base rate (nothing to fit, and sklearn would refuse).
    """

    def __init__(self, kind: str, seed: int = 0) -> None:
        if kind not in {"lr", "lightgbm"}:
            raise ValueError("kind must be 'lr' or 'lightgbm'")
        self.kind = kind
        self.seed = seed
        self.models: dict[str, Any] = {}
        self.base: dict[str, float] = {}
        self.chosen: dict[str, Any] = {}

    def _design(self, fields: np.ndarray, series: np.ndarray, fit: bool = False) -> Any:
        if self.kind == "lightgbm":
            return np.concatenate([fields.astype(np.float32), series], axis=1)
        if fit:
            self.onehot = OneHotEncoder(handle_unknown="ignore").fit(fields)
            self.scaler = StandardScaler().fit(series)
        from scipy import sparse

        return sparse.hstack(
            [self.onehot.transform(fields), sparse.csr_matrix(self.scaler.transform(series))]
        ).tocsr()

    def fit(
        self,
        train: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
        val: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    ) -> ClassicalBaselines:
        """`train`/`val` = (fields, series, labels [N, 4], order volume [N])."""
        xt = self._design(train[0], train[1], fit=True)
        xv = self._design(val[0], val[1])
        n_fields = train[0].shape[1]
        for k, task in enumerate(TASKS):
            yt, yv = train[2][:, k], val[2][:, k]
            self.base[task] = float(yt.mean())
            if len(np.unique(yt)) < 2:
                continue
            if self.kind == "lr":
                best = None
                for c in (0.1, 1.0, 10.0):  # tuned on the validation AUC
                    m = LogisticRegression(C=c, max_iter=500).fit(xt, yt)
                    score = auc(yv, m.predict_proba(xv)[:, 1])
                    if best is None or (score > best[0]):
                        best = (score, m, c)
                assert best is not None
                self.models[task], self.chosen[task] = best[1], best[2]
            else:
                m = lgb.LGBMClassifier(
                    n_estimators=400, learning_rate=0.05, num_leaves=15, min_child_samples=20,
                    subsample=0.8, subsample_freq=1, colsample_bytree=0.8, random_state=self.seed,
                    verbose=-1, n_jobs=1,
                )  # fmt: skip
                fit_kw: dict[str, Any] = {"categorical_feature": list(range(n_fields))}
                if len(np.unique(yv)) == 2:
                    fit_kw |= {
                        "eval_X": (xv,),
                        "eval_y": (yv,),
                        "callbacks": [lgb.early_stopping(30, verbose=False)],
                    }
                self.models[task] = m.fit(xt, yt, **fit_kw)
        if self.kind == "lr":
            self.models["order_volume"] = Ridge(alpha=1.0).fit(xt, train[3])
        else:
            self.models["order_volume"] = lgb.LGBMRegressor(
                objective="poisson", n_estimators=400, learning_rate=0.05, num_leaves=15,
                min_child_samples=20, random_state=self.seed, verbose=-1, n_jobs=1,
            ).fit(
                xt, train[3], eval_X=(xv,), eval_y=(val[3],),
                categorical_feature=list(range(n_fields)),
                callbacks=[lgb.early_stopping(30, verbose=False)],
            )  # fmt: skip
        return self

    def predict(self, fields: np.ndarray, series: np.ndarray) -> dict[str, np.ndarray]:
        x = self._design(fields, series)
        n = fields.shape[0]
        out: dict[str, np.ndarray] = {}
        for task in TASKS:
            model = self.models.get(task)
            out[f"p_{task}"] = (
                model.predict_proba(x)[:, 1] if model is not None else np.full(n, self.base[task])
            )
        out["order_volume"] = np.maximum(self.models["order_volume"].predict(x), 0.0)
        return out
