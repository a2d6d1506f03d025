"""JSON-lines logging with the request id of the current request.

One JSON object per line on stderr, so log shippers need no parsing rules. The request id lives
in a contextvar: the HTTP middleware sets it, asyncio copies it into every task a request
starts, and the formatter stamps it on each line, so core code never passes ids around.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import sys
from typing import Any

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "salecast_request_id", default=None
)

# Attributes every LogRecord has; anything else was passed with `extra=` and is logged as a field.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


def current_request_id() -> str | None:
    """The id of the request being served by this task, or None outside a request."""
    return REQUEST_ID.get()


class JsonFormatter(logging.Formatter):
    """Render a record as one JSON object: time, level, logger, message, request id, extras."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or REQUEST_ID.get()
        if request_id:
            payload["request_id"] = request_id
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in payload:
                payload[key] = value
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


def configure_logging(level: str = "INFO", stream: Any = None) -> None:
    """Route the root logger (and uvicorn's) through one JSON-lines handler.

    Idempotent: calling it again (a second app in the same test process) replaces the handler
    rather than doubling every line.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.set_name("salecast-json")
    root = logging.getLogger()
    for existing in list(root.handlers):
        if existing.get_name() == "salecast-json":
            root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uv = logging.getLogger(name)
        uv.handlers = []
        uv.propagate = True
    # The middleware writes one access line per request with the request id; uvicorn's own
    # access log would repeat it without one.
    logging.getLogger("uvicorn.access").disabled = True
    # Client libraries (the test client's httpx) log every call at INFO; not service events.
    logging.getLogger("httpx").setLevel(logging.WARNING)
