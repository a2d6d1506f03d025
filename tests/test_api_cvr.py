"""CVR serving: servable on a real artifact and real ONNX Runtime; routes through the app.

A tiny MetaCVR artifact is trained in the test on a small synthetic promotion log (seconds).
The servable tests drive `CvrServable` over plain ORT sessions (the registry's batching is
not under test here); the route tests go through the real app with TestClient and the
embedded Valkey (skipped while the app is absent).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from service.errors import InvalidInput, NotReady
from service.occasions import OCCASIONS, OccasionCalendar
from service.runtime.direct import DirectLoaded
from service.servables.cvr import CvrServable, PairInput, SeqEvent, histories_of
from service.servables.cvr_features import FIELD_INDEX, FIELDS, Histories
from training.features.cvr import Vocab, build_samples, promo_click_log

EVENTS, CALENDAR = promo_click_log(seed=3, n_users=20, n_items=25, days=30)


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.jobs import cvr as job

    root = tmp_path_factory.mktemp("artifacts")
    parser = argparse.ArgumentParser()
    job.add_arguments(parser)
    args = parser.parse_args(
        ["--d-model", "16", "--heads", "2", "--epochs", "1", "--stage2-epochs", "1",
         "--seq-len", "8"]
    )  # fmt: skip
    args.data, args.format, args.seed, args.artifacts = [], "synthetic", 0, root
    original = job.load_data
    job.load_data = lambda args: (EVENTS, "0" * 64, CALENDAR)
    try:
        return job.train(args)
    finally:
        job.load_data = original


class DictSequences:
    """A sequence source over a dict (stands for the Redis-backed one in servable tests)."""

    def __init__(self, seqs: dict[str, list[SeqEvent]]) -> None:
        self.seqs = seqs
        self.asked: list[str] = []

    async def histories(self, user_ids: Sequence[str]) -> Histories:
        self.asked += list(user_ids)
        return histories_of([self.seqs.get(u, []) for u in user_ids])


def _history(user: str, before: int) -> list[SeqEvent]:
    rows = EVENTS[(EVENTS["user_id"] == user) & (EVENTS["ts"] < before)]
    return [
        SeqEvent(str(r.item_id), str(r.category_id), str(r.action), int(r.ts))
        for r in rows.itertuples()
    ]


def test_serving_features_match_training(artifact: Path) -> None:
    """User, interaction, context fields and the sequence are computed as in training."""
    loaded = DirectLoaded(artifact, threads=1)
    servable = CvrServable()
    cfg = servable.config(loaded)
    vocab = Vocab.from_lists(loaded.manifest.vocabularies)
    samples = build_samples(EVENTS, CALENDAR, vocab, cfg.spec)
    clicks = EVENTS[EVENTS["action"] == "browse"]
    clicks = clicks.assign(_day=clicks["ts"] // 86400).drop_duplicates(
        subset=["user_id", "item_id", "_day"], keep="first"
    )
    pairs, seqs, rows = [], [], []
    for r in clicks.tail(12).itertuples():
        match = (
            (samples.ts == r.ts)
            & (samples.fields[:, 0] == vocab.users.get(r.user_id, 0))
            & (samples.fields[:, 1] == vocab.items.get(r.item_id, 0))
        )
        rows.append(int(np.flatnonzero(match)[0]))
        pairs.append(PairInput(r.user_id, r.item_id, r.category_id, ts=int(r.ts)))
        seqs.append(_history(r.user_id, int(r.ts)))
    inputs, used = servable.features(cfg, pairs, seqs, at=0)
    same = [i for i, f in enumerate(FIELDS) if not f.startswith("i_")]
    np.testing.assert_array_equal(inputs["fields"][:, same], samples.fields[rows][:, same])
    np.testing.assert_array_equal(inputs["seq_items"], samples.seq_items[rows])
    np.testing.assert_array_equal(inputs["seq_actions"], samples.seq_actions[rows])
    assert all(src == "calendar" for _, src, _ in used)


def test_score_carried_and_stored_sequences(artifact: Path) -> None:
    loaded = DirectLoaded(artifact, threads=1)
    servable = CvrServable()
    at = int(EVENTS["ts"].max()) + 60
    store = DictSequences({"u1": _history("u1", at)})
    pairs = [
        PairInput("u1", "i3"),  # sequence from the store
        PairInput("u2", "i4", sequence=_history("u2", at)),  # carried
        PairInput("ghost", "never-seen", occasion="DP"),  # unknown user and item
    ]
    got_at, res = asyncio.run(servable.score(loaded, pairs, store, at))
    assert got_at == at and len(res) == 3
    assert store.asked == ["ghost", "u1"]
    expected = OCCASIONS[int(CALENDAR.occasion_ids([at])[0])]
    assert res[0]["occasion"] == expected and res[0]["occasion_source"] == "calendar"
    assert res[2]["occasion"] == "DP" and res[2]["occasion_source"] == "request"
    assert res[0]["history_events"] > 0 and res[2]["history_events"] == 0
    assert all(0.0 < r["cvr"] < 1.0 and 0.0 < r["base_cvr"] < 1.0 for r in res)


def test_concurrent_calls_share_waves_and_answer_as_alone(artifact: Path) -> None:
    """Stored pairs of concurrent calls join waves (one read for their users), each call's
    answer equal to what it gets alone, each pair at its own click time."""
    loaded = DirectLoaded(artifact, threads=1)
    servable = CvrServable()
    at = int(EVENTS["ts"].max()) + 60
    store = DictSequences({u: _history(u, at) for u in ("u1", "u2", "u3")})
    calls = [
        [PairInput("u1", "i3"), PairInput(f"u{k % 3 + 1}", "i4", ts=at - 86_400 * k)]
        for k in range(8)
    ] + [[PairInput("u2", "i4", sequence=_history("u2", at)), PairInput("u3", "i1")]]

    async def go() -> tuple[list[Any], list[Any], int]:
        alone = [await servable.score(loaded, c, store, at) for c in calls]
        reads = len(store.asked)
        joined = await asyncio.gather(*(servable.score(loaded, c, store, at) for c in calls))
        return alone, list(joined), len(store.asked) - reads

    alone, joined, read = asyncio.run(go())
    assert read < reads_alone(calls)  # joined waves read each of their users once
    for (at_j, got), (at_a, want) in zip(joined, alone, strict=True):
        assert at_j == at_a
        for g, w in zip(got, want, strict=True):  # rows of another batch: float32 rounding
            assert {k: v for k, v in g.items() if "cvr" not in k} == {
                k: v for k, v in w.items() if "cvr" not in k
            }
            assert g["cvr"] == pytest.approx(w["cvr"], rel=1e-5, abs=1e-6)
            assert g["base_cvr"] == pytest.approx(w["base_cvr"], rel=1e-5, abs=1e-6)
    # u2 clicked 1, 4 and 7 days before `at`: each pair saw only the events before its click
    assert alone[1][1][1]["history_events"] > alone[7][1][1]["history_events"]


def reads_alone(calls: list[list[PairInput]]) -> int:
    """Sequences read when each call runs alone: its distinct stored users."""
    return sum(len({p.user_id for p in c if p.sequence is None}) for c in calls)


def test_occasion_changes_with_calendar_and_request(artifact: Path) -> None:
    loaded = DirectLoaded(artifact, threads=1)
    servable = CvrServable()
    promo = CALENDAR.promotions[0].start
    ts_dp = int(pd.Timestamp(promo).timestamp()) + 3600
    seq = _history("u1", ts_dp)
    base = PairInput("u1", "i3", ts=ts_dp, sequence=seq)
    _, res = asyncio.run(servable.score(loaded, [base], None, ts_dp))
    assert res[0]["occasion"] == "DP"
    fields = {
        occ: servable.features(
            servable.config(loaded),
            [PairInput("u1", "i3", ts=ts_dp, occasion=occ, sequence=seq)],
            [seq],
            ts_dp,
        )[0]["fields"][0, FIELD_INDEX["occasion"]]
        for occ in OCCASIONS
    }
    assert [int(v) for v in fields.values()] == [0, 1, 2, 3]
    assert isinstance(
        OccasionCalendar.from_dict(loaded.manifest.config["calendar"]), OccasionCalendar
    )


def test_bad_input_and_missing_store(artifact: Path) -> None:
    loaded = DirectLoaded(artifact, threads=1)
    servable = CvrServable()
    with pytest.raises(InvalidInput) as err:
        asyncio.run(
            servable.score(loaded, [PairInput("u1", "i1", occasion="XMAS", sequence=[])], None)
        )
    assert err.value.field == "pairs.0.occasion"
    with pytest.raises(InvalidInput):
        asyncio.run(servable.score(loaded, [], None))
    with pytest.raises(NotReady):
        asyncio.run(servable.score(loaded, [PairInput("u1", "i1")], None))


# ---- routes through the real app ------------------------------------------------------------
APP_READY = importlib.util.find_spec("service.api.main") is not None


@pytest.fixture(scope="module")
def client(artifact: Path) -> Any:
    if not APP_READY:
        pytest.skip("service.api.main is not written yet")
    from fastapi.testclient import TestClient

    from service.api.main import create_app

    app = create_app(artifacts_dir=artifact.parent.parent)
    with TestClient(app) as c:
        yield c


def test_route_scores_pairs(client: Any) -> None:
    at = int(EVENTS["ts"].max()) + 60
    seq = [
        {"item_id": e.item_id, "category_id": e.category_id, "action": e.action, "ts": e.ts}
        for e in _history("u1", at)[-30:]
    ]
    body = {
        "pairs": [
            {"user_id": "u1", "item_id": "i3", "sequence": seq},
            {"user_id": "u2", "item_id": "i4", "sequence": [], "occasion": "BP"},
        ],
        "at": at,
    }
    if "/v1/score/cvr" not in client.app.openapi()["paths"]:
        pytest.skip("the cvr router is not mounted yet")
    r = client.post("/v1/score/cvr", json=body)
    assert r.status_code == 200, r.text
    scores = r.json()["scores"]
    assert [s["occasion_source"] for s in scores] == ["calendar", "request"]
    assert scores[1]["occasion"] == "BP"
    bad = client.post(
        "/v1/score/cvr", json={"pairs": [{"user_id": "u1", "item_id": "i1", "occasion": "X"}]}
    )
    assert bad.status_code == 422


@pytest.fixture(scope="module")
def redis_client(artifact: Path, redis_url: str) -> Any:
    if not APP_READY:
        pytest.skip("service.api.main is not written yet")
    from fastapi.testclient import TestClient

    from service.api.main import create_app

    app = create_app(artifacts_dir=artifact.parent.parent, redis_url=redis_url)
    with TestClient(app) as c:
        paths = app.openapi()["paths"]
        if "/v1/score/cvr" not in paths or "/v1/events" not in paths:
            pytest.skip("the cvr or events router is not mounted yet")
        yield c


def test_route_reads_sequence_kept_by_events_pipeline(redis_client: Any) -> None:
    """Events posted to /v1/events become the behaviour sequence /v1/score/cvr reads."""
    at = int(EVENTS["ts"].max()) + 60
    history = _history("u5", at)[-15:]
    events = [
        {
            "event_id": f"cvr-test-{k}",
            "user_id": "cvr-u5",
            "item_id": e.item_id,
            "category_id": e.category_id,
            "action": e.action,
            "timestamp": e.ts,
        }
        for k, e in enumerate(history)
    ]
    r = redis_client.post("/v1/events", json={"events": events})
    assert r.status_code == 200, r.text
    assert r.json()["applied"] == len(events)
    body = {"pairs": [{"user_id": "cvr-u5", "item_id": history[-1].item_id}], "at": at}
    r = redis_client.post("/v1/score/cvr", json=body)
    assert r.status_code == 200, r.text
    score = r.json()["scores"][0]
    assert score["history_events"] == len(history)
    # The same events carried in the request give the same score (stateless == stateful).
    carried = {
        "pairs": [
            {
                "user_id": "cvr-u5",
                "item_id": history[-1].item_id,
                "sequence": [
                    {"item_id": e.item_id, "category_id": e.category_id, "action": e.action,
                     "ts": e.ts}
                    for e in history
                ],
            }
        ],
        "at": at,
    }  # fmt: skip
    r2 = redis_client.post("/v1/score/cvr", json=carried)
    assert r2.status_code == 200, r2.text
    assert r2.json()["scores"][0]["cvr"] == pytest.approx(score["cvr"], abs=1e-6)
