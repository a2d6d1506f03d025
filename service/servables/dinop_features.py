"""DINOP's per-item feature transforms, the one definition training and serving share.

Training builds its tensors with these methods (`training.features.dinop`) and serving
rebuilds the same rows from Redis history (`service.servables.dinop`); a second copy would
let the two drift apart silently, so both import this numpy-only module (the service has
no pandas or torch). The manifest stores `DinopFeatures.to_config()` under
`config["featurizer"]`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: What the GMV head predicts (`DinopFeatures.gmv_target_kind`).
GMV_TARGET_KINDS = ("uplift", "level")


def slog(x: np.ndarray) -> np.ndarray:
    """Signed log1p: keeps the sign of returns and tames the heavy sales tail."""
    out: np.ndarray = np.sign(x) * np.log1p(np.abs(x))
    return out


def one_hot(value: str, vocab: list[str]) -> np.ndarray:
    out = np.zeros(len(vocab))
    if value in vocab:
        out[vocab.index(value)] = 1.0
    return out


def _float(value: Any) -> float:
    """A static profile value as a number; missing or non-numeric is NaN (z-scored to 0)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


@dataclass
class DinopFeatures:
    """Everything needed to rebuild the tensors for one item, in training and in serving."""

    presale_steps: int
    static_steps: int
    regions: list[str]
    categories: list[str]
    promo_types: list[str]
    dis_columns: list[str]  # external columns used as item-sales inputs
    du_columns: list[str]  # external columns used as target-user controls
    static_numeric: list[str]
    static_text: dict[str, list[str]]  # column -> vocabulary
    du_mean: list[float] = field(default_factory=list)
    du_std: list[float] = field(default_factory=list)
    static_mean: list[float] = field(default_factory=list)
    static_std: list[float] = field(default_factory=list)
    gmv_mean: float = 0.0
    gmv_std: float = 1.0
    scale_floor: float = 1.0
    # "uplift": the GMV head predicts the change from the last pre-sale period's sales (in
    # units of the item's usual level), so an output of 0 is the naive forecast and a
    # promotion type training never saw falls back to it; "level": the GMV itself (the
    # paper's reading, and every artifact written before the uplift existed).
    gmv_target_kind: str = "level"

    def __post_init__(self) -> None:
        if self.gmv_target_kind not in GMV_TARGET_KINDS:
            raise ValueError(
                f"gmv_target_kind must be one of {GMV_TARGET_KINDS}, got {self.gmv_target_kind!r}"
            )

    def _base(self, gmv_shape: tuple[int, ...], last: np.ndarray | None) -> np.ndarray | float:
        if self.gmv_target_kind == "level":
            return 0.0
        if last is None:
            raise ValueError("an uplift GMV target needs the last pre-sale period's sales")
        return np.broadcast_to(np.asarray(last, dtype=np.float64), gmv_shape)

    def gmv_target(
        self, gmv: np.ndarray, scale: np.ndarray, last: np.ndarray | None = None
    ) -> np.ndarray:
        """GMV (less the last pre-sale period's sales, for an uplift target) in units of the
        item's usual level, z-scored (what the GMV head predicts)."""
        base = self._base(np.shape(gmv), last)
        level = (gmv - base) / np.maximum(scale, self.scale_floor)
        z: np.ndarray = (level - self.gmv_mean) / self.gmv_std
        return z

    def gmv_from(
        self, z: np.ndarray, scale: np.ndarray, last: np.ndarray | None = None
    ) -> np.ndarray:
        """Back to currency units."""
        base = self._base(np.shape(z), last)
        gmv: np.ndarray = (z * self.gmv_std + self.gmv_mean) * np.maximum(
            scale, self.scale_floor
        ) + base
        return gmv

    @property
    def dis_dim(self) -> int:
        return 1 + len(self.dis_columns) + 2  # sales, dis columns, markdown-known, festival

    @property
    def du_dim(self) -> int:
        return max(1, len(self.du_columns))

    @property
    def sii_dim(self) -> int:
        text = sum(len(v) for v in self.static_text.values())
        return (
            len(self.regions)
            + len(self.categories)
            + len(self.static_numeric)
            + text
            + len(self.promo_types)
        )

    @property
    def sis_dim(self) -> int:
        return self.static_steps + 6

    def to_config(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> DinopFeatures:
        return cls(**config)

    # ---- per-instance transforms ---------------------------------------------------------
    def dis_row(
        self, sales: float, dis_values: Sequence[float] | np.ndarray, festival: bool
    ) -> np.ndarray:
        vals = np.nan_to_num(np.asarray(dis_values, dtype=np.float64), nan=0.0)
        raw = np.asarray(dis_values, dtype=np.float64)
        known = float(len(raw) > 0 and not np.all(np.isnan(raw)))
        head = [float(slog(np.array(sales))) / 10.0]
        return np.concatenate([head, slog(vals) / 10.0, [known, float(festival)]])

    def du_norm(self, du: np.ndarray) -> np.ndarray:
        if not self.du_columns:
            return np.zeros((*du.shape[:-1], 1))
        mean, std = np.asarray(self.du_mean), np.asarray(self.du_std)
        normed: np.ndarray = np.nan_to_num((du - mean) / std, nan=0.0)
        return normed

    def sii_row(
        self, region: str, category: str, static: Mapping[str, Any], promo: str
    ) -> np.ndarray:
        parts = [
            one_hot(region, self.regions),
            one_hot(category, self.categories),
        ]
        if self.static_numeric:
            num = np.array([_float(static.get(c)) for c in self.static_numeric])
            num = np.nan_to_num(
                (num - np.asarray(self.static_mean)) / np.asarray(self.static_std), nan=0.0
            )
            parts.append(num)
        for col, vocab in self.static_text.items():
            parts.append(one_hot(str(static.get(col, "")), vocab))
        parts.append(one_hot(promo, self.promo_types))
        return np.concatenate(parts)

    def sis_row(self, static_sales: np.ndarray, share: float, cum_share: float) -> np.ndarray:
        """Static-window sales, their summary, and the item's usual standing in its
        category (share of the category's static-window sales, and eq. 2's cumulative
        share computed on that window)."""
        x = slog(np.asarray(static_sales, dtype=np.float64)) / 10.0
        obs = ~np.isnan(x)
        filled = np.where(obs, x, 0.0)
        if obs.any():
            stats = [x[obs].mean(), x[obs].std(), x[obs].max(), obs.mean()]
        else:
            stats = [0.0, 0.0, 0.0, 0.0]
        return np.concatenate([filled, stats, [share, cum_share]])
