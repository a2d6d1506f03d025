"""Intent scoring throughput: 1,000-user calls through features + ONNX Runtime vs PyTorch eager.

Run: `python -m bench.intent_speed` (writes `bench/results/speed-intent-score.json` + `.md`).

- `ours-onnx-1000`: what the servable does per call, minus HTTP and Redis: build the
  features of 1,000 users from their `[W, 4]` counts (`build_features`, numpy) and run the
  artifact's `score` graph once on ONNX Runtime (CUDA provider when present, CPU otherwise).
- `servable-registry-1000`: the whole servable path without HTTP: `IntentServable.score`
  on 1,000 user ids whose counts come from memory (standing in for Redis, which the
  events benchmarks measure), through the real `ModelRegistry`, micro-batcher and
  post-processing, on an artifact written with `write_artifact`.
- `naive-eager-per-user`: the same features, then the PyTorch module called once per user
  (`model(**one_user)` in eval mode, no batching): the naive baseline the issue names.

Both use the same freshly initialised model (throughput does not depend on the weights)
and the same synthetic counts (Poisson, a realistic mix of active and quiet users).
Throughput = users scored per second of wall time; latency = one 1,000-user call (ours) or
one user (naive).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from bench.common import latency_run, write_speed
from models.tpgdnn import OUTPUTS, TASKS, TPGDNN, TPGDNNConfig
from service.config import Settings
from service.runtime.manifest import DataWindow
from service.runtime.registry import ModelRegistry
from service.servables.intent import IntentServable, UserInput
from service.servables.intent_features import FIELD_VOCABS, FeatureSpec, build_features
from training.artifacts import write_artifact


class MemoryCounts:
    """Counts from an in-memory array (Redis reads are benchmarked by the events benchmarks)."""

    def __init__(self, counts: np.ndarray) -> None:
        self.data = counts

    async def counts(self, user_ids: Sequence[str], cut_ts: int, spec: FeatureSpec) -> np.ndarray:
        return self.data[: len(user_ids)]


async def _servable_run(
    artifacts: Path, counts: np.ndarray, cut: int, calls: int, threads: int
) -> tuple[dict[str, float | str | int], str]:
    settings = Settings(artifacts_dir=artifacts, poll_interval_s=0, intra_op_threads=threads)
    registry = ModelRegistry(settings)
    await registry.start()
    try:
        loaded = registry.get("intent")
        servable = IntentServable()
        users = [UserInput(f"user{i}") for i in range(len(counts))]
        source = MemoryCounts(counts)
        for _ in range(3):
            await servable.score(loaded, users, source, cut)
        lat: list[float] = []
        start = time.perf_counter()
        for _ in range(calls):
            t0 = time.perf_counter()
            await servable.score(loaded, users, source, cut)
            lat.append(time.perf_counter() - t0)
        wall = time.perf_counter() - start
        return latency_run("servable-registry-1000", lat, len(users) * calls, wall), str(
            getattr(loaded, "provider", "")
        )
    finally:
        await registry.stop()


def _providers() -> list[str]:
    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=1000, help="users per call")
    parser.add_argument("--calls", type=int, default=50, help="timed 1,000-user calls")
    parser.add_argument("--naive-users", type=int, default=2000, help="timed single-user calls")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    spec = FeatureSpec()
    torch.manual_seed(0)
    model = TPGDNN(TPGDNNConfig(field_vocabs=list(FIELD_VOCABS))).eval()
    rng = np.random.default_rng(0)
    rates = rng.gamma(0.5, 0.6, size=(args.users, 1, 1)) * np.array([1.0, 0.02, 0.02, 0.05])
    counts = rng.poisson(rates, size=(args.users, spec.window, 4)).astype(np.float32)
    cut = np.full(args.users, 1_500_000_000, dtype=np.int64)

    with tempfile.TemporaryDirectory() as tmp:
        path = model.export_graphs(Path(tmp))["score"]
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = args.threads
        session = ort.InferenceSession(str(path), opts, providers=_providers())
        provider = session.get_providers()[0]

        def call() -> None:
            feats = build_features(counts, cut, spec)
            session.run(OUTPUTS, feats)

        for _ in range(3):
            call()
        lat: list[float] = []
        start = time.perf_counter()
        for _ in range(args.calls):
            t0 = time.perf_counter()
            call()
            lat.append(time.perf_counter() - t0)
        wall = time.perf_counter() - start
        ours = latency_run("ours-onnx-1000", lat, args.users * args.calls, wall)
        # where the time of one call goes: numpy features vs the ONNX Runtime call
        t0 = time.perf_counter()
        for _ in range(10):
            feats = build_features(counts, cut, spec)
        features_ms = (time.perf_counter() - t0) / 10 * 1e3
        t0 = time.perf_counter()
        for _ in range(10):
            session.run(OUTPUTS, feats)
        graph_ms = (time.perf_counter() - t0) / 10 * 1e3
        ours["provider"] = provider
        write_artifact(
            Path(tmp) / "artifacts",
            "intent",
            {"score": path},
            data_window=DataWindow(start="", end="", sha256="", source="bench"),
            config={
                "features": spec.to_dict(),
                "label_seconds": 86_400,
                "thresholds": {t: 0.5 for t in TASKS},
                "priors": {**{t: 0.1 for t in TASKS}, "order_volume": 0.1},
            },
        )
        served, _ = asyncio.run(
            _servable_run(Path(tmp) / "artifacts", counts, int(cut[0]), args.calls, args.threads)
        )

    feats = build_features(counts, cut, spec)
    tensors = {k: torch.from_numpy(v) for k, v in feats.items()}
    naive_lat: list[float] = []
    n = min(args.naive_users, args.users)
    with torch.no_grad():
        for i in range(10):
            model(**{k: v[i : i + 1] for k, v in tensors.items()})
        start = time.perf_counter()
        done = 0
        while done < args.naive_users:
            i = done % n
            t0 = time.perf_counter()
            model(**{k: v[i : i + 1] for k, v in tensors.items()})
            naive_lat.append(time.perf_counter() - t0)
            done += 1
        wall = time.perf_counter() - start
    naive = latency_run("naive-eager-per-user", naive_lat, args.naive_users, wall)

    gpu = "CUDA" in provider
    write_speed(
        "intent-score",
        [ours, served, naive],
        "ours-onnx-1000",
        command="python -m bench.intent_speed " + shlex.join(sys.argv[1:]),
        notes=(
            f"ONNX Runtime provider {provider}; {args.threads} threads for both. "
            "Ours' latency is one 1,000-user call (features + graph), the naive run's one user. "
            "ours-onnx-1000 and the naive run have no HTTP, Redis or micro-batcher; "
            "servable-registry-1000 adds the registry, micro-batcher (batch_max_size default) "
            "and post-processing, with counts from memory instead of Redis. "
            + ("" if gpu else "No GPU in this session: GPU numbers not measured. ")
            + f"Load average at the end: {os.getloadavg()[0]:.1f} on 2 shared cores."
        ),
        extra={
            "users_per_call": args.users,
            "feature_window_buckets": spec.window,
            "mean_ms_per_call": {"features": features_ms, "onnx_graph": graph_ms},
            # the 2-core machine is shared: the load says how much to trust absolute numbers
            "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
        },
    )


if __name__ == "__main__":
    main()
