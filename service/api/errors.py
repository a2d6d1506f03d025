"""Core exceptions -> HTTP status codes, applied only here at the edge.

Every error answer has one JSON shape, `{"error": {"type", "field", "reason", "request_id"}}`,
so clients parse one thing. FastAPI's own body validation errors are folded into the same shape
(422 with the dotted field path), and 503 answers carry Retry-After so clients back off.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.errors import (
    ArtifactError,
    InvalidInput,
    NotFound,
    NotReady,
    Overloaded,
    SalecastError,
    StateStoreError,
)
from service.logs import current_request_id

log = logging.getLogger(__name__)


def error_body(type_: str, reason: str, field: str | None = None, **extra: Any) -> dict[str, Any]:
    detail: dict[str, Any] = {
        "type": type_,
        "field": field,
        "reason": reason,
        "request_id": current_request_id(),
    }
    detail.update(extra)
    return {"error": detail}


def _retry_after(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


def status_for(exc: SalecastError) -> tuple[int, str]:
    """The status code and error type of a core exception."""
    if isinstance(exc, InvalidInput):
        return 422, "invalid_input"
    if isinstance(exc, NotFound):
        return 404, "not_found"
    if isinstance(exc, Overloaded):
        return 503, "overloaded"
    if isinstance(exc, NotReady):
        return 503, "not_ready"
    if isinstance(exc, StateStoreError):
        return 503, "state_store_unavailable"
    if isinstance(exc, ArtifactError):
        return 503, "artifact_error"
    return 500, "internal_error"


# What a client is told when the cause is on the server's side: the detail (a Redis address,
# an artifact's path) goes to the log with the request id, never into the answer.
PUBLIC_REASONS: dict[type[SalecastError], str] = {
    StateStoreError: "the state store is unavailable; retry",
    ArtifactError: "a model artifact is unusable; the previous version keeps serving",
}


def public_reason(exc: SalecastError) -> str:
    for kind, reason in PUBLIC_REASONS.items():
        if isinstance(exc, kind):
            return reason
    return str(exc)


async def _salecast_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, SalecastError)
    status, type_ = status_for(exc)
    headers: dict[str, str] = {}
    if isinstance(exc, InvalidInput):
        body = error_body(type_, exc.reason, exc.field)
    else:
        body = error_body(type_, public_reason(exc))
    if isinstance(exc, NotReady):
        headers = _retry_after(exc.retry_after_s)
    elif status == 503:
        headers = _retry_after(1.0)
    if status >= 500:
        log.warning("request failed", extra={"status": status, "error": type_, "reason": str(exc)})
    return JSONResponse(body, status_code=status, headers=headers)


def _field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] == "body":
        parts = parts[1:]
    return ".".join(parts) or "body"


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"field": _field_path(err.get("loc", ())), "reason": str(err.get("msg", ""))}
        for err in exc.errors()
    ]
    first = errors[0] if errors else {"field": "body", "reason": "invalid request"}
    body = error_body("invalid_input", first["reason"], first["field"], errors=errors)
    return JSONResponse(body, status_code=422)


def allowed_methods(request: Request) -> list[str]:
    """Every method the API documents for this path. Starlette's 405 names only the methods of
    the first route that matched the path, but a path can have a GET and a POST route (and
    FastAPI's included routers hide theirs), so the answer comes from the OpenAPI document:
    the most specific template that matches (`/v1/models/reload` before `/v1/models/{name}`)."""
    import re

    table = getattr(request.app.state, "allowed_methods", None)
    if table is None:
        table = [
            (
                path.count("{"),
                re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(path)) + "$"),
                sorted(m.upper() for m in ops if m != "parameters"),
            )
            for path, ops in request.app.openapi().get("paths", {}).items()
        ]
        request.app.state.allowed_methods = table
    path = request.url.path
    matching = [(params, ms) for params, pattern, ms in table if pattern.match(path)]
    fewest = min((params for params, _ in matching), default=0)
    methods = {m for params, ms in matching if params == fewest for m in ms}
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    type_ = "not_found" if exc.status_code == 404 else "http_error"
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(allowed_methods(request))
    return JSONResponse(
        error_body(type_, str(exc.detail)), status_code=exc.status_code, headers=headers
    )


def install_error_handlers(app: FastAPI) -> None:
    """Register the mapping on `app` (uncaught exceptions become 500 in the middleware)."""
    app.add_exception_handler(SalecastError, _salecast_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
