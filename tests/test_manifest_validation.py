"""A trained artifact records its validation metrics beside the best baseline's on the same
split, and `GET /v1/models/{name}` shows them (real training, real Valkey, real ORT)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

from service.runtime.manifest import read_manifest
from tests.test_model_imn import _events
from training.jobs.imn import add_arguments, prepare, train_prepared

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--epochs", "2", "--dim", "8", "--negatives", "8", "--top-k", "10"])
    args.seed, args.artifacts = 0, tmp_path_factory.mktemp("artifacts")
    prep = prepare(_events(n_users=20, n_items=30, per_user=12), "x" * 64, "test")
    return train_prepared(prep, args)[0]


def test_manifest_holds_ours_and_the_best_baseline(artifact: Path) -> None:
    validation = read_manifest(artifact).metrics["validation"]
    assert validation["metric"] == "recall@20" and validation["ours"]["name"] == "imn"
    assert set(validation["baselines"]) == {"popularity", "cooccurrence"}
    best = validation["best_baseline"]
    assert best["recall@20"] == max(validation["baselines"].values())
    behind = validation["ours"]["recall@20"] < best["recall@20"]
    assert validation["behind_baseline"] is behind


def test_models_route_shows_the_validation_comparison(artifact: Path, clean_redis: str) -> None:
    from fastapi.testclient import TestClient

    from service.api.main import create_app

    app = create_app(artifacts_dir=artifact.parent.parent, redis_url=clean_redis, poll_interval_s=0)
    with TestClient(app) as client:
        body = client.get("/v1/models/imn").json()
    shown = body["validation"]
    assert shown["ours"]["name"] == "imn" and shown["best_baseline"]["name"] in {
        "popularity",
        "cooccurrence",
    }
    assert shown == {**read_manifest(artifact).metrics["validation"], **shown}
    assert isinstance(shown["behind_baseline"], bool)
