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


PASSWORD = "${REDIS_PASSWORD:?set REDIS_PASSWORD (see the top of docker-compose.yml)}"


def test_service_uses_the_compose_redis_and_the_shared_models_volume() -> None:
    services = compose()["services"]
    salecast = services["salecast"]
    # The password comes from the environment (.env); compose refuses to start without it.
    assert salecast["environment"]["REDIS_URL"] == f"redis://:{PASSWORD}@redis:6379/0"
    assert "models:/models:ro" in salecast["volumes"]
    assert salecast["depends_on"]["redis"]["condition"] == "service_healthy"


def test_service_runs_hardened_with_the_drain_inside_the_stop_grace() -> None:
    salecast = compose()["services"]["salecast"]
    assert salecast["read_only"] is True
    assert {"/tmp", "/var/lib/salecast"} <= set(salecast["tmpfs"])
    assert salecast["cap_drop"] == ["ALL"]
    env = salecast["environment"]
    stopping = float(env["SALECAST_SHUTDOWN_DELAY_S"]) + float(env["SALECAST_DRAIN_TIMEOUT_S"])
    assert int(salecast["stop_grace_period"].rstrip("s")) > stopping
    assert salecast["environment"]["SALECAST_STATE_TTL_SECONDS"] == "2592000"


def test_redis_is_valkey_persisting_append_only_on_a_volume_with_a_password() -> None:
    redis = compose()["services"]["redis"]
    assert redis["image"].startswith("valkey/valkey:8")
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert command[command.index("--requirepass") + 1] == PASSWORD
    assert redis["environment"]["REDISCLI_AUTH"] == PASSWORD  # for the health check
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
    for mount in mounts:
        assert (ROOT / mount.split(":")[0]).exists(), mount


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
