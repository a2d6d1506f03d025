"""Intent's `--split users` on a tiny IJCAI-15 data_format2 file the test writes.

The format's lines are Double 11's new buyers, so every purchase is on 11-11: split by cut,
training holds no purchaser and `evaluate` cannot fit its baselines. Split by user, every
part holds purchasers and no user is in two parts.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.format2_files import format2_file
from training.cli import build_parser, main
from training.data import load_events
from training.features.intent import build_samples, choose_cuts
from training.jobs import intent as job

# short windows so that a few weeks of history give many cuts
SPEC_ARGS = ["--short-len", "3", "--long-len", "2", "--long-group", "3"]


def _args(data: Path, *extra: str) -> list[str]:
    return [
        "evaluate", "intent", "--data", str(data), "--format", "tmall_ijcai15_format2",
        *SPEC_ARGS, *extra,
    ]  # fmt: skip


def test_user_split_keeps_users_apart_and_purchasers_in_every_part(tmp_path: Path) -> None:
    data = format2_file(tmp_path / "train_format2.csv")
    events = load_events([data], "tmall_ijcai15_format2").events
    purchase = job.TASKS.index("purchase")

    by_time = job.prepare(events, build_parser().parse_args(_args(data)))
    assert by_time[0].labels[:, purchase].sum() == 0  # why the format needs a user split

    args = build_parser().parse_args(_args(data, "--split", "users"))
    parts = job.prepare(events, args)
    users = [set(p.user_id.tolist()) for p in parts]
    assert not (users[0] & users[1]) and not (users[0] & users[2]) and not (users[1] & users[2])
    cuts = choose_cuts(events["ts"].to_numpy(), job._spec(args), args.label_seconds)
    every_row = build_samples(events, cuts, job._spec(args), args.label_seconds)
    assert sum(len(p) for p in parts) == len(every_row)  # no row dropped, none twice
    for p in parts:
        assert p.labels[:, purchase].sum() > 0
        assert len(np.unique(p.cut_ts)) > 1  # every cut, not only the Double 11 one
    assert [len(u) for u in users] == [18, 6, 16]  # 45 / 15 / 40 % of 40 users with history
    again = job.prepare(events, args)
    assert [set(p.user_id.tolist()) for p in again] == users  # seeded by --seed


def test_the_last_day_of_a_day_resolution_log_is_labelled() -> None:
    day = 86_400
    spec = job._spec(build_parser().parse_args(_args(Path("x.csv"))))
    days = np.arange(20, dtype=np.int64) * day  # midnight stamps: each is its whole day
    assert choose_cuts(days, spec, day)[-1] == 19 * day  # labels = the final day
    seconds = days + 3_600  # an instant an hour into the final day: that day is not covered
    assert choose_cuts(seconds, spec, day)[-1] == 18 * day


def test_unknown_split_is_refused_naming_the_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(_args(Path("x.csv"), "--split", "items"))
    assert "--split" in capsys.readouterr().err


@pytest.mark.slow
def test_evaluate_runs_on_format2_with_a_user_split(tmp_path: Path) -> None:
    data = format2_file(tmp_path / "train_format2.csv")
    out = tmp_path / "results"
    extra = ["--split", "users", "--seeds", "1", "--epochs", "1", "--bootstrap", "20"]
    code = main(_args(data, *extra, "--results-dir", str(out)))
    assert code in (0, None)
    files = sorted(out.glob("accuracy-intent-*.json"))
    assert len(files) == 1
    record = json.loads(files[0].read_text())
    assert record["split"].startswith("split by user")
    assert {"lr", "lightgbm", "tpg-dnn"} <= set(record["methods"])
    assert "comparison" in record
