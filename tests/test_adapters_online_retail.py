"""UCI Online Retail II / Online Retail (`online_retail`): tiny files the tests write.

Two invoice-line files in the two sheets' column names (one gzipped, ISO dates with a
Description column; one plain, the Kaggle copy's `M/D/YYYY H:MM` dates without one) and a
`StockCode,Description,n_lines` file, spanning Black Friday and Cyber Monday 2010, with
cancellations, missing customers, service codes, a zero price, a repeated item, an
invoice repeated from the other file and unreadable values.
"""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from service.errors import InvalidInput
from training.adapters.online_retail import product_group
from training.cli import main
from training.data import FORMATS, load_events, load_sales
from training.schemas import EVENT_COLUMNS, SALES_COLUMNS

II_HEADER = "Invoice,StockCode,Description,Quantity,InvoiceDate,Price,Customer ID,Country"
II_LINES = [
    "500001,85123A,WHITE HEART T-LIGHT HOLDER,6,2010-11-14 09:00,2.55,13085.0,United Kingdom",
    "500002,85123A,WHITE HEART T-LIGHT HOLDER,10,2010-11-15 10:00,2.50,13085.0,United Kingdom",
    "500002,85123a,WHITE HEART T-LIGHT HOLDER,2,2010-11-15 10:00,2.50,13085.0,United Kingdom",
    "500002,POST,POSTAGE,1,2010-11-15 10:00,18.00,13085.0,United Kingdom",
    '500003,22041,"RECORD FRAME, 7"" SINGLE SIZE",4,2010-11-16 11:30:00,2.10,,France',
    "C500004,85123A,WHITE HEART T-LIGHT HOLDER,-3,2010-11-17 12:00,2.50,13085.0,United Kingdom",
    "500005,10133,damaged,5,2010-11-18 12:00,0,,United Kingdom",
]
OLD_HEADER = "InvoiceNo,StockCode,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"
OLD_LINES = [
    "536365,84029G,6,11/26/2010 8:26,3.39,17850,United Kingdom",  # Black Friday
    "536366,22633,6,11/29/2010 8:28,1.85,17850,United Kingdom",  # Cyber Monday
    "536366,M,1,11/29/2010 8:28,10.0,17850,United Kingdom",
    "536367,gift_0001_20,1,12/5/2010 9:00,20.0,17851,United Kingdom",
    "536368,BANK CHARGES,1,12/5/2010 9:01,15.0,,United Kingdom",
    "500003,22041,4,11/16/2010 11:30,2.10,,France",  # the same invoice as in the other file
    "536369,22633,xx,12/5/2010 10:00,1.85,17850,United Kingdom",  # bad quantity
    "536370,22633,1,11/31/2010 10:00,1.85,17850,United Kingdom",  # no such day
    "536371,22633,2,12/6/2010 10:00,1.85,17850,United Kingdom",  # a partly covered last week
]
DESCRIPTIONS = [
    "StockCode,Description,n_lines",
    "84029G,KNITTED UNION FLAG HOT WATER BOTTLE,100",
    "84029G,,3",
    "22633,HAND WARMER UNION JACK,50",
    "22633,hand warmer  union jack ,2",
    '22041,"RECORD FRAME, 7"" SINGLE SIZE",10',
]


def write(path: Path, lines: list[str], gz: bool = False) -> Path:
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    return [
        write(tmp_path / "online_retail_ii_2009_2010.csv.gz", [II_HEADER, *II_LINES], gz=True),
        write(tmp_path / "online_retail_2010_2011.csv", [OLD_HEADER, *OLD_LINES]),
        write(tmp_path / "stockcode_descriptions.csv", DESCRIPTIONS),
    ]


def stamp(text: str) -> int:
    return int(pd.Timestamp(text, tz="UTC").timestamp())


