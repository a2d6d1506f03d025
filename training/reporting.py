"""Write accuracy results in the project's benchmark format (see bench/README.md).

One JSON per model and data set, plus a markdown table generated from it, both under
`bench/results/`. Every job's `evaluate` goes through here so the files stay uniform.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def machine_description() -> str:
    """Cores and accelerator, the way BENCHMARKS.md names a machine."""
    cores = os.cpu_count() or 0
    gpu = os.environ.get("SALECAST_GPU_NAME", "")
    return f"{cores} cores, {platform.machine()}, " + (f"GPU {gpu}" if gpu else "no GPU")


def invoked_command() -> str:
    """The command line as a user would retype it (`salecast ...` when run via the script)."""
    argv = list(sys.argv)
    if argv and Path(argv[0]).name in {"salecast", "cli.py"}:
        argv[0] = "salecast"
    elif argv and argv[0].endswith(".py") and Path(argv[0]).parent.name == "bench":
        # `python -m bench.x` sets argv[0] to the file's absolute path; show the module
        # form so the command reads the same on every checkout.
        return shlex.join(["python", "-m", f"bench.{Path(argv[0]).stem}", *argv[1:]])
    return shlex.join(argv)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def write_accuracy(
    out_dir: Path,
    *,
    model: str,
    dataset: str,
    data_sha256: str,
    split: str,
    primary_metric: str,
    higher_is_better: bool,
    methods: Mapping[str, Mapping[str, Any]],
    ours: str,
    notes: str,
    command: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write `accuracy-<model>-<dataset>.json` and `.md`; return the JSON path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {
        "kind": "accuracy",
        "model": model,
        "dataset": dataset,
        "data_sha256": data_sha256,
        "split": split,
        "command": command or invoked_command(),
        "machine": machine_description(),
        "created": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "primary_metric": primary_metric,
        "higher_is_better": higher_is_better,
        "methods": {name: dict(values) for name, values in methods.items()},
        "ours": ours,
        "notes": notes,
    }
    if extra:
        record.update(extra)
    stem = f"accuracy-{model}-{dataset}"
    json_path = out_dir / f"{stem}.json"
    json_path.write_text(json.dumps(record, indent=2, default=float) + "\n")
    (out_dir / f"{stem}.md").write_text(accuracy_markdown(record))
    return json_path


def accuracy_markdown(record: Mapping[str, Any]) -> str:
    metrics: list[str] = []
    for values in record["methods"].values():
        for key in values:
            if key not in metrics:
                metrics.append(key)
    lines = [
        f"# {record['model']} on {record['dataset']}",
        "",
        f"Command: `{record['command']}`  ",
        f"Machine: {record['machine']}; created {record['created']}  ",
        f"Split: {record['split']}; primary metric `{record['primary_metric']}` "
        f"({'higher' if record['higher_is_better'] else 'lower'} is better); "
        f"ours: `{record['ours']}`",
        "",
        "| method | " + " | ".join(metrics) + " |",
        "|---" * (len(metrics) + 1) + "|",
    ]
    for name, values in record["methods"].items():
        label = f"**{name}**" if name == record["ours"] else name
        lines.append(f"| {label} | " + " | ".join(_fmt(values.get(m, "")) for m in metrics) + " |")
    lines += ["", f"Notes: {record['notes']}", ""]
    # Job-specific figures (allocation, few-shot curve, transfer, ...) live beside the
    # methods table in the JSON; the markdown shows them too, so a reader of the table
    # never has to open the JSON to see a result the issue asked for.
    for key, value in record.items():
        if key in STANDARD_KEYS:
            continue
        lines += [f"## {key}", "", "```json", json.dumps(value, indent=1, default=float), "```", ""]
    return "\n".join(lines)


# The keys of an accuracy record that BENCHMARKS.md defines; any other key is job-specific.
STANDARD_KEYS = frozenset(
    {
        "kind",
        "model",
        "dataset",
        "data_sha256",
        "split",
        "command",
        "machine",
        "created",
        "primary_metric",
        "higher_is_better",
        "methods",
        "ours",
        "notes",
    }
)
