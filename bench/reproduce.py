"""Does today's code reproduce a committed accuracy result? `python -m bench.reproduce`.

`python -m bench.reproduce --model cvr --dataset synthetic` runs the result's own
`salecast evaluate` line (`bench.accuracy.RUNS`) into a temporary folder and compares every
method's mean primary metric with the committed one. A method reproduces when the two means
differ by at most the larger of their seed sds, and by at most `--tolerance` (relative) for a
method without seeds (nothing random in it, so only thread counts and CPU kernels move it).
Writes `bench/results/reproduce-<model>-<dataset>.json` + `.md` and exits 1 if any method did
not reproduce; the committed result itself is left as it is.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.accuracy import DATA_ENV, RUNS, command
from bench.summary import RESULTS_DIR
from training.reporting import machine_description


def compare(
    committed: dict[str, Any], again: dict[str, Any], tolerance: float
) -> list[dict[str, Any]]:
    """One row per method of the committed result: both means, the allowed gap, verdict."""
    metric = committed["primary_metric"]
    rows = []
    for method, metrics in committed["methods"].items():
        old = metrics.get(metric)
        new = again["methods"].get(method, {}).get(metric)
        sds = [
            r.get("methods_sd", {}).get(method, {}).get(metric) or 0.0 for r in (committed, again)
        ]
        allowed = max(sds) if max(sds) > 0 else tolerance * max(abs(old or 0.0), 1e-12)
        ok = old is not None and new is not None and abs(new - old) <= allowed
        rows.append(
            {"method": method, "committed": old, "again": new, "allowed": allowed, "ok": ok}
        )
    return rows


def write(model: str, dataset: str, line: list[str], rows: list[dict[str, Any]]) -> Path:
    path = RESULTS_DIR / f"reproduce-{model}-{dataset}.json"
    record = {
        "kind": "reproduce",
        "model": model,
        "dataset": dataset,
        "command": f"python -m bench.reproduce --model {model} --dataset {dataset}",
        "evaluate": " ".join(line),
        "machine": machine_description(),
        "rows": rows,
        "reproduced": all(r["ok"] for r in rows),
    }
    path.write_text(json.dumps(record, indent=2) + "\n")
    table = [
        f"# reproduce: {model} on {dataset}",
        "",
        f"Command: `{record['command']}` (runs `{record['evaluate']}`)  ",
        f"Machine: {record['machine']}",
        "",
        "| method | committed | again | allowed gap | reproduced |",
        "|---|---|---|---|---|",
        *(
            f"| {r['method']} | {r['committed']:.4f} | "
            + (f"{r['again']:.4f}" if r["again"] is not None else "-")
            + f" | {r['allowed']:.4f} | {'yes' if r['ok'] else '**no**'} |"
            for r in rows
        ),
        "",
        "Allowed gap: the larger seed sd of the two runs, or the relative tolerance for a "
        "method without seeds.",
        "",
    ]
    path.with_suffix(".md").write_text("\n".join(table))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, choices=sorted(RUNS))
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--tolerance", type=float, default=0.01, help="relative, no-seed methods")
    args = parser.parse_args(argv)
    if args.dataset not in RUNS[args.model]:
        parser.error(f"--dataset: {args.model} has results for {', '.join(RUNS[args.model])}")
    committed_path = RESULTS_DIR / f"accuracy-{args.model}-{args.dataset}.json"
    committed = json.loads(committed_path.read_text())
    if "comparison" not in committed:
        parser.error(f"{committed_path.name} predates seeds and intervals: nothing to compare")
    data_root = os.environ.get(DATA_ENV, "")
    if args.dataset != "synthetic" and not data_root:
        parser.error(f"set ${DATA_ENV} to the folder holding {args.dataset}")
    line = command(args.model, args.dataset, f"${DATA_ENV}")
    real = command(args.model, args.dataset, data_root)
    salecast = str(Path(sys.executable).with_name("salecast"))
    with tempfile.TemporaryDirectory(prefix="salecast-reproduce-") as tmp:
        run = [salecast, *real[1:], "--results-dir", tmp]
        if subprocess.run(run).returncode != 0:
            print("the evaluate run failed", file=sys.stderr)
            return 2
        again = json.loads((Path(tmp) / committed_path.name).read_text())
    rows = compare(committed, again, args.tolerance)
    path = write(args.model, args.dataset, line, rows)
    for r in rows:
        print(f"{r['method']}: {r['committed']} -> {r['again']} (allowed {r['allowed']:.4g})")
    print(path)
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
