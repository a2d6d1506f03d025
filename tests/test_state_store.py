"""StateStore against a real embedded valkey-server: bytes, compare-and-set, sequences, counts."""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
import redis

from service.errors import InvalidInput, StateStoreError
from service.metrics import REDIS_LATENCY
from service.state import keys
from service.state.embedded import EmbeddedRedis
from service.state.store import (
    CasOutcome,
    StateStore,
    UserOutcome,
    UserWrite,
    parse_url,
)

T = TypeVar("T")


def run(url: str, body: Callable[[StateStore], Awaitable[T]], **options: Any) -> T:
    """Run `body` with a fresh store on its own event loop (no pytest-asyncio needed)."""

    async def main() -> T:
        store = await StateStore.connect(url, **options)
        try:
            return await body(store)
        finally:
            await store.close()

    return asyncio.run(main())


def test_keys_share_a_slot_and_escape_braces() -> None:
    user = "we}ird{id%"
    k1, k2 = keys.sequence(user), keys.idempotency(user, "e}1")
    tag1 = k1[k1.index("{") + 1 : k1.index("}")]
    tag2 = k2[k2.index("{") + 1 : k2.index("}")]
    assert tag1 == tag2 == "u:we%7Dird%7Bid%25"
    assert keys.unescape(keys.escape(user)) == user
    assert keys.id_from_state_key(keys.state("imn", "item", user), "item") == user
    assert keys.tag("user", "7") != keys.tag("item", "7")


def test_parse_url_selects_cluster() -> None:
    assert parse_url("redis://h:1/0") == ("redis://h:1/0", False)
    assert parse_url("redis+cluster://h:1") == ("redis://h:1", True)
    assert parse_url("valkey://h:1", cluster=True) == ("redis://h:1", True)
    with pytest.raises(InvalidInput):
        parse_url("http://h:1")


def test_vectors_round_trip_as_float32_bytes(clean_redis: str) -> None:
    vec = np.array([0.1, -2.5, 3e-8, 1e30], dtype=np.float64)

    async def body(store: StateStore) -> None:
        assert await store.cas_state("m", "user", "u1", vec, 10.0, "e1", None) is CasOutcome.APPLIED
        [got, missing] = await store.get_states("m", "user", ["u1", "nobody"])
        assert missing is None and got is not None
        assert got.vector.dtype == np.float32
        np.testing.assert_array_equal(got.vector, vec.astype(np.float32))
        assert got.version == (10.0, "e1")

    run(clean_redis, body)
    raw = redis.Redis.from_url(clean_redis).hget(keys.state("m", "user", "u1"), "v")
    assert raw == vec.astype("<f4").tobytes()  # bytes, not JSON


def test_cas_orders_by_time_then_event_id(clean_redis: str) -> None:
    one, two = np.ones(2), np.full(2, 2.0)

    async def body(store: StateStore) -> None:
        assert await store.cas_state("m", "item", "i", one, 10.0, "b", None) is CasOutcome.APPLIED
        [cur] = await store.get_states("m", "item", ["i"])
        # an older event never overwrites the newer state, even with a correct expectation
        assert await store.cas_state("m", "item", "i", two, 9.0, "z", cur) is CasOutcome.STALE
        # equal time: ordered by event id
        assert await store.cas_state("m", "item", "i", two, 10.0, "a", cur) is CasOutcome.STALE
        # the very same event again: recognised, not re-applied
        assert await store.cas_state("m", "item", "i", two, 10.0, "b", cur) is CasOutcome.SAME
        # a newer event computed from an outdated read: conflict
        assert await store.cas_state("m", "item", "i", two, 11.0, "a", None) is CasOutcome.CONFLICT
        assert await store.cas_state("m", "item", "i", two, 10.0, "c", cur) is CasOutcome.APPLIED
        [now] = await store.get_states("m", "item", ["i"])
        assert now is not None and now.version == (10.0, "c")
        np.testing.assert_array_equal(now.vector, two)

    run(clean_redis, body)


