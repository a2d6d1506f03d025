"""`POST /v1/events` on a minimal app with only the events router, a real valkey-server and a
small numpy `StateUpdater` (a stand-in model, not a mock of anything salecast ships)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, ClassVar, cast

import numpy as np
import pytest
import redis as redis_lib
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.api.errors import install_error_handlers
from service.api.routes.events import router
from service.errors import NotReady, StateStoreError
from service.events import Event, EventPipeline, make_waves
from service.events.ingest import EventIngestor
from service.events.outcomes import BatchResult
from service.events.schema import Status
from service.events.two_phase import TwoPhaseWriter
from service.events.waves import WAVE_MAX
from service.state.store import StateStore, UserResult, UserWrite, WaveResult

NOW = float(int(time.time()) // 3600 * 3600 - 7200)  # two hours ago, hour-aligned


class ToyUpdater:
    """user' = 0.5 user + item + [1, dt]; item' = item + [1, 0]. Records every wave."""

    model = "toy"
    user_dim = 2
    item_dim = 2
    counters = ("sc:pop:toy:test",)

    def __init__(self) -> None:
        self.waves: list[list[str]] = []
        self.committed_items: list[str] = []

    def initial_user_state(self) -> np.ndarray:
        return np.zeros(2, dtype=np.float32)

    def initial_item_state(self) -> np.ndarray:
        return np.zeros(2, dtype=np.float32)

    async def update(
        self,
        events: Sequence[Event],
        user_states: np.ndarray,
        item_states: np.ndarray,
        user_prev_ts: np.ndarray,
        item_prev_ts: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        users = [e.user_id for e in events]
        items = [e.item_id for e in events]
        assert len(set(users)) == len(users) and len(set(items)) == len(items)
        self.waves.append([e.event_id for e in events])
        dt = np.asarray([e.ts for e in events]) - user_prev_ts
        new_u = 0.5 * user_states + item_states + np.stack([np.ones(len(events)), dt], axis=1)
        new_i = item_states + np.array([1.0, 0.0])
        return new_u.astype(np.float32), new_i.astype(np.float32)

    def committed(self, events: Sequence[Event], item_states: np.ndarray) -> None:
        self.committed_items += [e.item_id for e in events]


def make_app(url: str, updaters: list[Any], store_cls: type[StateStore] = StateStore) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = await store_cls.connect(url)
        app.state.store = store
        app.state.events = EventIngestor(EventPipeline(store, updaters))
        yield
        await store.close()

    app = FastAPI(lifespan=lifespan)
    install_error_handlers(app)  # the service's own exception -> status mapping
    app.include_router(router)
    return app


def committed(result: BatchResult, status: Status) -> list[tuple[int, str]]:
    """(commit number, event id) of each outcome with `status`; every such outcome must carry
    both, since the replica tests order them by commit."""
    out: list[tuple[int, str]] = []
    for o in result.results:
        if o.status == status:
            assert o.commit is not None and o.event_id is not None
            out.append((o.commit, o.event_id))
    return out


def ev(eid: str, user: str, item: str, ts: float | str, action: str = "browse", **kw: Any) -> dict:
    return {
        "event_id": eid,
        "user_id": user,
        "item_id": item,
        "action": action,
        "timestamp": ts,
        **kw,
    }


def read_states(url: str, model: str, entity: str, ids: list[str]) -> list[Any]:
    async def main() -> list[Any]:
        store = await StateStore.connect(url)
        try:
            return await store.get_states(model, entity, ids)
        finally:
            await store.close()

    return asyncio.run(main())


async def toy_states(
    url: str, events: list[dict[str, Any]]
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Every toy state (vector and version) and every sequence (item ids) `events` name."""
    store = await StateStore.connect(url)
    try:
        users = sorted({e["user_id"] for e in events})
        items = sorted({e["item_id"] for e in events})
        found = await store.get_states("toy", "user", users) + await store.get_states(
            "toy", "item", items
        )
        vectors = {
            name: (s.vector.tolist(), s.version) if s else None
            for name, s in zip(users + items, found, strict=True)
        }
        seqs = {u: s.items for u, s in zip(users, await store.sequences(users), strict=True)}
        return vectors, seqs
    finally:
        await store.close()


