"""Forecasting baselines for STMP's Table 1, on the same panel, instances and split.

Every baseline predicts the normalised next value (sales / series scale) of an instance
(series n, step t) from the data before t, exactly like STMP, so the errors are comparable:

* `seasonal_naive`: the same week (or the same weekday 52 weeks) last year;
* `fit_ar`: a global linear autoregression (ridge) over the window, pooled over series;
* `fit_lightgbm`: one global gradient-boosted model on lags, rolling means, externals,
  statics, the category and the target step's calendar (day type, festival interval),
  early-stopped on the job's validation period;
* `LSTNet`: Lai et al. 2018 (conv -> GRU, a skip-GRU over the conv output, AR highway);
* `MetaGRU`: after ST-MetaNet (Pan et al. 2019): a meta-learner maps a region's static
  features (and the category) to the weights of the GRU that reads the window.

The two networks train through `training.loop.fit` (`fit_network`) within the same step
budget, epochs and early-stopping rule as STMP.

DeepAR (gluonts) is not here: `pip install --dry-run "gluonts[torch]"` (gluonts 0.17.0)
would downgrade pandas 3.1 to 2.3 and pull lightning, so it does not install cleanly next to
this project's pins; the results notes say so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from training.features.stmp import Panel, gather, steps_per_year, window_steps
from training.loop import Budget, FitReport, fit, seed_everything


def seasonal_naive(panel: Panel, n_idx: np.ndarray, t_idx: np.ndarray) -> np.ndarray:
    """y[t - one year]; the last observed value where last year is missing."""
    season = steps_per_year(panel.frequency)
    y = np.nan_to_num(panel.y)
    lag = t_idx - season
    last = y[n_idx, np.maximum(t_idx - 1, 0)]
    ok = lag >= 0
    out = last.copy()
    out[ok] = np.where(panel.observed[n_idx[ok], lag[ok]], y[n_idx[ok], lag[ok]], last[ok])
    return out.astype(np.float64)


def _lag_matrix(panel: Panel, n_idx: np.ndarray, t_idx: np.ndarray, window: int) -> np.ndarray:
    steps, valid = window_steps(t_idx, window)
    return (np.nan_to_num(panel.y)[n_idx[:, None], steps] * valid).astype(np.float64)


@dataclass
class RidgeAR:
    """Global AR(window) with an intercept, fitted in closed form with an L2 penalty."""

    window: int
    coef: np.ndarray
    intercept: float

    def predict(self, panel: Panel, n_idx: np.ndarray, t_idx: np.ndarray) -> np.ndarray:
        return _lag_matrix(panel, n_idx, t_idx, self.window) @ self.coef + self.intercept


def fit_ar(
    panel: Panel, n_idx: np.ndarray, t_idx: np.ndarray, window: int, alpha: float = 1.0
) -> RidgeAR:
    x = _lag_matrix(panel, n_idx, t_idx, window)
    y = np.nan_to_num(panel.y[n_idx, t_idx])
    x_mean, y_mean = x.mean(0), y.mean()
    xc, yc = x - x_mean, y - y_mean
    coef = np.linalg.solve(xc.T @ xc + alpha * len(y) * 1e-3 * np.eye(window), xc.T @ yc)
    return RidgeAR(window=window, coef=coef, intercept=float(y_mean - x_mean @ coef))


# ---- LightGBM ----------------------------------------------------------------------------
def lightgbm_features(panel: Panel, n_idx: np.ndarray, t_idx: np.ndarray) -> np.ndarray:
    """Lags 1-4 and one year, rolling means, last externals, statics, category, calendar."""
    season = steps_per_year(panel.frequency)
    short = 4 if panel.frequency == "W" else 7
    y = np.nan_to_num(panel.y)
    cols: list[np.ndarray] = []
    for lag in (*range(1, short + 1), season - 1, season, season + 1):
        steps = t_idx - lag
        cols.append(np.where(steps >= 0, y[n_idx, np.maximum(steps, 0)], np.nan))
    for span in (short, 3 * short, season // 4):
        lags = _lag_matrix(panel, n_idx, t_idx, span)
        cols.append(lags.mean(1))
    last = panel.dynamic[n_idx, np.maximum(t_idx - 1, 0), 1:]  # present, externals, festival
    return np.column_stack(
        [
            *cols,
            last,
            panel.static[n_idx],
            panel.series_category[n_idx].astype(np.float64),
            panel.target_feats[t_idx],
        ]
    )


class PanelPredict(Protocol):
    """A fitted model's forecast of instances, on its training panel or on `on`: a copy
    whose future steps hold fed-back forecasts (the horizon evaluation's rollout)."""

    def __call__(
        self, n_idx: np.ndarray, t_idx: np.ndarray, /, on: Panel | None = None
    ) -> np.ndarray: ...


def fit_lightgbm(
    panel: Panel,
    n_idx: np.ndarray,
    t_idx: np.ndarray,
    val_n: np.ndarray,
    val_t: np.ndarray,
    seed: int = 0,
    threads: int = 1,
) -> tuple[PanelPredict, int]:
    """Global LightGBM on normalised targets, early-stopped on the validation instances.

    Returns (predict, boosting rounds kept). No refit on the validation period: like the
    networks, the model never trains on a validation target (it reads the period as history
    when it forecasts the test year, as every method does).
    """
    import lightgbm as lgb

    x = lightgbm_features(panel, n_idx, t_idx)
    y = np.nan_to_num(panel.y[n_idx, t_idx])
    cat_col = x.shape[1] - panel.target_feats.shape[1] - 1
    params = {
        "objective": "l2",
        "learning_rate": 0.05,
        "num_leaves": 63,
        "min_data_in_leaf": 20,
        "feature_fraction": 0.8,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "seed": seed,
        "num_threads": threads,
        "verbose": -1,
    }
    train_set = lgb.Dataset(x, y, categorical_feature=[cat_col])
    callbacks: list[Callable[..., Any]] = []
    valid_sets: list[Any] = []
    if len(val_n):
        x_val = lightgbm_features(panel, val_n, val_t)
        y_val = np.nan_to_num(panel.y[val_n, val_t])
        valid_sets = [lgb.Dataset(x_val, y_val, categorical_feature=[cat_col], reference=train_set)]
        callbacks = [lgb.early_stopping(40, verbose=False)]
    booster = lgb.train(
        params, train_set, num_boost_round=600, valid_sets=valid_sets, callbacks=callbacks
    )
    rounds = int(booster.best_iteration or booster.current_iteration())

    def predict(nn_idx: np.ndarray, tt_idx: np.ndarray, on: Panel | None = None) -> np.ndarray:
        features = lightgbm_features(panel if on is None else on, nn_idx, tt_idx)
        return np.asarray(booster.predict(features, num_iteration=rounds), dtype=np.float64)

    return predict, rounds


# ---- neural baselines ----------------------------------------------------------------------
class LSTNet(nn.Module):
    """LSTNet (Lai et al. 2018) on one series' window, plus the target step's calendar."""

    def __init__(
        self,
        n_dynamic: int,
        n_target: int,
        window: int,
        skip: int,
        ar_window: int,
        hidden: int = 32,
        kernel: int = 3,
    ) -> None:
        super().__init__()
        self.skip, self.ar_window, self.window = skip, ar_window, window
        self.conv = nn.Conv1d(n_dynamic, hidden, kernel)
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.skip_gru = nn.GRU(hidden, hidden // 2, batch_first=True)
        self.n_skip = (window - kernel + 1) // skip
        self.out = nn.Linear(hidden + (hidden // 2) * skip + n_target, 1)
        self.highway = nn.Linear(ar_window, 1)

    def forward(self, hist: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        recent = hist[:, -self.window :, :]  # the recurrent part reads the last `window` steps
        c = torch.relu(self.conv(recent.transpose(1, 2))).transpose(1, 2)  # [B, L, H]
        _, h = self.gru(c)
        feats = [h[-1]]
        if self.n_skip > 0:
            b, length, hid = c.shape
            tail = c[:, length - self.n_skip * self.skip :, :]  # [B, k*p, H]
            # p phase chains of k steps each (LSTNet's skip-RNN).
            chains = tail.reshape(b, self.n_skip, self.skip, hid).transpose(1, 2)
            _, hs = self.skip_gru(chains.reshape(b * self.skip, self.n_skip, hid))
            feats.append(hs[-1].reshape(b, -1))
        else:
            feats.append(
                torch.zeros(
                    hist.shape[0], self.out.in_features - feats[0].shape[1] - target.shape[1]
                )
            )
        nonlinear = self.out(torch.cat([*feats, target], dim=-1)).squeeze(-1)
        return nonlinear + self.highway(hist[:, -self.ar_window :, 0]).squeeze(-1)


class MetaGRU(nn.Module):
    """A GRU whose weights a meta-learner generates from region statics and the category."""

    def __init__(
        self,
        n_dynamic: int,
        n_static: int,
        n_target: int,
        n_categories: int,
        steps: int,
        hidden: int = 16,
        meta_hidden: int = 32,
    ) -> None:
        super().__init__()
        self.steps, self.hidden, self.n_dynamic = steps, hidden, n_dynamic
        self.category = nn.Embedding(n_categories, 8)
        n_weights = 3 * hidden * (n_dynamic + hidden) + 3 * hidden
        generator = nn.Linear(meta_hidden, n_weights)
        nn.init.normal_(generator.weight, std=0.01)  # start near the shared base weights
        self.meta = nn.Sequential(nn.Linear(n_static + 8, meta_hidden), nn.ReLU(), generator)
        self.base = nn.Parameter(torch.randn(n_weights) * 0.1)
        # The output also sees the window's oldest value (52 weeks back on weekly data):
        # the same-period-last-year signal every other model here has access to.
        self.out = nn.Linear(hidden + n_target + n_static + 8 + 1, 1)

    def forward(
        self,
        hist: torch.Tensor,
        static: torch.Tensor,
        category: torch.Tensor,
        target: torch.Tensor,
    ) -> torch.Tensor:
        meta_in = torch.cat([static, self.category(category)], dim=-1)
        w = self.base + self.meta(meta_in)  # [B, n_weights]
        h3, f = 3 * self.hidden, self.n_dynamic
        w_ih = w[:, : h3 * f].reshape(-1, h3, f)
        w_hh = w[:, h3 * f : h3 * (f + self.hidden)].reshape(-1, h3, self.hidden)
        bias = w[:, h3 * (f + self.hidden) :]
        h = torch.zeros(hist.shape[0], self.hidden)
        for x in hist[:, -self.steps :, :].unbind(1):
            gi = torch.bmm(w_ih, x[:, :, None]).squeeze(-1) + bias
            gh = torch.bmm(w_hh, h[:, :, None]).squeeze(-1)
            ir, iz, inn = gi.chunk(3, -1)
            hr, hz, hn = gh.chunk(3, -1)
            r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
            n = torch.tanh(inn + r * hn)
            h = (1 - z) * n + z * h
        oldest = hist[:, :1, 0]  # [B, 1]
        return self.out(torch.cat([h, target, meta_in, oldest], dim=-1)).squeeze(-1)


def fit_network(
    net: nn.Module,
    call: Callable[[nn.Module, dict[str, torch.Tensor]], torch.Tensor],
    panel: Panel,
    n_idx: np.ndarray,
    t_idx: np.ndarray,
    window: int,
    *,
    budget: Budget,
    steps_in: Callable[[int], int],
    validate: Callable[[], float] | None,
    label: str,
    batch: int = 256,
    lr: float = 3e-3,
    seed: int = 0,
) -> FitReport:
    """Adam on MSE of normalised targets, mini-batches drawn uniformly, `steps_in(epoch)`
    per epoch of `training.loop.fit`; `validate()` is an error (lower is better)."""
    rng = seed_everything(seed)
    opt = torch.optim.Adam(net.parameters(), lr=lr)

    def run_epoch(epoch: int) -> float:
        losses = []
        for _ in range(steps_in(epoch)):
            pick = rng.integers(0, len(n_idx), size=batch)
            inputs = {
                k: torch.from_numpy(np.asarray(v))
                for k, v in gather(panel, n_idx[pick], t_idx[pick], window).items()
            }
            loss = torch.mean((call(net, inputs) - inputs["y"]) ** 2)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            losses.append(float(loss.detach()))
        return float(np.mean(losses)) if losses else float("nan")

    return fit(net, run_epoch, validate, budget, label=label, higher_is_better=False)


def predict_network(
    net: nn.Module,
    call: Callable[[nn.Module, dict[str, torch.Tensor]], torch.Tensor],
    panel: Panel,
    n_idx: np.ndarray,
    t_idx: np.ndarray,
    window: int,
    batch: int = 2048,
) -> np.ndarray:
    out = []
    net.eval()
    with torch.no_grad():
        for i in range(0, len(n_idx), batch):
            inputs = {
                k: torch.from_numpy(np.asarray(v))
                for k, v in gather(
                    panel, n_idx[i : i + batch], t_idx[i : i + batch], window
                ).items()
            }
            out.append(call(net, inputs).numpy())
    return np.concatenate(out).astype(np.float64) if out else np.zeros(0)


def call_lstnet(net: nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    return net(inputs["hist"], inputs["target"])


def call_metagru(net: nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    return net(inputs["hist"], inputs["static"], inputs["category"], inputs["target"])
