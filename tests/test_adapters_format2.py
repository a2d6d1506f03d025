"""IJCAI-15 data_format2 (`tmall_ijcai15_format2`): tiny files the tests write.

One line per user x merchant with the packed `activity_log`; the lines below carry every
kind of trouble the original files have (label -1, test lines without a label, empty
logs, empty brand ids, malformed records, unknown actions, impossible dates).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from service.errors import InvalidInput
from service.occasions import OCCASIONS, default_calendar
from training.cli import main
from training.data import load_events
from training.schemas import EVENT_COLUMNS

HEADER = "user_id,age_range,gender,merchant_id,label,activity_log"
LINES = [
    "1,2,0,100,0,10:5:7:1111:2#11:5:7:1110:0#10:5:7:1111:0",
    "1,2,0,200,-1,20:6::0618:3#21:6:9:0618:1",  # not a new buyer; empty brand id
    "2,,,100,,30:5:7:1111:0#bad:record#31:5:7:1301:0#32:5:7:1101:9#",  # a test pair
    "3,1,1,300,1,",  # empty activity_log
    ",1,1,300,1,40:5:7:1111:2",  # no user id
    "4,1,1,300,1,41:5:7:1111:2,extra",  # too many fields
]


def write(path: Path, lines: list[str], gz: bool = False) -> Path:
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def day(mmdd: str) -> int:
    return int(pd.Timestamp(f"2014-{mmdd}", tz="UTC").timestamp())


def test_format2_records_become_events_with_every_problem_counted(tmp_path: Path) -> None:
    log = load_events(
        [write(tmp_path / "train_format2.csv", [HEADER, *LINES])], "tmall_ijcai15_format2"
    )
    events = log.events
    assert list(events.columns) == list(EVENT_COLUMNS)
    got = list(events[["user_id", "item_id", "category_id", "action"]].itertuples(index=False))
    assert [tuple(row) for row in got] == [
        ("1", "20", "6", "collect"),
        ("1", "21", "6", "cart"),
        ("1", "11", "5", "browse"),
        ("1", "10", "5", "purchase"),
        ("1", "10", "5", "browse"),
        ("2", "30", "5", "browse"),
    ]
    assert list(events["ts"]) == [day("06-18")] * 2 + [day("11-10")] + [day("11-11")] * 3
    assert list(events["event_id"].str.split(":").str[1].astype(int)) == [3, 4, 1, 0, 2, 5]
    report = log.report
    assert report.rows_read == 12 and report.rows_ok == 6
    assert report.bad_rows == {
        "bad_activity_record": 2,  # "bad:record" and the empty record after the last '#'
        "bad_timestamp": 1,  # 13-01
        "unknown_action": 1,  # 9
        "line_missing_field": 1,
        "line_too_many_fields": 1,
    }
    assert report.notes["user x merchant lines read"] == 6
    assert report.notes["lines labelled -1 (not a new buyer; events kept)"] == 1
    assert report.notes["lines without a label (test pairs; events kept)"] == 1
    assert report.notes["lines with an empty activity_log (no events)"] == 1


def test_format2_column_orders_header_less_and_gzip_agree(tmp_path: Path) -> None:
    original = write(tmp_path / "a.csv", [HEADER, *LINES[:4]])
    # The RAMP copy's order: the log before the label; header-less and gzipped.
    ramp = []
    for line in LINES[:4]:
        user, age, gender, merchant, label, activity = line.split(",")
        ramp.append(",".join([user, age, gender, merchant, activity, label]))
    reordered = write(tmp_path / "b.csv.gz", ramp, gz=True)
    headerless = write(tmp_path / "c.csv", LINES[:4])
    a = load_events([original], "tmall_ijcai15_format2").events
    for other in (reordered, headerless):
        pd.testing.assert_frame_equal(a, load_events([other], "tmall_ijcai15_format2").events)


def test_format2_train_and_test_files_together_number_events_across_files(tmp_path: Path) -> None:
    train = write(tmp_path / "train_format2.csv", [HEADER, LINES[0]])
    test = write(tmp_path / "test_format2.csv", [HEADER, "9,,,100,,50:5:7:1111:0"])
    log = load_events([tmp_path], "tmall_ijcai15_format2")
    assert len(log.events) == 4 and log.events["event_id"].is_unique
    assert set(log.events["user_id"]) == {"1", "9"}
    assert log.sha256 != load_events([train], "tmall_ijcai15_format2").sha256
    assert test.exists()


def test_format2_sees_double11_as_the_promotion_day(tmp_path: Path) -> None:
    log = load_events([write(tmp_path / "f.csv", [HEADER, *LINES[:3]])], "tmall_ijcai15_format2")
    calendar = default_calendar(log.events["ts"].to_numpy())
    occasions = np.array(OCCASIONS)[calendar.occasion_ids(log.events["ts"].to_numpy())]
    days = pd.to_datetime(log.events["ts"], unit="s").dt.strftime("%m-%d")
    by_day = dict(zip(days, occasions, strict=True))
    assert by_day == {"06-18": "DP", "11-10": "BP", "11-11": "DP"}  # 6-18 is a festival too


def test_format2_wrong_files_are_refused_naming_the_problem(tmp_path: Path) -> None:
    format1 = write(
        tmp_path / "user_log_format1.csv",
        ["user_id,item_id,cat_id,seller_id,brand_id,time_stamp,action_type", "1,2,3,4,5,1111,0"],
    )
    with pytest.raises(InvalidInput) as err:
        load_events([format1], "tmall_ijcai15_format2")
    assert err.value.field == "activity_log"
    short = write(tmp_path / "short.csv", ["1,2,3"])
    with pytest.raises(InvalidInput, match="3 fields is not data_format2"):
        load_events([short], "tmall_ijcai15_format2")
    only_bad = write(tmp_path / "bad.csv", [HEADER, "1,2,0,100,0,x:y"])
    with pytest.raises(InvalidInput, match="bad_activity_record: 1"):
        load_events([only_bad], "tmall_ijcai15_format2")


def test_format2_cli_import_prints_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = write(tmp_path / "train_format2.csv", [HEADER, *LINES])
    out = tmp_path / "events.csv"
    code = main(
        [
            "data",
            "import",
            "--format",
            "tmall_ijcai15_format2",
            "--data",
            str(src),
            "--out",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "6/12 rows ok" in printed and "line_missing_field: 1" in printed
    assert len(pd.read_csv(out)) == 6
    assert main(["data", "formats"]) == 0
    assert "tmall_ijcai15_format2" in capsys.readouterr().out
