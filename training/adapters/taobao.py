"""Taobao UserBehavior (Alibaba, Tianchi dataset 649) -> canonical events.

Original `UserBehavior.csv`: 3.4 GB, ~100M rows, **no header**, columns
`user_id,item_id,category_id,behavior_type,timestamp` (Unix seconds); behaviours `pv`, `fav`,
`cart`, `buy`. Excerpts that added a header row are accepted too (detected from the first
line). The file is read in chunks, so the full file never exists as Python objects.
Out-of-window timestamps present in the raw data (2017-09, 2017-11 before the 25th) are kept
as they are: they are real rows, and the window is a modelling choice, not a parse error.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from training.adapters.common import (
    canonical_part,
    expand_paths,
    finish_events,
    map_actions,
    read_rows,
    sniff,
    to_int_seconds,
)
from training.schemas import EventLog, ImportReport

FORMAT = "taobao"
KIND = "events"
DESCRIPTION = (
    "Taobao UserBehavior.csv (user,item,category,pv|fav|cart|buy,unix ts; header optional)"
)
COLUMNS = ("user_id", "item_id", "category_id", "behavior_type", "timestamp")
ACTIONS = {"pv": "browse", "fav": "collect", "cart": "cart", "buy": "purchase"}


def load(paths: Sequence[Path | str]) -> EventLog:
    files = expand_paths(paths)
    report = ImportReport(source=FORMAT)
    parts = []
    for path in files:
        sniffed = sniff(path)
        for chunk in read_rows(sniffed, len(COLUMNS), sniffed.has_header(COLUMNS), report):
            action = map_actions(chunk[3], ACTIONS, report)
            ts_int = to_int_seconds(chunk[4])
            parts.append(
                canonical_part(chunk[0], chunk[1], chunk[2], action, ts_int, chunk["_row"], report)
            )
    return finish_events(parts, FORMAT, report, files)
