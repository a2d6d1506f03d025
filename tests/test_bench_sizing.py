"""The README's sizing paragraph is the one `python -m bench.sizing` writes from the results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import sizing


def test_readme_sizing_matches_the_committed_results() -> None:
    readme = sizing.README.read_text()
    assert sizing.render(readme) == readme, "run `python -m bench.sizing`"


def test_the_paragraph_follows_the_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Negative control: a different measured throughput gives a different paragraph."""
    for path in sizing.RESULTS_DIR.glob("speed-*.json"):
        (tmp_path / path.name).write_text(path.read_text())
    monkeypatch.setattr(sizing, "RESULTS_DIR", tmp_path)
    before = sizing.paragraph()
    record = json.loads((tmp_path / "speed-http-recommend.json").read_text())
    record["runs"][0]["throughput_per_s"] = 123_456.0
    (tmp_path / "speed-http-recommend.json").write_text(json.dumps(record))
    after = sizing.paragraph()
    assert after != before and "123,456 recommendation requests/s" in after
