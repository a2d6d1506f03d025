"""TPG-DNN (intent) features from per-user behaviour counts: numpy only, shared by both sides.

Training (`training/features/intent.py`) and serving (`service/servables/intent.py`) both
call `build_features` on the same `[N, W, 4]` array of per-bucket action counts, so the
offline and online feature paths cannot drift: the only thing each side does on its own is
fill that array (offline from the canonical event log with a cut time, online from the
bucketed counts the `/v1/events` pipeline keeps in Redis, or from events a stateless call
carries).

The paper (sec. 3.1) bins numerical variables into boxes and one-hot encodes them, then
embeds each field; the boxes here have fixed edges (log2 or hand-set), so they need no
fitted vocabulary and an artifact only has to record the `FeatureSpec`. The short- and
long-term series of sec. 3.2 ("Transformer component") are the last `short_len` buckets
and `long_len` groups of `long_group` buckets, log1p-scaled.

Why counts and not raw events: counts per (user, bucket, action) are what an online store
can keep bounded and update in O(1) per event, and they carry everything these features use.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from service.actions import ACTIONS

N_ACTIONS = len(ACTIONS)

_LOG2_BINS = 12  # counts 0, 1, 2-3, 4-7, ... , >= 1024
_RECENCY_EDGES = np.array([1, 2, 3, 5, 8, 15, 29, 57], dtype=np.float64)  # buckets ago
_RECENCY_VOCAB = len(_RECENCY_EDGES) + 2  # + "never in window"
_TREND_VOCAB = 6
_CONV_EDGES = np.array([0.0, 0.01, 0.03, 0.1, 0.3], dtype=np.float64)
_CONV_VOCAB = len(_CONV_EDGES) + 2  # + "no browse at all"


@dataclass(frozen=True)
class FeatureSpec:
    """How counts are bucketed and windowed; stored in the artifact's config."""

    bucket_seconds: int = 86_400  # one day: the paper's "recorded days" (sec. 3.2)
    short_len: int = 7  # short-term series: "a few days" (sec. 3.2); one week of days
    long_len: int = 8  # long-term series: T periods (sec. 3.2); 8 weeks
    long_group: int = 7  # buckets per long-term period (a week of days)

    def __post_init__(self) -> None:
        for name in ("bucket_seconds", "short_len", "long_len", "long_group"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"FeatureSpec.{name} must be >= 1")

    @property
    def window(self) -> int:
        """Buckets of history the features read (the long window covers the short one)."""
        return max(self.short_len, self.long_len * self.long_group)

    def to_dict(self) -> dict[str, int]:
        return {k: int(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSpec:
        return cls(
            **{k: int(data[k]) for k in ("bucket_seconds", "short_len", "long_len", "long_group")}
        )


# One categorical field per entry: (name, vocabulary size). The model embeds each field.
FIELDS: tuple[tuple[str, int], ...] = (
    *((f"total_{a}", _LOG2_BINS) for a in ACTIONS),
    *((f"recency_{a}", _RECENCY_VOCAB) for a in ACTIONS),
    *((f"short_{a}", _LOG2_BINS) for a in ACTIONS),
    ("active_buckets", _LOG2_BINS),
    ("max_streak", _LOG2_BINS),
    ("tenure", _RECENCY_VOCAB),
    ("trend", _TREND_VOCAB),
    ("buy_per_browse", _CONV_VOCAB),
    ("weekday", 7),
    ("hour", 24),
)
FIELD_NAMES: tuple[str, ...] = tuple(name for name, _ in FIELDS)
FIELD_VOCABS: tuple[int, ...] = tuple(size for _, size in FIELDS)


def _log2_bin(x: np.ndarray) -> np.ndarray:
    """0 -> 0, 1 -> 1, 2-3 -> 2, 4-7 -> 3, ...; capped at the last bin."""
    out = np.where(x >= 1, np.floor(np.log2(np.maximum(x, 1.0))).astype(np.int64) + 1, 0)
    return np.minimum(out, _LOG2_BINS - 1)


def _recency_bin(ago: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Buckets since the last occurrence -> bin; `_RECENCY_VOCAB - 1` means never in window."""
    binned = np.digitize(ago, _RECENCY_EDGES).astype(np.int64)
    return np.where(present, binned, _RECENCY_VOCAB - 1)


def _max_streak(active: np.ndarray) -> np.ndarray:
    """Longest run of consecutive active buckets per row of a boolean [N, W] array.

    Without a loop over W (a served request has few users, so per-bucket numpy calls would
    dominate it): `total[t]` counts active buckets up to t, and the run ending at t is
    `total[t]` minus the count at the last inactive bucket at or before t.
    """
    if active.shape[1] == 0:
        return np.zeros(active.shape[0], dtype=np.int64)
    total = np.cumsum(active, axis=1, dtype=np.int64)
    at_gap = np.maximum.accumulate(np.where(active, 0, total), axis=1)
    longest: np.ndarray = (total - at_gap).max(axis=1)
    return longest


def counts_from_events(
    user_index: np.ndarray,
    ts: np.ndarray,
    action_index: np.ndarray,
    cut_ts: np.ndarray,
    n_users: int,
    spec: FeatureSpec,
) -> np.ndarray:
    """Per-user bucketed counts `[n_users, W, 4]` of events strictly before each user's cut.

    `cut_ts` is one Unix time per user (`[n_users]`). Bucket `W-1` is the bucket that ends
    at the cut, `[cut - bucket_seconds, cut)`; events at or after the cut, or older than
    the window, are ignored, so a label window can never leak into the features.
    """
    w = spec.window
    counts = np.zeros((n_users, w, N_ACTIONS), dtype=np.float32)
    if len(ts) == 0:
        return counts
    user_index = np.asarray(user_index, dtype=np.int64)
    cut = np.asarray(cut_ts, dtype=np.int64)[user_index]
    ago = (cut - 1 - np.asarray(ts, dtype=np.int64)) // spec.bucket_seconds  # 0 = last bucket
    keep = (np.asarray(ts, dtype=np.int64) < cut) & (ago < w)
    np.add.at(
        counts,
        (user_index[keep], (w - 1 - ago[keep]).astype(np.int64), np.asarray(action_index)[keep]),
        1.0,
    )
    return counts


def build_features(
    counts: np.ndarray, cut_ts: np.ndarray, spec: FeatureSpec
) -> dict[str, np.ndarray]:
    """The model's inputs from `[N, W, 4]` counts (oldest bucket first) and each row's cut time.

    Returns `fields` int64 `[N, len(FIELDS)]`, `short` float32 `[N, short_len, 4]` and
    `long` float32 `[N, long_len, 4]`: exactly the graph inputs of `models.tpgdnn.TPGDNN`.
    """
    counts = np.asarray(counts, dtype=np.float32)
    n, w, a = counts.shape
    if w != spec.window or a != N_ACTIONS:
        raise ValueError(f"counts must be [N, {spec.window}, {N_ACTIONS}], got {counts.shape}")
    cut_ts = np.asarray(cut_ts, dtype=np.int64).reshape(-1)
    if len(cut_ts) != n:
        raise ValueError("one cut time per row is required")

    short_counts = counts[:, w - spec.short_len :, :]  # [N, S, 4]
    long_span = spec.long_len * spec.long_group
    long_counts = counts[:, w - long_span :, :].reshape(n, spec.long_len, spec.long_group, a).sum(2)

    total = counts.sum(1)  # [N, 4]
    present = counts > 0  # [N, W, 4]
    last_idx = np.where(present.any(1), w - 1 - np.argmax(present[:, ::-1, :], axis=1), -1)
    ago = (w - 1 - last_idx).astype(np.float64)  # [N, 4] buckets since last occurrence
    active = counts.sum(2) > 0  # [N, W]
    any_active = active.any(1)
    first_idx = np.argmax(active, axis=1)
    tenure = (w - 1 - first_idx).astype(np.float64)

    recent = counts[:, w - spec.short_len :, :].sum((1, 2))
    previous_start = max(w - 2 * spec.short_len, 0)
    previous = counts[:, previous_start : w - spec.short_len, :].sum((1, 2))
    ratio = (recent + 1.0) / (previous + 1.0)
    trend = np.select(
        [(recent == 0) & (previous == 0), ratio < 0.5, ratio < 0.9, ratio <= 1.1, ratio <= 2.0],
        [0, 1, 2, 3, 4],
        default=5,
    ).astype(np.int64)
    browse, purchase = total[:, 0], total[:, 3]
    conv = np.where(
        browse > 0,
        np.digitize(purchase / np.maximum(browse, 1.0), _CONV_EDGES, right=True),
        _CONV_VOCAB - 1,
    ).astype(np.int64)

    # context of the cut (UTC): 1970-01-01 was a Thursday, weekday 3 with Monday = 0
    weekday = ((cut_ts // 86_400 + 3) % 7).astype(np.int64)
    hour = ((cut_ts % 86_400) // 3600).astype(np.int64)

    fields = np.concatenate(
        [
            _log2_bin(total),
            _recency_bin(ago, last_idx >= 0),
            _log2_bin(short_counts.sum(1)),
            _log2_bin(active.sum(1).astype(np.float64))[:, None],
            _log2_bin(_max_streak(active).astype(np.float64))[:, None],
            _recency_bin(tenure, any_active)[:, None],
            trend[:, None],
            conv[:, None],
            weekday[:, None],
            hour[:, None],
        ],
        axis=1,
    ).astype(np.int64)
    return {
        "fields": fields,
        "short": np.log1p(short_counts).astype(np.float32),
        "long": np.log1p(long_counts).astype(np.float32),
    }
