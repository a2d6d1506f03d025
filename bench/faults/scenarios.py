"""The fault scenarios of `python -m bench.faults`, one function each, every target on loopback.

Each returns ``(figures, guarantees, notes)`` for `harness.write_faults`. Events come from
`event_log`: users' browse/collect/cart/purchase events in time order over a fixed item set,
so a replay can be compared event by event.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import shutil
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.faults.harness import (
    Sent,
    Stack,
    send_with_retry,
    state_hash,
    user_sequences,
    wait_ready,
)
from bench.http.procs import drain_event_log

Result = tuple[dict[str, Any], dict[str, bool], str]
ACTIONS = ("browse",) * 6 + ("collect", "cart", "purchase")


def event_log(n_users: int, per_user: int, items: Sequence[str], seed: int) -> list[dict[str, Any]]:
    """`per_user` events per user over the last hour, all users interleaved, time-ordered."""
    rng = np.random.default_rng(seed)
    start = time.time() - 3600
    events = []
    for u in range(n_users):
        times = np.sort(rng.uniform(0, 3500, per_user))
        for j, t in enumerate(times):
            events.append(
                {
                    "event_id": f"f{seed}-u{u}-{j}",
                    "user_id": f"fault-u{u}",
                    "item_id": items[int(rng.integers(len(items)))],
                    "action": ACTIONS[int(rng.integers(len(ACTIONS)))],
                    "timestamp": round(start + float(t), 6),
                }
            )
    events.sort(key=lambda e: (e["timestamp"], e["event_id"]))
    return events


def batches(events: Sequence[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    return [list(events[i : i + size]) for i in range(0, len(events), size)]


def once_each(r: Any, events: Sequence[dict[str, Any]], sent: Sent) -> tuple[int, int, int]:
    """(acknowledged, lost, doubled): every event answered applied or duplicate must be in its
    user's sequence exactly once; nothing else may be there twice."""
    users = sorted({e["user_id"] for e in events})
    stored = user_sequences(r, users)
    counts = Counter(eid for seq in stored.values() for eid in seq)
    acked = [
        e
        for e in events
        if sent.acknowledged.get(e["event_id"], {}).get("status") in ("applied", "duplicate")
    ]
    lost = sum(1 for e in acked if counts[e["event_id"]] == 0)
    doubled = sum(1 for n in counts.values() if n > 1)
    return len(acked), lost, doubled


def delivery(s: Stack, events: Sequence[dict[str, Any]], sent: Sent) -> dict[str, Any]:
    """How many events were sent, acknowledged, and of those lost or applied twice."""
    acked, lost, doubled = once_each(s.redis(), events, sent)
    return {
        "events": len(events),
        "acknowledged": acked,
        "acknowledged_lost": lost,
        "doubled": doubled,
    }


# ---- 1. kill -9 of salecast and of Redis during ingest -----------------------------------------
def crashes(s: Stack, items: Sequence[str], users: int = 200, per_user: int = 30) -> Result:
    events = event_log(users, per_user, items, seed=1)
    # Clients own disjoint users, so each user's batches go out in order, as from one tracker.
    owners = 4
    per_owner = [
        [e for e in events if int(e["user_id"].rsplit("u", 1)[1]) % owners == k]
        for k in range(owners)
    ]
    replica = s.start_replica("crash")
    urls = [replica.url]  # the clients' address book: a restarted replica replaces the entry
    sent = Sent()
    progress = [0]

    def client(mine: list[dict[str, Any]]) -> None:
        with httpx.Client(timeout=10.0, trust_env=False) as c:
            for batch in batches(mine, 25):
                send_with_retry(c, urls, batch, sent)
                progress[0] += len(batch)

    threads = [threading.Thread(target=client, args=(m,)) for m in per_owner]
    for t in threads:
        t.start()
    kills = {"salecast": 0, "redis": 0}
    plan = [(0.2, "salecast"), (0.45, "redis"), (0.7, "salecast"), (0.85, "redis")]
    for fraction, target in plan:
        while progress[0] < fraction * len(events) and any(t.is_alive() for t in threads):
            time.sleep(0.05)
        if target == "salecast":
            s.kill(replica)
            s.replicas.remove(replica)
            replica = s.start_replica(f"crash-{kills['salecast']}")
            urls[:] = [replica.url]  # clients move to it
        else:
            assert s.valkey is not None
            s.valkey.kill()
            s.valkey.start()  # same port and folder: the append-only file brings the data back
        kills[target] += 1
    for t in threads:
        t.join()
    figures = {
        **delivery(s, events, sent),
        "kill -9 salecast": kills["salecast"],
        "kill -9 redis": kills["redis"],
        "client attempts": sent.attempts,
        "attempts answered 5xx or not at all": sent.failures,
    }
    guarantees = {
        "every event acknowledged": figures["acknowledged"] == figures["events"],
        "no acknowledged event lost": figures["acknowledged_lost"] == 0,
        "no event applied twice": figures["doubled"] == 0,
    }
    notes = (
        f"{users} users x {per_user} events, 4 clients with disjoint users sending batches of 25 "
        "and resending a batch until it is answered 200 (any replica). salecast was killed with "
        "SIGKILL at 20% and 70% of the log and restarted; Redis (appendfsync everysec) at 45% "
        "and 85% and restarted on its folder. Lost/doubled are checked against each user's "
        "stored sequence, which holds every applied event id."
    )
    return figures, guarantees, notes


