"""Adapters: tiny files in each original layout (header-less, gzip, GBK, ...) with bad rows.

Each test writes its own files, so the suite needs no data. The last tests read the real
samples in the folder `$SALECAST_DATA` names, when it is set, and check the row counts its READMEs
state.
"""

from __future__ import annotations

import gzip
import os
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from service.errors import InvalidInput
from training.data import FORMATS, load_events, load_sales
from training.schemas import EVENT_COLUMNS, SALES_COLUMNS


def real_sample(rel: str) -> Path:
    """`$SALECAST_DATA/<rel>`; skips the test where the variable is unset or the sample absent."""
    root = os.environ.get("SALECAST_DATA")
    if not root or not (Path(root) / rel).exists():
        pytest.skip(f"$SALECAST_DATA/{rel} not present")
    return Path(root) / rel


def write(path: Path, text: str, encoding: str = "utf-8", gz: bool = False) -> Path:
    data = text.encode(encoding)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def check_events(frame: pd.DataFrame) -> None:
    assert list(frame.columns) == list(EVENT_COLUMNS)
    assert frame["ts"].is_monotonic_increasing
    assert frame["event_id"].is_unique
    assert set(frame["action"]) <= {"browse", "collect", "cart", "purchase"}


# ---- Taobao ---------------------------------------------------------------------------

TAOBAO_ROWS = [
    "1,2268318,2520377,pv,1511544070",
    "1,2333346,2520771,fav,1511561733",
    "2,2576651,149192,cart,1511572885",
    "2,3830808,4181361,buy,1511593493",
    "3,4365585,2520377,zz,1511596146",  # unknown action
    "3,4606018,2735466,pv,notatime",  # bad timestamp
    "4,230380,411153,pv",  # missing field
    "4,230380,411153,pv,1511644942,extra,more",  # too many fields
]


def test_taobao_headerless_original_and_header_gzip_agree(tmp_path: Path) -> None:
    plain = write(tmp_path / "UserBehavior.csv", "\n".join(TAOBAO_ROWS) + "\n")
    header = "user_id,item_id,category_id,behavior_type,timestamp\n"
    zipped = write(tmp_path / "copy.txt", header + "\n".join(TAOBAO_ROWS) + "\n", gz=True)
    a = load_events([plain], "taobao")
    b = load_events([zipped], "taobao")
    check_events(a.events)
    assert a.report.rows_read == 8 and a.report.rows_ok == 4
    assert a.report.bad_rows == {
        "unknown_action": 1,
        "bad_timestamp": 1,
        "missing_field": 1,
        "too_many_fields": 1,
    }
    assert list(a.events["action"]) == ["browse", "collect", "cart", "purchase"]
    assert list(a.events["event_id"]) == ["taobao:0", "taobao:1", "taobao:2", "taobao:3"]
    pd.testing.assert_frame_equal(a.events, b.events)  # same ids with or without header
    assert a.sha256 != b.sha256


def test_taobao_ties_keep_file_order(tmp_path: Path) -> None:
    rows = ["9,1,1,pv,1511544070", "8,2,1,pv,1511544000", "7,3,1,pv,1511544070"]
    log = load_events([write(tmp_path / "u.csv", "\n".join(rows))], "taobao")
    assert list(log.events["user_id"]) == ["8", "9", "7"]


# ---- Tianchi --------------------------------------------------------------------------


def test_tianchi_hour_times_and_item_file_skipped(tmp_path: Path) -> None:
    user = (
        "user_id,item_id,behavior_type,user_geohash,item_category,time\n"
        "98047837,232431562,1,,4245,2014-12-06 02\n"
        "98047837,232431562,4,9rxxk,4245,2014-12-12 23\n"
        "97726136,383583590,3,,5894,2014-12-09 20\n"
        "97726136,383583590,7,,5894,2014-12-09 20\n"  # unknown behaviour
        "97726136,383583590,2,,5894,2014-13-45 20\n"  # impossible date
    )
    folder = tmp_path / "tianchi"
    folder.mkdir()
    write(folder / "train_user.bin", user, gz=True)
    write(folder / "train_item.csv", "item_id,item_geohash,item_category\n1,,2\n")
    log = load_events([folder], "tianchi")
    check_events(log.events)
    assert log.report.rows_ok == 3
    assert log.report.bad_rows == {"unknown_action": 1, "bad_timestamp": 1}
    assert any("train_item.csv" in note for note in log.report.notes)
    buy = log.events[log.events["action"] == "purchase"].iloc[0]
    assert buy["ts"] == int(pd.Timestamp("2014-12-12 23:00", tz="UTC").timestamp())
    assert buy["category_id"] == "4245"


