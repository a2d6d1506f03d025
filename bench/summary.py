"""One table over every committed result: ours against the best baseline of the same run.

The README links to `bench/results/SUMMARY.md` instead of quoting numbers by hand, so a
re-run benchmark cannot leave a stale figure in the docs: `python -m bench.summary` rewrites
the file from the JSONs, and a test fails when the committed file differs from its output.
The same rows, per model, fill the block between `<!-- results:<model> -->` and
`<!-- /results:<model> -->` in `docs/<model>.md`, under the same check.

An accuracy result written by `training.comparison.Comparison` carries its own ranking: the
best baseline (best seed-mean primary metric among the methods whose role is `baseline`),
the paired bootstrap 95 % interval of ours minus it over the test units, and the verdict
(`ahead` / `behind` only when the interval excludes 0, `inconclusive` otherwise, `too small
to rank` under 100 positives or 30 series). The summary shows those as they are and counts
the verdicts per model. A result from before seeds and intervals existed is listed with its
two numbers and "no interval (pre-seed result)", never ranked. A parity check (online vs
offline replay, with a tolerance) shows its gap.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from training.stats import VERDICTS

RESULTS_DIR = Path(__file__).parent / "results"
SUMMARY = RESULTS_DIR / "SUMMARY.md"
DOCS_DIR = Path(__file__).parent.parent / "docs"
PRE_SEED = "no interval (pre-seed result)"
PARITY = "parity check"


def _family(ours: str) -> str:
    """The prefix shared by our model and its variants (`MetaCVR (SPDM)` -> `metacvr`)."""
    return ours.split(" ")[0].split("(")[0].lower()


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if abs(value) < 1e4 else f"{value:,.0f}"


def _mean_sd(record: dict[str, Any], method: str, metric: str) -> str:
    mean = record["methods"][method].get(metric)
    sd = (record.get("methods_sd") or {}).get(method, {}).get(metric)
    seeds = [s for s in record.get("runs", {}).get(method, {}).get("seeds", []) if s is not None]
    text = _num(mean)
    return f"{text} ± {_num(sd)}" if sd is not None and len(seeds) > 1 else text


def classify(record: dict[str, Any]) -> str:
    """The verdict a result counts as in the per-model tally."""
    if "tolerance_pp" in record:
        return PARITY
    comparison = record.get("comparison")
    if not comparison:
        return PRE_SEED
    return str(comparison.get("verdict", PRE_SEED))


def accuracy_row(
    record: dict[str, Any], file: str, link_prefix: str = "", with_model: bool = True
) -> str:
    metric = record["primary_metric"]
    arrow = "↑" if record["higher_is_better"] else "↓"
    ours = record["ours"]
    model = f"| {record['model']} " if with_model else ""
    head = f"{model}| {record['dataset']} | {metric} {arrow} "
    comparison = record.get("comparison")
    kind = classify(record)
    link = f"[{file}]({link_prefix}{file})"
    if comparison:
        best = comparison.get("best_baseline")
        test = comparison["test"]
        size = test.get("positives") if test.get("positives") is not None else test.get("series")
        what = "positives" if test.get("positives") is not None else "series"
        if best is None or comparison.get("interval") is None:
            return f"{head}| {ours} {_mean_sd(record, ours, metric)} | - | - | {kind} | {link} |"
        low, high = comparison["interval"]
        return (
            f"{head}| {ours} {_mean_sd(record, ours, metric)} "
            f"| {best} {_mean_sd(record, best, metric)} "
            f"| {comparison['difference']:+.4g} [{low:+.4g}, {high:+.4g}] "
            f"| **{kind}** ({size} {what}) | {link} |"
        )
    # Parity checks and pre-seed results: the two numbers, no ranking.
    methods = record["methods"]
    mine = methods[ours].get(metric)
    parity = kind == PARITY
    peers = {
        name: scores[metric]
        for name, scores in methods.items()
        if name != ours
        and scores.get(metric) is not None
        and (parity or not name.lower().startswith(_family(ours)))
    }
    if not peers:
        return f"{head}| {ours} {_num(mine)} | - | - | {kind} | {link} |"
    pick = max if record["higher_is_better"] else min
    best = pick(peers, key=peers.__getitem__)
    verdict = f"gap {abs(mine - peers[best]) * 100:.2f} pp" if parity else kind
    return f"{head}| {ours} {_num(mine)} | {best} {_num(peers[best])} | - | {verdict} | {link} |"


def speed_row(record: dict[str, Any], file: str) -> str:
    ours = record["ours"]
    mine = next(run for run in record["runs"] if run["name"] == ours)
    ratios = ", ".join(f"{name} {ratio:.2f}x" for name, ratio in record["ratio_vs"].items())
    return (
        f"| {record['benchmark']} | {ours} | {mine['throughput_per_s']:.1f} | "
        f"{mine['p50_ms']:.2f} | {mine['p99_ms']:.2f} | {ratios or '-'} | "
        f"{record['machine']} | [{file}]({file}) |"
    )


def tally(records: list[dict[str, Any]]) -> list[str]:
    """Verdict counts per model (parity checks and pre-seed results counted apart)."""
    columns = [*VERDICTS, PRE_SEED]
    counts: dict[str, Counter[str]] = {}
    for record in records:
        kind = classify(record)
        if kind == PARITY:
            continue
        counts.setdefault(record["model"], Counter())[kind] += 1
    lines = [
        "| model | " + " | ".join(columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for model in sorted(counts):
        lines.append(f"| {model} | " + " | ".join(str(counts[model][c]) for c in columns) + " |")
    return lines


def render(results_dir: Path = RESULTS_DIR) -> str:
    accuracy, speed = [], []
    records: list[dict[str, Any]] = []
    for path in sorted(results_dir.glob("*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        md = path.with_suffix(".md").name
        if record.get("kind") == "accuracy":
            accuracy.append(accuracy_row(record, md))
            records.append(record)
        elif record.get("kind") == "speed":
            speed.append(speed_row(record, md))
    lines = [
        "# Results at a glance",
        "",
        "Generated by `python -m bench.summary` from the JSON files beside it; each linked",
        "table has the command, the machine and every method of its run. Ours and the best",
        "baseline (the best seed-mean primary metric among the run's baselines; ablations of",
        "ours are not baselines) show mean ± sd over seeds; the interval is the paired",
        "bootstrap 95 % interval of ours minus the best baseline over the test units. Verdict:",
        "`ahead` / `behind` only when the interval excludes 0, `inconclusive` otherwise, `too",
        "small to rank` with fewer than 100 test positives (classification, ranking) or 30",
        "series (forecasting), whatever the interval says. Results from before seeds and",
        f"intervals are listed as `{PRE_SEED}`, never ranked.",
        "",
        "## Accuracy",
        "",
        "| model | data | metric | ours | best baseline | ours − baseline [95 % CI] | verdict "
        "| table |",
        "|---|---|---|---|---|---|---|---|",
        *accuracy,
        "",
        "### Verdicts per model",
        "",
        *tally(records),
        "",
        "## Speed",
        "",
        "Throughput in items (events, users, pairs, forecasts or requests) per second; "
        "ratios are ours over each peer of the same run.",
        "",
        "| benchmark | ours | throughput/s | p50 ms | p99 ms | ratio vs peers | machine | table |",
        "|---|---|---|---|---|---|---|---|",
        *speed,
        "",
    ]
    return "\n".join(lines)


def docs_table(model: str, results_dir: Path = RESULTS_DIR) -> str:
    """The accuracy rows of one model (every data set), for its page under docs/."""
    rows = []
    for path in sorted(results_dir.glob(f"accuracy-{model}-*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        if record.get("kind") == "accuracy" and record.get("model") == model:
            rows.append(
                accuracy_row(
                    record, path.with_suffix(".md").name, "../bench/results/", with_model=False
                )
            )
    return "\n".join(
        [
            "| data | metric | ours | best baseline | ours − baseline [95 % CI] | verdict "
            "| table |",
            "|---|---|---|---|---|---|---|",
            *rows,
        ]
    )


def render_docs(docs_dir: Path = DOCS_DIR, results_dir: Path = RESULTS_DIR) -> dict[Path, str]:
    """Each docs page with a results block, its block regenerated from the JSONs."""
    out: dict[Path, str] = {}
    for page in sorted(docs_dir.glob("*.md")):
        text = page.read_text(encoding="utf-8")
        for model in re.findall(r"<!-- results:([a-z-]+) -->", text):
            start, end = f"<!-- results:{model} -->", f"<!-- /results:{model} -->"
            if end not in text:
                raise ValueError(f"{page}: {start} has no closing {end}")
            head, rest = text.split(start, 1)
            _, tail = rest.split(end, 1)
            text = f"{head}{start}\n{docs_table(model, results_dir)}\n{end}{tail}"
        out[page] = text
    return out


def main(argv: list[str] | None = None) -> int:
    text = render()
    pages = render_docs()
    if argv and "--check" in argv:
        current = SUMMARY.read_text(encoding="utf-8") if SUMMARY.exists() else ""
        stale = [str(SUMMARY)] if current != text else []
        stale += [str(p) for p, t in pages.items() if p.read_text(encoding="utf-8") != t]
        if stale:
            print(f"stale: {', '.join(stale)}: run python -m bench.summary", file=sys.stderr)
            return 1
        return 0
    SUMMARY.write_text(text, encoding="utf-8")
    for page, page_text in pages.items():
        if page.read_text(encoding="utf-8") != page_text:
            page.write_text(page_text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