# ---- 2. full replay, twice -----------------------------------------------------------------------
def replays(s: Stack, items: Sequence[str], users: int = 100, per_user: int = 30) -> Result:
    events = event_log(users, per_user, items, seed=2)
    replica = s.start_replica("replay")
    with httpx.Client(timeout=30.0, trust_env=False) as c:
        first = Sent()
        for batch in batches(events, 200):
            send_with_retry(c, [replica.url], batch, first)
        before = state_hash(s.redis())
        counts = []
        for _ in range(2):
            again = Sent()
            for batch in batches(events, 200):
                send_with_retry(c, [replica.url], batch, again)
            counts.append(Counter(r["status"] for r in again.acknowledged.values()))
            after = state_hash(s.redis())
            if after != before:
                break
    applied = sum(1 for r in first.acknowledged.values() if r["status"] == "applied")
    figures = {
        "events": len(events),
        "applied first time": applied,
        "replay 1": dict(counts[0]),
        "replay 2": dict(counts[-1]),
        "state hash before": before[:16],
        "state hash after": after[:16],
    }
    guarantees = {
        "all applied the first time": applied == len(events),
        "replays are all duplicate": all(c == Counter({"duplicate": len(events)}) for c in counts),
        "state hash unchanged by two replays": after == before,
    }
    notes = "The whole log posted once, then twice more; the hash covers every salecast key."
    return figures, guarantees, notes


# ---- 3. concurrent replicas against a serial replay ----------------------------------------------
def replicas(
    s: Stack, items: Sequence[str], n: int, users: int = 50, per_user: int = 200
) -> Result:
    events = event_log(users, per_user, items, seed=10 + n)
    reps = [s.start_replica(f"replica-{n}-{k}") for k in range(n)]
    parts = batches(events, 50)
    sent = Sent()

    def client(k: int) -> None:
        with httpx.Client(timeout=30.0, trust_env=False) as c:
            for batch in parts[k::n]:  # interleaved: batch i goes to replica i % n
                send_with_retry(c, [reps[k].url], batch, sent)

    _run_clients(n, client)
    for r in reps:
        s.stop(r)
        s.replicas.remove(r)
    applied = sorted(
        (r["commit"], r["event_id"]) for r in sent.acknowledged.values() if r["status"] == "applied"
    )
    figures, guarantees = _against_serial_replay(s, events, applied, sent)
    notes = (
        f"{n} `salecast serve` replicas on one Redis, {users} users x {per_user} events over "
        f"{len(items)} items in time order, batches of 50, batch i sent to replica i mod {n}, all "
        "replicas at once. Events of one user reach different replicas out of order, so some are "
        "rejected as stale, and replicas race on the same users and items (compare-and-set "
        "conflicts, retried). The applied events, one at a time in commit order, are then "
        "replayed by one in-process pipeline on database 1; states differ only by the float "
        "rounding of the ONNX update at different batch compositions."
    )
    return {"replicas": n, **figures}, guarantees, notes


