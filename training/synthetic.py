"""Synthetic events and sales for tests and the demo, with the structure the models need.

Why synthetic data at all: the real public samples (`salecast data formats`) are small,
research-only and absent on CI, and several of them have no festival inside. Tests and
`salecast demo` need data that (a) has every effect a model is meant to learn, so a test can
check that it is learnt, (b) is deterministic by seed, and (c) generates in well under a
second.

`generate_events(...) -> EventLog` (canonical `EVENT_COLUMNS`, `event_id = "synthetic:<row>"`):

- Items belong to categories (contiguous id blocks) with Zipf popularity inside each
  category. Each user has a Dirichlet preference over categories and an activity level.
- Users open sessions (Poisson per day, a diurnal hour profile, timestamps in seconds).
  A session is a chain of browses with **sequential dependence**: with probability
  `P_RELATED` the next item is one of the last item's few fixed "related" items (same
  category), otherwise a popular item of the same category or of a freshly drawn preferred
  category. So a next-item model has something to learn beyond popularity.
- Each browse may lead to collect and/or cart; a cart may lead to a purchase; a few
  purchases are direct. Times always run browse < collect < cart < purchase, and counts run
  browse > collect > cart > purchase (the funnel order of `schemas.ACTIONS`).
- **Promotions** (default: the shopping festivals 618 / Double 11 / Double 12 inside the
  window) change the funnel by phase (`calendar.promotion_phase`): *before* (the
  `before_days` run-up) collect and cart rates double while purchases are deferred: carted
  items go on a wish list; *during*, sessions and purchase rates surge and most wish-list
  items are bought; *after* (`after_days`), activity and purchases slump.

`generate_sales(...) -> SalesData` (canonical `SALES_COLUMNS` + external factors):

- Regions (stores) with static features: type A/B/C (one-hot) and size; the sales level
  scales with size, plus a region-specific random level and trend.
- Categories with their own level and phase of yearly seasonality; daily data add a weekly
  (day-of-week) profile.
- External factors that matter: `temperature` (regional yearly cycle; each category has its
  own sensitivity), `price` (per region x category, with random discounts; elasticity ~2),
  `markdown` (promotional spend per region-period, more often in festival periods).
- Festival surges: Thanksgiving, Christmas and Double 11 periods multiply sales by roughly
  3-10x, Super Bowl / Labor Day / New Year mildly; the size differs by region and category.
  The period(s) before a big festival ramp up (pre-sale) and the one after slumps.
- Weekly dates are Walmart-style week-ending Fridays, so `calendar.walmart_day_type`
  conventions hold; daily dates are days. Defaults: 6 regions x 5 categories x 3 years.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import random
from bisect import bisect
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from service.actions import ACTIONS
from service.calendar import ORDINARY, festivals_between, promotion_phases, week_day_type
from training.schemas import EVENT_COLUMNS, EventLog, ImportReport, SalesData

# ---- events ----------------------------------------------------------------------------

DEFAULT_EVENT_START = "2014-10-01"
DEFAULT_EVENT_DAYS = 61  # 2014-10-01 .. 2014-11-30: contains Double 11
SHOPPING_FESTIVALS: tuple[str, ...] = ("618", "double11", "double12")

P_RELATED = 0.55  # next browse is a related item of the last one
P_SAME_CATEGORY = 0.25  # else: stay in the category (a popular item)
N_RELATED = 3  # fixed related items per item
MEAN_SESSION_BROWSES = 5.0

# Base funnel rates per browse, and their multipliers per promotion phase.
BASE_RATES: dict[str, float] = {
    "collect": 0.08,
    "cart": 0.05,
    "buy_cart": 0.45,
    "buy_direct": 0.006,
}
PHASE_EFFECTS: dict[str, dict[str, float]] = {
    "none": {"sessions": 1.0, "collect": 1.0, "cart": 1.0, "buy_cart": 1.0, "buy_direct": 1.0},
    "before": {"sessions": 1.2, "collect": 2.0, "cart": 2.0, "buy_cart": 0.35, "buy_direct": 0.4},
    "during": {"sessions": 2.5, "collect": 1.0, "cart": 1.6, "buy_cart": 1.9, "buy_direct": 4.0},
    "after": {"sessions": 0.7, "collect": 0.8, "cart": 0.8, "buy_cart": 0.5, "buy_direct": 0.5},
}
P_WISHLIST_BUY = 0.7  # share of run-up carts bought on the promotion day

# Hour-of-day session profile (UTC): quiet nights, evening peak.
_HOUR_WEIGHTS = [
    1,
    0.6,
    0.4,
    0.3,
    0.3,
    0.4,
    0.8,
    1.4,
    2,
    2.3,
    2.4,
    2.4,
    2.5,
    2.4,
    2.3,
    2.3,
    2.4,
    2.6,
    3,
    3.5,
    4,
    4,
    3.2,
    2,
]


def _to_date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return pd.Timestamp(value).date()


def _promotion_spans(promotions: Iterable[Any]) -> list[tuple[dt.date, dt.date]]:
    spans = []
    for promo in promotions:
        if isinstance(promo, tuple | list) and len(promo) == 2:
            spans.append((_to_date(promo[0]), _to_date(promo[1])))
        elif hasattr(promo, "start") and hasattr(promo, "end"):
            spans.append((_to_date(promo.start), _to_date(promo.end)))
        else:
            day = _to_date(promo)
            spans.append((day, day))
    return spans


def default_promotions(start: Any, days: int) -> list[dt.date]:
    """The shopping festivals (618, Double 11, Double 12) inside the window."""
    first = _to_date(start)
    last = first + dt.timedelta(days=days - 1)
    return [day for day, _ in festivals_between(first, last, SHOPPING_FESTIVALS)]


def _frame_digest(frame: pd.DataFrame, tag: str) -> str:
    """Content digest of a generated frame (the `sha256` a file import would carry)."""
    digest = hashlib.sha256(tag.encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def generate_events(
    n_users: int = 200,
    n_items: int = 400,
    n_categories: int = 10,
    days: int = DEFAULT_EVENT_DAYS,
    start: Any = DEFAULT_EVENT_START,
    promotions: Sequence[Any] | None = None,
    seed: int = 0,
    before_days: int = 7,
    after_days: int = 3,
    sessions_per_day: float = 0.5,
) -> EventLog:
    """Funnel events of `n_users` over `days` days; see the module docstring for the model.

    `promotions`: dates, ISO strings, `(start, end)` pairs or objects with `start`/`end`;
    None means the shopping festivals inside the window, `[]` none at all.
    """
    if n_users < 1 or n_items < 1 or n_categories < 1 or days < 1:
        raise ValueError("n_users, n_items, n_categories and days must be >= 1")
    n_categories = min(n_categories, n_items)
    rng = np.random.default_rng(seed)
    rnd = random.Random(seed)
    first_day = _to_date(start)
    spans = _promotion_spans(
        default_promotions(first_day, days) if promotions is None else promotions
    )

    # Catalogue: contiguous category blocks, Zipf popularity inside, fixed related items.
    item_cat = (np.arange(n_items) * n_categories) // n_items
    cat_items: list[list[int]] = [
        np.flatnonzero(item_cat == c).tolist() for c in range(n_categories)
    ]
    cat_cum: list[list[float]] = []
    for items in cat_items:
        ranks = rng.permutation(len(items)) + 1
        cat_cum.append(np.cumsum(1.0 / ranks**1.1).tolist())
    related: list[list[int]] = []
    for i in range(n_items):
        pool = cat_items[int(item_cat[i])]
        related.append([pool[int(j)] for j in rng.integers(0, len(pool), N_RELATED)])

    # Users: category preference and activity.
    prefs = rng.dirichlet(np.full(n_categories, 0.3), size=n_users)
    pref_cum = np.cumsum(prefs, axis=1).tolist()
    activity = rng.lognormal(0.0, 0.6, size=n_users).tolist()

    day_secs = [
        int(dt.datetime.combine(first_day + dt.timedelta(days=d), dt.time(), dt.UTC).timestamp())
        for d in range(days)
    ]
    phases = promotion_phases(np.array(day_secs), spans, before_days, after_days).tolist()
    hour_cum = np.cumsum(_HOUR_WEIGHTS).tolist()
    rates = {
        phase: {k: min(0.95, BASE_RATES[k] * eff[k]) for k in BASE_RATES}
        for phase, eff in PHASE_EFFECTS.items()
    }

    def draw_hour() -> int:
        return min(bisect(hour_cum, rnd.random() * hour_cum[-1]), 23)

    users: list[int] = []
    items_out: list[int] = []
    actions: list[int] = []
    stamps: list[int] = []

    def emit(user: int, item: int, action: int, ts: int) -> None:
        users.append(user)
        items_out.append(item)
        actions.append(action)
        stamps.append(ts)

    def draw_item(user: int, last: int | None) -> int:
        u = rnd.random()
        if last is not None and u < P_RELATED:
            return related[last][rnd.randrange(N_RELATED)]
        if last is not None and u < P_RELATED + P_SAME_CATEGORY:
            cat = int(item_cat[last])
        else:
            cum = pref_cum[user]
            cat = min(bisect(cum, rnd.random() * cum[-1]), n_categories - 1)
        cum = cat_cum[cat]
        return cat_items[cat][min(bisect(cum, rnd.random() * cum[-1]), len(cum) - 1)]

    for user in range(n_users):
        wishlist: list[int] = []
        for d in range(days):
            phase = phases[d]
            effect = PHASE_EFFECTS[phase]
            rate = rates[phase]
            if phase == "during" and wishlist:
                # Deferred purchases: the run-up's carts are bought on the promotion day.
                for item in wishlist:
                    if rnd.random() < P_WISHLIST_BUY:
                        ts = day_secs[d] + draw_hour() * 3600
                        ts += rnd.randrange(3600)
                        emit(user, item, 0, ts)
                        emit(user, item, 3, ts + 5 + int(rnd.expovariate(1 / 30)))
                wishlist = []
            lam = sessions_per_day * activity[user] * effect["sessions"]
            n_sessions = _poisson(rnd, lam)
            for _ in range(n_sessions):
                ts = day_secs[d] + draw_hour() * 3600 + rnd.randrange(3600)
                last: int | None = None
                n_browse = 1 + int(rnd.expovariate(1 / (MEAN_SESSION_BROWSES - 1)))
                for _ in range(n_browse):
                    item = draw_item(user, last)
                    emit(user, item, 0, ts)
                    t = ts
                    if rnd.random() < rate["collect"]:
                        t += 3 + int(rnd.expovariate(1 / 20))
                        emit(user, item, 1, t)
                    if rnd.random() < rate["cart"]:
                        t += 3 + int(rnd.expovariate(1 / 30))
                        emit(user, item, 2, t)
                        if rnd.random() < rate["buy_cart"]:
                            t += 10 + int(rnd.expovariate(1 / 120))
                            emit(user, item, 3, t)
                        elif phase == "before":
                            wishlist.append(item)
                    elif rnd.random() < rate["buy_direct"]:
                        t += 10 + int(rnd.expovariate(1 / 60))
                        emit(user, item, 3, t)
                    last = item
                    ts = t + 5 + int(rnd.expovariate(1 / 45))

    ts_arr = np.asarray(stamps, dtype=np.int64)
    order = np.argsort(ts_arr, kind="stable")
    user_arr = np.asarray(users, dtype=np.int64)[order]
    item_arr = np.asarray(items_out, dtype=np.int64)[order]
    action_names = np.array(ACTIONS, dtype=object)
    events = pd.DataFrame(
        {
            "event_id": [f"synthetic:{i}" for i in range(len(order))],
            "user_id": np.char.add("u", user_arr.astype(str)),
            "item_id": np.char.add("i", item_arr.astype(str)),
            "category_id": np.char.add("c", item_cat[item_arr].astype(str)),
            "action": action_names[np.asarray(actions, dtype=np.int64)[order]],
            "ts": ts_arr[order],
        }
    ).astype(EVENT_COLUMNS)
    report = ImportReport(source="synthetic", rows_read=len(events), rows_ok=len(events))
    return EventLog(events=events, report=report, sha256=_frame_digest(events, f"events:{seed}"))


def _poisson(rnd: random.Random, lam: float) -> int:
    """Knuth's Poisson draw (lam is small here); keeps the generator on one `random.Random`."""
    if lam <= 0:
        return 0
    limit, k, p = math.exp(-lam), 0, rnd.random()
    while p > limit:
        k += 1
        p *= rnd.random()
    return k


