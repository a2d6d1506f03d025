"""Walmart Recruiting – Store Sales Forecasting (Kaggle 2014) -> canonical weekly sales.

Inputs: `train.csv` (`Store,Dept,Date,Weekly_Sales,IsHoliday`), `features.csv`
(`Store,Date,Temperature,Fuel_Price,MarkDown1..5,CPI,Unemployment,IsHoliday`) and
`stores.csv` (`Store,Type,Size`), given as a folder or as the three files, plain or gzip,
any names: each file is recognised by its header. Kaggle's `test.csv` and
`sampleSubmission.csv` are skipped (noted). The original `stores.csv` has old-Mac CR line
ends; the parser accepts those.

Mapping: region = store, category = department, date = the week's Friday (Kaggle's `Date`
ends a Saturday-Friday week), day type from `calendar.walmart_day_type` (the four holiday
weeks), cross-checked with `IsHoliday` (a flagged week the calendar does not know becomes
`holiday` and is noted). External factors: temperature, fuel_price, cpi, unemployment,
markdown1..5 (NA -> 0) and `markdown_present` (1 when any markdown is recorded, because NA
means "no data before Nov 2011", not "no promotion"). Gaps in CPI / unemployment are filled
per store forward then backward (noted). Static: type one-hot (A/B/C) and size.
Negative weekly sales are returns: kept, and counted as a note, not as bad rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from service.calendar import ORDINARY
from training.adapters.common import DataError, expand_paths, read_rows, read_small_csv, sniff
from training.calendar import walmart_day_type
from training.schemas import SALES_COLUMNS, ImportReport, SalesData, sha256_of

FORMAT = "walmart"
KIND = "sales"
DESCRIPTION = "Walmart Kaggle train.csv + features.csv + stores.csv (folder or the three files)"
MARKDOWNS = [f"markdown{i}" for i in range(1, 6)]
EXTERNAL = ["temperature", "fuel_price", "cpi", "unemployment", *MARKDOWNS, "markdown_present"]
STATIC = ["type_A", "type_B", "type_C", "size"]


def _classify(files: list[Path], report: ImportReport) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in files:
        fields = sniff(path).first_fields
        kind = (
            "train"
            if "weekly_sales" in fields
            else "features"
            if "temperature" in fields
            else "stores"
            if "size" in fields and "type" in fields
            else None
        )
        if kind is None:
            report.add_note(f"skipped file: {path.name}")
            continue
        if kind in found:
            raise DataError(f"two {kind} files given: {found[kind].name} and {path.name}")
        found[kind] = path
    for kind in ("train", "features", "stores"):
        if kind not in found:
            raise DataError(f"walmart needs train.csv, features.csv and stores.csv; no {kind} file")
    return found


def _read_small(path: Path) -> pd.DataFrame:
    """Walmart's files differ in header case between copies (`Store` / `store`)."""
    frame = read_small_csv(path)
    frame.columns = [c.lower() for c in frame.columns]
    return frame


def _num(series: pd.Series) -> pd.Series:
    return pd.to_numeric(series.replace({"NA": "", "NaN": ""}), errors="coerce")


def _read_train(path: Path, report: ImportReport) -> pd.DataFrame:
    sniffed = sniff(path)
    names = sniffed.first_fields
    want = ["store", "dept", "date", "weekly_sales"]
    if any(c not in names for c in want):
        raise DataError(f"{path.name}: header lacks one of {want}")
    col = {c: names.index(c) for c in [*want, "isholiday"] if c in names}
    parts = []
    required = [col[c] for c in want]
    for chunk in read_rows(sniffed, len(names), True, report, required=required):
        part = pd.DataFrame(
            {
                "store": pd.to_numeric(chunk[col["store"]], errors="coerce"),
                "dept": pd.to_numeric(chunk[col["dept"]], errors="coerce"),
                "date": pd.to_datetime(chunk[col["date"]], format="%Y-%m-%d", errors="coerce"),
                "sales": pd.to_numeric(chunk[col["weekly_sales"]], errors="coerce"),
                "is_holiday": (
                    chunk[col["isholiday"]].str.upper().isin(["TRUE", "1"])
                    if "isholiday" in col
                    else False
                ),
            }
        )
        bad_key = part["store"].isna() | part["dept"].isna()
        bad_date = part["date"].isna() & ~bad_key
        bad_sales = part["sales"].isna() & ~bad_key & ~bad_date
        report.add_bad("bad_store_or_dept", int(bad_key.sum()))
        report.add_bad("bad_date", int(bad_date.sum()))
        report.add_bad("bad_sales", int(bad_sales.sum()))
        parts.append(part[~(bad_key | bad_date | bad_sales)])
    train = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if train.empty:
        raise DataError(f"no valid rows in {path.name}: {report.summary()}")
    dup = train.duplicated(["store", "dept", "date"], keep="first")
    report.add_bad("duplicate_store_dept_week", int(dup.sum()))
    return train[~dup].reset_index(drop=True)


