"""User splits (`training.splits.user_parts`) and CVR's `--split users` on format2 files.

A format2 file's buys all fall on Double 11, so the CVR day split must refuse it (no buy
among the training clicks) and say which option fits; split by user, every part holds
buyers, no user is in two parts, and a test user is new to the vocabulary.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from service.errors import InvalidInput
from tests.format2_files import format2_file
from training.cli import build_parser, main
from training.jobs import cvr as job
from training.splits import user_parts


def test_user_parts_put_each_user_in_one_part_by_the_seed() -> None:
    users = np.repeat(np.arange(20), 3)  # three rows a user
    parts = user_parts(users, seed=1)
    assert (np.sum(parts, axis=0) == 1).all()  # every row in exactly one part
    owned = [set(users[m].tolist()) for m in parts]
    assert [len(o) for o in owned] == [9, 3, 8]  # 45 / 15 / 40 % of 20 users
    assert not (owned[0] & owned[1] or owned[0] & owned[2] or owned[1] & owned[2])
    same = user_parts(users, seed=1)
    assert all((a == b).all() for a, b in zip(parts, same, strict=True))
    other = user_parts(users, seed=2)
    assert any((a != b).any() for a, b in zip(parts, other, strict=True))


@pytest.mark.parametrize(
    ("users", "fractions", "reason"),
    [
        (np.array([1, 2]), (0.45, 0.15, 0.40), "at least 3 users"),
        (np.arange(10), (0.5, 0.5, 0.0), "3 positive shares"),
        (np.arange(10), (0.5, 0.3, 0.3), "summing to 1"),
    ],
)
def test_user_parts_refuse_what_cannot_be_split(
    users: np.ndarray, fractions: tuple[float, float, float], reason: str
) -> None:
    with pytest.raises(ValueError, match=reason):
        user_parts(users, seed=0, fractions=fractions)


def _args(data: Path, *extra: str) -> list[str]:
    return ["evaluate", "cvr", "--data", str(data), "--format", "tmall_ijcai15_format2", *extra]


def test_cvr_day_split_refuses_a_one_day_buy_log_and_names_the_user_split(
    tmp_path: Path,
) -> None:
    data = format2_file(tmp_path / "train_format2.csv")
    with pytest.raises(InvalidInput, match="--split users"):
        job.prepare(build_parser().parse_args(_args(data)))


def test_cvr_user_split_keeps_users_apart_with_buyers_in_every_part(tmp_path: Path) -> None:
    data = format2_file(tmp_path / "train_format2.csv")
    prep = job.prepare(build_parser().parse_args(_args(data, "--split", "users")))
    parts = (prep.train, prep.val, prep.test)
    owned = [set(p.user_id.astype(str).tolist()) for p in parts]
    assert not (owned[0] & owned[1] or owned[0] & owned[2] or owned[1] & owned[2])
    assert all(p.label.sum() > 0 for p in parts)  # buyers everywhere: Double 11 in each
    assert set(prep.recent.user_id.astype(str).tolist()) <= owned[0]
    assert prep.recent.day.max() == prep.train.day.max()  # D_recent ends on Double 11
    assert prep.recent.day.min() > prep.train.day.min()
    assert not owned[2] & set(prep.vocab.users)  # a test user is a new user
    assert prep.split_text().startswith("by user, 45/15/40 %")


@pytest.mark.slow
def test_cvr_evaluate_runs_on_format2_with_a_user_split(tmp_path: Path) -> None:
    data = format2_file(tmp_path / "train_format2.csv", n_users=60)
    out = tmp_path / "results"
    extra = ["--split", "users", "--seeds", "1", "--epochs", "3", "--stage2-epochs", "1"]
    code = main(_args(data, *extra, "--bootstrap", "20", "--results-dir", str(out)))
    assert code in (0, None)
    record = json.loads(next(out.glob("accuracy-cvr-*.json")).read_text())
    assert record["split"].startswith("by user")
    assert "MetaCVR (SPDM)" in record["methods"] and "comparison" in record
    # The stage-1 ablation: BASE without early stopping runs the whole budget and keeps its
    # last epoch (best_epoch 0); the default BASE keeps its best validation epoch.
    stage1 = record["runs"]["BASE, stage 1 without early stopping"]["fits"][0]["stage1"]
    assert stage1["epochs_run"] == 3 and stage1["best_epoch"] == 0
    assert record["runs"]["BASE"]["fits"][0]["stage1"]["best_epoch"] >= 1
    paired = {row["ablation"]: row for row in record["ablations"]["table"]}
    row = paired["ours vs stage 1 without early stopping"]
    assert row["reference"] == "MetaCVR (SPDM), stage 1 without early stopping"
    assert "BASE vs BASE, stage 1 without early stopping" in paired
