"""Liveness, readiness and Prometheus metrics.

Liveness only says the event loop answers (restart me if not). Readiness says "send me
traffic": every loaded model warm, Redis answering PING, and not draining for shutdown. With
no model loaded the service is still ready (it answers the routes that need none), and
`/v1/models` says no model is loaded.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from service.api.fast import HotRouter
from service.state.store import StateStore

router = HotRouter(tags=["health"])

PING_TIMEOUT_S = 1.0


LIVE = b'{"status":"live"}'


@router.hot("/health/live", "GET", response_model=dict[str, str])
async def health_live(request: Request) -> Response:
    """The event loop answers: restart the process if not. A constant body through the same
    server and middleware as every route, so it is also the ceiling `bench.http_load` reads."""
    return Response(LIVE, media_type="application/json")


async def _redis_check(store: StateStore | None) -> tuple[bool, str]:
    if store is None:
        return False, "no state store connected"
    try:
        answer = await asyncio.wait_for(store.ping(), PING_TIMEOUT_S)
    except Exception as exc:  # any failure to answer means not ready, never a 500
        return False, f"ping failed: {type(exc).__name__}: {exc}"
    return (bool(answer), "ok" if answer else "ping returned false")


async def readiness(request: Request) -> tuple[bool, dict[str, Any]]:
    """Whether to send this process traffic, and why: every loaded model warm, Redis
    answering PING, not draining. Shared with the Open Inference Protocol's readiness."""
    registry = request.app.state.registry
    models = {m.name: {"version": m.version, "warm": m.warm} for m in registry.list()}
    models_ok = all(m["warm"] for m in models.values())
    redis_ok, redis_reason = await _redis_check(getattr(request.app.state, "store", None))
    draining = bool(getattr(request.app.state, "draining", False))
    ok = models_ok and redis_ok and not draining
    return ok, {
        "ready": ok,
        "checks": {
            "models": {"ok": models_ok, "loaded": models},
            "redis": {"ok": redis_ok, "reason": redis_reason},
            "draining": draining,
        },
    }


@router.get("/health/ready")
async def health_ready(request: Request) -> JSONResponse:
    ok, body = await readiness(request)
    headers = {} if ok else {"Retry-After": "1"}
    return JSONResponse(body, status_code=200 if ok else 503, headers=headers)


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
