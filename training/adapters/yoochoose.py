"""YOOCHOOSE (RecSys Challenge 2015) clicks -> canonical events (sessions as users).

Accepted layouts, told apart by the first line:

- the original `yoochoose-clicks.dat`: no header, `session,timestamp,item,category` with
  ISO times (`2014-04-07T10:51:09.277Z`); category `0` means unknown (-> "");
- the original `yoochoose-buys.dat`: no header, `session,timestamp,item,price,quantity`;
  its rows become `purchase` events (give both files to get clicks and buys);
- session-rec's prepared files: header `SessionId,ItemId,Time` (comma or tab; Time in Unix
  seconds, float), optionally with more columns, which are ignored; a header-less file of
  exactly three fields is read as these three.

There is no user id in this data set, so `user_id` is the session id. Times are floored to
whole seconds; ties keep file order.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from training.adapters.common import (
    DataError,
    canonical_part,
    expand_paths,
    finish_events,
    read_rows,
    sniff,
    to_int_seconds,
    to_seconds,
)
from training.schemas import EventLog, ImportReport

FORMAT = "yoochoose"
KIND = "events"
DESCRIPTION = (
    "YOOCHOOSE yoochoose-clicks.dat / -buys.dat (no header, ISO times) or session-rec "
    "SessionId,ItemId,Time CSV/TSV"
)
PREPARED = ("sessionid", "itemid", "time")


def _iso_seconds(raw: pd.Series) -> np.ndarray:
    return to_seconds(pd.to_datetime(raw, format="ISO8601", utc=True, errors="coerce"))


def load(paths: Sequence[Path | str]) -> EventLog:
    files = expand_paths(paths)
    report = ImportReport(source=FORMAT)
    parts = []
    for path in files:
        sniffed = sniff(path)
        fields = sniffed.first_fields
        header = sniffed.has_header(PREPARED)
        if header or len(fields) == len(PREPARED):  # header-less prepared: SessionId,ItemId,Time
            missing = [c for c in PREPARED if header and c not in fields]
            if missing:
                raise DataError(f"{Path(path).name}: header lacks {missing}")
            col = {c: fields.index(c) if header else i for i, c in enumerate(PREPARED)}
            required = tuple(col.values())
            for chunk in read_rows(sniffed, len(fields), header, report, required=required):
                ts_int = to_int_seconds(chunk[col["time"]])
                action = pd.Series("browse", index=chunk.index, dtype=object)
                parts.append(
                    canonical_part(
                        chunk[col["sessionid"]],
                        chunk[col["itemid"]],
                        "",
                        action,
                        ts_int,
                        chunk["_row"],
                        report,
                    )
                )
            continue
        if len(fields) not in (4, 5) or "t" not in fields[1]:
            raise DataError(
                f"{Path(path).name}: first line {fields} is neither yoochoose-clicks.dat, "
                "-buys.dat nor a SessionId,ItemId,Time file"
            )
        buys = len(fields) == 5
        for chunk in read_rows(sniffed, len(fields), False, report, required=(0, 1, 2)):
            ts = _iso_seconds(chunk[1])
            if buys:
                category: pd.Series | str = ""
                action = pd.Series("purchase", index=chunk.index, dtype=object)
            else:
                category = chunk[3].where(chunk[3] != "0", "")
                action = pd.Series("browse", index=chunk.index, dtype=object)
            parts.append(
                canonical_part(chunk[0], chunk[2], category, action, ts, chunk["_row"], report)
            )
    return finish_events(parts, FORMAT, report, files)
