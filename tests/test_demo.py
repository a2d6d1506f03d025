"""The `make serve` path end to end: demo artifacts trained from nothing, then every route.

`salecast serve --demo` calls `training.demo.ensure_demo_models` when `artifacts/` is empty
and serves what it wrote. Every other API test trains its own tiny artifact with test-only
settings, so nothing else checks that the *demo* artifacts (each job's `train_demo`) load,
warm up and answer. Here the demo models are trained once into a temporary folder, the real
app is started on them with the session's embedded Valkey, and one realistic request goes to
each served route. Ids, regions, categories and day types come from the artifacts' manifests
(or the synthetic generator that made them), never hard-coded, so a change of the demo data
does not silently turn these into requests for unknown ids.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from service.runtime.manifest import Manifest, read_manifest
from service.state.embedded import EmbeddedRedis
from tests.conftest import flushed
from training.demo import ensure_demo_models
from training.demo_traffic import PromotionScenario, promotion_scenario, sales_records
from training.jobs import JOBS

torch.set_num_threads(1)

# Events are sent at the wall clock (as a client of `make serve` would): the store's count
# buckets expire relative to it, and intent scores read them.
NOW = int(time.time()) // 3600 * 3600
EVENTS_PER_USER = 4


# ---- fixtures -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def manifests(demo: tuple[Path, list[Path]]) -> dict[str, Manifest]:
    return {path.parent.name: read_manifest(path) for path in demo[1]}


@pytest.fixture(scope="module")
def demo_redis(embedded_redis: EmbeddedRedis) -> str:
    """The session's Valkey, flushed once: the module's requests build on each other."""
    return flushed(embedded_redis)


@pytest.fixture(scope="module")
def client(demo: tuple[Path, list[Path]], demo_redis: str) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from service.api.main import create_app

    app = create_app(artifacts_dir=demo[0], redis_url=demo_redis, poll_interval_s=0)
    with TestClient(app) as c:
        yield c


# ---- helpers --------------------------------------------------------------------------------
def _ok(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, (
        f"{response.request.method} {response.request.url} -> {response.status_code}: "
        f"{response.text}"
    )
    return dict(response.json())


def _finite(*values: Any) -> bool:
    return all(isinstance(v, int | float) and math.isfinite(v) for v in values)


def _prob(*values: Any) -> bool:
    return _finite(*values) and all(0.0 <= v <= 1.0 for v in values)


def _ordered(period: dict[str, Any]) -> None:
    i80, i95, mean = period["interval_80"], period["interval_95"], period["mean"]
    assert _finite(i95["lower"], i80["lower"], mean, i80["upper"], i95["upper"]), period
    assert i95["lower"] <= i80["lower"] <= mean <= i80["upper"] <= i95["upper"], period


def _date(value: str) -> dt.date:
    return dt.date.fromisoformat(value[:10])


def _vocab(manifest: Manifest, key: str, n: int) -> list[str]:
    """The first `n` real entries of a vocabulary (index 0 is padding in some models)."""
    values = [v for v in manifest.vocabularies[key] if v]
    assert len(values) >= n, (manifest.model, key, values)
    return values[:n]


def _event_users(manifests: dict[str, Manifest]) -> list[str]:
    return _vocab(manifests["imn"], "users", 3)


def _events(manifests: dict[str, Manifest]) -> list[dict[str, Any]]:
    """A short browse -> collect -> cart -> purchase session for three known users."""
    items = _vocab(manifests["imn"], "items", 12)
    actions = ["browse", "collect", "cart", "purchase"]
    out = []
    for u, user in enumerate(_event_users(manifests)):
        for k in range(EVENTS_PER_USER):
            out.append(
                {
                    "event_id": f"demo-{user}-{k}",
                    "user_id": user,
                    "item_id": items[(4 * u + k) % len(items)],
                    "action": actions[k % len(actions)],
                    "timestamp": NOW - 3600 + 60 * (k + 1),
                }
            )
    return out


@pytest.fixture(scope="module")
def posted(client: Any, manifests: dict[str, Manifest]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The events posted once, then the same batch again (a client retry)."""
    events = _events(manifests)
    first = _ok(client.post("/v1/events", json={"events": events}))
    again = _ok(client.post("/v1/events", json={"events": events}))
    return first, again