def test_batch_applies_in_waves_and_replay_is_duplicate(clean_redis: str) -> None:
    toy = ToyUpdater()
    batch = [
        ev("e3", "u1", "i2", NOW + 30, "buy"),
        ev("e1", "u1", "i1", NOW + 10, "click", category_id="c"),
        ev("e2", "u2", "i1", NOW + 20, "fav", features={"price": 9.5}),
        ev("e4", "u3", "i3", "1970-01-01T00:00:00Z"),  # ISO time, long before the others
    ]
    with TestClient(make_app(clean_redis, [toy])) as client:
        r = client.post("/v1/events", json={"events": batch})
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["applied"], body["duplicate"], body["rejected"]) == (4, 0, 0)
        assert [x["event_id"] for x in body["results"]] == ["e3", "e1", "e2", "e4"]
        assert body["models"] == ["toy"]
        # e2 shares i1 with e1 and e3 shares u1 with e1: both wait for the second wave
        assert toy.waves == [["e4", "e1"], ["e2", "e3"]]

        again = client.post("/v1/events", json={"events": batch}).json()
        assert (again["applied"], again["duplicate"]) == (0, 4)
        assert {x["status"] for x in again["results"]} == {"duplicate"}
    assert len(toy.waves) == 2  # nothing recomputed on replay

    counts = redis_lib.Redis.from_url(clean_redis).zrange("sc:pop:toy:test", 0, -1, withscores=True)
    popularity = dict(cast(list[tuple[bytes, float]], counts))
    assert popularity == {b"i1": 2.0, b"i2": 1.0, b"i3": 1.0}  # applied events, replays not
    u1, u2 = read_states(clean_redis, "toy", "user", ["u1", "u2"])
    i1, i2 = read_states(clean_redis, "toy", "item", ["i1", "i2"])
    assert u1.version == (NOW + 30, "e3") and u2.version == (NOW + 20, "e2")
    # e1: u1 = [1, 0]; e3: u1 = 0.5 [1, 0] + i2(0) + [1, 20]
    np.testing.assert_allclose(u1.vector, [1.5, 20.0])
    # e2 saw i1 after e1 ([1, 0]): u2 = [0,0] + [1,0] + [1, 0]
    np.testing.assert_allclose(u2.vector, [2.0, 0.0])
    np.testing.assert_allclose(i1.vector, [2.0, 0.0])
    np.testing.assert_allclose(i2.vector, [1.0, 0.0])


def test_out_of_order_and_invalid_events_are_rejected_with_reasons(clean_redis: str) -> None:
    toy = ToyUpdater()
    with TestClient(make_app(clean_redis, [toy])) as client:
        assert (
            client.post("/v1/events", json={"events": [ev("e5", "u", "i", NOW + 50)]}).json()[
                "applied"
            ]
            == 1
        )
        r = client.post(
            "/v1/events",
            json={
                "events": [
                    ev("e4", "u", "i", NOW + 40),  # older than the stored state: stale
                    ev("x1", "u", "i", NOW, "teleport"),
                    {"event_id": "x2", "user_id": "u"},
                    ev("x3", "u", "i", "yesterday-ish"),
                    ev("x4", "u", "i", time.time() + 10 * 86_400),
                    ev("e6", "u", "i", NOW + 60),
                    ev("e6", "u", "i", NOW + 60),  # repeated within the batch
                ]
            },
        )
        assert r.status_code == 200, r.text
        res = r.json()["results"]
        assert [x["status"] for x in res] == [
            "rejected",
            "rejected",
            "rejected",
            "rejected",
            "rejected",
            "applied",
            "duplicate",
        ]
        assert res[0]["reason"].startswith("stale")
        assert res[1]["reason"].startswith("action")
        assert "item_id" in res[2]["reason"]
        assert res[3]["reason"].startswith("timestamp")
        assert "future" in res[4]["reason"]
        # batch-level problems are 422
        assert client.post("/v1/events", json={"events": []}).status_code == 422
        assert client.post("/v1/events", json={"events": "nope"}).status_code == 422
    [u] = read_states(clean_redis, "toy", "user", ["u"])
    assert u.version == (NOW + 60, "e6")


