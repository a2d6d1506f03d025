"""UCI Online Retail II (and the older Online Retail) invoice lines -> events and weekly sales.

Files: the two sheets of Online Retail II ("Year 2009-2010", "Year 2010-2011") saved as CSV,
or the older Online Retail (its second sheet), plain or gzip, one file per sheet or several.
Columns are found by name, either sheet's spelling (`header_columns`: case, spaces and
underscores are ignored): `Invoice`/`InvoiceNo`, `StockCode`, `Description` (optional),
`Quantity`, `InvoiceDate`, `Price`/`UnitPrice`, `Customer ID`/`CustomerID`, `Country`.
`InvoiceDate` is `YYYY-MM-DD HH:MM[:SS]` or, in the Kaggle copy of Online Retail,
`M/D/YYYY H:MM`; a slashed file is read day-first only when a first number above 12 says
so. Customer ids written as floats (`13085.0`) are read as integers. An `.xlsx` workbook
is refused with a message: no Excel reader is among the dependencies.
A file `StockCode,Description[,n_lines,...]` (as `stockcode_descriptions.csv.gz`
of the shared sample, whose line files carry no descriptions) gives descriptions too.
The 2009-2010 sheet's last nine days repeat the first nine of the 2010-2011 sheet: an
invoice already read from an earlier file, or from an earlier sheet of the same file (a
CSV of both sheets one after the other), is skipped (`invoice_in_earlier_sheet`).

What a line is:
- a cancellation: invoice starting with `C`, or a negative quantity;
- not a product: the retailer's service codes (`NON_PRODUCT_CODES`: postage, carriage,
  manual, discount, samples, bank charges, fees, vouchers, adjustments, tests);
- not a sale: price <= 0 (stock notes such as "damaged", free items) or quantity 0.

Events (`load_events`, for IMN-Net's next purchase): one `purchase` per distinct (customer,
invoice, stock code), at the invoice time; item = stock code (upper case: `85123a` and
`85123A` are one product), category = its product group. Lines without a customer id,
cancellations, non-products and non-sales are skipped and counted. A cancellation names no
original invoice, so the purchase it reverses cannot be found: it is skipped, not undone.

Sales (`load_sales`, for STMP and DINOP): weekly net revenue (quantity x price, GBP) per
region = `Country` x category = product group, weeks Monday to Sunday dated by their
Monday. Cancellations count negatively in their own week (a week can be below zero, noted);
lines without a customer id count (a sale needs no customer). Weekly, not daily: the shop
closes on Saturdays and from 12-24 to 01-03, so Christmas day itself never trades, while
the Christmas week (its last-orders days) does. Only weeks the file covers from Monday to
Sunday are kept (the partial first and last week would look like slumps); a series is
zero-filled from its first week on, over the weeks in which the shop sold anything. Day
types: the week holding Black Friday, Cyber Monday or Christmas (`FESTIVALS`, dates from
`service.calendar`) is tagged with it; the Chinese festivals and US-only holidays of the
calendar are not occasions for a UK retailer. No external or static factors: the data
holds none that are known before the week.

Product groups (`PRODUCT_GROUPS`, 10 + `other`): a stock code's description (the one used
on most lines) is matched word by word against a fixed keyword table, first group wins.
Ten groups because the catalogue is gift-ware sold in a few broad kinds: few enough that
every country's group sells most weeks, enough to separate the seasonal Christmas lines
from the year-round ones (on the shared sample: ~14 % of revenue is `other`). Sales need a
description source; events do without (category empty).

NOTE: times are the shop's clock (UK) read as UTC, like the other adapters' local times, so
days and weeks are the shop's; true UTC is an hour earlier in British Summer Time.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from service.calendar import week_day_type
from training.adapters.common import (
    DataError,
    Sniffed,
    canonical_part,
    day_seconds,
    expand_paths,
    finish_events,
    header_columns,
    normalise_column,
    read_rows,
    sniff,
    to_float,
)
from training.schemas import SALES_COLUMNS, EventLog, ImportReport, SalesData, sha256_of

FORMAT = "online_retail"
KIND = "both"
DESCRIPTION = (
    "UCI Online Retail II / Online Retail invoice lines (either sheet's column names, CSV "
    "plain or gzip): purchase events, weekly country x product-group sales"
)
LINE_COLUMNS: dict[str, tuple[str, ...]] = {
    "invoice": ("Invoice", "InvoiceNo"),
    "stock_code": ("StockCode",),
    "description": ("Description",),
    "quantity": ("Quantity",),
    "date": ("InvoiceDate",),
    "price": ("Price", "UnitPrice"),
    "customer": ("Customer ID", "CustomerID"),
    "country": ("Country",),
}
DESCRIPTION_COLUMNS: dict[str, tuple[str, ...]] = {
    "stock_code": ("StockCode",),
    "description": ("Description",),
    "n_lines": ("n_lines",),
}
#: Service codes of this retailer (upper case), and prefixes of numbered ones.
NON_PRODUCT_CODES = frozenset(
    {"POST", "DOT", "C2", "C3", "M", "D", "S", "B", "CRUK", "PADS", "AMAZONFEE", "GIFT"}
    | {"BANK CHARGES", "23444"}  # 23444 is "Next Day Carriage"
)
NON_PRODUCT_PREFIXES = ("ADJUST", "TEST", "GIFT_0001")
#: Weeks holding these festivals get their name as day type (first match wins).
FESTIVALS = ("black_friday", "cyber_monday", "christmas")
OTHER_GROUP = "other"
#: Product group -> words of a description that put a product in it; first group wins.
PRODUCT_GROUPS: dict[str, tuple[str, ...]] = {
    "christmas": (
        "CHRISTMAS", "XMAS", "ADVENT", "SANTA", "REINDEER", "SNOWMAN", "SNOWFLAKE",
        "NATIVITY", "BAUBLE", "BAUBLES", "NOEL", "TREE",
    ),
    "bags": ("BAG", "BAGS", "SHOPPER", "HANDBAG", "TOTE", "PURSE"),
    "lights_candles": (
        "LIGHT", "LIGHTS", "CANDLE", "CANDLES", "CANDLEHOLDER", "LANTERN", "LAMP",
        "TEALIGHT", "NIGHTLIGHT", "INCENSE", "BURNER", "TORCH",
    ),
    "kitchen_tableware": (
        "MUG", "MUGS", "CUP", "CUPS", "SAUCER", "TEACUP", "TEA", "COFFEE", "CAKE", "CAKES",
        "CAKESTAND", "PLATE", "PLATES", "BOWL", "BOWLS", "JUG", "JAR", "JARS", "CUTLERY",
        "SPOON", "SPOONS", "NAPKINS", "KITCHEN", "BAKING", "LUNCH", "APRON", "OVEN", "TRAY",
        "PANTRY", "BREAD", "BISCUIT", "CHOPSTICKS", "DOILY", "DOILIES", "CUTTERS", "CASES",
        "TUMBLER", "GLASSES", "BEAKERS", "STRAWS", "JELLY", "RECIPE", "CHOPPING", "COASTER",
        "COASTERS", "PICNIC", "JAM", "PLACEMATS", "TEAPOT", "EGG", "DISH", "CONTAINER",
        "BREAKFAST", "PAN",
    ),
    "stationery_cards": (
        "CARD", "CARDS", "WRAP", "PAPER", "NOTEBOOK", "NOTEBOOKS", "PEN", "PENS", "PENCIL",
        "PENCILS", "STICKER", "STICKERS", "ENVELOPE", "ENVELOPES", "TAPE", "ERASER", "RULER",
        "BOOK", "JOURNAL", "DIARY", "CHALK", "CRAYONS", "NOTEPAD", "MEMO", "POSTCARD", "TAGS",
    ),
    "party": (
        "PARTY", "BUNTING", "BALLOON", "BALLOONS", "BIRTHDAY", "CONFETTI", "RIBBON",
        "RIBBONS", "WEDDING", "CRACKERS", "GARLAND",
    ),
    "home_decor": (
        "SIGN", "FRAME", "CLOCK", "CUSHION", "DOORMAT", "MAT", "HOOK", "HOOKS", "HANGER",
        "HANGERS", "DECORATION", "DECORATIONS", "ORNAMENT", "MIRROR", "VASE", "WREATH",
        "DOORSTOP", "DRAWER", "KNOB", "CABINET", "SHELF", "PLAQUE", "WALL", "COAT", "BOTTLE",
        "HOTTIE", "WARMER", "THROW", "QUILT", "BLANKET", "STORAGE", "BOX", "BOXES", "TIN",
        "TINS", "BASKET", "HOLDER", "CHALKBOARD", "BATHROOM", "TOWEL", "TISSUES", "PHOTO",
        "ALBUM", "CHEST", "CRATES", "BOARD", "MEMOBOARD", "PEGS", "WICKER",
    ),
    "toys_games": (
        "TOY", "TOYS", "GAME", "GAMES", "JIGSAW", "PUZZLE", "DOLL", "DOLLY", "SOLDIER",
        "TEDDY", "PLAYHOUSE", "MARBLES", "SKIPPING", "SPINNING", "CHILDRENS", "KIDS", "PLAY",
        "BLOCK", "BLOCKS", "KIT", "BALL", "PAINT", "COLOURING", "CLAY", "KNITTING",
        "FELTCRAFT", "BINGO", "LADDERS", "PIGGY",
    ),
    "jewellery_accessories": (
        "NECKLACE", "NECKL", "EARRINGS", "BRACELET", "RING", "RINGS", "BROOCH", "HAIRCLIP",
        "HAIR", "CHARM", "PENDANT", "BEADS", "JEWELLERY", "UMBRELLA", "PARASOL", "SCARF",
        "GLOVES", "WALLET", "BANGLE", "DIAMANTE", "KEYRING", "SLIPPER", "SOCK", "FAN",
    ),
    "garden": (
        "GARDEN", "GARDENERS", "PLANT", "PLANTER", "WATERING", "FEEDER", "SEED", "TRELLIS",
        "FLOWERPOT", "POT", "POTS", "HERB",
    ),
}  # fmt: skip
_DATE = re.compile(
    r"^(?P<a>\d{1,4})[-/.](?P<b>\d{1,2})[-/.](?P<c>\d{1,4})"
    r"(?:[ T](?P<h>\d{1,2}):(?P<m>\d{2})(?::(?P<s>\d{2})(?:\.\d+)?)?)?$"
)
_MISSING_CUSTOMER = {"", "NAN", "NULL", "NONE", "NA"}


def product_group(description: str) -> str:
    """The group of one description: the first of `PRODUCT_GROUPS` naming one of its words."""
    words = set(re.findall(r"[A-Z]+", description.upper()))
    for group, keywords in PRODUCT_GROUPS.items():
        if not words.isdisjoint(keywords):
            return group
    return OTHER_GROUP


def is_product(codes: pd.Series) -> np.ndarray:
    """False for the retailer's service codes (postage, fees, adjustments, ...)."""
    upper = codes.str.upper()
    service = upper.isin(NON_PRODUCT_CODES).to_numpy(dtype=bool)
    for prefix in NON_PRODUCT_PREFIXES:
        service = service | upper.str.startswith(prefix).to_numpy(dtype=bool)
    return ~service


