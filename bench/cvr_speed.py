"""CVR throughput: 100-pair calls of the MetaCVR servable vs a naive per-pair peer.

Runs (one process, same artifact, same pairs, same carried behaviour sequences):

* `metacvr-batched`: what `/v1/score/cvr` does: features for all 100 pairs, then one ONNX
  Runtime call on the `score` graph (prototypes and distances inside the graph);
* `metacvr-per-pair`: the naive way to serve the same model: one servable call per pair (100
  calls per request), so the features' array operations and the ORT call run once per pair.

Throughput counts scored pairs per second of wall time; latency is per 100-pair request.
ONNX Runtime is called directly (no HTTP, no micro-batcher, no Redis) on the CUDA provider
when present, else the CPU. Usage: `python -m bench.cvr_speed [--artifact DIR]`; without
an artifact a demo one is trained first on the synthetic promotion log.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from bench.common import latency_run, load_average, load_note, write_speed
from service.runtime.direct import DirectLoaded
from service.servables.cvr import CvrServable, PairInput, SeqEvent


def make_pairs(loaded: DirectLoaded, n: int, seq_events: int, seed: int) -> list[PairInput]:
    """`n` pairs of known users and items, each carrying `seq_events` past events."""
    rng = np.random.default_rng(seed)
    vocab = loaded.manifest.vocabularies
    users, items, cats = vocab["user"], vocab["item"], vocab["category"]
    at = 1_700_000_000
    actions = ["browse", "browse", "browse", "collect", "cart", "purchase"]
    pairs = []
    for _ in range(n):
        seq = [
            SeqEvent(
                str(items[rng.integers(len(items))]),
                str(cats[rng.integers(len(cats))]),
                actions[rng.integers(len(actions))],
                at - int(rng.integers(60, 30 * 86400)),
            )
            for _ in range(seq_events)
        ]
        pairs.append(
            PairInput(
                str(users[rng.integers(len(users))]),
                str(items[rng.integers(len(items))]),
                ts=at,
                sequence=sorted(seq, key=lambda e: e.ts),
            )
        )
    return pairs


async def run(loaded: DirectLoaded, pairs: list[PairInput], calls: int, per_pair: bool) -> dict:
    servable = CvrServable()
    servable.config(loaded)  # per-version tables load once, as in the service
    await servable.score(loaded, pairs[:2], None)  # warm-up
    latencies, errors = [], 0
    start = time.perf_counter()
    for _ in range(calls):
        t0 = time.perf_counter()
        try:
            if per_pair:
                for pair in pairs:
                    await servable.score(loaded, [pair], None)
            else:
                await servable.score(loaded, pairs, None)
        except Exception:  # counted and reported, like a failed HTTP call
            errors += 1
        latencies.append(time.perf_counter() - t0)
    wall = time.perf_counter() - start
    name = "metacvr-per-pair" if per_pair else "metacvr-batched"
    return latency_run(name, latencies, calls * len(pairs), wall, errors)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--artifact", type=Path, default=None, help="artifacts/cvr/<version>")
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--seq-events", type=int, default=50)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.artifact
        if path is None:
            from training.jobs.cvr import train_demo

            path = train_demo(Path(tmp))
        loaded = DirectLoaded(path, args.threads)
        pairs = make_pairs(loaded, args.pairs, args.seq_events, seed=0)
        batched = asyncio.run(run(loaded, pairs, args.calls, per_pair=False))
        naive = asyncio.run(run(loaded, pairs, max(10, args.calls // 10), per_pair=True))
        cfg = loaded.manifest.config["model"]
        notes = (
            f"{args.pairs} pairs per request, {args.seq_events} carried events per pair, "
            f"ORT {ort.__version__} on {loaded.provider} ({args.threads} intra-op threads); "
            f"model d_model={cfg['d_model']}, heads={cfg['heads']}, seq_len={cfg['seq_len']}, "
            f"distance={cfg['distance']}; artifact {loaded.version}. Both runs call "
            "CvrServable.score: the batched run builds the features of all its pairs in one "
            "set of array operations and makes one ORT call, the per-pair run pays both once "
            f"per pair. {load_note(load_average())} "
            + (
                "No GPU in this session: CPU numbers only."
                if loaded.provider == "CPUExecutionProvider"
                else ""
            )
        )
        write_speed(
            "cvr-score",
            [batched, naive],
            ours="metacvr-batched",
            command=shlex.join(["python", "-m", "bench.cvr_speed", *sys.argv[1:]]),
            notes=notes,
            extra={"pairs_per_request": args.pairs, "provider": loaded.provider},
        )


if __name__ == "__main__":
    main()
