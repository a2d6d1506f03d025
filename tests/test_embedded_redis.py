"""EmbeddedRedis: a real valkey-server with append-only persistence under the data folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from service.errors import StateStoreError
from service.state.embedded import EmbeddedRedis


def test_config_is_loopback_and_append_only(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    assert client.config_get("appendonly") == {"appendonly": "yes"}
    assert str(client.config_get("bind")["bind"]).split() == ["127.0.0.1"]
    assert redis_url.startswith("redis://127.0.0.1:")


def test_clean_stop_keeps_data_across_restart(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path)
    url = server.start()
    assert server.start() == url  # idempotent
    assert (tmp_path / "redis").is_dir()
    redis.Redis.from_url(url).set("sc:{u:1}:k", b"\x00\x01")
    wheel_object = server._server  # the wheel's ValkeyServer, as its __del__ would see it
    server.stop()
    server.stop()  # idempotent
    assert not server.is_running()
    with pytest.raises(StateStoreError):
        _ = server.url
    assert (tmp_path / "redis" / "appendonlydir").is_dir()

    again = EmbeddedRedis(tmp_path)
    url2 = again.start()
    try:
        # The old wheel object's stop()/__del__ must not signal the new server on the folder.
        assert wheel_object is not None
        wheel_object.stop(timeout=0.5)
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