@dataclass
class Lines:
    """The readable invoice lines of all files, in file order (one entry per line)."""

    invoice: pd.Series
    stock_code: pd.Series  # upper case
    quantity: np.ndarray  # int64
    price: np.ndarray  # float64
    ts: np.ndarray  # int64 Unix seconds (the shop's clock read as UTC)
    customer: pd.Series  # "" when missing
    country: pd.Series
    row: np.ndarray  # int64 data-row number across files
    group: pd.Series  # product group, "" when no description source was given
    has_descriptions: bool
    described_codes: int  # products with a description
    undescribed_codes: int  # products without one (group `other`)
    files: list[Path]

    @property
    def cancellation(self) -> np.ndarray:
        return self.invoice.str.upper().str.startswith("C").to_numpy(dtype=bool) | (
            self.quantity < 0
        )

    def __len__(self) -> int:
        return len(self.quantity)


def _slash_order(a: np.ndarray, b: np.ndarray, path: Path, report: ImportReport) -> bool:
    """True when `a/b/yyyy` dates of one file are day first; month first unless shown."""
    day_first, month_first = bool((a > 12).any()), bool((b > 12).any())
    if day_first and month_first:
        raise DataError(
            f"{path.name}: InvoiceDate mixes day/month and month/day dates", field="InvoiceDate"
        )
    if not day_first and not month_first and len(a):
        report.add_note(f"{path.name}: d/m order not decidable, read as month/day", len(a))
    return day_first


