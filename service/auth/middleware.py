"""`ApiKeyAuth`: who is asking, and may they.

Pure ASGI, in front of the routes: the key comes from ``Authorization: Bearer <key>`` or
``X-API-Key: <key>``; no key or an unknown one is 401 (with ``WWW-Authenticate``), a key
without the operation's scope 403, a key over its rate 429 with Retry-After, all in the common
error body. The principal's name is put in the request scope (``scope["state"]["principal"]``)
for the access log. Installed only when the deployment has a key file
(`SALECAST_API_KEYS_FILE`); without one every operation is open, which `salecast serve` says
when it starts.
"""

from __future__ import annotations

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.errors import error_body
from service.auth.keys import KeyRing
from service.auth.rate import RateLimiter
from service.auth.scopes import required_scope


def _bearer(scope: Scope) -> str | None:
    headers: list[tuple[bytes, bytes]] = scope.get("headers") or []
    for name, value in headers:
        if name == b"authorization":
            text = value.decode("latin-1")
            kind, _, token = text.partition(" ")
            if kind.lower() == "bearer" and token.strip():
                return token.strip()
        elif name == b"x-api-key" and value.strip():
            return value.decode("latin-1").strip()
    return None


class ApiKeyAuth:
    def __init__(self, app: ASGIApp, keys: KeyRing, probes_open: bool = True) -> None:
        self.app = app
        self.keys = keys
        self.probes_open = probes_open
        self.limiter = RateLimiter()

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, status: int, type_: str, reason: str,
        headers: dict[str, str] | None = None,
    ) -> None:  # fmt: skip
        response = JSONResponse(
            error_body(type_, reason, "authorization"), status_code=status, headers=headers
        )
        await response(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        needed = required_scope(scope.get("method", ""), scope.get("path", ""), self.probes_open)
        if needed is None:
            await self.app(scope, receive, send)
            return
        token = _bearer(scope)
        if token is None:
            await self._refuse(
                scope, receive, send, 401, "unauthenticated",
                "an API key is required (Authorization: Bearer <key>, or X-API-Key)",
                {"WWW-Authenticate": "Bearer"},
            )  # fmt: skip
            return
        principal = self.keys.authenticate(token)
        if principal is None:
            await self._refuse(
                scope, receive, send, 401, "unauthenticated", "unknown API key",
                {"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )  # fmt: skip
            return
        if needed not in principal.scopes:
            await self._refuse(
                scope, receive, send, 403, "forbidden",
                f"key {principal.name!r} lacks the {needed!r} scope this operation needs",
            )  # fmt: skip
            return
        if principal.rate_per_s is not None:
            wait = self.limiter.allow(principal.key_hash, principal.rate_per_s)
            if wait > 0:
                await self._refuse(
                    scope, receive, send, 429, "rate_limited",
                    f"key {principal.name!r} is limited to {principal.rate_per_s:g} requests/s",
                    {"Retry-After": RateLimiter.retry_after(wait)},
                )  # fmt: skip
                return
        scope.setdefault("state", {})["principal"] = principal.name
        await self.app(scope, receive, send)
