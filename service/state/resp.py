"""`MultiplexedRedis`: one pipelined RESP connection to a standalone Redis/Valkey server.

Why not redis-py's asyncio client on the hot path: measured on the 2-core development machine
(`bench/results/speed-redis-client.md`), one ``HMGET`` of a 512-byte state from 32 concurrent
callers cost about 170 us of client CPU with redis-py 8 (hiredis parser included: a connection
checked out of the pool, retry and observability wrappers, an ``asyncio.timeout`` around every
read) against about 15 us here, and salecast's recommendation route is one such read. The
protocol is not the expensive part; the per-call machinery around it is.

Design:

* **One connection, many callers.** Redis answers the commands of one connection in order, so a
  command needs no connection of its own: its future is queued and its bytes are buffered;
  `data_received` parses replies with hiredis (the C parser redis-py uses too) and resolves the
  futures first-in first-out. The buffer is written once at the end of the event-loop turn, so
  the commands of concurrent requests leave in one system call and pipeline themselves (as
  ioredis' auto-pipelining does); on a loopback socket the write is the costly part.
* **Socket-level timeout, not per read.** A watchdog checks every quarter of `timeout_s` whether
  the oldest outstanding command has waited longer than `timeout_s`; if so the connection is
  declared dead and closed. No timer is armed per command.
* **Failure is loud and whole.** A lost connection fails every outstanding future with
  `ConnectionError` (the store turns it into `StateStoreError`, a 503); the next command
  reconnects. A command is never re-sent by this class: whether it ran is unknown, and the
  callers' own idempotency (event ids, compare-and-set) decides what a retry means.
* **Error replies are values, not exceptions,** inside `pipeline` (`ReplyError` instances in the
  result list), so one failing command does not hide the results of the others; `execute`
  raises them.

Cluster deployments keep redis-py's `RedisCluster` (slot routing, MOVED/ASK handling); this
class speaks to one server.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import hiredis

Command = Sequence[Any]


class ReplyError(Exception):
    """An error reply of the server (``-ERR ...``, ``-NOSCRIPT ...``)."""

    @property
    def code(self) -> str:
        """The reply's first word (``NOSCRIPT``, ``WRONGTYPE``, ``ERR``)."""
        return str(self.args[0]).split(" ", 1)[0] if self.args else ""


@dataclass(frozen=True)
class Address:
    """Where and how to connect, from a ``redis://`` / ``rediss://`` URL."""

    host: str
    port: int
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False

    @classmethod
    def from_url(cls, url: str) -> Address:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError(f"unsupported scheme {parts.scheme!r}")
        path = parts.path.strip("/")
        if path and not path.isdigit():
            raise ValueError("the URL path must be a database number")
        return cls(
            host=parts.hostname or "localhost",
            port=parts.port or 6379,
            db=int(path) if path else 0,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=parts.scheme == "rediss",
        )


class _Batch:
    """The replies one `pipeline` call waits for: `count` of them, in order."""

    __slots__ = ("count", "future", "replies", "sent")

    def __init__(self, future: asyncio.Future[list[Any]], count: int, sent: float) -> None:
        self.future = future
        self.count = count
        self.replies: list[Any] = []
        self.sent = sent


class _Protocol(asyncio.Protocol):
    """Parses replies and resolves the waiting batches in order (one future per batch, not
    per command, so a 500-command pipeline costs one wake-up)."""

    def __init__(self, on_lost: Any) -> None:
        self.reader = hiredis.Reader(replyError=ReplyError)
        self.waiting: deque[_Batch] = deque()
        self.transport: asyncio.Transport | None = None
        self._on_lost = on_lost
        self._out: list[bytes] = []  # commands of this event-loop turn, written at its end

    def queue(self, data: bytes) -> None:
        """Buffer `data` and write everything buffered once, at the end of this loop turn:
        concurrent requests' commands share one system call (auto-pipelining)."""
        if not self._out:
            asyncio.get_running_loop().call_soon(self.flush)
        self._out.append(data)

    def flush(self) -> None:
        out, self._out = self._out, []
        if out and self.transport is not None:
            self.transport.write(b"".join(out) if len(out) > 1 else out[0])

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport; they offer the same methods.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        waiting = self.waiting
        gets = self.reader.gets
        while True:
            try:
                reply = gets()
            except hiredis.ProtocolError as exc:  # garbage on the wire: nothing is trustworthy
                self._drop(ConnectionError(f"redis protocol error: {exc}"))
                return
            if reply is False:
                return
            if not waiting:  # a reply nobody asked for (never expected): drop the connection
                self._drop(ConnectionError("redis sent a reply with no command waiting"))
                return
            batch = waiting[0]
            batch.replies.append(reply)
            if len(batch.replies) == batch.count:
                waiting.popleft()
                if not batch.future.done():
                    batch.future.set_result(batch.replies)

    def _drop(self, exc: Exception) -> None:
        self.fail(exc)
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(ConnectionError(f"redis connection lost: {exc or 'closed by the server'}"))
        self._on_lost(self)

    def fail(self, exc: Exception) -> None:
        while self.waiting:
            batch = self.waiting.popleft()
            if not batch.future.done():
                batch.future.set_exception(exc)


