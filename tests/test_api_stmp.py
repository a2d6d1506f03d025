"""STMP serving: sales ingestion and festival forecasts on a real Valkey and real ONNX Runtime.

A tiny artifact is trained in the test (synthetic weekly sales, a few seconds). The first
tests drive the servable with its Redis history directly; the route tests go through the
real app with TestClient.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service.errors import InvalidInput, NotFound
from service.runtime.direct import DirectLoaded
from service.runtime.manifest import read_manifest
from service.servables.stmp import STMPServable, StoreSalesHistory
from service.state.store import StateStore
from tests.test_model_stmp import tiny_sales


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.jobs import stmp as job

    root = tmp_path_factory.mktemp("artifacts")
    args = argparse.Namespace(
        data=[],
        format="tiny",
        seed=0,
        artifacts=root,
        steps=20,
        tasks=2,
        context=4,
        query=4,
        view_steps=5,
        lr=3e-3,
        hidden=8,
        embed=16,
        psi_dim=4,
        eval_samples=50,
        holdout="year",
    )
    original = job.load_data
    job.load_data = lambda args: (tiny_sales(), "tiny")
    try:
        return job.train(args)
    finally:
        job.load_data = original


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _with_history(url: str, version: str, fn: Any) -> Any:
    store = await StateStore.connect(url)
    try:
        return await fn(StoreSalesHistory(store, version))
    finally:
        await store.close()


def test_forecast_next_festival_has_ordered_intervals(artifact: Path, clean_redis: str) -> None:
    loaded = DirectLoaded(artifact, threads=1)
    servable = STMPServable(seed=0)

    async def go(history: StoreSalesHistory) -> dict[str, Any]:
        return await servable.forecast(loaded, history, "s1", None, None, "thanksgiving", None)

    out = run(_with_history(clean_redis, loaded.version, go))
    assert {f["category"] for f in out["forecasts"]} == {"d0", "d1", "d2"}
    for f in out["forecasts"]:
        (period,) = f["periods"]
        assert period["day_type"] == "thanksgiving"
        lo95, lo80 = period["interval_95"]["lower"], period["interval_80"]["lower"]
        hi80, hi95 = period["interval_80"]["upper"], period["interval_95"]["upper"]
        assert lo95 <= lo80 <= hi80 <= hi95
        assert np.isfinite(period["mean"])


def test_ingest_moves_origin_and_refreshes_task(artifact: Path, clean_redis: str) -> None:
    loaded = DirectLoaded(artifact, threads=1)
    servable = STMPServable(seed=0)
    tb = servable.tables(loaded)
    end = tb.date_of(tb.history_end_step)
    new_dates = [(end + dt.timedelta(days=7 * i)).isoformat() for i in (1, 2, 3)]

    async def go(history: StoreSalesHistory) -> tuple[Any, ...]:
        await history.append("s0", {"d0": dict.fromkeys(new_dates, 150.0)}, {})
        refreshed = await servable.refresh_region(loaded, history, "s0")
        task = await history.get_task("s0")
        out = await servable.forecast(
            loaded,
            history,
            "s0",
            end + dt.timedelta(days=1),
            end + dt.timedelta(days=35),
            None,
            ["d0"],
        )
        # Bounded history: a tiny limit keeps only the newest periods.
        small = StoreSalesHistory(history.store, history.version, limit=2)
        await small.append("s9", {"d0": dict.fromkeys(new_dates, 1.0)}, {})
        kept = await small.sales_history("s9", ["d0"])
        return refreshed, task, out, kept

    refreshed, task, out, kept = run(_with_history(clean_redis, loaded.version, go))
    assert refreshed and task is not None and task[0].shape == (16,)
    assert out["history_end"] == dt.date.fromisoformat(new_dates[-1])
    dates = [p["date"] for p in out["forecasts"][0]["periods"]]
    assert dates and dates[0] == dt.date.fromisoformat(new_dates[-1]) + dt.timedelta(days=7)
    assert sorted(kept["d0"]) == new_dates[1:]


class CountedHistory(StoreSalesHistory):
    """Counts the history reads of one replica."""

    reads = 0

    async def sales_history(self, region: str, categories: Any) -> dict[str, dict[str, float]]:
        self.reads += 1
        return await super().sales_history(region, categories)


def test_kept_states_follow_every_replicas_ingest(artifact: Path, clean_redis: str) -> None:
    """Replica A keeps a region's states per history revision: a repeated forecast reads no
    history, and a state it is handed can be changed without changing what it keeps; an
    ingest through replica B is seen by A's next forecast."""
    servable = STMPServable(seed=0)
    replica_a, replica_b = DirectLoaded(artifact, threads=1), DirectLoaded(artifact, threads=1)
    tb = servable.tables(replica_a)
    end = tb.date_of(tb.history_end_step)
    week = dt.timedelta(days=7)

    async def forecast(history: StoreSalesHistory) -> dict[str, Any]:
        return await servable.forecast(
            replica_a, history, "s0", end + week, end + 10 * week, None, ["d0"]
        )

    async def go() -> tuple[list[Any], list[int]]:
        a_store, b_store = (
            await StateStore.connect(clean_redis),
            await StateStore.connect(clean_redis),
        )
        try:
            a = CountedHistory(a_store, replica_a.version)
            b = StoreSalesHistory(b_store, replica_b.version)
            await b.append("s0", {"d0": {(end + week).isoformat(): 100.0}}, {})
            ends, reads = [], []
            for ingest in (None, None, end + 2 * week):
                if ingest is not None:
                    await b.append("s0", {"d0": {ingest.isoformat(): 120.0}}, {})
                out = await forecast(a)
                ends.append(out["history_end"])
                reads.append(a.reads)
            ids = servable.resolve_categories(tb, "s0", ["d0"])
            (state,), _ = await servable.region_states(replica_a, tb, a, "s0", ids)
            state.put(state.last + 1, np.ones(tb.history.shape[2], np.float32))
            (again,), _ = await servable.region_states(replica_a, tb, a, "s0", ids)
            assert again.newest == again.last and not again.known[again.last + 1]
            return ends, reads
        finally:
            await a_store.close()
            await b_store.close()

    ends, reads = run(go())
    assert ends == [end + week, end + week, end + 2 * week]
    assert reads == [1, 1, 2]


