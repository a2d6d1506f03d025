"""The FastAPI application: lifespan, request-id and timing middleware, routers.

`create_app(settings)` builds an app without touching the network or the disk; the lifespan
(entered by uvicorn or `TestClient`) connects the state store, loads the models, starts the
artifact poller, and on shutdown marks the app as draining (readiness turns 503 so a load
balancer stops sending), waits for in-flight requests up to the drain timeout, then stops the
registry (batchers finish their queues) and closes the store.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import itertools
import logging
import platform
import re
import secrets
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import onnxruntime as ort
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi_offline import FastAPIOffline
from starlette.datastructures import State
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import __version__
from service.api.errors import error_body, install_error_handlers
from service.api.fast import register_schemas, serve_hot_routes
from service.api.limits import BodyLimits
from service.api.routes import ROUTERS
from service.api.schemas import ErrorResponse
from service.api.security import document_security
from service.auth.keys import KeyRing
from service.auth.middleware import ApiKeyAuth
from service.config import Settings
from service.errors import StateStoreError
from service.events.log_applier import LogApplier
from service.logs import REQUEST_ID, configure_logging
from service.metrics import BUILD_INFO, REQUEST_LATENCY, REQUESTS_IN_FLIGHT
from service.runtime.registry import ModelRegistry
from service.servables import cvr, dinop, imn, intent, stmp
from service.servables.wiring import Servable
from service.state.store import StateStore

log = logging.getLogger("service.access")
app_log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID_BYTES = REQUEST_ID_HEADER.encode()
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Documented on every route so the OpenAPI schema shows the one error body clients get
# (FastAPI's default 422 schema describes a different shape).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "The body could not be read (not UTF-8 JSON)."},
    413: {"model": ErrorResponse, "description": "The body is larger than the configured limit."},
    415: {"model": ErrorResponse, "description": "The body is not application/json."},
    422: {"model": ErrorResponse, "description": "Invalid input: `field` names the value."},
    404: {"model": ErrorResponse, "description": "Unknown id."},
    503: {
        "model": ErrorResponse,
        "description": "Not ready or overloaded; retry after the Retry-After header.",
    },
}
_VALID_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
# Routes polled by probes and scrapers: timed, but not written to the access log.
_QUIET = {"/health/live", "/health/ready", "/metrics"}
GC_THRESHOLD = 50_000  # allocations between young-generation collections (default 700)


class RequestContextMiddleware:
    """Pure ASGI middleware: request id in and out, latency histogram, access log, drain count.

    Pure ASGI rather than BaseHTTPMiddleware so the request-id contextvar set here is the one the
    endpoint's task sees, and so streaming bodies are not buffered. An exception that escapes the
    app becomes a 500 in the common error shape here, with the request id, and is logged.

    It runs on every request, so it does no more than it must: a made-up request id is a
    per-process random prefix and a counter (no `uuid4` system call), histogram children are
    looked up once per (route, method, status), and the access-log record is built only when
    INFO is enabled. Unknown HTTP methods are counted as ``other`` so a client cannot grow the
    metric's label set.
    """

    def __init__(self, app: ASGIApp, state: State) -> None:
        self.app = app
        self.state = state
        self._ids = itertools.count(1)
        self._prefix = secrets.token_hex(6)
        self._latency: dict[tuple[str, str, int], Any] = {}

    def _request_id(self, scope: Scope) -> str:
        headers: list[tuple[bytes, bytes]] = scope.get("headers") or []
        for name, value in headers:
            if name == _REQUEST_ID_BYTES:
                text = value.decode("latin-1")
                if _VALID_ID.match(text):
                    return text
                break
        return f"{self._prefix}{next(self._ids):020x}"  # 32 hex digits, as a uuid4().hex

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = self._request_id(scope)
        header = (_REQUEST_ID_BYTES, request_id.encode())
        token = REQUEST_ID.set(request_id)
        start = time.perf_counter()
        status = 500
        started = False
        self.state.in_flight += 1
        REQUESTS_IN_FLIGHT.inc()

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = int(message["status"])
                message = {**message, "headers": [*message.get("headers", ()), header]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            app_log.exception("unhandled error")
            if started:
                raise
            response = JSONResponse(
                error_body("internal_error", "internal server error"), status_code=500
            )
            await response(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - start
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope.get("method", "")
            label = method if method in _METHODS else "other"
            key = (route, label, status)
            child = self._latency.get(key)
            if child is None:
                child = self._latency[key] = REQUEST_LATENCY.labels(
                    route=route, method=label, status=str(status)
                )
            child.observe(elapsed)
            self.state.in_flight -= 1
            REQUESTS_IN_FLIGHT.dec()
            if route not in _QUIET and log.isEnabledFor(logging.INFO):
                log.info(
                    "request",
                    extra={
                        "method": label,
                        "path": scope.get("path", ""),
                        "route": route,
                        "status": status,
                        "duration_ms": round(elapsed * 1e3, 3),
                    },
                )
            REQUEST_ID.reset(token)


def settle_garbage_collector() -> None:
    """Freeze what start-up built and collect young objects less often.

    Measured under load (bench notes), the cyclic collector took about a tenth of a serving
    process's CPU: every request allocates a few hundred short-lived objects, so the default
    first-generation threshold (700) triggers a collection every few requests, each one also
    walking the long-lived model tables, vocabularies and modules. `gc.freeze()` moves
    everything alive after start-up out of the collector's sight, and a higher threshold keeps
    the young generation's collections rare; reference counting still frees almost all request
    garbage at once, so memory does not grow.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 20, 20)