# ---- sales -----------------------------------------------------------------------------

#: Festival -> base multiplier of sales in its period (before region/category variation).
SALES_FESTIVALS: dict[str, float] = {
    "thanksgiving": 4.0,
    "christmas": 6.0,
    "double11": 5.0,
    "super_bowl": 1.5,
    "labor_day": 1.3,
    "new_year": 1.4,
}
BIG_FESTIVALS = ("thanksgiving", "christmas", "double11")
EXTERNAL_COLUMNS = ["temperature", "price", "markdown"]
STATIC_COLUMNS = ["type_A", "type_B", "type_C", "size"]


def generate_sales(
    n_regions: int = 6,
    n_categories: int = 5,
    years: int = 3,
    frequency: Literal["W", "D"] = "W",
    seed: int = 0,
    start: Any = None,
) -> SalesData:
    """Region x category sales with seasonality, external factors and festival surges.

    `start` defaults to 2010-02-05 (a Friday, like Walmart's first week) for weekly data and
    2011-01-29 (M5's first day) for daily data. See the module docstring for the model.
    """
    if frequency not in ("W", "D"):
        raise ValueError(f"frequency must be 'W' or 'D', not {frequency!r}")
    if n_regions < 1 or n_categories < 1 or years < 1:
        raise ValueError("n_regions, n_categories and years must be >= 1")
    rng = np.random.default_rng(seed)
    weekly = frequency == "W"
    first = pd.Timestamp(start if start is not None else ("2010-02-05" if weekly else "2011-01-29"))
    n_steps = 52 * years if weekly else 364 * years
    dates = pd.date_range(first, periods=n_steps, freq="7D" if weekly else "D")
    span = 7 if weekly else 1
    names = tuple(SALES_FESTIVALS)
    day_types = np.array([week_day_type(d, names, days=span) for d in dates], dtype=object)

    # Regions: type from size (A largest), level from size.
    size = np.round(rng.uniform(40_000, 220_000, n_regions), -2)
    store_type = np.where(size > 150_000, "A", np.where(size > 90_000, "B", "C"))
    region_level = size / 1000.0 * rng.lognormal(0.0, 0.25, n_regions) * (1.0 if weekly else 1 / 7)
    region_trend = rng.normal(0.0, 0.04, n_regions)  # per year
    temp_offset = rng.normal(0.0, 8.0, n_regions)
    cat_level = rng.lognormal(0.0, 0.7, n_categories) * 50.0
    cat_phase = rng.uniform(0, 2 * np.pi, n_categories)
    cat_season = rng.uniform(0.05, 0.3, n_categories)
    cat_temp = rng.normal(0.0, 0.008, n_categories)
    cat_elasticity = rng.uniform(1.2, 2.5, n_categories)
    base_price = rng.uniform(2.0, 40.0, n_categories)
    weekday_profile = np.array([1.0, 0.9, 0.9, 0.95, 1.1, 1.35, 1.3])  # Mon..Sun

    # Festival multipliers by (festival, region, category), spread so big ones span ~3-10x.
    region_fest = rng.lognormal(0.0, 0.3, (len(names), n_regions))
    cat_fest = rng.lognormal(0.0, 0.35, (len(names), n_categories))
    surge = np.ones((len(names), n_regions, n_categories))
    for f, name in enumerate(names):
        mult = 1.0 + (SALES_FESTIVALS[name] - 1.0) * region_fest[f][:, None] * cat_fest[f][None, :]
        surge[f] = np.clip(mult, 3.0, 10.0) if name in BIG_FESTIVALS else mult

    t_years = np.arange(n_steps) * span / 365.25
    doy = dates.day_of_year.to_numpy()
    season_angle = 2 * np.pi * doy / 365.25

    # Festival index per step, and pre-sale ramp / post-festival slump around big festivals.
    fest_idx = np.array([names.index(d) if d != ORDINARY else -1 for d in day_types])
    ramp_steps = 1 if weekly else 7
    ramp_idx = np.full(n_steps, -1)
    ramp_pos = np.zeros(n_steps)
    slump = np.ones(n_steps)
    for t in np.flatnonzero(fest_idx >= 0):
        if names[fest_idx[t]] not in BIG_FESTIVALS:
            continue
        for k in range(1, ramp_steps + 1):
            if t - k >= 0 and fest_idx[t - k] < 0:
                ramp_idx[t - k] = fest_idx[t]
                ramp_pos[t - k] = (ramp_steps + 1 - k) / (ramp_steps + 1)
        if t + 1 < n_steps and fest_idx[t + 1] < 0:
            slump[t + 1] = 0.85

    rows = []
    for r in range(n_regions):
        temperature = (
            60
            + 20 * np.sin(season_angle - 2 * np.pi * 110 / 365.25)
            + temp_offset[r]
            + rng.normal(0, 4, n_steps)
        )
        festive = fest_idx >= 0
        markdown = np.where(
            rng.random(n_steps) < np.where(festive, 0.8, 0.15), rng.gamma(2.0, 2.0, n_steps), 0.0
        )
        for c in range(n_categories):
            discount = np.where(
                rng.random(n_steps) < np.where(festive, 0.6, 0.1),
                rng.uniform(0.1, 0.3, n_steps),
                0.0,
            )
            price = base_price[c] * (1 - discount) * np.exp(rng.normal(0, 0.01, n_steps))
            level = region_level[r] * cat_level[c] * np.exp(region_trend[r] * t_years)
            season = 1 + cat_season[c] * np.sin(season_angle + cat_phase[c])
            temp_effect = np.exp(cat_temp[c] * (temperature - 60))
            price_effect = (price / base_price[c]) ** (-cat_elasticity[c])
            markdown_effect = 1 + 0.03 * markdown
            fest_effect = np.where(fest_idx >= 0, surge[np.maximum(fest_idx, 0), r, c], 1.0)
            ramp_effect = np.where(
                ramp_idx >= 0, 1 + 0.15 * (surge[np.maximum(ramp_idx, 0), r, c] - 1) * ramp_pos, 1.0
            )
            dow = weekday_profile[dates.day_of_week.to_numpy()] if not weekly else 1.0
            noise = rng.lognormal(0, 0.08, n_steps)
            sales = (
                level
                * season
                * temp_effect
                * price_effect
                * markdown_effect
                * fest_effect
                * ramp_effect
                * slump
                * dow
                * noise
            )
            rows.append(
                pd.DataFrame(
                    {
                        "region": f"R{r + 1:02d}",
                        "category": f"C{c + 1:02d}",
                        "date": dates,
                        "sales": np.round(sales, 2),
                        "day_type": day_types,
                        "temperature": np.round(temperature, 2),
                        "price": np.round(price, 2),
                        "markdown": np.round(markdown, 3),
                    }
                )
            )
    sales_frame = pd.concat(rows, ignore_index=True)
    sales_frame = sales_frame.astype(
        {"region": "string", "category": "string", "day_type": "string", "sales": "float64"}
    )
    static = pd.DataFrame(
        {
            "region": pd.array([f"R{r + 1:02d}" for r in range(n_regions)], dtype="string"),
            "type": store_type,
            "type_A": (store_type == "A").astype(float),
            "type_B": (store_type == "B").astype(float),
            "type_C": (store_type == "C").astype(float),
            "size": size,
        }
    )
    report = ImportReport(source="synthetic", rows_read=len(sales_frame), rows_ok=len(sales_frame))
    return SalesData(
        sales=sales_frame,
        static=static,
        frequency=frequency,
        external_columns=list(EXTERNAL_COLUMNS),
        static_columns=list(STATIC_COLUMNS),
        report=report,
        sha256=_frame_digest(sales_frame, f"sales:{seed}:{frequency}"),
    )