def test_without_updaters_sequences_counts_and_idempotency_still_work(clean_redis: str) -> None:
    batch = [ev(f"e{k}", "u", f"i{k}", NOW + k, "cart") for k in range(5)]
    with TestClient(make_app(clean_redis, [])) as client:
        assert client.post("/v1/events", json={"events": batch}).json()["applied"] == 5
        assert client.post("/v1/events", json={"events": batch}).json()["duplicate"] == 5

    async def main() -> tuple[Any, np.ndarray]:
        store = await StateStore.connect(clean_redis)
        try:
            [seq] = await store.sequences(["u"])
            counts = await store.action_counts(["u"], NOW, NOW + 3600)
            return seq, counts
        finally:
            await store.close()

    seq, counts = asyncio.run(main())
    assert seq.items == [f"i{k}" for k in range(5)]
    np.testing.assert_array_equal(counts[0, 0], [0, 0, 5, 0])


class CrashAfterItems(StateStore):
    """A real store whose first user-side write fails as if the process died right after the
    item side was written (the failure is injected here, the Redis underneath is real)."""

    crashed = False

    async def apply_user_events(self, writes: Sequence[UserWrite]) -> list[UserResult]:
        if not CrashAfterItems.crashed:
            CrashAfterItems.crashed = True
            raise StateStoreError("injected crash between item and user writes")
        return await super().apply_user_events(writes)


def test_two_phase_retry_after_a_crash_applies_each_event_exactly_once(clean_redis: str) -> None:
    """The cluster writer (item side, then the user's slot) recovers from a crash between."""
    batch = [ev("e1", "u1", "i1", NOW + 1), ev("e2", "u2", "i2", NOW + 2)]

    async def main() -> tuple[int, int, int]:
        store = await CrashAfterItems.connect(clean_redis)
        try:
            pipeline = EventPipeline(store, [ToyUpdater()])
            pipeline.writer = TwoPhaseWriter(store)
            with pytest.raises(StateStoreError):
                await pipeline.process(batch)
            # items were written, users were not: the client retries the whole batch
            assert (await store.get_states("toy", "item", ["i1"]))[0] is not None
            assert (await store.get_states("toy", "user", ["u1"]))[0] is None
            first = await pipeline.process(batch)
            again = await pipeline.process(batch)
            return first.count("applied"), again.count("duplicate"), again.count("applied")
        finally:
            await store.close()

    assert asyncio.run(main()) == (2, 2, 0)
    [i1_after] = read_states(clean_redis, "toy", "item", ["i1"])
    [u1] = read_states(clean_redis, "toy", "user", ["u1"])
    np.testing.assert_allclose(i1_after.vector, [1.0, 0.0])  # applied once, not twice
    np.testing.assert_allclose(u1.vector, [2.0, 0.0])  # computed from the post-event item


class AnswerLost(StateStore):
    """A real store whose first wave write reaches Redis but whose answer is lost, as when the
    process dies after the script ran (the loss is injected; the write is real)."""

    lost = False

    async def apply_wave(self, *args: Any) -> list[WaveResult]:
        results = await super().apply_wave(*args)
        if not AnswerLost.lost:
            AnswerLost.lost = True
            raise StateStoreError("injected: the answer of a committed wave was lost")
        return results


