"""`python -m bench.accuracy --model M` knows the command of every committed result, and each
of its commands is one today's CLI accepts."""

from __future__ import annotations

import json
import shlex

import pytest

from bench.accuracy import RUNS, command
from bench.summary import RESULTS_DIR
from training.cli import build_parser


@pytest.mark.parametrize("model", sorted(RUNS))
def test_every_listed_command_parses(model: str) -> None:
    parser = build_parser()
    for dataset in RUNS[model]:
        args = parser.parse_args(command(model, dataset, "$SALECAST_DATA")[1:])
        assert args.model == model and args.seeds >= 3, dataset


def test_every_committed_result_has_its_command() -> None:
    for path in sorted(RESULTS_DIR.glob("accuracy-*.json")):
        record = json.loads(path.read_text())
        if record.get("model") not in RUNS:  # parity checks (imn-online) have their script
            continue
        assert record["dataset"] in RUNS[record["model"]], path.name
        if "comparison" in record:  # written by today's code: exactly the listed line
            want = command(record["model"], record["dataset"], "$SALECAST_DATA")
            assert shlex.split(record["command"]) == want, path.name
