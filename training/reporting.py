"""Write accuracy results in the project's benchmark format (see bench/README.md).

One JSON per model and data set, plus a markdown table generated from it, both under
`bench/results/`. Every job's `evaluate` goes through here so the files stay uniform.

Beyond BENCHMARKS.md's keys, a result of `training.comparison.Comparison` carries
`methods_sd` (seed sd of every metric), `runs` (role, seeds, epochs actually run and
seconds per method) and `comparison` (ours against the best baseline: difference, paired
bootstrap interval, verdict, test size). The command is recorded with data paths written
as `$SALECAST_DATA/<dataset>/<file>` and the machine as the code detects it, so a result
names nothing of the machine it ran on but what a reader needs to compare runs.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

DATA_ENV = "SALECAST_DATA"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
    return pages * size / 2**30


def _gpu_name() -> str | None:
    """The CUDA device torch sees, if torch is already loaded (training) and has one."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        if torch.cuda.is_available():
            return str(torch.cuda.get_device_name(0))
    except Exception:  # a broken driver must not break a results file
        return None
    return None


def machine_description() -> str:
    """Cores, CPU model, architecture, memory and accelerator, as detected at run time."""
    cores = os.cpu_count() or 0
    memory = _memory_gib()
    gpu = _gpu_name()
    parts = [f"{cores} cores", _cpu_model(), platform.machine()]
    if memory is not None:
        parts.append(f"{memory:.0f} GiB")
    parts.append(f"GPU {gpu}" if gpu else "no GPU")
    return ", ".join(parts)


def _inside(path: Path, root: Path) -> str | None:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return None


def portable_path(value: str, *, data: bool) -> str:
    """A path as a recorded command shows it: never a machine's absolute path.

    Inside the working directory (the repository): relative. A data file elsewhere:
    `$SALECAST_DATA/<rel>` when it lies under `$SALECAST_DATA`, else
    `$SALECAST_DATA/<data set folder>/<file>` (BENCHMARKS.md names data sets by their
    folder). Any other outside path: `$OUT/<name>`.
    """
    path = Path(value).expanduser()
    if not path.is_absolute() and ".." not in path.parts:
        return value
    resolved = path.resolve()
    inside = _inside(resolved, Path.cwd().resolve())
    if inside is not None:
        return inside or "."
    root = os.environ.get(DATA_ENV)
    if root:
        rel = _inside(resolved, Path(root).expanduser().resolve())
        if rel is not None:
            return f"${DATA_ENV}/{rel}"
    if data:
        tail = resolved.parts[-2:] if not resolved.is_dir() else resolved.parts[-1:]
        return f"${DATA_ENV}/" + "/".join(tail)
    return f"$OUT/{resolved.name}"


def portable_argv(argv: Sequence[str]) -> list[str]:
    """`argv` with every path argument made portable (`--data` values as data paths)."""
    out: list[str] = []
    in_data = False
    for arg in argv:
        if arg.startswith("--"):
            in_data = arg == "--data"
            out.append(arg)
            continue
        looks_like_path = arg.startswith(("/", "..", "~")) or in_data
        out.append(portable_path(arg, data=in_data) if looks_like_path else arg)
    return out


def invoked_command() -> str:
    """The command line as a user would retype it (`salecast ...` when run via the script)."""
    argv = list(sys.argv)
    if argv and Path(argv[0]).name in {"salecast", "cli.py"}:
        argv[0] = "salecast"
    elif argv and argv[0].endswith(".py") and Path(argv[0]).parent.name == "bench":
        # `python -m bench.x` sets argv[0] to the file's absolute path; show the module
        # form so the command reads the same on every checkout.
        return shlex.join(["python", "-m", f"bench.{Path(argv[0]).stem}", *portable_argv(argv[1:])])
    return shlex.join([argv[0], *portable_argv(argv[1:])] if argv else [])


