"""Promotion-item forecast throughput: DINOP from stored states vs naive peers.

Runs (one process, one artifact, the same N items with T pre-sale periods each):

* `dinop-from-state`: what `/v1/forecast/promotion-items` runs per request: the items'
  folded pre-sale states go through the `forecast` graph in one ONNX Runtime call;
* `dinop-recompute`: the same forecast without stored states: every request re-runs the
  T pre-sale periods through the `step` graph (batched over items), then `forecast`;
* `dinop-per-item`: from states, but one ORT call per item (no batching);
* `naive-last-period`: the accuracy table's no-model reference (last pre-sale period's
  sales as the GMV), numpy only.

Throughput counts item forecasts (GMV + BSP + 10 slot probabilities + JA) per second.
ONNX Runtime is called directly (no HTTP, no Redis, no micro-batcher), on the CUDA
provider when present, else the CPU. Usage:
`python -m bench.dinop_speed [--artifact artifacts/dinop/<version>] [--items 2000]`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from bench.common import latency_run, load_average, load_note, write_speed
from service.runtime.manifest import read_manifest


def sessions(path: Path, threads: int) -> tuple[dict[str, ort.InferenceSession], str]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    providers = [
        p
        for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
        if p in ort.get_available_providers()
    ]
    manifest = read_manifest(path)
    out = {
        name: ort.InferenceSession(str(path / spec.file), options, providers=providers)
        for name, spec in manifest.graphs.items()
    }
    return out, providers[0]


def dims(sess: ort.InferenceSession) -> dict[str, int]:
    return {i.name: int(i.shape[-1]) for i in sess.get_inputs()}


def timed(fn: Any, repeats: int) -> tuple[list[float], float]:
    fn()  # warm-up
    lats = []
    start = time.perf_counter()
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        lats.append(time.perf_counter() - t0)
    return lats, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--artifact", type=Path, default=None)
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--presale", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    tmp = None
    path = args.artifact
    if path is None:
        from training.jobs.dinop import train_demo

        tmp = tempfile.TemporaryDirectory(prefix="dinop-bench-")
        path = train_demo(Path(tmp.name))
    sess, provider = sessions(path, args.threads)
    rng = np.random.default_rng(0)
    n, T = args.items, args.presale
    fd, sd = dims(sess["forecast"]), dims(sess["step"])
    H = sd["h"]

    def rand(rows: int, cols: int) -> np.ndarray:
        return rng.normal(size=(rows, cols)).astype(np.float32)

    statics = {"sii": rand(n, fd["sii"]), "sis": rand(n, fd["sis"]), "act": rand(n, fd["act"])}
    seq = {"dis": rng.normal(size=(T, n, sd["dis"])).astype(np.float32)}
    seq["du"] = rng.normal(size=(T, n, sd["du"])).astype(np.float32)
    su = rand(n, sd["su"])
    valid = np.ones((n, 1), np.float32)

    def fold() -> tuple[np.ndarray, np.ndarray]:
        h, m = np.zeros((n, H), np.float32), np.full((n, 1), -1e30, np.float32)
        s, acc = np.zeros((n, 1), np.float32), np.zeros((n, H), np.float32)
        for t in range(T):
            h, m, s, acc = sess["step"].run(
                None,
                {
                    "h": h,
                    "m": m,
                    "s": s,
                    "acc": acc,
                    "dis": seq["dis"][t],
                    "du": seq["du"][t],
                    "su": su,
                    "valid": valid,
                },
            )
        return s, acc

    s, acc = fold()  # the stored states

    def from_state() -> None:
        sess["forecast"].run(None, {"s": s, "acc": acc, **statics})

    def recompute() -> None:
        s2, acc2 = fold()
        sess["forecast"].run(None, {"s": s2, "acc": acc2, **statics})

    per_item_n = min(n, 200)  # per-item calls are slow: time a slice, report per item

    def per_item() -> None:
        for i in range(per_item_n):
            sess["forecast"].run(
                None,
                {
                    "s": s[i : i + 1],
                    "acc": acc[i : i + 1],
                    **{k: v[i : i + 1] for k, v in statics.items()},
                },
            )

    last_sales = rng.gamma(2.0, 5000.0, size=(n, T))

    def naive() -> None:
        np.asarray(last_sales[:, -1], dtype=np.float64).copy()

    runs = []
    for name, fn, items in (
        ("dinop-from-state", from_state, n),
        ("dinop-recompute", recompute, n),
        ("dinop-per-item", per_item, per_item_n),
        ("naive-last-period", naive, n),
    ):
        lats, wall = timed(fn, args.repeats)
        runs.append(latency_run(name, lats, items * args.repeats, wall))
    for run in runs:
        print(f"{run['name']:>20}: {run['throughput_per_s']:>12.0f} items/s")
    mine = runs[0]["throughput_per_s"]
    for run in runs[1:]:
        print(f"dinop-from-state / {run['name']}: {mine / run['throughput_per_s']:.2f}x")
    write_speed(
        "promotion-items",
        runs,
        "dinop-from-state",
        notes=(
            f"{n} items per call, {T} pre-sale periods, ORT provider {provider}, "
            f"{args.threads} intra-op threads, {args.repeats} timed calls after one warm-up; "
            "latency is per call (per_item: per call of "
            f"{per_item_n} single-item runs). ORT only: Redis reads and HTTP are not "
            f"included. {load_note(load_average())} No GPU in this session, so no GPU "
            "numbers."
        ),
        extra={"items": n, "presale_periods": T, "provider": provider},
    )
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
