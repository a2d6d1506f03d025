"""The HTTP edge through TestClient: models, reloads, errors, request ids, readiness, metrics."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi import APIRouter, Request
from fastapi.testclient import TestClient
from pydantic import BaseModel, Field

from service.api.main import create_app
from service.config import Settings, settings_table_markdown
from service.logs import JsonFormatter
from service.metrics import ALL_METRICS
from service.runtime.batcher import MicroBatcher
from service.state.embedded import EmbeddedRedis
from tests.test_runtime_batcher import scale_artifact


class Rows(BaseModel):
    rows: list[list[float]] = Field(min_length=1)


def probe_router() -> APIRouter:
    """A test-only route that infers through the registry, as a servable's route does."""
    router = APIRouter()

    @router.post("/test/score")
    async def score(body: Rows, request: Request) -> dict[str, Any]:
        loaded = request.app.state.registry.get("toy")
        out = await loaded.infer("score", {"x": np.asarray(body.rows, np.float32)})
        return {"version": loaded.version, "y": out["y"].tolist()}

    @router.post("/test/gated")
    async def gated(request: Request) -> dict[str, float]:
        batcher: MicroBatcher = request.app.state.gated
        out = await batcher.submit({"x": np.ones((1, 3), np.float32)})
        return {"y": float(out["y"][0, 0])}

    return router


def make_settings(root: Path, **kw: Any) -> Settings:
    base: dict[str, Any] = {
        "artifacts_dir": root,
        "execution_provider": "cpu",
        "intra_op_threads": 1,
        "poll_interval_s": 0,
        "drain_timeout_s": 2,
    }
    base.update(kw)
    return Settings(**base)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    root = tmp_path / "art"
    scale_artifact(root, "0001", 1.0, tmp=tmp_path)
    app = create_app(make_settings(root))
    app.include_router(probe_router())
    with TestClient(app) as c:
        yield c


def test_no_models_is_said(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path / "none"))) as c:
        body = c.get("/v1/models").json()
        assert body["models"] == [] and body["message"] == "no models loaded"
        assert c.get("/health/live").status_code == 200
        r = c.get("/v1/models/toy")
        assert r.status_code == 404 and r.json()["error"]["type"] == "not_found"


def test_models_list_and_reload_swap(client: TestClient, tmp_path: Path) -> None:
    [model] = client.get("/v1/models").json()["models"]
    assert model["name"] == "toy" and model["version"] == "0001"
    assert model["provider"] == "CPUExecutionProvider" and model["warm"] is True
    assert model["metrics"] == {"auc": 0.51}
    assert model["graphs"]["score"]["inputs"][0]["name"] == "x"
    assert client.post("/test/score", json={"rows": [[1, 2, 3]]}).json()["y"] == [[1, 2, 3]]

    root = tmp_path / "art"
    scale_artifact(root, "0002", 2.0, tmp=tmp_path)
    r = client.post("/v1/models/toy/reload")
    assert r.status_code == 200
    assert r.json()["results"] == [
        {"model": "toy", "status": "loaded", "version": "0002", "reason": None}
    ]
    body = client.post("/test/score", json={"rows": [[1, 2, 3]]}).json()
    assert body == {"version": "0002", "y": [[2, 4, 6]]}
    assert client.get("/v1/models/toy").json()["version"] == "0002"

    broken = scale_artifact(root, "0003", 3.0, tmp=tmp_path)
    (broken / "score.onnx").write_bytes(b"not an onnx graph")
    [outcome] = client.post("/v1/models/reload").json()["results"]
    assert outcome["status"] == "refused" and outcome["version"] == "0002"
    assert "0003" in outcome["reason"]
    [again] = client.post("/v1/models/toy/reload").json()["results"]
    assert again["status"] == "refused"
    listed = client.get("/v1/models").json()
    assert listed["models"][0]["refused"][0]["version"] == "0003"
    assert client.post("/v1/models/nope/reload").status_code == 404


