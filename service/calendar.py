"""Festival dates and promotion phases: the one definition training and serving share.

Why one module: the sales models (STMP, DINOP) learn one embedding per day type and the
conversion model (MetaCVR) one prototype per promotion occasion. Both only work if every
source names the same festival the same way and every caller puts a day in the same phase
of a promotion, so the dates and the phase rule live here and nowhere else. It sits on the
serving side (pure Python + numpy, no pandas) because the CVR servable finds a request's
occasion with it; training imports it from here.

- `FESTIVALS`: fixed-date festivals as `name -> (month, day)`; `MOVABLE_FESTIVALS`: those
  whose date follows a weekday rule (Thanksgiving, ...); `festival_date(name, year)`,
  `festivals_between(start, end)`, `week_day_type(week_end, names)`.
- `promotion_phases(ts, promotions, before_days, after_days)`: before / during / after /
  none per Unix-seconds timestamp; `promotion_phase` is the same rule for one day.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

import numpy as np

ORDINARY = "ordinary"
EPOCH = dt.date(1970, 1, 1)

#: Fixed-date festivals: name -> (month, day).
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


def as_date(value: Any) -> dt.date:
    """A date from a date, datetime (pandas Timestamps are ones), numpy datetime64, ISO
    string or Unix seconds (UTC)."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, np.datetime64):
        return EPOCH + dt.timedelta(days=int(value.astype("datetime64[D]").astype(np.int64)))
    if isinstance(value, int | float | np.integer | np.floating):
        return dt.datetime.fromtimestamp(int(value), dt.UTC).date()
    return dt.datetime.fromisoformat(str(value).strip()).date()


def festivals_between(
    start: Any, end: Any, names: Iterable[str] | None = None
) -> list[tuple[dt.date, str]]:
    """Every (date, festival) with start <= date <= end (inclusive), sorted by date then name."""
    first, last = as_date(start), as_date(end)
    wanted = tuple(names) if names is not None else ALL_FESTIVALS
    out: list[tuple[dt.date, str]] = []
    for year in range(first.year, last.year + 1):
        for name in wanted:
            day = festival_date(name, year)
            if first <= day <= last:
                out.append((day, name))
    return sorted(out)


def week_day_type(week_end: Any, names: Sequence[str], days: int = 7) -> str:
    """The first of `names` whose date falls in the `days` days ending on `week_end`, else
    `ordinary`.

    Walmart's `Date` is the Friday that ends a Saturday-Friday week: the Kaggle holiday
    flag for Super Bowl 2010 (Sunday 02-07) is on 2010-02-12, for Christmas 2010 on
    2010-12-31. So a week holds a festival when `week_end - 6 <= festival <= week_end`.
    """
    last = as_date(week_end)
    first = last - dt.timedelta(days=days - 1)
    for name in names:
        for year in {first.year, last.year}:
            if first <= festival_date(name, year) <= last:
                return name
    return ORDINARY


def daily_day_type(day: Any, names: Sequence[str] = ALL_FESTIVALS) -> str:
    """The festival on `day` (first of `names` that matches), else `ordinary`."""
    return week_day_type(day, names, days=1)


# ---- promotion phases ------------------------------------------------------------------

Phase = Literal["before", "during", "after", "none"]
PHASES: tuple[Phase, ...] = ("during", "before", "after", "none")  # index = precedence


def promotion_span(promotion: Any) -> tuple[dt.date, dt.date]:
    """(first, last) day of a promotion given as a date, a (start, end) pair or an object
    with `start` and `end`."""
    if hasattr(promotion, "start") and hasattr(promotion, "end"):
        return as_date(promotion.start), as_date(promotion.end)
    if isinstance(promotion, tuple | list) and len(promotion) == 2:
        return as_date(promotion[0]), as_date(promotion[1])
    day = as_date(promotion)
    return day, day


def phase_ranks(
    days: np.ndarray, promotions: Iterable[Any], before_days: int, after_days: int
) -> np.ndarray:
    """The phase of each epoch day as an index into `PHASES`.

    `during`: on a promotion day; `before`: within `before_days` days before a promotion's
    first day; `after`: within `after_days` days after its last day; else `none`. Where
    windows overlap, during > before > after: the run-up to the next promotion moves
    conversion more than the tail of the last one.
    """
    if before_days < 0 or after_days < 0:
        raise ValueError("before_days and after_days must be >= 0")
    rank = np.full(days.shape, 3, dtype=np.int8)
    for promotion in promotions:
        first, last = promotion_span(promotion)
        lo, hi = (first - EPOCH).days, (last - EPOCH).days
        rank = np.where((days >= lo) & (days <= hi), 0, rank)
        rank = np.where((days < lo) & (days >= lo - before_days), np.minimum(rank, 1), rank)
        rank = np.where((days > hi) & (days <= hi + after_days), np.minimum(rank, 2), rank)
    return rank


def promotion_phases(
    ts: np.ndarray | Sequence[int],
    promotions: Iterable[Any],
    before_days: int = 7,
    after_days: int = 3,
) -> np.ndarray:
    """The phase of every Unix-seconds timestamp, as an array of phase strings."""
    days = np.asarray(ts, dtype=np.int64) // 86400
    names: np.ndarray = np.array(PHASES, dtype=object)
    phases: np.ndarray = names[phase_ranks(days, promotions, before_days, after_days)]
    return phases


def promotion_phase(
    when: Any, promotions: Iterable[Any], before_days: int = 7, after_days: int = 3
) -> Phase:
    """The phase of one day (Unix seconds UTC, date, datetime or ISO string)."""
    day = np.asarray([(as_date(when) - EPOCH).days], dtype=np.int64)
    return PHASES[int(phase_ranks(day, promotions, before_days, after_days)[0])]