# ---- promotion and sales scenario (STMP + DINOP share /v1/sales) ---------------------------
@pytest.fixture(scope="module")
def scenario(manifests: dict[str, Manifest]) -> dict[str, Any]:
    """The next promotion after the demo data both STMP and DINOP know, and the items to use
    (`training.demo_traffic`, the same scenario `bench/http_load.py` measures)."""
    from dataclasses import asdict

    return asdict(promotion_scenario(manifests["stmp"], manifests["dinop"]))


def _sales_records(scenario: dict[str, Any]) -> list[dict[str, Any]]:
    """Synthetic sales continuing the demo's series to the week before the promotion."""
    return sales_records(PromotionScenario(**scenario))


@pytest.fixture(scope="module")
def ingested(client: Any, scenario: dict[str, Any]) -> dict[str, Any]:
    """Register the promotion, then send the history and the pre-sale weeks one by one."""
    reg = _ok(client.post("/v1/promotions", json=scenario["promotion"]))
    presale = [_date(d) for d in reg["presale_periods"]]
    assert len(presale) == scenario["presale"] and len(reg["static_periods"]) == scenario["static"]
    assert presale[-1] == scenario["date"] - scenario["step"]
    records = _sales_records(scenario)
    before = [r for r in records if _date(r["date"]) < presale[0]]
    batches = [before] + [[r for r in records if _date(r["date"]) == d] for d in presale]
    answers = []
    for batch in batches:
        body = _ok(client.post("/v1/sales", json={"records": batch}))
        assert body["accepted"] == len(batch) and body["rejected"] == [], body
        answers.append(body)
    regions = sorted({r for r, _ in scenario["items"]})
    assert sorted(answers[0]["regions"]) == regions
    return {"register": reg, "answers": answers, "records": records}


# ---- 1. demo artifacts ----------------------------------------------------------------------
def test_one_valid_artifact_per_job(demo: tuple[Path, list[Path]]) -> None:
    root, made = demo
    assert len(made) == len(JOBS)
    assert sorted(p.parent.name for p in made) == sorted(JOBS)
    for path in made:
        assert path.parent.parent == root
        versions = [p for p in path.parent.iterdir() if not p.name.startswith(".")]
        assert versions == [path]
        manifest = read_manifest(path)  # schema, version == folder, every file's sha256
        assert manifest.model == path.parent.name and manifest.graphs
        assert json.loads((path / "manifest.json").read_text())["version"] == path.name


def test_second_call_trains_nothing(demo: tuple[Path, list[Path]]) -> None:
    assert ensure_demo_models(demo[0], seed=0) == []


# ---- 2. the app on the demo artifacts -------------------------------------------------------
def test_every_model_loaded_warm_and_ready(client: Any, demo: tuple[Path, list[Path]]) -> None:
    body = _ok(client.get("/v1/models"))
    served = {m["name"]: m for m in body["models"]}
    assert sorted(served) == sorted(JOBS)
    assert body["refused"] == {} or all(not v for v in body["refused"].values()), body["refused"]
    for path in demo[1]:
        info = served[path.parent.name]
        assert info["version"] == path.name and info["warm"], info
        assert all(g["warm"] for g in info["graphs"].values()), info["graphs"]
    ready = _ok(client.get("/health/ready"))
    assert ready["ready"] is True
    assert _ok(client.get("/health/live"))["status"] == "live"
    one = _ok(client.get("/v1/models/intent"))
    assert one["name"] == "intent"
    assert client.get("/metrics").status_code == 200


def test_imn_updater_is_registered(client: Any) -> None:
    assert "imn" in {u.model for u in client.app.state.updaters}


# ---- 3. one realistic request per route -----------------------------------------------------
def test_events_applied_then_duplicates(
    posted: tuple[dict[str, Any], dict[str, Any]], manifests: dict[str, Manifest]
) -> None:
    first, again = posted
    n = len(_events(manifests))
    assert first["applied"] == n and first["duplicate"] == 0 and first["rejected"] == 0, first
    assert "imn" in first["models"]
    assert [r["status"] for r in first["results"]] == ["applied"] * n
    assert again["duplicate"] == n and again["applied"] == 0 and again["rejected"] == 0, again


