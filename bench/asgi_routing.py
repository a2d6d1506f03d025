"""What routing costs per request, in-process: why salecast's hot routes bypass FastAPI's.

Run: ``python -m bench.asgi_routing [--requests 4000]``. Writes
``bench/results/speed-asgi-routing.json`` + ``.md``.

No HTTP server and no network: requests are handed to the ASGI app directly by `--concurrency`
coroutines, and the process's CPU time per request is the figure (the server's own parsing
and socket writes come on top, the same for every variant). Every variant answers
``GET /v1/recommendations/{user_id}?k=20`` with the same 20-item JSON, from an app that also
has 15 other routes in front, as salecast has:

* ``starlette-route``: the endpoint as a plain Starlette `Route` in front of the app's routes
  (what `service.api.fast.HotRouter` serves), request in, orjson bytes out;
* ``fastapi-request-only``: the same endpoint as a route of an included FastAPI `APIRouter`;
* ``fastapi-typed``: an included route with typed path/query parameters and a pydantic
  `response_model`, the FastAPI tutorial's style.

All on uvloop.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import orjson
from fastapi import APIRouter, FastAPI, Query, Request, Response
from fastapi import Path as PathParam
from pydantic import BaseModel
from starlette.routing import Route

from bench.common import RESULTS_DIR, bench_command, write_speed

ITEMS = [(f"item{i}", 0.5 + i) for i in range(20)]


class Item(BaseModel):
    item_id: str
    score: float


class Recommendations(BaseModel):
    user_id: str
    k: int
    items: list[Item]


def build() -> FastAPI:
    app = FastAPI()
    router = APIRouter()
    for i in range(15):
        router.add_api_route(f"/v1/other{i}/{{x}}", lambda x: {"x": x}, methods=["GET"])

    async def lean(request: Request) -> Response:
        user = request.path_params["user_id"]
        k = int(request.query_params.get("k", 20))
        body = {"user_id": user, "k": k, "items": [{"item_id": i, "score": s} for i, s in ITEMS]}
        return Response(orjson.dumps(body), media_type="application/json")

    @router.get("/v1/typed/{user_id}", response_model=Recommendations)
    async def typed(
        user_id: Annotated[str, PathParam(min_length=1, max_length=128)],
        k: Annotated[int, Query(ge=1)] = 20,
    ) -> Recommendations:
        return Recommendations(
            user_id=user_id, k=k, items=[Item(item_id=i, score=s) for i, s in ITEMS]
        )

    router.add_api_route("/v1/request-only/{user_id}", lean, methods=["GET"])
    app.include_router(router)
    app.router.routes.insert(0, Route("/v1/starlette/{user_id}", lean, methods=["GET"]))
    return app


async def _call(app: FastAPI, path: str) -> int:
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"k=20",
        "root_path": "", "headers": [(b"host", b"bench")], "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80), "state": {},
    }  # fmt: skip
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])

    await app(scope, receive, send)
    return status


async def measure(app: FastAPI, name: str, path: str, n: int, conc: int) -> dict[str, Any]:
    assert await _call(app, path) == 200, path
    lat: list[float] = []

    async def worker(m: int) -> None:
        for _ in range(m):
            t0 = time.perf_counter()
            await _call(app, path)
            lat.append(time.perf_counter() - t0)

    await asyncio.gather(*(worker(max(n // conc // 10, 1)) for _ in range(conc)))
    lat.clear()
    c0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(n // conc) for _ in range(conc)))
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    done = (n // conc) * conc
    ms = np.asarray(lat) * 1e3
    return {
        "name": name,
        "throughput_per_s": done / wall,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "errors": 0,
        "cpu_us_per_request": 1e6 * cpu / done,
    }


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    app = build()
    variants = [
        ("starlette-route", "/v1/starlette/u1"),
        ("fastapi-request-only", "/v1/request-only/u1"),
        ("fastapi-typed", "/v1/typed/u1"),
    ]
    best: dict[str, dict[str, Any]] = {}
    for _ in range(args.rounds):  # interleaved rounds, the least CPU of each variant kept
        for name, path in variants:
            r = await measure(app, name, path, args.requests, args.concurrency)
            if name not in best or r["cpu_us_per_request"] < best[name]["cpu_us_per_request"]:
                best[name] = r
    return [best[name] for name, _ in variants]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    import fastapi
    import uvloop

    uvloop.install()
    runs = asyncio.run(run(args))
    notes = (
        f"In-process ASGI calls (no server, no sockets), {args.concurrency} coroutines, "
        f"{args.requests} requests per variant and round, the least CPU of {args.rounds} "
        f"interleaved rounds; FastAPI {fastapi.__version__}. CPU per request: "
        + "; ".join(f"{r['name']} {r['cpu_us_per_request']:.0f} us" for r in runs)
        + ". The HTTP server's parsing and socket writes come on top of each."
    )
    write_speed(
        "asgi-routing",
        runs,
        "starlette-route",
        out_dir=args.results_dir,
        command=bench_command("bench.asgi_routing", argv),
        notes=notes,
        extra={"cpu_us_per_request": {r["name"]: r["cpu_us_per_request"] for r in runs}},
    )


if __name__ == "__main__":
    main()