def test_atomic_retry_after_a_lost_answer_applies_each_event_exactly_once(clean_redis: str) -> None:
    batch = [ev("e1", "u1", "i1", NOW + 1), ev("e2", "u2", "i1", NOW + 2)]
    app = make_app(clean_redis, [ToyUpdater()], store_cls=AnswerLost)
    with TestClient(app) as client:
        assert client.post("/v1/events", json={"events": batch}).status_code == 503
        # the first wave (e1) is in Redis whole: user, item, sequence; e2 was never sent
        [u1] = read_states(clean_redis, "toy", "user", ["u1"])
        assert u1 is not None and u1.version == (NOW + 1, "e1")
        r = client.post("/v1/events", json={"events": batch}).json()
        assert [x["status"] for x in r["results"]] == ["duplicate", "applied"]
        assert client.post("/v1/events", json={"events": batch}).json()["duplicate"] == 2
    [i1] = read_states(clean_redis, "toy", "item", ["i1"])
    np.testing.assert_allclose(i1.vector, [2.0, 0.0])  # each event applied to it once


class CompetingWriter(StateStore):
    """A real store that lets another replica commit a newer event of the same user between
    this pipeline's read and its write, once (the interleaving is forced, the Redis is real)."""

    url = ""
    other: ClassVar[list[dict[str, Any]]] = []

    async def apply_wave(self, *args: Any) -> list[WaveResult]:
        if CompetingWriter.other:
            batch, CompetingWriter.other = CompetingWriter.other, []
            other = await StateStore.connect(CompetingWriter.url)
            try:
                await EventPipeline(other, [ToyUpdater()]).process(batch)
            finally:
                await other.close()
        return await super().apply_wave(*args)


def test_an_event_turned_stale_by_another_replica_writes_nothing(clean_redis: str) -> None:
    """Replica B commits u's newer event between replica A's read and A's write: A's event is
    rejected as stale and its item keeps the state it had (no half-applied event)."""
    CompetingWriter.url = clean_redis
    CompetingWriter.other = [ev("b1", "u", "ib", NOW + 20)]
    app = make_app(clean_redis, [ToyUpdater()], store_cls=CompetingWriter)
    with TestClient(app) as client:
        r = client.post("/v1/events", json={"events": [ev("a1", "u", "ia", NOW + 10)]}).json()
    assert [x["status"] for x in r["results"]] == ["rejected"]
    assert r["results"][0]["reason"].startswith("stale")
    assert read_states(clean_redis, "toy", "item", ["ia"]) == [None]
    [u] = read_states(clean_redis, "toy", "user", ["u"])
    assert u.version == (NOW + 20, "b1")


def test_concurrent_batches_are_joined_and_answered_per_request(clean_redis: str) -> None:
    """Batches arriving together go through one pass: every event applied once, each request
    answered with its own events in its own order, a repeat across requests a duplicate."""

    async def main() -> list[Any]:
        store = await StateStore.connect(clean_redis)
        try:
            ingestor = EventIngestor(EventPipeline(store, [ToyUpdater()]))
            batches = [
                [ev(f"r{r}e{k}", f"u{k % 5}", "hot", NOW + 10 * k + r) for k in range(6)]
                for r in range(4)
            ] + [[ev("r0e0", "u0", "hot", NOW)]]  # the first request's first event again
            return await asyncio.gather(*(ingestor.submit(b) for b in batches))
        finally:
            await store.close()

    results = asyncio.run(main())
    for r, result in enumerate(results[:4]):
        assert [o.index for o in result.results] == list(range(6))
        assert [o.event_id for o in result.results] == [f"r{r}e{k}" for k in range(6)]
    statuses = [o.status for result in results[:4] for o in result.results]
    assert statuses.count("applied") == 24
    assert [o.status for o in results[4].results] == ["duplicate"]
    [item] = read_states(clean_redis, "toy", "item", ["hot"])
    np.testing.assert_allclose(item.vector, [24.0, 0.0])  # every event once, no conflicts


