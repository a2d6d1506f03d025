"""Every metric a Grafana panel queries exists in the service's /metrics.

A dashboard that names a metric the service never exports shows an empty panel and nobody
notices until an incident; this test starts the real app (no models, real embedded Valkey)
and checks each panel query against what `/metrics` declares.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from service.api.main import create_app
from service.config import Settings

DASHBOARD = (
    Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "dashboards" / "salecast.json"
)
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
    "summary": ("_sum", "_count", "_created"),
    "info": ("_info",),
}


def _exported_names(text: str) -> set[str]:
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
    return names


def _queried_names() -> dict[str, str]:
    dashboard = json.loads(DASHBOARD.read_text())
    names: dict[str, str] = {}
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            for name in re.findall(r"\bsalecast_[a-z0-9_]+", target["expr"]):
                names[name] = panel["title"]
    return names


def test_every_panel_metric_is_exported(tmp_path: Path, redis_url: str) -> None:
    settings = Settings(
        artifacts_dir=tmp_path / "artifacts", redis_url=redis_url, poll_interval_s=0
    )
    with TestClient(create_app(settings)) as client:
        client.get("/health/live")
        exported = _exported_names(client.get("/metrics").text)
    queried = _queried_names()
    assert len(queried) >= 12, "the dashboard should cover the service's metrics"
    missing = {name: title for name, title in queried.items() if name not in exported}
    assert not missing, f"panels query metrics /metrics does not export: {missing}"


def test_dashboard_covers_the_operator_questions() -> None:
    titles = " ".join(p["title"].lower() for p in json.loads(DASHBOARD.read_text())["panels"])
    for topic in (
        "request rate",
        "errors",
        "p99",
        "batch size",
        "queue depth",
        "onnx runtime",
        "redis latency",
        "redis errors",
        "events",
        "compare-and-set",
        "versions",
        "score",
    ):
        assert topic in titles, topic
