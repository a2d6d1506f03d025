"""`StateStore`: salecast's online state in Redis (standalone or cluster).

What lives here and why it is shaped this way:

* Vectors are stored as raw little-endian float32 bytes, not JSON: a 64-d state is 256 bytes
  instead of ~1.2 kB of text, and decoding is one `np.frombuffer` instead of a parser.
* Every model-state write is a Lua compare-and-set keyed on the event's ``(ts, event id)``
  (`cas_state.lua`, `apply_user.lua`), so an older or a repeated event can never overwrite
  newer state, whatever order replicas and retries arrive in.
* All keys of one user share the ``{u:<id>}`` hash tag (`service.state.keys`), so the
  user-side script can check the idempotency key, write the state, append to the sequence
  and bump the counts atomically even on Redis Cluster.
* Reads of many ids are pipelined: one round trip per call, not per id.
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
from importlib import resources
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

import numpy as np
from redis import exceptions as redis_exceptions
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from service.errors import InvalidInput, StateStoreError
from service.metrics import REDIS_ERRORS, REDIS_LATENCY
from service.state import keys

T = TypeVar("T")

ACTIONS: tuple[str, ...] = ("browse", "collect", "cart", "purchase")
VECTOR_DTYPE = np.dtype("<f4")
SEP = "\x1f"  # unit separator between sequence entry fields; ids may not contain it
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss", "valkey+cluster": "redis"}
PLAIN_SCHEMES = {"redis": "redis", "rediss": "rediss", "valkey": "redis", "valkeys": "rediss"}
_ERRORS = (redis_exceptions.RedisError, OSError, asyncio.TimeoutError)


def format_ts(ts: float) -> str:
    """The exact text a timestamp is stored as; `repr` round-trips a float, so the Lua side's
    `tonumber` sees the same double and string equality is version equality."""
    return repr(float(ts))


def encode_vector(vector: np.ndarray | Sequence[float]) -> bytes:
    return np.ascontiguousarray(vector, dtype=VECTOR_DTYPE).reshape(-1).tobytes()


def decode_vector(raw: bytes) -> np.ndarray:
    return np.frombuffer(raw, dtype=VECTOR_DTYPE).astype(np.float32)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass(frozen=True)
class VersionedState:
    """A stored state vector and the (event time, event id) that produced it.

    `ts_text` is the stored text of the time; the compare-and-set compares versions by that
    exact text, so pass the whole object back as `expected`.
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


def _load_script(name: str) -> str:
    return resources.files("service.state").joinpath(name).read_text(encoding="utf-8")


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


