"""The adapters' registry: `load_events(paths, fmt)` and `load_sales(paths, fmt)`.

Why one entry point: every job and the `salecast data` command accept `--format` and
`--data`, and must fail the same clear way for an unknown format, a missing file or a file
of the wrong shape (a 422-style `InvalidInput`, never a traceback deep in pandas). Each
format lives in `training/adapters/<format>.py` with `FORMAT`, `KIND`, `DESCRIPTION` and
`load(paths)`, or `load_events(paths)` and `load_sales(paths)` for a format that holds both
(Online Retail: invoice lines are purchases and, summed, sales); `synthetic` is the
generator's default output (`training.synthetic`).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from service.errors import InvalidInput
from training.adapters.common import DataError, expand_paths
from training.schemas import EventLog, SalesData

__all__ = ["FORMATS", "DataError", "FormatInfo", "load_events", "load_sales", "load_sales_dataset"]

Kind = Literal["events", "sales", "both"]


@dataclass(frozen=True)
class FormatInfo:
    name: str
    kind: Kind
    description: str
    module: str  # adapter module, imported on use


FORMATS: dict[str, FormatInfo] = {
    info.name: info
    for info in (
        FormatInfo(
            "synthetic",
            "both",
            "generated funnel events / weekly festival sales (training.synthetic; no files)",
            "training.synthetic",
        ),
        FormatInfo(
            "taobao",
            "events",
            "Taobao UserBehavior.csv: user,item,category,pv|fav|cart|buy,unix ts (header optional)",
            "training.adapters.taobao",
        ),
        FormatInfo(
            "tianchi",
            "events",
            "Tianchi mobile train_user.csv: behaviour 1-4, 'YYYY-MM-DD HH' times",
            "training.adapters.tianchi",
        ),
        FormatInfo(
            "tmall_brand",
            "events",
            "Tmall 2014 t_alibaba_data.csv: user,brand,type 0-3,'M-D' or GBK 'M月D日' (2013)",
            "training.adapters.tmall_brand",
        ),
        FormatInfo(
            "tmall_ijcai15",
            "events",
            "IJCAI-15 user_log_format1.csv (mmdd, seller_id) or XMU user_log.csv (month,day)",
            "training.adapters.tmall_ijcai15",
        ),
        FormatInfo(
            "tmall_ijcai15_format2",
            "events",
            "IJCAI-15 data_format2 train/test_format2.csv: user x merchant lines, "
            "activity_log 'item:cat:brand:mmdd:action#...' (2014)",
            "training.adapters.tmall_ijcai15_format2",
        ),
        FormatInfo(
            "yoochoose",
            "events",
            "YOOCHOOSE clicks/buys .dat (no header) or session-rec SessionId,ItemId,Time",
            "training.adapters.yoochoose",
        ),
        FormatInfo(
            "walmart",
            "sales",
            "Walmart Kaggle train.csv + features.csv + stores.csv (folder or the 3 files), weekly",
            "training.adapters.walmart",
        ),
        FormatInfo(
            "m5",
            "sales",
            "M5 calendar.csv + m5_agg_demand_full.csv, or sales_train_*.csv wide -> store x cat",
            "training.adapters.m5",
        ),
        FormatInfo(
            "online_retail",
            "both",
            "UCI Online Retail II / Online Retail invoice lines (either sheet's names; CSV, "
            "not xlsx): purchases; weekly country x product-group sales",
            "training.adapters.online_retail",
        ),
    )
}


def _info(fmt: str, kind: Literal["events", "sales"]) -> FormatInfo:
    info = FORMATS.get(fmt)
    if info is None:
        raise InvalidInput("format", f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    if info.kind not in (kind, "both"):
        raise InvalidInput("format", f"{fmt!r} holds {info.kind} data, not {kind}")
    return info


def _loader(
    info: FormatInfo, kind: Literal["events", "sales"]
) -> Callable[[list[Path | str]], Any]:
    """The adapter's `load`, or for a format holding both kinds its `load_events`/`load_sales`."""
    adapter = importlib.import_module(info.module)
    loader: Callable[[list[Path | str]], Any] = getattr(
        adapter, f"load_{kind}" if info.kind == "both" else "load"
    )
    return loader


def load_events(paths: Sequence[Path | str], fmt: str) -> EventLog:
    """Canonical events from files (or folders) in `fmt`; `synthetic` ignores `paths`."""
    info = _info(fmt, "events")
    if fmt == "synthetic":
        from training.synthetic import generate_events

        return generate_events()
    expand_paths(paths)  # missing files are reported before the adapter is imported
    log: EventLog = _loader(info, "events")(list(paths))
    return log


def load_sales(paths: Sequence[Path | str], fmt: str) -> SalesData:
    """Canonical sales from files (or folders) in `fmt`; `synthetic` ignores `paths`."""
    info = _info(fmt, "sales")
    if fmt == "synthetic":
        from training.synthetic import generate_sales

        return generate_sales()
    expand_paths(paths)
    data: SalesData = _loader(info, "sales")(list(paths))
    return data


def load_sales_dataset(
    paths: Sequence[Path | str], fmt: str, seed: int = 0
) -> tuple[SalesData, str]:
    """(sales, data set name) for a job's `--data`/`--format`: what results files are named by.

    The name is the folder the files came from (`walmart_store_sales`, `m5`), as
    BENCHMARKS.md names data sets; no files or `synthetic` gives the seeded generator.
    """
    if fmt == "synthetic" or not paths:
        from training.synthetic import generate_sales

        return generate_sales(seed=seed), "synthetic"
    first = Path(paths[0])
    data = load_sales(paths, fmt)
    logging.getLogger(__name__).info("%s", data.report.summary())
    return data, (first.name if first.is_dir() else first.parent.name)