class CountingClient:
    """Counts round trips (one per `execute` or `pipeline` call) of a real client."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.round_trips = 0

    async def execute(self, *command: Any) -> Any:
        self.round_trips += 1
        return await self.inner.execute(*command)

    async def pipeline(self, commands: Sequence[Any]) -> list[Any]:
        self.round_trips += 1
        return await self.inner.pipeline(commands)

    def scan(self, match: str, count: int) -> Any:
        return self.inner.scan(match, count)

    async def load_script(self, source: str) -> None:
        self.round_trips += 1
        await self.inner.load_script(source)

    async def close(self) -> None:
        await self.inner.close()


@pytest.mark.parametrize("size", [4, 64, WAVE_MAX])
def test_round_trips_per_wave_do_not_grow_with_the_wave(clean_redis: str, size: int) -> None:
    """One read for the batch and one script per wave, whatever the wave's size (up to the
    wave bound, past which a wave is cut in pieces that are waves themselves)."""

    async def main() -> tuple[int, int]:
        store = await StateStore.connect(clean_redis)
        counting = CountingClient(store.client)
        store.client = counting
        try:
            pipeline = EventPipeline(store, [ToyUpdater()])
            one_wave = [ev(f"e{k}", f"u{k}", f"i{k}", NOW + k) for k in range(size)]
            two_waves = [ev(f"f{k}", f"u{k}", f"i{k}", NOW + size + k) for k in range(size)] + [
                ev(f"g{k}", f"u{k}", f"j{k}", NOW + 2 * size + k) for k in range(size)
            ]
            before = counting.round_trips
            assert (await pipeline.process(one_wave)).count("applied") == size
            first = counting.round_trips - before
            before = counting.round_trips
            assert (await pipeline.process(two_waves)).count("applied") == 2 * size
            return first, counting.round_trips - before
        finally:
            await store.close()

    one, two = asyncio.run(main())
    assert one <= 4  # read + one script (+ SCRIPT LOAD and the re-run on a fresh server)
    assert two == 3  # read + two scripts


def test_two_replicas_racing_on_one_user_lose_nothing(clean_redis: str) -> None:
    """Two pipelines (two clients) apply interleaved events of one user concurrently."""

    async def replica(events: list[dict]) -> list[str]:
        store = await StateStore.connect(clean_redis)
        try:
            out: list[str] = []
            for e in events:  # one call per event, interleaving with the other replica
                result = await EventPipeline(store, [ToyUpdater()]).process([e])
                out += [o.status for o in result.results]
            return out
        finally:
            await store.close()

    async def main() -> tuple[list[str], list[str]]:
        a = [ev(f"a{k:02d}", "hot", f"ia{k}", NOW + 2 * k) for k in range(15)]
        b = [ev(f"b{k:02d}", "hot", f"ib{k}", NOW + 2 * k + 1) for k in range(15)]
        ra, rb = await asyncio.gather(replica(a), replica(b))
        return ra, rb

    ra, rb = asyncio.run(main())
    statuses = ra + rb
    assert set(statuses) <= {"applied", "rejected"}
    assert statuses.count("applied") >= 15
    [u] = read_states(clean_redis, "toy", "user", ["hot"])
    assert u.version == (NOW + 29, "b14")

    async def seq() -> int:
        store = await StateStore.connect(clean_redis)
        try:
            return len((await store.sequences(["hot"]))[0])
        finally:
            await store.close()

    assert asyncio.run(seq()) == statuses.count("applied")  # each applied event once


@pytest.mark.parametrize("by_item", [True, False])
def test_make_waves_keeps_entity_order(by_item: bool) -> None:
    events = [
        Event(k, f"e{k}", u, i, "browse", float(k))
        for k, (u, i) in enumerate([("a", "x"), ("b", "x"), ("a", "y"), ("c", "z")])
    ]
    waves = make_waves(events, by_item=by_item)
    ids = [[e.event_id for e in w] for w in waves]
    if by_item:
        assert ids == [["e0", "e3"], ["e1", "e2"]]
    else:
        assert ids == [["e0", "e1", "e3"], ["e2"]]


class NotLoadedUpdater(ToyUpdater):
    """An updater whose model is not loaded yet (as IMN's before its first version)."""

    model = "later"

    @property
    def user_dim(self) -> int:  # type: ignore[override]
        raise NotReady("model 'later' is not loaded")


def test_an_updater_whose_model_is_not_loaded_is_skipped(clean_redis: str) -> None:
    toy = ToyUpdater()
    with TestClient(make_app(clean_redis, [NotLoadedUpdater(), toy])) as client:
        body = client.post("/v1/events", json={"events": [ev("e1", "u", "i", NOW)]}).json()
    assert body["applied"] == 1 and body["models"] == ["toy"]
    assert read_states(clean_redis, "later", "user", ["u"]) == [None]


def test_replicas_end_in_the_states_of_a_serial_replay_in_commit_order(clean_redis: str) -> None:
    """Two replicas (pipelines on their own connections) ingest interleaved batches of the
    same users and items at once. Replaying the events they applied, one at a time in the
    order the store committed them, on an empty database gives exactly the same states and
    sequences; no rejected event left a trace (docs/consistency.md)."""
    rng = np.random.default_rng(7)
    events = []
    for k in range(600):
        user, item = f"u{rng.integers(12)}", f"i{rng.integers(6)}"
        events.append(ev(f"e{k:04d}", user, item, NOW + k + float(rng.random()), "browse"))
    batches = [events[i : i + 20] for i in range(0, len(events), 20)]
    replay_url = clean_redis.rsplit("/", 1)[0] + "/1"

    async def replica(mine: list[list[dict[str, Any]]]) -> list[tuple[int, str]]:
        store = await StateStore.connect(clean_redis)
        try:
            pipeline = EventPipeline(store, [ToyUpdater()])
            out: list[tuple[int, str]] = []
            for batch in mine:
                out += committed(await pipeline.process(batch), "applied")
                await asyncio.sleep(0)
            return out
        finally:
            await store.close()

    async def main() -> tuple[Any, Any, list[tuple[int, str]]]:
        applied_a, applied_b = await asyncio.gather(replica(batches[0::2]), replica(batches[1::2]))
        applied = sorted(applied_a + applied_b)
        by_id = {e["event_id"]: e for e in events}
        replay = await StateStore.connect(replay_url)
        try:
            await replay.execute("flush", "FLUSHDB")
            serial = EventPipeline(replay, [ToyUpdater()])
            for _, event_id in applied:  # one event per call, in commit order
                result = await serial.process([by_id[event_id]])
                assert result.results[0].status == "applied", result.results[0]
            concurrent = await toy_states(clean_redis, events)
            return concurrent, await toy_states(replay_url, events), applied
        finally:
            await replay.close()

    from service.metrics import CAS_CONFLICTS

    def conflicts() -> float:
        return sum(
            s.value
            for m in CAS_CONFLICTS.collect()
            for s in m.samples
            if s.name.endswith("_total") and s.labels["state"].startswith("toy:")
        )

    before = conflicts()
    concurrent, serial, applied = asyncio.run(main())
    assert conflicts() > before  # the replicas did get in each other's way
    commits = [c for c, _ in applied]
    assert commits == list(range(commits[0], commits[0] + len(commits)))  # one number each
    assert concurrent == serial
    applied_ids = {eid for _, eid in applied}
    rejected = {e["event_id"] for e in events} - applied_ids
    versions = {v[1][1] for v in concurrent[0].values() if v}
    assert not versions & rejected  # no state was written by a rejected event


def test_idle_users_expire_and_items_do_not(clean_redis: str) -> None:
    """Each applied event renews the user's sequence and state TTL; item states stay."""
    import redis as redis_client

    from service.state import keys as layout

    async def main() -> None:
        store = await StateStore.connect(clean_redis, user_ttl_seconds=600)
        try:
            pipeline = EventPipeline(store, [ToyUpdater()])
            await pipeline.process([ev("e1", "idle", "i1", NOW)])
        finally:
            await store.close()

    asyncio.run(main())
    r = redis_client.Redis.from_url(clean_redis)
    assert 0 < r.ttl(layout.sequence("idle")) <= 600
    assert 0 < r.ttl(layout.state("toy", "user", "idle")) <= 600
    assert r.ttl(layout.state("toy", "item", "i1")) == -1  # no expiry