def parse_dates(raw: pd.Series, path: Path, report: ImportReport) -> np.ndarray:
    """Unix seconds of `YYYY-MM-DD HH:MM[:SS]` or `M/D/YYYY H:MM` (or D/M); -1 if unreadable."""
    parts = pc.extract_regex(pa.array(raw, type=pa.large_string()), _DATE.pattern)
    no_value = pa.scalar(None, pa.large_string())
    fields = {}
    for name in ("a", "b", "c", "h", "m", "s"):  # digits only (the pattern), "" if absent
        text = pc.struct_field(parts, name)
        text = pc.if_else(pc.equal(text, ""), no_value, text)
        fields[name] = pc.cast(text, pa.int64()).fill_null(-1).to_numpy(zero_copy_only=False)
    a, b, c = fields["a"], fields["b"], fields["c"]
    matched = a >= 0
    iso = matched & (a >= 1000)
    slash = matched & ~iso
    year, month, day = np.where(iso, a, c), np.where(iso, b, a), np.where(iso, c, b)
    if slash.any():
        if _slash_order(a[slash], b[slash], path, report):
            month, day = np.where(iso, month, b), np.where(iso, day, a)
        year = np.where(slash & (year < 100), 2000 + year, year)
    hour, minute, second = (np.maximum(fields[k], 0) for k in ("h", "m", "s"))
    ok = matched & (year >= 1900) & (year < 2200) & (hour < 24) & (minute < 60) & (second < 60)
    ts = day_seconds(np.where(ok, year, 1970), np.where(ok, month, 1), np.where(ok, day, 1))
    ts = np.where(ok & (ts >= 0), ts + 3600 * hour + 60 * minute + second, -1)
    return ts.astype(np.int64)


