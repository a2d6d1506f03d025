"""Click-then-buy samples and their features for MetaCVR (paper 002, Sec. III-A).

A sample is a click (a `browse` event) of a user on an item, first click of that user-item
pair on that day; its label is 1 if the same user buys the same item at or after the click
within `label_days`. Only canonical event columns are used (user_id, item_id, category_id,
action, ts), so any file an adapter reads works, whatever its source.

The paper's five feature parts map onto fixed fields (numeric values are discretised by
boundaries into buckets, as Sec. III-C does):

- behaviour sequence: the last `seq_len` events of the user strictly before the click
  (item, category, action);
- user features: events / clicks / buys / conversion rate in the last `stats_window` events;
- item features: clicks / buys / conversion rate of the item over all users before the click;
- user-item interaction: clicks, collects+carts and buys of this item, clicks and buys of its
  category, in the user's window;
- context: occasion (BP/DP/AP/NP), day of week, hour, time since the user's previous event.

User and interaction features come from the user's recent events only, through
`service.servables.cvr_features.history_fields` (the fields, their buckets and that function
live on the serving side, which calls it on the Redis behaviour sequence), so training and
serving compute them the same way. Item features at serving time are the
snapshot at the end of the training data (a per-version table in the artifact).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from service.actions import ACTION_IDS
from service.errors import InvalidInput
from service.servables.cvr_features import (
    FIELD_INDEX,
    FIELDS,
    FeatureSpec,
    context_fields,
    count_bucket,
    history_fields,
    rate_bucket,
)

if TYPE_CHECKING:
    import pandas as pd

    from service.occasions import OccasionCalendar


@dataclass
class CvrSamples:
    fields: np.ndarray  # [N, F] int64
    seq_items: np.ndarray  # [N, L] int64 vocab ids, 0 = pad
    seq_cats: np.ndarray  # [N, L]
    seq_actions: np.ndarray  # [N, L]
    label: np.ndarray  # [N] float32: bought within the window
    label_deep: np.ndarray  # [N] float32: collected / carted / bought within the window
    ts: np.ndarray  # [N] int64 click time
    day: np.ndarray  # [N] int64 epoch day
    user_id: np.ndarray  # [N] raw user id (the bootstrap's unit; the vocab maps new ones to 0)

    def __len__(self) -> int:
        return len(self.label)

    def subset(self, mask: np.ndarray) -> CvrSamples:
        return CvrSamples(**{k: v[mask] for k, v in self.__dict__.items()})

    @property
    def occasion(self) -> np.ndarray:
        return self.fields[:, FIELD_INDEX["occasion"]]

    def tensors(self) -> dict[str, np.ndarray]:
        return {
            "fields": self.fields,
            "seq_items": self.seq_items,
            "seq_cats": self.seq_cats,
            "seq_actions": self.seq_actions,
        }


@dataclass
class Vocab:
    """Id -> index maps (index 0 = unknown); built on training days only."""

    users: dict[str, int]
    items: dict[str, int]
    cats: dict[str, int]

    @classmethod
    def build(cls, events: pd.DataFrame) -> Vocab:
        def make(values: Sequence[str]) -> dict[str, int]:
            return {v: i + 1 for i, v in enumerate(sorted(set(values)))}

        return cls(
            users=make(events["user_id"].astype(str).tolist()),
            items=make(events["item_id"].astype(str).tolist()),
            cats=make(events["category_id"].astype(str).tolist()),
        )

    def to_lists(self) -> dict[str, list[str]]:
        def ordered(m: Mapping[str, int]) -> list[str]:
            return [k for k, _ in sorted(m.items(), key=lambda kv: kv[1])]

        return {
            "user": ordered(self.users),
            "item": ordered(self.items),
            "category": ordered(self.cats),
        }

    @classmethod
    def from_lists(cls, lists: Mapping[str, list[str]]) -> Vocab:
        def make(values: list[str]) -> dict[str, int]:
            return {v: i + 1 for i, v in enumerate(values)}

        return cls(make(lists["user"]), make(lists["item"]), make(lists["category"]))

    def sizes(self) -> tuple[int, int, int]:
        return len(self.users) + 1, len(self.items) + 1, len(self.cats) + 1


def _before_counts(key: pd.Series, flag: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Per row: how many rows with the same key and `flag` have a strictly smaller ts.

    Rows must be sorted by ts. Ties share the count of the first row of their (key, ts).
    """
    import pandas as pd

    frame = pd.DataFrame({"key": key.to_numpy(), "ts": ts, "flag": flag.astype(np.int64)})
    before = frame.groupby("key", sort=False)["flag"].cumsum().to_numpy() - frame["flag"].to_numpy()
    frame["before"] = before
    return frame.groupby(["key", "ts"], sort=False)["before"].transform("first").to_numpy()


