"""Intent (TPG-DNN) training samples from a canonical event log: (user, cut time) rows.

For every cut time the features of a user use only events strictly before the cut, and the
labels (did the user browse / collect / cart / purchase, and how many purchases) come from
the label window `[cut, cut + label_seconds)` after it: the paper's "data at t-1 as
training, t+1 as testing" next-day setting (sec. 4.1) when buckets and the label window are
days. The per-user counts go through `service.servables.intent_features.build_features`,
the same numpy code the service runs on the counts it keeps in Redis.

Any event log in the canonical schema works: cut times are derived from the data's own
span and the configured bucket size, nothing here knows a particular data set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from service.actions import ACTIONS
from service.servables.intent_features import (
    N_ACTIONS,
    FeatureSpec,
    build_features,
    counts_from_events,
)
from training.splits import USER_SPLIT_FRACTIONS, user_parts


@dataclass
class IntentSamples:
    """Model inputs and labels for a set of (user, cut) rows."""

    fields: np.ndarray  # [N, M] int64
    short: np.ndarray  # [N, short_len, 4] float32
    long: np.ndarray  # [N, long_len, 4] float32
    labels: np.ndarray  # [N, 4] int64, ACTIONS order
    order_volume: np.ndarray  # [N] float32: purchases in the label window
    user_id: np.ndarray  # [N] str
    cut_ts: np.ndarray  # [N] int64

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, mask: np.ndarray) -> IntentSamples:
        return IntentSamples(
            self.fields[mask],
            self.short[mask],
            self.long[mask],
            self.labels[mask],
            self.order_volume[mask],
            self.user_id[mask],
            self.cut_ts[mask],
        )

    def flat(self) -> np.ndarray:
        """One row per sample for the classical baselines: one-hot-free raw bins + series."""
        n = len(self)
        return np.concatenate(
            [self.fields.astype(np.float32), self.short.reshape(n, -1), self.long.reshape(n, -1)],
            axis=1,
        )


def action_codes(actions: pd.Series) -> np.ndarray:
    """Canonical action names -> 0..3 in funnel order; unknown names raise (adapters map them)."""
    mapping = {a: i for i, a in enumerate(ACTIONS)}
    codes = actions.astype(str).map(mapping)
    if codes.isna().any():
        bad = sorted(set(actions[codes.isna()].astype(str)))[:5]
        raise ValueError(f"unknown actions in events: {bad}")
    return codes.to_numpy(dtype=np.int64)


def choose_cuts(
    ts: np.ndarray, spec: FeatureSpec, label_seconds: int, step_seconds: int | None = None
) -> list[int]:
    """Cut times on bucket boundaries from `short_len` buckets into the data to its end.

    The last cut leaves a full label window inside the data, so no label is truncated. When
    every time lies on a bucket boundary (day-resolution logs stamp events at midnight), the
    last time stands for its whole bucket, which the data covers: its day is labelled too
    (IJCAI-15 data_format2 ends on Double 11, the only day with purchases).
    """
    if len(ts) == 0:
        return []
    b = spec.bucket_seconds
    step = int(step_seconds or label_seconds)
    first = (int(ts.min()) // b) * b + spec.short_len * b
    covered = b if not np.any(np.asarray(ts, dtype=np.int64) % b) else 1
    last = int(ts.max()) + covered - label_seconds
    if last < first:
        return []
    # align so that the last cut is a bucket boundary and walk back by `step`
    last = (last // b) * b
    return sorted(range(last, first - 1, -step))


def build_samples(
    events: pd.DataFrame,
    cuts: list[int],
    spec: FeatureSpec,
    label_seconds: int,
    active_only: bool = True,
) -> IntentSamples:
    """One row per (user, cut) for users with history in the feature window of that cut.

    Users with no event in the window are cold-start users: the service answers them with an
    explicit cold-start response instead of a model score, so they are left out of training
    and evaluation alike (`active_only`).
    """
    users, user_codes = np.unique(events["user_id"].astype(str).to_numpy(), return_inverse=True)
    ts = events["ts"].to_numpy(dtype=np.int64)
    act = action_codes(events["action"])
    horizon = spec.window * spec.bucket_seconds
    parts: list[dict[str, np.ndarray]] = []
    for cut in cuts:
        feat_mask = (ts >= cut - horizon) & (ts < cut)
        label_mask = (ts >= cut) & (ts < cut + label_seconds)
        present = np.unique(user_codes[feat_mask]) if active_only else np.arange(len(users))
        if len(present) == 0:
            continue
        local = np.full(len(users), -1, dtype=np.int64)
        local[present] = np.arange(len(present))
        fm = feat_mask & (local[user_codes] >= 0)
        counts = counts_from_events(
            local[user_codes[fm]], ts[fm], act[fm], np.full(len(present), cut), len(present), spec
        )
        feats = build_features(counts, np.full(len(present), cut, dtype=np.int64), spec)
        lab = np.zeros((len(present), N_ACTIONS), dtype=np.int64)
        lm = label_mask & (local[user_codes] >= 0)
        np.add.at(lab, (local[user_codes[lm]], act[lm]), 1)
        parts.append(
            {
                **feats,
                "labels": (lab > 0).astype(np.int64),
                "order_volume": lab[:, ACTIONS.index("purchase")].astype(np.float32),
                "user_id": users[present],
                "cut_ts": np.full(len(present), cut, dtype=np.int64),
            }
        )
    if not parts:
        raise ValueError(
            "no (user, cut) samples: the log is shorter than one bucket plus a label window"
        )
    cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return IntentSamples(**cat)


def time_split(
    samples: IntentSamples, label_seconds: int, val_cuts: int = 1, test_cuts: int = 1
) -> tuple[IntentSamples, IntentSamples, IntentSamples]:
    """Train / validation / test by cut time: the last `test_cuts` cuts are the test set.

    Train rows whose label window reaches into the first validation cut are dropped (and the
    same between validation and test), so no label is seen twice across splits.
    """
    cuts = np.unique(samples.cut_ts)
    if len(cuts) < val_cuts + test_cuts + 1:
        raise ValueError(
            f"need at least {val_cuts + test_cuts + 1} cut times, the data gives {len(cuts)}"
        )
    test_start = cuts[-test_cuts]
    val_start = cuts[-(test_cuts + val_cuts)]
    c = samples.cut_ts
    train = samples.subset(c + label_seconds <= val_start)
    val = samples.subset((c >= val_start) & (c + label_seconds <= test_start))
    test = samples.subset(c >= test_start)
    return train, val, test


def user_split(
    samples: IntentSamples, seed: int, fractions: tuple[float, float, float] = USER_SPLIT_FRACTIONS
) -> tuple[IntentSamples, IntentSamples, IntentSamples]:
    """Train / validation / test by user (`training.splits.user_parts`): all rows of a user,
    every cut, in one part; for logs whose purchases all fall in one label window.
    """
    in_train, in_val, in_test = user_parts(samples.user_id, seed, fractions)
    return samples.subset(in_train), samples.subset(in_val), samples.subset(in_test)