# ---- Tmall brand ----------------------------------------------------------------------


def test_tmall_brand_ascii_and_gbk_dates_agree(tmp_path: Path) -> None:
    ascii_rows = (
        "user_id,brand_id,type,visit_datetime\n10944750,13451,0,6-4\n10944750,13451,1,8-15\n"
    )
    gbk_rows = (
        "user_id,brand_id,type,visit_datetime\n10944750,13451,0,6月4日\n10944750,13451,1,8月15日\n"
    )
    a = load_events([write(tmp_path / "a.csv", ascii_rows)], "tmall_brand")
    b = load_events([write(tmp_path / "b.csv", gbk_rows, encoding="gbk", gz=True)], "tmall_brand")
    pd.testing.assert_frame_equal(a.events, b.events)
    assert a.events["ts"].iloc[0] == int(pd.Timestamp("2013-06-04", tz="UTC").timestamp())
    assert list(a.events["action"]) == ["browse", "purchase"]
    assert (a.events["category_id"] == "").all()


def test_tmall_brand_bad_rows_and_year_override(tmp_path: Path) -> None:
    from training.adapters import tmall_brand

    rows = "1,10,0,4-15\n1,11,5,4-16\n1,12,2,13-45\n2,13,3,2月30日\n"  # header-less
    path = write(tmp_path / "t.csv", rows)
    log = load_events([path], "tmall_brand")
    assert log.report.rows_ok == 1
    assert log.report.bad_rows == {"unknown_action": 1, "bad_timestamp": 2}
    later = tmall_brand.load([path], year=2014)
    assert later.events["ts"].iloc[0] - log.events["ts"].iloc[0] == 365 * 86400


# ---- IJCAI-15 -------------------------------------------------------------------------


def test_ijcai15_original_and_xmu_layouts_agree(tmp_path: Path) -> None:
    original = (
        "user_id,item_id,cat_id,seller_id,brand_id,time_stamp,action_type\n"
        "328862,323294,833,2882,2661,829,0\n"
        "328862,844400,1271,2882,,1111,2\n"
        "328862,575153,1271,2882,2661,1111,3\n"
        "328862,575153,1271,2882,2661,1340,0\n"  # month 13
        "328862,575153,1271,2882,2661,1111,9\n"  # unknown action
    )
    xmu = (
        "user_id,item_id,cat_id,merchant_id,brand_id,month,day,action,age_range,gender,province\n"
        "328862,323294,833,2882,2661,08,29,0,6,1,X\n"
        "328862,844400,1271,2882,,11,11,2,6,1,X\n"
        "328862,575153,1271,2882,2661,11,11,3,6,1,X\n"
    )
    a = load_events([write(tmp_path / "user_log_format1.csv", original)], "tmall_ijcai15")
    b = load_events([write(tmp_path / "user_log.csv", xmu, gz=True)], "tmall_ijcai15")
    check_events(a.events)
    assert a.report.bad_rows == {"bad_timestamp": 1, "unknown_action": 1}
    pd.testing.assert_frame_equal(a.events, b.events)
    assert list(a.events["action"]) == ["browse", "purchase", "collect"]
    assert a.events["ts"].iloc[-1] == int(pd.Timestamp("2014-11-11", tz="UTC").timestamp())
    headerless = write(tmp_path / "h.csv", "\n".join(original.splitlines()[1:4]) + "\n")
    c = load_events([headerless], "tmall_ijcai15")
    pd.testing.assert_frame_equal(a.events, c.events)


# ---- Yoochoose ------------------------------------------------------------------------


def test_yoochoose_original_clicks_buys_and_prepared(tmp_path: Path) -> None:
    clicks = (
        "1,2014-04-07T10:51:09.277Z,214536502,0\n"
        "1,2014-04-07T10:54:09.868Z,214536500,S\n"
        "2,not-a-time,214536506,0\n"
    )
    buys = "1,2014-04-07T10:55:00.000Z,214536500,12462,1\n"
    log = load_events(
        [
            write(tmp_path / "yoochoose-clicks.dat", clicks),
            write(tmp_path / "yoochoose-buys.dat", buys),
        ],
        "yoochoose",
    )
    check_events(log.events)
    assert list(log.events["action"]) == ["browse", "browse", "purchase"]
    assert list(log.events["category_id"]) == ["", "S", ""]
    assert log.report.bad_rows == {"bad_timestamp": 1}
    assert log.events["ts"].iloc[0] == int(pd.Timestamp("2014-04-07T10:51:09Z").timestamp())
    prepared = (
        "SessionId\tItemId\tTime\n3\t214716935\t1396437466.94\n3\t214832672\t1396438212.318\n"
    )
    tsv = load_events([write(tmp_path / "train.txt", prepared)], "yoochoose")
    assert list(tsv.events["user_id"]) == ["3", "3"]
    assert list(tsv.events["ts"]) == [1396437466, 1396438212]
    bare = write(tmp_path / "bare.txt", prepared.split("\n", 1)[1])
    pd.testing.assert_frame_equal(load_events([bare], "yoochoose").events, tsv.events)


