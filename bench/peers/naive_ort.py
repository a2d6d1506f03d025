"""The naive HTTP peer of `bench.http_load`: FastAPI + one ONNX Runtime call per request.

This is the baseline the project's performance notes name ("POST with a pydantic body ... and
one ONNX Runtime call per request"): it loads the same ONNX graph as salecast's artifact, takes the
graph's inputs as JSON, converts them to arrays and calls `InferenceSession.run` once, inline in
the request handler. Nothing else: no micro-batching (every request is its own ORT call), no
Redis (the client sends precomputed features and states), no request-id middleware, no
metrics. Served by uvicorn with one worker, like the service.

Run: ``python -m bench.peers.naive_ort --artifact artifacts/intent/<version> --graph score
--port 8101``. Inputs a graph shares across requests (IMN's item table) are loaded once from
``--shared name=file.npy`` and fed with every call, as a naive server would; inputs it draws
itself (STMP's sampling noise) are named with ``--normal name=d1xd2`` (the shape after the
batch axis) and drawn from N(0, 1) per request, as salecast draws them.

Endpoints: ``POST /v1/infer`` ``{"inputs": {name: nested list}}`` -> ``{"outputs": {name:
nested list}}``, ``GET /health/ready``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

# ONNX tensor type strings -> numpy dtypes, for converting JSON lists to the graph's types.
ORT_DTYPES: dict[str, type[np.generic]] = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
}


class InferRequest(BaseModel):
    """Graph inputs by name, each a (nested) list with the batch axis first."""

    inputs: dict[str, list[Any]]


class InferResponse(BaseModel):
    outputs: dict[str, list[Any]]


def providers() -> list[str]:
    """CUDA when onnxruntime offers it (same choice as salecast's `auto`), CPU otherwise."""
    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


def graph_file(artifact: Path, graph: str) -> Path:
    """The graph's ONNX file, from the version's manifest (the same file salecast loads)."""
    manifest = json.loads((artifact / "manifest.json").read_text())
    return artifact / manifest["graphs"][graph]["file"]


def create_app(
    artifact: Path,
    graph: str,
    shared: dict[str, Path] | None = None,
    threads: int = 1,
    normal: dict[str, tuple[int, ...]] | None = None,
) -> FastAPI:
    """An app with one session; `shared` arrays are fed to every call alongside the body,
    `normal` inputs are drawn per request with the body's batch size."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(graph_file(artifact, graph)), opts, providers=providers())
    dtypes = {i.name: ORT_DTYPES.get(i.type, np.float32) for i in session.get_inputs()}
    fixed = {name: np.load(path).astype(dtypes[name]) for name, path in (shared or {}).items()}
    drawn = dict(normal or {})
    wanted = set(dtypes) - set(fixed) - set(drawn)
    rng = np.random.default_rng(0)
    output_names = [o.name for o in session.get_outputs()]
    app = FastAPI(title="naive ONNX peer")

    @app.get("/health/ready")
    async def ready() -> dict[str, Any]:
        return {"ready": True, "provider": session.get_providers()[0]}

    @app.post("/v1/infer", response_model=InferResponse)
    async def infer(body: InferRequest) -> InferResponse:
        # Blocking ORT call on the event loop: exactly what a naive handler does.
        if set(body.inputs) != wanted:
            raise HTTPException(422, f"inputs must be exactly {sorted(wanted)}")
        try:
            feed = {k: np.asarray(v, dtype=dtypes[k]) for k, v in body.inputs.items()}
        except (TypeError, ValueError) as exc:
            raise HTTPException(422, f"inputs: {exc}") from exc
        feed.update(fixed)
        rows = len(next(iter(body.inputs.values())))
        for name, shape in drawn.items():
            feed[name] = rng.standard_normal((rows, *shape)).astype(dtypes[name])
        try:
            out = session.run(output_names, feed)
        except Exception as exc:  # ORT rejects bad shapes/indices: the client's fault here
            raise HTTPException(422, f"inputs: {type(exc).__name__}") from exc
        return InferResponse(
            outputs={n: np.asarray(v).tolist() for n, v in zip(output_names, out, strict=True)}
        )

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--artifact", type=Path, required=True, help="<model>/<version> folder")
    parser.add_argument("--graph", default="score")
    parser.add_argument("--shared", nargs="*", default=[], help="name=file.npy, fed every call")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8101)
    parser.add_argument("--threads", type=int, default=1, help="ORT intra-op threads")
    parser.add_argument("--normal", nargs="*", default=[], help="name=d1xd2, drawn per request")
    args = parser.parse_args(argv)
    shared = {}
    for item in args.shared:
        name, _, path = item.partition("=")
        shared[name] = Path(path)
    normal = {}
    for item in args.normal:
        name, _, dims = item.partition("=")
        normal[name] = tuple(int(d) for d in dims.split("x") if d)
    app = create_app(args.artifact, args.graph, shared, args.threads, normal)
    uvicorn.run(
        app, host=args.host, port=args.port, workers=1, access_log=False, log_level="warning"
    )


if __name__ == "__main__":
    main()
