"""Canonical data schemas every adapter produces and every training job consumes.

Three shapes cover the five models: interaction events (IMN, intent, CVR, DINOP's BOP),
sales time series with a calendar of day types (STMP, DINOP), and static region/item
features. Frames are pandas; the column lists below are the contract.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd

# events frame: one row per interaction, sorted by (ts, original row order).
EVENT_COLUMNS: dict[str, str] = {
    "event_id": "string",  # stable id: "<source>:<row number>" for imported data
    "user_id": "string",  # session id for session-only data (Yoochoose)
    "item_id": "string",  # brand id for the Tmall brand log
    "category_id": "string",  # "" when the source has none
    "action": "string",  # one of ACTIONS
    "ts": "int64",  # Unix seconds, UTC; day-resolution sources use midnight of the day
}

# sales frame: one row per (region, category, period).
SALES_COLUMNS: dict[str, str] = {
    "region": "string",  # Walmart store; "total" for M5 aggregates
    "category": "string",  # Walmart department; "all" for M5 aggregates
    "date": "datetime64[ns]",  # period start (daily) or the source's week date (weekly)
    "sales": "float64",
    "day_type": "string",  # "ordinary" or a festival name from the calendar
}


@dataclass
class ImportReport:
    """What an adapter read: bad rows are counted by reason, never dropped silently."""

    source: str
    rows_read: int = 0
    rows_ok: int = 0
    bad_rows: Counter[str] = field(default_factory=Counter)
    # Facts about kept rows worth knowing (negative sales = returns, filled gaps): not errors.
    notes: Counter[str] = field(default_factory=Counter)

    def add_bad(self, reason: str, count: int = 1) -> None:
        if count:
            self.bad_rows[reason] += count

    def add_note(self, note: str, count: int = 1) -> None:
        if count:
            self.notes[note] += count

    def summary(self) -> str:
        bad = ", ".join(f"{reason}: {n}" for reason, n in self.bad_rows.most_common()) or "none"
        text = f"{self.source}: {self.rows_ok}/{self.rows_read} rows ok; bad rows: {bad}"
        if self.notes:
            text += "; notes: " + ", ".join(f"{k}: {n}" for k, n in self.notes.most_common())
        return text


@dataclass
class EventLog:
    events: pd.DataFrame  # EVENT_COLUMNS (+ optional extra columns)
    report: ImportReport
    sha256: str  # of the input file(s), for the manifest's data window

    @property
    def window(self) -> tuple[pd.Timestamp, pd.Timestamp]:
        ts = self.events["ts"]
        return pd.Timestamp(int(ts.min()), unit="s"), pd.Timestamp(int(ts.max()), unit="s")


@dataclass
class SalesData:
    sales: pd.DataFrame  # SALES_COLUMNS + external factor columns
    static: pd.DataFrame  # one row per region: "region" + static feature columns
    frequency: Literal["D", "W"]
    external_columns: list[str]  # time-varying numeric factors in `sales`
    static_columns: list[str]  # numeric columns of `static`
    report: ImportReport
    sha256: str

    @property
    def day_types(self) -> list[str]:
        return sorted(self.sales["day_type"].unique())


def sha256_of(paths: list[Path]) -> str:
    """One digest over the bytes of all input files, in the given order."""
    digest = hashlib.sha256()
    for path in paths:
        with Path(path).open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()
