"""The README's measured paragraphs, written from the committed results.

`python -m bench.sizing` rewrites the text between the README's `sizing` markers from
`bench/results/speed-http-*.json` (whole service over HTTP, with its peers) and the
in-process component results (`speed-*.json`), and between its `faults` markers from
`bench/results/faults-*.json` (`python -m bench.faults`), so the numbers a reader sizes a
deployment by and the failures it survives are the ones measured, never typed by hand;
`tests/test_bench_sizing.py` fails when the README and the results disagree. `--check`
exits 1 instead of writing.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from bench.summary import RESULTS_DIR

README = RESULTS_DIR.parent.parent / "README.md"


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS_DIR / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _run(result: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((r for r in result["runs"] if r["name"] == name), None)


def _n(value: float) -> str:
    return f"{value:,.0f}"


def _http_sentence(route: str, unit: str) -> str | None:
    result = _load(f"speed-http-{route}")
    if result is None:
        return None
    ours = _run(result, result["ours"])
    if ours is None:
        return None
    ratios = result.get("ratio_vs", {})
    peers = ", ".join(
        f"{ratios[p]:.2f}x {p}"
        for p in ("naive-fastapi-redis-ort", "naive-fastapi-ort")
        if p in ratios
    )
    text = f"{_n(ours['throughput_per_s'])} {unit}/s (p99 {ours['p99_ms']:.0f} ms"
    if route == "events":
        per = int(str(result.get("per_request", "100")).split()[0])
        text += f", {_n(ours['throughput_per_s'] * per)} events/s applied"
    return text + (f"; {peers})" if peers else ")")


def _component(name: str, run: str) -> float | None:
    result = _load(name)
    found = _run(result, run) if result is not None else None
    return None if found is None else float(found["throughput_per_s"])


def paragraph() -> str:
    """The sizing paragraph from the results as committed."""
    any_http = _load("speed-http-recommend") or {}
    machine = any_http.get("machine", "the benchmark machine")
    workers = any_http.get("workers", 1)
    http = [
        s
        for s in (
            _http_sentence("recommend", "recommendation requests"),
            _http_sentence("intent", "intent calls of 8 users"),
            _http_sentence("cvr", "CVR calls of 8 pairs"),
            _http_sentence("events", "event batches of 100"),
            _http_sentence("forecast", "festival forecasts"),
            _http_sentence("promotion-items", "promotion-item forecasts"),
        )
        if s
    ]
    inside = [
        (_component("speed-intent-score", "ours-onnx-1000"), "intent users/s"),
        (_component("speed-cvr-score", "metacvr-batched"), "CVR pairs/s"),
        (_component("speed-forecast", "stmp-batched"), "forecasts/s"),
        (_component("speed-promotion-items", "dinop-from-state"), "promotion items/s"),
        (
            _component("speed-events-ingest", "salecast-pipeline"),
            "events/s applied by the pipeline",
        ),
    ]
    lines = [
        f"**Sizing, from `bench/`.** On {machine}, one replica with {workers} worker "
        "process under 32 keep-alive connections (`python -m bench.http_load`; each result "
        "file names its run's command) served " + "; ".join(http) + ". Ratios are against "
        "the hand-written peers of the same run ([SUMMARY](bench/results/SUMMARY.md#speed)): "
        "above 1 salecast is faster.",
        "Inside one process (no HTTP) it scored "
        + ", ".join(f"{_n(v)} {label}" for v, label in inside if v is not None)
        + ".",
        "Where the time goes is in each result's profile notes: the state reads, feature "
        "building and compare-and-set writes cost more than the model. Scale out by replicas "
        "first (the HPA adds pods on queue depth; state is in Redis, so any replica serves "
        "any user), and send large batches to GPU hosts.",
    ]
    return "\n".join(lines)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return ", ".join(f"{k} {_value(v)}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def faults() -> str:
    """One line per fault scenario: what held, with its figures."""
    lines = []
    paths = sorted(RESULTS_DIR.glob("faults-*.json"))
    machines = {json.loads(p.read_text())["machine"] for p in paths}
    for path in paths:
        record = json.loads(path.read_text())
        held = [g for g, ok in record["guarantees"].items() if ok]
        broken = [g for g, ok in record["guarantees"].items() if not ok]
        figures = "; ".join(f"{k}: {_value(v)}" for k, v in record["figures"].items())
        verdict = "held: " + ", ".join(held) if not broken else "NOT held: " + ", ".join(broken)
        where = f" On {record['machine']}." if len(machines) > 1 else ""
        lines.append(
            f"- **{record['scenario']}** ({verdict}). {figures}.{where} "
            f"[{path.stem}.md](bench/results/{path.stem}.md)"
        )
    machine = next(iter(machines)) if len(machines) == 1 else "machines named per line"
    head = f"**Faults, from `python -m bench.faults`** (every target on 127.0.0.1, {machine}):"
    return "\n".join([head, "", *lines]) if lines else head + " not run yet."


def render(readme: str) -> str:
    for block, text in (("sizing", paragraph()), ("faults", faults())):
        begin, end = f"<!-- {block}:begin -->", f"<!-- {block}:end -->"
        if begin not in readme:
            continue
        start, stop = readme.index(begin), readme.index(end)
        readme = readme[: start + len(begin)] + "\n" + text + "\n" + readme[stop:]
    return readme


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if the README is stale")
    args = parser.parse_args(argv)
    current = README.read_text()
    wanted = render(current)
    if args.check:
        return 0 if wanted == current else 1
    README.write_text(wanted)
    print(paragraph(), faults(), sep="\n\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