# ---- Walmart --------------------------------------------------------------------------

WALMART_TRAIN = """Store,Dept,Date,Weekly_Sales,IsHoliday
1,1,2010-02-05,24924.5,FALSE
1,1,2010-02-12,46039.49,TRUE
1,1,2010-11-26,-50.0,TRUE
1,1,2010-12-31,30000,TRUE
2,3,2010-09-10,100.5,TRUE
2,3,2010-09-17,abc,FALSE
2,3,2010-02-30,5,FALSE
"""
WALMART_FEATURES = (
    (
        "Store,Date,Temperature,Fuel_Price,MarkDown1,MarkDown2,MarkDown3,MarkDown4,MarkDown5,"
        "CPI,Unemployment,IsHoliday\n"
    )
    + """1,2010-02-05,42.31,2.572,NA,NA,NA,NA,NA,211.09,8.106,FALSE
1,2010-02-12,38.51,2.548,10.5,NA,NA,NA,NA,NA,8.106,TRUE
1,2010-11-26,60,2.7,NA,NA,NA,NA,NA,212,8.0,TRUE
1,2010-12-31,40,2.8,NA,NA,NA,NA,NA,213,8.0,TRUE
2,2010-09-10,70,2.6,NA,NA,NA,NA,NA,200,7.0,TRUE
"""
)


def _walmart_files(folder: Path) -> list[Path]:
    folder.mkdir()
    with zipfile.ZipFile(folder / "features.csv.zip", "w") as archive:  # as Kaggle ships it
        archive.writestr("features.csv", WALMART_FEATURES)
    return [
        write(folder / "train.csv.gz", WALMART_TRAIN, gz=True),
        folder / "features.csv.zip",
        # The Kaggle original has old-Mac CR line ends.
        write(folder / "stores.csv", "Store,Type,Size\r1,A,151315\r2,B,202307\r"),
        write(folder / "test.csv", "Store,Dept,Date,IsHoliday\n1,1,2012-11-02,FALSE\n"),
    ]


def test_walmart_folder_or_files(tmp_path: Path) -> None:
    files = _walmart_files(tmp_path / "walmart")
    data = load_sales([tmp_path / "walmart"], "walmart")
    same = load_sales(files[:3], "walmart")
    pd.testing.assert_frame_equal(data.sales, same.sales)
    assert list(data.sales.columns[:5]) == list(SALES_COLUMNS)
    assert data.frequency == "W"
    assert data.report.rows_read == 7 and data.report.rows_ok == 5
    assert data.report.bad_rows == {"bad_sales": 1, "bad_date": 1}
    assert data.report.notes["negative weekly sales (returns, kept)"] == 1
    types = dict(
        zip(data.sales["date"].dt.strftime("%Y-%m-%d"), data.sales["day_type"], strict=True)
    )
    assert types == {
        "2010-02-05": "ordinary",
        "2010-02-12": "super_bowl",
        "2010-11-26": "thanksgiving",
        "2010-12-31": "christmas",
        "2010-09-10": "labor_day",
    }
    row = data.sales[data.sales["date"] == "2010-02-12"].iloc[0]
    assert row["markdown1"] == 10.5 and row["markdown_present"] == 1.0 and row["cpi"] == 211.09
    assert data.sales[data.sales["date"] == "2010-02-05"]["markdown_present"].iloc[0] == 0.0
    assert (data.sales["sales"] < 0).sum() == 1  # returns are kept
    static = data.static.set_index("region")
    assert static.loc["2", "type_B"] == 1.0 and static.loc["1", "size"] == 151315.0
    assert set(data.static_columns) <= set(data.static.columns)
    assert set(data.external_columns) <= set(data.sales.columns)


