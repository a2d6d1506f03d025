"""Load drivers: `wrk` (a Lua script cycles the request bodies) or an asyncio + httpx client.

Both run in a separate process from the server, drive a bounded number of keep-alive
connections for a bounded time, and report requests, latency percentiles and errors. A
request whose path is `EVENTS_MARK` becomes a fresh ``POST /v1/events`` batch each time
(new event ids, each connection owning its own users, so one user's events arrive in time
order and none is stale). Only loopback addresses are used.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import latency_run
from bench.http.procs import Processes

EVENTS_MARK = "__EVENTS__"
SEED_ACTIONS = ("browse",) * 6 + ("collect", "cart", "purchase")
WRK_HINT = (
    "wrk is not on PATH; install it for the load generator the results are measured with "
    "(Debian/Ubuntu: `apt-get install wrk`, macOS: `brew install wrk`), or pass --no-wrk to "
    "use the slower httpx client"
)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: bytes | None = None


@dataclass(frozen=True)
class Load:
    """What a driver sends: requests cycled in order, for `seconds` after `warmup`."""

    base_url: str
    requests: Sequence[Request]
    concurrency: int
    seconds: float
    warmup: float
    events_per_request: int = 0
    event_items: Sequence[str] = ()

    def spec(self) -> dict[str, Any]:
        return {
            "base_url": self.base_url,
            "requests": [
                {
                    "method": r.method,
                    "path": r.path,
                    "body": None if r.body is None else r.body.decode(),
                }
                for r in self.requests
            ],
            "concurrency": self.concurrency,
            "seconds": self.seconds,
            "warmup": self.warmup,
            "events_per_request": self.events_per_request,
            "event_items": list(self.event_items),
        }


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


# ---- wrk ----------------------------------------------------------------------------------
def _lua_string(data: str) -> str:
    return "[==[" + data + "]==]"


def _lua_list(values: Sequence[str]) -> str:
    return "{" + ", ".join(_lua_string(v) for v in values) + "}"


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
-- A /v1/events batch with fresh ids. Each wrk thread (and run: warm-up, measure) owns its own
-- users and walks through a pool much larger than the requests in flight, so one user's
-- events arrive in time order and a late warm-up request never meets a measured user.
local function events_body()
  local parts = {}
  for j = 0, EV_B - 1 do
    local u = (n * EV_B + j) % EV_POOL
    parts[#parts + 1] = string.format(
      '{"event_id":"wrk-%s-%d-%d-%d","user_id":"load-%s-w%d-%d","item_id":"%s",' ..
      '"action":"%s","timestamp":%.6f}',
      run, tid, n, j, run, tid, u, EV_ITEMS[(n * 7 + j) % #EV_ITEMS + 1],
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


def _wrk_script(load: Load, path: Path) -> None:
    b = max(load.events_per_request, 1)
    lines = [
        'headers = {["Content-Type"] = "application/json"}',
        "reqs = {}",
        f"EV_B = {b}",
        f"EV_POOL = {max(64 * b * load.concurrency, 1024)}",
        f"EV_ITEMS = {_lua_list(list(load.event_items) or ['x'])}",
        f"EV_ACTIONS = {_lua_list(SEED_ACTIONS)}",
    ]
    for r in load.requests:
        body = "nil" if r.body is None else _lua_string(r.body.decode())
        lines.append(
            f"table.insert(reqs, {{{_lua_string(r.method)}, {_lua_string(r.path)}, {body}}})"
        )
    path.write_text("\n".join(lines) + WRK_LUA_TAIL)


def run_wrk(procs: Processes, load: Load, workdir: Path, name: str) -> dict[str, Any]:
    """wrk with 2 threads (its own warm-up run first, unmeasured); returns the run record."""
    script = workdir / f"{name}.lua"
    _wrk_script(load, script)
    wrk = shutil.which("wrk") or "wrk"
    threads = min(2, load.concurrency)
    for seconds, label in ((load.warmup, "warmup"), (load.seconds, "measure")):
        argv = [
            wrk, "-t", str(threads), "-c", str(load.concurrency),
            "-d", f"{max(round(seconds), 1)}s", "--latency", "--timeout", "30s",
            "-s", str(script), load.base_url, "--", f"{label}{time.time_ns()}",
        ]  # fmt: skip
        item = procs.start(f"wrk-{name}", argv, {}, workdir / f"{name}-{label}.log")
        try:
            item.proc.wait(seconds + 120)
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
    return {
        "run": {
            "name": name,
            "throughput_per_s": ok / wall if wall > 0 else 0.0,
            "p50_ms": w["p50_us"] / 1e3,
            "p99_ms": w["p99_us"] / 1e3,
            "errors": int(errors),
        },
        "requests": int(w["requests"]),
        "wall_s": wall,
        "client": f"wrk, {threads} threads, {load.concurrency} connections",
        "statuses": w,
    }


# ---- httpx fallback -------------------------------------------------------------------------
def _events_body(worker: int, n: int, load: dict[str, Any]) -> bytes:
    now = time.time()
    b, items = int(load["events_per_request"]), load["event_items"] or ["x"]
    pool = max(64 * b * int(load["concurrency"]), 1024)
    events = []
    for j in range(b):
        events.append(
            {
                "event_id": f"httpx-{worker}-{n}-{j}",
                "user_id": f"load-h{worker}-{(n * b + j) % pool}",
                "item_id": items[(n * 7 + j) % len(items)],
                "action": SEED_ACTIONS[(n + j) % len(SEED_ACTIONS)],
                "timestamp": now + j * 1e-6,
            }
        )
    return json.dumps({"events": events}, separators=(",", ":")).encode()


async def _client(spec: dict[str, Any]) -> dict[str, Any]:
    import httpx

    reqs = [
        Request(r["method"], r["path"], None if r["body"] is None else r["body"].encode())
        for r in spec["requests"]
    ]
    conc, seconds, warmup = int(spec["concurrency"]), float(spec["seconds"]), float(spec["warmup"])
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    state = {"next": 0, "errors": 0}
    start = time.perf_counter()
    t_measure, t_end = start + warmup, start + warmup + seconds
    limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
    headers = {"content-type": "application/json"}
    async with httpx.AsyncClient(
        base_url=spec["base_url"], limits=limits, timeout=30.0, trust_env=False
    ) as client:

        async def worker(w: int) -> None:
            n = 0
            while (t0 := time.perf_counter()) < t_end:
                req = reqs[state["next"] % len(reqs)]
                state["next"] += 1
                body, path = req.body, req.path
                if path == EVENTS_MARK:
                    body, path = _events_body(w, n, spec), "/v1/events"
                n += 1
                try:
                    resp = await client.request(req.method, path, content=body, headers=headers)
                    key, ok = str(resp.status_code), resp.status_code < 400
                except httpx.HTTPError as exc:
                    key, ok = type(exc).__name__, False
                if t0 < t_measure:
                    continue
                statuses[key] = statuses.get(key, 0) + 1
                if ok:
                    latencies.append(time.perf_counter() - t0)
                else:
                    state["errors"] += 1

        await asyncio.gather(*(worker(w) for w in range(conc)))
    return {
        "latencies_s": latencies,
        "errors": state["errors"],
        "statuses": statuses,
        "wall_s": time.perf_counter() - max(t_measure, start),
        "client": f"httpx {httpx.__version__} asyncio, {conc} connections",
    }


def client_main(spec_path: Path, out_path: Path) -> None:
    out_path.write_text(json.dumps(asyncio.run(_client(json.loads(spec_path.read_text())))))


def run_httpx(procs: Processes, load: Load, workdir: Path, name: str) -> dict[str, Any]:
    spec_path, out_path = workdir / f"{name}-spec.json", workdir / f"{name}-out.json"
    spec_path.write_text(json.dumps(load.spec()))
    argv = [sys.executable, "-m", "bench.http.drive", str(spec_path), str(out_path)]
    item = procs.start(f"client-{name}", argv, dict(os.environ), workdir / f"{name}-client.log")
    try:
        rc = item.proc.wait(load.warmup + load.seconds + 120)
    finally:
        procs.stop(item, grace_s=5.0)
    if rc != 0 or not out_path.exists():
        raise RuntimeError(f"load client failed ({rc}):\n{item.tail()}")
    res = json.loads(out_path.read_text())
    lat = res["latencies_s"]
    return {
        "run": latency_run(name, lat, len(lat), float(res["wall_s"]), int(res["errors"])),
        "requests": len(lat) + int(res["errors"]),
        "wall_s": float(res["wall_s"]),
        "client": res["client"],
        "statuses": res["statuses"],
    }


def drive(procs: Processes, load: Load, workdir: Path, name: str, use_wrk: bool) -> dict[str, Any]:
    return (run_wrk if use_wrk else run_httpx)(procs, load, workdir, name)


if __name__ == "__main__":
    client_main(Path(sys.argv[1]), Path(sys.argv[2]))
