"""A sampling profile of a server while it is under load: py-spy, summarised into top frames.

`bench.http_load --profile` records the salecast process (and its workers) with py-spy for
the measured seconds and puts the frames that held the CPU longest into the results notes,
so every figure says where its time went. py-spy comes with the ``bench`` extra; without it
the notes say that no profile was taken.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path


def _py_spy() -> str | None:
    """py-spy on PATH or beside this interpreter (a virtual environment's bin/)."""
    beside = Path(sys.executable).parent / "py-spy"
    return shutil.which("py-spy") or (str(beside) if beside.exists() else None)


def available() -> bool:
    return _py_spy() is not None


def start(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    """Start recording `pid` (and its subprocesses) for `seconds` into a raw stack file."""
    if not available():
        return None
    argv = [
        _py_spy() or "py-spy", "record", "--pid", str(pid), "--duration",
        str(max(int(seconds), 1)), "--rate", "200", "--format", "raw", "--output", str(out),
        "--nonblocking", "--subprocesses",
    ]  # fmt: skip
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _frame_name(frame: str) -> str:
    """``function (path/to/file.py:123)`` -> ``function (file.py)``: lines merged."""
    name, _, where = frame.partition(" (")
    file = where.rsplit(":", 1)[0].rsplit("/", 1)[-1] if where else ""
    return f"{name} ({file})" if file else name


# Frames every stack passes through (event loop, threads, process start): not informative.
_PLUMBING = ("asyncio/", "threading.py", "concurrent/futures/", "runpy", "uvicorn/server.py",
             "uvicorn/_compat.py", "uvicorn/main.py", "service/main.py", "training/cli.py",
             "<module>", "multiprocessing/", "uvicorn/supervisors/")  # fmt: skip


def _plumbing(frame: str) -> bool:
    return any(p in frame for p in _PLUMBING)


def summarise(raw: Path, top: int = 8) -> str:
    """The frames with the most samples on top of the stack, and salecast's own frames
    (`service/`) with the most samples anywhere on it."""
    if not raw.exists():
        return "no profile recorded"
    own: Counter[str] = Counter()
    anywhere: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        n = int(count)
        total += n
        own[_frame_name(frames[-1])] += n
        for name in {_frame_name(f) for f in frames if "service/" in f and not _plumbing(f)}:
            anywhere[name] += n
    if not total:
        return "profile empty"

    def fmt(counter: Counter[str]) -> str:
        return "; ".join(f"{name} {100 * n / total:.0f}%" for name, n in counter.most_common(top))

    return (
        f"py-spy, {total} samples. Top frames by own time: {fmt(own)}. salecast's frames by "
        f"time spent in them and below: {fmt(anywhere)}"
    )


def finish(proc: subprocess.Popen[bytes] | None, raw: Path) -> str:
    if proc is None:
        return "no profile: py-spy is not installed (pip install -e '.[bench]')"
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
    return summarise(raw)
