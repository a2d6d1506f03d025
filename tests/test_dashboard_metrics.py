"""Every metric and label a Grafana panel, a variable or an alert rule names is exported.

A dashboard that names a metric the service never exports shows an empty panel and nobody
notices until an incident. The queries are parsed (tests/promql_queries.py) and checked
against the collectors of service/metrics.py; the running app's /metrics is checked too, so
a collector declared but never registered is caught as well. The dashboard's variables
(datasource, namespace, pod, model) must reach every query, and probe traffic must stay out
of the latency panels.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from service.api.main import create_app
from service.config import Settings
from service.state.embedded import EmbeddedRedis
from tests.promql_queries import (
    PROBE_ROUTES,
    TARGET_LABELS,
    Selector,
    all_queries,
    dashboard,
    dashboard_queries,
    exported_series,
    grouping_labels,
    known_series,
    selectors,
    variable_queries,
)

HTTP_LATENCY = "salecast_http_request_duration_seconds_bucket"


def test_every_query_parses_and_names_only_exported_series() -> None:
    known = known_series()
    unknown = {
        (where, s.name)
        for where, expr in all_queries()
        for s in selectors(expr)
        if s.name not in known
    }
    assert not unknown, f"queries name series the service does not export: {sorted(unknown)}"


def test_every_label_a_query_matches_or_groups_by_exists_on_its_metric() -> None:
    known = known_series()
    wrong = []
    for where, expr in all_queries():
        for s in selectors(expr):
            for label, _, _ in s.matchers:
                if label not in known.get(s.name, frozenset()) | TARGET_LABELS:
                    wrong.append((where, s.name, label))
        for labels, inner in grouping_labels(expr):
            available = set(TARGET_LABELS).union(*(known.get(s.name, frozenset()) for s in inner))
            wrong.extend((where, "by", label) for label in labels - available)
    assert not wrong, f"labels no metric has: {wrong}"


def test_name_check_catches_a_misspelt_metric() -> None:
    """Negative control: the same check on a query with a typo reports it."""
    names = {s.name for s in selectors("rate(salecast_http_request_duration_second_count[5m])")}
    assert names - set(known_series()) == {"salecast_http_request_duration_second_count"}


def test_the_running_app_exports_every_series_the_queries_name(
    tmp_path: Path, redis_url: str
) -> None:
    settings = Settings(
        artifacts_dir=tmp_path / "artifacts", redis_url=redis_url, poll_interval_s=0
    )
    with TestClient(create_app(settings)) as client:
        client.get("/health/live")
        text = client.get("/metrics").text
    exported = set()
    for family in text_string_to_metric_families(text):
        exported |= {family.name, f"{family.name}_total", f"{family.name}_bucket"}
        exported |= {f"{family.name}_sum", f"{family.name}_count"}
    declared = set(exported_series())
    queried = {s.name for _, expr in all_queries() for s in selectors(expr)} & declared
    assert len(queried) >= 15, "the dashboard and rules should cover the service's metrics"
    assert queried <= exported, f"declared but not on /metrics: {sorted(queried - exported)}"


def test_dashboard_has_datasource_namespace_pod_and_model_variables() -> None:
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    listed = {name: label for name, _, label in variable_queries()}
    assert listed == {"namespace": "namespace", "pod": "pod", "model": "model"}
    for name in ("namespace", "pod", "model"):
        # "All" must also match series without the label (a plain Prometheus, no operator).
        assert variables[name]["includeAll"] and variables[name]["allValue"] == ".*"
    # pod narrows to the chosen namespace, model to the chosen namespace and pod.
    selectors_of = {name: selectors(sel)[0] for name, sel, _ in variable_queries()}
    assert selectors_of["pod"].matcher("namespace", "=~") == "$namespace"
    assert selectors_of["model"].matcher("pod", "=~") == "$pod"


def test_every_panel_uses_the_datasource_variable() -> None:
    for panel in dashboard()["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


def test_every_panel_query_is_filtered_by_namespace_pod_and_model() -> None:
    series = exported_series()
    missing = []
    for title, expr in dashboard_queries():
        for s in selectors(expr):
            wanted = {"namespace": "$namespace", "pod": "$pod"}
            if "model" in series[s.name]:
                wanted["model"] = "$model"
            for label, value in wanted.items():
                if s.matcher(label, "=~") != value:
                    missing.append((title, s.name, label))
    assert not missing, f"queries that ignore a dashboard variable: {missing}"


def test_latency_panels_leave_out_probes_and_scrapes() -> None:
    latency = [
        (title, s)
        for title, expr in dashboard_queries()
        for s in selectors(expr)
        if s.name == HTTP_LATENCY
    ]
    assert len(latency) >= 4
    for title, s in latency:
        excluded = s.matcher("route", "!~")
        assert excluded is not None, title
        for route in PROBE_ROUTES:
            assert re.fullmatch(excluded, route), f"{title}: {route} counts in the latency"
        for route in ("/v1/score/intent", "/v2/models/{name}/infer", "unmatched"):
            assert not re.fullmatch(excluded, route), f"{title}: {route} is left out"


@pytest.mark.parametrize(
    "topic",
    [
        "request rate",
        "errors",
        "error ratio",
        "p99",
        "batch size",
        "queue depth",
        "queue wait",
        "onnx runtime",
        "inference failures",
        "redis latency",
        "redis errors",
        "events",
        "compare-and-set",
        "versions",
        "model ready",
        "build",
        "served score",
        "drift",
    ],
)
def test_dashboard_covers_the_operator_questions(topic: str) -> None:
    titles = " ".join(p["title"].lower() for p in dashboard()["panels"])
    assert topic in titles


# Series that only get samples when something goes wrong: a 5xx, a full queue, a failed
# inference, a Redis error, a restart of the embedded server, a compare-and-set conflict
# between replicas. Every other query of the dashboard must show data after plain traffic.
FAULT_ONLY = {
    ("salecast_http_request_duration_seconds_count", "status", "5.."),
    ("salecast_batch_queue_rejected_total", "", ""),
    ("salecast_inference_failures_total", "", ""),
    ("salecast_redis_errors_total", "", ""),
    ("salecast_embedded_redis_restarts_total", "", ""),
    ("salecast_cas_conflicts_total", "", ""),
}


def _matches(selector: Selector, labels: dict[str, str]) -> bool:
    for label, op, value in selector.matchers:
        if label in TARGET_LABELS or "$" in value:
            continue  # set by Prometheus (namespace, pod) or by a dashboard variable
        have = labels.get(label, "")
        hit = re.fullmatch(value, have) is not None if op in ("=~", "!~") else have == value
        if hit != (op in ("=", "=~")):
            return False
    return True


def _fault_only(selector: Selector) -> bool:
    status = selector.matcher("status", "=~")
    return (selector.name, "", "") in FAULT_ONLY or (
        (selector.name, "status", status) in FAULT_ONLY
    )


def test_every_dashboard_query_has_samples_after_traffic(
    demo: tuple[Path, list[Path]], embedded_redis: EmbeddedRedis
) -> None:
    """Plain traffic through all five demo models (every request example of the OpenAPI
    document, a recommendation, repeated and stale events, a bad request), then every selector of
    every panel must match a sample on /metrics; only the fault series above may be empty.
    The drift panels are the reason: a histogram declared but never observed shows an
    empty panel forever."""
    from tests.conftest import flushed
    from tests.test_api_docs import DEMO_STATUS, FIRST, _body_examples, _operations

    app = create_app(artifacts_dir=demo[0], redis_url=flushed(embedded_redis), poll_interval_s=0)
    with TestClient(app) as client:
        spec = client.get("/openapi.json").json()
        with_body = [(p, m, op) for p, m, op in _operations(spec) if "requestBody" in op]
        with_body.sort(key=lambda t: (t[0] not in FIRST, FIRST.index(t[0]) if t[0] in FIRST else 0))
        for path, method, op in with_body:
            for example in _body_examples(spec, op):
                url = path.replace("{name}", "intent.score")
                r = client.request(method.upper(), url, json=example)
                assert r.status_code == DEMO_STATUS.get(path, 200), (path, r.text[:300])
                if path == "/v1/events":  # again (duplicates), then older ones (stale)
                    assert client.post(url, json=example).json()["duplicate"] >= 1
                    older = [
                        {**e, "event_id": f"{e['event_id']}-old", "timestamp": e["timestamp"] - 60}
                        for e in example["events"]
                    ]
                    assert client.post(url, json={"events": older}).json()["rejected"] >= 1
        assert client.get("/v1/recommendations/u1", params={"k": 3}).status_code == 200
        assert client.post("/v1/score/intent", json={"users": []}).status_code == 422
        text = client.get("/metrics").text
    samples = [
        (s.name, s.labels)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]
    empty = sorted(
        {
            f"{title}: {sel.name}{{{', '.join(''.join(m) for m in sel.matchers)}}}"
            for title, expr in dashboard_queries()
            for sel in selectors(expr)
            if not _fault_only(sel)
            and not any(name == sel.name and _matches(sel, labels) for name, labels in samples)
        }
    )
    assert not empty, "panels without data after traffic:\n" + "\n".join(empty)
