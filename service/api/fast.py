"""Lean JSON endpoints for the hot routes, with the OpenAPI document kept whole.

A hot route is declared on a `HotRouter` and takes only the `Request`, returning a `Response`
of bytes. It is served by a plain Starlette `Route` placed in front of the app's routes, and
documented by the FastAPI route of the same path and method that the router also declares
(which the Starlette route shadows):

* `body_as(request, Model)` validates the raw body with pydantic-core in one pass from bytes
  (`model_validate_json`: no `json.loads` into Python objects first); a bad body raises
  FastAPI's `RequestValidationError`, so the error body is the one every route gives (422
  naming the field, see `service.api.errors`).
* `hot(path, method, body=Model, parameters=[...])` documents the body and the parameters the
  handler parses itself; the router keeps the body models so `register_schemas` lists them
  (with their examples) in the OpenAPI components, and no route can forget to.
* `json_response(payload)` serialises plain dicts and lists with orjson.
* `query_int` / `query_float` parse the few query parameters a hot route takes, failing with
  `InvalidInput` naming the parameter.

Why: measured in-process on the 2-core machine, the same `Request`-only endpoint cost about
230-300 us of CPU per request as a route of an included FastAPI router (FastAPI's matching,
dependency solving and scope bookkeeping) and about 50 us as a Starlette route, and typed
parameters with a `response_model` add about 100 us more; a recommendation's own work is a few
tens of microseconds. The FastAPI declaration keeps `response_model` (documentation only) and
`hot(body=..., parameters=...)` adds the body schema and the parameters, so
`/openapi.json` and `/docs` describe the hot routes like every other; errors raised in them go
through the same exception handlers (they sit around the router).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import orjson
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from service.errors import InvalidInput

M = TypeVar("M", bound=BaseModel)
JSON = "application/json"
Endpoint = Callable[[Request], Awaitable[Response]]


class HotRoute(Route):
    """A Starlette route that names itself in ``scope["route"]`` when it serves a request.

    FastAPI's router sets that key only for its own routes; the access log and the HTTP
    latency metric label requests by the route template read from it, so without this every
    hot route would be counted as ``unmatched``.
    """

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = self
        await super().handle(scope, receive, send)


PATH_PARAMETER = re.compile(r"{(\w+)(?::\w+)?}")


class HotRouter(APIRouter):
    """An `APIRouter` whose `hot(...)` routes are also served by Starlette directly.

    `create_app` includes it like any router (that registers the documentation) and puts its
    `serving` routes in front of the app's routes (`serve_hot_routes`).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.serving: list[BaseRoute] = []
        self.bodies: list[type[BaseModel]] = []

    def hot(
        self,
        path: str,
        method: str,
        *,
        body: type[BaseModel] | None = None,
        parameters: Sequence[Mapping[str, Any]] = (),
        **documentation: Any,
    ) -> Callable[[Endpoint], Endpoint]:
        """Declare `path` for `method`: the endpoint takes the request, returns bytes.

        `body` is the model the endpoint validates with `body_as`; `parameters` are the
        OpenAPI parameters it parses itself (see `parameter`). A path parameter the list
        leaves out is documented as a plain string, so the document never names a path
        parameter it does not define.
        """
        declared = {p["name"] for p in parameters if p.get("in") == "path"}
        implicit = [
            parameter(name, "path", {"type": "string"}, name.replace("_", " "))
            for name in PATH_PARAMETER.findall(path)
            if name not in declared
        ]
        extra = _openapi_extra(body, [*parameters, *implicit])
        if body is not None:
            self.bodies.append(body)

        def register(endpoint: Endpoint) -> Endpoint:
            self.add_api_route(
                path, endpoint, methods=[method], openapi_extra=extra, **documentation
            )
            self.serving.append(HotRoute(self.prefix + path, endpoint, methods=[method]))
            return endpoint

        return register


def serve_hot_routes(app: FastAPI, routers: Sequence[APIRouter]) -> None:
    """Put every `HotRouter`'s Starlette routes in front of the app's routes, in order."""
    hot = [route for r in routers if isinstance(r, HotRouter) for route in r.serving]
    app.router.routes[0:0] = hot


async def body_as(request: Request, model: type[M]) -> M:
    """The request body as `model`, validated straight from its bytes."""
    raw = await request.body()
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors = [
            {**err, "loc": ("body", *err.get("loc", ()))}
            for err in exc.errors(include_url=False, include_context=False)
        ]
        raise RequestValidationError(errors) from None


def json_response(
    payload: Any, status_code: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """`payload` (dicts, lists, str, numbers, numpy scalars/arrays) as a JSON response."""
    return Response(
        orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status_code,
        headers=headers,
        media_type=JSON,
    )


def query_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput(name, "must be an integer") from None
    if not low <= value <= high:
        raise InvalidInput(name, f"must be between {low} and {high}")
    return value


def query_float(request: Request, name: str, low: float, high: float) -> float | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise InvalidInput(name, "must be a number") from None
    if not low <= value <= high:  # also refuses nan
        raise InvalidInput(name, f"must be between {low:g} and {high:g}")
    return value


def _openapi_extra(
    body: type[BaseModel] | None, parameters: Sequence[Mapping[str, Any]]
) -> dict[str, Any] | None:
    """A hot route's body schema (a component named after the model, registered by
    `register_schemas`) and the parameters it parses itself."""
    extra: dict[str, Any] = {}
    if body is not None:
        extra["requestBody"] = {
            "required": True,
            "content": {JSON: {"schema": {"$ref": f"#/components/schemas/{body.__name__}"}}},
        }
    if parameters:
        extra["parameters"] = [dict(p) for p in parameters]
    return extra or None


def parameter(
    name: str, where: str, schema: Mapping[str, Any], description: str, required: bool = False
) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": required or where == "path",
        "schema": dict(schema),
        "description": description,
    }


def register_schemas(app: FastAPI, routers: Sequence[APIRouter]) -> None:
    """Add the hot routes' body models (and the models they nest) to the OpenAPI components.

    FastAPI lists only the models it validates itself; these are validated by `body_as`.
    """
    models = [m for r in routers if isinstance(r, HotRouter) for m in r.bodies]
    build = app.openapi

    def openapi_with_bodies() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in models:
            js = model.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, definition in js.pop("$defs", {}).items():
                components.setdefault(name, definition)
            components.setdefault(model.__name__, js)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi_with_bodies  # type: ignore[method-assign]
