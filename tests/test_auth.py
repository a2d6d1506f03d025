"""API keys and scopes: who may call what, 401/403/429 in the common error body, rotation."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.api.main import create_app
from service.auth.keys import add_key


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    path = tmp_path / "keys.txt"
    made = {
        "reader": add_key(path, "reader", frozenset({"read"}), None),
        "writer": add_key(path, "writer", frozenset({"write"}), None),
        "ops": add_key(path, "ops", frozenset({"admin", "read"}), None),
        "slow": add_key(path, "slow", frozenset({"read"}), 1.0),
    }
    return path, made


def _client(tmp_path: Path, keys_file: Path, **settings: Any) -> TestClient:
    app = create_app(
        artifacts_dir=tmp_path / "no-artifacts", poll_interval_s=0, api_keys_file=keys_file,
        **settings,
    )  # fmt: skip
    return TestClient(app)


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_keys_are_stored_hashed_and_private(keys: tuple[Path, dict[str, str]]) -> None:
    path, made = keys
    text = path.read_text()
    assert all(key not in text for key in made.values())
    assert path.stat().st_mode & 0o077 == 0


def test_operations_need_a_key_with_their_scope(
    tmp_path: Path, keys: tuple[Path, dict[str, str]]
) -> None:
    path, made = keys
    with _client(tmp_path, path) as c:
        r = c.get("/v1/recommendations/u1")
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
        assert r.json()["error"]["type"] == "unauthenticated"
        assert c.get("/v1/models", headers=_bearer("sck_not-a-key")).status_code == 401
        events = {"events": [{"event_id": "e", "user_id": "u", "item_id": "i",
                              "action": "browse", "timestamp": time.time()}]}  # fmt: skip
        r = c.post("/v1/events", json=events, headers=_bearer(made["reader"]))
        assert r.status_code == 403 and "'write'" in r.json()["error"]["reason"]
        # past authentication the request reaches the route (no store here: 503, not 401/403)
        r = c.post("/v1/events", json=events, headers={"X-API-Key": made["writer"]})
        assert r.status_code == 503
        assert c.get("/v1/models", headers=_bearer(made["writer"])).status_code == 403
        assert c.get("/v1/models", headers=_bearer(made["ops"])).status_code == 200
        # probes and the documentation stay open
        assert c.get("/health/live").status_code == 200
        assert c.get("/openapi.json").status_code == 200
        assert made["reader"] not in r.text


def test_probes_can_be_protected(tmp_path: Path, keys: tuple[Path, dict[str, str]]) -> None:
    path, made = keys
    with _client(tmp_path, path, auth_probes=True) as c:
        assert c.get("/health/live").status_code == 401
        assert c.get("/metrics", headers=_bearer(made["reader"])).status_code == 200


def test_a_key_over_its_rate_gets_429_with_retry_after(
    tmp_path: Path, keys: tuple[Path, dict[str, str]]
) -> None:
    path, made = keys
    with _client(tmp_path, path) as c:
        codes = [
            c.get("/v1/recommendations/u", headers=_bearer(made["slow"])).status_code
            for _ in range(4)
        ]
        assert codes[0] == 503 and 429 in codes  # the first passes (no model: 503), then 429
        r = c.get("/v1/recommendations/u", headers=_bearer(made["slow"]))
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert r.json()["error"]["type"] == "rate_limited"
        # another key is not held back by this one's bucket
        assert c.get("/v1/models", headers=_bearer(made["ops"])).status_code == 200


def test_keys_rotate_without_a_restart(tmp_path: Path, keys: tuple[Path, dict[str, str]]) -> None:
    path, made = keys
    with _client(tmp_path, path) as c:
        assert c.get("/v1/models", headers=_bearer(made["ops"])).status_code == 200
        fresh = add_key(path, "ops-2", frozenset({"admin"}), None)
        old_line = next(line for line in path.read_text().splitlines() if line.startswith("ops "))
        path.write_text(path.read_text().replace(old_line + "\n", ""))  # the old key retired
        deadline = time.monotonic() + 10
        while c.get("/v1/models", headers=_bearer(fresh)).status_code != 200:
            assert time.monotonic() < deadline, "the new key was never accepted"
            time.sleep(0.2)
        assert c.get("/v1/models", headers=_bearer(made["ops"])).status_code == 401


def test_the_openapi_document_names_schemes_and_scopes(
    tmp_path: Path, keys: tuple[Path, dict[str, str]]
) -> None:
    path, _ = keys
    with _client(tmp_path, path) as c:
        doc = c.get("/openapi.json").json()
    assert set(doc["components"]["securitySchemes"]) == {"bearerKey", "headerKey"}
    events = doc["paths"]["/v1/events"]["post"]
    assert events["x-required-scope"] == "write" and events["security"]
    assert doc["paths"]["/v1/score/intent"]["post"]["x-required-scope"] == "read"
    assert doc["paths"]["/v1/models/reload"]["post"]["x-required-scope"] == "admin"
    assert "security" not in doc["paths"]["/health/live"]["get"]
