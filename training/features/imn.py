"""Event-stream features for IMN-Net and the next-item baselines.

Works on any canonical events frame (`training.schemas.EVENT_COLUMNS`), so every adapter's
output (Yoochoose sessions, Tmall brands, Taobao items, synthetic) goes through the same code.
What it computes, per event in stream order: the user's and the item's time since their
previous event, the user's time since their last purchase (the resource-limited branch's
Delta), the user's previous item, and JODIE's t-batch number.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from service.actions import ACTIONS

UNKNOWN = 0  # vocabulary index of an id not seen in training (users and items)


def chronological_split(
    events: pd.DataFrame, fractions: tuple[float, float] = (0.8, 0.1)
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Sec. 5.2: first 80% of interactions by time train, next 10% validation, last 10% test.

    A stable sort keeps the source order of events with equal timestamps (day-resolution data).
    """
    ordered = events.sort_values("ts", kind="stable").reset_index(drop=True)
    n = len(ordered)
    a = round(n * fractions[0])
    b = round(n * (fractions[0] + fractions[1]))
    return ordered.iloc[:a], ordered.iloc[a:b], ordered.iloc[b:]


@dataclass
class Vocab:
    """Id -> index maps; index 0 is the unknown id, so the lists start with ""."""

    users: list[str]
    items: list[str]

    @classmethod
    def from_events(cls, events: pd.DataFrame) -> Vocab:
        users = sorted(events["user_id"].astype(str).unique())
        items = sorted(events["item_id"].astype(str).unique())
        return cls(["", *users], ["", *items])

    def user_index(self, ids: pd.Series) -> np.ndarray:
        lookup = {u: i for i, u in enumerate(self.users) if i}
        return ids.astype(str).map(lookup).fillna(UNKNOWN).to_numpy(np.int64)

    def item_index(self, ids: pd.Series) -> np.ndarray:
        lookup = {u: i for i, u in enumerate(self.items) if i}
        return ids.astype(str).map(lookup).fillna(UNKNOWN).to_numpy(np.int64)


@dataclass
class EventArrays:
    """One row per event, in stream order. Deltas are seconds (float32)."""

    user_slot: np.ndarray  # [n] one state slot per distinct raw user (unknown users too)
    user_index: np.ndarray  # [n] vocabulary index (0 = unknown)
    item_index: np.ndarray  # [n]
    last_item: np.ndarray  # [n] user's previous item index (0 if none)
    dt_user: np.ndarray  # [n] since the user's previous event (0 if none)
    dt_item: np.ndarray  # [n] since the item's previous event (0 if none)
    dt_purchase: np.ndarray  # [n] since the user's last purchase (or first event)
    features: np.ndarray  # [n, 4] one-hot action
    is_purchase: np.ndarray  # [n] 0/1 float32
    num_user_slots: int

    def __len__(self) -> int:
        return len(self.user_index)

    def rows(self, index: np.ndarray) -> EventArrays:
        return EventArrays(
            self.user_slot[index],
            self.user_index[index],
            self.item_index[index],
            self.last_item[index],
            self.dt_user[index],
            self.dt_item[index],
            self.dt_purchase[index],
            self.features[index],
            self.is_purchase[index],
            self.num_user_slots,
        )


def action_features(actions: pd.Series) -> np.ndarray:
    """[n, 4] one-hot of the funnel action; an unknown action string is all zeros."""
    codes = actions.astype(str).map({a: i for i, a in enumerate(ACTIONS)}).fillna(-1)
    codes_np = codes.to_numpy(np.int64)
    out = np.zeros((len(codes_np), len(ACTIONS)), dtype=np.float32)
    ok = codes_np >= 0
    out[np.nonzero(ok)[0], codes_np[ok]] = 1.0
    return out