def test_recommendations(client: Any, posted: Any, manifests: dict[str, Manifest]) -> None:
    user = _event_users(manifests)[0]
    known = set(manifests["imn"].vocabularies["items"]) - {""}
    body = _ok(client.get(f"/v1/recommendations/{user}", params={"k": 10, "at": NOW}))
    assert body["user_id"] == user and body["fallback"] is False, body
    assert len(body["items"]) == 10 and body["k"] == 10
    scores = [it["score"] for it in body["items"]]
    assert _finite(*scores) and scores == sorted(scores, reverse=True)
    assert {it["item_id"] for it in body["items"]} <= known
    assert len({it["item_id"] for it in body["items"]}) == 10

    cold = _ok(client.get("/v1/recommendations/demo-nobody", params={"k": 5}))
    assert cold["fallback"] is True and cold["fallback_reason"] and len(cold["items"]) == 5
    assert {it["item_id"] for it in cold["items"]} <= known


def _check_intent(score: dict[str, Any]) -> None:
    assert _prob(score["p_browse"], score["p_collect"], score["p_cart"], score["p_purchase"])
    assert _finite(score["order_volume"]) and score["order_volume"] >= 0, score


def test_score_intent(client: Any, posted: Any, manifests: dict[str, Manifest]) -> None:
    users = _event_users(manifests)
    stateless = {
        "user_id": "demo-stateless",
        "events": [
            {"action": a, "ts": NOW - 7200 + 300 * k}
            for k, a in enumerate(["browse", "browse", "cart", "purchase"])
        ],
    }
    body = _ok(client.post("/v1/score/intent", json={"users": [*users, stateless, "demo-ghost"]}))
    assert body["label_window_seconds"] > 0 and body["at"] >= NOW
    scores = {s["user_id"]: s for s in body["scores"]}
    assert list(scores) == [*users, "demo-stateless", "demo-ghost"]
    for user in users:
        assert scores[user]["source"] == "state" and not scores[user]["cold_start"], scores[user]
    assert scores["demo-stateless"]["source"] == "request"
    assert not scores["demo-stateless"]["cold_start"]
    assert scores["demo-ghost"]["source"] == "prior" and scores["demo-ghost"]["cold_start"]
    for score in scores.values():
        _check_intent(score)


def test_coupons_allocate(client: Any, posted: Any, manifests: dict[str, Manifest]) -> None:
    users = _event_users(manifests)
    candidates: list[Any] = [*users, "demo-ghost"]
    for strategy, budget in (("budget", 2.0), ("threshold", 10.0)):
        body = _ok(
            client.post(
                "/v1/coupons/allocate",
                json={
                    "candidates": candidates,
                    "budget": budget,
                    "coupon": {"value": 5.0, "cost": 1.0},
                    "strategy": strategy,
                },
            )
        )
        assert body["strategy"] == strategy and body["budget"] == budget
        assert _finite(body["spent"], body["expected_value"]) and body["spent"] <= budget
        assert [c["user_id"] for c in body["cold_start"]] == ["demo-ghost"]
        assert len(body["chosen"]) + body["not_chosen"] == len(users)
        assert body["spent"] == pytest.approx(sum(c["cost"] for c in body["chosen"]))
        for c in body["chosen"]:
            assert c["user_id"] in users and _prob(c["p_purchase"])
            assert _finite(c["order_volume"], c["expected_value"]) and c["cost"] == 1.0
        if strategy == "threshold":
            assert body["threshold"] is not None and _prob(body["threshold"])
            assert all(c["p_purchase"] >= body["threshold"] for c in body["chosen"])


def test_score_cvr(client: Any, posted: Any, manifests: dict[str, Manifest]) -> None:
    cvr = manifests["cvr"]
    users = _vocab(cvr, "user", 2)
    items = _vocab(cvr, "item", 4)
    cats = _vocab(cvr, "category", 1)
    promo = _date(cvr.config["calendar"]["promotions"][0]["start"])
    click = int(dt.datetime(promo.year, promo.month, promo.day, 12, tzinfo=dt.UTC).timestamp())
    sequence = [
        {"item_id": items[2], "category_id": cats[0], "action": "browse", "ts": click - 3600},
        {"item_id": items[3], "category_id": cats[0], "action": "cart", "ts": click - 600},
        {"item_id": items[3], "category_id": cats[0], "action": "purchase", "ts": click + 60},
    ]
    pairs = [
        {"user_id": users[0], "item_id": items[0], "sequence": sequence},
        {"user_id": users[1], "item_id": items[1], "occasion": "BP", "sequence": []},
    ]
    body = _ok(client.post("/v1/score/cvr", json={"pairs": pairs, "at": click}))
    assert body["at"] == click and len(body["scores"]) == 2
    a, b = body["scores"]
    assert (a["occasion"], a["occasion_source"], a["history_events"]) == ("DP", "calendar", 2)
    assert (b["occasion"], b["occasion_source"], b["history_events"]) == ("BP", "request", 0)
    for s in body["scores"]:
        assert _prob(s["cvr"], s["base_cvr"]), s

    # A user whose behaviour came in through /v1/events: the sequence is read from Redis.
    imn_user = _event_users(manifests)[0]
    body = _ok(
        client.post("/v1/score/cvr", json={"pairs": [{"user_id": imn_user, "item_id": items[0]}]})
    )
    (s,) = body["scores"]
    assert s["history_events"] == EVENTS_PER_USER and s["occasion_source"] == "calendar"
    assert _prob(s["cvr"], s["base_cvr"]), s


