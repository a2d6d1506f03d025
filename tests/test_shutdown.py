"""A rollout's view of `salecast serve` receiving SIGTERM: readiness goes 503 at once while
requests are still answered for `SALECAST_SHUTDOWN_DELAY_S`; none is refused before then."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from tests.test_runtime_batcher import scale_artifact


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_sigterm_turns_readiness_off_before_the_listener_closes(tmp_path: Path) -> None:
    root = tmp_path / "art"
    scale_artifact(root, "0001", 1.0, tmp=tmp_path)
    port = _port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "SALECAST_REDIS_URL"}}
    env.update(
        SALECAST_ARTIFACTS_DIR=str(root), SALECAST_DATA_DIR=str(tmp_path / "var"),
        SALECAST_POLL_INTERVAL_S="0", SALECAST_SHUTDOWN_DELAY_S="2", SALECAST_LOG_LEVEL="WARNING",
    )  # fmt: skip
    exe = Path(sys.executable).parent / "salecast"
    proc = subprocess.Popen([str(exe), "serve", "--port", str(port)], env=env)
    try:
        with httpx.Client(base_url=url, timeout=5.0, trust_env=False) as c:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if c.get("/health/ready").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline and proc.poll() is None, "never ready"
                time.sleep(0.1)
            results: list[tuple[float, str]] = []
            stop = threading.Event()

            def traffic() -> None:  # new connections, as a load balancer opens them
                while not stop.is_set():
                    t = time.monotonic()
                    try:
                        with httpx.Client(base_url=url, timeout=5.0, trust_env=False) as fresh:
                            results.append((t, str(fresh.get("/v1/models").status_code)))
                    except httpx.HTTPError as exc:
                        results.append((t, type(exc).__name__))
                    time.sleep(0.02)

            thread = threading.Thread(target=traffic)
            thread.start()
            time.sleep(0.5)
            sigterm_at = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            readiness = []
            while time.monotonic() - sigterm_at < 1.5:
                try:
                    readiness.append(c.get("/health/ready").status_code)
                except httpx.HTTPError:
                    readiness.append(0)
                time.sleep(0.1)
            stop.set()
            thread.join()
        assert readiness and readiness[-1] == 503 and set(readiness) <= {200, 503}
        during = [status for t, status in results if sigterm_at <= t < sigterm_at + 1.5]
        assert during and all(status == "200" for status in during), during
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
