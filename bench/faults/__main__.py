"""`python -m bench.faults [--only a,b] [--artifacts DIR]`: see the package docstring."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from bench.common import RESULTS_DIR, bench_command
from bench.faults import scenarios
from bench.faults.harness import stack, write_faults


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__)
    parser.add_argument(
        "--only",
        default=",".join(scenarios.SCENARIOS),
        help=f"comma-separated, from: {', '.join(scenarios.SCENARIOS)}",
    )
    parser.add_argument("--artifacts", type=Path, default=None, help="reuse demo artifacts here")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    wanted = [s for s in args.only.split(",") if s]
    unknown = set(wanted) - set(scenarios.SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {sorted(unknown)}")
    command = bench_command("bench.faults", argv)
    failed = []
    with tempfile.TemporaryDirectory(prefix="salecast-faults-") as tmp:
        work = Path(tmp)
        artifacts = args.artifacts
        if artifacts is None:
            import torch

            from training.demo import ensure_demo_models

            torch.set_num_threads(1)
            artifacts = work / "artifacts"
            print(f"training demo artifacts under {artifacts} ...", flush=True)
            ensure_demo_models(artifacts, seed=0)
        items = _items(artifacts)
        for name in wanted:
            print(f"== {name}", flush=True)
            scratch = work / name
            scratch.mkdir()
            # hot swaps publish versions: give that scenario its own copy of the artifacts
            arts = _copy(artifacts, scratch / "artifacts") if name == "hot-swaps" else artifacts
            with stack(scratch, arts) as s:
                base, _, count = name.rpartition("-")
                if count.isdigit():  # replicas-2, log-replicas-4: the scenario and N
                    result = getattr(scenarios, base.replace("-", "_"))(s, items, int(count))
                else:
                    result = getattr(scenarios, name.replace("-", "_"))(s, items)
            figures, guarantees, notes = result
            path = write_faults(
                name,
                figures,
                guarantees=guarantees,
                command=command,
                notes=notes,
                out_dir=args.results_dir,
            )
            print(f"   {path}: {figures}", flush=True)
            for g, held in guarantees.items():
                print(f"   {'ok  ' if held else 'FAIL'} {g}", flush=True)
                if not held:
                    failed.append(f"{name}: {g}")
    if failed:
        print("guarantees that did not hold:\n  " + "\n  ".join(failed), file=sys.stderr)
        return 1
    return 0


def _items(artifacts: Path) -> list[str]:
    import json

    version = max((artifacts / "imn").iterdir())
    vocab = json.loads((version / "manifest.json").read_text())["vocabularies"]["items"]
    return [i for i in vocab if i][:60]


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


if __name__ == "__main__":
    raise SystemExit(main())
