"""IMN serving through the real app: /v1/events updates states, /v1/recommendations ranks.

A tiny IMN artifact is trained in the test (planted item -> item + 1 walks); the app runs with
the embedded Valkey and real ONNX Runtime sessions.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.test_model_imn import _events
from training.jobs.imn import add_arguments, prepare, train_prepared

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--epochs", "2", "--dim", "8", "--negatives", "16", "--top-k", "10"])
    args.seed = 0
    args.artifacts = tmp_path_factory.mktemp("artifacts")
    prep = prepare(_events(n_users=20, n_items=30, per_user=12), "x" * 64, "test")
    path, _, _ = train_prepared(prep, args, fresh_state=True)
    return path


@pytest.fixture
def client(artifact: Path, clean_redis: str) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from service.api.main import create_app

    app = create_app(artifacts_dir=artifact.parent.parent, redis_url=clean_redis, poll_interval_s=0)
    with TestClient(app) as c:
        yield c


def _post(client: Any, events: list[dict[str, Any]]) -> dict[str, Any]:
    resp = client.post("/v1/events", json={"events": events})
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_artifact_has_both_graphs(artifact: Path) -> None:
    import json

    manifest = json.loads((artifact / "manifest.json").read_text())
    assert set(manifest["graphs"]) == {"update", "score"}
    assert manifest["graphs"]["score"]["shared_inputs"] == ["item_table"]
    assert (artifact / "item_table.npy").is_file()


def test_cold_user_gets_flagged_popularity(client: Any) -> None:
    resp = client.get("/v1/recommendations/nobody", params={"k": 5})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["fallback"] is True and body["fallback_reason"]
    assert len(body["items"]) == 5


def test_popularity_fallback_is_shared_by_replicas(artifact: Path, clean_redis: str) -> None:
    """Events applied through one replica move the fallback another replica answers."""
    from fastapi.testclient import TestClient

    from service.api.main import create_app

    def app() -> Any:
        return create_app(
            artifacts_dir=artifact.parent.parent, redis_url=clean_redis, poll_interval_s=0
        )

    with TestClient(app()) as a, TestClient(app()) as b:
        before = b.get("/v1/recommendations/nobody", params={"k": 3}).json()["items"]
        cold = before[-1]["item_id"]  # third most popular: push it to the top through `a`
        events = [
            {"event_id": f"p{n}", "user_id": f"fan{n}", "item_id": cold, "action": "browse",
             "timestamp": time.time() - 60}
            for n in range(int(before[0]["score"]) + 5)
        ]  # fmt: skip
        assert a.post("/v1/events", json={"events": events}).json()["applied"] == len(events)
        after = b.get("/v1/recommendations/nobody", params={"k": 3}).json()["items"]
    assert after[0]["item_id"] == cold
    assert after[0]["score"] == before[-1]["score"] + len(events)  # seeded once, not per replica


def test_events_update_state_and_rank(client: Any, clean_redis: str) -> None:
    import redis

    t0 = 1_760_000_000
    events = [
        {
            "event_id": f"e{n}",
            "user_id": "u1",
            "item_id": f"i{n}",
            "action": "browse",
            "timestamp": t0 + 60 * n,
        }
        for n in range(4)
    ]
    body = _post(client, events)
    assert body["applied"] == 4, body["results"]
    # a retry is acknowledged, not applied again; an older event than the state is rejected
    again = _post(client, events[:1])
    assert again["duplicate"] == 1 and again["applied"] == 0
    stale = _post(
        client,
        [
            {
                "event_id": "old",
                "user_id": "u1",
                "item_id": "i9",
                "action": "browse",
                "timestamp": t0 - 10,
            }
        ],
    )
    assert stale["rejected"] == 1 and "stale" in stale["results"][0]["reason"]
    raw = redis.Redis.from_url(clean_redis).hget("sc:{u:u1}:st:imn", "v")
    assert isinstance(raw, bytes) and len(np.frombuffer(raw, dtype="<f4")) == 2 * 8 + 2

    resp = client.get("/v1/recommendations/u1", params={"k": 7, "at": t0 + 300})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["fallback"] is False and len(body["items"]) == 7
    scores = [it["score"] for it in body["items"]]
    assert scores == sorted(scores, reverse=True)


def test_bad_k_is_422(client: Any) -> None:
    resp = client.get("/v1/recommendations/u1", params={"k": 0})
    assert resp.status_code == 422
    assert "k" in resp.text
    resp = client.get("/v1/recommendations/u1", params={"k": 10_000})
    assert resp.status_code == 422


def test_concurrent_recommendations_share_waves_and_answer_as_alone(client: Any) -> None:
    """Concurrent requests are scored in joined waves (one state read and one graph call for
    all of them); each answer equals the one it gets alone, fallbacks included."""
    import asyncio

    from service.servables.imn import SERVABLE, recommendation_waves

    t0 = 1_760_000_000
    _post(
        client,
        [
            {"event_id": f"w{u}-{n}", "user_id": f"w{u}", "item_id": f"i{(u + n) % 9}",
             "action": "browse", "timestamp": t0 + 60 * n}
            for u in range(6) for n in range(3)
        ],
    )  # fmt: skip
    state = client.app.state
    loaded, store = state.registry.get("imn"), state.store
    asks = [(f"w{n % 6}", 3 + n % 5) for n in range(12)] + [("nobody", 4)]
    at = t0 + 3600.0

    async def go() -> tuple[list[Any], list[Any], int]:
        alone = [await SERVABLE.recommend(loaded, store, u, k, at) for u, k in asks]
        waves = recommendation_waves(loaded)
        before = waves.waves
        joined = await asyncio.gather(
            *(SERVABLE.recommend(loaded, store, u, k, at) for u, k in asks)
        )
        return alone, list(joined), waves.waves - before

    alone, joined, waves = client.portal.call(go)
    assert 1 <= waves < len(asks)
    for got, want in zip(joined, alone, strict=True):
        assert (got.fallback, got.reason, len(got.items)) == (
            want.fallback,
            want.reason,
            len(want.items),
        )
        scores = [s for _, s in want.items]
        assert [s for _, s in got.items] == pytest.approx(scores, rel=1e-5, abs=1e-6)
        for j, (item, s) in enumerate(want.items):  # ranks apart by more than rounding agree
            if all(abs(s - o) > 1e-4 for o in scores[:j] + scores[j + 1 :]):
                assert got.items[j][0] == item
    assert alone[-1].fallback and not alone[0].fallback
