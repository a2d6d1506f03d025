"""`salecast --help` as a newcomer reads it: a version, examples on every command, every
option's default and the accepted input formats, and a wrong format refused by argparse."""

from __future__ import annotations

import argparse

import pytest

from service import __version__
from training.cli import build_parser, main
from training.data import FORMATS
from training.jobs import JOBS


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"salecast {__version__}"


def test_every_command_has_examples_and_every_default_shows() -> None:
    parser = build_parser()
    commands = _subparsers(parser)
    assert {"serve", "train", "evaluate", "demo", "score-bulk", "data", "keys"} <= set(commands)
    for name, command in commands.items():
        assert "examples:" in command.format_help(), name
    for verb in ("train", "evaluate"):
        models = _subparsers(commands[verb])
        assert set(models) == set(JOBS)
        for model, sub in models.items():
            text = " ".join(sub.format_help().split())  # argparse wraps lines
            for action in sub._actions:
                shown = action.option_strings and action.nargs != 0 and not action.required
                if shown and action.default not in (None, []):
                    assert f"(default: {action.default})" in text, (verb, model, action.dest)
            assert ", ".join(FORMATS) in text  # --format's choices


def test_unknown_format_is_refused_before_any_work(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["train", "imn", "--format", "no-such-format"])
    assert stop.value.code == 2
    assert "invalid choice: 'no-such-format'" in capsys.readouterr().err
