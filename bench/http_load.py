"""Whole-service HTTP load test: salecast vs the naive FastAPI + ONNX Runtime peer, on loopback.

Run: ``python -m bench.http_load --route intent --seconds 20 --concurrency 32``
(routes: ``intent``, ``recommend``, ``events``, ``cvr``). Writes
``bench/results/speed-http-<route>.json`` + ``.md`` with `bench.common.write_speed`.

One run measures, one after the other on the same machine and with the same load:

1. ``salecast``: the real service as a subprocess (``salecast serve`` on 127.0.0.1, its own
   embedded Valkey because ``REDIS_URL`` is removed from its environment), on the demo
   artifacts `training.demo.ensure_demo_models` trains into a temporary folder, or on an
   existing folder given with ``--artifacts``. Before the load, users are seeded through
   ``POST /v1/events`` so the calls read real state (counts, sequences, IMN states).
2. ``naive-fastapi-ort``: `bench.naive_server`, the peer PERF-NOTES.md names: one uvicorn
   worker, the same ONNX graph of the same artifact version, one ORT call per request, no
   micro-batching and no Redis. Having no state, it is sent the graph inputs the service
   would have computed for the same users (features from the same seeded events), so both
   do the same model work per request; the naive peer skips the state reads and the service
   skips nothing.

Load: a bounded number of concurrent keep-alive connections for a bounded time (and at most
``--max-requests``), from a separate process so the client never shares the server's event
loop: ``wrk`` when it is on PATH (a Lua script cycles through the request bodies), otherwise
an asyncio + httpx client (``python -m bench.http_load --client spec.json``). The first
``--warmup`` seconds are not counted. Only loopback addresses are used.

Whatever happens (an error, Ctrl-C, SIGTERM), every process this script started (servers,
the service's Valkey, the client) is stopped before it exits.

Why both run one after the other rather than at once: on a small machine two servers would
take CPU from each other, and the ratio would measure the scheduler.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, SimpleNamespace
from typing import Any

import numpy as np

from bench.common import latency_run, write_speed

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
ROUTE_MODEL = {"intent": "intent", "recommend": "imn", "events": "imn", "cvr": "cvr"}
ROUTE_GRAPH = {"intent": "score", "recommend": "score", "events": "update", "cvr": "score"}
SEED_ACTIONS = ("browse",) * 6 + ("collect", "cart", "purchase")
DAY = 86_400
NAIVE_INPUTS = {
    "intent": "it is sent the features the service computes for the same users (from the "
    "same seeded events) instead of user ids.",
    "cvr": "it is sent the features the service computes for the same pairs (from the same "
    "seeded sequences) instead of ids.",
    "recommend": "it is sent one user's graph inputs (the artifact's initial user state, the "
    "user's last item) and feeds the item table with every call; it returns the graph's full "
    "top-k, salecast the first k.",
    "events": "it is sent the update graph's inputs for the same number of events (initial "
    "user and item states), and stores nothing.",
}


# ---- processes ---------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass
class Started:
    """A process this script started, in its own process group, with its log file."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


