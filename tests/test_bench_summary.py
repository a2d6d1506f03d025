"""The committed results summary is regenerated from the JSONs, never edited by hand; it
shows each result's interval and verdict, and never ranks a result that has none."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from bench.summary import PRE_SEED, RESULTS_DIR, SUMMARY, render
from training.reporting import portable_argv, portable_path, write_accuracy


def test_summary_matches_the_committed_results() -> None:
    # A benchmark re-run rewrites its JSON; the README's linked summary must follow, or the
    # docs quote a figure nobody measured. Fix: `python -m bench.summary`.
    assert SUMMARY.read_text(encoding="utf-8") == render(RESULTS_DIR)


def test_every_accuracy_row_names_ours_and_a_baseline() -> None:
    accuracy = render(RESULTS_DIR).split("### Verdicts per model")[0].split("## Accuracy")[1]
    rows = [line for line in accuracy.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) > 1
    for row in rows[1:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[3] and cells[4] != "-", row


def _record(tmp: Path, name: str, **extra: Any) -> None:
    write_accuracy(
        tmp,
        model=name,
        dataset="tiny",
        data_sha256="0" * 64,
        split="by time",
        primary_metric="auc",
        higher_is_better=True,
        methods={"ours": {"auc": 0.7}, "ours-variant": {"auc": 0.9}, "lr": {"auc": 0.65}},
        ours="ours",
        notes="",
        command="salecast evaluate x",
        **extra,
    )


def test_intervals_verdicts_and_pre_seed_results(tmp_path: Path) -> None:
    comparison = {
        "best_baseline": "lr",
        "difference": 0.05,
        "interval": [0.01, 0.09],
        "verdict": "ahead",
        "test": {"rows": 900, "units": 300, "unit_name": "users", "positives": 150,
                 "rule": "at least 100 positives"},
        "level": 0.95,
        "resamples": 1000,
        "ours": "ours",
        "metric": "auc",
    }  # fmt: skip
    runs = {m: {"role": r, "seeds": [0, 1, 2], "fits": []} for m, r in
            (("ours", "ours"), ("ours-variant", "variant"), ("lr", "baseline"))}  # fmt: skip
    sds = {"ours": {"auc": 0.01}, "lr": {"auc": 0.02}, "ours-variant": {"auc": 0.0}}
    _record(tmp_path, "new", comparison=comparison, runs=runs, methods_sd=sds)
    _record(tmp_path, "old")  # written before seeds and intervals
    text = render(tmp_path)
    new = next(line for line in text.splitlines() if line.startswith("| new |"))
    assert "ours 0.7000 ± 0.0100" in new and "lr 0.6500 ± 0.0200" in new
    assert "+0.05 [+0.01, +0.09]" in new and "**ahead** (150 positives)" in new
    old = next(line for line in text.splitlines() if line.startswith("| old |"))
    assert PRE_SEED in old and "ahead" not in old and "ours-variant" not in old
    tally = text.split("### Verdicts per model")[1].split("## Speed")[0]
    assert "| new | 1 | 0 | 0 | 0 | 0 |" in tally and "| old | 0 | 0 | 0 | 0 | 1 |" in tally
    md = (tmp_path / "accuracy-new-tiny.md").read_text()
    assert "verdict: **ahead**" in md and "0.7000 ± 0.0100" in md


def test_recorded_commands_name_no_machine_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "shared" / "data" / "walmart_store_sales"
    data.mkdir(parents=True)
    (data / "train.csv.gz").write_bytes(b"")
    repo = tmp_path / "repo"
    (repo / "bench" / "results").mkdir(parents=True)
    monkeypatch.chdir(repo)
    monkeypatch.delenv("SALECAST_DATA", raising=False)
    want = "$SALECAST_DATA/walmart_store_sales/train.csv.gz"
    assert portable_path(str(data / "train.csv.gz"), data=True) == want
    assert portable_path("../datasets/walmart_store_sales/train.csv.gz", data=True) == want
    assert portable_path(str(data), data=True) == "$SALECAST_DATA/walmart_store_sales"
    assert portable_path(str(repo / "bench" / "results"), data=False) == "bench/results"
    assert portable_path("bench/results", data=False) == "bench/results"
    monkeypatch.setenv("SALECAST_DATA", str(tmp_path / "shared"))
    argv = ["--data", str(data / "train.csv.gz"), "--format", "walmart", "--artifacts", "/srv/a"]
    assert portable_argv(argv) == [
        "--data", "$SALECAST_DATA/data/walmart_store_sales/train.csv.gz", "--format", "walmart",
        "--artifacts", "$OUT/a",
    ]  # fmt: skip
    for path in RESULTS_DIR.glob("accuracy-*.json"):
        record = json.loads(path.read_text())
        if "comparison" in record:  # written by today's code
            command = record["command"]
            assert not re.search(r"(^|[\s'=])/", command) and "../" not in command, path


def test_model_pages_show_the_committed_results() -> None:
    # Every docs page's results block is the summary's rows for that model, regenerated
    # by `python -m bench.summary`; a hand-copied table would drift from the JSONs.
    from bench.summary import DOCS_DIR, render_docs

    pages = render_docs()
    with_blocks = [p.name for p, text in pages.items() if "<!-- results:" in text]
    assert {"cvr.md", "dinop.md", "imn.md", "intent.md", "stmp.md"} <= set(with_blocks)
    for page, text in pages.items():
        assert (DOCS_DIR / page.name).read_text(encoding="utf-8") == text, page.name


def test_a_results_block_is_rewritten_from_the_jsons_and_must_be_closed(tmp_path: Path) -> None:
    from bench.summary import render_docs

    results, docs = tmp_path / "results", tmp_path / "docs"
    results.mkdir()
    docs.mkdir()
    (docs / "x.md").write_text("a\n<!-- results:x -->\nold row\n<!-- /results:x -->\nb\n")
    page = render_docs(docs, results)[docs / "x.md"]
    assert "old row" not in page and page.startswith("a\n<!-- results:x -->\n| data |")
    assert page.endswith("<!-- /results:x -->\nb\n")
    (docs / "x.md").write_text("<!-- results:x -->\nno end\n")
    with pytest.raises(ValueError, match="no closing"):
        render_docs(docs, results)


def test_a_result_records_the_commit_it_ran_from(tmp_path: Path) -> None:
    """`code`: HEAD of the checkout, "+dirty" when tracked files differ from it; None
    where there is no git checkout at all."""
    import subprocess

    from training.reporting import code_version

    repo = tmp_path / "repo"
    repo.mkdir()
    assert code_version(repo) is None  # not a checkout
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "f.py").write_text("x = 1\n")
    subprocess.run([*git, "add", "f.py"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "one"], check=True)
    head = subprocess.run(
        [*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert code_version(repo) == head
    (repo / "new.txt").write_text("untracked files do not count\n")
    (repo / "notes.md").write_text("nor markdown\n")
    subprocess.run([*git, "add", "notes.md"], check=True)
    assert code_version(repo) == head
    (repo / "f.py").write_text("x = 2\n")
    assert code_version(repo) == f"{head}+dirty"


def test_a_result_records_the_commit_its_run_began_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit landing during an hour-long run must not be recorded as the run's code:
    `salecast evaluate` notes the commit at the start and the result keeps that one."""
    from training.reporting import CODE_AT_START_ENV, code_version

    def written() -> str | None:
        path = write_accuracy(
            tmp_path, model="m", dataset="d", data_sha256="0", split="s",
            primary_metric="auc", higher_is_better=True, methods={"m": {"auc": 0.5}},
            ours="m", notes="",
        )  # fmt: skip
        return json.loads(path.read_text())["code"]

    monkeypatch.setenv(CODE_AT_START_ENV, "abc123")
    assert written() == "abc123"
    monkeypatch.delenv(CODE_AT_START_ENV)
    assert written() == code_version()