class MultiplexedRedis:
    """A pipelined connection to one Redis server, shared by every coroutine of the process."""

    def __init__(self, address: Address, *, timeout_s: float = 5.0) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Lock | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._closed = False

    @classmethod
    def from_url(cls, url: str, *, timeout_s: float = 5.0) -> MultiplexedRedis:
        return cls(Address.from_url(url), timeout_s=timeout_s)

    # ---- connection ---------------------------------------------------------------------------
    async def _connection(self) -> _Protocol:
        protocol = self._protocol
        if protocol is not None and protocol.transport is not None:
            return protocol
        if self._closed:
            raise ConnectionError("redis client is closed")
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._protocol is not None and self._protocol.transport is not None:
                return self._protocol
            self._protocol = await self._open()
            if self._watchdog is None or self._watchdog.done():
                self._watchdog = asyncio.get_running_loop().create_task(self._watch())
            return self._protocol

    async def _open(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        a = self.address
        context = ssl.create_default_context() if a.tls else None
        try:
            _, protocol = await asyncio.wait_for(
                loop.create_connection(lambda: _Protocol(self._lost), a.host, a.port, ssl=context),
                self.timeout_s,
            )
        except (OSError, TimeoutError) as exc:
            raise ConnectionError(f"cannot connect to redis at {a.host}:{a.port}: {exc}") from exc
        sock = protocol.transport.get_extra_info("socket") if protocol.transport else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        hello: list[Command] = []
        if a.password is not None:
            hello.append(("AUTH", a.username, a.password) if a.username else ("AUTH", a.password))
        if a.db:
            hello.append(("SELECT", a.db))
        replies = await self._send(protocol, hello) if hello else []
        for reply in replies:
            if isinstance(reply, ReplyError):
                if protocol.transport is not None:
                    protocol.transport.close()
                raise ConnectionError(f"redis refused the connection set-up: {reply}")
        return protocol

    def _lost(self, protocol: _Protocol) -> None:
        protocol.transport = None
        if self._protocol is protocol:
            self._protocol = None

    async def _watch(self) -> None:
        """Declare the connection dead when its oldest command waited past the timeout."""
        period = max(self.timeout_s / 4, 0.01)
        while not self._closed:
            await asyncio.sleep(period)
            protocol = self._protocol
            if protocol is None or not protocol.waiting:
                continue
            if time.monotonic() - protocol.waiting[0].sent > self.timeout_s:
                protocol.fail(TimeoutError(f"redis did not answer within {self.timeout_s:g} s"))
                if protocol.transport is not None:
                    protocol.transport.abort()

    async def close(self) -> None:
        self._closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
        protocol = self._protocol
        self._protocol = None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()

    # ---- commands -----------------------------------------------------------------------------
    @staticmethod
    def _send(protocol: _Protocol, commands: Sequence[Command]) -> asyncio.Future[list[Any]]:
        """Write `commands` in one buffer; a future of their replies, in order."""
        if protocol.transport is None:
            raise ConnectionError("redis connection lost")
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        protocol.waiting.append(_Batch(future, len(commands), time.monotonic()))
        pack = hiredis.pack_command
        if len(commands) == 1:
            protocol.queue(pack(tuple(commands[0])))
        else:
            protocol.queue(b"".join([pack(tuple(c)) for c in commands]))
        return future

    async def pipeline(self, commands: Sequence[Command]) -> list[Any]:
        """Send `commands` back to back; their replies in order (`ReplyError` for errors)."""
        if not commands:
            return []
        protocol = self._protocol
        if protocol is None or protocol.transport is None:
            protocol = await self._connection()
        return await self._send(protocol, commands)

    async def execute(self, *command: Any) -> Any:
        """One command; an error reply raises `ReplyError`."""
        protocol = self._protocol
        if protocol is None or protocol.transport is None:
            protocol = await self._connection()
        (reply,) = await self._send(protocol, (command,))
        if isinstance(reply, ReplyError):
            raise reply
        return reply

    async def scan(self, match: str, count: int) -> AsyncIterator[bytes]:
        """Every key matching `match` (SCAN: the server is never blocked for long)."""
        cursor: bytes | str = "0"
        while True:
            cursor, found = await self.execute("SCAN", cursor, "MATCH", match, "COUNT", count)
            for key in found:
                yield key
            if cursor in (b"0", "0"):
                return

    async def load_script(self, source: str) -> None:
        await self.execute("SCRIPT", "LOAD", source)
