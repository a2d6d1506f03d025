"""IJCAI-15 Tmall repeat-buyer user log -> canonical events.

Two layouts are accepted, told apart by the header (or, header-less, by the field count):

- the original `data_format1/user_log_format1.csv`: `user_id,item_id,cat_id,seller_id,
  brand_id,time_stamp,action_type` with `time_stamp` as `mmdd` (`829`, `1111`);
- the XMU dblab course copy `user_log.csv`: `user_id,item_id,cat_id,merchant_id,brand_id,
  month,day,action[,age_range,gender,province]`.

Actions: 0 = click (browse), 1 = add-to-cart, 2 = purchase, 3 = add-to-favourite (collect).
No year in the file: the log ends on Double 11 2014, so the year is `YEAR` (2014) unless
`year=` is given. Day resolution: ts = midnight UTC; file order breaks ties. `brand_id` may be
empty and is not required.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from training.adapters.common import (
    DataError,
    canonical_part,
    day_seconds,
    expand_paths,
    finish_events,
    map_actions,
    read_rows,
    sniff,
    to_float,
)
from training.schemas import EventLog, ImportReport

FORMAT = "tmall_ijcai15"
KIND = "events"
DESCRIPTION = (
    "IJCAI-15 user_log_format1.csv (time_stamp mmdd, seller_id) or XMU user_log.csv "
    "(month,day,merchant_id); year 2014"
)
ORIGINAL = ("user_id", "item_id", "cat_id", "seller_id", "brand_id", "time_stamp", "action_type")
XMU = ("user_id", "item_id", "cat_id", "merchant_id", "brand_id", "month", "day", "action")
XMU_EXTRA = ("age_range", "gender", "province")
ACTIONS = {"0": "browse", "1": "cart", "2": "purchase", "3": "collect"}
YEAR = 2014


def _layout(fields: list[str], header: bool) -> tuple[str, int]:
    """("original" | "xmu", number of fields) for a file's first line."""
    if header:
        if "time_stamp" in fields:
            return "original", len(fields)
        if "month" in fields and "day" in fields:
            return "xmu", len(fields)
        raise DataError(f"header {fields} is neither the IJCAI-15 nor the XMU layout")
    if len(fields) == len(ORIGINAL):
        return "original", len(ORIGINAL)
    if len(fields) in (len(XMU), len(XMU) + len(XMU_EXTRA)):
        return "xmu", len(fields)
    raise DataError(f"a header-less line of {len(fields)} fields fits no IJCAI-15 layout")


def load(paths: Sequence[Path | str], year: int = YEAR) -> EventLog:
    files = expand_paths(paths)
    report = ImportReport(source=FORMAT)
    parts = []
    for path in files:
        sniffed = sniff(path)
        header = sniffed.has_header((*ORIGINAL, *XMU))
        layout, n_fields = _layout(sniffed.first_fields, header)
        if header:  # columns by name: copies reorder or add columns
            names = sniffed.first_fields
            wanted = ORIGINAL if layout == "original" else XMU
            missing = [c for c in wanted if c not in names and c != "brand_id"]
            if missing:
                raise DataError(f"{Path(path).name}: missing columns {missing}")
            col = {c: names.index(c) for c in wanted if c in names}
        else:
            col = {c: i for i, c in enumerate(ORIGINAL if layout == "original" else XMU)}
        action_col = col["action_type" if layout == "original" else "action"]
        date_cols = (col["time_stamp"],) if layout == "original" else (col["month"], col["day"])
        required = (col["user_id"], col["item_id"], action_col, *date_cols)
        for chunk in read_rows(sniffed, n_fields, header, report, required=required):
            action = map_actions(chunk[action_col], ACTIONS, report)
            if layout == "original":
                stamp = np.nan_to_num(to_float(chunk[col["time_stamp"]])).astype(np.int64)
                month, day = stamp // 100, stamp % 100
            else:
                month = np.nan_to_num(to_float(chunk[col["month"]])).astype(np.int64)
                day = np.nan_to_num(to_float(chunk[col["day"]])).astype(np.int64)
            ts = day_seconds(year, month, day)
            category = chunk[col["cat_id"]] if "cat_id" in col else ""
            parts.append(
                canonical_part(
                    chunk[col["user_id"]],
                    chunk[col["item_id"]],
                    category,
                    action,
                    ts,
                    chunk["_row"],
                    report,
                )
            )
    return finish_events(parts, FORMAT, report, files)