def log_replicas(
    s: Stack, items: Sequence[str], n: int, users: int = 50, per_user: int = 200
) -> Result:
    """The single-writer mode: `n` replicas append, the lease holder applies; halfway
    through, the replica holding the lease is killed with SIGKILL, its clients move to the
    others, and another replica takes the lease once it lapses."""
    events = event_log(users, per_user, items, seed=20 + n)
    env = {"SALECAST_EVENTS_MODE": "log"}
    reps = [s.start_replica(f"log-replica-{n}-{k}", env) for k in range(n)]
    urls = [r.url for r in reps]
    parts = batches(events, 50)
    sent = Sent()
    half = threading.Event()
    killed: list[str] = []

    def client(k: int) -> None:
        with httpx.Client(timeout=30.0, trust_env=False) as c:
            mine = parts[k::n]
            for j, batch in enumerate(mine):
                if j == len(mine) // 2:
                    half.set()
                # own replica first, the others when it does not answer
                send_with_retry(c, urls[k:] + urls[:k], batch, sent)

    def killer() -> None:
        half.wait(120)
        with httpx.Client(timeout=5.0, trust_env=False) as c:
            for r in reps:
                if c.get(f"{r.url}/v1/events/log").json().get("writer"):
                    s.kill(r)
                    killed.append(r.name)
                    return

    kill_thread = threading.Thread(target=killer)
    kill_thread.start()
    _run_clients(n, client)
    kill_thread.join()
    alive = [r for r in reps if r.name not in killed]
    drained_s = drain_event_log(alive[0].url, poll_s=0.1)
    for r in reps:
        if r.name not in killed:
            s.stop(r)
        s.replicas.remove(r)
    commits = {
        eid: r["commit"]
        for eid, r in sent.acknowledged.items()
        if r["status"] in ("accepted", "duplicate") and r.get("commit")
    }
    applied = sorted((c, eid) for eid, c in commits.items())
    figures, guarantees = _against_serial_replay(s, events, applied, sent)
    acknowledged = [e for e, r in sent.acknowledged.items() if r["status"] != "rejected"]
    seqs = user_sequences(s.redis(), sorted({e["user_id"] for e in events}))
    in_sequences = Counter(eid for seq in seqs.values() for eid in seq)
    lost = sum(1 for eid in acknowledged if in_sequences[eid] == 0)
    doubled = sum(1 for n_times in in_sequences.values() if n_times > 1)
    figures = {
        "replicas": n,
        "writer killed (SIGKILL)": killed[0] if killed else None,
        "log drained after the load (s)": round(drained_s, 2),
        "attempts": sent.attempts,
        "failed attempts": sent.failures,
        "acknowledged events lost": lost,
        "acknowledged events doubled": doubled,
        "acknowledged without a known commit": len(acknowledged) - len(commits),
        **figures,
    }
    guarantees |= {
        "the writer was killed mid-run": bool(killed),
        "acknowledged events lost: 0": lost == 0,
        "acknowledged events doubled: 0": doubled == 0,
        "every acknowledged event's commit is known": len(acknowledged) == len(commits),
    }
    notes = (
        f"SALECAST_EVENTS_MODE=log: {n} `salecast serve` replicas on one Redis, {users} users x "
        f"{per_user} events over {len(items)} items in time order, batches of 50, batch i sent "
        f"to replica i mod {n} (the others when it does not answer), all at once. Each replica "
        "appends and answers `accepted`; the one holding the log's lease applies the model "
        "states. When the clients were halfway, the replica holding the lease was killed with "
        "SIGKILL (its lease lapses after 5 s and another replica takes it; its clients resend "
        "to the others, and what it had accepted comes back `duplicate` with its commit). After "
        "the load the benchmark waited for the log to drain, then replayed the accepted events "
        "one at a time in commit order with the compare-and-set pipeline on database 1; states "
        "differ only by the float rounding of the ONNX update at different batch compositions."
    )
    return figures, guarantees, notes


