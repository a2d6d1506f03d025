"""Shared plumbing for speed benchmarks: latency statistics and the results file format."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from training.reporting import invoked_command, machine_description

RESULTS_DIR = Path(__file__).parent / "results"


def bench_command(module: str, argv: Sequence[str] | None = None) -> str:
    """How a benchmark was run, as a user retypes it: ``python -m <module> <args>`` without
    ``--results-dir`` (where the files went is not part of how they were made)."""
    import shlex
    import sys

    shown = list(sys.argv[1:] if argv is None else argv)
    if "--results-dir" in shown:
        i = shown.index("--results-dir")
        del shown[i : i + 2]
    shown = [a for a in shown if not a.startswith("--results-dir=")]
    return shlex.join(["python", "-m", module, *shown])


def load_average() -> float:
    """The 1-minute load average (nan where the platform has none)."""
    import os

    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def load_note(max_load: float, own_load: float = 0.0) -> str:
    """The sentence every speed result carries about how busy the machine was: a figure
    measured beside other jobs reads low, and the reader must be able to tell.

    `own_load` is the load the benchmark's own extra processes add (the HTTP load's client,
    server and Valkey), so only load beyond it is blamed on other jobs.
    """
    busy = " (the machine was busy with other jobs: absolute numbers are low and noisy)"
    own = f"; the benchmark's own processes add up to {own_load:.1f}" if own_load else ""
    return f"1-minute load average while measuring: up to {max_load:.1f}{own}" + (
        busy + "." if max_load > 2.5 + own_load else "."
    )


def latency_run(
    name: str, latencies_s: Sequence[float], items: int, wall_s: float, errors: int = 0
) -> dict[str, Any]:
    """One `runs` entry: throughput in items per second of wall time, latency in ms."""
    lat_ms = np.asarray(latencies_s, dtype=np.float64) * 1e3
    return {
        "name": name,
        "throughput_per_s": items / wall_s if wall_s > 0 else 0.0,
        "p50_ms": float(np.percentile(lat_ms, 50)) if len(lat_ms) else 0.0,
        "p99_ms": float(np.percentile(lat_ms, 99)) if len(lat_ms) else 0.0,
        "errors": errors,
    }


def write_speed(
    benchmark: str,
    runs: Sequence[Mapping[str, Any]],
    ours: str,
    *,
    out_dir: Path = RESULTS_DIR,
    command: str | None = None,
    notes: str = "",
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write `speed-<benchmark>.json` and `.md`, with throughput ratios of ours vs each peer."""
    by_name = {run["name"]: run for run in runs}
    mine = by_name[ours]
    ratios = {
        name: (
            mine["throughput_per_s"] / run["throughput_per_s"] if run["throughput_per_s"] else 0.0
        )
        for name, run in by_name.items()
        if name != ours
    }
    record: dict[str, Any] = {
        "kind": "speed",
        "benchmark": benchmark,
        "command": command or invoked_command(),
        "machine": machine_description(),
        "created": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "runs": [dict(run) for run in runs],
        "ours": ours,
        "ratio_vs": ratios,
        "notes": notes,
    }
    if extra:
        record.update(extra)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"speed-{benchmark}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    lines = [
        f"# speed: {benchmark}",
        "",
        f"Command: `{record['command']}`  ",
        f"Machine: {record['machine']}; created {record['created']}",
        "",
        "| run | throughput/s | p50 ms | p99 ms | errors |",
        "|---|---|---|---|---|",
    ]
    for run in runs:
        lines.append(
            f"| {run['name']} | {run['throughput_per_s']:.1f} | {run['p50_ms']:.3f} | "
            f"{run['p99_ms']:.3f} | {run['errors']} |"
        )
    lines += [
        "",
        "Throughput ratio of ours vs: " + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items()),
        "",
    ]
    if notes:
        lines += [f"Notes: {notes}", ""]
    path.with_suffix(".md").write_text("\n".join(lines))
    for name, ratio in ratios.items():
        print(f"{benchmark}: {ours} / {name} throughput ratio = {ratio:.2f}x")
    return path
