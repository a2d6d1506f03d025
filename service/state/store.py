"""`StateStore`: salecast's online state in Redis (standalone or cluster).

What lives here and why it is shaped this way:

* Vectors are stored as raw little-endian float32 bytes, not JSON: a 64-d state is 256 bytes
  instead of ~1.2 kB of text, and decoding is one `np.frombuffer` instead of a parser.
* Every model-state write is a Lua compare-and-set keyed on the event's ``(ts, event id)``
  (`apply_wave.lua` on one server, `cas_state.lua` + `apply_user.lua` on a cluster), so an older
  or a repeated event can never overwrite newer state, whatever order replicas and retries
  arrive in.
* All keys of one user share the ``{u:<id>}`` hash tag (`service.state.keys`), so the
  user-side script can check the idempotency key, write the state, append to the sequence
  and bump the counts atomically even on Redis Cluster.
* Reads of many ids are pipelined: one round trip per call, not per id. On a single server
  the client is `MultiplexedRedis` (one pipelined connection shared by all requests), on a
  cluster redis-py's `RedisCluster` (`service.state.client`).
* Every Redis call is timed into `REDIS_LATENCY`; failures are counted in `REDIS_ERRORS` and
  raised as `StateStoreError` (HTTP 503: the caller retries, nothing is lost).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import math
import time
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

import numpy as np
from prometheus_client.metrics import Histogram

from service.actions import ACTIONS
from service.errors import InvalidInput, StateStoreError
from service.metrics import REDIS_ERRORS, REDIS_LATENCY
from service.state import keys, scripts
from service.state.client import RedisClient, connect_client
from service.state.resp import Command, ReplyError

T = TypeVar("T")

VECTOR_DTYPE = np.dtype("<f4")
SEP = "\x1f"  # unit separator between sequence entry fields; ids may not contain it
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss", "valkey+cluster": "redis"}
PLAIN_SCHEMES = {"redis": "redis", "rediss": "rediss", "valkey": "redis", "valkeys": "rediss"}
_ERRORS = (ConnectionError, OSError, TimeoutError, ReplyError)


def format_ts(ts: float) -> str:
    """The exact text a timestamp is stored as; `repr` round-trips a float, so the Lua side's
    `tonumber` sees the same double and string equality is version equality."""
    return repr(float(ts))


def encode_vector(vector: np.ndarray | Sequence[float]) -> bytes:
    return np.ascontiguousarray(vector, dtype=VECTOR_DTYPE).reshape(-1).tobytes()


def decode_vector(raw: bytes) -> np.ndarray:
    """A read-only float32 view of the stored bytes (no copy: states are only read)."""
    return np.frombuffer(raw, dtype=VECTOR_DTYPE)


def as_text(value: bytes | str) -> str:
    """A reply value as text (the client may answer bytes or str)."""
    return value.decode() if isinstance(value, bytes) else value


def sequence_entry(ts: float, action: str, category: str | None, item: str, event_id: str) -> str:
    """One behaviour-sequence entry; the tail entry's ts and event id are the user's newest
    applied event (the order guard), so no separate key has to be kept for it."""
    return SEP.join((format_ts(ts), action, category or "", item, event_id))


@dataclass(slots=True)
class VersionedState:
    """A stored state vector and the (event time, event id) that produced it.

    `ts_text` is the stored text of the time; the compare-and-set compares versions by that
    exact text, so pass the whole object back as `expected`. Treated as immutable (not
    frozen only because a frozen dataclass costs twice as much to build, once per state read).
    """

    vector: np.ndarray
    ts: float
    event_id: str
    ts_text: str

    @property
    def version(self) -> tuple[float, str]:
        return (self.ts, self.event_id)


class CasOutcome(enum.Enum):
    """Result of one compare-and-set."""

    APPLIED = 1
    SAME = 0  # the stored state already comes from this event: a retry, nothing to do
    STALE = -1  # a newer event's state is stored
    CONFLICT = -2  # the stored state changed since it was read: re-read and recompute


@dataclass(frozen=True)
class UserWrite:
    """Everything the user-side script writes for one event (see `apply_user.lua`)."""

    user_id: str
    event_id: str
    ts: float
    action: str
    item_id: str
    category_id: str | None = None
    # model -> (new user state, the state it was computed from or None)
    states: tuple[tuple[str, np.ndarray, VersionedState | None], ...] = ()


class UserOutcome(enum.Enum):
    APPLIED = 1
    DUPLICATE = 0
    STALE = -1
    CONFLICT = -2


@dataclass(frozen=True)
class UserResult:
    outcome: UserOutcome
    newer: tuple[float, str] | None = None  # STALE: the user's newer (ts, event id)
    conflict_model: str | None = None  # CONFLICT: which model's state moved


@dataclass(frozen=True)
class UserGuard:
    """What decides, before any compute, whether an event can still apply to its user."""

    seen: bool  # the idempotency key exists
    last: tuple[float, str] | None  # the user's newest applied (ts, event id)


@dataclass(frozen=True)
class UserSequence:
    """A user's recent behaviour, oldest first (bounded by the store's `sequence_max`)."""

    timestamps: np.ndarray  # float64 Unix seconds
    actions: list[str]
    categories: list[str | None]
    items: list[str]

    def __len__(self) -> int:
        return len(self.items)


@dataclass(frozen=True, slots=True)
class WaveEvent:
    """One event of an atomic wave write (`StateStore.apply_wave`).

    `verdict_only` events carry no states: the caller saw a newer event of the user and only
    asks the server whether this one is a duplicate or stale.
    """

    user_id: str
    event_id: str
    ts: float
    action: str
    item_id: str
    category_id: str | None
    verdict_only: bool = False


@dataclass(frozen=True, slots=True)
class ModelStates:
    """One model's part of a wave write: row r belongs to the r-th event that is not
    `verdict_only`. `*_from` are the states each row was computed from (None = none)."""

    new_users: np.ndarray  # [R, user_dim] float32
    user_from: Sequence[VersionedState | None]
    new_items: np.ndarray  # [R, item_dim] float32
    item_from: Sequence[VersionedState | None]


def _row_bytes(matrix: np.ndarray) -> list[memoryview]:
    """Each row of a float32 matrix as little-endian bytes, without a copy per row."""
    contiguous = np.ascontiguousarray(matrix, dtype=VECTOR_DTYPE)
    if contiguous.shape[0] == 0:
        return []
    flat = memoryview(contiguous.tobytes())
    width = contiguous.shape[1] * VECTOR_DTYPE.itemsize
    return [flat[r * width : (r + 1) * width] for r in range(contiguous.shape[0])]


class WaveCode(enum.Enum):
    APPLIED = 1
    DUPLICATE = 0
    STALE = -1
    CONFLICT = -2


@dataclass(frozen=True)
class WaveResult:
    code: WaveCode
    commit: int | None = None  # APPLIED: the store's commit number (the replay order)
    newer: tuple[float, str] | None = None  # STALE: the user's newer (ts, event id)
    conflict: tuple[int, str] | None = None  # CONFLICT: (model index, "user" | "item")


_DUPLICATE = WaveResult(WaveCode.DUPLICATE)


def parse_url(url: str, cluster: bool | None = None) -> tuple[str, bool]:
    """Normalise a Redis URL and decide standalone vs cluster.

    ``redis+cluster://`` (or ``rediss+cluster://``) or ``cluster=True`` selects Redis
    Cluster; ``valkey://`` is accepted as a synonym of ``redis://`` (the embedded server
    reports that scheme).
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in CLUSTER_SCHEMES:
        return urlunsplit(parts._replace(scheme=CLUSTER_SCHEMES[scheme])), True
    if scheme in PLAIN_SCHEMES:
        return urlunsplit(parts._replace(scheme=PLAIN_SCHEMES[scheme])), bool(cluster)
    raise InvalidInput("redis_url", f"unsupported scheme {parts.scheme!r}")


