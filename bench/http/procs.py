"""Processes a load benchmark starts: each in its own process group, all stopped on exit."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass
class Started:
    """A process this benchmark started, in its own process group, with its log file."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


@dataclass
class Processes:
    """Every child process; `stop_all` ends them, gracefully first (the service drains and
    stops its Valkey on SIGTERM), then by killing their process groups."""

    started: list[Started] = field(default_factory=list)

    def start(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> Started:
        with log.open("wb") as fh:
            proc = subprocess.Popen(
                argv, env=env, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        item = Started(name, proc, log)
        self.started.append(item)
        return item

    def stop(self, item: Started, grace_s: float = 30.0) -> None:
        proc = item.proc
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(grace_s)
        # Anything left in its group (a worker, a Ray process) is killed.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        if item in self.started:
            self.started.remove(item)

    def stop_all(self) -> None:
        for item in list(reversed(self.started)):
            self.stop(item, grace_s=15.0)


def on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def wait_ready(item: Started, url: str, timeout_s: float, check: str | None = None) -> None:
    """Poll `url` until it answers 200 (and its body mentions `check`, when given)."""
    import httpx

    deadline = time.monotonic() + timeout_s
    last = ""
    with httpx.Client(timeout=5.0, trust_env=False) as client:
        while time.monotonic() < deadline:
            if item.proc.poll() is not None:
                raise RuntimeError(f"{item.name} exited ({item.proc.returncode}):\n{item.tail()}")
            try:
                resp = client.get(url)
                last = resp.text[:500]
                if resp.status_code == 200 and (check is None or check in resp.text):
                    return
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.5)
    raise RuntimeError(f"{item.name} not ready after {timeout_s:.0f} s: {last}\n{item.tail()}")


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of `pid` and its children so far (Linux /proc), 0 when unknown."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    pids = [pid]
    with contextlib.suppress(OSError):
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    for p in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def drain_event_log(base_url: str, timeout_s: float = 120.0, poll_s: float = 0.05) -> float:
    """Seconds until a salecast in the single-writer mode reports everything appended as
    applied (`GET /v1/events/log`); RuntimeError after `timeout_s`."""
    import httpx

    start = time.monotonic()
    with httpx.Client(base_url=base_url, timeout=30.0, trust_env=False) as client:
        while time.monotonic() - start < timeout_s:
            status = client.get("/v1/events/log").json()
            if status["pending"] == 0 and status["applied"] == status["appended"]:
                return time.monotonic() - start
            time.sleep(poll_s)
    raise RuntimeError(f"the event log was not applied within {timeout_s:.0f} s")
