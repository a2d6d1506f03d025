"""Tianchi mobile recommendation (2014/15) -> canonical events.

Original `tianchi_mobile_recommend_train_user.csv` (also re-posted as
`tianchi_fresh_comp_train_user.csv`): header `user_id,item_id,behavior_type,user_geohash,
item_category,time`; behaviour 1 = browse, 2 = collect, 3 = cart, 4 = purchase; `time` is
`YYYY-MM-DD HH` (hour resolution; `HH:MM[:SS]` is accepted too). A header-less copy is
accepted. `user_geohash` is often empty and is not required.

Times are Beijing wall-clock. They are kept as wall-clock read as UTC
(`UTC_OFFSET_HOURS = 0`), like the day-resolution sources whose dates become midnight UTC:
then a Double 12 event is on 12-12 for `calendar.promotion_phase`, as the shop saw it.
Pass `utc_offset_hours=8` to get true Unix seconds instead.

The item table file of the same competition (`..._train_item.csv`) holds no events; when it
is among the inputs (e.g. a folder is given) it is skipped and noted in the report.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from training.adapters.common import (
    canonical_part,
    expand_paths,
    finish_events,
    map_actions,
    read_rows,
    sniff,
    to_seconds,
)
from training.schemas import EventLog, ImportReport

FORMAT = "tianchi"
KIND = "events"
DESCRIPTION = "Tianchi mobile train_user.csv (user,item,1-4,geohash,category,'YYYY-MM-DD HH')"
COLUMNS = ("user_id", "item_id", "behavior_type", "user_geohash", "item_category", "time")
ACTIONS = {"1": "browse", "2": "collect", "3": "cart", "4": "purchase"}
UTC_OFFSET_HOURS = 0


def parse_times(raw: pd.Series) -> pd.Series:
    """`YYYY-MM-DD HH` (fast path) or any ISO-like date-time; unparseable -> NaT."""
    parsed = pd.to_datetime(raw, format="%Y-%m-%d %H", errors="coerce")
    rest = parsed.isna() & (raw != "")
    if rest.any():
        parsed[rest] = pd.to_datetime(raw[rest], format="ISO8601", errors="coerce")
    return parsed


def load(paths: Sequence[Path | str], utc_offset_hours: int = UTC_OFFSET_HOURS) -> EventLog:
    files = expand_paths(paths)
    report = ImportReport(source=FORMAT)
    parts = []
    used = []
    for path in files:
        sniffed = sniff(path)
        header = sniffed.has_header(COLUMNS)
        if header and "behavior_type" not in sniffed.first_fields:
            report.add_note(f"skipped file without events: {Path(path).name}")
            continue
        used.append(path)
        for chunk in read_rows(sniffed, len(COLUMNS), header, report, required=(0, 1, 2, 5)):
            action = map_actions(chunk[2], ACTIONS, report)
            ts = to_seconds(parse_times(chunk[5]))
            ts[ts >= 0] -= utc_offset_hours * 3600
            parts.append(
                canonical_part(chunk[0], chunk[1], chunk[4], action, ts, chunk["_row"], report)
            )
    return finish_events(parts, FORMAT, report, used)
