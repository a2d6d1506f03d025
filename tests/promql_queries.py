"""The PromQL that deploy/ ships, parsed, and the series service/metrics.py exports.

Dashboards and alert rules name metrics by string; a renamed or never-declared metric gives
an empty panel or an alert that cannot fire, and nobody notices until an incident. The tests
parse every query with a real PromQL parser (`promql-parser`, the parser of GreptimeDB) and
compare the selectors' metric and label names with the collectors `service.metrics` declares,
read at run time, so a metric added or renamed there is checked without editing a list here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import promql_parser
import yaml
from prometheus_client.metrics import MetricWrapperBase

import service.metrics

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "salecast.json"
RULES = ROOT / "deploy" / "prometheus" / "rules" / "salecast.rules.yml"
PROMETHEUS_RULE = ROOT / "deploy" / "k8s" / "monitoring" / "prometheusrule.yaml"
ADAPTER_VALUES = ROOT / "deploy" / "prometheus" / "prometheus-adapter-values.yaml"

# Labels Prometheus attaches at scrape time: the job and instance always, namespace and pod
# from the ServiceMonitor (Kubernetes) or the relabelling in deploy/prometheus/prometheus.yml.
TARGET_LABELS = frozenset({"job", "instance", "namespace", "pod"})
# Series that are not salecast's own but that rules may use.
PROMETHEUS_SERIES: dict[str, frozenset[str]] = {"up": frozenset()}
# Grafana's interval variables, replaced by a duration before parsing.
GRAFANA_DURATIONS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}
PROBE_ROUTES = ("/health/live", "/health/ready", "/metrics", "/v2/health/live", "/v2/health/ready")
_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "gauge": ("",),
    "summary": ("", "_sum", "_count"),
    "info": ("_info",),
}


@dataclass(frozen=True)
class Family:
    """One collector of service/metrics.py."""

    name: str
    kind: str
    labels: frozenset[str]


def families() -> list[Family]:
    out = []
    for value in vars(service.metrics).values():
        if isinstance(value, MetricWrapperBase):
            (described,) = value.describe()
            out.append(Family(described.name, described.type, frozenset(value._labelnames)))
    return out


def exported_series() -> dict[str, frozenset[str]]:
    """Every series name the service exports -> its label names (`le` on buckets)."""
    out: dict[str, frozenset[str]] = {}
    for family in families():
        for suffix in _SUFFIXES[family.kind]:
            extra = {"le"} if suffix == "_bucket" else set()
            out[family.name + suffix] = family.labels | extra
    return out


@dataclass(frozen=True)
class Selector:
    """One vector selector of a query: metric name and label matchers."""

    name: str
    matchers: tuple[tuple[str, str, str], ...]  # (label, op, value); op one of = != =~ !~

    def matcher(self, label: str, op: str) -> str | None:
        return next((v for name, o, v in self.matchers if name == label and o == op), None)


# MatchOp values are not hashable: keyed by their names.
_OPS = {"MatchOp.Equal": "=", "MatchOp.NotEqual": "!=", "MatchOp.Re": "=~", "MatchOp.NotRe": "!~"}


def parse(expr: str) -> Any:
    """The parsed query; Grafana's duration variables become durations first."""
    for variable, duration in GRAFANA_DURATIONS.items():
        expr = expr.replace(variable, duration)
    return promql_parser.parse(expr)


def _children(node: Any) -> Iterator[Any]:
    if isinstance(node, promql_parser.BinaryExpr):
        yield from (node.lhs, node.rhs)
    elif isinstance(node, promql_parser.AggregateExpr):
        yield node.expr
        if node.param is not None:
            yield node.param
    elif isinstance(node, promql_parser.Call):
        yield from node.args
    elif isinstance(node, promql_parser.MatrixSelector):
        yield node.vector_selector
    elif isinstance(
        node, promql_parser.ParenExpr | promql_parser.UnaryExpr | promql_parser.SubqueryExpr
    ):
        yield node.expr


def walk(node: Any) -> Iterator[Any]:
    yield node
    for child in _children(node):
        yield from walk(child)


def selectors(expr: str) -> list[Selector]:
    out = []
    for node in walk(parse(expr)):
        if isinstance(node, promql_parser.VectorSelector):
            # A selector by matchers only ({__name__=~"..."}) cannot be checked: none here.
            assert node.name, f"{expr!r}: every selector names its metric"
            matchers = tuple(
                (m.name, _OPS[str(m.op)], m.value)
                for m in node.matchers.matchers
                if m.name != "__name__"
            )
            out.append(Selector(node.name, matchers))
    return out


def grouping_labels(expr: str) -> list[tuple[set[str], list[Selector]]]:
    """(labels of each `by (...)`, the selectors that aggregation reads)."""
    out = []
    for node in walk(parse(expr)):
        if isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            inner = [n for n in walk(node.expr) if isinstance(n, promql_parser.VectorSelector)]
            picked = [Selector(str(n.name), ()) for n in inner]
            out.append((set(node.modifier.labels), picked))
    return out


# --- where the queries are ------------------------------------------------------------------


def dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) for every panel target."""
    return [(p["title"], t["expr"]) for p in dashboard()["panels"] for t in p["targets"]]


_LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>\w+)\)$")


def variable_queries() -> list[tuple[str, str, str]]:
    """(variable, the selector of its `label_values(...)`, the label it lists)."""
    out = []
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]
        text = query["query"] if isinstance(query, dict) else query
        match = _LABEL_VALUES.match(text)
        assert match, f"variable {variable['name']}: {text!r} is not label_values(selector, label)"
        out.append((variable["name"], match["selector"], match["label"]))
    return out


def rule_groups(path: Path = RULES) -> list[dict[str, Any]]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    groups = data["spec"]["groups"] if data.get("kind") == "PrometheusRule" else data["groups"]
    assert isinstance(groups, list)
    return groups


def rules() -> list[dict[str, Any]]:
    return [rule for group in rule_groups() for rule in group["rules"]]


def recorded_series() -> dict[str, frozenset[str]]:
    """Series the recording rules produce -> the labels they keep (their `by` clause)."""
    out = {}
    for rule in rules():
        if "record" in rule:
            kept = set().union(*(labels for labels, _ in grouping_labels(rule["expr"])))
            out[rule["record"]] = frozenset(kept)
    return out


def adapter_queries() -> list[str]:
    """The series queries of prometheus-adapter's rules (what the HPAs scale on)."""
    values = yaml.safe_load(ADAPTER_VALUES.read_text(encoding="utf-8"))
    return [rule["seriesQuery"] for rule in values["rules"]["custom"]]


def all_queries() -> list[tuple[str, str]]:
    """(where, PromQL) for everything deploy/ asks Prometheus."""
    out = [(f"panel {title!r}", expr) for title, expr in dashboard_queries()]
    out += [(f"variable {name}", selector) for name, selector, _ in variable_queries()]
    out += [(f"rule {r.get('alert') or r.get('record')}", r["expr"]) for r in rules()]
    out += [("prometheus-adapter", q) for q in adapter_queries()]
    return out


def known_series() -> dict[str, frozenset[str]]:
    return {**exported_series(), **recorded_series(), **PROMETHEUS_SERIES}