def test_events_are_distinct_purchases_per_invoice_with_every_skip_counted(
    files: list[Path],
) -> None:
    log = load_events(files, "online_retail")
    events = log.events
    assert list(events.columns) == list(EVENT_COLUMNS)
    rows = [tuple(r) for r in events[["user_id", "item_id", "category_id"]].itertuples(index=False)]
    assert rows == [
        ("13085", "85123A", "lights_candles"),  # customer id 13085.0 -> 13085
        ("13085", "85123A", "lights_candles"),
        ("17850", "84029G", "home_decor"),
        ("17850", "22633", "home_decor"),
        ("17850", "22633", "home_decor"),
    ]
    assert set(events["action"]) == {"purchase"}
    assert list(events["ts"]) == [
        stamp("2010-11-14 09:00"),
        stamp("2010-11-15 10:00"),
        stamp("2010-11-26 08:26"),  # M/D/YYYY
        stamp("2010-11-29 08:28"),
        stamp("2010-12-06 10:00"),
    ]
    report = log.report
    assert report.rows_read == 16 and report.rows_ok == 5
    assert report.bad_rows == {
        "non_product_code": 4,  # POST, M, gift_0001_20, BANK CHARGES
        "cancellation": 1,
        "zero_price": 1,
        "no_customer_id": 1,
        "repeated_item_in_invoice": 1,  # 85123a is 85123A, same invoice
        "invoice_in_earlier_sheet": 1,
        "bad_quantity": 1,
        "bad_date": 1,
    }


def test_sales_are_weekly_net_revenue_per_country_and_group_with_festival_weeks(
    files: list[Path],
) -> None:
    data = load_sales(files, "online_retail")
    assert data.frequency == "W" and data.external_columns == [] and data.static_columns == []
    sales = data.sales
    assert list(sales.columns) == list(SALES_COLUMNS)
    got = [
        (r.region, r.category, r.date.strftime("%m-%d"), round(r.sales, 2), r.day_type)
        for r in sales.itertuples(index=False)
    ]
    assert got == [
        ("France", "home_decor", "11-15", 8.4, "ordinary"),  # no customer id: still a sale
        ("France", "home_decor", "11-22", 0.0, "black_friday"),  # zero-filled
        ("France", "home_decor", "11-29", 0.0, "cyber_monday"),
        ("United Kingdom", "home_decor", "11-22", 20.34, "black_friday"),
        ("United Kingdom", "home_decor", "11-29", 11.1, "cyber_monday"),
        # 25 + 5 (85123a, the same product) - 7.5 (the cancellation)
        ("United Kingdom", "lights_candles", "11-15", 22.5, "ordinary"),
        ("United Kingdom", "lights_candles", "11-22", 0.0, "black_friday"),
        ("United Kingdom", "lights_candles", "11-29", 0.0, "cyber_monday"),
    ]
    assert list(data.static["region"]) == ["France", "United Kingdom"]
    report = data.report
    assert report.rows_read == 16 and report.rows_ok == 6
    assert report.bad_rows == {
        "non_product_code": 4,
        "zero_price": 1,
        "partial_edge_week": 2,  # Sunday 11-14 and Monday 12-06: their weeks are cut
        "invoice_in_earlier_sheet": 1,
        "bad_quantity": 1,
        "bad_date": 1,
    }
    assert report.notes["cancellation lines (netted in their week)"] == 1
    assert report.notes["lines without Customer ID (kept for sales)"] == 1
    assert report.notes["zero-filled weeks of a series"] == 4


def test_either_sheets_column_names_and_compression_read_the_same(tmp_path: Path) -> None:
    body = [
        "536365,84029G,UNION FLAG HOT WATER BOTTLE,6,2010-12-01 08:26,3.39,17850,United Kingdom",
        "C536379,D,Discount,-1,2010-12-01 09:41,27.5,14527,United Kingdom",
        "536380,22961,JAM MAKING SET PRINTED,24,2010-12-01 09:41,1.45,,United Kingdom",
    ]
    new = write(tmp_path / "ii.csv", [II_HEADER, *body])
    old_header = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"
    old = write(tmp_path / "old.csv.gz", [old_header, *body], gz=True)
    snake = "invoice_no,stock_code,description,quantity,invoice_date,unit_price,customer_id,country"
    lower = write(tmp_path / "snake.csv", [snake, *body])
    a = load_events([new], "online_retail")
    for other in (old, lower):
        pd.testing.assert_frame_equal(a.events, load_events([other], "online_retail").events)
    assert len(a.events) == 1 and a.report.bad_rows == {"non_product_code": 1, "no_customer_id": 1}
    assert a.sha256 != load_events([old], "online_retail").sha256


def test_both_sheets_in_one_file_count_the_overlapping_days_once(tmp_path: Path) -> None:
    sheet1 = [
        "489434,85048,CHRISTMAS LIGHTS,12,2009-12-01 07:45,6.95,13085,United Kingdom",
        "536365,84029G,UNION FLAG HOT WATER BOTTLE,6,2010-12-01 08:26,3.39,17850,United Kingdom",
        "536366,22633,HAND WARMER UNION JACK,6,2010-12-09 08:28,1.85,17850,United Kingdom",
    ]
    sheet2 = [
        *sheet1[1:],  # the 2010-2011 sheet starts with the same nine days
        "536367,22633,HAND WARMER UNION JACK,6,2010-12-10 09:00,1.85,17851,United Kingdom",
    ]
    both = write(tmp_path / "online_retail_II.csv", [II_HEADER, *sheet1, *sheet2])
    log = load_events([both], "online_retail")
    assert log.events["user_id"].tolist() == ["13085", "17850", "17850", "17851"]
    assert log.report.bad_rows == {"invoice_in_earlier_sheet": 2}


