"""Tmall Recommendation Prize 2014 (`t_alibaba_data.csv`) -> canonical events.

Columns `user_id,brand_id,type,visit_datetime`; type 0 = click (browse), 1 = buy,
2 = collect, 3 = cart. Brands are the items; there is no category. The date has **no year
and no time**: the Tianchi original writes `M月D日` in GBK (`4月15日`), public copies the
ASCII `M-D` (`4-15`); both are read (`M/D` too). The year is `YEAR` (2013, per the data's
README) unless `year=` is given. Day resolution: ts = midnight UTC of the day; rows of one
day keep their file order (the stable sort in `finish_events`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from training.adapters.common import (
    canonical_part,
    day_seconds,
    expand_paths,
    finish_events,
    map_actions,
    read_rows,
    sniff,
)
from training.schemas import EventLog, ImportReport

FORMAT = "tmall_brand"
KIND = "events"
DESCRIPTION = "Tmall 2014 t_alibaba_data.csv (user,brand,type 0-3,'M-D' or GBK 'M月D日'; year 2013)"
COLUMNS = ("user_id", "brand_id", "type", "visit_datetime")
ACTIONS = {"0": "browse", "1": "purchase", "2": "collect", "3": "cart"}
YEAR = 2013
_DATE_RE = r"^\s*(\d{1,2})\s*(?:月|-|/|\.)\s*(\d{1,2})\s*(?:日)?\s*$"


def parse_month_day(raw: pd.Series, year: int) -> pd.Series:
    """`M-D` / `M月D日` / `M/D` -> Unix seconds of midnight UTC in `year`; -1 when invalid."""
    parts = raw.str.extract(_DATE_RE)
    month = pd.to_numeric(parts[0], errors="coerce").fillna(0).astype(int).to_numpy()
    day = pd.to_numeric(parts[1], errors="coerce").fillna(0).astype(int).to_numpy()
    return pd.Series(day_seconds(year, month, day), index=raw.index)


def load(paths: Sequence[Path | str], year: int = YEAR) -> EventLog:
    files = expand_paths(paths)
    report = ImportReport(source=FORMAT)
    parts = []
    for path in files:
        sniffed = sniff(path)
        for chunk in read_rows(sniffed, len(COLUMNS), sniffed.has_header(COLUMNS), report):
            action = map_actions(chunk[2], ACTIONS, report)
            ts = parse_month_day(chunk[3], year).to_numpy()
            parts.append(canonical_part(chunk[0], chunk[1], "", action, ts, chunk["_row"], report))
    return finish_events(parts, FORMAT, report, files)