def _features(path: Path, report: ImportReport) -> pd.DataFrame:
    raw = _read_small(path)
    need = ["store", "date", "temperature", "fuel_price", "cpi", "unemployment"]
    if any(c not in raw.columns for c in need):
        raise DataError(f"{path.name}: features header lacks one of {need}")
    feats = pd.DataFrame(
        {
            "store": _num(raw["store"]),
            "date": pd.to_datetime(raw["date"], format="%Y-%m-%d", errors="coerce"),
        }
    )
    for name in ["temperature", "fuel_price", "cpi", "unemployment"]:
        feats[name] = _num(raw[name])
    present = np.zeros(len(raw), dtype=bool)
    for name in MARKDOWNS:
        values = _num(raw[name]) if name in raw.columns else pd.Series(np.nan, index=raw.index)
        present |= values.notna().to_numpy()
        feats[name] = values.fillna(0.0)
    feats["markdown_present"] = present.astype(float)
    bad = feats["store"].isna() | feats["date"].isna()
    report.add_note("features rows unreadable (store/date)", int(bad.sum()))
    feats = feats[~bad].drop_duplicates(["store", "date"])
    return feats


def _stores(path: Path, report: ImportReport) -> pd.DataFrame:
    raw = _read_small(path)
    static = pd.DataFrame(
        {"store": _num(raw["store"]), "type": raw["type"].str.strip().str.upper()}
    )
    static["size"] = _num(raw["size"]).astype(np.float64)
    for letter in "ABC":
        static[f"type_{letter}"] = (static["type"] == letter).astype(float)
    bad = static["store"].isna()
    report.add_note("stores rows unreadable", int(bad.sum()))
    return static[~bad].drop_duplicates("store")


def load(paths: Sequence[Path | str]) -> SalesData:
    files = expand_paths(paths)
    report = ImportReport(source=FORMAT)
    found = _classify(files, report)
    train = _read_train(found["train"], report)
    feats = _features(found["features"], report)
    stores = _stores(found["stores"], report)

    frame = train.merge(feats, on=["store", "date"], how="left", indicator=True)
    report.add_note(
        "weeks without a features row (filled)", int((frame["_merge"] == "left_only").sum())
    )
    frame = frame.drop(columns="_merge").sort_values(["store", "dept", "date"], kind="stable")
    for name in ["temperature", "fuel_price", "cpi", "unemployment"]:
        gaps = int(frame[name].isna().sum())
        report.add_note(f"{name} gaps filled", gaps)
        if gaps:
            frame[name] = frame.groupby("store")[name].transform(lambda s: s.ffill().bfill())
            frame[name] = frame[name].fillna(frame[name].mean())
    for name in [*MARKDOWNS, "markdown_present"]:
        frame[name] = frame[name].fillna(0.0)
    report.add_note("negative weekly sales (returns, kept)", int((frame["sales"] < 0).sum()))

    week_types = {d: walmart_day_type(d) for d in frame["date"].unique()}
    day_type = frame["date"].map(week_types)
    unknown_flag = frame["is_holiday"].astype(bool) & (day_type == ORDINARY)
    report.add_note(
        "IsHoliday weeks the calendar does not know (day type 'holiday')", int(unknown_flag.sum())
    )
    day_type = day_type.where(~unknown_flag, "holiday")

    sales = pd.DataFrame(
        {
            "region": frame["store"].astype(np.int64).astype(str),
            "category": frame["dept"].astype(np.int64).astype(str),
            "date": frame["date"].astype("datetime64[ns]"),
            "sales": frame["sales"].astype(np.float64),
            "day_type": day_type,
        }
    ).astype(SALES_COLUMNS)
    for name in EXTERNAL:
        sales[name] = frame[name].to_numpy(dtype=np.float64)
    sales = sales.reset_index(drop=True)
    report.rows_ok = len(sales)

    static = stores.assign(region=stores["store"].astype(np.int64).astype(str))
    missing = sorted(set(sales["region"]) - set(static["region"]))
    report.add_note("stores without a stores.csv row", len(missing))
    static = static[static["region"].isin(set(sales["region"]))]
    static = static[["region", "type", *STATIC]].astype({"region": "string"}).reset_index(drop=True)
    return SalesData(
        sales=sales,
        static=static,
        frequency="W",
        external_columns=list(EXTERNAL),
        static_columns=list(STATIC),
        report=report,
        sha256=sha256_of([found["train"], found["features"], found["stores"]]),
    )
