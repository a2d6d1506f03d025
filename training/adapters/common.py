"""Reading helpers every adapter shares: sniffing, chunked parsing, bad-row counting.

Why a shared reader: the public files come plain or gzipped under any name, with or without
a header row, comma- or tab-separated, UTF-8 or GBK, and up to ~100M rows. Each adapter
only maps columns; how a file is opened, chunked and how malformed lines are counted is the
same everywhere, and lives here.

- Compression (gzip, or a one-file zip as Kaggle ships) is detected from the magic bytes,
  never from the file name.
- Encoding: UTF-8 when the first 64 KiB decode as UTF-8, else GB18030 (a superset of GBK,
  which the original Tianchi/Tmall files use). Undecodable bytes become U+FFFD and the row
  then fails its own field check, so it is counted, not fatal.
- Rows are parsed by Arrow's streaming CSV reader in blocks (~`CHUNK_ROWS` rows), as Arrow
  strings: no Python object per value, so a 100M-row file needs no 100M-row object arrays.
  A row with too many or too few fields is counted (`too_many_fields`, `missing_field`) by
  the reader's invalid-row hook instead of aborting the read. CR-only line ends (old-Mac
  files such as Walmart's original `stores.csv`) are line ends too.
"""

from __future__ import annotations

import codecs
import gzip
import io
import re
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from service.actions import ACTIONS
from service.errors import InvalidInput
from training.schemas import EVENT_COLUMNS, EventLog, ImportReport, sha256_of

CHUNK_ROWS = 500_000
_IGNORED_NAMES = {"readme", "readme.md", "readme.txt", "license", "sha256sums"}


class DataError(InvalidInput):
    """An input file cannot be read as the named format (422 `data` when it reaches HTTP)."""

    def __init__(self, reason: str, field: str = "data") -> None:
        super().__init__(field, reason)


@dataclass(frozen=True)
class Sniffed:
    """What the first bytes of a file say about how to parse it."""

    path: Path
    compression: str | None  # "gzip", "zip" or None
    encoding: str
    sep: str
    first_fields: list[str]  # the first non-empty line, split, stripped, lower-cased

    def has_header(self, known: Sequence[str]) -> bool:
        """True when the first line names any of the `known` columns (case-insensitive)."""
        names = {k.lower() for k in known}
        return any(f in names for f in self.first_fields)


def compression_of(path: Path) -> str | None:
    """ "gzip" or "zip" from the file's magic bytes (Kaggle ships `train.csv.zip`), else None."""
    with Path(path).open("rb") as fh:
        magic = fh.read(4)
    if magic[:2] == b"\x1f\x8b":
        return "gzip"
    if magic == b"PK\x03\x04":
        return "zip"
    return None


def is_gzip(path: Path) -> bool:
    return compression_of(path) == "gzip"


def _head_bytes(path: Path, n: int = 1 << 16) -> bytes:
    kind = compression_of(path)
    if kind == "gzip":
        with gzip.open(path, "rb") as fh:
            return fh.read(n)
    if kind == "zip":
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.namelist() if not m.endswith("/")]
            if "xl/workbook.xml" in members:  # .xlsx is a zip of XML parts
                raise DataError(
                    f"{path.name} is an Excel workbook (.xlsx); no Excel reader is installed: "
                    "save each sheet as CSV (plain or gzip) and pass those files"
                )
            if len(members) != 1:
                raise InvalidInput("data", f"{path}: a zip must hold exactly one file")
            with archive.open(members[0]) as fh:
                return fh.read(n)
    with Path(path).open("rb") as fh:
        return fh.read(n)