def _run_clients(n: int, client: Any) -> None:
    threads = [threading.Thread(target=client, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _against_serial_replay(
    s: Stack,
    events: Sequence[dict[str, Any]],
    applied: Sequence[tuple[int, str]],
    sent: Sent,
) -> tuple[dict[str, Any], dict[str, bool]]:
    """Compare the store with one serial replay of `applied` ((commit, event id), sorted)."""
    from service.state import keys

    statuses = Counter(r["status"] for r in sent.acknowledged.values())
    concurrent = _read_imn(s, events, db=0)
    by_id = {e["event_id"]: e for e in events}
    asyncio.run(_serial_replay(s, [by_id[eid] for _, eid in applied]))
    serial = _read_imn(s, events, db=1)
    diffs = [
        float(np.max(np.abs(concurrent[k][0] - serial[k][0])))
        for k in concurrent
        if concurrent[k] is not None and serial.get(k) is not None
    ]
    missing = sum(1 for k in concurrent if (concurrent[k] is None) != (serial.get(k) is None))
    redis_client = s.redis()
    rejected = {eid for eid, res in sent.acknowledged.items() if res["status"] == "rejected"}
    seqs = user_sequences(redis_client, sorted({e["user_id"] for e in events}))
    traces = sum(1 for seq in seqs.values() for eid in seq if eid in rejected)
    versions = {v[1] for v in concurrent.values() if v is not None}
    traces += len(versions & rejected)
    serial_r = s.redis_db(1)
    same_sequences = all(
        redis_client.lrange(keys.sequence(u), 0, -1) == serial_r.lrange(keys.sequence(u), 0, -1)
        for u in seqs
    )
    commits = [c for c, _ in applied]
    largest = max(diffs) if diffs else 0.0
    dense = commits == list(range(commits[0], commits[0] + len(commits))) if commits else True
    figures: dict[str, Any] = {
        "events": len(events),
        "users": len({e["user_id"] for e in events}),
        "answers": dict(statuses),
        "states compared": len(diffs),
        "states present in one run only": missing,
        "largest state difference": largest,
        "sequences equal": same_sequences,
        "traces of rejected events": traces,
        "commit numbers distinct and dense": dense,
    }
    guarantees: dict[str, bool] = {
        "same states as the serial replay (within 1e-4)": missing == 0 and largest <= 1e-4,
        "same sequences as the serial replay": same_sequences,
        "a rejected event changed no state": traces == 0,
        "every applied event has one commit number": dense,
    }
    return figures, guarantees


def _read_imn(s: Stack, events: Sequence[dict[str, Any]], db: int) -> dict[str, Any]:
    from service.state import keys

    r = s.redis_db(db)
    out: dict[str, Any] = {}
    for entity, ids in (
        ("user", {e["user_id"] for e in events}),
        ("item", {e["item_id"] for e in events}),
    ):
        for i in sorted(ids):
            v, eid = r.hmget(keys.state("imn", entity, i), "v", "eid")
            if isinstance(v, bytes) and isinstance(eid, bytes):
                out[f"{entity}:{i}"] = (np.frombuffer(v, "<f4"), eid.decode())
            else:
                out[f"{entity}:{i}"] = None
    return out


async def _serial_replay(s: Stack, ordered: Sequence[dict[str, Any]]) -> None:
    from service.config import Settings
    from service.events import EventPipeline
    from service.runtime.registry import ModelRegistry
    from service.servables.imn import MODEL, IMNUpdater, build_tables
    from service.state.store import StateStore

    url = s.redis_url.rsplit("/", 1)[0] + "/1"
    registry = ModelRegistry(Settings(artifacts_dir=s.artifacts, redis_url=url, poll_interval_s=0))

    async def on_load(loaded: Any) -> None:
        loaded.state[MODEL] = build_tables(loaded)

    registry.add_load_hook(MODEL, on_load)
    await registry.start()
    store = await StateStore.connect(url)
    try:
        await store.execute("flush", "FLUSHDB")
        pipeline = EventPipeline(store, [IMNUpdater(registry)])
        for event in ordered:
            (outcome,) = (await pipeline.process([event])).results
            if outcome.status != "applied":
                raise RuntimeError(f"serial replay refused {event['event_id']}: {outcome.reason}")
    finally:
        await store.close()
        await registry.stop()


# ---- 4. hot swaps and a half-copied version under load -------------------------------------------
def hot_swaps(s: Stack, items: Sequence[str], seconds: float = 20.0) -> Result:
    replica = s.start_replica("swap")
    source = max((s.artifacts / "imn").iterdir())
    with httpx.Client(timeout=30.0, trust_env=False) as c:
        c.post(f"{replica.url}/v1/events", json={"events": event_log(50, 5, items, seed=4)})
    stop = threading.Event()
    statuses: Counter[str] = Counter()
    versions: Counter[str] = Counter()

    def load() -> None:
        with httpx.Client(timeout=30.0, trust_env=False) as c:
            k = 0
            while not stop.is_set():
                try:
                    resp = c.get(f"{replica.url}/v1/recommendations/fault-u{k % 50}")
                    statuses[str(resp.status_code)] += 1
                    if resp.status_code == 200:
                        versions[resp.json()["model_version"]] += 1
                except httpx.HTTPError as exc:
                    statuses[type(exc).__name__] += 1
                k += 1

    threads = [threading.Thread(target=load) for _ in range(8)]
    for t in threads:
        t.start()
    swaps, half_copied_served_early = 0, False
    t_end = time.monotonic() + seconds
    while time.monotonic() < t_end - seconds / 4:
        time.sleep(seconds / 8)
        new = source.parent / (time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f"{swaps:06d}Z")
        staging = source.parent / f".{new.name}"
        shutil.copytree(source, staging)
        _rename_version(staging / "manifest.json", new.name)
        staging.rename(new)  # an atomic publish, as training writes versions
        swaps += 1
    # A version copied file by file, manifest first, as `cp -r` does: not served until whole.
    partial = source.parent / (time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "999999Z")
    partial.mkdir()
    (partial / "manifest.json").write_bytes((source / "manifest.json").read_bytes())
    _rename_version(partial / "manifest.json", partial.name)
    time.sleep(2.0)
    with httpx.Client(timeout=10.0, trust_env=False) as c:
        half_copied_served_early = (
            c.get(f"{replica.url}/v1/models/imn").json()["version"] == partial.name
        )
    for f in source.iterdir():
        if f.name != "manifest.json":
            if f.is_dir():
                shutil.copytree(f, partial / f.name)
            else:
                (partial / f.name).write_bytes(f.read_bytes())
    served_when_complete = False
    with httpx.Client(timeout=10.0, trust_env=False) as c:
        for _ in range(60):
            if c.get(f"{replica.url}/v1/models/imn").json()["version"] == partial.name:
                served_when_complete = True
                break
            time.sleep(0.25)
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join()
    ok = statuses.get("200", 0)
    failed = sum(n for k, n in statuses.items() if k != "200")
    figures = {
        "requests": sum(statuses.values()),
        "answered 200": ok,
        "failed": failed,
        "statuses": dict(statuses),
        "atomic swaps": swaps,
        "versions answering": len(versions),
    }
    guarantees = {
        "no failed request across the swaps": failed == 0,
        "a half-copied version is not served": not half_copied_served_early,
        "it is served once complete": served_when_complete,
    }
    notes = (
        f"8 clients asking for recommendations for {seconds:g} s while new IMN versions were "
        "published by atomic rename (the registry polls every 0.5 s, warms a version up and swaps "
        "it in), then one copied file by file with its manifest first."
    )
    return figures, guarantees, notes


def _rename_version(manifest: Path, version: str) -> None:
    """A copied artifact as a new version: the manifest names its own folder."""
    import json

    data = json.loads(manifest.read_text())
    data["version"] = version
    manifest.write_text(json.dumps(data, indent=2))


# ---- 5. Redis frozen and back ---------------------------------------------------------------
def frozen_redis(s: Stack, items: Sequence[str], freeze_s: float = 8.0) -> Result:
    import os
    import signal

    events = event_log(100, 30, items, seed=5)
    replica = s.start_replica("freeze")
    sent = Sent()
    progress = [0]

    def client() -> None:
        with httpx.Client(timeout=10.0, trust_env=False) as c:
            for batch in batches(events, 25):
                send_with_retry(c, [replica.url], batch, sent, deadline_s=120)
                progress[0] += len(batch)

    thread = threading.Thread(target=client)
    thread.start()
    while progress[0] < len(events) / 3:
        time.sleep(0.05)
    assert s.valkey is not None and s.valkey.pid is not None
    pid = s.valkey.pid
    os.kill(pid, signal.SIGSTOP)
    t0 = time.monotonic()
    ready_during = []
    with httpx.Client(timeout=5.0, trust_env=False) as c:
        while time.monotonic() - t0 < freeze_s:
            try:
                ready_during.append(c.get(f"{replica.url}/health/ready").status_code)
            except httpx.HTTPError:
                ready_during.append(0)
            time.sleep(0.5)
    os.kill(pid, signal.SIGCONT)
    thread.join()
    wait_ready(replica.url)
    figures = {
        **delivery(s, events, sent),
        "frozen seconds": freeze_s,
        "attempts answered 5xx or not at all": sent.failures,
        "readiness answers while frozen": dict(Counter(ready_during)),
    }
    guarantees = {
        "every event acknowledged after the thaw": figures["acknowledged"] == figures["events"],
        "no acknowledged event lost": figures["acknowledged_lost"] == 0,
        "no event applied twice": figures["doubled"] == 0,
        "not ready while Redis was frozen": 200 not in ready_during[2:],
    }
    notes = (
        f"Redis stopped with SIGSTOP for {freeze_s:g} s a third into the ingest, then SIGCONT; the "
        "client resends unanswered batches. salecast's Redis timeout is 5 s."
    )
    return figures, guarantees, notes


# ---- 6. liveness while the largest allowed requests run -------------------------------------
def liveness(s: Stack, items: Sequence[str], seconds: float = 15.0) -> Result:
    from service.events.schema import MAX_EVENTS
    from service.servables.cvr import MAX_PAIRS
    from service.servables.intent import MAX_USERS

    replica = s.start_replica("liveness")
    users = [f"fault-u{k}" for k in range(MAX_USERS)]
    with httpx.Client(timeout=60.0, trust_env=False) as c:
        for batch in batches(event_log(500, 20, items, seed=6), MAX_EVENTS):
            c.post(f"{replica.url}/v1/events", json={"events": batch})
    heavy = {
        "intent": ("/v1/score/intent", {"users": users}),
        "cvr": (
            "/v1/score/cvr",
            {
                "pairs": [
                    {"user_id": u, "item_id": items[k % len(items)]}
                    for k, u in enumerate(users[:MAX_PAIRS])
                ]
            },
        ),
        "events": ("/v1/events", None),
    }
    # The heavy clients run in their own processes, so the probe below never waits for this
    # process's interpreter while they build their bodies.
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    counts = ctx.Manager().dict()
    procs = [
        ctx.Process(
            target=_hammer, args=(replica.url, name, heavy[name], list(items), stop, counts)
        )
        for name in heavy
    ]
    for p in procs:
        p.start()
    time.sleep(3.0)
    latencies = []
    t_end = time.monotonic() + seconds
    with httpx.Client(timeout=10.0, trust_env=False) as c:
        while time.monotonic() < t_end:
            t0 = time.perf_counter()
            try:
                c.get(f"{replica.url}/health/live")
                latencies.append(time.perf_counter() - t0)
            except httpx.HTTPError:
                latencies.append(float("inf"))
            time.sleep(0.02)
    stop.set()
    for p in procs:
        p.join(120)
    heavy_status = dict(counts)
    ms = np.asarray(latencies) * 1e3
    figures = {
        "probes": len(ms),
        "p50 ms": round(float(np.percentile(ms, 50)), 2),
        "p99 ms": round(float(np.percentile(ms, 99)), 2),
        "max ms": round(float(ms.max()), 2),
        "heavy requests": dict(heavy_status),
    }
    guarantees = {"every probe answered within 100 ms": bool(ms.max() < 100)}
    notes = (
        f"GET /health/live every 20 ms for {seconds:g} s while three clients keep sending the "
        f"largest calls the limits allow: intent scoring of {MAX_USERS} users, CVR scoring of "
        f"{MAX_PAIRS} pairs and event batches of {MAX_EVENTS}, back to back."
    )
    return figures, guarantees, notes


def _hammer(
    url: str, name: str, call: tuple[str, Any], items: list[str], stop: Any, counts: Any
) -> None:
    """One heavy client (a separate process): the largest allowed call, back to back."""
    from service.events.schema import MAX_EVENTS

    path, body = call
    n = 0
    with httpx.Client(timeout=120.0, trust_env=False) as c:
        while not stop.is_set():
            payload = body or {"events": event_log(250, 20, items, seed=100 + n)[:MAX_EVENTS]}
            n += 1
            try:
                key = f"{name} {c.post(f'{url}{path}', json=payload).status_code}"
            except httpx.HTTPError as exc:
                key = f"{name} {type(exc).__name__}"
            counts[key] = counts.get(key, 0) + 1


SCENARIOS = (
    "crashes",
    "replays",
    "replicas-2",
    "replicas-4",
    "log-replicas-2",
    "log-replicas-4",
    "hot-swaps",
    "frozen-redis",
    "liveness",
)
