"""MetaCVR's feature fields and how a user's recent events become them, for both sides.

The paper's five feature parts (Sec. III-A) map onto fixed fields, numeric values
discretised by boundaries into buckets (Sec. III-C). User and interaction fields come from
the user's recent events only, through `history_fields`, which the servable calls on the
Redis behaviour sequence and training calls on the log: one definition, so training and
serving compute them the same way. Training's sample building is `training.features.cvr`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.actions import ACTION_IDS

FIELDS: tuple[str, ...] = (
    "user", "item", "category",  # ids (vocabularies, 0 = unknown)
    "u_events", "u_clicks", "u_buys", "u_cvr",  # user
    "i_clicks", "i_buys", "i_cvr",  # item
    "ui_clicks", "ui_deep", "ui_bought", "uc_clicks", "uc_buys",  # user-item interaction
    "occasion", "dow", "hour", "recency",  # context
)  # fmt: skip
FIELD_INDEX: dict[str, int] = {name: i for i, name in enumerate(FIELDS)}
#: Groups for the model's embeddings (paper: e_u, e_i, e_ui, e_c).
GROUPS: dict[str, tuple[int, ...]] = {
    "user": (0, 3, 4, 5, 6),
    "item": (1, 2, 7, 8, 9),
    "inter": (10, 11, 12, 13, 14),
    "ctx": (15, 16, 17, 18),
}
COUNT_BUCKETS = 12  # 0, then 1 + floor(log2(n)) capped
RATE_BUCKETS = 12  # 0 = no clicks, then 1 + floor(10 * rate) (rate 1.0 -> 11)
RECENCY_BUCKETS = 16  # 0 = no previous event, then 1 + floor(log2(1 + hours)) capped


def count_bucket(n: np.ndarray | float) -> np.ndarray:
    """0 for zero; 1 + floor(log2 n) otherwise, capped: counts span orders of magnitude."""
    arr = np.asarray(n, dtype=np.float64)
    out = np.where(arr > 0, 1 + np.floor(np.log2(np.maximum(arr, 1.0))), 0)
    return np.minimum(out, COUNT_BUCKETS - 1).astype(np.int64)


def rate_bucket(num: np.ndarray | float, den: np.ndarray | float) -> np.ndarray:
    numa = np.asarray(num, dtype=np.float64)
    dena = np.asarray(den, dtype=np.float64)
    rate = np.clip(numa / np.maximum(dena, 1.0), 0.0, 1.0)
    return np.where(dena > 0, 1 + np.floor(10 * rate), 0).astype(np.int64)


def recency_bucket(seconds: np.ndarray | float) -> np.ndarray:
    sec = np.asarray(seconds, dtype=np.float64)
    out = np.where(sec >= 0, 1 + np.floor(np.log2(1.0 + np.maximum(sec, 0) / 3600.0)), 0)
    return np.minimum(out, RECENCY_BUCKETS - 1).astype(np.int64)


def count_bucket_int(n: int) -> int:
    """Scalar `count_bucket` for a non-negative integer count (1 + floor(log2 n) = bit length)."""
    return min(int(n).bit_length(), COUNT_BUCKETS - 1) if n > 0 else 0


def rate_bucket_int(num: int, den: int) -> int:
    """Scalar `rate_bucket`, the same float arithmetic without numpy's per-call overhead."""
    if den <= 0:
        return 0
    rate = min(max(num / max(den, 1.0), 0.0), 1.0)
    return 1 + math.floor(10 * rate)


def recency_bucket_int(seconds: int) -> int:
    """Scalar `recency_bucket`."""
    if seconds < 0:
        return 0
    return min(1 + math.floor(math.log2(1.0 + seconds / 3600.0)), RECENCY_BUCKETS - 1)


@dataclass(frozen=True)
class FeatureSpec:
    seq_len: int = 20  # behaviour sequence length fed to the attention
    stats_window: int = 100  # user/interaction statistics use this many most recent events

    def cardinalities(self, n_users: int, n_items: int, n_cats: int) -> list[int]:
        """Embedding table sizes per field (vocab sizes include the 0 = unknown row)."""
        sizes = {
            "user": n_users,
            "item": n_items,
            "category": n_cats,
            "u_cvr": RATE_BUCKETS,
            "i_cvr": RATE_BUCKETS,
            "occasion": 4,
            "dow": 7,
            "hour": 24,
            "recency": RECENCY_BUCKETS,
        }
        return [sizes.get(name, COUNT_BUCKETS) for name in FIELDS]


