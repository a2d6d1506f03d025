"""Promotion occasions for MetaCVR: a user-configurable calendar -> BP / DP / AP / NP per day.

MetaCVR (paper 002, Sec. I and III-D) decomposes time into four occasions around each
promotion: Before-Promotion (BP), During-Promotion (DP), After-Promotion (AP) and
Not-Promotion (NP). The paper's promotions affect "about a week" each, but the widths are
business knowledge, so they are settings here: `before_days` and `after_days`, per calendar
or per promotion.

This module is pure Python + numpy (no pandas, no torch) because the CVR servable uses it
at request time to find the occasion of a request from the calendar stored in the manifest.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Occasion codes in the order the model's prototype bank uses (index = occasion id).
OCCASIONS: tuple[str, ...] = ("BP", "DP", "AP", "NP")
OCCASION_INDEX: dict[str, int] = {name: i for i, name in enumerate(OCCASIONS)}

# Festivals used when the data's calendar module has none: month, day, name. These are the
# promotions inside the shared samples (Double 11 in the IJCAI-15 log, Double 12 in Tianchi
# mobile, 6-18 in the Tmall brand log).
_FALLBACK_FESTIVALS: tuple[tuple[int, int, str], ...] = (
    (6, 18, "618"),
    (11, 11, "double11"),
    (12, 12, "double12"),
)


@dataclass(frozen=True)
class Promotion:
    """One promotion: its first and last day (inclusive) and optional own window widths."""

    name: str
    start: dt.date
    end: dt.date
    before_days: int | None = None
    after_days: int | None = None

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError(
                f"promotion {self.name!r}: end {self.end} is before start {self.start}"
            )
        for label, value in (("before_days", self.before_days), ("after_days", self.after_days)):
            if value is not None and value < 0:
                raise ValueError(f"promotion {self.name!r}: {label} must be >= 0")


@dataclass
class OccasionCalendar:
    """Promotions plus default window widths; maps days and timestamps to occasions.

    A day inside a promotion is DP; within `before_days` before its start BP; within
    `after_days` after its end AP; otherwise NP. Where windows of two promotions overlap,
    DP wins over BP, and BP over AP: a run-up to the next promotion matters more for
    conversion than the tail of the previous one.
    """

    promotions: list[Promotion] = field(default_factory=list)
    before_days: int = 7  # paper Sec. I: "each promotion impacting about a week"
    after_days: int = 3  # paper Fig. 2 uses 2-3 day windows around promotions

    def __post_init__(self) -> None:
        if self.before_days < 0 or self.after_days < 0:
            raise ValueError("before_days and after_days must be >= 0")

    def occasion_of_day(self, day: dt.date) -> str:
        """BP / DP / AP / NP for one calendar day (UTC).

        Uses `training.calendar.promotion_phase` (the data engineer's single definition of
        before / during / after) per group of promotions sharing window widths; the local
        rule below is the same definition, used only if that module cannot be imported.
        """
        groups: dict[tuple[int, int], list[Promotion]] = {}
        for promo in self.promotions:
            before = self.before_days if promo.before_days is None else promo.before_days
            after = self.after_days if promo.after_days is None else promo.after_days
            groups.setdefault((before, after), []).append(promo)
        best = 3
        for (before, after), promos in groups.items():
            best = min(best, _PHASE_RANK[_phase(day, promos, before, after)])
        return ("DP", "BP", "AP", "NP")[best]

    def occasion_ids(self, ts: Sequence[int] | np.ndarray) -> np.ndarray:
        """Occasion index per Unix-seconds timestamp (vectorised over distinct days)."""
        ts_arr = np.asarray(ts, dtype=np.int64)
        days = ts_arr // 86400
        uniq, inverse = np.unique(days, return_inverse=True)
        codes = np.array(
            [OCCASION_INDEX[self.occasion_of_day(_epoch_day(int(d)))] for d in uniq],
            dtype=np.int64,
        )
        return codes[inverse] if len(uniq) else np.zeros(0, dtype=np.int64)

    # ---- (de)serialisation: the manifest's config carries the calendar --------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "before_days": self.before_days,
            "after_days": self.after_days,
            "promotions": [
                {
                    "name": p.name,
                    "start": p.start.isoformat(),
                    "end": p.end.isoformat(),
                    "before_days": p.before_days,
                    "after_days": p.after_days,
                }
                for p in self.promotions
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OccasionCalendar:
        promos = [
            Promotion(
                name=str(p["name"]),
                start=dt.date.fromisoformat(str(p["start"])),
                end=dt.date.fromisoformat(str(p.get("end") or p["start"])),
                before_days=p.get("before_days"),
                after_days=p.get("after_days"),
            )
            for p in data.get("promotions", [])
        ]
        return cls(
            promotions=promos,
            before_days=int(data.get("before_days", 7)),
            after_days=int(data.get("after_days", 3)),
        )


_PHASE_RANK = {"during": 0, "before": 1, "after": 2, "none": 3}


def _local_phase(day: dt.date, promos: Sequence[Promotion], before: int, after: int) -> str:
    best = "none"
    for promo in promos:
        if promo.start <= day <= promo.end:
            return "during"
        phase = "none"
        if 0 < (promo.start - day).days <= before:
            phase = "before"
        elif 0 < (day - promo.end).days <= after:
            phase = "after"
        if _PHASE_RANK[phase] < _PHASE_RANK[best]:
            best = phase
    return best


def _phase(day: dt.date, promos: Sequence[Promotion], before: int, after: int) -> str:
    try:
        from training.calendar import promotion_phase
    except ImportError:  # serving image without the data tooling: same rule, local copy
        return _local_phase(day, promos, before, after)
    return str(promotion_phase(day, promos, before, after))


def _epoch_day(day_number: int) -> dt.date:
    return dt.date(1970, 1, 1) + dt.timedelta(days=day_number)


def parse_promotion(spec: str) -> Promotion:
    """`NAME:START[:END]` with ISO dates, e.g. `double11:2015-11-11` (CLI `--promotion`)."""
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not parts[0]:
        raise ValueError(f"promotion {spec!r}: expected NAME:YYYY-MM-DD[:YYYY-MM-DD]")
    start = dt.date.fromisoformat(parts[1])
    end = dt.date.fromisoformat(parts[2]) if len(parts) == 3 else start
    return Promotion(name=parts[0], start=start, end=end)


def _festival_days(years: Iterable[int]) -> list[Promotion]:
    """Festival promotions for `years`: from `training.calendar` when it knows any."""
    festivals: list[tuple[int, int, str]] = []
    try:  # the data engineer's calendar is the source of truth when present
        from training import calendar as data_calendar

        known = getattr(data_calendar, "FESTIVALS", None)
        if isinstance(known, Mapping):
            for name, value in known.items():
                if isinstance(value, tuple) and len(value) == 2:
                    festivals.append((int(value[0]), int(value[1]), str(name)))
    except Exception:
        festivals = []
    festivals = festivals or list(_FALLBACK_FESTIVALS)
    promos = []
    for year in sorted(set(years)):
        for month, day, name in festivals:
            try:
                date = dt.date(year, month, day)
            except ValueError:
                continue
            promos.append(Promotion(name=f"{name}-{year}", start=date, end=date))
    return promos


def default_calendar(
    ts: Sequence[int] | np.ndarray, before_days: int = 7, after_days: int = 3
) -> OccasionCalendar:
    """The festivals of every year the timestamps touch (plus the next, for serving)."""
    ts_arr = np.asarray(ts, dtype=np.int64)
    if len(ts_arr) == 0:
        years = {dt.datetime.now(dt.UTC).year}
    else:
        first = _epoch_day(int(ts_arr.min()) // 86400).year
        last = _epoch_day(int(ts_arr.max()) // 86400).year
        years = set(range(first, last + 2))
    return OccasionCalendar(
        promotions=_festival_days(years), before_days=before_days, after_days=after_days
    )