def _state_args(expected: VersionedState | None) -> tuple[str, str]:
    return ("", "") if expected is None else (expected.ts_text, expected.event_id)


class StateStore:
    """Async state store over one `RedisClient` (standalone or cluster).

    Options (all per store, set by whoever builds it from `Settings`):

    * `count_bucket_seconds`: 3600 (hourly) or 86400 (daily) action-count buckets.
    * `count_retention_seconds`: how long a bucket lives after it ends (TTL).
    * `sequence_max`: events kept in each user's behaviour sequence.
    * `idempotency_ttl_seconds`: how long a retried event id is still recognised.
    * `user_ttl_seconds`: an idle user's sequence and states expire this long after the user's
      last event (0: never), so users who never come back do not fill the memory.
    """

    def __init__(
        self,
        client: RedisClient,
        *,
        cluster: bool = False,
        count_bucket_seconds: int = 3600,
        count_retention_seconds: int = 60 * 86_400,
        sequence_max: int = 200,
        idempotency_ttl_seconds: int = 7 * 86_400,
        user_ttl_seconds: int = 30 * 86_400,
    ) -> None:
        if count_bucket_seconds <= 0 or 86_400 % count_bucket_seconds:
            raise InvalidInput("count_bucket_seconds", "must divide one day (e.g. 3600, 86400)")
        if sequence_max < 1 or idempotency_ttl_seconds < 1 or count_retention_seconds < 1:
            raise InvalidInput("state store", "bounds and TTLs must be positive")
        if user_ttl_seconds < 0:
            raise InvalidInput("user_ttl_seconds", "must be 0 (never) or positive")
        self.client = client
        self.cluster = cluster
        self.count_bucket_seconds = count_bucket_seconds
        self.count_retention_seconds = count_retention_seconds
        self.sequence_max = sequence_max
        self.idempotency_ttl_seconds = idempotency_ttl_seconds
        self.user_ttl_seconds = user_ttl_seconds
        self._latency: dict[str, Histogram] = {}

    # ---- lifecycle -----------------------------------------------------------------------

    @classmethod
    async def connect(
        cls, url: str, *, cluster: bool | None = None, timeout_s: float = 5.0, **options: Any
    ) -> StateStore:
        """Connect to `url` and check it answers PING (StateStoreError when it does not)."""
        normalised, is_cluster = parse_url(url, cluster)
        try:
            client = connect_client(normalised, cluster=is_cluster, timeout_s=timeout_s)
        except (ValueError, *_ERRORS) as exc:
            REDIS_ERRORS.labels(operation="connect").inc()
            raise StateStoreError(f"cannot connect to Redis: {exc}") from exc
        store = cls(client, cluster=is_cluster, **options)
        try:
            await store.ping()
        except StateStoreError:
            await store.close()
            raise
        return store

    async def ping(self) -> bool:
        return bool(await self._timed("ping", self.client.execute("PING")))

    async def close(self) -> None:
        # Closing a dead connection is not an error worth raising.
        with contextlib.suppress(*_ERRORS):
            await self.client.close()

    def _histogram(self, operation: str) -> Histogram:
        child = self._latency.get(operation)
        if child is None:
            child = self._latency[operation] = REDIS_LATENCY.labels(operation=operation)
        return child

    async def _timed(self, operation: str, awaitable: Awaitable[T]) -> T:
        """Await one Redis call: latency into REDIS_LATENCY, failures as StateStoreError."""
        start = time.perf_counter()
        try:
            return await awaitable
        except _ERRORS as exc:
            REDIS_ERRORS.labels(operation=operation).inc()
            raise StateStoreError(f"redis {operation} failed: {exc}") from exc
        finally:
            self._histogram(operation).observe(time.perf_counter() - start)

    async def execute(self, operation: str, *command: Any) -> Any:
        """One raw command (timed as `operation`); servables use it for their own keys."""
        return await self._timed(operation, self.client.execute(*command))

    async def pipeline(self, operation: str, commands: Sequence[Command]) -> list[Any]:
        """Raw commands in one round trip; an error reply of any of them raises."""
        replies = await self._timed(operation, self.client.pipeline(commands))
        for reply in replies:
            if isinstance(reply, ReplyError):
                REDIS_ERRORS.labels(operation=operation).inc()
                raise StateStoreError(f"redis {operation} failed: {reply}")
        return replies

    async def run_script(
        self, operation: str, script: scripts.Script, calls: Sequence[tuple[Sequence[Any], ...]]
    ) -> list[Any]:
        """Run `script` once per ``(keys, args)`` call, in order per key.

        One server: one pipeline of ``EVALSHA`` (loading the script and re-running the refused
        calls if the server answers ``NOSCRIPT``). A cluster: calls on one hash tag run one
        after the other, as in a pipeline; different tags run concurrently on their nodes.
        """
        if not calls:
            return []
        commands: list[Command] = [("EVALSHA", script.sha, len(k), *k, *a) for k, a in calls]
        if not self.cluster:
            return await self._timed(operation, self._evalsha(script, commands))
        groups: dict[str, list[int]] = {}
        for i, (k, _) in enumerate(calls):
            first = str(k[0])
            groups.setdefault(first[first.find("{") : first.find("}") + 1], []).append(i)
        results: list[Any] = [None] * len(calls)
        gate = asyncio.Semaphore(64)

        async def chain(indices: list[int]) -> None:
            async with gate:
                for i in indices:
                    (results[i],) = await self._evalsha(script, [commands[i]])

        await self._timed(operation, asyncio.gather(*(chain(g) for g in groups.values())))
        return results

    async def _evalsha(self, script: scripts.Script, commands: list[Command]) -> list[Any]:
        replies = await self.client.pipeline(commands)
        refused = [
            i for i, r in enumerate(replies) if isinstance(r, ReplyError) and r.code == "NOSCRIPT"
        ]
        if refused:
            await self.client.load_script(script.source)
            again = await self.client.pipeline([commands[i] for i in refused])
            for i, reply in zip(refused, again, strict=True):
                replies[i] = reply
        for reply in replies:
            if isinstance(reply, ReplyError):
                raise reply
        return replies

    # ---- model states ----------------------------------------------------------------------

    async def get_states(
        self, model: str, entity: str, ids: Sequence[str]
    ) -> list[VersionedState | None]:
        """The stored state of each id (None where there is none), in one pipeline."""
        return await self.get_states_of(model, [(entity, identifier) for identifier in ids])

    async def get_states_of(
        self, model: str, refs: Sequence[tuple[str, str]]
    ) -> list[VersionedState | None]:
        """States of `(entity, id)` pairs of mixed entities (an event's user and its item) in
        one pipeline, so the events path pays one round trip per wave, not one per entity."""
        if not refs:
            return []
        rows = await self.pipeline(
            "get_states",
            [("HMGET", keys.state(model, entity, i), "v", "ts", "eid") for entity, i in refs],
        )
        return [_versioned(row) for row in rows]

    async def cas_state(
        self,
        model: str,
        entity: str,
        identifier: str,
        vector: np.ndarray,
        ts: float,
        event_id: str,
        expected: VersionedState | None,
    ) -> CasOutcome:
        """Write one state if `(ts, event_id)` is newer than the stored one and the stored one
        is still `expected` (what the caller read and computed from)."""
        out = await self.cas_states(model, entity, [(identifier, vector, ts, event_id, expected)])
        return out[0]

    async def cas_states(
        self,
        model: str,
        entity: str,
        writes: Sequence[tuple[str, np.ndarray, float, str, VersionedState | None]],
    ) -> list[CasOutcome]:
        """Many `cas_state` calls in one pipeline (each still atomic on its own)."""
        calls = [
            (
                [keys.state(model, entity, identifier)],
                [format_ts(ts), event_id, encode_vector(vector), *_state_args(expected)],
            )
            for identifier, vector, ts, event_id, expected in writes
        ]
        results = await self.run_script("cas_state", scripts.CAS_STATE, calls)
        return [CasOutcome(int(r)) for r in results]

    async def scan_states(
        self, model: str, entity: str, count: int = 500
    ) -> AsyncIterator[tuple[str, VersionedState]]:
        """Every stored state of `model` for one entity kind (SCAN, so it never blocks the
        server); for refreshing an item table. States written during the scan may or may
        not be seen, as SCAN guarantees."""
        pattern = keys.state_pattern(model, entity)
        batch: list[str] = []
        iterator = self.client.scan(pattern, count)
        while True:
            try:
                raw_key = await self._timed("scan", iterator.__anext__())
            except StopAsyncIteration:
                break
            batch.append(as_text(raw_key))
            if len(batch) >= count:
                async for pair in self._load_keys(batch, entity):
                    yield pair
                batch = []
        async for pair in self._load_keys(batch, entity):
            yield pair

    async def _load_keys(
        self, key_list: list[str], entity: str
    ) -> AsyncIterator[tuple[str, VersionedState]]:
        if not key_list:
            return
        rows = await self.pipeline("scan_load", [("HMGET", k, "v", "ts", "eid") for k in key_list])
        for key, row in zip(key_list, rows, strict=True):
            state = _versioned(row)
            if state is not None:
                yield keys.id_from_state_key(key, entity), state

    # ---- user side: guards, the atomic apply, sequences, counts --------------------------

    async def user_guards(self, pairs: Sequence[tuple[str, str]]) -> list[UserGuard]:
        """For (user id, event id) pairs: is the event already applied, and what is the
        user's newest applied event. One pipeline."""
        if not pairs:
            return []
        commands: list[Command] = []
        for user_id, event_id in pairs:
            commands.append(("EXISTS", keys.idempotency(user_id, event_id)))
            commands.append(("LINDEX", keys.sequence(user_id), -1))
        rows = await self.pipeline("user_guards", commands)
        return [
            UserGuard(bool(rows[2 * i]), tail_version(rows[2 * i + 1])) for i in range(len(pairs))
        ]

    async def heads(
        self, models: Sequence[str], users: Sequence[str], items: Sequence[str]
    ) -> tuple[
        list[tuple[float, str] | None],
        list[list[VersionedState | None]],
        list[list[VersionedState | None]],
    ]:
        """What the events pipeline reads before computing, in one round trip: each user's
        newest applied event (the sequence tail), and per model each user's and each item's
        state. Returns ``(tails, user_states, item_states)``, the states as one list per model.
        """
        commands: list[Command] = [("LINDEX", keys.sequence(u), -1) for u in users]
        for model in models:
            commands += [("HMGET", keys.state(model, "user", u), "v", "ts", "eid") for u in users]
            commands += [("HMGET", keys.state(model, "item", i), "v", "ts", "eid") for i in items]
        rows = await self.pipeline("heads", commands)
        tails = [tail_version(r) for r in rows[: len(users)]]
        user_states, item_states = [], []
        at = len(users)
        for _ in models:
            user_states.append([_versioned(r) for r in rows[at : at + len(users)]])
            at += len(users)
            item_states.append([_versioned(r) for r in rows[at : at + len(items)]])
            at += len(items)
        return tails, user_states, item_states

    def bucket_start(self, ts: float) -> int:
        g = self.count_bucket_seconds
        return math.floor(ts / g) * g

    def _counts_expiry(self, ts: float) -> int:
        return self.bucket_start(ts) + self.count_bucket_seconds + self.count_retention_seconds

    def user_side(
        self,
        user_id: str,
        event_id: str,
        ts: float,
        action: str,
        item_id: str,
        category_id: str | None,
    ) -> tuple[list[str], list[Any]]:
        """What every script that applies an event's user side (`apply_wave.lua`,
        `append_log.lua`) takes per event: the keys (idempotency key, behaviour sequence,
        count bucket) and the values (ts text, event id, sequence entry, action, the count
        bucket's EXPIREAT)."""
        if SEP in user_id or SEP in item_id or SEP in event_id:
            raise InvalidInput("events", "ids must not contain the unit separator")
        g = self.count_bucket_seconds
        bucket = math.floor(ts / g) * g
        ts_text = format_ts(ts)
        return (
            [
                keys.idempotency(user_id, event_id),
                keys.sequence(user_id),
                keys.counts(user_id, g, bucket),
            ],
            [
                ts_text,
                event_id,
                SEP.join((ts_text, action, category_id or "", item_id, event_id)),
                action,
                bucket + g + self.count_retention_seconds,
            ],
        )

    async def apply_wave(
        self,
        models: Sequence[str],
        events: Sequence[WaveEvent],
        states: Sequence[ModelStates] = (),
        counters: Sequence[str] = (),
    ) -> list[WaveResult]:
        """Apply one wave (no user and no item twice) atomically with `apply_wave.lua`: one
        script call, so the round trips do not grow with the wave. `states` has one entry per
        model; every applied event adds one to its item in each sorted set of `counters`.
        Single server only; a cluster splits user and item keys over slots and uses
        `cas_states` + `apply_user_events` + `count_items` instead."""
        if self.cluster:
            raise StateStoreError("apply_wave needs a single Redis server, not a cluster")
        if not events:
            return []
        if len(states) != len(models):
            raise ValueError("apply_wave needs one ModelStates per model")
        rows = [(_row_bytes(m.new_users), _row_bytes(m.new_items)) for m in states]
        k: list[Any] = [keys.COMMITS, *counters]
        a: list[Any] = [
            len(models),
            self.sequence_max,
            self.idempotency_ttl_seconds,
            len(counters),
            self.user_ttl_seconds,
        ]
        row = 0
        for e in events:
            user_keys, user_args = self.user_side(
                e.user_id, e.event_id, e.ts, e.action, e.item_id, e.category_id
            )
            k += user_keys
            a += [*user_args, "v" if e.verdict_only else "a", e.item_id]
            for m, model in enumerate(models):
                k += [keys.state(model, "user", e.user_id), keys.state(model, "item", e.item_id)]
                if e.verdict_only:
                    a += ["", "", "", "", "", ""]
                    continue
                part, (user_rows, item_rows) = states[m], rows[m]
                a += [
                    user_rows[row],
                    *_state_args(part.user_from[row]),
                    item_rows[row],
                    *_state_args(part.item_from[row]),
                ]
            if not e.verdict_only:
                row += 1
        (flat,) = await self.run_script("apply_wave", scripts.APPLY_WAVE, [(k, a)])
        out = []
        for i in range(len(events)):
            code, x, y = flat[3 * i], flat[3 * i + 1], flat[3 * i + 2]
            if code == 1:
                out.append(WaveResult(WaveCode.APPLIED, commit=int(x)))
            elif code == 0:
                out.append(_DUPLICATE)
            elif code == -1:
                out.append(WaveResult(WaveCode.STALE, newer=(float(as_text(x)), as_text(y))))
            else:
                side = "item" if int(y) == 2 else "user"
                out.append(WaveResult(WaveCode.CONFLICT, conflict=(int(x), side)))
        return out

    async def count_items(self, counters: Sequence[str], items: Sequence[str]) -> None:
        """Add one per occurrence of each item to each sorted set of `counters`."""
        if counters and items:
            await self.pipeline(
                "count_items", [("ZINCRBY", key, 1, item) for key in counters for item in items]
            )

    async def seed_counts(self, key: str, counts: Sequence[tuple[str, float]]) -> bool:
        """Add `counts` to the sorted set `key` once, whichever replica gets here first (a
        flag set with NX decides); False when another already did. Adding commutes with the
        events' own increments, so seeding late loses none of them."""
        if not await self.execute("seed_counts", "SET", f"{key}:seeded", "1", "NX"):
            return False
        for start in range(0, len(counts), 1000):
            chunk = [c for c in counts[start : start + 1000] if c[1]]
            if chunk:
                await self.pipeline(
                    "seed_counts", [("ZINCRBY", key, float(n), item) for item, n in chunk]
                )
        return True

    async def top_counts(self, key: str, k: int) -> list[tuple[str, float]]:
        """The `k` members with the highest counts (ties: the later member first)."""
        flat = await self.execute("top_counts", "ZREVRANGE", key, 0, k - 1, "WITHSCORES")
        return [(as_text(flat[i]), float(flat[i + 1])) for i in range(0, len(flat), 2)]

    async def apply_user_events(self, writes: Sequence[UserWrite]) -> list[UserResult]:
        """Apply events to their users with `apply_user.lua` (each atomic; pipelined)."""
        calls = []
        for w in writes:
            for field, value in (("user_id", w.user_id), ("item_id", w.item_id)):
                if SEP in value:
                    raise InvalidInput(field, "must not contain the unit separator")
            k = [
                keys.idempotency(w.user_id, w.event_id),
                keys.sequence(w.user_id),
                keys.counts(w.user_id, self.count_bucket_seconds, self.bucket_start(w.ts)),
            ]
            a: list[Any] = [
                format_ts(w.ts),
                w.event_id,
                sequence_entry(w.ts, w.action, w.category_id, w.item_id, w.event_id),
                self.sequence_max,
                w.action,
                self._counts_expiry(w.ts),
                self.idempotency_ttl_seconds,
                self.user_ttl_seconds,
            ]
            for model, vector, expected in w.states:
                k.append(keys.state(model, "user", w.user_id))
                a += [encode_vector(vector), *_state_args(expected)]
            calls.append((k, a))
        results = await self.run_script("apply_user", scripts.APPLY_USER, calls)
        out = []
        for w, r in zip(writes, results, strict=True):
            code = int(r[0])
            if code == UserOutcome.STALE.value:
                out.append(UserResult(UserOutcome.STALE, newer=(float(r[1]), as_text(r[2]))))
            elif code == UserOutcome.CONFLICT.value:
                out.append(
                    UserResult(UserOutcome.CONFLICT, conflict_model=w.states[int(r[1]) - 1][0])
                )
            else:
                out.append(UserResult(UserOutcome(code)))
        return out

    async def sequences(self, user_ids: Sequence[str], n: int | None = None) -> list[UserSequence]:
        """The newest `n` (default: all kept) events of each user, oldest first, pipelined."""
        if not user_ids:
            return []
        take = self.sequence_max if n is None else max(0, min(n, self.sequence_max))
        if take == 0:
            return [UserSequence(np.zeros(0), [], [], []) for _ in user_ids]
        rows = await self.pipeline(
            "sequences", [("LRANGE", keys.sequence(u), -take, -1) for u in user_ids]
        )
        return _sequences(rows)

    async def action_counts(
        self,
        user_ids: Sequence[str],
        start: float,
        end: float,
        actions: Sequence[str] = ACTIONS,
    ) -> np.ndarray:
        """Counts per user, bucket and action: float32 ``[N, B, len(actions)]``.

        Bucket k is the store's bucket that contains ``start + k * bucket_seconds``, for
        ``B = ceil((end - start) / bucket_seconds)`` buckets, oldest first; with `start`
        aligned to the bucket size (as the scoring servables cut) these are exactly
        ``[start + k g, start + (k + 1) g)``. Buckets past their TTL read as zero.
        """
        g = self.count_bucket_seconds
        n_buckets = max(0, math.ceil((end - start) / g))
        out = np.zeros((len(user_ids), n_buckets, len(actions)), dtype=np.float32)
        if not user_ids or not n_buckets or not actions:
            return out
        first = self.bucket_start(start)
        rows = await self.pipeline(
            "action_counts",
            [
                ("HMGET", keys.counts(u, g, first + b * g), *actions)
                for u in user_ids
                for b in range(n_buckets)
            ],
        )
        values = [[0 if v is None else int(v) for v in row] for row in rows]
        out[:] = np.asarray(values, dtype=np.float32).reshape(out.shape)
        return out

    # ---- bounded float histories (sales), region slot ---------------------------------------

    async def append_history(
        self,
        region: str,
        name: str,
        rows: Sequence[tuple[str, Sequence[float] | np.ndarray]],
        limit: int = 400,
    ) -> int:
        """Store rows (sortable row key such as an ISO date, values) under the region's
        history `name`, keeping the newest `limit`, and increment the region's history
        revision in the same script. Re-sending a row overwrites it, so a retried ingestion
        is idempotent. Returns the number of rows kept."""
        if limit < 1:
            raise InvalidInput("limit", "must be positive")
        args: list[Any] = [limit]
        for row_key, values in rows:
            args += [row_key, encode_vector(values)]
        (result,) = await self.run_script(
            "append_history",
            scripts.HISTORY_APPEND,
            [([keys.history(region, name), keys.history_revision(region)], args)],
        )
        return int(result)

    async def _history_rows(self, region: str, name: str) -> tuple[list[str], list[bytes]]:
        """The row keys of a region's history and their stored bytes, in the server's order."""
        flat = await self.execute("read_history", "HGETALL", keys.history(region, name))
        return [as_text(k) for k in flat[0::2]], flat[1::2]

    async def read_history(
        self, region: str, name: str, n: int | None = None
    ) -> list[tuple[str, np.ndarray]]:
        """The newest `n` rows (all when None), oldest first."""
        names, raw = await self._history_rows(region, name)
        rows = sorted(zip(names, map(decode_vector, raw), strict=True))
        return rows if n is None else rows[-n:] if n > 0 else []

    async def read_history_scalars(self, region: str, name: str) -> dict[str, float]:
        """Each row's first value by row key, oldest first: the form one-number histories
        (sales, external factors) are read in on every forecast. One decode for the whole
        history instead of an array per row (measured: the per-row arrays of `read_history`
        were 7 % of a festival forecast's CPU)."""
        names, raw = await self._history_rows(region, name)
        if all(len(r) == VECTOR_DTYPE.itemsize for r in raw):
            values = np.frombuffer(b"".join(raw), dtype=VECTOR_DTYPE).tolist()
        else:  # rows of several values: their first
            values = [float(decode_vector(r)[0]) for r in raw]
        return dict(sorted(zip(names, values, strict=True)))


