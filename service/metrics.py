"""Every Prometheus metric of the service, in one place.

Dashboards and alert rules (deploy/) name these series; keeping all definitions here lets a
test check that each one exists and keeps label sets consistent between engineers' modules.
Latency buckets start at 0.1 ms because most model calls finish well under a millisecond and
a histogram whose first bucket is 5 ms hides exactly the regressions that matter.

Usage by other modules (labels as declared):
    EVENTS_APPLIED.labels(action="purchase").inc()
    EVENTS_DUPLICATE.inc(); EVENTS_REJECTED.labels(field="events.3.ts").inc()
    CAS_CONFLICTS.labels(state="imn").inc()
    with REDIS_LATENCY.labels(operation="evalsha").time(): ...
    REDIS_ERRORS.labels(operation="evalsha").inc()
    SERVED_SCORE.labels(model="intent", output="p_purchase").observe(p)
"""

from __future__ import annotations

from prometheus_client import REGISTRY, Counter, Gauge, Histogram

# Seconds: 0.1 ms .. 10 s.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
BATCH_BUCKETS: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
# Served scores are probabilities (0..1) or volumes/quantities (larger): both ranges covered.
SCORE_BUCKETS: tuple[float, ...] = (
    0.01,
    0.05,
    0.1,
    0.2,
    0.3,
    0.4,
    0.5,
    0.6,
    0.7,
    0.8,
    0.9,
    0.95,
    0.99,
    1.0,
    2.0,
    5.0,
    10.0,
    100.0,
    1000.0,
)

# --- HTTP -----------------------------------------------------------------------------------
REQUEST_LATENCY = Histogram(
    "salecast_http_request_duration_seconds",
    "HTTP request latency by route template, method and status code.",
    ["route", "method", "status"],
    buckets=LATENCY_BUCKETS,
)
REQUESTS_IN_FLIGHT = Gauge(
    "salecast_http_requests_in_flight", "HTTP requests being served right now."
)

# --- runtime: per model and graph -----------------------------------------------------------
MODEL_LATENCY = Histogram(
    "salecast_model_request_duration_seconds",
    "Time one infer() call takes, queueing included, by model and graph.",
    ["model", "graph"],
    buckets=LATENCY_BUCKETS,
)
ORT_INFERENCE = Histogram(
    "salecast_ort_inference_seconds",
    "ONNX Runtime run time of one (batched) call, by model and graph.",
    ["model", "graph"],
    buckets=LATENCY_BUCKETS,
)
BATCH_SIZE = Histogram(
    "salecast_batch_size_rows",
    "Rows per micro-batched ONNX Runtime call, by model and graph.",
    ["model", "graph"],
    buckets=BATCH_BUCKETS,
)
BATCH_REQUESTS = Histogram(
    "salecast_batch_requests",
    "Requests joined into one ONNX Runtime call, by model and graph.",
    ["model", "graph"],
    buckets=BATCH_BUCKETS,
)
QUEUE_DEPTH = Gauge(
    "salecast_batch_queue_depth",
    "Requests waiting for a model, by model and graph: in the graph's micro-batcher queue, "
    'or for a wave of the servable\'s coalescer (graph="wave").',
    ["model", "graph"],
)
QUEUE_WAIT = Histogram(
    "salecast_queue_wait_seconds",
    "Time a request waited in a micro-batcher queue before its ONNX Runtime call started.",
    ["model", "version", "graph"],
    buckets=LATENCY_BUCKETS,
)
INFERENCE_FAILURES = Counter(
    "salecast_inference_failures_total",
    "Requests whose ONNX Runtime call failed, by model, version and graph.",
    ["model", "version", "graph"],
)
QUEUE_REJECTED = Counter(
    "salecast_batch_queue_rejected_total",
    "Requests refused with 503 because a micro-batcher queue was full.",
    ["model", "graph"],
)
MODEL_VERSION_INFO = Gauge(
    "salecast_model_version_info",
    "1 for the version of each model being served, with its execution provider.",
    ["model", "version", "provider"],
)
MODEL_READY = Gauge(
    "salecast_model_ready",
    "1 while a model has a warm version serving, 0 once it has none.",
    ["model"],
)
BUILD_INFO = Gauge(
    "salecast_build_info",
    "1, labelled with the running salecast, Python and ONNX Runtime versions.",
    ["version", "python", "onnxruntime"],
)
MODEL_LOADS = Counter(
    "salecast_model_loads_total",
    "Model version load attempts by outcome (loaded, refused).",
    ["model", "outcome"],
)
SERVED_SCORE = Histogram(
    "salecast_served_score",
    "Distribution of served model outputs, for drift dashboards, by model and output.",
    ["model", "output"],
    buckets=SCORE_BUCKETS,
)

# --- state store (Redis) --------------------------------------------------------------------
REDIS_LATENCY = Histogram(
    "salecast_redis_operation_seconds",
    "Redis operation latency by operation name.",
    ["operation"],
    buckets=LATENCY_BUCKETS,
)
REDIS_ERRORS = Counter(
    "salecast_redis_errors_total", "Redis operations that failed, by operation.", ["operation"]
)
EMBEDDED_REDIS_RESTARTS = Counter(
    "salecast_embedded_redis_restarts_total",
    "Times the supervised embedded valkey-server died and was started again.",
)
CAS_CONFLICTS = Counter(
    "salecast_cas_conflicts_total",
    "Compare-and-set writes refused because newer state was already stored, by state kind.",
    ["state"],
)

# --- events pipeline ------------------------------------------------------------------------
EVENTS_APPLIED = Counter(
    "salecast_events_applied_total", "Events accepted and applied, by action.", ["action"]
)
EVENTS_ACCEPTED = Counter(
    "salecast_events_accepted_total",
    "Events appended to the event log (single-writer mode), by action; applied later.",
    ["action"],
)
EVENT_LOG_LAG = Histogram(
    "salecast_event_log_lag_seconds",
    "From an event's append to the event log until its chunk's states are written.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
EVENT_LOG_PENDING = Gauge(
    "salecast_event_log_pending",
    "Events in the log not yet applied, as the replica holding the writer lease last saw.",
)
EVENT_LOG_WRITER = Gauge(
    "salecast_event_log_writer",
    "1 while this process holds the event log's writer lease, else 0.",
)
EVENTS_DUPLICATE = Counter(
    "salecast_events_duplicate_total", "Events dropped because their idempotency key was seen."
)
EVENTS_REJECTED = Counter(
    "salecast_events_rejected_total", "Events refused as invalid, by offending field.", ["field"]
)

ALL_METRICS = (
    REQUEST_LATENCY,
    REQUESTS_IN_FLIGHT,
    MODEL_LATENCY,
    ORT_INFERENCE,
    BATCH_SIZE,
    BATCH_REQUESTS,
    QUEUE_DEPTH,
    QUEUE_REJECTED,
    MODEL_VERSION_INFO,
    MODEL_READY,
    BUILD_INFO,
    QUEUE_WAIT,
    INFERENCE_FAILURES,
    MODEL_LOADS,
    SERVED_SCORE,
    REDIS_LATENCY,
    REDIS_ERRORS,
    EMBEDDED_REDIS_RESTARTS,
    CAS_CONFLICTS,
    EVENTS_APPLIED,
    EVENTS_ACCEPTED,
    EVENT_LOG_LAG,
    EVENT_LOG_PENDING,
    EVENT_LOG_WRITER,
    EVENTS_DUPLICATE,
    EVENTS_REJECTED,
)

__all__ = [name for name in globals() if name.isupper()] + ["REGISTRY"]
