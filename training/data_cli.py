"""`salecast data formats|import|synth`: list formats, import public files, write synthetic data.

Why a separate import step: it shows what an adapter made of a file (rows read, bad rows
by reason, notes) before any training run, and leaves the canonical frame as a plain CSV
that anyone can inspect. The parser lives in `training/cli.py`; this module runs it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv

from service.errors import InvalidInput
from training.data import FORMATS, load_events, load_sales
from training.schemas import EventLog, SalesData


def _write(text: str) -> None:
    sys.stdout.write(text + "\n")


def _out_paths(out: Path, kind: str) -> tuple[Path, Path | None]:
    """(main CSV, static CSV or None): `out` may be a file (`x.csv`) or a folder."""
    if out.suffix.lower() in (".csv", ".gz"):
        out.parent.mkdir(parents=True, exist_ok=True)
        static = out.with_name(out.name.split(".")[0] + "_static.csv") if kind == "sales" else None
        return out, static
    out.mkdir(parents=True, exist_ok=True)
    return out / f"{kind}.csv", (out / "static.csv") if kind == "sales" else None


def write_canonical(data: EventLog | SalesData, out: Path) -> list[Path]:
    """Write the canonical frame(s) as CSV; returns the files written."""
    if isinstance(data, EventLog):
        path, _ = _out_paths(out, "events")
        # Arrow's writer: a 100M-row import should not spend longer writing than reading.
        table = pa.Table.from_pandas(data.events, preserve_index=False)
        pa_csv.write_csv(table, path, write_options=pa_csv.WriteOptions(quoting_style="needed"))
        return [path]
    path, static_path = _out_paths(out, "sales")
    frame: pd.DataFrame = data.sales.assign(date=data.sales["date"].dt.strftime("%Y-%m-%d"))
    frame.to_csv(path, index=False)
    written = [path]
    if static_path is not None:
        data.static.to_csv(static_path, index=False)
        written.append(static_path)
    return written


def _describe(data: EventLog | SalesData) -> None:
    """The import report, then what the canonical frame holds."""
    _write(data.report.summary())
    if isinstance(data, EventLog):
        first, last = data.window
        _write(f"{len(data.events)} events, {first} .. {last} UTC, sha256 {data.sha256}")
    else:
        _write(
            f"{len(data.sales)} rows, {data.sales['region'].nunique()} regions x "
            f"{data.sales['category'].nunique()} categories, frequency {data.frequency}, "
            f"day types {', '.join(data.day_types)}, sha256 {data.sha256}"
        )


def run_data_command(args: argparse.Namespace) -> int:
    """Entry point for `salecast data ...`; returns the process exit code."""
    try:
        if args.data_command == "formats":
            width = max(len(name) for name in FORMATS)
            for name, entry in FORMATS.items():
                _write(f"{name:<{width}}  {entry.kind:<6}  {entry.description}")
            return 0
        if args.data_command == "import":
            info = FORMATS.get(args.format)
            if info is None:
                raise InvalidInput(
                    "format", f"unknown format {args.format!r}; known: {', '.join(FORMATS)}"
                )
            paths = [Path(p) for p in args.data]
            if info.kind == "both" and args.out.suffix.lower() in (".csv", ".gz"):
                raise InvalidInput(
                    "out",
                    f"{args.format} holds events and sales: give a folder, "
                    "which gets events.csv, sales.csv and static.csv",
                )
            imported: list[EventLog | SalesData] = []
            if info.kind in ("events", "both"):
                imported.append(load_events(paths, args.format))
            if info.kind in ("sales", "both"):
                imported.append(load_sales(paths, args.format))
            for data in imported:
                _describe(data)
                for path in write_canonical(data, args.out):
                    _write(f"wrote {path}")
            return 0
        if args.data_command == "synth":
            from training.synthetic import generate_events, generate_sales

            synth: EventLog | SalesData = (
                generate_events(seed=args.seed)
                if args.kind == "events"
                else generate_sales(seed=args.seed)
            )
            _write(synth.report.summary())
            for path in write_canonical(synth, args.out):
                _write(f"wrote {path}")
            return 0
    except InvalidInput as exc:  # DataError included: a clear message, exit code 2
        sys.stderr.write(f"salecast data: {exc}\n")
        return 2
    sys.stderr.write(f"salecast data: unknown command {args.data_command!r}\n")
    return 2