# The commit a run began from, set by `salecast evaluate` before the job starts: a result is
# written at the end of a run that can take an hour, and a commit landing meanwhile must not
# be recorded as the code that produced it.
CODE_AT_START_ENV = "SALECAST_CODE_AT_START"


def run_code_version() -> str | None:
    """`code_version()` as of the run's start when the CLI recorded it, else as of now."""
    return os.environ.get(CODE_AT_START_ENV) or code_version()


def code_version(root: Path | None = None) -> str | None:
    """The git commit the code ran from, with "+dirty" when tracked files other than
    results and markdown differ from it (a run rewrites those itself); None outside a git
    checkout (an installed wheel, a container without git).

    Recorded in every result so a reader can tell a figure measured before a model change
    from one measured after it, which the creation date alone cannot say.
    """
    import subprocess

    where = root or Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no", "--",
             ".", ":(exclude)bench/results", ":(exclude)*.md"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}+dirty" if dirty else commit or None


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1e5 else f"{value:.1f}"
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
    methods_sd: Mapping[str, Mapping[str, Any]] | None = None,
    runs: Mapping[str, Mapping[str, Any]] | None = None,
    comparison: Mapping[str, Any] | None = None,
) -> Path:
    """Write `accuracy-<model>-<dataset>.json` and `.md`; return the JSON path.

    `methods_sd`, `runs` and `comparison` come from `Comparison.record()`; a result
    without them (a parity check) is written in the plain BENCHMARKS.md shape.
    """
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
        "code": run_code_version(),
        "primary_metric": primary_metric,
        "higher_is_better": higher_is_better,
        "methods": {name: dict(values) for name, values in methods.items()},
        "ours": ours,
        "notes": notes,
    }
    if methods_sd is not None:
        record["methods_sd"] = {name: dict(values) for name, values in methods_sd.items()}
    if runs is not None:
        record["runs"] = {name: dict(values) for name, values in runs.items()}
    if comparison is not None:
        record["comparison"] = dict(comparison)
    if extra:
        record.update(extra)
    stem = f"accuracy-{model}-{dataset}"
    json_path = out_dir / f"{stem}.json"
    json_path.write_text(json.dumps(record, indent=2, default=_json_default) + "\n")
    (out_dir / f"{stem}.md").write_text(accuracy_markdown(record))
    return json_path


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return float(value)


def _epochs(fits: Sequence[Any]) -> str:
    """Epochs run per seed, e.g. `12/9/15`; per part when split (`stage1 4 stage2 6`), and
    boosting rounds kept for tree models (`rounds 70`)."""

    def one(fit: Any) -> str:
        if not isinstance(fit, Mapping):
            return "" if fit is None else str(fit)
        if "epochs_run" in fit:
            return str(fit["epochs_run"])
        parts = ((k, one(v)) for k, v in fit.items())
        return " ".join(f"{k} {text}" for k, text in parts if text)

    shown = [one(f) for f in fits]
    return "/".join(shown) if any(shown) else "-"


def _comparison_lines(record: Mapping[str, Any]) -> list[str]:
    comp = record["comparison"]
    test = comp["test"]
    size = f"{test['rows']} test rows, {test['units']} {test['unit_name']}"
    if test.get("positives") is not None:
        size += f", {test['positives']} positives"
    if test.get("series") is not None:
        size += f", {test['series']} series"
    lines = ["## Ours against the best baseline", ""]
    if comp.get("interval") is None:
        return [*lines, f"No baseline to compare with ({size}).", ""]
    low, high = comp["interval"]
    lines += [
        f"`{comp['ours']}` - `{comp['best_baseline']}` on `{comp['metric']}`: "
        f"**{comp['difference']:+.4f}**, {comp['level']:.0%} interval "
        f"[{low:+.4f}, {high:+.4f}] ({comp['resamples']} resamples of the "
        f"{test['unit_name']}); verdict: **{comp['verdict']}** ({size}; ranking needs "
        f"{test['rule']}).",
        "",
    ]
    return lines


