"""The Ray Serve peer: the same ONNX graph behind one Ray Serve replica with `@serve.batch`.

`bench.http_load` runs it as ``ray-serve`` on the same artifact and requests as the
``naive-fastapi-ort`` peer (`POST /v1/infer` with the graph's inputs as JSON; shared inputs
such as IMN's item table loaded once, sampling noise drawn per request). Concurrent requests
are joined by `@serve.batch` (up to `--max-batch` requests, waiting at most `--wait-ms`) into
one ORT call and split back, which is Ray Serve's own answer to micro-batching; the replica
admits `--max-ongoing` (64) requests at once, as Ray's guide to batching advises (its
default of 5 caps a batch at 5 and leaves the rest to the router's retry backoff).

Ray Serve comes from the ``bench`` extra (``pip install -e '.[bench]'``); it starts a local Ray
cluster (GCS, raylet, HTTP proxy, one replica) in this process's session. Run:
``python -m bench.peers.ray_serve --artifact artifacts/intent/<version> --graph score
--port 8103``; it serves until SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path
from typing import Any

import numpy as np

#: Requests one replica admits at once (Ray Serve's `max_ongoing_requests`; see `build`).
MAX_ONGOING = 64


def build(
    artifact: Path,
    graph: str,
    shared: dict[str, Path],
    normal: dict[str, tuple[int, ...]],
    threads: int,
    max_batch: int,
    wait_ms: float,
    max_ongoing: int,
) -> Any:
    from ray import serve
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    # Ray Serve lets at most `max_ongoing_requests` (default 5 since Ray 2.32) wait on one
    # replica; beyond it the proxy's router holds and retries requests with backoff, so 32
    # connections against the default measure the router's backoff, not batching (about 10
    # requests/s here). A user tuning for batching raises it to at least the batch size.
    @serve.deployment(
        num_replicas=1, max_ongoing_requests=max_ongoing, ray_actor_options={"num_cpus": 0}
    )
    class OnnxGraph:
        def __init__(self) -> None:
            import onnxruntime as ort

            from bench.peers.naive_ort import ORT_DTYPES, graph_file, providers

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
            self.session = ort.InferenceSession(
                str(graph_file(artifact, graph)), opts, providers=providers()
            )
            self.dtypes = {
                i.name: ORT_DTYPES.get(i.type, np.float32) for i in self.session.get_inputs()
            }
            self.fixed = {n: np.load(p).astype(self.dtypes[n]) for n, p in shared.items()}
            self.outputs = [o.name for o in self.session.get_outputs()]
            self.rng = np.random.default_rng(0)

        @serve.batch(max_batch_size=max_batch, batch_wait_timeout_s=wait_ms / 1e3)
        async def run(self, feeds: list[dict[str, np.ndarray]]) -> list[dict[str, list[Any]]]:
            rows = [len(next(iter(f.values()))) for f in feeds]
            joined = {k: np.concatenate([f[k] for f in feeds]) for k in feeds[0]}
            total = sum(rows)
            for name, shape in normal.items():
                joined[name] = self.rng.standard_normal((total, *shape)).astype(self.dtypes[name])
            joined.update(self.fixed)
            out = self.session.run(self.outputs, joined)
            answers, start = [], 0
            for n in rows:
                answers.append(
                    {
                        k: v[start : start + n].tolist()
                        for k, v in zip(self.outputs, out, strict=True)
                    }
                )
                start += n
            return answers

        async def __call__(self, request: Request) -> JSONResponse:
            if request.method == "GET":
                return JSONResponse({"ready": True})
            body = await request.json()
            feed = {k: np.asarray(v, dtype=self.dtypes[k]) for k, v in body["inputs"].items()}
            return JSONResponse({"outputs": await self.run(feed)})

    return OnnxGraph.bind()  # type: ignore[attr-defined]  # added by @serve.deployment


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--artifact", type=Path, required=True)
    parser.add_argument("--graph", default="score")
    parser.add_argument("--shared", nargs="*", default=[], help="name=file.npy, fed every call")
    parser.add_argument("--normal", nargs="*", default=[], help="name=d1xd2, drawn per request")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8103)
    parser.add_argument("--threads", type=int, default=1, help="ORT intra-op threads")
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--wait-ms", type=float, default=1.0)
    parser.add_argument(
        "--max-ongoing",
        type=int,
        default=MAX_ONGOING,
        help="max_ongoing_requests of the replica (Ray's default, 5, starves @serve.batch)",
    )
    args = parser.parse_args(argv)
    import ray
    from ray import serve

    shared = {n: Path(p) for n, _, p in (s.partition("=") for s in args.shared)}
    normal = {
        n: tuple(int(d) for d in dims.split("x") if d)
        for n, _, dims in (s.partition("=") for s in args.normal)
    }
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": args.host, "port": args.port})
    app = build(
        args.artifact, args.graph, shared, normal, args.threads, args.max_batch, args.wait_ms,
        args.max_ongoing,
    )  # fmt: skip
    serve.run(app, route_prefix="/", blocking=False)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    serve.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()
