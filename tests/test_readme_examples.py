"""The README's "Requests and responses" stay true: each curl body is the request example of
`/openapi.json` for that route, and sent to the demo service in README order it gets a 200
whose JSON has the shape the README shows (the same keys at every level); both validate
against the route's response schema. Values differ from run to run (models retrain), so
they are not compared."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from jsonschema import Draft202012Validator

from service.api.main import create_app
from service.state.embedded import EmbeddedRedis
from tests.conftest import flushed

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## Requests and responses"


def _examples() -> list[tuple[str, str, Any, Any]]:
    """(method, path with query, request body or None, response) for each curl in the section."""
    text = README.read_text()
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    section = text[start : end if end > 0 else None]
    blocks = re.findall(r"```(bash|json)\n(.*?)```", section, flags=re.S)
    pairs = []
    for (kind, curl), (kind2, answer) in zip(blocks[::2], blocks[1::2], strict=True):
        assert (kind, kind2) == ("bash", "json"), "each curl block is followed by its answer"
        words = shlex.split(curl.replace("\\\n", " "))
        assert words[:2] == ["curl", "-s"], words
        method = words[words.index("-X") + 1] if "-X" in words else "GET"
        url = next(w for w in words if "localhost:8000" in w)
        body = json.loads(words[words.index("-d") + 1]) if "-d" in words else None
        pairs.append((method, url.split("localhost:8000", 1)[1], body, json.loads(answer)))
    return pairs


def _shape(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return type(value).__name__ if value is not None else None


def _same_shape(shown: Any, got: Any, where: str = "") -> None:
    if isinstance(shown, dict):
        assert isinstance(got, dict) and set(got) == set(shown), (where, set(got) ^ set(shown))
        for key in shown:
            _same_shape(shown[key], got[key], f"{where}.{key}")
    elif isinstance(shown, list) and shown:
        assert isinstance(got, list) and got, where
        _same_shape(shown[0], got[0], f"{where}[0]")


@pytest.fixture(scope="module")
def client(demo: tuple[Path, list[Path]], embedded_redis: EmbeddedRedis) -> Iterator[TestClient]:
    app = create_app(artifacts_dir=demo[0], redis_url=flushed(embedded_redis), poll_interval_s=0)
    with TestClient(app) as c:
        yield c


def test_readme_shows_every_model() -> None:
    paths = {path.split("?")[0] for _, path, _, _ in _examples()}
    assert {
        "/v1/forecast/festival",  # STMP
        "/v1/forecast/promotion-items",  # DINOP
        "/v1/score/cvr",  # MetaCVR
        "/v1/score/intent",  # TPG-DNN
        "/v1/events",  # IMN-Net, then its recommendations
    } <= paths
    assert any(p.startswith("/v1/recommendations/") for p in paths)


def test_readme_requests_are_the_documented_examples_and_answers_keep_their_shape(
    client: TestClient,
) -> None:
    spec = client.get("/openapi.json").json()
    templates = {re.sub(r"\{[^}]+\}", "[^/]+", t) + "$": t for t in spec["paths"]}
    for method, url, body, shown in _examples():
        path = url.split("?")[0]
        template = next(t for pattern, t in templates.items() if re.match(pattern, path))
        operation = spec["paths"][template][method.lower()]
        if body is not None:
            schema = operation["requestBody"]["content"]["application/json"]["schema"]
            ref = schema["$ref"].rsplit("/", 1)[-1]
            assert body == spec["components"]["schemas"][ref]["examples"][0], url
        r = client.request(method, url, json=body)
        assert r.status_code == 200, (url, r.text[:300])
        got = r.json()
        _same_shape(_shape(shown), _shape(got), url)
        answer = operation["responses"]["200"]["content"]["application/json"]["schema"]
        validator = Draft202012Validator({**answer, "components": spec["components"]})
        validator.validate(got)
        validator.validate(shown)
