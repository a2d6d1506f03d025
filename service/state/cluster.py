"""`ClusterRedis`: redis-py's `RedisCluster` behind the store's small client interface.

The store talks to Redis through three calls, `execute`, `pipeline` and `scan` (see
`service.state.client.RedisClient`). On a single server `service.state.resp.MultiplexedRedis`
implements them; on Redis Cluster this wrapper does, so that slot routing, ``MOVED``/``ASK``
redirections and node discovery stay redis-py's (well-tested) business. Replies are brought
to the raw RESP shapes the store expects: redis-py turns some replies into Python values
(``HGETALL`` into a dict, ``SET`` into a bool), and error replies inside a pipeline become
`ReplyError` values, as `MultiplexedRedis` returns them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from redis import exceptions as redis_exceptions
from redis.asyncio.cluster import RedisCluster

from service.state.resp import Command, ReplyError


def _reply_error(exc: redis_exceptions.ResponseError) -> ReplyError:
    """redis-py strips an error's code word into its exception class; put ``NOSCRIPT`` back,
    the one code the store acts on."""
    if isinstance(exc, redis_exceptions.NoScriptError):
        return ReplyError(f"NOSCRIPT {exc}")
    return ReplyError(str(exc))


def _raw(command: Command, reply: Any) -> Any:
    name = str(command[0]).upper()
    if name == "HGETALL" and isinstance(reply, dict):
        return [x for pair in reply.items() for x in pair]
    if isinstance(reply, bool):  # SET/PING/HSET-style status replies mapped to True/False
        return b"OK" if reply else None
    return reply


class ClusterRedis:
    """The store's client interface over a `RedisCluster` (one per process)."""

    def __init__(self, client: RedisCluster) -> None:
        self.client = client

    @classmethod
    def from_url(cls, url: str, *, timeout_s: float = 5.0) -> ClusterRedis:
        return cls(
            RedisCluster.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        )

    async def execute(self, *command: Any) -> Any:
        try:
            return _raw(command, await self.client.execute_command(*command))
        except redis_exceptions.ResponseError as exc:
            raise _reply_error(exc) from exc

    async def pipeline(self, commands: Sequence[Command]) -> list[Any]:
        if not commands:
            return []
        pipe = self.client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        replies = await pipe.execute(raise_on_error=False)
        return [
            _reply_error(r) if isinstance(r, redis_exceptions.ResponseError) else _raw(c, r)
            for c, r in zip(commands, replies, strict=True)
        ]

    async def scan(self, match: str, count: int) -> AsyncIterator[bytes]:
        """Every key matching `match` on every primary (SCAN, never blocking a server)."""
        async for key in self.client.scan_iter(match=match, count=count):
            yield key

    async def load_script(self, source: str) -> None:
        """Load a script on every primary (each node has its own script cache)."""
        await self.client.script_load(source)

    async def close(self) -> None:
        await self.client.aclose()