def sniff(path: Path) -> Sniffed:
    """Compression, encoding, separator and the first line's fields of `path`."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInput("data", f"{path} is not a file")
    try:
        head = _head_bytes(path)
    except (OSError, EOFError, zipfile.BadZipFile) as exc:  # truncated gzip, broken zip
        raise DataError(f"{path.name}: cannot read: {exc}") from exc
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
        encoding = "utf-8"
    except UnicodeDecodeError:
        encoding = "gb18030"
    text = head.decode(encoding, errors="replace").lstrip("\ufeff")
    lines = [line for line in re.split(r"\r\n|\r|\n", text) if line.strip()]
    first = lines[0] if lines else ""
    sep = "\t" if "\t" in first else ","
    fields = [f.strip().strip('"').lower() for f in first.split(sep)]
    return Sniffed(path, compression_of(path), encoding, sep, fields)


def normalise_column(name: str) -> str:
    """A header name compared case-, space- and underscore-blind (`Customer ID` = `customerid`)."""
    return re.sub(r"[^0-9a-z]", "", name.lower())


def header_columns(
    sniffed: Sniffed,
    columns: Mapping[str, Sequence[str]],
    optional: Sequence[str] = (),
) -> dict[str, int]:
    """Field index of each wanted column, found by any of its public names.

    `columns` maps our key to the names copies of a data set use for it (`"price":
    ("Price", "UnitPrice")`); names match when equal after `normalise_column`. A wanted
    column that is absent is a `DataError` whose field is the column's first public name,
    unless its key is in `optional` (then it is left out of the result).
    """
    found = {normalise_column(name): i for i, name in enumerate(sniffed.first_fields)}
    out: dict[str, int] = {}
    for key, names in columns.items():
        index = next((found[n] for n in map(normalise_column, names) if n in found), None)
        if index is not None:
            out[key] = index
        elif key not in optional:
            raise DataError(
                f"{sniffed.path.name}: no {' / '.join(names)} column "
                f"(header: {', '.join(sniffed.first_fields)})",
                field=names[0],
            )
    return out


def read_small_csv(path: Path) -> pd.DataFrame:
    """A whole small CSV (a calendar, a store table) as strings, columns stripped.

    For files that fit in memory at once; the large event logs go through `read_rows`.
    Values stay text so each adapter parses and counts bad rows the same explicit way.
    """
    sniffed = sniff(path)
    frame = pd.read_csv(
        path,
        sep=sniffed.sep,
        dtype=str,
        keep_default_na=False,
        compression=sniffed.compression,
        encoding=sniffed.encoding,
        encoding_errors="replace",
    )
    frame.columns = [c.strip() for c in frame.columns]
    return frame


def expand_paths(paths: Sequence[Path | str]) -> list[Path]:
    """Files named, plus the files inside named folders (sorted); missing paths are a 422."""
    if not paths:
        raise InvalidInput("data", "no input files given")
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            inner = sorted(
                p
                for p in path.iterdir()
                if p.is_file()
                and not p.name.startswith(".")
                and p.name.lower() not in _IGNORED_NAMES
            )
            if not inner:
                raise InvalidInput("data", f"folder {path} holds no files")
            out.extend(inner)
        elif path.is_file():
            out.append(path)
        else:
            raise InvalidInput("data", f"{path} does not exist")
    return out


class _Utf8Recoder(io.RawIOBase):
    """A byte stream re-encoded from `encoding` to UTF-8 (bad bytes -> U+FFFD), for Arrow."""

    def __init__(self, raw: BinaryIO, encoding: str) -> None:
        super().__init__()
        self._text = io.TextIOWrapper(raw, encoding=encoding, errors="replace", newline="")
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        while len(self._buf) < len(view):
            text = self._text.read(1 << 16)
            if not text:
                break
            self._buf += text.encode("utf-8")
        n = min(len(view), len(self._buf))
        view[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


def _open_binary(sniffed: Sniffed) -> BinaryIO:
    """The decompressed bytes of a file as a Python stream."""
    if sniffed.compression == "gzip":
        return cast(BinaryIO, gzip.open(sniffed.path, "rb"))
    if sniffed.compression == "zip":
        archive = zipfile.ZipFile(sniffed.path)
        member = next(m for m in archive.namelist() if not m.endswith("/"))
        return cast(BinaryIO, archive.open(member))
    return sniffed.path.open("rb")


def _arrow_source(sniffed: Sniffed) -> Any:
    """What `pyarrow.csv.open_csv` reads: native (fast) streams for UTF-8 plain/gzip files."""
    if sniffed.encoding == "utf-8" and sniffed.compression in (None, "gzip"):
        return pa.input_stream(str(sniffed.path), compression=sniffed.compression)
    raw = _open_binary(sniffed)
    if sniffed.encoding == "utf-8":
        return raw
    return io.BufferedReader(_Utf8Recoder(raw, sniffed.encoding), buffer_size=1 << 20)


def arrow_strings(array: pa.ChunkedArray | pa.Array) -> pd.Series:
    """An Arrow string array as a pandas Series without Python objects."""
    chunked = array if isinstance(array, pa.ChunkedArray) else pa.chunked_array([array])
    return pd.Series(pd.arrays.ArrowStringArray(chunked.cast(pa.large_string())))


def _open_reader(
    sniffed: Sniffed, names: list[str], header: bool, chunksize: int, on_invalid: Any
) -> pa_csv.CSVStreamingReader:
    return pa_csv.open_csv(
        _arrow_source(sniffed),
        read_options=pa_csv.ReadOptions(
            column_names=names,
            skip_rows=1 if header else 0,
            block_size=max(1 << 16, min(chunksize * max(64, 8 * len(names)), 1 << 30)),
        ),
        parse_options=pa_csv.ParseOptions(
            delimiter=sniffed.sep, invalid_row_handler=on_invalid, ignore_empty_lines=True
        ),
        convert_options=pa_csv.ConvertOptions(
            column_types={name: pa.string() for name in names},
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    )


def read_rows(
    sniffed: Sniffed,
    n_fields: int,
    header: bool,
    report: ImportReport,
    required: Sequence[int] | None = None,
    chunksize: int = CHUNK_ROWS,
    start_row: int | None = None,
) -> Iterator[pd.DataFrame]:
    """Chunks of stripped string columns 0..n_fields-1 plus `_row` (data-row number).

    Parsing is Arrow's streaming CSV reader (C++, a block at a time), so a 100M-row file
    never becomes Python objects. A row with more or fewer fields than `n_fields` is
    counted (`too_many_fields` / `missing_field`) and skipped; so is a row with an empty
    field among `required` (default: all). `_row` numbers the rows the parser delivers (all
    rows but those of the wrong width, whose position Arrow does not report), continuing
    from `start_row` (default: rows the report has read so far), so several files get
    distinct numbers. `chunksize` sets the block size (rows x a guess of bytes per row).
    """
    needed = list(range(n_fields)) if required is None else list(required)
    names = [str(i) for i in range(n_fields)]
    invalid = {"too_many_fields": 0, "missing_field": 0}

    def on_invalid(row: Any) -> str:
        reason = "too_many_fields" if row.actual_columns > row.expected_columns else "missing_field"
        invalid[reason] += 1
        return "skip"

    try:
        reader = _open_reader(sniffed, names, header, chunksize, on_invalid)
    except (pa.ArrowInvalid, OSError, EOFError) as exc:
        raise DataError(f"{sniffed.path.name}: not readable as CSV: {exc}") from exc
    row = report.rows_read if start_row is None else start_row
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            batch = None
        except (pa.ArrowInvalid, OSError, EOFError) as exc:  # bad quote, truncated gzip, ...
            raise DataError(f"{sniffed.path.name}: CSV parse error: {exc}") from exc
        skipped = sum(invalid.values())
        for reason, count in invalid.items():
            report.add_bad(reason, count)
            invalid[reason] = 0
        report.rows_read += skipped
        if batch is None:
            return
        n = batch.num_rows
        if n == 0:
            continue
        columns = [pc.utf8_trim_whitespace(batch.column(i)) for i in range(n_fields)]
        missing = np.zeros(n, dtype=bool)
        for col in needed:
            missing |= pc.equal(columns[col], "").to_numpy(zero_copy_only=False)
        report.rows_read += n
        report.add_bad("missing_field", int(missing.sum()))
        out = pd.DataFrame({i: arrow_strings(columns[i]) for i in range(n_fields)})
        out["_row"] = np.arange(row, row + n, dtype=np.int64)
        row += n
        if missing.any():
            out = out[~missing].reset_index(drop=True)
        yield out


def map_actions(raw: pd.Series, mapping: dict[str, str], report: ImportReport) -> pd.Series:
    """Source action codes -> canonical actions (categorical); unknown codes are NA, counted."""
    keys = list(mapping)
    values = pc.utf8_lower(pc.utf8_trim_whitespace(pa.array(raw, type=pa.large_string())))
    found = pc.index_in(values, value_set=pa.array(keys, type=pa.large_string()))
    index = found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    lookup = np.array([ACTIONS.index(mapping[k]) for k in keys] + [-1], dtype=np.int64)
    codes = lookup[index]  # -1 (unknown) indexes the trailing -1
    report.add_bad("unknown_action", int((codes < 0).sum()))
    return pd.Series(pd.Categorical.from_codes(codes, categories=list(ACTIONS)), index=raw.index)


def to_float(raw: pd.Series) -> np.ndarray:
    """Numbers from strings; unparseable -> NaN. Arrow's cast first (fast), pandas if it fails."""
    try:
        arr = pc.cast(pa.array(raw, type=pa.large_string()), pa.float64())
        return arr.to_numpy(zero_copy_only=False).astype(np.float64)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)