def test_concurrent_writers_end_in_newest_state(clean_redis: str) -> None:
    """Two clients race read-modify-write on one key; conflicts are retried, none is lost."""

    async def writer(
        store: StateStore,
        events: list[tuple[float, str]],
        barrier: asyncio.Barrier,
        lag: float,
    ) -> int:
        conflicts = 0
        for n, (ts, eid) in enumerate(events):
            while True:
                [cur] = await store.get_states("m", "user", ["hot"])
                count = 0.0 if cur is None else float(cur.vector[0])
                if n == 0 and cur is None:
                    # Round one: both read the empty key before either writes, and the newer
                    # event writes last, so its expectation (no state) is outdated: conflict.
                    await barrier.wait()
                    await asyncio.sleep(lag)
                await asyncio.sleep(0.002)  # widen the race window for the later rounds
                res = await store.cas_state(
                    "m", "user", "hot", np.array([count + 1, ts]), ts, eid, cur
                )
                if res is CasOutcome.CONFLICT:
                    conflicts += 1
                    continue
                break
            if n == 0:
                await barrier.wait()  # both first events are settled before the free race
        return conflicts

    async def main() -> tuple[int, int]:
        a = [(float(t), f"a{t:03d}") for t in range(0, 60, 2)]
        b = [(float(t), f"b{t:03d}") for t in range(1, 60, 2)]
        sa, sb = await StateStore.connect(clean_redis), await StateStore.connect(clean_redis)
        barrier = asyncio.Barrier(2)
        try:
            ca, cb = await asyncio.gather(writer(sa, a, barrier, 0.0), writer(sb, b, barrier, 0.1))
        finally:
            await sa.close()
            await sb.close()
        return ca, cb

    _, cb = asyncio.run(main())
    assert cb > 0  # the race really happened

    async def read(store: StateStore) -> None:
        [cur] = await store.get_states("m", "user", ["hot"])
        assert cur is not None
        assert cur.version == (59.0, "b059")
        # every write that was applied counted once; stale ones (older than the newest) not
        assert 2 <= cur.vector[0] <= 60

    run(clean_redis, read)


def _write(user: str, eid: str, ts: float, action: str = "browse", item: str = "i") -> UserWrite:
    return UserWrite(user, eid, ts, action, item, "c1")


def test_user_apply_is_idempotent_and_ordered(clean_redis: str) -> None:
    now = time.time()

    async def body(store: StateStore) -> None:
        r = await store.apply_user_events([_write("u", "e2", now), _write("u", "e2", now)])
        assert [x.outcome for x in r] == [UserOutcome.APPLIED, UserOutcome.DUPLICATE]
        [old] = await store.apply_user_events([_write("u", "e1", now - 5)])
        assert old.outcome is UserOutcome.STALE and old.newer == (now, "e2")
        [g] = await store.user_guards([("u", "e2")])
        assert g.seen and g.last == (now, "e2")
        ttl = redis.Redis.from_url(clean_redis).ttl(keys.idempotency("u", "e2"))
        assert 0 < ttl <= store.idempotency_ttl_seconds

    run(clean_redis, body)


def test_sequence_is_bounded_and_ordered(clean_redis: str) -> None:
    now = time.time()

    async def body(store: StateStore) -> None:
        writes = [_write("u", f"e{k:02d}", now + k, "cart", f"item{k}") for k in range(8)]
        for w in writes:  # one at a time, in order
            await store.apply_user_events([w])
        seq, empty = await store.sequences(["u", "nobody"])
        assert len(empty) == 0
        assert seq.items == [f"item{k}" for k in range(3, 8)]
        assert seq.actions == ["cart"] * 5 and seq.categories == ["c1"] * 5
        np.testing.assert_allclose(seq.timestamps, [now + k for k in range(3, 8)])
        [last2] = await store.sequences(["u"], n=2)
        assert last2.items == ["item6", "item7"]

    run(clean_redis, body, sequence_max=5)


