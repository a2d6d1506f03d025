"""M5 Forecasting (Kaggle 2020, Walmart) -> canonical daily sales.

Accepted inputs (folder or files, plain or gzip, recognised by header):

- `calendar.csv` (`date,wm_yr_wk,...,d,event_name_1,event_type_1,event_name_2,...,snap_CA,
  snap_TX,snap_WI`): day types (`calendar.m5_day_type`) and SNAP days;
- `m5_agg_demand_full.csv` (uber/orbit's aggregate: `date,sales,<event dummies>...`):
  one series, region `total`, category `all`. Without a calendar, day types come from its
  event dummy columns;
- the original wide `sales_train_validation.csv` / `sales_train_evaluation.csv`
  (`id,item_id,dept_id,cat_id,store_id,state_id,d_1..d_N`): aggregated in chunks of rows to
  store x category (region = store, category = cat_id), so the full 30,490-series file is
  never held as Python objects. Needs the calendar to map `d_N` to dates.
- `sell_prices.csv` is recognised and skipped (noted): prices are per item, and the series
  here are aggregates.

External factor: `snap` (the share of the region's states with a SNAP day; the three-state
mean for `total`). Static: one-hot state for stores (`state_CA`, `state_TX`, `state_WI`).
Rows with an unreadable date or a non-numeric sales value are counted as bad rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from service.calendar import ORDINARY
from training.adapters.common import (
    DataError,
    expand_paths,
    read_rows,
    read_small_csv,
    sniff,
    to_float,
)
from training.calendar import m5_day_type
from training.schemas import SALES_COLUMNS, ImportReport, SalesData, sha256_of

FORMAT = "m5"
KIND = "sales"
DESCRIPTION = (
    "M5 calendar.csv + m5_agg_demand_full.csv (total) or sales_train_*.csv wide d_1..d_N "
    "(-> store x category)"
)
STATES = ("CA", "TX", "WI")
WIDE_CHUNK_ROWS = 2_000


def _classify(files: list[Path], report: ImportReport) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in files:
        fields = sniff(path).first_fields
        if "wm_yr_wk" in fields and "d" in fields:
            kind = "calendar"
        elif "sell_price" in fields:
            report.add_note(f"skipped item price file: {path.name}")
            continue
        elif "store_id" in fields and "d_1" in fields:
            kind = "wide"
        elif "date" in fields and "sales" in fields:
            kind = "aggregate"
        else:
            report.add_note(f"skipped file: {path.name}")
            continue
        if kind in found:
            raise DataError(f"two M5 {kind} files given: {found[kind].name} and {path.name}")
        found[kind] = path
    if "wide" in found and "aggregate" in found:
        raise DataError("give either the aggregate or the wide sales file, not both")
    if "wide" not in found and "aggregate" not in found:
        raise DataError("m5 needs m5_agg_demand_full.csv or sales_train_*.csv")
    if "wide" in found and "calendar" not in found:
        raise DataError("the wide M5 sales file needs calendar.csv to date its d_N columns")
    return found


def _calendar(path: Path) -> pd.DataFrame:
    raw = read_small_csv(path)
    cal = pd.DataFrame(
        {
            "date": pd.to_datetime(raw["date"], format="%Y-%m-%d", errors="coerce"),
            "d": raw["d"].str.strip(),
            "day_type": [
                m5_day_type(a, b)
                for a, b in zip(
                    raw.get("event_name_1", ""), raw.get("event_name_2", ""), strict=False
                )
            ]
            if "event_name_1" in raw.columns
            else ORDINARY,
        }
    )
    for state in STATES:
        column = f"snap_{state}"
        cal[column] = (
            pd.to_numeric(raw[column], errors="coerce").fillna(0.0) if column in raw else 0.0
        )
    return cal[cal["date"].notna()].reset_index(drop=True)


def _aggregate(path: Path, calendar: pd.DataFrame | None, report: ImportReport) -> pd.DataFrame:
    raw = read_small_csv(path)
    report.rows_read += len(raw)
    date = pd.to_datetime(raw["date"], format="ISO8601", errors="coerce")
    sales = pd.to_numeric(raw["sales"], errors="coerce")
    report.add_bad("bad_date", int(date.isna().sum()))
    report.add_bad("bad_sales", int((sales.isna() & date.notna()).sum()))
    ok = (date.notna() & sales.notna()).to_numpy()
    frame = pd.DataFrame({"date": date[ok], "sales": sales[ok]}).reset_index(drop=True)
    if calendar is not None:
        frame = frame.merge(calendar, on="date", how="left")
        missing = frame["day_type"].isna()
        report.add_note("dates not in calendar.csv (ordinary, snap 0)", int(missing.sum()))
        frame["day_type"] = frame["day_type"].fillna(ORDINARY)
        snap = frame[[f"snap_{s}" for s in STATES]].fillna(0.0).mean(axis=1)
    else:
        events = [c for c in raw.columns if c not in ("date", "sales")]
        types = {"cultural", "national", "religious", "sporting"}
        names = [c for c in events if c.lower() not in types]
        flags = raw.loc[ok, names].apply(pd.to_numeric, errors="coerce").fillna(0).to_numpy() > 0
        day_types = []
        for row in flags:
            hit = [names[i] for i in np.flatnonzero(row)]
            day_types.append(m5_day_type(*hit))
        frame["day_type"] = day_types
        snap = pd.Series(0.0, index=frame.index)
        report.add_note("no calendar.csv: day types from event dummies, snap = 0", len(frame))
    dup = frame.duplicated("date")
    report.add_bad("duplicate_date", int(dup.sum()))
    frame = frame.assign(region="total", category="all", snap=snap.to_numpy())[~dup.to_numpy()]
    return frame


def _wide(
    path: Path, calendar: pd.DataFrame, report: ImportReport
) -> tuple[pd.DataFrame, pd.DataFrame]:
    sniffed = sniff(path)
    names = sniffed.first_fields
    for need in ("store_id", "cat_id", "state_id"):
        if need not in names:
            raise DataError(f"{path.name}: wide M5 header lacks {need}")
    d_idx = [i for i, n in enumerate(names) if n.startswith("d_")]
    d_names = [names[i] for i in d_idx]
    store_i, cat_i, state_i = (
        names.index("store_id"),
        names.index("cat_id"),
        names.index("state_id"),
    )
    totals: dict[tuple[str, str], np.ndarray] = {}
    store_state: dict[str, str] = {}
    required = (store_i, cat_i, state_i)
    for chunk in read_rows(
        sniffed, len(names), True, report, required=required, chunksize=WIDE_CHUNK_ROWS
    ):
        values = pd.DataFrame(np.column_stack([to_float(chunk[i]) for i in d_idx]), columns=d_names)
        bad = values.isna().any(axis=1).to_numpy()
        report.add_bad("bad_sales", int(bad.sum()))
        good = chunk[~bad]
        sums = values[~bad].groupby([good[store_i].to_numpy(), good[cat_i].to_numpy()]).sum()
        for key, row in zip(sums.index, sums.to_numpy(dtype=np.float64), strict=True):
            totals[key] = totals.get(key, 0.0) + row
        store_state.update(dict(zip(good[store_i], good[state_i], strict=True)))
    if not totals:
        raise DataError(f"no valid rows in {path.name}: {report.summary()}")
    by_d = calendar.set_index("d")
    unknown = [d for d in d_names if d not in by_d.index]
    if unknown:
        raise DataError(f"{path.name}: columns {unknown[:3]}... are not days of calendar.csv")
    days = by_d.loc[d_names].reset_index()
    frames = []
    for (store, cat), series in sorted(totals.items()):
        state = store_state.get(store, "")
        snap_col = f"snap_{state}"
        frames.append(
            pd.DataFrame(
                {
                    "region": store,
                    "category": cat,
                    "date": days["date"].to_numpy(),
                    "sales": series,
                    "day_type": days["day_type"].to_numpy(),
                    "snap": days[snap_col].to_numpy() if snap_col in days else 0.0,
                }
            )
        )
    static = pd.DataFrame({"region": sorted(store_state)})
    for state in STATES:
        static[f"state_{state}"] = [float(store_state[s] == state) for s in static["region"]]
    return pd.concat(frames, ignore_index=True), static


def load(paths: Sequence[Path | str]) -> SalesData:
    files = expand_paths(paths)
    report = ImportReport(source=FORMAT)
    found = _classify(files, report)
    calendar = _calendar(found["calendar"]) if "calendar" in found else None
    if "wide" in found:
        assert calendar is not None
        frame, static = _wide(found["wide"], calendar, report)
        static_columns = [f"state_{s}" for s in STATES]
        inputs = [found["calendar"], found["wide"]]
    else:
        frame = _aggregate(found["aggregate"], calendar, report)
        static = pd.DataFrame({"region": ["total"]})
        static_columns = []
        inputs = [p for p in (found.get("calendar"), found["aggregate"]) if p is not None]
    sales = frame[list(SALES_COLUMNS)].astype(SALES_COLUMNS)
    sales["snap"] = frame["snap"].to_numpy(dtype=np.float64)
    sales = sales.sort_values(["region", "category", "date"], kind="stable").reset_index(drop=True)
    report.rows_ok = (
        len(sales) if "wide" not in found else report.rows_read - sum(report.bad_rows.values())
    )
    return SalesData(
        sales=sales,
        static=static.astype({"region": "string"}),
        frequency="D",
        external_columns=["snap"],
        static_columns=static_columns,
        report=report,
        sha256=sha256_of(inputs),
    )
