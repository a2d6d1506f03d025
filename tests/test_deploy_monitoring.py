"""Alert rules, the PrometheusRule, the ServiceMonitor and compose's Prometheus agree.

The Prometheus operator's CRDs have no schema in kubernetes-validate, so their shape is
checked here field by field. The alert rules must cover what an on-call engineer is paged
for (errors, latency, saturation, Redis, compare-and-set conflicts, readiness, drift), each
with a severity and a text; where `promtool` is installed the rules are also checked by it
and their unit tests (deploy/prometheus/rules/salecast.test.yml) are run.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml

from tests.k8s_render import K8S_DIR, find, matches, overlay, render
from tests.promql_queries import (
    PROBE_ROUTES,
    PROMETHEUS_RULE,
    ROOT,
    RULES,
    parse,
    rule_groups,
    rules,
    selectors,
    walk,
)

PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
RULES_TEST = RULES.with_name("salecast.test.yml")
SEVERITIES = {"critical", "warning", "info"}


def _alerts() -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for r in rules() if "alert" in r}


def _metrics_of(rule: dict[str, Any]) -> set[str]:
    return {s.name for s in selectors(rule["expr"])}


def test_prometheus_rule_holds_the_same_groups_as_the_plain_rules_file() -> None:
    assert rule_groups(PROMETHEUS_RULE) == rule_groups(RULES)
    resource = yaml.safe_load(PROMETHEUS_RULE.read_text(encoding="utf-8"))
    assert resource["apiVersion"] == "monitoring.coreos.com/v1"
    assert resource["kind"] == "PrometheusRule"


def test_every_alert_has_a_severity_a_summary_and_a_description() -> None:
    names = [r["alert"] for r in rules() if "alert" in r]
    assert len(names) == len(set(names)), "alert names repeat"
    for name, rule in _alerts().items():
        assert rule["labels"]["severity"] in SEVERITIES, name
        assert {"summary", "description"} <= set(rule["annotations"]), name
        if "for" in rule:
            assert re.fullmatch(r"\d+[smhd]", rule["for"]), name


@pytest.mark.parametrize(
    ("question", "metric"),
    [
        ("error ratio", "salecast_http_request_duration_seconds_count"),
        ("p99 latency", "salecast_http_request_duration_seconds_bucket"),
        ("queue saturation", "salecast_batch_queue_rejected_total"),
        ("queue wait", "salecast_queue_wait_seconds_bucket"),
        ("Redis errors", "salecast_redis_errors_total"),
        ("compare-and-set conflicts", "salecast_cas_conflicts_total"),
        ("a model not ready", "salecast_model_ready"),
        ("inference failures", "salecast_inference_failures_total"),
        ("drift", "salecast:served_score_mean:rate1h"),
    ],
)
def test_an_alert_covers(question: str, metric: str) -> None:
    assert any(metric in _metrics_of(rule) for rule in _alerts().values()), question


def test_error_ratio_and_latency_alerts_leave_out_probes() -> None:
    checked = 0
    for name, rule in _alerts().items():
        for s in selectors(rule["expr"]):
            if not s.name.startswith("salecast_http_request_duration_seconds"):
                continue
            excluded = s.matcher("route", "!~")
            assert excluded is not None, name
            assert all(re.fullmatch(excluded, route) for route in PROBE_ROUTES), name
            checked += 1
    assert checked >= 3


def test_p99_alert_reads_the_99th_percentile_and_drift_compares_with_last_week() -> None:
    latency = next(
        r
        for r in _alerts().values()
        if "salecast_http_request_duration_seconds_bucket" in _metrics_of(r)
    )
    quantiles = [
        node.args[0].val
        for node in walk(parse(latency["expr"]))
        if isinstance(node, promql_parser.Call) and node.func.name == "histogram_quantile"
    ]
    assert quantiles == [0.99]
    drift = next(
        r for r in _alerts().values() if "salecast:served_score_mean:rate1h" in _metrics_of(r)
    )
    offsets = [
        node.offset
        for node in walk(parse(drift["expr"]))
        if isinstance(node, promql_parser.VectorSelector)
    ]
    assert timedelta(weeks=1) in offsets
    recorded = next(r for r in rules() if r.get("record") == "salecast:served_score_mean:rate1h")
    assert _metrics_of(recorded) == {"salecast_served_score_sum", "salecast_served_score_count"}


def test_compose_prometheus_loads_the_rules_file() -> None:
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text(encoding="utf-8"))
    loaded = {p for pattern in config["rule_files"] for p in PROMETHEUS_DIR.glob(pattern)}
    assert RULES in loaded
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    mounts = dict(m.split(":")[:2] for m in compose["services"]["prometheus"]["volumes"])
    # Inside the container the patterns resolve next to the mounted prometheus.yml.
    config_dir = Path(mounts["./deploy/prometheus/prometheus.yml"]).parent
    for pattern in config["rule_files"]:
        rules_dir = str(config_dir / Path(pattern).parent)
        assert mounts.get("./deploy/prometheus/rules") == rules_dir, pattern


def test_compose_scrape_sets_the_labels_the_operator_sets() -> None:
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text(encoding="utf-8"))
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "salecast")
    assert "namespace" in job["static_configs"][0]["labels"]
    assert any(r["target_label"] == "pod" for r in job["relabel_configs"])


def test_service_monitor_scrapes_the_serving_service() -> None:
    monitor = find(render(K8S_DIR / "monitoring"), "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    for name in ("cpu", "gpu"):
        service = find(overlay(name), "Service", "salecast")
        assert matches(monitor["spec"]["selector"], service["metadata"]["labels"])
        ports = {p["name"] for p in service["spec"]["ports"]}
        for endpoint in monitor["spec"]["endpoints"]:
            assert endpoint["port"] in ports
            assert endpoint["path"] == "/metrics"
            interval = int(endpoint["interval"].rstrip("s"))
            assert int(endpoint["scrapeTimeout"].rstrip("s")) <= interval


def test_alert_rules_refer_to_the_job_the_scrapes_create() -> None:
    """`up{job="salecast"}`: the compose job's name, and the Service's (the operator's job)."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text(encoding="utf-8"))
    jobs = {j["job_name"] for j in config["scrape_configs"]}
    service = find(overlay("cpu"), "Service", "salecast")["metadata"]["name"]
    for rule in _alerts().values():
        for s in selectors(rule["expr"]):
            job = s.matcher("job", "=")
            if job is not None:
                assert job in jobs and job == service


promtool = shutil.which("promtool")


@pytest.mark.skipif(promtool is None, reason="promtool not installed (Debian: prometheus)")
def test_promtool_accepts_the_rules_and_their_unit_tests_pass() -> None:
    assert promtool is not None
    for args in (
        ["check", "rules", str(RULES)],
        ["check", "config", str(PROMETHEUS_DIR / "prometheus.yml")],
        ["test", "rules", str(RULES_TEST)],
    ):
        done = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
