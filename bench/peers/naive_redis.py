"""The peer a user writes by hand: FastAPI + pydantic + redis-py asyncio + one ORT call.

`bench.http_load` runs it as ``naive-fastapi-redis-ort``, on the same artifact and against the
same Redis that salecast was seeded through, so it reads the very state salecast reads:

* ``GET /v1/recommendations/{user_id}``: the user's IMN state (one ``HMGET``), the score
  graph's inputs built from it, one ``InferenceSession.run`` with the item table fed in, the
  top k as a pydantic response;
* ``POST /v1/score/intent`` / ``POST /v1/score/cvr``: each user's behaviour sequence (one
  redis-py pipeline per request), the same feature code salecast uses
  (`service.servables.intent_features`, `CvrServable.features`), one ORT call;
* ``POST /v1/events``: per event, read the user's and the item's state, one ``update`` call,
  write both back with ``HSET``: no compare-and-set, no idempotency key, no sequence or
  counts, so it does less than salecast per event.

Written the way the FastAPI tutorial shows: typed parameters, request and response models,
a module-level client with redis-py's defaults (its pool, its parser: hiredis when the
package is installed), the ORT call inline in the handler. Run:
``python -m bench.peers.naive_redis --artifacts DIR --redis URL --port 8102``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel
from redis.asyncio import Redis

from bench.peers.naive_ort import providers
from service.actions import ACTION_IDS, ACTIONS
from service.runtime.manifest import read_manifest
from service.servables.cvr import SERVABLE as CVR
from service.servables.cvr import CvrVersionConfig, PairInput, SeqEvent
from service.servables.intent import window_end
from service.servables.intent_features import FeatureSpec, build_features, counts_from_events
from service.state import keys
from service.state.store import SEP

ACTION_INDEX = {a: i for i, a in enumerate(ACTIONS)}


def newest(root: Path, model: str) -> Path | None:
    versions = sorted(p for p in (root / model).glob("*") if (p / "manifest.json").exists())
    return versions[-1] if versions else None


class Graphs:
    """One ORT session per graph of one artifact version, one intra-op thread each."""

    def __init__(self, path: Path, threads: int) -> None:
        self.path = path
        self.manifest = read_manifest(path)
        self.version = self.manifest.version
        self.state: dict[str, Any] = {}
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.sessions = {
            name: ort.InferenceSession(str(path / spec.file), opts, providers=providers())
            for name, spec in self.manifest.graphs.items()
        }

    def run(self, graph: str, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        sess = self.sessions[graph]
        names = [o.name for o in sess.get_outputs()]
        return dict(zip(names, sess.run(names, feed), strict=True))

    async def infer(
        self, graph: str, inputs: Mapping[str, np.ndarray], *, joined: bool = False
    ) -> dict[str, np.ndarray]:
        """`service.servables.loaded.Loaded`'s call: here simply one run, on the event loop."""
        return self.run(graph, dict(inputs))


class Item(BaseModel):
    item_id: str
    score: float


class Recommendations(BaseModel):
    user_id: str
    items: list[Item]


class IntentRequest(BaseModel):
    users: list[str]


class IntentScore(BaseModel):
    user_id: str
    p_browse: float
    p_collect: float
    p_cart: float
    p_purchase: float
    order_volume: float


class IntentResponse(BaseModel):
    scores: list[IntentScore]


class Pair(BaseModel):
    user_id: str
    item_id: str


class CvrRequest(BaseModel):
    pairs: list[Pair]


class CvrScore(BaseModel):
    user_id: str
    item_id: str
    cvr: float


class CvrResponse(BaseModel):
    scores: list[CvrScore]


class EventIn(BaseModel):
    event_id: str
    user_id: str
    item_id: str
    action: str
    timestamp: float


class EventsRequest(BaseModel):
    events: list[EventIn]


class EventsResponse(BaseModel):
    applied: int