def _sequences(rows: Sequence[Sequence[bytes | str]]) -> list[UserSequence]:
    """Stored sequences (entries of `sequence_entry`) as columns, one per row.

    One join, one decode and one split for every entry of every user of the call, instead of
    a split per entry or per user: a scoring wave reads thousands of entries, and the per-call
    price of the string operations was the larger part (measured: 2.0 against 3.5 ms for 256
    users of 30 entries). Entries from before event ids were kept (four fields) take the
    per-entry path.
    """
    out: list[UserSequence] = []
    try:  # bytes from the server: join them, then decode once
        joined = b"\x1f".join([b"\x1f".join(cast(Sequence[bytes], row)) for row in rows if row])
        parts = joined.decode().split(SEP)
    except TypeError:  # a client that answers text
        parts = SEP.join([as_text(raw) for row in rows for raw in row]).split(SEP)
    if parts == [""]:
        parts = []
    if len(parts) != 5 * sum(len(row) for row in rows):
        return [_old_sequence(row) for row in rows]
    stamps = np.asarray(parts[0::5], dtype=np.float64)
    actions, categories, items = parts[1::5], parts[2::5], parts[3::5]
    start = 0
    for row in rows:
        stop = start + len(row)
        out.append(
            UserSequence(
                stamps[start:stop],
                actions[start:stop],
                [c or None for c in categories[start:stop]],
                items[start:stop],
            )
        )
        start = stop
    return out


def _old_sequence(row: Sequence[bytes | str]) -> UserSequence:
    """One stored sequence, entry by entry: any mix of four- and five-field entries."""
    fields = [as_text(raw).split(SEP, 4) for raw in row]
    return UserSequence(
        np.asarray([f[0] for f in fields], dtype=np.float64),
        [f[1] for f in fields],
        [f[2] or None for f in fields],
        [f[3] for f in fields],
    )


def tail_version(entry: bytes | str | None) -> tuple[float, str] | None:
    """(ts, event id) of a sequence tail entry (see `sequence_entry`); None when empty."""
    if entry is None:
        return None
    fields = as_text(entry).split(SEP)
    return (float(fields[0]), fields[4] if len(fields) > 4 else "")


def _versioned(row: Sequence[bytes | None]) -> VersionedState | None:
    vector, ts, event_id = row
    if vector is None or ts is None or event_id is None:
        return None
    ts_text = as_text(ts)
    return VersionedState(decode_vector(vector), float(ts_text), as_text(event_id), ts_text)