def build_samples(
    events: pd.DataFrame,
    calendar: OccasionCalendar,
    vocab: Vocab,
    spec: FeatureSpec,
    label_days: float = 3.0,
) -> CvrSamples:
    """Click samples with labels and features from a canonical events frame."""
    ev = events.sort_values("ts", kind="stable").reset_index(drop=True)
    ts = ev["ts"].to_numpy(np.int64)
    action = ev["action"].astype(str).map(ACTION_IDS).fillna(0).to_numpy(np.int64)
    users = ev["user_id"].astype(str)
    items = ev["item_id"].astype(str)
    cats = ev["category_id"].astype(str)
    item_code = items.map(vocab.items).fillna(0).to_numpy(np.int64)
    cat_code = cats.map(vocab.cats).fillna(0).to_numpy(np.int64)
    user_code = users.map(vocab.users).fillna(0).to_numpy(np.int64)
    # Raw-id codes for equality tests (vocab ids would merge unknown items into 0).
    item_raw = items.factorize()[0]
    cat_raw = cats.factorize()[0]

    i_clicks = _before_counts(items, action == ACTION_IDS["browse"], ts)
    i_buys = _before_counts(items, action == ACTION_IDS["purchase"], ts)

    is_click = action == ACTION_IDS["browse"]
    day = ts // 86400
    click_rows = np.flatnonzero(is_click)
    dup = (
        ev.iloc[click_rows]
        .assign(_day=day[click_rows])
        .duplicated(subset=["user_id", "item_id", "_day"], keep="first")
        .to_numpy()
    )
    sample_rows = click_rows[~dup]  # first click of each user-item pair per day
    window = int(label_days * 86400)

    n = len(sample_rows)
    fields = np.zeros((n, len(FIELDS)), dtype=np.int64)
    seq_i = np.zeros((n, spec.seq_len), dtype=np.int64)
    seq_c = np.zeros((n, spec.seq_len), dtype=np.int64)
    seq_a = np.zeros((n, spec.seq_len), dtype=np.int64)
    label = np.zeros(n, dtype=np.float32)
    label_deep = np.zeros(n, dtype=np.float32)
    occ = calendar.occasion_ids(ts[sample_rows])
    out_pos = {row: k for k, row in enumerate(sample_rows)}

    # Walk user by user; each user's events are in ts order.
    for _, rows in ev.groupby(users, sort=False).indices.items():
        rows = np.sort(rows)
        u_ts = ts[rows]
        u_act = action[rows]
        u_item_raw = item_raw[rows]
        u_cat_raw = cat_raw[rows]
        for j, row in enumerate(rows):
            k = out_pos.get(int(row))
            if k is None:
                continue
            t = int(ts[row])
            start = int(np.searchsorted(u_ts, t, side="left"))  # strictly before t
            values, seq = history_fields(
                u_item_raw[:start], u_cat_raw[:start], u_act[:start], u_ts[:start],
                u_item_raw[j], u_cat_raw[j], t, spec,
            )  # fmt: skip
            values.update(context_fields(t, int(occ[k])))
            values.update(
                user=int(user_code[row]),
                item=int(item_code[row]),
                category=int(cat_code[row]),
                i_clicks=int(count_bucket(i_clicks[row])),
                i_buys=int(count_bucket(i_buys[row])),
                i_cvr=int(rate_bucket(i_buys[row], i_clicks[row])),
            )
            fields[k] = [values[f] for f in FIELDS]
            hist_rows = rows[seq]
            m = len(hist_rows)
            if m:
                seq_i[k, -m:] = item_code[hist_rows]
                seq_c[k, -m:] = cat_code[hist_rows]
                seq_a[k, -m:] = action[hist_rows]
            # Label: an event of this user on this item at or after the click's time, within
            # the window. Events with the click's own timestamp count whatever their file
            # order: day- or hour-resolution logs cannot order a click and a buy in one slot.
            end = int(np.searchsorted(u_ts, t + window, side="right"))
            same = u_item_raw[start:end] == u_item_raw[j]
            later_act = u_act[start:end][same]
            label[k] = float((later_act == ACTION_IDS["purchase"]).any())
            label_deep[k] = float((later_act >= ACTION_IDS["collect"]).any())
    return CvrSamples(
        fields=fields,
        seq_items=seq_i,
        seq_cats=seq_c,
        seq_actions=seq_a,
        label=label,
        label_deep=label_deep,
        ts=ts[sample_rows],
        day=day[sample_rows],
        user_id=users.to_numpy()[sample_rows],
    )


