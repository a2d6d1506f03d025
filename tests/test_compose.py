"""docker-compose.yml wires what the README promises (no Docker daemon needed to check it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]


def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_service_uses_the_compose_redis_and_the_shared_models_volume() -> None:
    services = compose()["services"]
    salecast = services["salecast"]
    assert salecast["environment"]["REDIS_URL"].startswith("redis://redis:")
    assert "models:/models:ro" in salecast["volumes"]
    assert salecast["depends_on"]["redis"]["condition"] == "service_healthy"


def test_redis_persists_append_only_on_a_volume() -> None:
    redis = compose()["services"]["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert any(v.startswith("redis-data:") for v in redis["volumes"])
    assert "redis-data" in compose()["volumes"]


def test_prometheus_scrapes_the_service_metrics_route() -> None:
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    job = jobs["salecast"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert "salecast:8000" in job["static_configs"][0]["targets"]
    mounts = compose()["services"]["prometheus"]["volumes"]
    assert any(m.startswith("./deploy/prometheus/prometheus.yml:") for m in mounts)


def test_grafana_is_provisioned_with_datasource_and_dashboard() -> None:
    mounts = compose()["services"]["grafana"]["volumes"]
    for mount in mounts:
        host = mount.split(":")[0]
        assert (ROOT / host).exists(), mount
    provisioning = ROOT / "deploy/grafana/provisioning"
    datasources = list((provisioning / "datasources").glob("*.y*ml"))
    dashboards = list((provisioning / "dashboards").glob("*.y*ml"))
    assert datasources and dashboards
    source = yaml.safe_load(datasources[0].read_text())["datasources"][0]
    assert source["type"] == "prometheus" and "prometheus:9090" in source["url"]
    assert (ROOT / "deploy/grafana/dashboards/salecast.json").is_file()


def test_train_profile_writes_into_the_volume_the_service_reads() -> None:
    train = compose()["services"]["train"]
    assert train["profiles"] == ["train"]
    assert train["build"]["target"] == "trainer"
    assert "models:/models" in train["volumes"]
    assert "/models" in train["command"]
