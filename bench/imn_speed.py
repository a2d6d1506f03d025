"""IMN throughput: events applied per second and recommendation calls per second.

Side by side in one process, against one real embedded Valkey and the same ONNX graphs:

- ``events``: ours = `service.events.EventPipeline` (waves of distinct users/items, one
  micro-batched ``update`` call per wave, pipelined reads, Lua compare-and-set writes,
  idempotency keys) on batches of `--batch` events; naive = one read-modify-write per event
  (read the user's and the item's state, one ONNX call, two plain writes: no CAS, no
  idempotency). Latency is per POST-sized batch for ours and per event for naive.
- ``recommend``: ours = `service.servables.imn.recommend` with `--concurrency` requests in
  flight (the micro-batcher groups them into one ``score`` call); naive = one state read and
  one ONNX call per request, one request at a time. Latency is per request.

Run: ``python -m bench.imn_speed [--items N --events N --requests N] [--profile]``. Writes
``bench/results/speed-events-ingest.json`` and ``speed-recommend.json``. With ``--profile``
py-spy records this process during the two salecast event runs (the compare-and-set pipeline
and the event log) and their top frames go into the notes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from bench.common import latency_run, load_average, load_note, write_speed
from bench.http import profile

ACTIONS = ("browse", "browse", "browse", "collect", "cart", "purchase")


def _train_artifact(root: Path, n_items: int, dim: int, seed: int) -> Path:
    """A quickly trained IMN (1 epoch on random walks over `n_items` items)."""
    from training.jobs.imn import add_arguments, prepare, train_prepared

    rng = np.random.default_rng(seed)
    n = max(n_items, 4000)  # every item once: the table is what the speed depends on
    frame = pd.DataFrame(
        {
            "event_id": [f"b:{k}" for k in range(n)],
            "user_id": [f"u{v}" for v in rng.integers(0, 500, n)],
            "item_id": [f"i{v}" for v in rng.permutation(np.arange(n) % n_items)],
            "category_id": "",
            "action": rng.choice(ACTIONS, n),
            "ts": 1_700_000_000 + np.sort(rng.integers(0, 86_400, n)),
        }
    )
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--epochs", "1", "--dim", str(dim), "--negatives", "32"])
    args.seed, args.artifacts = seed, root
    return train_prepared(prepare(frame, "0" * 64, "bench"), args)[0]


def _events(prefix: str, n: int, n_users: int, n_items: int, seed: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    base = time.time() - 3600
    return [
        {
            "event_id": f"{prefix}{k}",
            "user_id": f"{prefix}u{rng.integers(n_users)}",
            "item_id": f"i{rng.integers(n_items)}",
            "action": str(rng.choice(ACTIONS)),
            "timestamp": base + k * 0.01,
        }
        for k in range(n)
    ]


async def _run(args: argparse.Namespace, url: str, artifacts: Path) -> None:
    from service.api.main import settle_garbage_collector
    from service.config import Settings
    from service.events import EventPipeline
    from service.runtime.registry import ModelRegistry
    from service.servables.imn import MODEL, IMNUpdater, build_tables, recommend
    from service.state.store import StateStore

    settings = Settings(artifacts_dir=artifacts, redis_url=url, poll_interval_s=0)
    registry = ModelRegistry(settings)

    async def on_load(loaded: Any) -> None:
        loaded.state[MODEL] = build_tables(loaded)

    registry.add_load_hook(MODEL, on_load)
    await registry.start()
    settle_garbage_collector()  # as `salecast serve` does once its models are loaded
    store = await StateStore.connect(url)
    loaded = registry.get(MODEL)
    updater = IMNUpdater(registry)
    pipeline = EventPipeline(store, updaters=[updater])
    d = loaded.state[MODEL].dim

    # ---- events: ours -----------------------------------------------------------------------
    max_load = load_average()
    ours_events = _events("o", args.events, args.users, args.items, 1)
    spy = _Profile(args.profile, "pipeline")
    ours_run, split = await _ingest("salecast-pipeline", pipeline, store, ours_events, args.batch)
    split += f" Profile (salecast-pipeline): {spy.stop()}."
    max_load = max(max_load, load_average())

    log_events = _events("l", args.events, args.users, args.items, 4)
    spy = _Profile(args.profile, "log")
    log_run, log_split, _ = await _ingest_log(
        "salecast-event-log", store, updater, log_events, args.batch
    )
    log_split += f" Profile (salecast-event-log): {spy.stop()}."
    # What the design costs in latency below saturation: the same mode at half the rate it
    # just sustained, so the writer keeps up and the lag is the chunk's own time.
    pace = 0.5 * log_run["throughput_per_s"]
    paced = _events("p", min(args.events, 10_000), args.users, args.items, 5)
    _, _, lag = await _ingest_log("paced", store, updater, paced, args.batch, pace)
    q = np.percentile(lag * 1e3, [50, 99])
    log_split += (
        f" Apply lag below saturation: the same mode on {len(paced)} more events appended at "
        f"{pace:.0f} events/s (half the rate above): a batch's states were written "
        f"{q[0]:.1f} ms (p50) / {q[1]:.1f} ms (p99) after its append was acknowledged."
    )
    max_load = max(max_load, load_average())

    # ---- events: naive read-modify-write -----------------------------------------------------
    from service.events import Event
    from service.state import keys
    from service.state.store import encode_vector

    naive_events = _events("n", args.naive_events, args.users, args.items, 2)
    u0, i0 = updater.initial_user_state(), updater.initial_item_state()
    lat = []
    t0 = time.perf_counter()
    for k, raw in enumerate(naive_events):
        s = time.perf_counter()
        e = Event(
            k, raw["event_id"], raw["user_id"], raw["item_id"], raw["action"], raw["timestamp"]
        )
        us, it = (
            await store.get_states(MODEL, "user", [e.user_id]),
            await store.get_states(MODEL, "item", [e.item_id]),
        )
        u = u0 if us[0] is None else us[0].vector
        i = i0 if it[0] is None else it[0].vector
        new_u, new_i = await updater.update(
            [e],
            u[None],
            i[None],
            np.asarray([e.ts if us[0] is None else us[0].ts]),
            np.asarray([e.ts if it[0] is None else it[0].ts]),
        )
        await store.execute(
            "naive_set",
            "HSET",
            keys.state(MODEL, "user", e.user_id),
            *("v", encode_vector(new_u[0]), "ts", e.ts, "eid", e.event_id),
        )
        await store.execute(
            "naive_set",
            "HSET",
            keys.state(MODEL, "item", e.item_id),
            *("v", encode_vector(new_i[0]), "ts", e.ts, "eid", e.event_id),
        )
        lat.append(time.perf_counter() - s)
    naive_run = latency_run(
        "naive-read-modify-write", lat, len(naive_events), time.perf_counter() - t0
    )
    # after the naive writer, so that it too ran against the server as configured
    await store.execute("bench_aof", "CONFIG", "SET", "appendonly", "no")
    try:
        no_aof_run, no_aof_split = await _ingest(
            "salecast-pipeline-no-aof", pipeline, store,
            _events("a", args.events, args.users, args.items, 3), args.batch,
        )  # fmt: skip
    finally:
        await store.execute("bench_aof", "CONFIG", "SET", "appendonly", "yes")
    max_load = max(max_load, load_average())
    notes = (
        f"2-core CPU, no GPU in this session (GPU numbers not measured). The garbage "
        "collector is set as `salecast serve` sets it (service.api.main.settle_garbage_"
        "collector). Item table "
        f"{args.items} items x {2 * d} floats; {args.users} users; batches of {args.batch} "
        "events for ours. Naive skips CAS and idempotency, so it does less work per event. "
        f"{load_note(max(max_load, load_average()))}"
    )
    write_speed(
        "events-ingest",
        [ours_run, log_run, no_aof_run, naive_run],
        "salecast-pipeline",
        command=args.command,
        notes=f"{notes} {split} salecast-pipeline-no-aof: the same pipeline on other users' "
        "events with the server's append-only file switched off for the run (CONFIG SET "
        "appendonly no), to show what durability costs; salecast always runs with it on. "
        "Compare the two by the Valkey CPU per event: the second run also spends more of this "
        "process's CPU per event (seen in every run so far, cause not investigated), so its "
        f"throughput is not a clean comparison. {no_aof_split} salecast-event-log: the "
        "single-writer mode (SALECAST_EVENTS_MODE=log) on other users' events: batches "
        "appended one at a time (latency per batch: until the append is acknowledged) while "
        "this process's LogApplier applies the log; throughput counts events until the last "
        f"one's states are written. {log_split}",
    )

    # ---- recommendations ---------------------------------------------------------------------
    users = sorted({e["user_id"] for e in ours_events})
    rng = np.random.default_rng(3)
    asked = [users[j] for j in rng.integers(0, len(users), args.requests)]
    lat = []

    async def one(user: str) -> None:
        s = time.perf_counter()
        await recommend(loaded, store, user, 20)
        lat.append(time.perf_counter() - s)

    t0 = time.perf_counter()
    for start in range(0, len(asked), args.concurrency):
        await asyncio.gather(*(one(u) for u in asked[start : start + args.concurrency]))
    ours_rec = latency_run("salecast-recommend", lat, len(asked), time.perf_counter() - t0)

    lat = []
    t_tab = loaded.state[MODEL]
    t0 = time.perf_counter()
    for user in asked[: args.naive_requests]:
        s = time.perf_counter()
        state = (await store.get_states(MODEL, "user", [user]))[0]
        vec = state.vector if state is not None else t_tab.init_user
        loaded.run_direct(
            "score",
            {
                "user_state": vec[None, : 2 * d],
                "user_index": t_tab.user_idx([user]),
                "last_item": np.asarray([int(vec[2 * d])]),
                "dt_user": np.asarray([1.0], dtype=np.float32),
                "dt_limited": np.asarray([1.0 + float(vec[2 * d + 1])], dtype=np.float32),
            },
        )
        lat.append(time.perf_counter() - s)
    naive_rec = latency_run(
        "naive-one-call-per-request",
        lat,
        min(len(asked), args.naive_requests),
        time.perf_counter() - t0,
    )
    write_speed(
        "recommend",
        [ours_rec, naive_rec],
        "salecast-recommend",
        command=args.command,
        notes=notes + f" {args.concurrency} requests in flight for ours; top-20.",
    )
    await store.close()
    await registry.stop()


async def _ingest(
    name: str, pipeline: Any, store: Any, events: list[dict[str, Any]], batch: int
) -> tuple[dict[str, Any], str]:
    """Apply `events` in batches of `batch`, one batch at a time: the run, and a sentence on
    where an event's time went (this process's CPU, the Redis server's CPU, wall)."""
    lat: list[float] = []
    redis_cpu0, cpu0 = await _redis_cpu_seconds(store), time.process_time()
    t0 = time.perf_counter()
    for start in range(0, len(events), batch):
        s = time.perf_counter()
        result = await pipeline.process(events[start : start + batch])
        lat.append(time.perf_counter() - s)
        assert result.count("applied") + result.count("duplicate") > 0
    wall = time.perf_counter() - t0
    split = await _where_time_went(
        name, store, (redis_cpu0, cpu0), len(events), wall,
        "the two run one after the other (each wave's script is awaited before the next "
        "wave is computed)",
    )  # fmt: skip
    return latency_run(name, lat, len(events), wall), split