def _sequence(rows: list[bytes]) -> list[tuple[float, str, str, str]]:
    """(ts, action, category, item) of each stored entry, as salecast writes them."""
    out = []
    for raw in rows:
        t, a, c, i = raw.decode().split(SEP, 4)[:4]
        out.append((float(t), a, c, i))
    return out


def create_app(artifacts: Path, redis_url: str, threads: int = 1) -> FastAPI:
    r = Redis.from_url(redis_url)
    graphs = {
        m: Graphs(p, threads) for m in ("imn", "intent", "cvr") if (p := newest(artifacts, m))
    }
    app = FastAPI(title="naive FastAPI + redis-py + ONNX Runtime peer")

    @app.get("/health/ready")
    async def ready() -> dict[str, Any]:
        await r.ping()
        return {"ready": True, "models": sorted(graphs)}

    if "imn" in graphs:
        imn = graphs["imn"]
        cfg = imn.manifest.config
        dim = int(cfg["embed_dim"])
        item_names = list(imn.manifest.vocabularies["items"])
        user_index = {u: k for k, u in enumerate(imn.manifest.vocabularies["users"]) if k}
        item_index = {i: k for k, i in enumerate(item_names) if k}
        table = np.load(imn.path / "item_table.npy").astype(np.float32)
        init_user = np.concatenate(
            [np.load(imn.path / "initial_user_state.npy").astype(np.float32), np.zeros(2, "f4")]
        )
        init_item = np.load(imn.path / "initial_item_state.npy").astype(np.float32)

        @app.get("/v1/recommendations/{user_id}", response_model=Recommendations)
        async def recommend(user_id: str, k: int = 20) -> Recommendations:
            v, ts, _ = await r.hmget(keys.state("imn", "user", user_id), "v", "ts", "eid")
            vec = init_user if v is None else np.frombuffer(cast(bytes, v), dtype=np.float32)
            dt_user = max(time.time() - float(ts), 0.0) if ts is not None else 0.0
            out = imn.run(
                "score",
                {
                    "user_state": vec[None, : 2 * dim],
                    "user_index": np.asarray([user_index.get(user_id, 0)]),
                    "last_item": np.asarray([int(vec[2 * dim])]),
                    "dt_user": np.asarray([dt_user], dtype=np.float32),
                    "dt_limited": np.asarray([dt_user + float(vec[2 * dim + 1])], "f4"),
                    "item_table": table,
                },
            )
            ids, scores = out["item_ids"][0][:k], out["scores"][0][:k]
            return Recommendations(
                user_id=user_id,
                items=[
                    Item(item_id=item_names[int(i)], score=float(s))
                    for i, s in zip(ids, scores, strict=True)
                ],
            )

        @app.post("/v1/events", response_model=EventsResponse)
        async def events(body: EventsRequest) -> EventsResponse:
            for e in body.events:
                uk, ik = keys.state("imn", "user", e.user_id), keys.state("imn", "item", e.item_id)
                u = await r.hmget(uk, "v", "ts")
                i = await r.hmget(ik, "v", "ts")
                user = (
                    init_user
                    if u[0] is None
                    else np.frombuffer(cast(bytes, u[0]), dtype=np.float32)
                )
                item = (
                    init_item
                    if i[0] is None
                    else np.frombuffer(cast(bytes, i[0]), dtype=np.float32)
                )
                dt_u = e.timestamp - float(u[1]) if u[1] is not None else 0.0
                dt_i = e.timestamp - float(i[1]) if i[1] is not None else 0.0
                features = np.zeros((1, len(ACTIONS)), dtype=np.float32)
                features[0, ACTION_INDEX.get(e.action, 0)] = 1.0
                out = imn.run(
                    "update",
                    {
                        "user_state": user[None, : 2 * dim],
                        "item_state": item[None],
                        "user_index": np.asarray([user_index.get(e.user_id, 0)]),
                        "item_index": np.asarray([item_index.get(e.item_id, 0)]),
                        "dt_user": np.asarray([max(dt_u, 0.0)], dtype=np.float32),
                        "dt_item": np.asarray([max(dt_i, 0.0)], dtype=np.float32),
                        "dt_purchase": np.asarray([max(dt_u, 0.0)], dtype=np.float32),
                        "features": features,
                        "is_purchase": features[:, 3].copy(),
                    },
                )
                new_user = np.concatenate([out["new_user_state"][0], user[2 * dim :]])
                await r.hset(uk, mapping={"v": new_user.tobytes(), "ts": e.timestamp})
                await r.hset(
                    ik, mapping={"v": out["new_item_state"][0].tobytes(), "ts": e.timestamp}
                )
            return EventsResponse(applied=len(body.events))

    if "intent" in graphs:
        intent = graphs["intent"]
        spec = FeatureSpec.from_dict(intent.manifest.config["features"])

        @app.post("/v1/score/intent", response_model=IntentResponse)
        async def score_intent(body: IntentRequest) -> IntentResponse:
            pipe = r.pipeline(transaction=False)
            for u in body.users:
                pipe.lrange(keys.sequence(u), 0, -1)
            rows = await pipe.execute()
            cut = window_end(int(time.time()), spec)
            u_idx, ts, act = [], [], []
            for n, row in enumerate(rows):
                for t, a, _, _ in _sequence(row):
                    if a in ACTION_INDEX:
                        u_idx.append(n)
                        ts.append(int(t))
                        act.append(ACTION_INDEX[a])
            counts = counts_from_events(
                np.asarray(u_idx, dtype=np.int64), np.asarray(ts, dtype=np.int64),
                np.asarray(act, dtype=np.int64), np.full(len(rows), cut, dtype=np.int64),
                len(rows), spec,
            )  # fmt: skip
            out = intent.run(
                "score", build_features(counts, np.full(len(rows), cut, dtype=np.int64), spec)
            )
            return IntentResponse(
                scores=[
                    IntentScore(
                        user_id=u,
                        **{
                            name: float(np.ravel(out[name])[n])
                            for name in ("p_browse", "p_collect", "p_cart", "p_purchase")
                        },
                        order_volume=float(np.ravel(out["order_volume"])[n]),
                    )
                    for n, u in enumerate(body.users)
                ]
            )

    if "cvr" in graphs:
        cvr = graphs["cvr"]
        cvr_cfg = CvrVersionConfig.from_loaded(cvr)

        @app.post("/v1/score/cvr", response_model=CvrResponse)
        async def score_cvr(body: CvrRequest) -> CvrResponse:
            pipe = r.pipeline(transaction=False)
            for p in body.pairs:
                pipe.lrange(keys.sequence(p.user_id), 0, -1)
            rows = await pipe.execute()
            seqs = [
                [SeqEvent(i, c, a, int(t)) for t, a, c, i in _sequence(row) if a in ACTION_IDS]
                for row in rows
            ]
            pairs = [PairInput(p.user_id, p.item_id) for p in body.pairs]
            inputs, _ = CVR.features(cvr_cfg, pairs, seqs, int(time.time()))
            try:
                out = cvr.run("score", inputs)
            except Exception as exc:
                raise HTTPException(422, f"inputs: {exc}") from exc
            return CvrResponse(
                scores=[
                    CvrScore(
                        user_id=p.user_id, item_id=p.item_id, cvr=float(np.ravel(out["cvr"])[n])
                    )
                    for n, p in enumerate(body.pairs)
                ]
            )

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--artifacts", type=Path, required=True)
    parser.add_argument("--redis", required=True, help="redis:// URL salecast was seeded on")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8102)
    parser.add_argument("--threads", type=int, default=1, help="ORT intra-op threads")
    args = parser.parse_args(argv)
    app = create_app(args.artifacts, args.redis, args.threads)
    uvicorn.run(
        app, host=args.host, port=args.port, workers=1, access_log=False, log_level="warning"
    )


if __name__ == "__main__":
    main()
