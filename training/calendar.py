"""Festival calendar and day types shared by the adapters, the generator and the jobs.

Why one module: the sales models (STMP, DINOP) learn one embedding per day type, and the
conversion model (MetaCVR) one prototype per promotion occasion. Both only work if every
source names the same festival the same way, so the dates and the grouping rules live here
and nowhere else.

- `FESTIVALS`: fixed-date festivals as `name -> (month, day)` (read by `training.occasions`).
- `MOVABLE_FESTIVALS`: festivals whose date follows a weekday rule (Thanksgiving, ...).
- `festival_date(name, year)`, `festivals_between(start, end)`.
- `walmart_day_type(week_date)`: Walmart's holiday weeks -> `super_bowl`, `labor_day`,
  `thanksgiving`, `christmas`, else `ordinary`.
- `m5_day_type(event_name_1, event_name_2)`: M5's ~30 event names grouped to a handful.
- `promotion_phase(ts, promotions, before_days, after_days)`: before / during / after / none.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

ORDINARY = "ordinary"

#: Fixed-date festivals: name -> (month, day). `training.occasions` reads this mapping.
FESTIVALS: dict[str, tuple[int, int]] = {
    "new_year": (1, 1),
    "may_day": (5, 1),  # China's Labour Day holiday; Tmall runs May Day sales
    "618": (6, 18),  # JD/Tmall mid-year sale
    "double11": (11, 11),  # Singles' Day, the largest online sale
    "double12": (12, 12),
    "christmas": (12, 25),
}


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> dt.date:
    """The n-th `weekday` (Mon=0) of a month; n=1 is the first."""
    first = dt.date(year, month, 1)
    offset = (weekday - first.weekday()) % 7
    return first + dt.timedelta(days=offset + 7 * (n - 1))


def _thanksgiving(year: int) -> dt.date:
    return _nth_weekday(year, 11, 3, 4)  # fourth Thursday of November (US)


def _super_bowl(year: int) -> dt.date:
    # First Sunday of February 2004-2021; the 17-game season moved it a week later from 2022.
    return _nth_weekday(year, 2, 6, 1 if year <= 2021 else 2)


#: Festivals whose date follows a rule: name -> year -> date.
MOVABLE_FESTIVALS: dict[str, Callable[[int], dt.date]] = {
    "super_bowl": _super_bowl,
    "labor_day": lambda year: _nth_weekday(year, 9, 0, 1),  # first Monday of September (US)
    "thanksgiving": _thanksgiving,
    "black_friday": lambda year: _thanksgiving(year) + dt.timedelta(days=1),
    "cyber_monday": lambda year: _thanksgiving(year) + dt.timedelta(days=4),
}

ALL_FESTIVALS: tuple[str, ...] = (*FESTIVALS, *MOVABLE_FESTIVALS)


def festival_date(name: str, year: int) -> dt.date:
    """The date of festival `name` in `year` (KeyError for an unknown name)."""
    if name in FESTIVALS:
        month, day = FESTIVALS[name]
        return dt.date(year, month, day)
    return MOVABLE_FESTIVALS[name](year)


def _as_date(value: Any) -> dt.date:
    """A date from a date, datetime, pandas Timestamp, ISO string or Unix seconds (UTC)."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, int | float | np.integer | np.floating):
        return dt.datetime.fromtimestamp(int(value), dt.UTC).date()
    return pd.Timestamp(value).date()


def festivals_between(
    start: Any, end: Any, names: Iterable[str] | None = None
) -> list[tuple[dt.date, str]]:
    """Every (date, festival) with start <= date <= end (inclusive), sorted by date then name."""
    first, last = _as_date(start), _as_date(end)
    wanted = tuple(names) if names is not None else ALL_FESTIVALS
    out: list[tuple[dt.date, str]] = []
    for year in range(first.year, last.year + 1):
        for name in wanted:
            day = festival_date(name, year)
            if first <= day <= last:
                out.append((day, name))
    return sorted(out)


# ---- Walmart (weekly) -----------------------------------------------------------------

#: The four holiday weeks of the Walmart Kaggle data, in priority order.
WALMART_HOLIDAYS: tuple[str, ...] = ("super_bowl", "labor_day", "thanksgiving", "christmas")


def week_day_type(week_end: Any, names: Sequence[str], days: int = 7) -> str:
    """The first of `names` whose date falls in the week of `days` days ending on `week_end`.

    Walmart's `Date` is the Friday that ends a Saturday-Friday week: the Kaggle holiday
    flag for Super Bowl 2010 (Sunday 02-07) is on 2010-02-12, for Christmas 2010 on
    2010-12-31. So a week holds a festival when `week_end - 6 <= festival <= week_end`.
    """
    last = _as_date(week_end)
    first = last - dt.timedelta(days=days - 1)
    for name in names:
        for year in {first.year, last.year}:
            if first <= festival_date(name, year) <= last:
                return name
    return ORDINARY


