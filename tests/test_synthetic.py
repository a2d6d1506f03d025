"""The synthetic generator (funnel order, promotion effects, festival surges, determinism)
and the festival calendar it builds on."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from service.calendar import (
    FESTIVALS,
    festival_date,
    festivals_between,
    promotion_phase,
    promotion_phases,
)
from training.calendar import m5_day_type, walmart_day_type
from training.schemas import EVENT_COLUMNS, SALES_COLUMNS
from training.synthetic import generate_events, generate_sales


@pytest.fixture(scope="module")
def events() -> pd.DataFrame:
    return generate_events(n_users=120, n_items=200, days=40, start="2014-10-20", seed=3).events


def test_events_schema_and_funnel_order(events: pd.DataFrame) -> None:
    assert list(events.columns) == list(EVENT_COLUMNS)
    assert events["ts"].is_monotonic_increasing and events["event_id"].is_unique
    counts = events["action"].value_counts()
    assert counts["browse"] > counts["collect"] > counts["cart"] > counts["purchase"] > 0
    # Every collect / cart / purchase follows a browse of the same item by the same user.
    first = events.groupby(["user_id", "item_id", "action"])["ts"].min().unstack()
    later = first[["collect", "cart", "purchase"]].notna().any(axis=1)
    assert (first.loc[later, "browse"].notna()).all()
    for action in ("collect", "cart", "purchase"):
        has = first[action].notna()
        assert (first.loc[has, action] >= first.loc[has, "browse"]).all()
    assert (events["ts"] % 60 != 0).mean() > 0.9  # second resolution, not minutes


def test_promotion_shifts_the_funnel(events: pd.DataFrame) -> None:
    phase = promotion_phases(events["ts"].to_numpy(), [dt.date(2014, 11, 11)], 7, 3)
    days = {"before": 7, "during": 1, "after": 3}
    none_days = 40 - sum(days.values())
    per_day = {
        p: events[phase == p]["action"].value_counts() / (days.get(p, none_days))
        for p in ("before", "during", "after", "none")
    }
    # Purchases surge on the promotion day and slump in the run-up and after.
    assert per_day["during"]["purchase"] > 4 * per_day["none"]["purchase"]
    assert per_day["before"]["purchase"] < per_day["none"]["purchase"]
    assert per_day["after"]["purchase"] < per_day["none"]["purchase"]
    # The run-up collects and carts more per browse than ordinary days.
    ratio = {p: per_day[p]["cart"] / per_day[p]["browse"] for p in ("before", "none")}
    assert ratio["before"] > 1.5 * ratio["none"]


def test_next_item_depends_on_the_last(events: pd.DataFrame) -> None:
    browses = events[events["action"] == "browse"]
    pairs = browses.assign(nxt=browses.groupby("user_id")["item_id"].shift(-1)).dropna()
    top = pairs.groupby("item_id")["nxt"].agg(lambda s: s.value_counts().iloc[0] / len(s))
    support = pairs.groupby("item_id").size()
    # Knowing the last item predicts the next far better than chance over 200 items.
    assert top[support >= 10].mean() > 0.15


def test_events_deterministic_by_seed() -> None:
    a = generate_events(n_users=30, days=45, seed=7)
    b = generate_events(n_users=30, days=45, seed=7)
    c = generate_events(n_users=30, days=15, seed=8)
    pd.testing.assert_frame_equal(a.events, b.events)
    assert a.sha256 == b.sha256 and a.sha256 != c.sha256
    assert not generate_events(n_users=30, days=45, seed=7, promotions=[]).events.equals(a.events)


def test_sales_weekly_surges_on_festivals() -> None:
    data = generate_sales(seed=1)
    assert list(data.sales.columns[:5]) == list(SALES_COLUMNS)
    assert data.frequency == "W" and len(data.sales) == 6 * 5 * 156
    assert set(data.external_columns) <= set(data.sales.columns)
    assert set(data.static_columns) <= set(data.static.columns)
    assert {"thanksgiving", "christmas", "double11", "ordinary"} <= set(data.day_types)
    frame = data.sales
    base = frame[frame["day_type"] == "ordinary"].groupby(["region", "category"])["sales"].median()
    for festival in ("thanksgiving", "christmas", "double11"):
        fest = frame[frame["day_type"] == festival].groupby(["region", "category"])["sales"].mean()
        lift = fest / base
        assert lift.min() > 2.0 and lift.max() < 15.0
        assert lift.std() > 0.2  # the surge differs by region and category
    # Weekly dates are Walmart-style week-ending Fridays with its holiday convention.
    assert (frame["date"].dt.day_of_week == 4).all()
    thanks = frame.loc[frame["day_type"] == "thanksgiving", "date"].dt.date.unique()
    assert all(walmart_day_type(d) == "thanksgiving" for d in thanks)


def test_sales_external_factors_matter_and_deterministic() -> None:
    data = generate_sales(seed=2)
    frame = data.sales[data.sales["day_type"] == "ordinary"]
    corr = []
    for _, group in frame.groupby(["region", "category"]):
        corr.append(np.corrcoef(np.log(group["price"]), np.log(group["sales"]))[0, 1])
    assert np.mean(corr) < -0.2  # cheaper weeks sell more
    big = data.static.sort_values("size")
    level = data.sales.groupby("region")["sales"].mean()
    assert level[big["region"].iloc[-1]] > level[big["region"].iloc[0]]
    pd.testing.assert_frame_equal(data.sales, generate_sales(seed=2).sales)
    daily = generate_sales(n_regions=2, n_categories=2, years=1, frequency="D", seed=2)
    assert daily.frequency == "D" and len(daily.sales) == 2 * 2 * 364
    assert (daily.sales["sales"] > 0).all()


# ---- calendar ---------------------------------------------------------------------------


def test_festival_dates() -> None:
    assert festival_date("thanksgiving", 2010) == dt.date(2010, 11, 25)
    assert festival_date("black_friday", 2011) == dt.date(2011, 11, 25)
    assert festival_date("cyber_monday", 2011) == dt.date(2011, 11, 28)
    assert festival_date("super_bowl", 2012) == dt.date(2012, 2, 5)
    assert festival_date("super_bowl", 2023) == dt.date(2023, 2, 12)
    assert festival_date("labor_day", 2012) == dt.date(2012, 9, 3)
    assert FESTIVALS["double11"] == (11, 11)
    inside = festivals_between("2014-11-01", "2014-12-31")
    names = [name for _, name in inside]
    assert names[:2] == ["double11", "thanksgiving"] and "double12" in names
    assert names.index("double12") < names.index("christmas")


def test_walmart_and_m5_day_types() -> None:
    # The Kaggle IsHoliday weeks (week-ending Fridays).
    assert walmart_day_type("2010-02-12") == "super_bowl"
    assert walmart_day_type("2012-09-07") == "labor_day"
    assert walmart_day_type("2011-11-25") == "thanksgiving"
    assert walmart_day_type("2010-12-31") == "christmas"
    assert walmart_day_type("2012-12-28") == "christmas"
    assert walmart_day_type("2010-12-24") == "ordinary"
    assert m5_day_type("Thanksgiving", None) == "thanksgiving"
    assert m5_day_type("OrthodoxEaster", "Easter") == "easter"
    assert m5_day_type("Father's day", "") == "other_event"
    assert m5_day_type(float("nan"), None) == "ordinary"


def test_promotion_phase() -> None:
    promos = [dt.date(2014, 11, 11), (dt.date(2014, 12, 12), dt.date(2014, 12, 13))]
    assert promotion_phase("2014-11-11 23:00", promos) == "during"
    assert promotion_phase(dt.date(2014, 11, 4), promos) == "before"
    assert promotion_phase(dt.date(2014, 11, 3), promos) == "none"
    assert promotion_phase(dt.date(2014, 11, 14), promos) == "after"
    assert promotion_phase(dt.date(2014, 12, 13), promos) == "during"
    assert promotion_phase(dt.date(2014, 12, 16), promos, after_days=3) == "after"
    ts = int(dt.datetime(2014, 11, 10, 12, tzinfo=dt.UTC).timestamp())
    assert promotion_phase(ts, promos) == "before"
    days = pd.date_range("2014-10-25", "2014-12-20", tz="UTC")
    stamps = (days - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    vector = promotion_phases(stamps.to_numpy(), promos, 7, 3)
    assert list(vector) == [promotion_phase(d.date(), promos, 7, 3) for d in days]
