"""Which scope each operation needs: `read`, `write` or `admin`.

* `read`: answers computed from state, changing nothing (recommendations, scores, forecasts,
  coupon allocation, listing promotions);
* `write`: what changes the online state (events, sales, registering promotions);
* `admin`: the models themselves (listing versions and reloading them).

Probes (`/health/*`, the Open Inference Protocol's `/v2/health/*`) and `/metrics` are open
unless the deployment asks otherwise (`SALECAST_AUTH_PROBES`), and the API documentation
(`/docs`, its assets, `/redoc`, `/openapi.json`) is always open. A path the table does not
know needs `read`, so a new route is never open by accident.
"""

from __future__ import annotations

SCOPES = frozenset({"read", "write", "admin"})
PROBES = ("/health/", "/v2/health/", "/metrics")
DOCS = ("/docs", "/redoc", "/openapi.json")

# (method, path prefix, scope), first match wins.
RULES: tuple[tuple[str, str, str], ...] = (
    ("POST", "/v1/events", "write"),
    ("POST", "/v1/sales", "write"),
    ("POST", "/v1/promotions", "write"),
    ("*", "/v1/models", "admin"),
    ("*", "/v1/", "read"),
)


def required_scope(method: str, path: str, probes_open: bool) -> str | None:
    """The scope `method path` needs, or None for an open path."""
    if path.startswith(DOCS) or (probes_open and path.startswith(PROBES)):
        return None
    for rule_method, prefix, scope in RULES:
        if (rule_method == "*" or rule_method == method) and path.startswith(prefix):
            return scope
    return "read"