def _customer_ids(raw: pd.Series) -> pd.Series:
    """Customer ids as text; float spellings (`13085.0`) lose `.0`; NaN-like -> ""."""
    ids = raw.str.replace(r"\.0+$", "", regex=True)
    return ids.where(~ids.str.upper().isin(_MISSING_CUSTOMER), "")


def _description_counts(frame: pd.DataFrame) -> pd.DataFrame:
    """(stock_code, description, n) with normalised text, empty descriptions left out."""
    text = frame["description"].str.upper().str.split().str.join(" ")
    out = pd.DataFrame(
        {"stock_code": frame["stock_code"].str.upper(), "description": text, "n": frame["n"]}
    )
    return out[out["description"].fillna("") != ""]


def _read_descriptions(sniffed: Sniffed, report: ImportReport) -> pd.DataFrame:
    col = header_columns(sniffed, DESCRIPTION_COLUMNS, optional=("n_lines",))
    side = ImportReport(source="descriptions")  # its rows are not invoice lines
    frames = []
    n = len(sniffed.first_fields)
    for chunk in read_rows(sniffed, n, True, side, required=(col["stock_code"],)):
        counts = (
            np.nan_to_num(to_float(chunk[col["n_lines"]]), nan=1.0)
            if "n_lines" in col
            else np.ones(len(chunk))
        )
        frames.append(
            pd.DataFrame(
                {
                    "stock_code": chunk[col["stock_code"]],
                    "description": chunk[col["description"]],
                    "n": counts,
                }
            )
        )
    report.add_note(f"{sniffed.path.name}: stock code descriptions read", side.rows_read)
    return _description_counts(pd.concat(frames, ignore_index=True)) if frames else pd.DataFrame()


