"""Promotion occasions for MetaCVR: a user-configurable calendar -> BP / DP / AP / NP per day.

MetaCVR (paper 002, Sec. I and III-D) decomposes time into four occasions around each
promotion: Before-Promotion (BP), During-Promotion (DP), After-Promotion (AP) and
Not-Promotion (NP). The paper's promotions affect "about a week" each, but the widths are
business knowledge, so they are settings here: `before_days` and `after_days`, per calendar
or per promotion.

It lives on the serving side (pure Python + numpy, no pandas, no torch) because the CVR
servable finds a request's occasion from the calendar stored in the manifest; training
builds that calendar with the same code. Festival dates and the before / during / after
rule are `service.calendar`'s, so an occasion can never disagree with a promotion phase.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from service.calendar import EPOCH, FESTIVALS, PHASES, phase_ranks

#: Occasion codes in the order the model's prototype bank uses (index = occasion id).
OCCASIONS: tuple[str, ...] = ("BP", "DP", "AP", "NP")
OCCASION_INDEX: dict[str, int] = {name: i for i, name in enumerate(OCCASIONS)}
#: Occasion id of each phase of `service.calendar.PHASES` (during, before, after, none).
PHASE_OCCASION = np.array([OCCASION_INDEX[o] for o in ("DP", "BP", "AP", "NP")], dtype=np.int64)


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
        """BP / DP / AP / NP for one calendar day (UTC)."""
        days = np.asarray([(day - EPOCH).days], dtype=np.int64)
        return OCCASIONS[int(self._occasion_of_days(days)[0])]

    def occasion_ids(self, ts: Sequence[int] | np.ndarray) -> np.ndarray:
        """Occasion index per Unix-seconds timestamp."""
        return self._occasion_of_days(np.asarray(ts, dtype=np.int64) // 86400)

    def _occasion_of_days(self, days: np.ndarray) -> np.ndarray:
        """`service.calendar.phase_ranks` per group of promotions sharing window widths, the
        highest-precedence phase over the groups, as occasion ids."""
        groups: dict[tuple[int, int], list[Promotion]] = {}
        for promo in self.promotions:
            before = self.before_days if promo.before_days is None else promo.before_days
            after = self.after_days if promo.after_days is None else promo.after_days
            groups.setdefault((before, after), []).append(promo)
        rank = np.full(days.shape, PHASES.index("none"), dtype=np.int8)
        for (before, after), promos in groups.items():
            rank = np.minimum(rank, phase_ranks(days, promos, before, after))
        return PHASE_OCCASION[rank]

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


def _epoch_day(day_number: int) -> dt.date:
    return EPOCH + dt.timedelta(days=day_number)


def parse_promotion(spec: str) -> Promotion:
    """`NAME:START[:END]` with ISO dates, e.g. `double11:2015-11-11` (CLI `--promotion`)."""
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not parts[0]:
        raise ValueError(f"promotion {spec!r}: expected NAME:YYYY-MM-DD[:YYYY-MM-DD]")
    start = dt.date.fromisoformat(parts[1])
    end = dt.date.fromisoformat(parts[2]) if len(parts) == 3 else start
    return Promotion(name=parts[0], start=start, end=end)


def _festival_days(years: Iterable[int]) -> list[Promotion]:
    """The fixed-date festivals of `service.calendar` in each of `years`, as promotions."""
    promos = []
    for year in sorted(set(years)):
        for name, (month, day) in FESTIVALS.items():
            date = dt.date(year, month, day)
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
