"""The load sentence of every speed result: other jobs are blamed only for load beyond what
the benchmark itself runs."""

from __future__ import annotations

from bench.common import load_note

BUSY = "busy with other jobs"


def test_load_beyond_the_threshold_is_flagged_as_other_jobs() -> None:
    assert BUSY not in load_note(2.4)
    assert BUSY in load_note(2.9)


def test_the_benchmarks_own_load_moves_the_threshold_and_is_said() -> None:
    alone = load_note(3.6, own_load=1.5)
    assert BUSY not in alone and "own processes add up to 1.5" in alone
    assert BUSY in load_note(4.3, own_load=1.5)
