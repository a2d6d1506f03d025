"""DINOP serving on the real app: real Valkey, real ONNX Runtime, a demo artifact trained here.

Flow: register a promotion, ingest the static window and then the pre-sale weeks one by
one through `POST /v1/sales` (the DINOP hook advances each item's state), forecast from
the states, and check that the incrementally advanced state gives the same forecast as a
state rebuilt in one go from the stored history.
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from service.state.store import StateStore
from training.schemas import SalesData

PROMO = {"type": "thanksgiving", "date": "2013-11-29"}  # a Friday, after the training data
WEEK = dt.timedelta(days=7)
ITEMS = [("R01", "C01"), ("R02", "C01"), ("R01", "C02")]


def tiny_sales() -> SalesData:
    from training.synthetic import generate_sales

    return generate_sales(n_regions=3, n_categories=2, years=3, seed=1)


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.jobs import dinop as job

    root = tmp_path_factory.mktemp("artifacts")
    args = argparse.Namespace(
        data=[],
        format="tiny",
        seed=0,
        artifacts=root,
        presale_steps=4,
        static_steps=13,
        train_year=None,
        test_year=None,
        epochs=2,
        batch_size=32,
        lr=0.05,
        tasks="gmv,bsp,ss",
        device="cpu",
    )
    original = job.load_data
    job.load_data = lambda args: (tiny_sales(), "tiny")
    try:
        return job.train(args)
    finally:
        job.load_data = original


@pytest.fixture
def client(artifact: Path, clean_redis: str) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from service.api.main import create_app

    app = create_app(artifacts_dir=artifact.parent.parent, redis_url=clean_redis, poll_interval_s=0)
    with TestClient(app) as c:
        yield c


def _records(day: dt.date, base: float) -> list[dict[str, Any]]:
    return [
        {
            "region": region,
            "category": category,
            "date": day.isoformat(),
            "sales": base * (1 + k),
            "external": {"temperature": 50.0 + k, "price": 10.0, "markdown": 1.5},
        }
        for k, (region, category) in enumerate(ITEMS)
    ]


def _forecast(client: Any, **extra: Any) -> dict[str, Any]:
    body = {
        "promotion": PROMO,
        "items": [{"region": r, "category": c} for r, c in ITEMS],
        **extra,
    }
    response = client.post("/v1/forecast/promotion-items", json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_register_ingest_forecast(
    client: Any, clean_redis: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    reg = client.post("/v1/promotions", json=PROMO)
    assert reg.status_code == 200, reg.text
    presale = [dt.date.fromisoformat(d) for d in reg.json()["presale_periods"]]
    static = [dt.date.fromisoformat(d) for d in reg.json()["static_periods"]]
    assert len(presale) == 4 and len(static) == 13 and presale[-1] == dt.date(2013, 11, 22)
    assert client.get("/v1/promotions").json()["promotions"] == [PROMO]

    records = [r for k, day in enumerate(static) for r in _records(day, 100.0 + k)]
    assert client.post("/v1/sales", json={"records": records}).status_code == 200
    before = _forecast(client)
    assert [i["presale_periods_seen"] for i in before["items"]] == [0, 0, 0]

    for k, day in enumerate(presale[:3]):
        ok = client.post("/v1/sales", json={"records": _records(day, 150.0 + 20 * k)})
        assert ok.status_code == 200, ok.text
    after = _forecast(client)
    for item in after["items"]:
        assert item["presale_periods_seen"] == 3
        assert abs(sum(item["slot_probabilities"]) - 1.0) < 1e-4
        assert 1 <= item["slot"] <= 10
        assert 0.0 < item["best_seller_probability"] < 1.0
        assert item["join_activity_probability"] is None  # no JA labels: no JA head trained
        assert item["known_item"]
    assert after["notes"]

    # An older week sent again does not move the state back (compare-and-set on the date).
    client.post("/v1/sales", json={"records": _records(presale[0], 150.0)})
    again = _forecast(client)
    assert [i["gmv"] for i in again["items"]] == [i["gmv"] for i in after["items"]]

    # Drop the states: rebuilt in one go from the history, the forecast is the same.
    r = redis.Redis.from_url(clean_redis)
    for key in list(r.scan_iter(match="sc:{i:*}:st:dinop*")):
        r.delete(key)
    rebuilt = _forecast(client)
    for a, b in zip(rebuilt["items"], after["items"], strict=True):
        assert a["presale_periods_seen"] == 3
        assert a["gmv"] == pytest.approx(b["gmv"], rel=1e-4, abs=1e-3)
        assert a["slot_probabilities"] == pytest.approx(b["slot_probabilities"], abs=1e-5)

    # The last pre-sale week in: once every state has folded it, a forecast reads no history.
    client.post("/v1/sales", json={"records": _records(presale[3], 210.0)})
    complete = _forecast(client)
    assert [i["presale_periods_seen"] for i in complete["items"]] == [4, 4, 4]
    reads: list[tuple[str, str]] = []
    original = StateStore.read_history_scalars

    async def counted(self: StateStore, region: str, name: str) -> dict[str, float]:
        reads.append((region, name))
        return await original(self, region, name)

    monkeypatch.setattr(StateStore, "read_history_scalars", counted)
    assert _forecast(client)["items"] == complete["items"]
    assert reads == []


def test_bad_input_is_422_or_404(client: Any) -> None:
    unknown = client.post("/v1/promotions", json={"type": "no-such-day", "date": "2013-11-29"})
    assert unknown.status_code == 422
    assert "type" in unknown.text
    empty = client.post("/v1/forecast/promotion-items", json={"promotion": PROMO, "items": []})
    assert empty.status_code == 422
    bad_act = client.post(
        "/v1/forecast/promotion-items",
        json={
            "promotion": PROMO,
            "items": [{"region": "R01", "category": "C01"}],
            "activity": [1.0] * 7,
        },
    )
    assert bad_act.status_code == 422 and "activity" in bad_act.text
    bop = client.post(
        "/v1/forecast/buy-through-promotion",
        json={
            "promotion": PROMO,
            "pairs": [{"user": "u1", "region": "R01", "category": "C01", "user_features": [1.0]}],
        },
    )
    assert bop.status_code == 404  # this artifact has no trained BOP head
    unseen = _forecast(client, items=[{"region": "R99", "category": "C01"}])
    assert unseen["items"][0]["known_item"] is False
    assert unseen["items"][0]["presale_periods_seen"] == 0