def to_int_seconds(raw: pd.Series) -> np.ndarray:
    """Unix seconds (int or float strings, floored); unparseable -> -1."""
    values = to_float(raw)
    ok = np.isfinite(values)
    out = np.full(len(values), -1, dtype=np.int64)
    out[ok] = np.floor(values[ok]).astype(np.int64)
    return out


_EPOCH = pd.Timestamp(0, tz="UTC")


def _epoch_seconds(values: pd.Series) -> np.ndarray:
    """UTC datetimes (any resolution) -> Unix seconds, floored; NaT -> -1."""
    out = np.full(len(values), -1, dtype=np.int64)
    ok = values.notna().to_numpy()
    if ok.any():
        delta = (values[ok] - _EPOCH) // pd.Timedelta(seconds=1)
        out[ok] = delta.to_numpy(dtype=np.int64)
    return out


def day_seconds(year: int | np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Midnight UTC of (year, month, day) as Unix seconds; invalid dates give -1."""
    frame = pd.DataFrame({"year": year, "month": month, "day": day})
    return _epoch_seconds(pd.to_datetime(frame, errors="coerce", utc=True))


def to_seconds(stamps: pd.Series) -> np.ndarray:
    """tz-aware or naive (taken as UTC) datetimes -> Unix seconds; NaT -> -1."""
    return _epoch_seconds(pd.to_datetime(stamps, utc=True))


# Unix seconds accepted as plausible event times: 1990-01-01 .. 2100-01-01.
MIN_TS, MAX_TS = 631_152_000, 4_102_444_800


def canonical_part(
    user: pd.Series,
    item: pd.Series,
    category: pd.Series | str,
    action: pd.Series,
    ts: np.ndarray,
    row: pd.Series,
    report: ImportReport,
) -> pd.DataFrame:
    """One chunk's canonical rows; rows with NA action or a bad ts are dropped (counted).

    Columns stay Arrow-backed strings (and the action a small categorical) rather than
    Python objects: ~100M rows of a full UserBehavior file must fit in memory.
    """
    ts = np.asarray(ts, dtype=np.int64)
    bad_ts = (ts < MIN_TS) | (ts >= MAX_TS)
    bad_action = action.isna().to_numpy()
    report.add_bad("bad_timestamp", int((bad_ts & ~bad_action).sum()))
    keep = ~(bad_ts | bad_action)
    index = user.index
    part = pd.DataFrame(
        {
            "user_id": user.astype("string"),
            "item_id": item.astype("string"),
            "category_id": (
                pd.Series(category, index=index, dtype="string")
                if isinstance(category, str)
                else category.astype("string")
            ),
            "action": (
                action.cat.set_categories(list(ACTIONS))
                if isinstance(action.dtype, pd.CategoricalDtype)
                else pd.Categorical(action.to_numpy(), categories=list(ACTIONS))
            ),
            "ts": pd.Series(ts, index=index),
            "_row": row.to_numpy(dtype=np.int64),
        },
        index=index,
    )
    if not keep.all():
        part = part[keep]
    return part.reset_index(drop=True)


def finish_events(
    parts: list[pd.DataFrame], fmt: str, report: ImportReport, paths: Sequence[Path]
) -> EventLog:
    """Concatenate chunks, stable-sort by ts (file order breaks ties), assign event ids.

    `event_id` is `<fmt>:<n>` where n numbers the data rows of all files in the given order,
    so importing the same files again gives the same ids. `parts` is emptied as it is
    consumed, and columns are reordered one at a time, so the peak stays near twice the
    final frame rather than four times.
    """
    report.rows_ok = sum(len(part) for part in parts)
    if report.rows_ok == 0:
        raise DataError(
            f"no valid {fmt} rows in {', '.join(str(p) for p in paths)}: {report.summary()}"
        )
    ts = np.concatenate([part["ts"].to_numpy(dtype=np.int64) for part in parts])
    order = np.argsort(ts, kind="stable")
    sorted_already = bool((order[1:] > order[:-1]).all())
    columns: dict[str, Any] = {}
    for name in ("_row", "user_id", "item_id", "category_id", "action"):
        column = pd.concat([part[name] for part in parts], ignore_index=True)
        for part in parts:
            del part[name]
        columns[name] = column if sorted_already else column.take(order).reset_index(drop=True)
        del column
    parts.clear()
    ids = pd.Series(columns.pop("_row").to_numpy(), dtype="string")
    events = pd.DataFrame(
        {
            "event_id": f"{fmt}:" + ids,
            **columns,
            "ts": ts if sorted_already else ts[order],
        }
    )
    del ids, columns
    events = events.astype(EVENT_COLUMNS)
    return EventLog(events=events, report=report, sha256=sha256_of(list(paths)))
