"""`RedisClient`: the three calls the state store makes, and `connect_client(url)`.

Two implementations: `service.state.resp.MultiplexedRedis` (one pipelined connection to a
single server, the fast path) and `service.state.cluster.ClusterRedis` (redis-py's
`RedisCluster`). Replies are raw RESP values (bytes, ints, lists); error replies inside a
`pipeline` come back as `ReplyError` values so the other commands' results survive.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

from service.state.cluster import ClusterRedis
from service.state.resp import Command, MultiplexedRedis


class RedisClient(Protocol):
    async def execute(self, *command: Any) -> Any: ...

    async def pipeline(self, commands: Sequence[Command]) -> list[Any]: ...

    def scan(self, match: str, count: int) -> AsyncIterator[bytes]: ...

    async def load_script(self, source: str) -> None: ...

    async def close(self) -> None: ...


def connect_client(url: str, *, cluster: bool, timeout_s: float) -> RedisClient:
    """A client for a normalised ``redis://``/``rediss://`` URL (see `store.parse_url`)."""
    if cluster:
        return ClusterRedis.from_url(url, timeout_s=timeout_s)
    return MultiplexedRedis.from_url(url, timeout_s=timeout_s)