def history_fields(
    hist_items: np.ndarray,
    hist_cats: np.ndarray,
    hist_actions: np.ndarray,
    hist_ts: np.ndarray,
    item: Any,
    category: Any,
    ts: int,
    spec: FeatureSpec,
) -> tuple[dict[str, int], slice]:
    """User + interaction fields from the user's events before `ts` (oldest first).

    `hist_*` must already be restricted to events strictly before the click. Items and
    categories may be raw ids or codes; only equality with `item`/`category` is used.
    Returns the field values and the slice of the history that forms the sequence.
    """
    n = len(hist_actions)
    lo = max(0, n - spec.stats_window)
    acts = hist_actions[lo:]
    items = hist_items[lo:]
    cats = hist_cats[lo:]
    clicks = acts == ACTION_IDS["browse"]
    buys = acts == ACTION_IDS["purchase"]
    deep = (acts == ACTION_IDS["collect"]) | (acts == ACTION_IDS["cart"])
    same_item = items == item
    same_cat = cats == category
    n_clicks, n_buys = int(clicks.sum()), int(buys.sum())
    values = {
        "u_events": count_bucket_int(len(acts)),
        "u_clicks": count_bucket_int(n_clicks),
        "u_buys": count_bucket_int(n_buys),
        "u_cvr": rate_bucket_int(n_buys, n_clicks),
        "ui_clicks": count_bucket_int(int((clicks & same_item).sum())),
        "ui_deep": count_bucket_int(int((deep & same_item).sum())),
        "ui_bought": count_bucket_int(int((buys & same_item).sum())),
        "uc_clicks": count_bucket_int(int((clicks & same_cat).sum())),
        "uc_buys": count_bucket_int(int((buys & same_cat).sum())),
        "recency": recency_bucket_int(ts - int(hist_ts[-1])) if n else 0,
    }
    return values, slice(max(0, n - spec.seq_len), n)


@dataclass(frozen=True)
class Histories:
    """Several users' behaviour sequences as flat columns, for `history_fields_many`.

    History k is rows ``starts[k]:starts[k + 1]``, in time order (stable: events at the same
    second keep the order they were given in, as `sorted` keeps it in `history_fields`'s
    callers). Items and categories are raw ids ("" for no category); only equality is used.
    """

    starts: np.ndarray  # [K + 1] int64 row offsets
    ts: np.ndarray  # [E] int64 Unix seconds
    actions: np.ndarray  # [E] int64 action codes (ACTION_IDS)
    items: list[str]  # [E]
    categories: list[str]  # [E]

    @classmethod
    def from_columns(
        cls,
        lengths: Sequence[int],
        ts: np.ndarray,
        actions: np.ndarray,
        items: list[str],
        categories: list[str],
    ) -> Histories:
        """Histories of `lengths[k]` consecutive rows each, sorted by time within each."""
        starts = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(np.asarray(lengths, dtype=np.int64), out=starts[1:])
        ts = np.asarray(ts, dtype=np.int64)
        owner = np.repeat(np.arange(len(lengths)), np.diff(starts))
        unsorted = len(ts) > 1 and bool(np.any((np.diff(ts) < 0) & (np.diff(owner) == 0)))
        if unsorted:  # stored in arrival order: put each history in time order, stably
            order = np.lexsort((ts, owner))
            ts, actions = ts[order], np.asarray(actions)[order]
            items = [items[i] for i in order.tolist()]
            categories = [categories[i] for i in order.tolist()]
        return cls(starts, ts, np.asarray(actions, dtype=np.int64), items, categories)


