"""IJCAI-15 Tmall repeat buyers, `data_format2` -> canonical events.

The competition's "format 2" (`data_format2/train_format2.csv`, `test_format2.csv`) has one
line per (user, merchant) pair: `user_id,age_range,gender,merchant_id,label,activity_log`
(copies reorder the columns; they are found by name, and a header-less line is read in the
original order, or with the log fifth when the fifth field is the one holding records).
`activity_log` packs every interaction of that user with that merchant in the six months up
to Double 11 2014 as records `item_id:category_id:brand_id:time_stamp:action_type` joined by
`#`, in no particular order; `time_stamp` is `mmdd`, actions are those of the format-1 log:
0 = click (browse), 1 = add-to-cart, 2 = purchase, 3 = add-to-favourite (collect).

Mapping, the same as `tmall_ijcai15` (the format-1 log of the same users), so a job sees one
data set the same way in either format: user = `user_id`, item = `item_id` (not the
merchant: the five jobs score users against items), category = `category_id`; the brand is
not used. The log has no year: it ends on Double 11 2014, so the year is `YEAR` (2014) and
the calendar's `double11` lands on 11-11. Day resolution: ts = midnight UTC, ties keep line
order and then record order.

Labels: 1 / 0 = repeat buyer or not; -1 = the user is not a new buyer of that merchant
(outside the competition's question, but its log is still the user's behaviour); empty =
a test pair. Every line's records are events whatever its label, so train and test files
can be given together. The label, `age_range` and `gender` are per pair, not per event,
and no job predicts repeat buying: they are counted in the report, not carried over.

Report units: `rows_read` counts activity records (the events a line packs) plus lines that
could not be read at all; line-level problems are prefixed `line_`, and the notes say how
many lines, -1 labels, test lines and empty logs there were.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from training.adapters.common import (
    DataError,
    Sniffed,
    arrow_strings,
    canonical_part,
    day_seconds,
    expand_paths,
    finish_events,
    header_columns,
    map_actions,
    read_rows,
    sniff,
    to_float,
)
from training.adapters.tmall_ijcai15 import ACTIONS, YEAR
from training.schemas import EventLog, ImportReport

FORMAT = "tmall_ijcai15_format2"
KIND = "events"
DESCRIPTION = (
    "IJCAI-15 data_format2 train/test_format2.csv: one line per user x merchant, "
    "activity_log 'item:cat:brand:mmdd:action#...' (2014)"
)
ORIGINAL = ("user_id", "age_range", "gender", "merchant_id", "label", "activity_log")
COLUMNS = {name: (name,) for name in ORIGINAL}
RECORD_PARTS = ("item_id", "category_id", "brand_id", "time_stamp", "action_type")


def _layout(sniffed: Sniffed) -> tuple[dict[str, int], bool]:
    """(column -> field index, has header) for one file."""
    fields = sniffed.first_fields
    if sniffed.has_header(ORIGINAL):
        if "activity_log" not in fields:
            raise DataError(
                f"{sniffed.path.name}: no activity_log column (header: {', '.join(fields)}); "
                "a data_format1 user log is --format tmall_ijcai15",
                field="activity_log",
            )
        col = header_columns(sniffed, COLUMNS, optional=("age_range", "gender", "label"))
        return col, True
    if len(fields) != len(ORIGINAL):
        raise DataError(
            f"{sniffed.path.name}: a header-less line of {len(fields)} fields is not data_format2 "
            f"({len(ORIGINAL)} fields: {', '.join(ORIGINAL)})"
        )
    col = {name: i for i, name in enumerate(ORIGINAL)}
    if ":" in fields[4] and ":" not in fields[5]:  # the RAMP copy's order: ..., log, label
        col["activity_log"], col["label"] = 4, 5
    return col, False


def _records(logs: pd.Series, line_rows: np.ndarray) -> tuple[pd.DataFrame, int]:
    """The records of non-empty logs as string columns + line index; also the bad-record count.

    Splitting is Arrow's (`split_pattern`, `list_flatten`), so a file of millions of lines
    never becomes one Python object per record.
    """
    lists = pc.split_pattern(pa.array(logs, type=pa.large_string()), "#")
    parent = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False)
    parts = pc.split_pattern(pc.list_flatten(lists), ":")
    ok = pc.equal(pc.list_value_length(parts), len(RECORD_PARTS)).to_numpy(zero_copy_only=False)
    ok = ok.astype(bool)
    good = parts.filter(pa.array(ok))
    frame = pd.DataFrame(
        {
            name: arrow_strings(pc.utf8_trim_whitespace(pc.list_element(good, i)))
            for i, name in enumerate(RECORD_PARTS)
        }
    )
    frame["_line"] = line_rows[parent[ok]]
    required = (frame["item_id"] != "") & (frame["time_stamp"] != "")
    required &= frame["action_type"] != ""
    bad = int((~ok).sum()) + int((~required).sum())
    return frame[required.to_numpy()].reset_index(drop=True), bad


def load(paths: Sequence[Path | str], year: int = YEAR) -> EventLog:
    files = expand_paths(paths)
    report = ImportReport(source=FORMAT)  # units: activity records
    lines = ImportReport(source=FORMAT)  # units: user x merchant lines
    parts = []
    next_row = 0
    for path in files:
        sniffed = sniff(path)
        col, header = _layout(sniffed)
        required = (col["user_id"], col["merchant_id"])
        n_fields = len(sniffed.first_fields)
        for chunk in read_rows(sniffed, n_fields, header, lines, required=required):
            if "label" in col:
                label = to_float(chunk[col["label"]])
                lines.add_note(
                    "lines labelled -1 (not a new buyer; events kept)", int((label == -1).sum())
                )
                lines.add_note(
                    "lines without a label (test pairs; events kept)", int(np.isnan(label).sum())
                )
            logs = chunk[col["activity_log"]]
            empty = (logs == "").to_numpy()
            lines.add_note("lines with an empty activity_log (no events)", int(empty.sum()))
            records, bad = _records(logs[~empty], np.flatnonzero(~empty))
            report.rows_read += len(records) + bad
            report.add_bad("bad_activity_record", bad)
            if records.empty:
                continue
            line = records["_line"].to_numpy()
            stamp = np.nan_to_num(to_float(records["time_stamp"]), nan=-1).astype(np.int64)
            ts = day_seconds(year, stamp // 100, stamp % 100)
            action = map_actions(records["action_type"], ACTIONS, report)
            rows = pd.Series(np.arange(next_row, next_row + len(records), dtype=np.int64))
            next_row += len(records)
            parts.append(
                canonical_part(
                    chunk[col["user_id"]].iloc[line].reset_index(drop=True),
                    records["item_id"],
                    records["category_id"],
                    action,
                    ts,
                    rows,
                    report,
                )
            )
    # Line-level problems (too few fields, no user or merchant) in the record-level report.
    for reason, count in lines.bad_rows.items():
        report.add_bad(f"line_{reason}", count)
        report.rows_read += count
    report.add_note("user x merchant lines read", lines.rows_read)
    for note, count in lines.notes.items():
        report.add_note(note, count)
    return finish_events(parts, FORMAT, report, files)
