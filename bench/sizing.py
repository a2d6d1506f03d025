"""The README's sizing paragraph, written from the committed speed results.

`python -m bench.sizing` rewrites the text between the README's `sizing` markers from
`bench/results/speed-http-*.json` (whole service over HTTP, with its peers) and the
in-process component results (`speed-*.json`), so the numbers a reader sizes a deployment
by are the ones measured, never typed by hand; `tests/test_bench_sizing.py` fails when the
README and the results disagree. `--check` exits 1 instead of writing.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from bench.summary import RESULTS_DIR

README = RESULTS_DIR.parent.parent / "README.md"
BEGIN, END = "<!-- sizing:begin -->", "<!-- sizing:end -->"


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
        "process under 32 keep-alive connections (`python -m bench.http_load --route all`) "
        "served " + "; ".join(http) + ". Ratios are against the hand-written peers of the same "
        "run ([SUMMARY](bench/results/SUMMARY.md#speed)): above 1 salecast is faster.",
        "Inside one process (no HTTP) it scored "
        + ", ".join(f"{_n(v)} {label}" for v, label in inside if v is not None)
        + ".",
        "Where the time goes is in each result's profile notes: the state reads, feature "
        "building and compare-and-set writes cost more than the model. Scale out by replicas "
        "first (the HPA adds pods on queue depth; state is in Redis, so any replica serves "
        "any user), and send large batches to GPU hosts.",
    ]
    return "\n".join(lines)


def render(readme: str) -> str:
    start, stop = readme.index(BEGIN), readme.index(END)
    return readme[: start + len(BEGIN)] + "\n" + paragraph() + "\n" + readme[stop:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if the README is stale")
    args = parser.parse_args(argv)
    current = README.read_text()
    wanted = render(current)
    if args.check:
        return 0 if wanted == current else 1
    README.write_text(wanted)
    print(paragraph())
    return 0


if __name__ == "__main__":
    sys.exit(main())