def test_walmart_missing_file_is_clear(tmp_path: Path) -> None:
    files = _walmart_files(tmp_path / "w")
    with pytest.raises(InvalidInput, match="stores"):
        load_sales(files[:2], "walmart")


# ---- M5 -------------------------------------------------------------------------------

M5_CALENDAR = (
    (
        "date,wm_yr_wk,weekday,wday,month,year,d,event_name_1,event_type_1,event_name_2,"
        "event_type_2,snap_CA,snap_TX,snap_WI\n"
    )
    + """2011-02-05,11102,Saturday,1,2,2011,d_1,,,,,1,1,0
2011-02-06,11102,Sunday,2,2,2011,d_2,SuperBowl,Sporting,,,1,0,0
2011-02-07,11102,Monday,3,2,2011,d_3,LentStart,Religious,,,0,0,0
"""
)


def test_m5_aggregate_with_calendar(tmp_path: Path) -> None:
    agg = (
        "date,sales,SuperBowl,LentStart\n"
        "2011-02-05,100,0,0\n2011-02-06,200,1,0\nbad,5,0,0\n2011-02-07,x,0,1\n"
    )
    data = load_sales(
        [write(tmp_path / "calendar.csv", M5_CALENDAR), write(tmp_path / "agg.csv", agg, gz=True)],
        "m5",
    )
    assert data.frequency == "D"
    assert list(data.sales["day_type"]) == ["ordinary", "superbowl"]
    assert list(data.sales["region"]) == ["total", "total"]
    assert data.report.bad_rows == {"bad_date": 1, "bad_sales": 1}
    assert data.sales["snap"].iloc[0] == pytest.approx(2 / 3)
    alone = load_sales([tmp_path / "agg.csv"], "m5")  # day types from the event dummies
    assert list(alone.sales["day_type"]) == ["ordinary", "superbowl"]


def test_m5_wide_sales_aggregated_to_store_category(tmp_path: Path) -> None:
    wide = (
        "id,item_id,dept_id,cat_id,store_id,state_id,d_1,d_2,d_3\n"
        "A_CA_1,A,FOODS_1,FOODS,CA_1,CA,1,2,3\n"
        "B_CA_1,B,FOODS_2,FOODS,CA_1,CA,10,20,30\n"
        "C_CA_1,C,HOBBIES_1,HOBBIES,CA_1,CA,0,1,0\n"
        "D_TX_1,D,FOODS_1,FOODS,TX_1,TX,5,5,5\n"
        "E_TX_1,E,FOODS_1,FOODS,TX_1,TX,5,oops,5\n"
    )
    folder = tmp_path / "m5"
    folder.mkdir()
    write(folder / "calendar.csv", M5_CALENDAR)
    write(folder / "sales_train_evaluation.csv", wide, gz=True)
    write(folder / "sell_prices.csv", "store_id,item_id,wm_yr_wk,sell_price\nCA_1,A,11102,1.0\n")
    data = load_sales([folder], "m5")
    assert data.report.bad_rows == {"bad_sales": 1}
    assert data.report.rows_ok == 4
    series = data.sales.groupby(["region", "category"])["sales"].apply(list).to_dict()
    assert series == {
        ("CA_1", "FOODS"): [11.0, 22.0, 33.0],
        ("CA_1", "HOBBIES"): [0.0, 1.0, 0.0],
        ("TX_1", "FOODS"): [5.0, 5.0, 5.0],
    }
    assert list(data.sales["day_type"].iloc[:3]) == ["ordinary", "superbowl", "other_event"]
    tx = data.sales[data.sales["region"] == "TX_1"]["snap"].tolist()
    assert tx == [1.0, 0.0, 0.0]
    static = data.static.set_index("region")
    assert static.loc["TX_1", "state_TX"] == 1.0 and static.loc["CA_1", "state_TX"] == 0.0
    with pytest.raises(InvalidInput, match="calendar"):
        load_sales([folder / "sales_train_evaluation.csv"], "m5")


# ---- registry -------------------------------------------------------------------------