def walmart_day_type(week_end: Any) -> str:
    """`super_bowl`, `labor_day`, `thanksgiving`, `christmas` or `ordinary` for a Walmart week."""
    return week_day_type(week_end, WALMART_HOLIDAYS)


# ---- M5 (daily) ------------------------------------------------------------------------

#: M5 event names -> day type; every other named event is `other_event`.
M5_EVENT_GROUPS: dict[str, str] = {
    "thanksgiving": "thanksgiving",
    "christmas": "christmas",
    "orthodoxchristmas": "other_event",
    "newyear": "newyear",
    "superbowl": "superbowl",
    "easter": "easter",
}
#: When a day has two events, the first group in this order names it.
M5_DAY_TYPES: tuple[str, ...] = (
    "thanksgiving",
    "christmas",
    "newyear",
    "superbowl",
    "easter",
    "other_event",
    ORDINARY,
)


def _m5_group(name: Any) -> str:
    if name is None or (isinstance(name, float) and np.isnan(name)):
        return ORDINARY
    key = str(name).strip().replace(" ", "").replace("'", "").lower()
    if not key or key == "nan":
        return ORDINARY
    return M5_EVENT_GROUPS.get(key, "other_event")


def m5_day_type(*event_names: Any) -> str:
    """The grouped day type of one M5 day from its event names (calendar: up to two)."""
    groups = {_m5_group(name) for name in event_names}
    for day_type in M5_DAY_TYPES:
        if day_type in groups:
            return day_type
    return ORDINARY


def daily_day_type(day: Any, names: Sequence[str] = ALL_FESTIVALS) -> str:
    """The festival on `day` (first of `names` that matches), else `ordinary`."""
    return week_day_type(day, names, days=1)


# ---- promotion phases ------------------------------------------------------------------

Phase = Literal["before", "during", "after", "none"]


def _promotion_span(promotion: Any) -> tuple[dt.date, dt.date]:
    """(first, last) day of a promotion given as a date, a (start, end) pair or an object."""
    if hasattr(promotion, "start") and hasattr(promotion, "end"):
        return _as_date(promotion.start), _as_date(promotion.end)
    if isinstance(promotion, tuple | list) and len(promotion) == 2:
        return _as_date(promotion[0]), _as_date(promotion[1])
    day = _as_date(promotion)
    return day, day


def promotion_phase(
    ts: Any, promotions: Iterable[Any], before_days: int = 7, after_days: int = 3
) -> Phase:
    """Where `ts` (Unix seconds UTC, date, datetime or string) lies relative to promotions.

    `during`: on a promotion day; `before`: within `before_days` days before a promotion's
    first day; `after`: within `after_days` days after its last day; else `none`. Where
    windows overlap, during > before > after (as in `training.occasions`): the run-up to the
    next promotion moves conversion more than the tail of the last one.
    """
    if before_days < 0 or after_days < 0:
        raise ValueError("before_days and after_days must be >= 0")
    day = _as_date(ts)
    best: Phase = "none"
    rank = {"during": 0, "before": 1, "after": 2, "none": 3}
    for promotion in promotions:
        first, last = _promotion_span(promotion)
        if first <= day <= last:
            return "during"
        phase: Phase = "none"
        if 0 < (first - day).days <= before_days:
            phase = "before"
        elif 0 < (day - last).days <= after_days:
            phase = "after"
        if rank[phase] < rank[best]:
            best = phase
    return best


def promotion_phases(
    ts: np.ndarray | Sequence[int],
    promotions: Iterable[Any],
    before_days: int = 7,
    after_days: int = 3,
) -> np.ndarray:
    """Vectorised `promotion_phase` over Unix seconds; returns an array of phase strings."""
    days = np.asarray(ts, dtype=np.int64) // 86400
    rank = np.full(days.shape, 3, dtype=np.int8)
    for promotion in promotions:
        first, last = _promotion_span(promotion)
        lo = (first - dt.date(1970, 1, 1)).days
        hi = (last - dt.date(1970, 1, 1)).days
        rank = np.where((days >= lo) & (days <= hi), 0, rank)
        rank = np.where((days < lo) & (days >= lo - before_days), np.minimum(rank, 1), rank)
        rank = np.where((days > hi) & (days <= hi + after_days), np.minimum(rank, 2), rank)
    names = np.array(["during", "before", "after", "none"], dtype=object)
    return names[rank]