def test_invalid_body_is_422_naming_the_field(client: TestClient) -> None:
    r = client.post("/test/score", json={"rows": [[1, "x", 3]]})
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["type"] == "invalid_input" and error["field"] == "rows.0.1"
    assert error["reason"] and error["request_id"] == r.headers["x-request-id"]
    # Valid JSON, wrong width: the runtime's InvalidInput, also 422, never 500.
    r = client.post("/test/score", json={"rows": [[1, 2]]})
    assert r.status_code == 422 and r.json()["error"]["field"] == "x"
    r = client.post(
        "/test/score", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422


def test_request_id_is_echoed_or_made(client: TestClient) -> None:
    r = client.get("/health/live", headers={"X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    made = client.get("/health/live").headers["x-request-id"]
    assert len(made) == 32
    hostile = client.get("/health/live", headers={"X-Request-ID": "a b\tc"})
    assert hostile.headers["x-request-id"] != "a b\tc"


def test_full_queue_is_503_with_retry_after(client: TestClient) -> None:
    app: Any = client.app
    session = app.state.registry.get("toy").sessions["score"]
    entered, release = threading.Event(), threading.Event()

    def run(feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        entered.set()
        release.wait(10)
        return session.run(feeds)

    app.state.gated = MicroBatcher(run, model="gated", graph="g", max_wait_s=0, capacity=1)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(client.post, "/test/gated")
        assert entered.wait(10)
        second = pool.submit(client.post, "/test/gated")
        for _ in range(200):
            if app.state.gated.depth == 1:
                break
            time.sleep(0.01)
        r = client.post("/test/gated")
        assert r.status_code == 503
        assert int(r.headers["retry-after"]) >= 1
        assert r.json()["error"]["type"] == "overloaded"
        release.set()
        assert first.result().status_code == 200 and second.result().status_code == 200


def test_not_loaded_model_is_503(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path / "none"))
    app.include_router(probe_router())
    with TestClient(app) as c:
        r = c.post("/test/score", json={"rows": [[1, 2, 3]]})
        assert r.status_code == 503 and "retry-after" in r.headers


def test_metrics_and_docs(client: TestClient) -> None:
    client.post("/test/score", json={"rows": [[1, 2, 3]]})
    client.get("/health/live")  # a hot route (service.api.fast): served by Starlette directly
    text = client.get("/metrics").text
    for metric in ALL_METRICS:
        assert f"# TYPE {metric._name}" in text, metric._name
    assert 'salecast_http_request_duration_seconds_bucket{le="0.0001"' in text
    assert 'route="/test/score"' in text
    assert 'route="/health/live"' in text  # hot routes are labelled by their template too
    assert 'salecast_model_version_info{model="toy",provider="CPUExecutionProvider"' in text
    assert 'salecast_batch_size_rows_count{graph="score",model="toy"}' in text
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert "/v1/models" in paths
    error_schema = paths["/v1/models/{name}"]["get"]["responses"]["422"]["content"]
    assert error_schema["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")


def test_ready_needs_redis_and_warm_models(tmp_path: Path) -> None:
    root = tmp_path / "art"
    scale_artifact(root, "0001", 1.0, tmp=tmp_path)
    with TestClient(create_app(make_settings(root))) as c:
        r = c.get("/health/ready")
        assert r.status_code == 503 and r.json()["checks"]["redis"]["ok"] is False
    redis = EmbeddedRedis(tmp_path / "var")
    url = redis.start()
    try:
        app: Any = create_app(make_settings(root, redis_url=url))
        with TestClient(app) as c:
            r = c.get("/health/ready")
            assert r.status_code == 200, r.text
            assert r.json()["checks"]["models"]["loaded"] == {
                "toy": {"version": "0001", "warm": True}
            }
            app.state.draining = True
            assert c.get("/health/ready").status_code == 503
            app.state.draining = False
    finally:
        redis.stop()


def test_shutdown_drains_in_flight_requests(tmp_path: Path) -> None:
    """Leaving the lifespan waits for a request still in the batcher; it is answered, not cut."""
    root = tmp_path / "art"
    scale_artifact(root, "0001", 1.0, tmp=tmp_path)
    app: Any = create_app(make_settings(root, drain_timeout_s=5))
    app.include_router(probe_router())
    entered, release = threading.Event(), threading.Event()
    client = TestClient(app)
    client.__enter__()
    session = app.state.registry.get("toy").sessions["score"]

    def run(feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        entered.set()
        release.wait(10)
        return session.run(feeds)

    app.state.gated = MicroBatcher(run, model="gated", graph="g", max_wait_s=0)
    with ThreadPoolExecutor(2) as pool:
        pending = pool.submit(client.post, "/test/gated")
        assert entered.wait(10)
        stopping = pool.submit(client.__exit__, None, None, None)
        time.sleep(0.3)
        assert not stopping.done(), "shutdown did not wait for the in-flight request"
        assert app.state.draining is True
        release.set()
        assert pending.result(10).status_code == 200
        stopping.result(10)
    assert app.state.in_flight == 0


def test_settings_from_environment_and_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://example:6379/0")
    monkeypatch.setenv("SALECAST_BATCH_MAX_SIZE", "64")
    monkeypatch.setenv("SALECAST_EXECUTION_PROVIDER", "cuda")
    settings = Settings()
    assert settings.redis_url == "redis://example:6379/0"
    assert settings.batch_max_size == 64 and settings.execution_provider == "cuda"
    assert settings.batch_max_wait_ms <= 1.0 and settings.intra_threads() >= 1
    monkeypatch.setenv("SALECAST_EXECUTION_PROVIDER", "tpu")
    with pytest.raises(ValueError):
        Settings()
    table = settings_table_markdown()
    for name in Settings.model_fields:
        assert (f"SALECAST_{name.upper()}" in table) or name == "redis_url"
    assert "`REDIS_URL`" in table and table.count("\n") == len(Settings.model_fields) + 2


def test_readme_configuration_table_is_current() -> None:
    # The README's table is `python -m service.config` output; a new or changed setting
    # must be regenerated there, or newcomers read stale defaults.
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert settings_table_markdown() in readme


def test_logs_are_json_lines_with_the_request_id(client: TestClient) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    access = logging.getLogger("service.access")
    access.addHandler(handler)
    try:
        client.post("/test/score", json={"rows": [[1, 2, 3]]}, headers={"X-Request-ID": "r-42"})
    finally:
        access.removeHandler(handler)
    [line] = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert line["request_id"] == "r-42" and line["route"] == "/test/score"
    assert line["status"] == 200 and line["duration_ms"] >= 0


def _samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                out[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def test_metrics_carry_version_readiness_and_build(client: TestClient) -> None:
    """After one inference the queue-wait histogram has a sample for the served version, the
    model is ready, the build is labelled, and a failing graph call is counted."""
    assert client.post("/test/score", json={"rows": [[1.0, 2.0, 3.0]]}).status_code == 200
    text = client.get("/metrics").text
    waits = _samples(text, "salecast_queue_wait_seconds_count")
    assert waits[(("graph", "score"), ("model", "toy"), ("version", "0001"))] >= 1
    assert _samples(text, "salecast_model_ready")[(("model", "toy"),)] == 1.0
    (build,) = _samples(text, "salecast_build_info").items()
    assert build[1] == 1.0 and dict(build[0])["onnxruntime"]
    from service.metrics import INFERENCE_FAILURES
    from service.runtime.batcher import MicroBatcher

    def broken(feeds: Any) -> dict[str, np.ndarray]:
        raise RuntimeError("the graph failed")

    app: Any = client.app
    app.state.gated = MicroBatcher(broken, model="gated", version="v9", graph="g", max_wait_s=0)
    failures = INFERENCE_FAILURES.labels(model="gated", version="v9", graph="g")
    before = failures._value.get()
    assert client.post("/test/gated").status_code == 500
    assert failures._value.get() == before + 1