def test_counts_per_hour_bucket(clean_redis: str) -> None:
    hour = 3600
    base = (int(time.time()) // hour - 3) * hour  # three hours ago, aligned

    async def body(store: StateStore) -> None:
        events = [
            _write("u", "a", base + 10, "browse"),
            _write("u", "b", base + 20, "browse"),
            _write("u", "c", base + 30, "purchase"),
            _write("u", "d", base + 2 * hour + 5, "cart"),
        ]
        for e in events:
            await store.apply_user_events([e])
        counts = await store.action_counts(["u", "v"], base, base + 3 * hour)
        assert counts.shape == (2, 3, 4)
        np.testing.assert_array_equal(counts[0, 0], [2, 0, 0, 1])
        np.testing.assert_array_equal(counts[0, 1], [0, 0, 0, 0])
        np.testing.assert_array_equal(counts[0, 2], [0, 0, 1, 0])
        assert not counts[1].any()
        ttl = redis.Redis.from_url(clean_redis).ttl(keys.counts("u", hour, base))
        assert 0 < ttl <= hour + store.count_retention_seconds

    run(clean_redis, body, count_bucket_seconds=hour)


def test_history_rows_are_idempotent_and_bounded(clean_redis: str) -> None:
    async def body(store: StateStore) -> None:
        rows = [(f"2024-01-{d:02d}", [float(d), 2.0 * d]) for d in range(1, 6)]
        assert await store.append_history("north}", "sales", rows, limit=3) == 3
        assert await store.append_history("north}", "sales", rows[-1:], limit=3) == 3
        got = await store.read_history("north}", "sales", n=2)
        assert [k for k, _ in got] == ["2024-01-04", "2024-01-05"]
        np.testing.assert_array_equal(got[-1][1], [5.0, 10.0])
        # Every write, a re-sent one too, moved the region's revision in its own script.
        revision = await store.execute("t", "GET", keys.history_revision("north}"))
        assert int(revision) == 2
        assert await store.execute("t", "GET", keys.history_revision("south")) is None

    run(clean_redis, body)


def test_scalar_history_reads_each_rows_first_value_in_key_order(clean_redis: str) -> None:
    async def body(store: StateStore) -> None:
        days = [3, 1, 2]  # written out of order: the read sorts by row key
        await store.append_history("r", "one", [(f"2024-01-0{d}", [d + 0.25]) for d in days])
        got = await store.read_history_scalars("r", "one")
        assert list(got.items()) == [
            ("2024-01-01", 1.25),
            ("2024-01-02", 2.25),
            ("2024-01-03", 3.25),
        ]
        await store.append_history("r", "two", [("b", [1.5, 9.0]), ("a", [0.5, 8.0])])
        assert list((await store.read_history_scalars("r", "two")).items()) == [
            ("a", 0.5),
            ("b", 1.5),
        ]
        assert await store.read_history_scalars("r", "none") == {}

    run(clean_redis, body)


def test_scan_states_finds_every_item(clean_redis: str) -> None:
    async def body(store: StateStore) -> None:
        ids = [f"i{k}" for k in range(30)] + ["x}y"]
        await store.cas_states("m", "item", [(i, np.ones(2), 1.0, "e", None) for i in ids])
        await store.cas_state("other", "item", "i0", np.ones(2), 1.0, "e", None)
        await store.cas_state("m", "user", "i0", np.ones(2), 1.0, "e", None)
        found = {i: s async for i, s in store.scan_states("m", "item", count=7)}
        assert set(found) == set(ids)

    run(clean_redis, body)


def test_errors_become_state_store_error_and_latency_is_timed(clean_redis: str) -> None:
    before = REDIS_LATENCY.labels(operation="get_states")._sum.get()

    async def body(store: StateStore) -> None:
        await store.get_states("m", "user", ["u"])
        redis.Redis.from_url(clean_redis).set(keys.state("m", "user", "bad"), "x")
        with pytest.raises(StateStoreError):  # WRONGTYPE from the server
            await store.get_states("m", "user", ["bad"])

    run(clean_redis, body)
    assert REDIS_LATENCY.labels(operation="get_states")._sum.get() > before

    async def unreachable() -> None:
        await StateStore.connect("redis://127.0.0.1:1/0", timeout_s=0.5)

    with pytest.raises(StateStoreError):
        asyncio.run(unreachable())


def _cluster_port() -> int:
    """A free port with a free cluster-bus port 10000 above it (so at most 55535)."""
    for port in random.Random().sample(range(20_000, 55_000), 200):
        try:
            for p in (port, port + 10_000):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", p))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair")


