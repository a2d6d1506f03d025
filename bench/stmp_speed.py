"""Forecast throughput: all categories of one region, STMP servable vs naive peers.

Runs (one process, same artifact, same region, same horizon):

* `stmp-batched`: the servable's rollout, every category of the region in one ONNX Runtime
  call per period, `samples` psi draws each (what `/v1/forecast/festival` does);
* `stmp-per-category`: the naive way to serve the same model, one ORT call per category
  and period;
* `seasonal-naive`: last year's value per category, no model (the accuracy baseline's cost).

Throughput counts forecasts (category x period, each with its intervals) per second.
ONNX Runtime is called directly (no HTTP, no micro-batcher) on the CUDA provider when
present, else the CPU. Usage: `python -m bench.stmp_speed [--artifact DIR] [--region R]`.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from bench.common import latency_run, load_average, load_note, write_speed
from service.runtime.direct import DirectLoaded
from service.servables.stmp import STMPServable, STMPTables


class EmptyHistory:
    """No ingested sales: forecasts start from the artifact's own training tail."""

    async def sales_history(self, region: str, categories: object) -> dict[str, dict[str, float]]:
        return {}

    async def revision(self, region: str) -> None:
        return None

    async def external_factors(self, region: str, factors: object) -> dict[str, dict[str, float]]:
        return {}

    async def get_task(self, region: str) -> None:
        return None

    async def set_task(self, region: str, vector: np.ndarray, weight: float) -> None:
        return None


def newest_artifact(root: Path) -> Path:
    versions = sorted(
        p for p in (root / "stmp").iterdir() if p.is_dir() and not p.name.startswith(".")
    )
    if not versions:
        raise SystemExit(f"no stmp artifact under {root}; run `salecast train stmp` first")
    return versions[-1]


async def run(args: argparse.Namespace) -> None:
    path = args.artifact or newest_artifact(Path(args.artifacts))
    loaded = DirectLoaded(path, threads=args.threads)
    servable = STMPServable(seed=0)
    tb: STMPTables = servable.tables(loaded)
    region = args.region or max(
        tb.regions, key=lambda r: sum(1 for (rr, _) in tb.series if rr == r)
    )
    ids = servable.resolve_categories(tb, region, None)
    history = EmptyHistory()
    origin = tb.history_end_step
    last = origin + args.horizon
    forecasts_per_call = len(ids) * args.horizon

    async def batched() -> None:
        states = servable.series_states(tb, ids, {}, {})
        region_vec = tb.region_task[tb.region_index[region]]
        await servable.rollout(loaded, tb, ids, states, region_vec, origin + 1, last)

    async def per_category() -> None:
        region_vec = tb.region_task[tb.region_index[region]]
        for n in ids:
            states = servable.series_states(tb, [n], {}, {})
            await servable.rollout(loaded, tb, [n], states, region_vec, origin + 1, last)

    season = 52 if tb.frequency == "W" else 364

    async def seasonal() -> None:
        # Last year's values from the artifact's training tail, per category (no model).
        for n in ids:
            for h in range(1, args.horizon + 1):
                lag = tb.window - season + h - 1
                _ = float(tb.history[n, lag, 0]) * float(tb.scale[n]) if lag >= 0 else 0.0

    async def measure(name: str, fn: object, calls: int) -> dict[str, object]:
        assert callable(fn)
        for _ in range(3):
            await fn()
        lat = []
        start = time.perf_counter()
        for _ in range(calls):
            t0 = time.perf_counter()
            await fn()
            lat.append(time.perf_counter() - t0)
        wall = time.perf_counter() - start
        result = latency_run(name, lat, calls * forecasts_per_call, wall)
        print(
            f"{name}: {result['throughput_per_s']:.0f} forecasts/s, p50 {result['p50_ms']:.2f} ms"
        )
        return result

    _ = history
    runs = [
        await measure("stmp-batched", batched, args.calls),
        await measure("stmp-per-category", per_category, max(1, args.calls // 4)),
        await measure("seasonal-naive", seasonal, args.calls),
    ]
    gpu = loaded.provider == "CUDAExecutionProvider"
    notes = (
        f"region {region}: {len(ids)} categories x {args.horizon} period(s) per call, "
        f"{tb.samples} psi samples per forecast; ORT {ort.__version__} on {loaded.provider}, "
        f"{args.threads} intra-op threads; artifact {path.name} ({tb.frequency}). "
        + ("" if gpu else "No GPU in this run: CPU numbers only. ")
        + load_note(load_average())
    )
    write_speed(
        "forecast-gpu" if gpu else "forecast",
        runs,
        "stmp-batched",
        notes=notes,
        extra={"region": region, "categories": len(ids), "horizon": args.horizon},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--artifact", type=Path, default=None, help="an stmp version directory")
    parser.add_argument("--artifacts", default="artifacts")
    parser.add_argument("--region", default=None, help="default: the region with most categories")
    parser.add_argument("--horizon", type=int, default=1, help="periods per forecast call")
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