async def _ingest_log(
    name: str,
    store: Any,
    updater: Any,
    events: list[dict[str, Any]],
    batch: int,
    pace_per_s: float | None = None,
) -> tuple[dict[str, Any], str, np.ndarray]:
    """The single-writer mode: append `events` in batches of `batch` while a `LogApplier`
    applies them in the same process; at most `pace_per_s` events/s when given (otherwise as
    fast as the appends are answered). The run (latency = acknowledged append per batch,
    throughput = events until every state is written), a sentence on the CPU split, and how
    long after its acknowledgement each batch's states were written (seconds)."""
    from service.events import EventPipeline
    from service.events.event_log import EventLog
    from service.events.log_applier import LogApplier

    applier = LogApplier(lambda: store, [updater])
    pipeline = EventPipeline(store, [updater], event_log=EventLog(store), on_append=applier.notify)
    applier.start()
    acked: list[tuple[int, float]] = []  # (the batch's newest commit, when it was answered)
    lag: list[float] = []
    appending = True

    async def watch() -> None:
        seen = 0
        while appending or seen < len(acked):
            mark = applier.applied
            while seen < len(acked) and mark is not None and mark >= acked[seen][0]:
                lag.append(time.perf_counter() - acked[seen][1])
                seen += 1
            await asyncio.sleep(0.0005)

    watcher = asyncio.get_running_loop().create_task(watch())
    lat: list[float] = []
    redis_cpu0, cpu0 = await _redis_cpu_seconds(store), time.process_time()
    t0 = time.perf_counter()
    for start in range(0, len(events), batch):
        if pace_per_s is not None:
            await asyncio.sleep(max(0.0, t0 + start / pace_per_s - time.perf_counter()))
        s = time.perf_counter()
        result = await pipeline.process(events[start : start + batch])
        now = time.perf_counter()
        lat.append(now - s)
        commits = [o.commit for o in result.results if o.status == "accepted" and o.commit]
        assert commits, "no event of the batch was accepted"
        acked.append((max(commits), now))
    appending = False
    await watcher
    wall = time.perf_counter() - t0
    await applier.close()
    q = np.percentile(np.asarray(lag) * 1e3, [50, 99])
    split = await _where_time_went(
        name, store, (redis_cpu0, cpu0), len(events), wall,
        "the applier's next chunk is computed while Valkey runs the previous one's script",
    )  # fmt: skip
    split += (
        f" A batch's states were written {q[0]:.1f} ms (p50) / {q[1]:.1f} ms (p99) after its "
        "append was acknowledged."
    )
    return latency_run(name, lat, len(events), wall), split, np.asarray(lag)


