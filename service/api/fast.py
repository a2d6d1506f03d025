"""Lean JSON endpoints for the hot routes, with the OpenAPI document kept whole.

A hot route takes only the `Request` and returns a `Response` of bytes:

* `body_as(request, Model)` validates the raw body with pydantic-core in one pass from bytes
  (`model_validate_json`: no `json.loads` into Python objects first); a bad body raises
  FastAPI's `RequestValidationError`, so the error body is the one every route gives (422
  naming the field, see `service.api.errors`).
* `json_response(payload)` serialises plain dicts and lists with orjson.
* `query_int` / `query_float` parse the few query parameters a hot route takes, failing with
  `InvalidInput` naming the parameter.

Why: measured in-process on the 2-core machine (`bench/results/speed-http-stack.md`), a FastAPI
endpoint with typed path/query parameters and a `response_model` spends about 100-140 us per
request solving parameters and validating and serialising the response, against about 10 us
for a `Request`-only endpoint returning bytes, and a recommendation's own work is a few tens of
microseconds. The routes still declare `response_model` (documentation only: a returned
`Response` is not re-validated) and `openapi(...)` adds the body schema and parameters the
handler parses itself, so `/openapi.json` and `/docs` describe them as before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import orjson
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from service.errors import InvalidInput

M = TypeVar("M", bound=BaseModel)
JSON = "application/json"


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


def openapi(
    body: type[BaseModel] | None = None,
    parameters: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """`openapi_extra` for a hot route: its body schema (a component named after the model,
    registered by `register_schemas`) and the parameters it parses itself."""
    extra: dict[str, Any] = {}
    if body is not None:
        extra["requestBody"] = {
            "required": True,
            "content": {JSON: {"schema": {"$ref": f"#/components/schemas/{body.__name__}"}}},
        }
    if parameters:
        extra["parameters"] = [dict(p) for p in parameters]
    return extra


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


def register_schemas(app: FastAPI, models: Sequence[type[BaseModel]]) -> None:
    """Add the hot routes' body models (and the models they nest) to the OpenAPI components.

    FastAPI lists only the models it validates itself; these are validated by `body_as`.
    """
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
