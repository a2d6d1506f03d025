"""The API's documentation as a client developer meets it: readable, unique operation ids;
an example for every request body, each of which the demo service actually accepts; and
`/docs` served from local assets (no CDN), so it works on a host without internet access.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.api.main import create_app
from service.state.embedded import EmbeddedRedis
from tests.conftest import flushed

# Operations whose example must run before another's: sales history and the promotion are
# what the forecasts read.
FIRST = ("/v1/sales", "/v1/promotions", "/v1/events")
# The demo's DINOP trains no buy-through (BOP) head, so that example is a well-formed request
# the demo rightly answers with 404 naming the missing task.
DEMO_STATUS = {"/v1/forecast/buy-through-promotion": 404}


@pytest.fixture(scope="module")
def client(demo: tuple[Path, list[Path]], embedded_redis: EmbeddedRedis) -> Iterator[TestClient]:
    app = create_app(artifacts_dir=demo[0], redis_url=flushed(embedded_redis), poll_interval_s=0)
    with TestClient(app) as c:
        yield c


def _operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            yield path, method, op


def _body_examples(spec: dict[str, Any], op: dict[str, Any]) -> list[Any]:
    content = op["requestBody"]["content"]["application/json"]
    ref = content["schema"]["$ref"].rsplit("/", 1)[-1]
    return list(spec["components"]["schemas"][ref].get("examples", []))


def test_operation_ids_are_unique_and_readable(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    ids = [op["operationId"] for _, _, op in _operations(spec)]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    for op_id in ids:
        # The endpoint's name: no path fragments or HTTP verbs glued on (FastAPI's default).
        assert re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)*", op_id), op_id
        assert not re.search(r"_(get|post|v1|v2)(_|$)", op_id), op_id
    assert "score_intent" in ids and "model_infer" in ids


def test_every_request_body_has_an_example_the_service_accepts(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    with_body = [(p, m, op) for p, m, op in _operations(spec) if "requestBody" in op]
    assert len(with_body) >= 10  # every POST with a body, the hot routes' included
    order = sorted(
        with_body, key=lambda t: (t[0] not in FIRST, FIRST.index(t[0]) if t[0] in FIRST else 0)
    )
    for path, method, op in order:
        examples = _body_examples(spec, op)
        assert examples, f"{method.upper()} {path} has no request example"
        for example in examples:
            url = path.replace("{name}", "intent.score")
            r = client.request(method.upper(), url, json=example)
            assert r.status_code == DEMO_STATUS.get(path, 200), (path, example, r.text[:500])
            if r.status_code == 404:
                assert "bop" in r.json()["error"]["reason"]


def test_path_parameters_have_examples(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    params = spec["paths"]["/v1/recommendations/{user_id}"]["get"]["parameters"]
    user = next(p for p in params if p["name"] == "user_id")
    assert user["schema"]["examples"]
    r = client.get(f"/v1/recommendations/{user['schema']['examples'][0]}", params={"k": 5})
    assert r.status_code == 200 and len(r.json()["items"]) == 5


def test_docs_work_without_internet(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    sources = re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", page.text)
    assert sources, page.text[:300]
    assert not [s for s in sources if s.startswith(("http:", "https:", "//"))], sources
    for source in sources:
        asset = client.get(source)
        assert asset.status_code == 200, source
        assert len(asset.content) > 1000, source
    js = [s for s in sources if s.endswith(".js")]
    assert js and "SwaggerUIBundle" in client.get(js[0]).text
    redoc = client.get("/redoc")
    assert redoc.status_code == 200 and "cdn" not in redoc.text.lower()