def item_stats_table(events: pd.DataFrame, vocab: Vocab) -> np.ndarray:
    """[n_items, 4] per item vocab id: bucketed clicks, buys, cvr over all of `events`, and
    the item's category vocab id (its latest category in the data).

    The servable looks item features (and the category of an item a request does not
    describe) up here: the snapshot at the end of the data window.
    """
    n_items = len(vocab.items) + 1
    table = np.zeros((n_items, 4), dtype=np.int64)
    ids = events["item_id"].astype(str).map(vocab.items).fillna(0).to_numpy(np.int64)
    cat_ids = events["category_id"].astype(str).map(vocab.cats).fillna(0).to_numpy(np.int64)
    act = events["action"].astype(str).to_numpy()
    clicks = np.bincount(ids[act == "browse"], minlength=n_items)
    buys = np.bincount(ids[act == "purchase"], minlength=n_items)
    table[:, 0] = count_bucket(clicks)
    table[:, 1] = count_bucket(buys)
    table[:, 2] = rate_bucket(buys, clicks)
    table[ids, 3] = cat_ids  # later rows win: events are in time order
    table[0] = 0
    return table


@dataclass(frozen=True)
class DaySplit:
    """Epoch days where D_recent, validation and test begin (D is every day before val)."""

    recent_start: int
    val_start: int
    test_start: int


def split_days(
    day: np.ndarray,
    test_frac: float = 0.2,
    recent_frac: float = 0.25,
    val_frac: float = 0.1,
    label_days: float = 0.0,
) -> DaySplit:
    """Where each part of the chronological split begins, from the click days of the samples.

    The last days holding ~`test_frac` of the samples are the test set, the days before them
    holding ~`val_frac` the validation set (early stopping, thresholds, the manifest's
    comparison); of the remaining training days D, the last ~`recent_frac` (by days) form
    D_recent (paper: 15 of 60 days). Every part gets at least one day, and validation at
    least one more than the label window (`chronological_split` purges the clicks whose
    window reaches the test days, which would otherwise empty a short validation window).
    """
    for name, frac in (("test_frac", test_frac), ("val_frac", val_frac)):
        if not 0 < frac < 1:
            raise InvalidInput(name, f"must lie strictly between 0 and 1, got {frac}")
    if not 0 < recent_frac <= 1:
        raise InvalidInput("recent_frac", f"must lie in (0, 1], got {recent_frac}")
    days, counts = np.unique(day, return_counts=True)
    if len(days) < 3:
        raise InvalidInput("data", "need at least 3 distinct days of clicks for a time split")
    share = np.cumsum(counts[::-1])[::-1] / counts.sum()  # share of samples on day >= d

    def start(frac: float, lo: int, hi: int) -> int:
        ok = np.flatnonzero(share >= frac)
        return min(max(int(ok[-1]) if len(ok) else 0, lo), hi)

    window = math.ceil(label_days)
    test_idx = start(test_frac, 2 + window, len(days) - 1)
    val_idx = start(test_frac + val_frac, 1, test_idx - 1 - window)
    if val_idx < 1:
        raise InvalidInput(
            "data",
            f"{len(days)} click days leave no training days before a validation window "
            f"longer than the {label_days:g}-day label window (--label-days)",
        )
    n_recent = max(1, math.ceil(recent_frac * val_idx))
    return DaySplit(int(days[val_idx - n_recent]), int(days[val_idx]), int(days[test_idx]))


