"""Property-based fuzzing of every operation in `/openapi.json` (schemathesis): no input the
schema allows, and none it does not, gets a 5xx, and every answer matches the schema (status
codes, content types, headers, bodies, `Allow` on 405).

Two of schemathesis' checks are left out, on purpose: `positive_data_acceptance` expects a
2xx for every schema-valid request, but a valid shape can still name a region or a promotion
type the loaded model does not know, which is correctly a 422 naming the field; and
`negative_data_rejection` expects a 4xx for every schema-violating one, which fails on values
pydantic coerces by design (an ISO date string for a date field).

The app serves the five demo models on the session's Valkey, so each route runs its real
servable. Examples per operation are bounded (`EXAMPLES`) to keep `make test` short; raise
`SALECAST_FUZZ_EXAMPLES` for a deeper run. Operations that change what the models serve
(`/v1/models/reload`) are fuzzed too: they only ever re-scan the same artifacts folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi import checks

from service.api.main import create_app
from service.state.embedded import EmbeddedRedis
from tests.conftest import flushed

EXAMPLES = int(os.environ.get("SALECAST_FUZZ_EXAMPLES", "25"))
EXCLUDED = [checks.positive_data_acceptance, checks.negative_data_rejection]


# The document does not depend on what is loaded: read it from an app built without models,
# at collection; the requests go to the started app the fixture below puts in its place.
schema = schemathesis.openapi.from_dict(create_app(poll_interval_s=0).openapi())


@pytest.fixture(scope="module")
def served(demo: tuple[Path, list[Path]], embedded_redis: EmbeddedRedis) -> Iterator[str]:
    """The app on a real server (uvicorn, loopback, its own thread and event loop, as
    `salecast serve` runs it); yields its base URL."""
    import socket
    import threading
    import time

    import uvicorn

    application = create_app(
        artifacts_dir=demo[0], redis_url=flushed(embedded_redis), poll_interval_s=0
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(application, host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_server_error_and_answers_match_the_schema(case: Any, served: str) -> None:
    case.call_and_validate(base_url=served, excluded_checks=EXCLUDED)
