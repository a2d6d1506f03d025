"""Write `constraints.txt`: the installed versions of salecast's dependency closure.

Why a constraints file and not a lock of everything in the virtual environment: pip applies
constraints only to what an install actually asks for, so one file pins `make serve`
(`.[train]`), `make test` (`.[train,batch,dev]`) and the Docker images (`.`, `.[train]`) to
the versions the test suite ran against, while a package someone installed by hand for an
experiment stays out. The closure is read from the installed distributions' own metadata
(`importlib.metadata`, markers evaluated by `packaging`), starting at salecast's requirements
with the extras named on the command line.

Local version labels are dropped (`torch==2.13.0+cpu` is written `torch==2.13.0`): the same
pin then admits the CPU build from PyTorch's CPU index and the CUDA build from PyPI.

    .venv/bin/python deploy/freeze_constraints.py > constraints.txt     # or: make constraints
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from importlib import metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

DEFAULT_EXTRAS = ("train", "batch", "dev", "bench")


def _requirements(dist: metadata.Distribution, extras: Iterable[str]) -> list[Requirement]:
    """The requirements of `dist` that apply here, with `extras` requested of it."""
    wanted = ["", *sorted(set(extras))]
    out: list[Requirement] = []
    for line in dist.requires or []:
        req = Requirement(line)
        if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in wanted):
            out.append(req)
    return out


def closure(root: str, extras: Iterable[str]) -> dict[str, str]:
    """Canonical name -> installed version for every distribution `root[extras]` needs."""
    pins: dict[str, str] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    stack: list[tuple[str, frozenset[str]]] = [(root, frozenset(extras))]
    root_name = canonicalize_name(root)
    while stack:
        name, wanted = stack.pop()
        if (canonicalize_name(name), wanted) in seen:
            continue
        seen.add((canonicalize_name(name), wanted))
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # an optional dependency this environment does not have
        if canonicalize_name(name) != root_name:
            pins[canonicalize_name(name)] = Version(dist.version).public
        for req in _requirements(dist, wanted):
            stack.append((req.name, frozenset(req.extras)))
    return pins


def render(pins: dict[str, str], extras: Iterable[str]) -> str:
    header = [
        "# Versions the test suite ran against, for `pip install -c constraints.txt ...`",
        "# (Makefile, Dockerfile). The dependency closure of salecast["
        + ",".join(extras)
        + "], read from the",
        "# installed packages by deploy/freeze_constraints.py (`make constraints` rewrites it).",
        "# torch carries no local label, so the pin takes the CPU build from PyTorch's CPU",
        "# index (the Makefile's, where no NVIDIA GPU answers) and the CUDA build elsewhere.",
    ]
    return "\n".join(header + [f"{name}=={pins[name]}" for name in sorted(pins)]) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--extras",
        default=",".join(DEFAULT_EXTRAS),
        help="salecast extras whose closure is pinned (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    extras = [e for e in args.extras.split(",") if e]
    pins = closure("salecast", extras)
    if not pins:
        parser.error("salecast is not installed in this environment: nothing to pin")
    sys.stdout.write(render(pins, extras))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
