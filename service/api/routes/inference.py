"""The Open Inference Protocol (KServe V2, REST) beside the domain routes.

Each graph of each served model is one V2 model, named ``<model>.<graph>`` (``imn.score``,
``intent.score``, ``stmp.forecast``): its metadata lists the tensors a request sends (inputs a
version binds once, such as IMN's item table, are not among them) and ``infer`` runs through the
same micro-batcher as the domain routes, so V2 clients share batches with everyone else.
Errors follow the protocol: ``{"error": "<message>"}`` with a 4xx (bad request, unknown model)
or 503 (nothing loaded, overloaded), not salecast's own error body.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError

from service import __version__
from service.api.fast import HotRouter, body_as, json_response
from service.api.schemas.inference import (
    InferenceError,
    InferRequest,
    InferResponse,
    Liveness,
    ModelMetadata,
    Readiness,
    ServerMetadata,
)
from service.errors import InvalidInput, NotFound, NotReady, SalecastError
from service.runtime.registry import LoadedModel, ModelRegistry

router = HotRouter(prefix="/v2", tags=["open inference protocol"])
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": InferenceError}, 404: {"model": InferenceError}, 503: {"model": InferenceError},
}  # fmt: skip

V2_TYPES = {
    "float32": "FP32", "float64": "FP64", "float16": "FP16", "int64": "INT64", "int32": "INT32",
    "int16": "INT16", "int8": "INT8", "uint8": "UINT8", "bool": "BOOL",
}  # fmt: skip
NUMPY_TYPES = {v: k for k, v in V2_TYPES.items()}


def _error(status: int, message: str) -> Response:
    return json_response({"error": message}, status_code=status)


def _graph(registry: ModelRegistry, name: str) -> tuple[LoadedModel, str]:
    model, dot, graph = name.partition(".")
    if not dot or not graph:
        raise NotFound("model", name)
    try:
        loaded = registry.get(model)
    except NotReady:
        # A model with a folder that is still loading is "not ready" (503, retry); a name no
        # folder has is unknown (404), so clients do not retry a typo forever.
        if model not in registry.known_models():
            raise NotFound("model", name) from None
        raise
    if graph not in loaded.sessions:
        raise NotFound("model", name)
    return loaded, graph


def _shape(dims: list[int | str | None]) -> list[int]:
    return [d if isinstance(d, int) else -1 for d in dims]


def metadata(loaded: LoadedModel, graph: str) -> dict[str, Any]:
    spec = loaded.manifest.graphs[graph]
    shared = set(spec.shared_inputs)
    return {
        "name": f"{loaded.name}.{graph}",
        "versions": [loaded.version],
        "platform": "onnxruntime_onnx",
        "inputs": [
            {
                "name": t.name,
                "datatype": V2_TYPES.get(t.dtype, t.dtype.upper()),
                "shape": _shape(t.shape),
            }
            for t in spec.inputs
            if t.name not in shared
        ],
        "outputs": [
            {
                "name": t.name,
                "datatype": V2_TYPES.get(t.dtype, t.dtype.upper()),
                "shape": _shape(t.shape),
            }
            for t in spec.outputs
        ],
    }


def _tensor(tensor: Any) -> np.ndarray:
    dtype = NUMPY_TYPES.get(tensor.datatype)
    if dtype is None:
        raise InvalidInput(
            f"inputs.{tensor.name}.datatype", f"unknown datatype {tensor.datatype!r}"
        )
    if any(d < 0 for d in tensor.shape) or math.prod(tensor.shape) > 4_000_000:
        raise InvalidInput(
            f"inputs.{tensor.name}.shape", "dimensions must be non-negative and small"
        )
    try:
        array = np.asarray(tensor.data, dtype=dtype)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidInput(
            f"inputs.{tensor.name}.data", f"not {tensor.datatype} values: {exc}"
        ) from None
    if array.size != math.prod(tensor.shape):
        raise InvalidInput(
            f"inputs.{tensor.name}.data", f"{array.size} values do not fill shape {tensor.shape}"
        )
    return array.reshape(tensor.shape)


@router.get("", response_model=ServerMetadata)
async def server_metadata() -> dict[str, Any]:
    return {"name": "salecast", "version": __version__, "extensions": []}


@router.get("/health/live", response_model=Liveness)
async def server_live() -> dict[str, bool]:
    return {"live": True}


@router.get("/health/ready", response_model=Readiness, responses={400: {"model": Readiness}})
async def server_ready(request: Request) -> Response:
    """Ready when every loaded model is warm, Redis answers and the process is not draining
    (`/health/ready` gives the details); 400 otherwise, as the protocol asks."""
    from service.api.routes.health import readiness

    ok, _ = await readiness(request)
    return json_response({"ready": ok}, status_code=200 if ok else 400)


@router.get("/models/{name}", response_model=ModelMetadata, responses=ERRORS)
async def model_metadata(name: str, request: Request) -> Response:
    try:
        loaded, graph = _graph(request.app.state.registry, name)
    except SalecastError as exc:
        return _protocol_error(exc)
    return json_response(metadata(loaded, graph))


@router.get(
    "/models/{name}/ready",
    response_model=Readiness,
    responses={**ERRORS, 400: {"model": Readiness, "description": "known but not ready"}},
)
async def model_ready(name: str, request: Request) -> Response:
    try:
        loaded, graph = _graph(request.app.state.registry, name)
    except NotFound as exc:
        return _protocol_error(exc)
    except NotReady:
        return json_response({"ready": False}, status_code=400)
    ok = graph in loaded.warmed
    return json_response({"ready": ok}, status_code=200 if ok else 400)


@router.hot(
    "/models/{name}/infer",
    "POST",
    response_model=InferResponse,
    responses=ERRORS,
    body=InferRequest,
)
async def model_infer(request: Request) -> Response:
    """Run the graph on the request's tensors (micro-batched with every other caller)."""
    name = request.path_params["name"]
    try:
        body = await body_as(request, InferRequest)
    except RequestValidationError as exc:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "body"
        return _error(400, f"{where}: {first.get('msg', 'invalid request')}")
    try:
        loaded, graph = _graph(request.app.state.registry, name)
        inputs = {t.name: _tensor(t) for t in body.inputs}
        out = await loaded.infer(graph, inputs)
    except SalecastError as exc:
        return _protocol_error(exc)
    wanted = [o.name for o in body.outputs] if body.outputs else list(out)
    unknown = [w for w in wanted if w not in out]
    if unknown:
        return _error(400, f"unknown output {unknown[0]!r}")
    return json_response(
        {
            "model_name": name,
            "model_version": loaded.version,
            "id": body.id,
            "outputs": [
                {
                    "name": w,
                    "shape": list(out[w].shape),
                    "datatype": V2_TYPES.get(out[w].dtype.name, out[w].dtype.name.upper()),
                    "data": np.ravel(out[w]).tolist(),
                }
                for w in wanted
            ],
        }
    )


def _protocol_error(exc: SalecastError) -> Response:
    from service.api.errors import public_reason, status_for

    status, _ = status_for(exc)
    message = f"{exc.field}: {exc.reason}" if isinstance(exc, InvalidInput) else public_reason(exc)
    if status == 422:
        status = 400
    response = _error(status, message)
    if isinstance(exc, NotReady):
        response.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
    return response
