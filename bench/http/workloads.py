"""What each route is loaded with, for salecast and for each peer, from the same artifacts.

A `Workload` holds, for one route:

* `ours`: the requests sent to salecast (and, unchanged, to the ``naive-fastapi-redis-ort``
  peer where it has the route: same paths, same bodies, same Redis state);
* `graph_requests`: ``POST /v1/infer`` bodies for the peers that serve only the ONNX graph
  (``naive-fastapi-ort``, ``ray-serve``): the graph inputs salecast computes for the same
  users from the same seeded events where that can be done outside the service (intent, CVR,
  recommendations), inputs of the same shapes otherwise (events, forecasts);
* what those peers load once (`shared`) or draw per request (`normal`).

`prepare` seeds salecast the way a client would: users' events through ``POST /v1/events``;
for the forecast routes a promotion and the sales leading up to it (`training.demo_traffic`).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from bench.http.drive import EVENTS_MARK, SEED_ACTIONS, Request
from service.actions import ACTIONS
from service.runtime.manifest import read_manifest

DAY = 86_400
ROUTES = ("recommend", "intent", "cvr", "events", "forecast", "promotion-items")
ROUTE_MODEL = {
    "recommend": "imn",
    "intent": "intent",
    "cvr": "cvr",
    "events": "imn",
    "forecast": "stmp",
    "promotion-items": "dinop",
}
ROUTE_GRAPH = {
    "recommend": "score",
    "intent": "score",
    "cvr": "score",
    "events": "update",
    "forecast": "forecast",
    "promotion-items": "forecast",
}
NAIVE_REDIS_ROUTES = ("recommend", "intent", "cvr", "events")


def newest_version(artifacts: Path, model: str) -> Path:
    versions = sorted(
        p for p in (artifacts / model).glob("*") if p.is_dir() and not p.name.startswith(".")
    )
    if not versions:
        raise SystemExit(f"no {model} artifact under {artifacts}")
    return versions[-1]


def _json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _infer(inputs: dict[str, np.ndarray]) -> Request:
    return Request(
        "POST",
        "/v1/infer",
        _json({"inputs": {k: np.asarray(v).tolist() for k, v in inputs.items()}}),
    )


@dataclass
class Workload:
    route: str
    model: str
    graph: str
    version: Path
    per_request: str  # what one request carries, in words
    ours: list[Request] = field(default_factory=list)
    graph_requests: list[Request] = field(default_factory=list)
    shared: list[str] = field(default_factory=list)  # name=file.npy for the graph peers
    normal: list[str] = field(default_factory=list)  # name=d1xd2 drawn by the graph peers
    graph_inputs_note: str = ""
    events_per_request: int = 0
    event_items: list[str] = field(default_factory=list)
    seeded: dict[str, int] = field(default_factory=dict)

    @property
    def has_naive_redis(self) -> bool:
        return self.route in NAIVE_REDIS_ROUTES


# ---- seeded users ---------------------------------------------------------------------------
@dataclass
class Seed:
    users: list[str]
    items: list[str]
    events: list[dict[str, Any]]  # sorted by time
    now: int


def make_seed(n_users: int, items: list[str], now: int, seed: int) -> Seed:
    """Each user gets 20-40 events over the last 50 days (inside intent's 56-day window),
    mostly browses with some collect/cart/purchase, the newest one a minute before `now`."""
    rng = np.random.default_rng(seed)
    users = [f"load-u{k}" for k in range(n_users)]
    events: list[dict[str, Any]] = []
    for u in users:
        n = int(rng.integers(20, 41))
        times = np.sort(now - 60 - rng.integers(0, 50 * DAY, n))
        for j, ts in enumerate(times):
            events.append(
                {
                    "event_id": f"seed-{u}-{j}",
                    "user_id": u,
                    "item_id": items[int(rng.integers(len(items)))],
                    "action": SEED_ACTIONS[int(rng.integers(len(SEED_ACTIONS)))],
                    "timestamp": int(ts),
                }
            )
    events.sort(key=lambda e: (e["timestamp"], e["event_id"]))
    return Seed(users, items, events, now)


def _post_all(base_url: str, path: str, key: str, rows: Sequence[Any], batch: int) -> list[Any]:
    import httpx

    answers = []
    with httpx.Client(base_url=base_url, timeout=120.0, trust_env=False) as client:
        for i in range(0, len(rows), batch):
            resp = client.post(path, json={key: list(rows[i : i + batch])})
            if resp.status_code >= 400:
                raise RuntimeError(f"seeding {path} -> {resp.status_code}: {resp.text[:500]}")
            answers.append(resp.json())
    return answers


def _items_of(version: Path) -> list[str]:
    vocab = json.loads((version / "manifest.json").read_text()).get("vocabularies", {})
    items = [i for i in vocab.get("items", vocab.get("item", [])) if i]
    return items[:500] or [f"item{k}" for k in range(200)]


def _groups(users: Sequence[str], size: int) -> list[list[str]]:
    """Consecutive groups of `size` users, wrapping around, one per request body."""
    n = max(len(users) // size, 1)
    return [[users[(g * size + j) % len(users)] for j in range(size)] for g in range(n)]


# ---- per route ------------------------------------------------------------------------------
def _intent(w: Workload, seed: Seed, per_request: int) -> None:
    from service.servables.intent import window_end
    from service.servables.intent_features import FeatureSpec, build_features, counts_from_events

    spec = FeatureSpec.from_dict(read_manifest(w.version).config["features"])
    cut = window_end(seed.now, spec)
    index = {u: k for k, u in enumerate(seed.users)}
    counts = counts_from_events(
        np.asarray([index[e["user_id"]] for e in seed.events], dtype=np.int64),
        np.asarray([e["timestamp"] for e in seed.events], dtype=np.int64),
        np.asarray([ACTIONS.index(e["action"]) for e in seed.events], dtype=np.int64),
        np.full(len(seed.users), cut, dtype=np.int64),
        len(seed.users),
        spec,
    )
    for group in _groups(seed.users, per_request):
        w.ours.append(Request("POST", "/v1/score/intent", _json({"users": group})))
        rows = [index[u] for u in group]
        w.graph_requests.append(
            _infer(build_features(counts[rows], np.full(len(rows), cut, dtype=np.int64), spec))
        )
    w.graph_inputs_note = (
        "sent the features salecast computes for the same users from the same seeded events"
    )


def _cvr(w: Workload, seed: Seed, per_request: int) -> None:
    from service.servables.cvr import CvrServable, CvrVersionConfig, PairInput, SeqEvent

    loaded = SimpleNamespace(
        manifest=read_manifest(w.version), path=w.version, version=w.version.name
    )
    cfg = CvrVersionConfig.from_loaded(loaded)
    servable = CvrServable()
    seqs: dict[str, list[SeqEvent]] = {u: [] for u in seed.users}
    for e in seed.events:
        seqs[e["user_id"]].append(SeqEvent(e["item_id"], "", e["action"], int(e["timestamp"])))
    rng = np.random.default_rng(2)
    for group in _groups(seed.users, per_request):
        picks = [seed.items[int(rng.integers(len(seed.items)))] for _ in group]
        pairs = [{"user_id": u, "item_id": i} for u, i in zip(group, picks, strict=True)]
        w.ours.append(Request("POST", "/v1/score/cvr", _json({"pairs": pairs})))
        inputs, _ = servable.features(
            cfg, [PairInput(u, i) for u, i in zip(group, picks, strict=True)],
            [seqs[u] for u in group], seed.now,
        )  # fmt: skip
        w.graph_requests.append(_infer(inputs))
    w.graph_inputs_note = (
        "sent the features salecast computes for the same pairs from the same seeded sequences"
    )


def _imn_rows(version: Path) -> tuple[dict[str, Any], np.ndarray, dict[str, int], dict[str, int]]:
    manifest = json.loads((version / "manifest.json").read_text())
    vocab = manifest["vocabularies"]
    init_user = np.load(version / "initial_user_state.npy").astype(np.float32)
    users = {u: k for k, u in enumerate(vocab["users"]) if k}
    items = {i: k for k, i in enumerate(vocab["items"]) if k}
    return manifest["config"], init_user, users, items


def _recommend(w: Workload, seed: Seed, k: int) -> None:
    config, init_user, users, items = _imn_rows(w.version)
    k = min(k, int(config["top_k"]), len(items))
    last: dict[str, str] = {e["user_id"]: e["item_id"] for e in seed.events}
    for u in seed.users:
        w.ours.append(Request("GET", f"/v1/recommendations/{u}?k={k}"))
        w.graph_requests.append(
            _infer(
                {
                    "user_state": init_user[None, :],
                    "user_index": np.asarray([users.get(u, 0)], dtype=np.int64),
                    "last_item": np.asarray([items.get(last.get(u, ""), 0)], dtype=np.int64),
                    "dt_user": np.asarray([60.0], dtype=np.float32),
                    "dt_limited": np.asarray([float(seed.now % DAY)], dtype=np.float32),
                }
            )
        )
    w.shared = [f"item_table={w.version / 'item_table.npy'}"]
    w.graph_inputs_note = (
        "sent one user's graph inputs (the artifact's initial user state, the user's last item) "
        "and fed the item table with every call; it returns the graph's full top-k"
    )


def _events(w: Workload, seed: Seed, per_request: int) -> None:
    _config, init_user, _users, items = _imn_rows(w.version)
    init_item = np.load(w.version / "initial_item_state.npy").astype(np.float32)
    rng = np.random.default_rng(1)
    w.ours = [Request("POST", EVENTS_MARK)]
    w.events_per_request = per_request
    w.event_items = seed.items
    n = per_request
    for _ in range(16):
        features = np.zeros((n, 4), dtype=np.float32)
        features[np.arange(n), rng.integers(0, 4, n)] = 1.0
        w.graph_requests.append(
            _infer(
                {
                    "user_state": np.repeat(init_user[None, :], n, 0),
                    "item_state": np.repeat(init_item[None, :], n, 0),
                    "user_index": np.zeros(n, dtype=np.int64),
                    "item_index": rng.integers(1, len(items) + 1, n).astype(np.int64),
                    "dt_user": rng.uniform(1, 3600, n).astype(np.float32),
                    "dt_item": rng.uniform(1, 3600, n).astype(np.float32),
                    "dt_purchase": rng.uniform(1, 86400, n).astype(np.float32),
                    "features": features,
                    "is_purchase": features[:, 3].copy(),
                }
            )
        )
    w.graph_inputs_note = (
        f"sent the update graph's inputs for {per_request} events (initial user and item states) "
        "and stores nothing"
    )


def _shaped_inputs(
    version: Path, graph: str, rows: int, skip: Sequence[str]
) -> dict[str, np.ndarray]:
    """Inputs of `graph` with `rows` rows: floats N(0, 1), integer ids 0, symbolic non-batch
    axes taken from the manifest config (``samples``)."""
    manifest = read_manifest(version)
    rng = np.random.default_rng(3)
    out = {}
    for spec in manifest.graphs[graph].inputs:
        if spec.name in skip:
            continue
        dims = [rows] + [
            int(manifest.config.get(d, 1)) if isinstance(d, str) else int(d or 1)
            for d in spec.shape[1:]
        ]
        if "int" in spec.dtype:
            out[spec.name] = np.zeros(dims, dtype=np.int64)
        else:
            out[spec.name] = rng.standard_normal(dims).astype(np.float32)
    return out


def _normal_dims(version: Path, graph: str, names: Sequence[str]) -> list[str]:
    manifest = read_manifest(version)
    dims = {}
    for spec in manifest.graphs[graph].inputs:
        if spec.name in names:
            rest = [
                int(manifest.config.get(d, 1)) if isinstance(d, str) else int(d or 1)
                for d in spec.shape[1:]
            ]
            dims[spec.name] = "x".join(str(d) for d in rest)
    return [f"{n}={d}" for n, d in dims.items()]


def _forecast_scenario(artifacts: Path) -> Any:
    from training.demo_traffic import promotion_scenario

    return promotion_scenario(
        read_manifest(newest_version(artifacts, "stmp")),
        read_manifest(newest_version(artifacts, "dinop")),
    )


def _forecast(w: Workload, artifacts: Path) -> None:
    scenario = _forecast_scenario(artifacts)
    regions = sorted({r for r, _ in scenario.items})
    next_period = scenario.date  # sales are ingested up to the period before it
    for region in regions:
        cats = sorted(c for r, c in scenario.items if r == region)
        body = {"region": region, "start": next_period.isoformat(), "end": next_period.isoformat(),
                "categories": cats}  # fmt: skip
        w.ours.append(Request("POST", "/v1/forecast/festival", _json(body)))
        w.graph_requests.append(
            _infer(_shaped_inputs(w.version, "forecast", len(cats), ("noise", "obs_noise")))
        )
    w.normal = _normal_dims(w.version, "forecast", ("noise", "obs_noise"))
    w.graph_inputs_note = (
        "sent forecast-graph inputs of the shapes salecast feeds for one period of the same "
        "categories (random values) and draws the sampling noise itself"
    )


def _promotion_items(w: Workload, artifacts: Path) -> None:
    scenario = _forecast_scenario(artifacts)
    body = {"promotion": scenario.promotion,
            "items": [{"region": r, "category": c} for r, c in scenario.items]}  # fmt: skip
    w.ours.append(Request("POST", "/v1/forecast/promotion-items", _json(body)))
    w.graph_requests.append(_infer(_shaped_inputs(w.version, "forecast", len(scenario.items), ())))
    w.graph_inputs_note = (
        "sent forecast-graph inputs of the shapes salecast feeds for the same items (random "
        "values); it neither reads item states nor catches up on ingested sales"
    )


def build(
    route: str, artifacts: Path, *, users: int, per_request: int, k: int, seed: int
) -> tuple[Workload, Seed]:
    """The workload of `route` on the newest artifacts (nothing is sent yet)."""
    model = ROUTE_MODEL[route]
    version = newest_version(artifacts, model)
    items = _items_of(newest_version(artifacts, "imn")) if (artifacts / "imn").exists() else []
    s = make_seed(users, items or ["item0"], int(time.time()), seed)
    w = Workload(route, model, ROUTE_GRAPH[route], version, "")
    if route == "intent":
        _intent(w, s, per_request)
        w.per_request = f"{per_request} users per POST"
    elif route == "cvr":
        _cvr(w, s, per_request)
        w.per_request = f"{per_request} pairs per POST"
    elif route == "recommend":
        _recommend(w, s, k)
        w.per_request = f"one user per GET, k={k}"
    elif route == "events":
        _events(w, s, per_request)
        w.per_request = f"{per_request} events per POST"
    elif route == "forecast":
        _forecast(w, artifacts)
        w.per_request = "one region's categories for one period per POST"
    else:
        _promotion_items(w, artifacts)
        w.per_request = "every item of the promotion per POST"
    return w, s


def prepare(w: Workload, seed: Seed, base_url: str, artifacts: Path) -> None:
    """Seed salecast at `base_url` as a client would, before any load."""
    answers = _post_all(base_url, "/v1/events", "events", seed.events, 1000)
    w.seeded = {k: sum(int(a[k]) for a in answers) for k in ("applied", "duplicate", "rejected")}
    if w.route not in ("forecast", "promotion-items"):
        return
    import httpx

    from training.demo_traffic import sales_records

    scenario = _forecast_scenario(artifacts)
    with httpx.Client(base_url=base_url, timeout=120.0, trust_env=False) as client:
        resp = client.post("/v1/promotions", json=scenario.promotion)
        if resp.status_code >= 400:
            raise RuntimeError(f"registering the promotion -> {resp.status_code}: {resp.text}")
    records = sales_records(scenario)
    by_date: dict[dt.date, list[dict[str, Any]]] = {}
    for r in records:
        by_date.setdefault(dt.date.fromisoformat(r["date"]), []).append(r)
    for day in sorted(by_date):  # period by period, as a shop's daily export would arrive
        _post_all(base_url, "/v1/sales", "records", by_date[day], 1000)
    w.seeded["sales_records"] = len(records)