def test_slashed_dates_day_first_when_a_day_says_so(tmp_path: Path) -> None:
    header = OLD_HEADER
    day_first = write(
        tmp_path / "uk.csv",
        [header, "1,22633,1,26/11/2010 08:26,1.85,1,UK", "2,22633,1,01/12/2010 08:26,1.85,1,UK"],
    )
    ts = load_events([day_first], "online_retail").events["ts"].tolist()
    assert ts == [stamp("2010-11-26 08:26"), stamp("2010-12-01 08:26")]
    ambiguous = write(tmp_path / "amb.csv", [header, "1,22633,1,1/12/10 8:26,1.85,1,UK"])
    log = load_events([ambiguous], "online_retail")
    assert log.events["ts"].tolist() == [stamp("2010-01-12 08:26")]  # month/day, 2-digit year
    assert log.report.notes["amb.csv: d/m order not decidable, read as month/day"] == 1
    mixed = write(
        tmp_path / "mixed.csv",
        [header, "1,22633,1,26/11/2010 08:26,1.85,1,UK", "2,22633,1,11/26/2010 08:26,1.85,1,UK"],
    )
    with pytest.raises(InvalidInput) as err:
        load_events([mixed], "online_retail")
    assert err.value.field == "InvoiceDate"


def test_malformed_inputs_name_the_column(tmp_path: Path) -> None:
    no_quantity = write(
        tmp_path / "q.csv",
        [
            "InvoiceNo,StockCode,InvoiceDate,UnitPrice,CustomerID,Country",
            "1,2,2010-12-01 08:26,1,2,UK",
        ],
    )
    with pytest.raises(InvalidInput) as err:
        load_events([no_quantity], "online_retail")
    assert err.value.field == "Quantity" and "no Quantity column" in err.value.reason
    no_descriptions = write(tmp_path / "lines.csv", [OLD_HEADER, *OLD_LINES])
    assert len(load_events([no_descriptions], "online_retail").events) > 0  # events need none
    assert set(load_events([no_descriptions], "online_retail").events["category_id"]) == {""}
    with pytest.raises(InvalidInput) as err:
        load_sales([no_descriptions], "online_retail")
    assert err.value.field == "Description"
    workbook = tmp_path / "online_retail_II.xlsx"
    with zipfile.ZipFile(workbook, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("xl/workbook.xml", "<workbook/>")
    with pytest.raises(InvalidInput, match="Excel workbook"):
        load_sales([workbook], "online_retail")
    garbage = write(tmp_path / "bad.csv", [OLD_HEADER, "1,22633,x,never,y,1,UK"])
    with pytest.raises(InvalidInput, match="no valid online_retail invoice lines"):
        load_events([garbage], "online_retail")


def test_product_groups_come_from_description_words() -> None:
    assert product_group("PAPER CHAIN KIT 50'S CHRISTMAS ") == "christmas"  # before stationery
    assert product_group("JUMBO BAG RED RETROSPOT") == "bags"
    assert product_group("WHITE HEART T-LIGHT HOLDER") == "lights_candles"
    assert product_group("LUNCH BAG RED RETROSPOT") == "bags"  # first group wins
    assert product_group("SET OF 3 CAKE TINS PANTRY DESIGN") == "kitchen_tableware"
    assert product_group("INFLATABLE POLITICAL GLOBE") == "other"


def test_cli_import_writes_events_and_sales_into_a_folder(
    files: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert FORMATS["online_retail"].kind == "both"
    args = ["data", "import", "--format", "online_retail", "--data", *map(str, files)]
    assert main([*args, "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "5/16 rows ok" in printed and "6/16 rows ok" in printed
    assert len(pd.read_csv(tmp_path / "out" / "events.csv")) == 5
    assert len(pd.read_csv(tmp_path / "out" / "sales.csv")) == 8
    assert (tmp_path / "out" / "static.csv").exists()
    assert main([*args, "--out", str(tmp_path / "one.csv")]) == 2
    assert "give a folder" in capsys.readouterr().err