def test_sales_and_festival_forecast(
    client: Any,
    scenario: dict[str, Any],
    ingested: dict[str, Any],
    manifests: dict[str, Manifest],
) -> None:
    region = scenario["items"][0][0]
    categories = sorted({c for r, c in scenario["items"] if r == region})
    last = scenario["date"] - scenario["step"]
    assert all(region in a["refreshed"] for a in ingested["answers"]), ingested["answers"]
    day_type = scenario["promotion"]["type"]
    body = _ok(
        client.post(
            "/v1/forecast/festival",
            json={"region": region, "day_type": day_type, "categories": categories},
        )
    )
    assert body["region"] == region and body["frequency"] == "W" and body["samples"] > 0
    assert _date(body["history_end"]) == last
    assert [f["category"] for f in body["forecasts"]] == categories
    for f in body["forecasts"]:
        (period,) = f["periods"]
        assert _date(period["date"]) == scenario["date"] and period["day_type"] == day_type
        _ordered(period)
        assert period["mean"] > 0

    start, end = scenario["date"], scenario["date"] + 2 * scenario["step"]
    body = _ok(
        client.post(
            "/v1/forecast/festival",
            json={"region": region, "start": start.isoformat(), "end": end.isoformat()},
        )
    )
    all_categories = sorted(manifests["stmp"].vocabularies["category"])
    assert sorted(f["category"] for f in body["forecasts"]) == all_categories
    for f in body["forecasts"]:
        assert [_date(p["date"]) for p in f["periods"]] == [
            start + k * scenario["step"] for k in range(3)
        ]
        for period in f["periods"]:
            _ordered(period)


def test_promotion_items(
    client: Any,
    scenario: dict[str, Any],
    ingested: dict[str, Any],
    manifests: dict[str, Manifest],
) -> None:
    promo = scenario["promotion"]
    assert _ok(client.get("/v1/promotions"))["promotions"] == [promo]
    body = _ok(
        client.post(
            "/v1/forecast/promotion-items",
            json={
                "promotion": promo,
                "items": [{"region": r, "category": c} for r, c in scenario["items"]],
            },
        )
    )
    assert body["promotion"] == promo and len(body["items"]) == len(scenario["items"])
    for item, (r, c) in zip(body["items"], scenario["items"], strict=True):
        assert (item["region"], item["category"]) == (r, c) and item["known_item"]
        assert item["presale_periods_seen"] == scenario["presale"], item
        assert _finite(item["gmv"]) and item["gmv"] >= 0, item
        assert _prob(item["best_seller_probability"]), item
        slots = item["slot_probabilities"]
        assert len(slots) == 10 and _prob(*slots) and abs(sum(slots) - 1.0) < 1e-4
        assert 1 <= item["slot"] <= 10 and slots[item["slot"] - 1] == max(slots)
        ja = item["join_activity_probability"]
        assert ja is None or _prob(ja)

    # Buy-through-promotion: probabilities when the demo trained a BOP head, else 404.
    dinop = manifests["dinop"]
    user = next(t for t in dinop.graphs["bop"].inputs if t.name == "user")
    r, c = scenario["items"][0]
    pair = {
        "user": "demo-u",
        "region": r,
        "category": c,
        "user_features": [1.0] * int(str(user.shape[-1])),
    }
    bop = client.post(
        "/v1/forecast/buy-through-promotion", json={"promotion": promo, "pairs": [pair]}
    )
    if "bop" in dinop.config["tasks"]:
        assert all(_prob(s["probability"]) for s in _ok(bop)["scores"])
    else:
        assert bop.status_code == 404, bop.text