def _repeated_invoices(
    invoice: pd.Series, ts: np.ndarray, valid: np.ndarray, seen: set[str]
) -> np.ndarray:
    """Valid lines whose invoice an earlier sheet already holds; adds this file's to `seen`.

    A sheet's lines run in time order, so a line more than a day before the latest one so
    far starts another sheet (a CSV of both sheets one after the other, as on Kaggle): the
    two sheets overlap by nine days, and those invoices would otherwise count twice.
    """
    latest = np.maximum.accumulate(np.where(valid, ts, np.iinfo(np.int64).min))
    restart = np.zeros(len(ts), dtype=bool)
    restart[1:] = valid[1:] & (ts[1:] < latest[:-1] - 86_400)
    sheet = np.cumsum(restart)
    repeated = np.zeros(len(ts), dtype=bool)
    for part in np.unique(sheet):
        here = (sheet == part) & valid
        repeated[here] = invoice[here].isin(seen).to_numpy(dtype=bool)
        seen.update(invoice[here].unique().tolist())
    return repeated


def _read_line_file(
    sniffed: Sniffed, report: ImportReport, seen: set[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(valid lines, description counts) of one invoice-line file; bad lines are counted.

    `seen` holds the invoices of the files read before; this file's are added to it.
    """
    col = header_columns(sniffed, LINE_COLUMNS, optional=("description",))
    keys = [k for k in LINE_COLUMNS if k in col]
    required = [col[k] for k in keys if k not in ("description", "customer")]
    chunks = [
        chunk.rename(columns={col[k]: k for k in keys})[[*keys, "_row"]]
        for chunk in read_rows(sniffed, len(sniffed.first_fields), True, report, required=required)
    ]
    if not chunks:
        return pd.DataFrame(), pd.DataFrame()
    raw = pd.concat(chunks, ignore_index=True)
    quantity = to_float(raw["quantity"])
    price = to_float(raw["price"])
    ts = parse_dates(raw["date"], sniffed.path, report)
    bad_quantity = ~np.isfinite(quantity) | (np.round(quantity) != quantity)
    bad_price = ~np.isfinite(price) & ~bad_quantity
    bad_date = (ts < 0) & ~bad_quantity & ~bad_price
    earlier = _repeated_invoices(raw["invoice"], ts, ~(bad_quantity | bad_price | bad_date), seen)
    report.add_bad("bad_quantity", int(bad_quantity.sum()))
    report.add_bad("bad_price", int(bad_price.sum()))
    report.add_bad("bad_date", int(bad_date.sum()))
    report.add_bad("invoice_in_earlier_sheet", int(earlier.sum()))
    keep = ~(bad_quantity | bad_price | bad_date | earlier)
    lines = pd.DataFrame(
        {
            "invoice": raw["invoice"],
            "stock_code": raw["stock_code"].str.upper(),
            "quantity": np.nan_to_num(quantity).astype(np.int64),
            "price": price,
            "ts": ts,
            "customer": (
                _customer_ids(raw["customer"])
                if "customer" in raw
                else pd.Series("", index=raw.index)
            ),
            "country": raw["country"],
            "row": raw["_row"],
        }
    )[keep].reset_index(drop=True)
    descriptions = (
        _description_counts(raw[keep].assign(n=1.0)) if "description" in raw else pd.DataFrame()
    )
    return lines, descriptions


def _classify(sniffed: Sniffed) -> str:
    names = {normalise_column(f) for f in sniffed.first_fields}
    if "stockcode" in names and ({"invoice", "invoiceno"} & names):
        return "lines"
    if "stockcode" in names and "description" in names:
        return "descriptions"
    return "other"


def read_lines(paths: Sequence[Path | str], report: ImportReport) -> Lines:
    """Every readable invoice line of the files, with each product's group."""
    files = expand_paths(paths)
    parts, counts, used = [], [], []
    seen: set[str] = set()
    for path in files:
        sniffed = sniff(path)
        kind = _classify(sniffed)
        if kind == "other":
            report.add_note(f"skipped file: {path.name}")
            continue
        used.append(path)
        if kind == "descriptions":
            counts.append(_read_descriptions(sniffed, report))
            continue
        lines, described = _read_line_file(sniffed, report, seen)
        parts.append(lines)
        counts.append(described)
    frames = [p for p in parts if len(p)]
    if not frames:
        raise DataError(
            f"no valid {FORMAT} invoice lines in {', '.join(str(p) for p in files)}: "
            f"{report.summary()}"
        )
    lines = pd.concat(frames, ignore_index=True)
    counts = [c for c in counts if len(c)]
    best: dict[str, str] = {}
    if counts:
        table = pd.concat(counts, ignore_index=True)
        table = table.groupby(["stock_code", "description"], as_index=False)["n"].sum()
        table = table.sort_values(["stock_code", "n", "description"], ascending=[True, False, True])
        best = dict(table.drop_duplicates("stock_code")[["stock_code", "description"]].to_numpy())
    codes = pd.Series(lines["stock_code"].unique())
    products = codes[is_product(codes)]
    described = int(products.isin(best.keys()).sum())
    groups = {code: product_group(best[code]) if code in best else OTHER_GROUP for code in codes}
    return Lines(
        invoice=lines["invoice"],
        stock_code=lines["stock_code"],
        quantity=lines["quantity"].to_numpy(np.int64),
        price=lines["price"].to_numpy(np.float64),
        ts=lines["ts"].to_numpy(np.int64),
        customer=lines["customer"],
        country=lines["country"],
        row=lines["row"].to_numpy(np.int64),
        group=lines["stock_code"].map(groups) if best else pd.Series("", index=lines.index),
        has_descriptions=bool(best),
        described_codes=described,
        undescribed_codes=len(products) - described,
        files=used,
    )


def _drop(reasons: list[tuple[str, np.ndarray]], report: ImportReport) -> np.ndarray:
    """Keep-mask after the (reason, mask) pairs; each line is counted under its first reason."""
    dropped = np.zeros(len(reasons[0][1]), dtype=bool)
    for reason, mask in reasons:
        report.add_bad(reason, int((mask & ~dropped).sum()))
        dropped |= mask
    return ~dropped


def load_events(paths: Sequence[Path | str]) -> EventLog:
    """One purchase event per distinct (customer, invoice, stock code)."""
    report = ImportReport(source=FORMAT)
    lines = read_lines(paths, report)
    repeat = (
        pd.DataFrame({"c": lines.customer, "i": lines.invoice, "s": lines.stock_code})
        .duplicated()
        .to_numpy()
    )
    keep = _drop(
        [
            ("non_product_code", ~is_product(lines.stock_code)),
            ("cancellation", lines.cancellation),
            ("zero_quantity", lines.quantity == 0),
            ("zero_price", lines.price <= 0),
            ("no_customer_id", (lines.customer == "").to_numpy(dtype=bool)),
            ("repeated_item_in_invoice", repeat),
        ],
        report,
    )
    if lines.has_descriptions:
        report.add_note("products without a description (category other)", lines.undescribed_codes)
    part = canonical_part(
        lines.customer[keep].reset_index(drop=True),
        lines.stock_code[keep].reset_index(drop=True),
        lines.group[keep].reset_index(drop=True),
        pd.Series("purchase", index=range(int(keep.sum())), dtype=object),
        lines.ts[keep],
        pd.Series(lines.row[keep]),
        report,
    )
    return finish_events([part], FORMAT, report, lines.files)


def _week_monday(ts: np.ndarray) -> np.ndarray:
    """Epoch day of the Monday starting each timestamp's week (1970-01-01 was a Thursday)."""
    day = ts // 86400
    return day - (day + 3) % 7


def load_sales(paths: Sequence[Path | str]) -> SalesData:
    """Weekly net revenue per country x product group over fully covered weeks."""
    report = ImportReport(source=FORMAT)
    lines = read_lines(paths, report)
    if not lines.has_descriptions:
        raise DataError(
            "no Description column and no StockCode,Description file among the inputs: "
            "product groups come from descriptions (give stockcode_descriptions.csv too)",
            field="Description",
        )
    week = _week_monday(lines.ts)
    first_day, last_day = int(lines.ts.min() // 86400), int(lines.ts.max() // 86400)
    partial = (week < first_day) | (week + 6 > last_day)
    keep = _drop(
        [
            ("non_product_code", ~is_product(lines.stock_code)),
            ("zero_quantity", lines.quantity == 0),
            ("zero_price", lines.price <= 0),
            ("partial_edge_week", partial),
        ],
        report,
    )
    if not keep.any():
        raise DataError(f"no {FORMAT} sale line in a fully covered week: {report.summary()}")
    cancel = lines.cancellation
    report.add_note("cancellation lines (netted in their week)", int((cancel & keep).sum()))
    report.add_note(
        "lines without Customer ID (kept for sales)",
        int(((lines.customer == "").to_numpy(dtype=bool) & keep).sum()),
    )
    report.add_note("products without a description (group other)", lines.undescribed_codes)
    revenue = np.where(cancel, -np.abs(lines.quantity), lines.quantity) * lines.price
    frame = pd.DataFrame(
        {
            "region": lines.country[keep].to_numpy(),
            "category": lines.group[keep].to_numpy(),
            "week": week[keep],
            "sales": revenue[keep],
        }
    )
    totals = frame.groupby(["region", "category", "week"], as_index=False)["sales"].sum()
    trading = np.unique(week[~partial])  # weeks the shop sold anything in
    weeks_all = np.arange(trading.min(), trading.max() + 1, 7)
    report.add_note("weeks without any sale (shop closed; no rows)", len(weeks_all) - len(trading))
    filled = _zero_fill(totals, trading)
    report.add_note("zero-filled weeks of a series", len(filled) - len(totals))
    report.add_note(
        "weeks of a series below zero (cancellations, kept)", int((filled["sales"] < 0).sum())
    )
    dates = pd.to_datetime(filled["week"].to_numpy() * 86400, unit="s")
    day_types = {d: week_day_type(d + pd.Timedelta(days=6), FESTIVALS) for d in dates.unique()}
    sales = pd.DataFrame(
        {
            "region": filled["region"].to_numpy(),
            "category": filled["category"].to_numpy(),
            "date": dates.astype("datetime64[ns]"),
            "sales": filled["sales"].to_numpy(np.float64),
            "day_type": dates.map(day_types),
        }
    ).astype(SALES_COLUMNS)
    report.rows_ok = int(keep.sum())
    static = pd.DataFrame({"region": sorted(set(sales["region"]))}).astype({"region": "string"})
    return SalesData(
        sales=sales,
        static=static,
        frequency="W",
        external_columns=[],
        static_columns=[],
        report=report,
        sha256=sha256_of(lines.files),
    )


def _zero_fill(totals: pd.DataFrame, trading: np.ndarray) -> pd.DataFrame:
    """Each (region, category) series on every trading week from its first one, 0 if none."""
    first = totals.groupby(["region", "category"])["week"].min()
    grid = pd.DataFrame(
        [
            (region, category, week)
            for (region, category), start in first.items()
            for week in trading[trading >= start]
        ],
        columns=["region", "category", "week"],
    )
    out = grid.merge(totals, on=["region", "category", "week"], how="left")
    out["sales"] = out["sales"].fillna(0.0)
    return out.sort_values(["region", "category", "week"], kind="stable").reset_index(drop=True)
