"""The Open Inference Protocol (KServe V2, REST) routes, with the protocol's own JSON shapes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.api.main import create_app
from tests.test_runtime_batcher import scale_artifact


@pytest.fixture
def client(tmp_path: Path, clean_redis: str) -> Iterator[TestClient]:
    root = tmp_path / "art"
    scale_artifact(root, "0001", 2.0, tmp=tmp_path)
    (root / "pending").mkdir()  # a model folder with no version yet: known, never loaded
    app = create_app(
        artifacts_dir=root, redis_url=clean_redis, poll_interval_s=0, execution_provider="cpu"
    )
    with TestClient(app) as c:
        yield c


def test_health_and_metadata(client: TestClient) -> None:
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    server = client.get("/v2").json()
    assert server["name"] == "salecast" and server["version"]
    meta = client.get("/v2/models/toy.score").json()
    assert meta == {
        "name": "toy.score",
        "versions": ["0001"],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 3]}],
    }
    assert client.get("/v2/models/toy.score/ready").json() == {"ready": True}
    # A known model that is not loaded is "not ready" (400, the protocol's boolean answer);
    # a name no artifact folder has is unknown.
    pending = client.get("/v2/models/pending.score/ready")
    assert (pending.status_code, pending.json()) == (400, {"ready": False})
    assert client.get("/v2/models/typo.score/ready").status_code == 404
    assert client.get("/v2/models/typo.score").status_code == 404


def test_infer_takes_and_gives_the_protocol_tensors(client: TestClient) -> None:
    request: dict[str, Any] = {
        "id": "req-1",
        "inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6]}],
        "outputs": [{"name": "y"}],
    }
    r = client.post("/v2/models/toy.score/infer", json=request)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "model_name": "toy.score",
        "model_version": "0001",
        "id": "req-1",
        "outputs": [
            {"name": "y", "shape": [2, 3], "datatype": "FP32", "data": [2, 4, 6, 8, 10, 12]}
        ],
    }
    nested = dict(request, inputs=[dict(request["inputs"][0], data=[[1, 2, 3], [4, 5, 6]])])
    assert client.post("/v2/models/toy.score/infer", json=nested).json()["outputs"][0]["data"] == [
        2, 4, 6, 8, 10, 12,
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "tensor", "status"),
    [
        ("toy.score", {"name": "x", "shape": [1, 3], "datatype": "BF99", "data": [1, 2, 3]}, 400),
        ("toy.score", {"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [1, 2]}, 400),
        ("toy.score", {"name": "z", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}, 400),
        ("toy.nothing", {"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}, 404),
        (
            "nomodel.score",
            {"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]},
            404,
        ),
        (
            "pending.score",
            {"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]},
            503,
        ),
    ],
)
def test_errors_are_the_protocol_error_body(
    client: TestClient, name: str, tensor: dict[str, object], status: int
) -> None:
    r = client.post(f"/v2/models/{name}/infer", json={"inputs": [tensor]})
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"]
    bad = client.post(f"/v2/models/{name}/infer", json={"inputs": "nope"})
    assert bad.status_code == 400 and set(bad.json()) == {"error"}