async def connect_store(settings: Settings) -> StateStore | None:
    """The state store the settings name (PING checked), or None when the app runs without Redis."""
    if not settings.redis_url:
        return None
    return await StateStore.connect(
        settings.redis_url,
        cluster=settings.redis_cluster or None,
        count_bucket_seconds=settings.count_bucket_seconds,
        count_retention_seconds=settings.count_retention_seconds,
        sequence_max=settings.sequence_max,
        idempotency_ttl_seconds=settings.idempotency_ttl_seconds,
        user_ttl_seconds=settings.state_ttl_seconds,
    )


async def _keep_connecting(app: FastAPI, settings: Settings, interval_s: float = 2.0) -> None:
    """Redis was down at start: retry in the background; readiness stays 503 meanwhile."""
    while getattr(app.state, "store", None) is None:
        await asyncio.sleep(interval_s)
        try:
            app.state.store = await connect_store(settings)
        except StateStoreError as exc:
            app_log.warning("redis still unreachable", extra={"reason": str(exc)})
    app_log.info("redis connected")


async def close_store(store: StateStore | None) -> None:
    if store is not None:
        await store.close()


async def drain(state: State, timeout_s: float) -> int:
    """Wait until no request is in flight or the timeout passes; returns those left."""
    deadline = time.monotonic() + timeout_s
    while state.in_flight > 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    return int(state.in_flight)


def _include_routers(app: FastAPI) -> None:
    routers = []
    for module_name in ROUTERS:
        module = importlib.import_module(module_name)
        app.include_router(module.router, responses=ERROR_RESPONSES)
        routers.append(module.router)
    serve_hot_routes(app, routers)
    # Bodies the hot routes validate themselves (service.api.fast), listed in the schema.
    register_schemas(app, routers)


def _operation_id(route: APIRoute) -> str:
    """The OpenAPI operation id: the endpoint's name (`score_intent`, `get_recommendations`),
    which is what generated clients call the method; FastAPI's default appends the path and
    method (`score_intent_v1_score_intent_post`). `tests/test_api_docs.py` keeps them unique."""
    return route.name


# The servables an app serves, as the routers are listed in `service.api.routes`: each one's
# `wiring()` says what it adds to the app beyond its routes (`service.servables.wiring`).
SERVABLES: tuple[Servable, ...] = (
    imn.SERVABLE,
    intent.SERVABLE,
    cvr.SERVABLE,
    stmp.SERVABLE,
    dinop.SERVABLE,
)


def wire_servables(app: FastAPI, servables: Sequence[Servable]) -> None:
    """Call each servable's wiring once and keep what it declares on this app."""
    wirings = [servable.wiring(app.state) for servable in servables]
    for w in wirings:
        for hook in w.load_hooks:
            app.state.registry.add_load_hook(w.model, hook)
    app.state.servables = wirings
    app.state.updaters = [u for w in wirings for u in w.updaters]
    app.state.sales_hooks = [h for w in wirings for h in w.sales_hooks]


def create_app(
    settings: Settings | None = None,
    *,
    servables: Sequence[Servable] = SERVABLES,
    **overrides: Any,
) -> FastAPI:
    """Build the app. `overrides` are Settings fields (`create_app(artifacts_dir=path)`);
    `servables` the wirings it serves (default: all five)."""
    if settings is None:
        settings = Settings(**overrides)
    elif overrides:
        settings = settings.model_copy(update=overrides)
    registry = ModelRegistry(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(settings.log_level)
        reconnect: asyncio.Task[None] | None = None
        try:
            app.state.store = await connect_store(settings)
        except StateStoreError as exc:
            app_log.error("redis unreachable at start", extra={"reason": str(exc)})
            app.state.store = None
            reconnect = asyncio.get_running_loop().create_task(_keep_connecting(app, settings))
        applier: LogApplier | None = None
        try:
            await registry.start()
            if settings.events_mode == "log":
                applier = app.state.log_applier = LogApplier(
                    lambda: app.state.store, lambda: app.state.updaters
                )
                applier.start()
            settle_garbage_collector()
            app_log.info(
                "service started",
                extra={
                    "models": {m.name: m.version for m in registry.list()},
                    "redis": bool(settings.redis_url),
                },
            )
            yield
        finally:
            app.state.draining = True
            left = await drain(app.state, settings.drain_timeout_s)
            if left:
                app_log.warning("drain timed out", extra={"in_flight": left})
            if reconnect is not None:
                reconnect.cancel()
            if applier is not None:  # before the models stop: the last chunks still compute
                await applier.close()
            await registry.stop()
            await close_store(app.state.store)
            app.state.store = None
            app_log.info("service stopped")

    BUILD_INFO.labels(
        version=__version__, python=platform.python_version(), onnxruntime=ort.__version__
    ).set(1)
    # /docs and /redoc from the assets fastapi-offline ships (under /docs/static), not a CDN:
    # serving hosts often have no internet access.
    app = FastAPIOffline(
        static_url="/docs/static",
        generate_unique_id_function=_operation_id,
        title="salecast",
        summary="Online forecasting and scoring for e-commerce promotions.",
        version=__version__,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.registry = registry
    app.state.store = None
    app.state.draining = False
    app.state.in_flight = 0
    wire_servables(app, servables)
    install_error_handlers(app)
    _include_routers(app)
    app.add_middleware(BodyLimits, max_bytes=settings.max_body_bytes)
    if settings.api_keys_file is not None:
        keys = KeyRing(settings.api_keys_file)
        app.add_middleware(ApiKeyAuth, keys=keys, probes_open=not settings.auth_probes)
    document_security(
        app, enabled=settings.api_keys_file is not None, probes_open=not settings.auth_probes
    )
    app.add_middleware(RequestContextMiddleware, state=app.state)
    return app