MAX_COLUMNS = 12  # metric columns in the markdown table; every metric stays in the JSON


def _columns(record: Mapping[str, Any]) -> list[str]:
    """The primary metric, then ours' metrics in their order, then any other method's."""
    metrics: list[str] = [record["primary_metric"]]
    ours = record["methods"].get(record["ours"], {})
    for values in (ours, *record["methods"].values()):
        metrics += [key for key in values if key not in metrics]
    return metrics


def accuracy_markdown(record: Mapping[str, Any]) -> str:
    all_metrics = _columns(record)
    metrics = all_metrics[:MAX_COLUMNS]
    sds = record.get("methods_sd") or {}
    runs = record.get("runs") or {}
    lines = [
        f"# {record['model']} on {record['dataset']}",
        "",
        f"Command: `{record['command']}`  ",
        f"Machine: {record['machine']}; created {record['created']}"
        + (f" from commit {record['code']}" if record.get("code") else "")
        + "  ",
        f"Split: {record['split']}; primary metric `{record['primary_metric']}` "
        f"({'higher' if record['higher_is_better'] else 'lower'} is better); "
        f"ours: `{record['ours']}`",
        "",
    ]
    if "comparison" in record:
        lines += _comparison_lines(record)
    head = ["method", *(["role", "seeds", "epochs run"] if runs else []), *metrics]
    lines += ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for name, values in record["methods"].items():
        label = f"**{name}**" if name == record["ours"] else name
        cells = [label]
        info = runs.get(name) or {}
        seeds = [s for s in info.get("seeds", []) if s is not None]
        if runs:
            cells += [
                info.get("role", ""),
                str(len(seeds)) if seeds else "1 (deterministic)",
                _epochs(info.get("fits", [])),
            ]
        for m in metrics:
            text = _fmt(values.get(m))
            sd = (sds.get(name) or {}).get(m)
            if m == record["primary_metric"] and sd is not None and len(seeds) > 1:
                text += f" ± {_fmt(sd)}"
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    if len(all_metrics) > len(metrics):
        lines += ["", f"{len(all_metrics) - len(metrics)} more metrics per method in the JSON."]
    lines += ["", f"Notes: {record['notes']}", ""]
    # Job-specific figures (allocation, few-shot curve, transfer, ...) live beside the
    # methods table in the JSON; the markdown shows them too, so a reader of the table
    # never has to open the JSON to see a result the issue asked for.
    for key, value in record.items():
        if key in STANDARD_KEYS:
            continue
        lines += [f"## {key}", ""]
        rest = value
        if _is_table_block(value):
            # A block with a `table` (rows of flat values, e.g. STMP's per-horizon errors)
            # reads as a markdown table; the block's other keys follow as JSON.
            lines += [*_table_lines(value["table"]), ""]
            rest = {k: v for k, v in value.items() if k != "table"}
            if not rest:  # the table was the whole block: no empty JSON after it
                continue
        lines += ["```json", json.dumps(rest, indent=1, default=_json_default), "```", ""]
    return "\n".join(lines)


def _is_table_block(value: Any) -> bool:
    table = value.get("table") if isinstance(value, Mapping) else None
    return (
        isinstance(table, list)
        and bool(table)
        and all(
            isinstance(row, Mapping)
            and all(not isinstance(v, Mapping | list) for v in row.values())
            for row in table
        )
    )


def _table_lines(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """A markdown table of flat rows; columns in first-seen order, '-' where a row has none."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    lines = ["| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(c)) for c in columns) + " |")
    return lines


# The keys of an accuracy record that BENCHMARKS.md defines, and those of a comparison the
# tables above already show; any other key is job-specific.
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
        "code",
        "primary_metric",
        "higher_is_better",
        "methods",
        "ours",
        "notes",
        "methods_sd",
        "runs",
        "comparison",
    }
)