def test_bad_requests_raise_core_errors(artifact: Path, clean_redis: str) -> None:
    loaded = DirectLoaded(artifact, threads=1)
    servable = STMPServable(seed=0)
    tb = servable.tables(loaded)

    async def go(history: StoreSalesHistory) -> None:
        with pytest.raises(NotFound):
            await servable.forecast(loaded, history, "nowhere", None, None, "thanksgiving", None)
        with pytest.raises(InvalidInput) as err:
            await servable.forecast(loaded, history, "s0", None, None, "diwali", None)
        assert err.value.field == "day_type"
        with pytest.raises(InvalidInput) as err:
            await servable.forecast(loaded, history, "s0", None, None, "thanksgiving", ["zz"])
        assert err.value.field == "categories.0"
        with pytest.raises(InvalidInput) as err:
            await servable.forecast(loaded, history, "s0", tb.calendar_start, None, None, None)
        assert err.value.field == "end"

    run(_with_history(clean_redis, loaded.version, go))
    assert servable.check_record(tb, tb.calendar_start + dt.timedelta(days=1)) is not None
    assert servable.check_record(tb, tb.calendar_start) is None


# ---- routes through the real app ----------------------------------------------------------------
@pytest.fixture
def client(artifact: Path, clean_redis: str) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from service.api.main import create_app

    app = create_app(artifacts_dir=artifact.parent.parent, redis_url=clean_redis, poll_interval_s=0)
    with TestClient(app) as c:
        yield c


def test_routes_ingest_then_forecast(client: Any, artifact: Path) -> None:
    manifest = read_manifest(artifact)
    end = dt.date.fromisoformat(manifest.config["history_end"][:10])
    week = dt.timedelta(days=7)
    records = [
        {
            "region": "s2",
            "category": "d1",
            "date": (end + k * week).isoformat(),
            "sales": 900.0,
            "external": {"temp": 55.0},
        }
        for k in (1, 2)
    ]
    records.append(
        {
            "region": "s2",
            "category": "d1",
            "date": (end + week + dt.timedelta(days=2)).isoformat(),
            "sales": 1.0,
        }
    )
    r = client.post("/v1/sales", json={"records": records})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accepted"] == 2 and body["refreshed"] == ["s2"]
    assert body["rejected"][0]["field"] == "records.2.date"

    r = client.post("/v1/forecast/festival", json={"region": "s2", "day_type": "thanksgiving"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["history_end"] == (end + 2 * week).isoformat()
    assert out["frequency"] == "W" and len(out["forecasts"]) == 3
    period = out["forecasts"][0]["periods"][0]
    assert period["day_type"] == "thanksgiving"
    i80, i95 = period["interval_80"], period["interval_95"]
    assert i95["lower"] <= i80["lower"] <= i80["upper"] <= i95["upper"]

    r = client.post(
        "/v1/forecast/festival",
        json={
            "region": "s2",
            "start": (end + 3 * week).isoformat(),
            "end": (end + 5 * week).isoformat(),
            "categories": ["d1"],
        },
    )
    assert r.status_code == 200, r.text
    dates = [p["date"] for p in r.json()["forecasts"][0]["periods"]]
    assert dates == [(end + k * week).isoformat() for k in (3, 4, 5)]


def test_routes_bad_input(client: Any) -> None:
    assert client.post("/v1/forecast/festival", json={"region": "s0"}).status_code == 422
    r = client.post("/v1/forecast/festival", json={"region": "s0", "day_type": "diwali"})
    assert r.status_code == 422 and "day_type" in r.text
    r = client.post("/v1/forecast/festival", json={"region": "zz", "day_type": "thanksgiving"})
    assert r.status_code == 404
    r = client.post(
        "/v1/sales",
        json={"records": [{"region": "s0", "category": "d0", "date": "2012-01-06", "sales": "x"}]},
    )
    assert r.status_code == 422
    assert client.post("/v1/sales", json={"records": []}).status_code == 422