def click_days(events: pd.DataFrame) -> np.ndarray:
    """Epoch day of every sample `build_samples` would make (first click per user-item-day)."""
    clicks = events[events["action"].astype(str) == "browse"]
    day = clicks["ts"].to_numpy(np.int64) // 86400
    dup = clicks.assign(_day=day).duplicated(subset=["user_id", "item_id", "_day"]).to_numpy()
    return np.asarray(day[~dup])


def chronological_split(
    samples: CvrSamples, split: DaySplit, label_days: float
) -> tuple[CvrSamples, CvrSamples, CvrSamples, CvrSamples]:
    """(D, D_recent, validation, test) by click day (the paper's Sec. IV-A.1, plus a
    validation window between training and test).

    Purged: a training click whose label window (`label_days` after the click) reaches
    the first validation day is dropped, and a validation click whose window reaches the
    first test day, because its label is decided by purchases in the later part. Without
    this, a model would be trained on labels made of validation or test days' buys.
    """
    window = int(label_days * 86400)
    ends = samples.ts + window
    train = samples.subset((samples.day < split.val_start) & (ends < split.val_start * 86400))
    recent = train.subset(train.day >= split.recent_start)
    val = samples.subset(
        (samples.day >= split.val_start)
        & (samples.day < split.test_start)
        & (ends < split.test_start * 86400)
    )
    test = samples.subset(samples.day >= split.test_start)
    return train, recent, val, test


def last_days(samples: CvrSamples, frac: float) -> tuple[CvrSamples, int]:
    """The samples on the last ~`frac` of their distinct click days (at least one day), and
    how many days that is: D_recent, LightGBM's recent window, a prototype refresh's support."""
    days = np.unique(samples.day)
    if not len(days):
        return samples, 0
    n = max(1, math.ceil(frac * len(days)))
    return samples.subset(samples.day >= days[-n]), n


def user_split(
    samples: CvrSamples, train_users: np.ndarray, val_users: np.ndarray, recent_frac: float
) -> tuple[CvrSamples, CvrSamples, CvrSamples, CvrSamples]:
    """(D, D_recent, validation, test) by user, for logs whose buys all fall on one day.

    Every click of a user lands in the part of its user (`training.splits.user_parts`), so
    no label is made of another part's purchases and nothing needs purging; D_recent is the
    training users' clicks on the last ~`recent_frac` of their click days, so a promotion
    day at the end of the log supports its own occasion's prototype (IJCAI-15
    data_format2: Double 11's new buyers, every buy on 11-11).
    """
    if not 0 < recent_frac <= 1:
        raise InvalidInput("recent_frac", f"must lie in (0, 1], got {recent_frac}")
    user = samples.user_id.astype(str)
    in_train = np.isin(user, train_users.astype(str))
    in_val = np.isin(user, val_users.astype(str))
    train = samples.subset(in_train)
    recent, _ = last_days(train, recent_frac)
    return train, recent, samples.subset(in_val), samples.subset(~in_train & ~in_val)