class StateStore:
    """Async state store over one `redis.asyncio` client (standalone or cluster).

    Options (all per store, set by whoever builds it from `Settings`):

    * `count_bucket_seconds`: 3600 (hourly) or 86400 (daily) action-count buckets.
    * `count_retention_seconds`: how long a bucket lives after it ends (TTL).
    * `sequence_max`: events kept in each user's behaviour sequence.
    * `idempotency_ttl_seconds`: how long a retried event id is still recognised.
    """

    def __init__(
        self,
        client: Redis | RedisCluster,
        *,
        cluster: bool = False,
        count_bucket_seconds: int = 3600,
        count_retention_seconds: int = 60 * 86_400,
        sequence_max: int = 200,
        idempotency_ttl_seconds: int = 7 * 86_400,
    ) -> None:
        if count_bucket_seconds <= 0 or 86_400 % count_bucket_seconds:
            raise InvalidInput("count_bucket_seconds", "must divide one day (e.g. 3600, 86400)")
        if sequence_max < 1 or idempotency_ttl_seconds < 1 or count_retention_seconds < 1:
            raise InvalidInput("state store", "bounds and TTLs must be positive")
        self.redis = client
        self.cluster = cluster
        self.count_bucket_seconds = count_bucket_seconds
        self.count_retention_seconds = count_retention_seconds
        self.sequence_max = sequence_max
        self.idempotency_ttl_seconds = idempotency_ttl_seconds
        self._cas = client.register_script(_load_script("cas_state.lua"))
        self._apply_user = client.register_script(_load_script("apply_user.lua"))
        self._history = client.register_script(_load_script("history_append.lua"))

    # ---- lifecycle -----------------------------------------------------------------------

    @classmethod
    async def connect(
        cls, url: str, *, cluster: bool | None = None, timeout_s: float = 5.0, **options: Any
    ) -> StateStore:
        """Connect to `url` and check it answers PING (StateStoreError when it does not)."""
        normalised, is_cluster = parse_url(url, cluster)
        client: Redis | RedisCluster
        common: dict[str, Any] = {"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s}
        try:
            if is_cluster:
                client = RedisCluster.from_url(normalised, **common)
            else:
                client = Redis.from_url(normalised, **common)
        except (ValueError, *_ERRORS) as exc:
            REDIS_ERRORS.labels(operation="connect").inc()
            raise StateStoreError(f"cannot connect to Redis: {exc}") from exc
        store = cls(client, cluster=is_cluster, **options)
        await store.ping()
        return store

    async def ping(self) -> bool:
        return bool(await self._timed("ping", self.redis.ping()))

    async def close(self) -> None:
        # Closing a dead connection is not an error worth raising.
        with contextlib.suppress(*_ERRORS):
            await self.redis.aclose()

    async def _timed(self, operation: str, awaitable: Awaitable[T]) -> T:
        """Await one Redis call: latency into REDIS_LATENCY, failures as StateStoreError."""
        start = time.perf_counter()
        try:
            return await awaitable
        except _ERRORS as exc:
            REDIS_ERRORS.labels(operation=operation).inc()
            raise StateStoreError(f"redis {operation} failed: {exc}") from exc
        finally:
            REDIS_LATENCY.labels(operation=operation).observe(time.perf_counter() - start)

    def _pipeline(self) -> Any:
        return self.redis.pipeline(transaction=False)

    async def _run_scripts(
        self, operation: str, script: Any, calls: Sequence[tuple[list[str], list[Any]]]
    ) -> list[Any]:
        """Run one script for many key sets, in order per key: one pipeline on standalone
        Redis; on a cluster, concurrent calls (each to its own slot's node), sequential per
        hash tag."""
        if not calls:
            return []
        if not self.cluster:
            pipe = self._pipeline()
            for k, a in calls:
                await script(keys=k, args=a, client=pipe)
            return list(await self._timed(operation, pipe.execute()))
        # Calls on one hash tag (one user, one item) keep their order: they run one after the
        # other, as in a pipeline; different tags run concurrently.
        groups: dict[str, list[int]] = {}
        for i, (k, _) in enumerate(calls):
            first = k[0]
            groups.setdefault(first[first.find("{") : first.find("}") + 1], []).append(i)
        results: list[Any] = [None] * len(calls)
        gate = asyncio.Semaphore(64)

        async def chain(indices: list[int]) -> None:
            async with gate:
                for i in indices:
                    results[i] = await script(keys=calls[i][0], args=calls[i][1])

        await self._timed(operation, asyncio.gather(*(chain(g) for g in groups.values())))
        return results

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
        pipe = self._pipeline()
        for entity, identifier in refs:
            pipe.hmget(keys.state(model, entity, identifier), "v", "ts", "eid")
        rows = await self._timed("get_states", pipe.execute())
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
                [
                    format_ts(ts),
                    event_id,
                    encode_vector(vector),
                    "" if expected is None else expected.ts_text,
                    "" if expected is None else expected.event_id,
                ],
            )
            for identifier, vector, ts, event_id, expected in writes
        ]
        results = await self._run_scripts("cas_state", self._cas, calls)
        return [CasOutcome(int(r)) for r in results]

    async def scan_states(
        self, model: str, entity: str, count: int = 500
    ) -> AsyncIterator[tuple[str, VersionedState]]:
        """Every stored state of `model` for one entity kind (SCAN, so it never blocks the
        server); for refreshing an item table. States written during the scan may or may
        not be seen, as SCAN guarantees."""
        pattern = keys.state_pattern(model, entity)
        batch: list[str] = []
        iterator = self.redis.scan_iter(match=pattern, count=count)
        while True:
            try:
                raw_key = await self._timed("scan", iterator.__anext__())
            except StopAsyncIteration:
                break
            batch.append(_text(raw_key))
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
        pipe = self._pipeline()
        for key in key_list:
            pipe.hmget(key, "v", "ts", "eid")
        rows = await self._timed("scan_load", pipe.execute())
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
        pipe = self._pipeline()
        for user_id, event_id in pairs:
            pipe.exists(keys.idempotency(user_id, event_id))
            pipe.hmget(keys.last_event(user_id), "ts", "eid")
        rows = await self._timed("user_guards", pipe.execute())
        out = []
        for i in range(len(pairs)):
            seen, last = rows[2 * i], rows[2 * i + 1]
            version = None if last[0] is None else (float(last[0]), _text(last[1]))
            out.append(UserGuard(bool(seen), version))
        return out

    def bucket_start(self, ts: float) -> int:
        g = self.count_bucket_seconds
        return math.floor(ts / g) * g

    async def apply_user_events(self, writes: Sequence[UserWrite]) -> list[UserResult]:
        """Apply events to their users with `apply_user.lua` (each atomic; pipelined)."""
        calls = []
        for w in writes:
            for field, value in (("user_id", w.user_id), ("item_id", w.item_id)):
                if SEP in value:
                    raise InvalidInput(field, "must not contain the unit separator")
            bucket = self.bucket_start(w.ts)
            k = [
                keys.idempotency(w.user_id, w.event_id),
                keys.last_event(w.user_id),
                keys.sequence(w.user_id),
                keys.counts(w.user_id, self.count_bucket_seconds, bucket),
            ]
            entry = SEP.join((format_ts(w.ts), w.action, w.category_id or "", w.item_id))
            a: list[Any] = [
                format_ts(w.ts),
                w.event_id,
                entry,
                self.sequence_max,
                w.action,
                bucket + self.count_bucket_seconds + self.count_retention_seconds,
                self.idempotency_ttl_seconds,
            ]
            for model, vector, expected in w.states:
                k.append(keys.state(model, "user", w.user_id))
                a += [
                    encode_vector(vector),
                    "" if expected is None else expected.ts_text,
                    "" if expected is None else expected.event_id,
                ]
            calls.append((k, a))
        results = await self._run_scripts("apply_user", self._apply_user, calls)
        out = []
        for w, r in zip(writes, results, strict=True):
            code = int(r[0])
            if code == UserOutcome.STALE.value:
                out.append(UserResult(UserOutcome.STALE, newer=(float(r[1]), _text(r[2]))))
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
        pipe = self._pipeline()
        for user_id in user_ids:
            pipe.lrange(keys.sequence(user_id), -take, -1)
        rows = await self._timed("sequences", pipe.execute())
        out = []
        for row in rows:
            ts, actions, cats, items = [], [], [], []
            for raw in row:
                t, a, c, i = _text(raw).split(SEP, 3)
                ts.append(float(t))
                actions.append(a)
                cats.append(c or None)
                items.append(i)
            out.append(UserSequence(np.asarray(ts, dtype=np.float64), actions, cats, items))
        return out

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
        pipe = self._pipeline()
        for user_id in user_ids:
            for b in range(n_buckets):
                pipe.hmget(keys.counts(user_id, g, first + b * g), *actions)
        rows = await self._timed("action_counts", pipe.execute())
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
        history `name`, keeping the newest `limit`. Re-sending a row overwrites it, so a
        retried ingestion is idempotent. Returns the number of rows kept."""
        if limit < 1:
            raise InvalidInput("limit", "must be positive")
        args: list[Any] = [limit]
        for row_key, values in rows:
            args += [row_key, encode_vector(values)]
        result = await self._timed(
            "append_history", self._history(keys=[keys.history(region, name)], args=args)
        )
        return int(result)

    async def read_history(
        self, region: str, name: str, n: int | None = None
    ) -> list[tuple[str, np.ndarray]]:
        """The newest `n` rows (all when None), oldest first."""
        raw = await self._timed("read_history", self.redis.hgetall(keys.history(region, name)))
        rows = sorted((_text(k), decode_vector(cast(bytes, v))) for k, v in raw.items())
        return rows if n is None else rows[-n:] if n > 0 else []


def _versioned(row: Sequence[bytes | None]) -> VersionedState | None:
    vector, ts, event_id = row
    if vector is None or ts is None or event_id is None:
        return None
    ts_text = _text(ts)
    return VersionedState(decode_vector(vector), float(ts_text), _text(event_id), ts_text)
