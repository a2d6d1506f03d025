"""Service configuration from the environment.

One pydantic-settings `Settings` validated on construction, so a bad value (a negative queue,
an unknown execution provider) stops the process at start instead of surfacing mid-request.
Every field carries a description because the README's configuration table is rendered from
this class (`settings_table_markdown()`); the table can then never drift from the code.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "SALECAST_"


class Settings(BaseSettings):
    """Everything an operator can set. Environment names are `SALECAST_<FIELD>` (upper case),
    except the Redis address, which also answers to the conventional plain `REDIS_URL`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        populate_by_name=True,
        extra="ignore",
        validate_default=True,
    )

    artifacts_dir: Path = Field(
        default=Path("artifacts"),
        description="Folder of model artifacts (`<model>/<version>/manifest.json`) the service "
        "loads and polls for new versions.",
    )
    data_dir: Path = Field(
        default=Path("var"),
        description="Folder for local state; the embedded Redis persists under `<data_dir>/redis` "
        "when no `REDIS_URL` is given.",
    )
    redis_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("REDIS_URL", "SALECAST_REDIS_URL", "redis_url"),
        description="Redis/Valkey URL (`redis://host:6379/0`). Unset: `salecast serve` starts an "
        "embedded valkey-server under the data folder.",
    )
    host: str = Field(
        default="127.0.0.1",
        description="Address the HTTP server binds to (images and manifests set `0.0.0.0`).",
    )
    port: int = Field(default=8000, ge=0, le=65535, description="TCP port of the HTTP server.")
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="HTTP worker processes of `salecast serve`, each with its own model sessions "
        "and micro-batchers, all sharing one Redis; one per core suits CPU serving.",
    )
    proxy_headers: bool = Field(
        default=False,
        description="Trust `X-Forwarded-For`/`X-Forwarded-Proto` from the proxy in front "
        "(uvicorn's proxy headers); off, the middleware layer is not installed.",
    )
    api_keys_file: Path | None = Field(
        default=None,
        description="File of accepted API keys, one `name sha256 scopes [per-second]` line each "
        "(`salecast keys new` makes one), re-read when it changes. Unset: no authentication, "
        "for loopback use.",
    )
    auth_probes: bool = Field(
        default=False,
        description="Also require a key (scope `read`) for `/health/*` and `/metrics`; off, "
        "probes and scrapers need none.",
    )
    max_body_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        le=1024 * 1024 * 1024,
        description="Largest request body accepted; a larger one is answered 413 before it is "
        "read. Parsing holds the event loop, so the default keeps the largest body's parse "
        "short enough for liveness probes (a full 2,000-event batch is about 0.27 MB).",
    )
    execution_provider: Literal["auto", "cpu", "cuda"] = Field(
        default="auto",
        description="ONNX Runtime execution provider: `auto` takes CUDA (with IO binding) when "
        "onnxruntime offers it and the CPU otherwise; `cpu` or `cuda` force one.",
    )
    intra_op_threads: int = Field(
        default=0,
        ge=0,
        description="Threads ONNX Runtime uses inside one CPU operator; 0 means the number of "
        "CPU cores.",
    )
    batch_max_size: int = Field(
        default=256,
        ge=1,
        description="Most rows the micro-batcher joins into one ONNX Runtime call per graph.",
    )
    batch_max_wait_ms: float = Field(
        default=1.0,
        ge=0.0,
        description="Longest the micro-batcher waits for more requests after the first one "
        "arrives (milliseconds); 0 runs whatever is queued at once.",
    )
    inline_call_below_us: float = Field(
        default=1000.0,
        ge=0.0,
        description="A wave already joined upstream (recommendations, intent, CVR, events) "
        "runs its ONNX Runtime call on the event loop instead of the ORT thread when this "
        "graph's recent calls say it takes at most this many microseconds (the hop to the "
        "thread costs about as much as a small call); 0 sends every call to the thread.",
    )
    queue_capacity: int = Field(
        default=1024,
        ge=1,
        description="Requests that may wait per graph; beyond it the service answers 503 with "
        "Retry-After instead of queueing without bound.",
    )
    poll_interval_s: float = Field(
        default=10.0,
        ge=0.0,
        description="Seconds between scans of the artifacts folder for new versions; 0 turns "
        "polling off (`POST /v1/models/reload` still works).",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Lowest level written to the JSON-lines log on stderr."
    )
    redis_cluster: bool = Field(
        default=False,
        description="Treat `REDIS_URL` as a Redis Cluster node (a `redis+cluster://` URL says the "
        "same); keys carry hash tags so one user's keys share a slot.",
    )
    count_bucket_seconds: int = Field(
        default=3600,
        gt=0,
        description="Width of the per-user behaviour-count buckets the intent model reads: 3600 "
        "(hourly) or 86400 (daily); must divide one day.",
    )
    count_retention_seconds: int = Field(
        default=60 * 86_400, gt=0, description="How long per-user behaviour counts are kept."
    )
    sequence_max: int = Field(
        default=200, gt=0, description="Most recent events kept in each user's behaviour sequence."
    )
    state_ttl_seconds: int = Field(
        default=30 * 86_400,
        ge=0,
        description="An idle user's behaviour sequence and model states expire this long after "
        "the user's last event (0: never), so users who never return do not fill Redis.",
    )
    idempotency_ttl_seconds: int = Field(
        default=7 * 86_400,
        gt=0,
        description="How long an event id is remembered, so a retried event is not applied twice.",
    )
    events_mode: Literal["cas", "log"] = Field(
        default="cas",
        description="How `POST /v1/events` writes: `cas`, every replica applies its events with "
        "compare-and-set before answering `applied`; `log`, events are answered `accepted` "
        "once appended to a durable log in Redis (user side written), and the one replica "
        "holding the log's lease applies the model states in commit order "
        "(docs/consistency.md). `log` needs one Redis server, not a cluster.",
    )
    event_log_max_entries: int = Field(
        default=100_000,
        gt=0,
        description="In the `log` mode, events appended but not yet applied before appends are "
        "answered 503 with Retry-After (the log's writer is behind or down); at the measured "
        "apply rate of two cores this bounds the lag to about ten seconds.",
    )
    max_future_seconds: float = Field(
        default=300.0,
        ge=0.0,
        le=86_400.0,
        description="How far ahead of the server clock an event's timestamp may be (client clock "
        "skew); later events are rejected, since one of them would make every real event of "
        "its user stale until that time.",
    )
    shutdown_delay_s: float = Field(
        default=5.0,
        ge=0.0,
        le=300.0,
        description="On SIGTERM, how long readiness answers 503 while requests are still served, "
        "so load balancers stop routing here before the listener closes (0: stop at once).",
    )
    drain_timeout_s: float = Field(
        default=20.0,
        ge=0.0,
        description="On shutdown, how long in-flight requests get to finish before the process "
        "stops anyway.",
    )

    @model_validator(mode="after")
    def _log_needs_one_server(self) -> Settings:
        cluster = self.redis_cluster or "+cluster://" in (self.redis_url or "")
        if self.events_mode == "log" and cluster:
            raise ValueError(
                "events_mode 'log' needs one Redis server: its append writes a user's keys and "
                "the shared log in one script, which a cluster cannot do across slots"
            )
        return self

    def intra_threads(self) -> int:
        """The thread count ONNX Runtime gets: the setting, or every core when it is 0."""
        return self.intra_op_threads or (os.cpu_count() or 1)


def env_name(field: str) -> str:
    """The environment variable(s) that set `field`, as the table shows them."""
    if field == "redis_url":
        return "`REDIS_URL` (or `SALECAST_REDIS_URL`)"
    return f"`{ENV_PREFIX}{field.upper()}`"


def settings_environment(settings: Settings) -> dict[str, str]:
    """`settings` as the environment variables that recreate them in another process."""
    out = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        key = "SALECAST_REDIS_URL" if name == "redis_url" else f"{ENV_PREFIX}{name.upper()}"
        out[key] = str(value)
    return out


def _default_text(value: Any) -> str:
    if value is None:
        return "unset"
    return f"`{value}`"


def settings_table_markdown() -> str:
    """The README's configuration table, one row per `Settings` field."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        description = (field.description or "").replace("|", "\\|")
        lines.append(f"| {env_name(name)} | {_default_text(field.default)} | {description} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    # `python -m service.config` prints the README's configuration table, so the README
    # is regenerated from the code rather than edited by hand.
    sys.stdout.write(settings_table_markdown())
