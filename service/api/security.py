"""The OpenAPI document's security: the API-key schemes, and each operation's scope.

With keys configured every operation that needs a scope (`service.auth.scopes`) lists both
ways of sending the key and names its scope (``x-required-scope``), so generated clients and
`/docs` ask for it; without keys nothing is required and the schemes are only described.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from service.auth.scopes import required_scope

SCHEMES = {
    "bearerKey": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <key>"},
    "headerKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
}


def document_security(app: FastAPI, *, enabled: bool, probes_open: bool) -> None:
    build = app.openapi

    def with_security() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        schema.setdefault("components", {})["securitySchemes"] = dict(SCHEMES)
        if enabled:
            for path, ops in schema.get("paths", {}).items():
                for method, op in ops.items():
                    if not isinstance(op, dict):
                        continue
                    scope = required_scope(method.upper(), path, probes_open)
                    if scope is None:
                        continue
                    op["security"] = [{"bearerKey": []}, {"headerKey": []}]
                    op["x-required-scope"] = scope
                    for status, reason in (
                        ("401", "No API key, or an unknown one."),
                        ("403", f"The key lacks the `{scope}` scope."),
                        ("429", "The key is over its rate; retry after Retry-After."),
                    ):
                        op.setdefault("responses", {})[status] = {
                            "description": reason,
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/ErrorResponse"}
                                }
                            },
                        }
        app.openapi_schema = schema
        return schema

    app.openapi = with_security  # type: ignore[method-assign]