def row_ranges(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every row of the ranges ``lo[p]:hi[p]`` back to back, and the range each belongs to."""
    lengths = hi - lo
    owner = np.repeat(np.arange(len(lo)), lengths)
    first = np.cumsum(lengths) - lengths
    return np.arange(int(lengths.sum())) + np.repeat(lo - first, lengths), owner


def history_fields_many(
    hist: Histories,
    owner: np.ndarray,
    item: Sequence[str],
    category: Sequence[str],
    ts: np.ndarray,
    spec: FeatureSpec,
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """`history_fields` for many pairs at once: pair p reads history `owner[p]` before `ts[p]`.

    The same fields, bucket for bucket, in array operations over all pairs (a wave of a few
    hundred pairs costs a few dozen numpy calls, not a few dozen per pair). Returns each
    field's [P] values and, per pair, the rows ``seq_lo:hi`` of `hist` that form its
    sequence (the last `seq_len` events before its click).
    """
    owner = np.asarray(owner, dtype=np.int64)
    ts = np.asarray(ts, dtype=np.int64)
    n_pairs, n_rows = len(owner), len(hist.ts)
    first = hist.starts[owner]
    if n_rows:  # hi: the first row of the pair's history at or after its click
        t0 = int(hist.ts.min())
        span = int(hist.ts.max()) - t0 + 2
        row_owner = np.repeat(np.arange(len(hist.starts) - 1), np.diff(hist.starts))
        if span * len(hist.starts) < 2**62:  # one sorted key: (history, time)
            keys = row_owner * span + (hist.ts - t0)
            hi = np.searchsorted(keys, owner * span + np.clip(ts - t0, 0, span - 1))
        else:  # times too far apart for one int64 key
            hi = np.asarray(
                [
                    s + np.searchsorted(hist.ts[s:e], t)
                    for s, e, t in zip(first, hist.starts[owner + 1], ts, strict=True)
                ],
                dtype=np.int64,
            ).reshape(n_pairs)
    else:
        hi = first.copy()
    before = hi - first
    lo = np.maximum(first, hi - spec.stats_window)

    acts = hist.actions
    clicks = acts == ACTION_IDS["browse"]
    buys = acts == ACTION_IDS["purchase"]
    deep = (acts == ACTION_IDS["collect"]) | (acts == ACTION_IDS["cart"])

    def in_window(mask: np.ndarray) -> np.ndarray:
        total = np.zeros(n_rows + 1, dtype=np.int64)
        np.cumsum(mask, out=total[1:])
        counts: np.ndarray = total[hi] - total[lo]
        return counts

    codes: dict[str, int] = {}
    item_codes = np.fromiter(
        (codes.setdefault(v, len(codes)) for v in hist.items), np.int64, n_rows
    )
    pair_items = np.fromiter((codes.get(v, -1) for v in item), np.int64, n_pairs)
    codes = {}
    cat_codes = np.fromiter(
        (codes.setdefault(v, len(codes)) for v in hist.categories), np.int64, n_rows
    )
    pair_cats = np.fromiter((codes.get(v, -1) for v in category), np.int64, n_pairs)
    rows, pair = row_ranges(lo, hi)
    same_item = item_codes[rows] == pair_items[pair]
    same_cat = cat_codes[rows] == pair_cats[pair]

    def per_pair(mask: np.ndarray) -> np.ndarray:
        return np.bincount(pair, weights=mask, minlength=n_pairs).astype(np.int64)

    n_clicks, n_buys = in_window(clicks), in_window(buys)
    last = hist.ts[np.maximum(hi - 1, 0)] if n_rows else np.zeros(n_pairs, dtype=np.int64)
    values = {
        "u_events": count_bucket(hi - lo),
        "u_clicks": count_bucket(n_clicks),
        "u_buys": count_bucket(n_buys),
        "u_cvr": rate_bucket(n_buys, n_clicks),
        "ui_clicks": count_bucket(per_pair(clicks[rows] & same_item)),
        "ui_deep": count_bucket(per_pair(deep[rows] & same_item)),
        "ui_bought": count_bucket(per_pair(buys[rows] & same_item)),
        "uc_clicks": count_bucket(per_pair(clicks[rows] & same_cat)),
        "uc_buys": count_bucket(per_pair(buys[rows] & same_cat)),
        "recency": np.where(before > 0, recency_bucket(ts - last), 0).astype(np.int64),
    }
    return values, np.maximum(first, hi - spec.seq_len), hi


def context_fields(ts: int, occasion: int) -> dict[str, int]:
    """Day of week (Monday = 0) and hour in UTC, like the canonical `ts`."""
    day = ts // 86400
    return {"occasion": int(occasion), "dow": int((day + 3) % 7), "hour": int((ts % 86400) // 3600)}