def encode_stream(events: pd.DataFrame, vocab: Vocab) -> EventArrays:
    """Per-event deltas and previous items for the whole stream (train + val + test, in order).

    The stream must already be in time order (`chronological_split` keeps it so when the
    three parts are concatenated).
    """
    users = events["user_id"].astype(str).to_numpy()
    slots_codes, uniques = pd.factorize(users)
    user_slot = slots_codes.astype(np.int64)
    item_index = vocab.item_index(events["item_id"])
    ts = events["ts"].to_numpy(np.float64)
    actions = events["action"].astype(str).to_numpy()
    n = len(events)
    last_item = np.zeros(n, np.int64)
    dt_user = np.zeros(n, np.float32)
    dt_item = np.zeros(n, np.float32)
    dt_purchase = np.zeros(n, np.float32)
    user_last_ts: dict[int, float] = {}
    user_last_item: dict[int, int] = {}
    user_purchase_ts: dict[int, float] = {}
    item_last_ts: dict[int, float] = {}
    for e in range(n):
        u, i, t = int(user_slot[e]), int(item_index[e]), float(ts[e])
        if u in user_last_ts:
            dt_user[e] = t - user_last_ts[u]
            last_item[e] = user_last_item[u]
            dt_purchase[e] = t - user_purchase_ts[u]
        else:
            user_purchase_ts[u] = t  # no purchase yet: the resource clock starts at the first event
        if i in item_last_ts:
            dt_item[e] = t - item_last_ts[i]
        user_last_ts[u] = t
        user_last_item[u] = i
        item_last_ts[i] = t
        if actions[e] == "purchase":
            user_purchase_ts[u] = t
    return EventArrays(
        user_slot=user_slot,
        user_index=vocab.user_index(events["user_id"]),
        item_index=item_index,
        last_item=last_item,
        dt_user=np.maximum(dt_user, 0),
        dt_item=np.maximum(dt_item, 0),
        dt_purchase=np.maximum(dt_purchase, 0),
        features=action_features(events["action"]),
        is_purchase=(actions == "purchase").astype(np.float32),
        num_user_slots=len(uniques),
    )


def t_batches(user_slot: np.ndarray, item_index: np.ndarray) -> list[np.ndarray]:
    """JODIE's t-batch: event e goes to batch max(batch of u's and i's previous events) + 1.

    Within a batch no user and no item appears twice, and every user's and item's events keep
    their order, so applying batches in order gives exactly the states that one-by-one
    processing gives (the recursion only ever reads a user's and an item's own previous state).
    """
    n = len(user_slot)
    batch_of = np.zeros(n, np.int64)
    last_u: dict[int, int] = {}
    last_i: dict[int, int] = {}
    for e in range(n):
        u, i = int(user_slot[e]), int(item_index[e])
        b = max(last_u.get(u, -1), last_i.get(i, -1)) + 1
        batch_of[e] = b
        last_u[u] = b
        last_i[i] = b
    order = np.argsort(batch_of, kind="stable")
    bounds = np.searchsorted(batch_of[order], np.arange(int(batch_of.max(initial=-1)) + 2))
    return [order[bounds[k] : bounds[k + 1]] for k in range(len(bounds) - 1)]


def time_scale(dt: np.ndarray) -> float:
    """Normaliser of log1p(Delta seconds): their standard deviation over nonzero deltas."""
    logs = np.log1p(dt[dt > 0].astype(np.float64))
    return float(max(logs.std(), 1.0)) if len(logs) else 1.0


def sequential_chunks(
    user_slot: np.ndarray, item_index: np.ndarray, max_size: int = 512
) -> list[np.ndarray]:
    """Contiguous runs of the stream in which no user and no item appears twice.

    Used for evaluation: scoring a chunk against the table as of its start uses only the
    past (unlike a t-batch, which can pull a later event of another item forward), and each
    row's own user and item states are fully up to date, as when events arrive one by one.
    """
    chunks: list[np.ndarray] = []
    start = 0
    users: set[int] = set()
    items: set[int] = set()
    for e in range(len(user_slot)):
        u, i = int(user_slot[e]), int(item_index[e])
        if u in users or i in items or e - start >= max_size:
            chunks.append(np.arange(start, e))
            start, users, items = e, set(), set()
        users.add(u)
        items.add(i)
    if start < len(user_slot):
        chunks.append(np.arange(start, len(user_slot)))
    return chunks