def test_cluster_mode_on_a_one_node_cluster(tmp_path: Path) -> None:
    """`redis+cluster://` selects RedisCluster; scripts, pipelines and SCAN work across it.

    A real valkey-server in cluster mode owning all 16384 slots: every key must carry a hash
    tag that keeps a script's keys on one slot, or the server refuses the script."""
    server = EmbeddedRedis(
        tmp_path,
        port=_cluster_port(),
        extra_config={"cluster-enabled": "yes", "cluster-config-file": "nodes.conf"},
    )
    url = server.start()
    try:
        admin = redis.Redis.from_url(url)
        admin.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        deadline = time.monotonic() + 10
        while b"cluster_state:ok" not in admin.execute_command("CLUSTER", "INFO"):
            assert time.monotonic() < deadline, "cluster did not become ready"
            time.sleep(0.05)
        admin.close()
        now = time.time()

        async def body(store: StateStore) -> None:
            assert store.cluster
            assert await store.cas_state("m", "item", "i}1", np.ones(2), 1.0, "e", None) is (
                CasOutcome.APPLIED
            )
            writes = [_write(f"u{k % 3}", f"e{k}", now - 100 + k, "cart") for k in range(9)]
            results = await store.apply_user_events(writes)
            assert {r.outcome for r in results} == {UserOutcome.APPLIED}
            [seq] = await store.sequences(["u0"])
            assert len(seq) == 3
            assert [k async for k, _ in store.scan_states("m", "item")] == ["i}1"]

        run(url.replace("redis://", "redis+cluster://"), body)
    finally:
        server.stop()


def test_stored_sequences_parse_in_one_pass_whatever_the_rows_hold() -> None:
    """Empty rows, text or bytes replies, and entries written before event ids were kept
    (four fields) all give each user's own columns."""
    from service.state.store import _sequences, sequence_entry

    rows = [
        [sequence_entry(5.0, "cart", None, "i1", "e1")],
        [],
        [
            sequence_entry(6.0, "browse", "c", "j", "f"),
            sequence_entry(7.5, "purchase", "c", "k", "g"),
        ],
    ]
    for given in (rows, [[entry.encode() for entry in row] for row in rows]):
        got = _sequences(given)
        assert [s.timestamps.tolist() for s in got] == [[5.0], [], [6.0, 7.5]]
        assert [s.actions for s in got] == [["cart"], [], ["browse", "purchase"]]
        assert [s.categories for s in got] == [[None], [], ["c", "c"]]
        assert [s.items for s in got] == [["i1"], [], ["j", "k"]]
    old = _sequences(
        [[b"1.0\x1fbrowse\x1f\x1fi0"], [sequence_entry(2.0, "cart", "c", "j", "f").encode()]]
    )
    assert [(s.timestamps.tolist(), s.items, s.categories) for s in old] == [
        ([1.0], ["i0"], [None]),
        ([2.0], ["j"], ["c"]),
    ]
    assert _sequences([[], []])[1].timestamps.size == 0