def promo_click_log(
    seed: int = 0,
    n_users: int = 60,
    n_items: int = 80,
    n_cats: int = 8,
    start: str = "2024-10-25",
    days: int = 56,
    promotions: Sequence[str] = ("2024-11-11", "2024-11-25", "2024-12-12"),
    clicks_per_day: float = 1.5,
) -> tuple[pd.DataFrame, OccasionCalendar]:
    """A click-to-buy log with a known promotion shift (tests, demo, per-occasion tables).

    Conversion depends on item quality, the user's favourite category, earlier clicks of the
    same item, and on the occasion: during a promotion price-sensitive users buy discounted
    items far more; before it they wait (lower CVR, more clicks); after it demand is spent.
    This is the distribution shift MetaCVR's prototypes are meant to absorb.
    """
    import datetime as dt

    import pandas as pd

    from service.occasions import OccasionCalendar, Promotion

    rng = np.random.default_rng(seed)
    calendar = OccasionCalendar(
        promotions=[
            Promotion(f"promo{k}", dt.date.fromisoformat(d), dt.date.fromisoformat(d))
            for k, d in enumerate(promotions)
        ],
        before_days=5,
        after_days=3,
    )
    item_cat = rng.integers(0, n_cats, n_items)
    quality = rng.normal(0, 1, n_items)
    discounted = rng.random(n_items) < 0.3
    pref = rng.integers(0, n_cats, n_users)
    sensitivity = rng.random(n_users)
    t0 = int(pd.Timestamp(start).timestamp())
    rows: list[tuple[str, str, str, str, int]] = []
    seen: set[tuple[int, int]] = set()
    click_mult = {"BP": 1.5, "DP": 2.5, "AP": 0.8, "NP": 1.0}
    for d in range(days):
        day_ts = t0 + d * 86400
        occ = calendar.occasion_of_day(dt.date(1970, 1, 1) + dt.timedelta(days=day_ts // 86400))
        for u in range(n_users):
            for _ in range(rng.poisson(clicks_per_day * click_mult[occ])):
                promo_items = np.flatnonzero(discounted)
                liked = np.flatnonzero(item_cat == pref[u])
                if occ == "DP" and len(promo_items) and rng.random() < 0.5:
                    i = int(rng.choice(promo_items))
                elif len(liked) and rng.random() < 0.6:
                    i = int(rng.choice(liked))
                else:
                    i = int(rng.integers(0, n_items))
                ts = day_ts + int(rng.integers(8 * 3600, 22 * 3600))
                logit = -2.5 + 0.8 * quality[i] + 1.0 * (item_cat[i] == pref[u])
                logit += 0.7 * ((u, i) in seen)
                if occ == "DP":
                    logit += 2.5 * sensitivity[u] * discounted[i] - 0.5
                elif occ == "BP":
                    logit -= 1.5 * sensitivity[u]
                elif occ == "AP":
                    logit -= 0.7
                seen.add((u, i))
                rows.append((f"u{u}", f"i{i}", f"c{item_cat[i]}", "browse", ts))
                if rng.random() < 1 / (1 + np.exp(-logit)):
                    buy_ts = ts + int(rng.integers(60, 3600 if occ == "DP" else 86400))
                    if rng.random() < 0.5:
                        rows.append((f"u{u}", f"i{i}", f"c{item_cat[i]}", "cart", ts + 30))
                    rows.append((f"u{u}", f"i{i}", f"c{item_cat[i]}", "purchase", buy_ts))
                elif rng.random() < 0.1:
                    rows.append((f"u{u}", f"i{i}", f"c{item_cat[i]}", "collect", ts + 20))
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "category_id", "action", "ts"])
    frame = frame.sort_values("ts", kind="stable").reset_index(drop=True)
    frame.insert(0, "event_id", [f"promo:{k}" for k in range(len(frame))])
    return frame, calendar
