"""The committed results summary is regenerated from the JSONs, never edited by hand."""

from __future__ import annotations

from bench.summary import RESULTS_DIR, SUMMARY, render


def test_summary_matches_the_committed_results() -> None:
    # A benchmark re-run rewrites its JSON; the README's linked summary must follow, or the
    # docs quote a figure nobody measured. Fix: `python -m bench.summary`.
    assert SUMMARY.read_text(encoding="utf-8") == render(RESULTS_DIR)


def test_every_accuracy_row_names_ours_and_a_baseline() -> None:
    accuracy = render(RESULTS_DIR).split("## Speed")[0]
    rows = [line for line in accuracy.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) > 1
    for row in rows[1:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[3] and cells[4] != "-", row