def test_registry_errors(tmp_path: Path) -> None:
    assert {
        "taobao",
        "tianchi",
        "tmall_brand",
        "tmall_ijcai15",
        "yoochoose",
        "walmart",
        "m5",
    } <= set(FORMATS)
    with pytest.raises(InvalidInput) as err:
        load_events([tmp_path], "no_such_format")
    assert err.value.field == "format"
    with pytest.raises(InvalidInput, match="sales"):
        load_events([tmp_path], "walmart")
    with pytest.raises(InvalidInput) as err:
        load_events([tmp_path / "missing.csv"], "taobao")
    assert err.value.field == "data"
    junk = write(tmp_path / "junk.csv", "a,b,c,d,e\n")
    with pytest.raises(InvalidInput, match="no valid"):
        load_events([junk], "taobao")
    whole = gzip.compress((("\n".join(TAOBAO_ROWS[:4]) + "\n") * 2000).encode())
    cut = tmp_path / "cut.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(InvalidInput, match=r"cut\.gz"):
        load_events([cut], "taobao")
    assert len(load_events([], "synthetic").events) > 0


def test_data_cli_import_and_synth(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from training.cli import main

    src = write(tmp_path / "UserBehavior.csv", "\n".join(TAOBAO_ROWS) + "\n")
    assert (
        main(
            [
                "data",
                "import",
                "--format",
                "taobao",
                "--data",
                str(src),
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "4/8 rows ok" in out and "unknown_action: 1" in out
    written = pd.read_csv(tmp_path / "o" / "events.csv")
    assert len(written) == 4
    assert main(["data", "synth", "--kind", "sales", "--out", str(tmp_path / "s")]) == 0
    assert (tmp_path / "s" / "sales.csv").exists() and (tmp_path / "s" / "static.csv").exists()
    assert (
        main(["data", "import", "--format", "nope", "--data", str(src), "--out", str(tmp_path)])
        == 2
    )
    assert main(["data", "formats"]) == 0


# ---- the real samples (skipped unless $SALECAST_DATA holds them) ---------------------

REAL_EVENTS = [
    # (format, path under $SALECAST_DATA, rows, users) per the folder READMEs
    ("taobao", "taobao_userbehavior/userbehavior_window.csv.gz", 88_149, 53_163),
    ("taobao", "taobao_userbehavior/userbehavior_head.csv.gz", 3_062, 32),
    ("tianchi", "tianchi_mobile", 1_288, 26),
    ("tmall_brand", "tmall_brand_2013", 138_847, 707),
    ("tmall_ijcai15", "tmall_ijcai15_userlog", 7_774, 49),
    # data_format2: rows are activity records (events), 7,989 user x merchant lines
    ("tmall_ijcai15_format2", "tmall_ijcai15_format2", 87_511, 7_663),
    ("yoochoose", "yoochoose_clicks", 70_278, 17_794),
]


@pytest.mark.parametrize(("fmt", "rel", "rows", "users"), REAL_EVENTS)
def test_real_event_samples(fmt: str, rel: str, rows: int, users: int) -> None:
    log = load_events([real_sample(rel)], fmt)
    assert log.report.rows_read == rows
    assert log.report.rows_ok == rows and not log.report.bad_rows
    assert log.events["user_id"].nunique() == users
    check_events(log.events)


def test_real_walmart_and_m5_samples() -> None:
    walmart = load_sales([real_sample("walmart_store_sales")], "walmart")
    assert walmart.report.rows_ok == 326_845 and not walmart.report.bad_rows
    assert walmart.sales["region"].nunique() == 34 and walmart.sales["category"].nunique() == 81
    assert set(walmart.day_types) == {
        "ordinary",
        "super_bowl",
        "labor_day",
        "thanksgiving",
        "christmas",
    }
    m5 = load_sales([real_sample("m5")], "m5")
    assert m5.report.rows_ok == 1_547 and len(m5.sales) == 1_547
    assert {"thanksgiving", "christmas", "newyear", "superbowl", "easter"} <= set(m5.day_types)


def test_real_online_retail_sample() -> None:
    path = real_sample("uci_online_retail_ii")
    lines = 502_938 + 320_705  # the two sheets' files, per the folder README
    log = load_events([path], "online_retail")
    assert log.report.rows_read == lines
    assert log.report.rows_ok + sum(log.report.bad_rows.values()) == lines
    assert set(log.events["action"]) == {"purchase"}
    check_events(log.events)
    sales = load_sales([path], "online_retail")
    assert sales.report.rows_ok + sum(sales.report.bad_rows.values()) == lines
    assert sales.frequency == "W" and sales.sales["category"].nunique() == 11
    assert set(sales.day_types) == {"ordinary", "black_friday", "cyber_monday", "christmas"}
    festival_weeks = sales.sales.loc[sales.sales["day_type"] != "ordinary", "date"].unique()
    assert {str(d.date()) for d in festival_weeks} == {
        "2009-12-21",
        "2010-11-22",
        "2010-11-29",
        "2010-12-20",
    }