class _Profile:
    """py-spy on this process for one run (``--profile``); `stop` returns its summary."""

    def __init__(self, enabled: bool, name: str) -> None:
        self.raw = Path(tempfile.gettempdir()) / f"salecast-imn-speed-{name}-{os.getpid()}.raw"
        self.proc: subprocess.Popen[bytes] | None = None
        if enabled:
            self.proc = profile.start(os.getpid(), 3600, self.raw)
            time.sleep(1.0)  # py-spy attaches before the run starts

    def stop(self) -> str:
        if self.proc is None:
            return "not profiled (pass --profile)"
        self.proc.send_signal(signal.SIGINT)  # py-spy writes what it sampled and exits
        summary = profile.finish(self.proc, self.raw)
        with contextlib.suppress(FileNotFoundError):
            self.raw.unlink()
        return summary


async def _where_time_went(
    name: str, store: Any, start: tuple[float, float], n: int, wall: float, how: str
) -> str:
    """A sentence on an event's share of this process's CPU, the Valkey server's CPU and wall
    time since `start` (the server's and this process's CPU seconds then), and `how` the two
    relate in this run."""
    redis_cpu0, cpu0 = start
    per_event_us = 1e6 / n
    own_us = per_event_us * (time.process_time() - cpu0)
    redis_us = per_event_us * (await _redis_cpu_seconds(store) - redis_cpu0)
    return (
        f"Where an event's time went ({name}): {own_us:.1f} us of this process's CPU, "
        f"{redis_us:.1f} us of the Valkey server's CPU, {per_event_us * wall:.1f} us of wall "
        f"time: {how}."
    )


async def _redis_cpu_seconds(store: Any) -> float:
    """User + system CPU seconds the Redis server has used (``INFO cpu``)."""
    raw = await store.execute("bench_info", "INFO", "cpu")
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    return float(fields["used_cpu_user"]) + float(fields["used_cpu_sys"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=5_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--naive-events", type=int, default=3_000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--requests", type=int, default=4_000)
    parser.add_argument("--naive-requests", type=int, default=2_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", action="store_true", help="py-spy the salecast event runs")
    args = parser.parse_args(argv)
    args.command = "python -m bench.imn_speed " + shlex.join(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(1)
    from service.state.embedded import EmbeddedRedis

    with tempfile.TemporaryDirectory() as tmp:
        artifacts = Path(tmp) / "artifacts"
        _train_artifact(artifacts, args.items, args.dim, args.seed)
        with EmbeddedRedis(Path(tmp)) as server:
            asyncio.run(_run(args, server.url, artifacts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
