"""`BodyLimits`: request bodies are JSON and bounded, or refused before a route reads them.

* **415** for a body that is not JSON (or has no content type): every body salecast takes is
  JSON, and a form or a file would otherwise reach a route's parser and come back as a
  confusing 422 about a missing field.
* **413** for a body larger than `SALECAST_MAX_BODY_BYTES`: from the ``Content-Length``
  header before anything is read, and for a chunked body as soon as the running total passes
  the limit (the route never sees more). A 50 MB request therefore costs nothing to refuse,
  instead of being read and parsed in full.

Both answers carry the common error body (`service.api.errors.error_body`).
"""

from __future__ import annotations

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.errors import error_body

_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})


class _TooLarge(Exception):
    """Raised from `receive` when a chunked body passes the limit."""


def _is_json(content_type: bytes) -> bool:
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (
        media.startswith(b"application/") and media.endswith(b"+json")
    )


class BodyLimits:
    """Pure ASGI: 415 for non-JSON bodies, 413 for bodies over `max_bytes`."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> JSONResponse:
        return JSONResponse(
            error_body(
                "payload_too_large",
                f"request bodies are limited to {self.max_bytes} bytes",
                "body",
            ),
            status_code=413,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in _WITH_BODY:
            await self.app(scope, receive, send)
            return
        content_type, length, chunked = b"", None, False
        for name, value in scope.get("headers") or ():
            if name == b"content-type":
                content_type = value
            elif name == b"content-length":
                length = int(value) if value.strip().isdigit() else None
            elif name == b"transfer-encoding":
                chunked = True
        if not chunked and not length:  # no body: nothing to check
            await self.app(scope, receive, send)
            return
        if not _is_json(content_type):
            shown = content_type.decode("latin-1")[:100] or "none"
            response = JSONResponse(
                error_body(
                    "unsupported_media_type",
                    f"request bodies must be application/json, not {shown!r}",
                    "content-type",
                ),
                status_code=415,
            )
            await response(scope, receive, send)
            return
        if length is not None and length > self.max_bytes:
            await self._too_large()(scope, receive, send)
            return
        received = 0
        started = False

        async def bounded_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, bounded_receive, tracked_send)
        except _TooLarge:
            if started:
                raise
            await self._too_large()(scope, receive, send)