@dataclass
class Processes:
    """Every child process; `stop_all` ends them, gracefully first (the service drains and
    stops its Valkey on SIGTERM), then by killing their process groups."""

    started: list[Started] = field(default_factory=list)

    def start(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> Started:
        with log.open("wb") as fh:
            proc = subprocess.Popen(
                argv, env=env, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        item = Started(name, proc, log)
        self.started.append(item)
        return item

    def stop(self, item: Started, grace_s: float = 30.0) -> None:
        proc = item.proc
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(grace_s)
        # Anything left in its group (a Valkey the service did not get to stop) is killed.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        if item in self.started:
            self.started.remove(item)

    def stop_all(self) -> None:
        for item in list(reversed(self.started)):
            self.stop(item, grace_s=15.0)


def _sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def wait_ready(item: Started, base_url: str, model: str | None, timeout_s: float) -> None:
    """Poll /health/ready until 200 (and `model` loaded, for the service)."""
    import httpx

    deadline = time.monotonic() + timeout_s
    last = ""
    with httpx.Client(base_url=base_url, timeout=5.0, trust_env=False) as client:
        while time.monotonic() < deadline:
            if item.proc.poll() is not None:
                raise RuntimeError(f"{item.name} exited ({item.proc.returncode}):\n{item.tail()}")
            try:
                resp = client.get("/health/ready")
                last = resp.text[:500]
                if resp.status_code == 200:
                    loaded = resp.json().get("checks", {}).get("models", {}).get("loaded", {})
                    if model is None or model in loaded:
                        return
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.5)
    raise RuntimeError(f"{item.name} not ready after {timeout_s:.0f} s: {last}\n{item.tail()}")


# ---- artifacts and synthetic users -----------------------------------------------------------
def newest_version(artifacts: Path, model: str) -> Path:
    versions = sorted(
        p for p in (artifacts / model).glob("*") if p.is_dir() and not p.name.startswith(".")
    )
    if not versions:
        raise SystemExit(f"no {model} artifact under {artifacts}")
    return versions[-1]


@dataclass
class Seed:
    """The synthetic users and their events, sent to the service and used for naive inputs."""

    users: list[str]
    items: list[str]
    events: list[dict[str, Any]]  # /v1/events bodies' events, sorted by time
    now: int


def make_seed(n_users: int, items: list[str], now: int, seed: int) -> Seed:
    """Each user gets 20-40 events over the last 50 days (inside intent's 56-day window),
    mostly browses with some collect/cart/purchase, the newest one a minute before `now`."""
    rng = np.random.default_rng(seed)
    users = [f"load-u{k}" for k in range(n_users)]
    events: list[dict[str, Any]] = []
    for u in users:
        n = int(rng.integers(20, 41))
        times = np.sort(now - 60 - rng.integers(0, 50 * DAY, n))
        for j, ts in enumerate(times):
            events.append(
                {
                    "event_id": f"seed-{u}-{j}",
                    "user_id": u,
                    "item_id": items[int(rng.integers(len(items)))],
                    "action": SEED_ACTIONS[int(rng.integers(len(SEED_ACTIONS)))],
                    "timestamp": int(ts),
                }
            )
    events.sort(key=lambda e: (e["timestamp"], e["event_id"]))
    return Seed(users, items, events, now)


def seed_service(base_url: str, seed: Seed, batch: int = 1000) -> dict[str, int]:
    import httpx

    totals = {"applied": 0, "duplicate": 0, "rejected": 0}
    with httpx.Client(base_url=base_url, timeout=60.0, trust_env=False) as client:
        for i in range(0, len(seed.events), batch):
            resp = client.post("/v1/events", json={"events": seed.events[i : i + batch]})
            resp.raise_for_status()
            body = resp.json()
            for key in totals:
                totals[key] += int(body[key])
    return totals


def route_items(version: Path, model: str) -> list[str]:
    """Item ids the model knows, so seeded events hit real rows of its tables."""
    vocab = json.loads((version / "manifest.json").read_text()).get("vocabularies", {})
    items = [i for i in vocab.get("items", vocab.get("item", [])) if i]
    return items[:500] or [f"item{k}" for k in range(200)]


# ---- requests ---------------------------------------------------------------------------------
@dataclass
class Request:
    method: str
    path: str
    body: bytes | None = None


def _json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _infer_body(inputs: dict[str, np.ndarray]) -> bytes:
    return _json({"inputs": {k: np.asarray(v).tolist() for k, v in inputs.items()}})


def _groups(users: Sequence[str], size: int) -> list[list[str]]:
    """Consecutive groups of `size` users, wrapping around, one per request body."""
    n = max(len(users) // size, 1)
    return [[users[(g * size + j) % len(users)] for j in range(size)] for g in range(n)]


def intent_requests(seed: Seed, version: Path, per_request: int) -> tuple[list[Request], ...]:
    from service.servables.intent import window_end
    from service.servables.intent_features import (
        ACTIONS,
        FeatureSpec,
        build_features,
        counts_from_events,
    )

    manifest = json.loads((version / "manifest.json").read_text())
    spec = FeatureSpec.from_dict(manifest["config"]["features"])
    cut = window_end(seed.now, spec)
    index = {u: k for k, u in enumerate(seed.users)}
    counts = counts_from_events(
        np.asarray([index[e["user_id"]] for e in seed.events], dtype=np.int64),
        np.asarray([e["timestamp"] for e in seed.events], dtype=np.int64),
        np.asarray([ACTIONS.index(e["action"]) for e in seed.events], dtype=np.int64),
        np.full(len(seed.users), cut, dtype=np.int64),
        len(seed.users),
        spec,
    )
    ours, naive = [], []
    for group in _groups(seed.users, per_request):
        ours.append(Request("POST", "/v1/score/intent", _json({"users": group})))
        rows = [index[u] for u in group]
        feats = build_features(counts[rows], np.full(len(rows), cut, dtype=np.int64), spec)
        naive.append(Request("POST", "/v1/infer", _infer_body(feats)))
    return ours, naive


def _imn_rows(version: Path) -> tuple[dict[str, Any], np.ndarray, dict[str, int], dict[str, int]]:
    manifest = json.loads((version / "manifest.json").read_text())
    vocab = manifest["vocabularies"]
    init_user = np.load(version / "initial_user_state.npy").astype(np.float32)
    users = {u: k for k, u in enumerate(vocab["users"]) if k}
    items = {i: k for k, i in enumerate(vocab["items"]) if k}
    return manifest["config"], init_user, users, items


def recommend_requests(seed: Seed, version: Path, k: int) -> tuple[list[Request], ...]:
    config, init_user, users, items = _imn_rows(version)
    k = min(k, int(config["top_k"]), len(items))
    last: dict[str, str] = {e["user_id"]: e["item_id"] for e in seed.events}
    ours, naive = [], []
    for u in seed.users:
        ours.append(Request("GET", f"/v1/recommendations/{u}?k={k}"))
        dt = float(max(seed.now - 60, 1))
        inputs = {
            "user_state": init_user[None, :],
            "user_index": np.asarray([users.get(u, 0)], dtype=np.int64),
            "last_item": np.asarray([items.get(last.get(u, ""), 0)], dtype=np.int64),
            "dt_user": np.asarray([60.0], dtype=np.float32),
            "dt_limited": np.asarray([dt % DAY], dtype=np.float32),
        }
        naive.append(Request("POST", "/v1/infer", _infer_body(inputs)))
    return ours, naive


def events_naive_requests(seed: Seed, version: Path, per_request: int) -> list[Request]:
    """`update` graph inputs for `per_request` events (initial states), one ORT call each."""
    _config, init_user, _users, items = _imn_rows(version)
    init_item = np.load(version / "initial_item_state.npy").astype(np.float32)
    rng = np.random.default_rng(1)
    out = []
    for _ in range(16):
        n = per_request
        features = np.zeros((n, 4), dtype=np.float32)
        features[np.arange(n), rng.integers(0, 4, n)] = 1.0
        inputs = {
            "user_state": np.repeat(init_user[None, :], n, 0),
            "item_state": np.repeat(init_item[None, :], n, 0),
            "user_index": np.zeros(n, dtype=np.int64),
            "item_index": rng.integers(1, len(items) + 1, n).astype(np.int64),
            "dt_user": rng.uniform(1, 3600, n).astype(np.float32),
            "dt_item": rng.uniform(1, 3600, n).astype(np.float32),
            "dt_purchase": rng.uniform(1, 86400, n).astype(np.float32),
            "features": features,
            "is_purchase": features[:, 3].copy(),
        }
        out.append(Request("POST", "/v1/infer", _infer_body(inputs)))
    return out


def cvr_requests(seed: Seed, version: Path, per_request: int) -> tuple[list[Request], ...]:
    from service.runtime.manifest import read_manifest
    from service.servables.cvr import CvrServable, CvrVersionConfig, PairInput, SeqEvent

    loaded = SimpleNamespace(manifest=read_manifest(version), path=version, version=version.name)
    cfg = CvrVersionConfig.from_loaded(loaded)
    servable = CvrServable()
    seqs: dict[str, list[SeqEvent]] = {u: [] for u in seed.users}
    for e in seed.events:
        seqs[e["user_id"]].append(SeqEvent(e["item_id"], "", e["action"], int(e["timestamp"])))
    rng = np.random.default_rng(2)
    ours, naive = [], []
    for group in _groups(seed.users, per_request):
        picks = [seed.items[int(rng.integers(len(seed.items)))] for _ in group]
        ours.append(
            Request(
                "POST",
                "/v1/score/cvr",
                _json(
                    {
                        "pairs": [
                            {"user_id": u, "item_id": i} for u, i in zip(group, picks, strict=True)
                        ]
                    }
                ),
            )
        )
        pairs = [PairInput(u, i) for u, i in zip(group, picks, strict=True)]
        inputs, _ = servable.features(cfg, pairs, [seqs[u] for u in group], seed.now)
        naive.append(Request("POST", "/v1/infer", _infer_body(inputs)))
    return ours, naive


# ---- the load client (a separate process) -------------------------------------------------------
EVENTS_MARK = "__EVENTS__"  # a request path that makes the client build unique /v1/events bodies


def _events_body(
    worker: int, n: int, per_request: int, users: list[str], items: list[str]
) -> bytes:
    """A /v1/events batch with fresh ids; each worker owns its own users, so one user's events
    always arrive in time order and none is rejected as stale."""
    now = time.time()
    events = []
    for j in range(per_request):
        k = (n * per_request + j) % len(users)
        events.append(
            {
                "event_id": f"load-{worker}-{n}-{j}",
                "user_id": users[k],
                "item_id": items[(n * 7 + j) % len(items)],
                "action": SEED_ACTIONS[(n + j) % len(SEED_ACTIONS)],
                "timestamp": now + j * 1e-6,
            }
        )
    return _json({"events": events})


async def _client(spec: dict[str, Any]) -> dict[str, Any]:
    import httpx

    reqs = [
        Request(r["method"], r["path"], None if r["body"] is None else r["body"].encode())
        for r in spec["requests"]
    ]
    conc, seconds, warmup = int(spec["concurrency"]), float(spec["seconds"]), float(spec["warmup"])
    max_requests = int(spec["max_requests"])
    ev = spec.get("events")
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    state = {"next": 0, "done": 0, "errors": 0}
    start = time.perf_counter()
    t_measure, t_end = start + warmup, start + warmup + seconds
    limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
    headers = {"content-type": "application/json"}
    async with httpx.AsyncClient(
        base_url=spec["base_url"], limits=limits, timeout=30.0, trust_env=False
    ) as client:

        async def worker(w: int) -> None:
            n = 0
            mine = ev["users"][w::conc] if ev else []
            while True:
                t0 = time.perf_counter()
                if t0 >= t_end or state["done"] >= max_requests:
                    return
                req = reqs[state["next"] % len(reqs)]
                state["next"] += 1
                body = req.body
                if ev and req.path == EVENTS_MARK:
                    body = _events_body(w, n, int(ev["per_request"]), mine, ev["items"])
                    path = "/v1/events"
                else:
                    path = req.path
                n += 1
                try:
                    resp = await client.request(req.method, path, content=body, headers=headers)
                    key, ok = str(resp.status_code), resp.status_code < 400
                except httpx.HTTPError as exc:
                    key, ok = type(exc).__name__, False
                t1 = time.perf_counter()
                if t0 < t_measure:
                    continue
                state["done"] += 1
                statuses[key] = statuses.get(key, 0) + 1
                if ok:
                    latencies.append(t1 - t0)
                else:
                    state["errors"] += 1

        await asyncio.gather(*(worker(w) for w in range(conc)))
    wall = time.perf_counter() - max(t_measure, start)
    return {
        "latencies_s": latencies,
        "errors": state["errors"],
        "statuses": statuses,
        "wall_s": wall,
        "client": f"httpx {httpx.__version__} asyncio, {conc} connections",
    }


def client_main(spec_path: Path, out_path: Path) -> None:
    spec = json.loads(spec_path.read_text())
    out_path.write_text(json.dumps(asyncio.run(_client(spec))))


def _lua_string(data: str) -> str:
    return "[==[" + data + "]==]"


WRK_LUA_TAIL = """
local counter = 0
setup = function(thread)
  counter = counter + 1
  thread:set("tid", counter)
end
local i = 0
local n = 0
local run = "run"
local base = 0
init = function(args)
  run = args[1] or "run"
  base = os.time()
end
-- A /v1/events batch with fresh ids. Each wrk thread owns its own users and walks through a
-- pool much larger than the requests in flight, so one user's events arrive in time order.
local function events_body()
  local parts = {}
  for j = 0, EV_B - 1 do
    local u = (n * EV_B + j) % EV_POOL
    parts[#parts + 1] = string.format(
      '{"event_id":"wrk-%s-%d-%d-%d","user_id":"load-w%d-%d","item_id":"%s",' ..
      '"action":"%s","timestamp":%.6f}',
      run, tid, n, j, tid, u, EV_ITEMS[(n * 7 + j) % #EV_ITEMS + 1],
      EV_ACTIONS[(n + j) % #EV_ACTIONS + 1], base + n * 1e-4 + j * 1e-6)
  end
  return '{"events":[' .. table.concat(parts, ",") .. ']}'
end
request = function()
  i = i % #reqs + 1
  local r = reqs[i]
  if r[2] == "__EVENTS__" then
    n = n + 1
    return wrk.format("POST", "/v1/events", headers, events_body())
  end
  return wrk.format(r[1], r[2], headers, r[3])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRKJSON {\\"requests\\":%d,\\"duration_us\\":%d,\\"p50_us\\":%d,\\"p99_us\\":%d," ..
    "\\"connect\\":%d,\\"read\\":%d,\\"write\\":%d,\\"status\\":%d,\\"timeout\\":%d}\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def _lua_list(values: Sequence[str]) -> str:
    return "{" + ", ".join(_lua_string(v) for v in values) + "}"


def _wrk_script(spec: dict[str, Any], path: Path) -> None:
    ev = spec.get("events") or {"per_request": 1, "items": ["x"]}
    b = int(ev["per_request"])
    lines = [
        'headers = {["Content-Type"] = "application/json"}',
        "reqs = {}",
        f"EV_B = {b}",
        f"EV_POOL = {max(64 * b * int(spec['concurrency']), 1024)}",
        f"EV_ITEMS = {_lua_list(ev['items'])}",
        f"EV_ACTIONS = {_lua_list(SEED_ACTIONS)}",
    ]
    for r in spec["requests"]:
        body = "nil" if r["body"] is None else _lua_string(r["body"])
        lines.append(
            f"table.insert(reqs, {{{_lua_string(r['method'])}, {_lua_string(r['path'])}, {body}}})"
        )
    path.write_text("\n".join(lines) + WRK_LUA_TAIL)


COUNTERS = (
    "salecast_events_applied_total",
    "salecast_events_duplicate_total",
    "salecast_events_rejected_total",
    "salecast_batch_requests_sum",
    "salecast_batch_requests_count",
    "salecast_batch_size_rows_sum",
    "salecast_batch_size_rows_count",
)


def service_counters(base_url: str) -> dict[str, float]:
    """The service's own counters (events outcome, micro-batch sizes) from /metrics, summed
    over labels; the difference across the load says what the load made the service do."""
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


def agreement(route: str, ours: dict[str, Any], naive: dict[str, Any]) -> float | None:
    """Largest difference between the service's scores and the naive peer's for the probe
    request: ~0 shows the naive peer was given the very inputs the service computed."""
    outputs = naive.get("outputs", {})
    if route == "intent":
        keys = ("p_browse", "p_collect", "p_cart", "p_purchase", "order_volume")
        rows = ours.get("scores", [])
        pairs = [
            (float(r[k]), float(np.ravel(outputs[k])[i]))
            for i, r in enumerate(rows)
            if r.get("source") == "state"
            for k in keys
        ]
    elif route == "cvr":
        pairs = [
            (float(r[k]), float(np.ravel(outputs[k])[i]))
            for i, r in enumerate(ours.get("scores", []))
            for k in ("cvr", "base_cvr")
        ]
    else:
        return None  # recommend/events: the naive peer has no user state to match
    return max((abs(a - b) for a, b in pairs), default=None)


def probe(base_url: str, spec: dict[str, Any]) -> str:
    """Send the first request once and fail fast unless it succeeds; returns the answer, so
    a broken request shape is an error here and not a run of fast 4xx replies."""
    import httpx

    req = spec["requests"][0]
    method, path, body = req["method"], req["path"], req["body"]
    if spec.get("events") and path == EVENTS_MARK:
        ev = spec["events"]
        method, path = "POST", "/v1/events"
        body = _events_body(10_000, 0, int(ev["per_request"]), ev["users"], ev["items"]).decode()
    with httpx.Client(base_url=base_url, timeout=60.0, trust_env=False) as client:
        resp = client.request(
            method, path, content=body, headers={"content-type": "application/json"}
        )
    if resp.status_code >= 400:
        raise RuntimeError(f"probe {method} {path} -> {resp.status_code}: {resp.text[:1000]}")
    return resp.text


def run_load(
    procs: Processes, spec: dict[str, Any], workdir: Path, name: str, use_wrk: bool
) -> dict[str, Any]:
    """Drive the load from a separate process; returns a `runs` entry plus details."""
    spec_path, out_path = workdir / f"{name}-spec.json", workdir / f"{name}-out.json"
    spec_path.write_text(json.dumps(spec))
    answer = probe(spec["base_url"], spec)
    print(f"{name}: probe answered {answer[:200]}", flush=True)
    limit = float(spec["warmup"]) + float(spec["seconds"]) + 120.0
    if use_wrk:
        script = workdir / f"{name}.lua"
        _wrk_script(spec, script)
        wrk = shutil.which("wrk") or "wrk"
        threads = min(2, int(spec["concurrency"]))
        # wrk has no warm-up option: a short unmeasured run first warms the server.
        for seconds, log_name in ((spec["warmup"], "warmup"), (spec["seconds"], "measure")):
            argv = [
                wrk, "-t", str(threads), "-c", str(spec["concurrency"]),
                "-d", f"{max(int(float(seconds)), 1)}s", "--latency", "--timeout", "30s",
                "-s", str(script), spec["base_url"], "--", f"{log_name}{time.time_ns()}",
            ]  # fmt: skip
            item = procs.start(
                f"wrk-{name}", argv, dict(os.environ), workdir / f"{name}-{log_name}.log"
            )
            try:
                item.proc.wait(limit)
            finally:
                procs.stop(item, grace_s=5.0)
        text = (workdir / f"{name}-measure.log").read_text(errors="replace")
        line = next((ln for ln in text.splitlines() if ln.startswith("WRKJSON ")), None)
        if line is None:
            raise RuntimeError(f"wrk printed no summary:\n{text[-2000:]}")
        w = json.loads(line.split(" ", 1)[1])
        errors = w["connect"] + w["read"] + w["write"] + w["status"] + w["timeout"]
        wall = w["duration_us"] / 1e6
        ok = max(w["requests"] - errors, 0)
        run = {
            "name": name,
            "throughput_per_s": ok / wall if wall > 0 else 0.0,
            "p50_ms": w["p50_us"] / 1e3,
            "p99_ms": w["p99_us"] / 1e3,
            "errors": int(errors),
        }
        return {
            "run": run,
            "requests": int(w["requests"]),
            "client": f"wrk, {threads} threads, {spec['concurrency']} connections",
            "statuses": w,
            "probe": answer,
        }
    argv = [sys.executable, "-m", "bench.http_load", "--client", str(spec_path), str(out_path)]
    item = procs.start(f"client-{name}", argv, dict(os.environ), workdir / f"{name}-client.log")
    try:
        rc = item.proc.wait(limit)
    finally:
        procs.stop(item, grace_s=5.0)
    if rc != 0 or not out_path.exists():
        raise RuntimeError(f"load client failed ({rc}):\n{item.tail()}")
    res = json.loads(out_path.read_text())
    lat = res["latencies_s"]
    run = latency_run(name, lat, len(lat), float(res["wall_s"]), int(res["errors"]))
    return {
        "run": run,
        "requests": len(lat) + int(res["errors"]),
        "client": res["client"],
        "statuses": res["statuses"],
        "probe": answer,
    }


# ---- one benchmark -----------------------------------------------------------------------------
@contextlib.contextmanager
def _workdir(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="salecast-http-load-") as tmp:
        yield Path(tmp)


def _load_average() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def benchmark(args: argparse.Namespace) -> Path:
    route, model = args.route, ROUTE_MODEL[args.route]
    procs = Processes()
    previous = signal.signal(signal.SIGTERM, _sigterm)
    loads: list[float] = []
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
            version = newest_version(artifacts, model)
            now = int(time.time())
            seed = make_seed(args.users, route_items(version, model), now, args.seed)

            # 1. salecast, its own embedded Valkey (REDIS_URL removed from its environment).
            port = free_port()
            env = {
                k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "SALECAST_REDIS_URL"}
            }
            env.update(
                SALECAST_ARTIFACTS_DIR=str(artifacts),
                SALECAST_DATA_DIR=str(work / "var"),
                SALECAST_POLL_INTERVAL_S="0",
                SALECAST_LOG_LEVEL="WARNING",
                SALECAST_INTRA_OP_THREADS=str(args.threads),
            )
            salecast = shutil.which("salecast", path=str(Path(sys.executable).parent)) or "salecast"
            base = f"http://{HOST}:{port}"
            server = procs.start(
                "salecast",
                [salecast, "serve", "--host", HOST, "--port", str(port)],
                env,
                work / "salecast.log",
            )
            wait_ready(server, base, model, args.start_timeout)
            seeded = seed_service(base, seed)
            print(f"salecast ready on {base}; seeded {seeded}", flush=True)

            graph = ROUTE_GRAPH[route]
            shared: list[str] = []
            if route == "intent":
                ours, naive = intent_requests(seed, version, args.per_request)
            elif route == "recommend":
                ours, naive = recommend_requests(seed, version, args.k)
                shared = [f"item_table={version / 'item_table.npy'}"]
            elif route == "events":
                ours = [Request("POST", EVENTS_MARK)]
                naive = events_naive_requests(seed, version, args.per_request)
            else:
                ours, naive = cvr_requests(seed, version, args.per_request)

            def spec_of(reqs: Sequence[Request], url: str) -> dict[str, Any]:
                spec: dict[str, Any] = {
                    "base_url": url,
                    "requests": [
                        {
                            "method": r.method,
                            "path": r.path,
                            "body": None if r.body is None else r.body.decode(),
                        }
                        for r in reqs
                    ],
                    "concurrency": args.concurrency,
                    "seconds": args.seconds,
                    "warmup": args.warmup,
                    "max_requests": args.max_requests,
                }
                if route == "events" and reqs and reqs[0].path == EVENTS_MARK:
                    spec["events"] = {
                        "per_request": args.per_request,
                        "users": [f"load-e{k}" for k in range(args.concurrency * args.per_request)],
                        "items": seed.items,
                    }
                return spec

            use_wrk = shutil.which("wrk") is not None and not args.no_wrk
            loads.append(_load_average())
            before = service_counters(base)
            ours_res = run_load(procs, spec_of(ours, base), work, "salecast", use_wrk)
            after = service_counters(base)
            loads.append(_load_average())
            counters = {k: after[k] - before[k] for k in COUNTERS}
            procs.stop(server)

            # 2. the naive peer: same graph file, one uvicorn worker, one ORT call per request.
            port = free_port()
            naive_base = f"http://{HOST}:{port}"
            peer = procs.start(
                "naive",
                [
                    sys.executable, "-m", "bench.naive_server", "--artifact", str(version),
                    "--graph", graph, "--host", HOST, "--port", str(port),
                    "--threads", str(args.threads), *(["--shared", *shared] if shared else []),
                ],
                dict(os.environ),
                work / "naive.log",
            )  # fmt: skip
            wait_ready(peer, naive_base, None, args.start_timeout)
            loads.append(_load_average())
            naive_res = run_load(
                procs, spec_of(naive, naive_base), work, "naive-fastapi-ort", use_wrk
            )
            loads.append(_load_average())
            procs.stop(peer)
    finally:
        procs.stop_all()
        signal.signal(signal.SIGTERM, previous)

    import onnxruntime as ort

    gpu = "CUDAExecutionProvider" in ort.get_available_providers()
    calls = counters["salecast_batch_requests_count"]
    per_call = counters["salecast_batch_requests_sum"] / calls if calls else None
    try:
        diff = agreement(route, json.loads(ours_res["probe"]), json.loads(naive_res["probe"]))
    except (ValueError, KeyError, IndexError, TypeError):
        diff = None
    max_load = max(loads) if loads else float("nan")
    per_req = {
        "intent": f"{args.per_request} users per POST",
        "recommend": f"one user per GET, k={args.k}",
        "events": f"{args.per_request} events per POST",
        "cvr": f"{args.per_request} pairs per POST",
    }[route]
    notes = (
        f"Loopback HTTP, {args.concurrency} keep-alive connections, {args.seconds:g} s measured "
        f"after {args.warmup:g} s warm-up, client: {ours_res['client']} in a separate process on "
        f"the same machine. Throughput is HTTP requests/s ({per_req}); errors are non-2xx or "
        f"transport failures. salecast: `salecast serve`, embedded Valkey, artifact "
        f"{model}/{version.name}, ORT intra-op threads {args.threads}, log level WARNING (no "
        f"per-request access log), "
        f"{args.users} users seeded through /v1/events. naive-fastapi-ort: bench/naive_server.py, "
        f"one uvicorn worker, same graph `{graph}`, one ORT call per request, no Redis; "
        f"{NAIVE_INPUTS[route]} The two ran one after the other. "
        + (
            f"Mean requests joined per ORT call by salecast's micro-batcher: {per_call:.2f}. "
            if per_call is not None
            else ""
        )
        + (
            f"Both answered the same probe request with scores equal within {diff:.1e}. "
            if diff is not None
            else ""
        )
        + (
            "Events during the salecast load, warm-up included (its /metrics): applied "
            f"{counters['salecast_events_applied_total']:.0f}, duplicate "
            f"{counters['salecast_events_duplicate_total']:.0f}, rejected "
            f"{counters['salecast_events_rejected_total']:.0f}. "
            if route == "events"
            else ""
        )
        + f"1-minute load average while measuring: up to {max_load:.1f}"
        + (
            " (the machine was shared with other jobs: absolute numbers are low and noisy)."
            if max_load > 2
            else "."
        )
        + ("" if gpu else " No GPU in this session: GPU numbers not measured.")
    )
    command = "python -m bench.http_load " + shlex.join(sys.argv[1:])
    path = write_speed(
        f"http-{route}",
        [ours_res["run"], naive_res["run"]],
        "salecast",
        command=command,
        notes=notes,
        extra={
            "route": route,
            "concurrency": args.concurrency,
            "seconds": args.seconds,
            "per_request": per_req,
            "load_average_1m": loads,
            "requests": {
                "salecast": ours_res["requests"],
                "naive-fastapi-ort": naive_res["requests"],
            },
            "statuses": {
                "salecast": ours_res["statuses"],
                "naive-fastapi-ort": naive_res["statuses"],
            },
            "seeded_events": seeded,
            "service_counters_during_load": counters,
            "mean_requests_per_ort_call": per_call,
            "max_abs_diff_salecast_vs_naive": diff,
        },
    )
    for res in (ours_res, naive_res):
        r = res["run"]
        print(
            f"{r['name']}: {r['throughput_per_s']:.1f} req/s, p50 {r['p50_ms']:.2f} ms, "
            f"p99 {r['p99_ms']:.2f} ms, errors {r['errors']}"
        )
    return path


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--client"]:
        client_main(Path(argv[1]), Path(argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--route", choices=sorted(ROUTE_MODEL), required=True)
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per server")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds first")
    parser.add_argument("--concurrency", type=int, default=32, help="keep-alive connections")
    parser.add_argument(
        "--max-requests",
        type=int,
        default=1_000_000,
        help="cap per server (httpx client; wrk is bounded by time only)",
    )
    parser.add_argument("--artifacts", type=Path, default=None, help="reuse this artifacts/")
    parser.add_argument("--users", type=int, default=256, help="users seeded via /v1/events")
    parser.add_argument(
        "--per-request", type=int, default=8, help="users (intent), pairs (cvr), events (events)"
    )
    parser.add_argument("--k", type=int, default=20, help="recommendations per GET")
    parser.add_argument("--threads", type=int, default=1, help="ORT intra-op threads, both")
    parser.add_argument("--start-timeout", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-wrk", action="store_true", help="use the httpx client even with wrk")
    parser.add_argument("--workdir", type=Path, default=None, help="keep logs here (debugging)")
    args = parser.parse_args(argv)
    if not (1 <= args.concurrency <= 1024 and 0 < args.seconds <= 600):
        parser.error("--concurrency must be 1..1024 and --seconds 0..600")
    try:
        print(benchmark(args))
    except KeyboardInterrupt as exc:  # Ctrl-C / SIGTERM: `benchmark` has stopped its processes
        print(
            f"interrupted ({exc or 'Ctrl-C'}): every process started was stopped", file=sys.stderr
        )
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
