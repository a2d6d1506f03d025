"""What a behaviour event is: the request schema (`EventIn`), the validated `Event`, actions.

Validation is per event, so one bad event is `rejected` with its reason while the rest of the
batch goes through (`validate_events`). The common case, a batch with nothing wrong, is
validated in one pydantic call over the whole list; only a batch with errors is re-validated
event by event to find which ones.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from service.actions import ACTION_ALIASES

# Per call: a full batch (about 0.27 MB) parses in about 16 ms on one core, so a liveness probe
# waiting behind a few of them still answers within 100 ms (bench/faults, "liveness").
MAX_EVENTS = 2_000
# `accepted`: in the event log, applied to the model states by the log's one writer shortly
# after (the single-writer mode, `service.events.log_writer`); the others are final.
Status = Literal["applied", "accepted", "duplicate", "rejected"]
# No control characters (the unit separator U+001F joins sequence fields in Redis), no DEL,
# no bidirectional controls (they make logs and dashboards show something else).
ID_PATTERN = r"^[^\x00-\x1f\x7f\u200e\u200f\u202a-\u202e\u2066-\u2069]+$"
# Unix seconds accepted anywhere: 2100-01-01T00:00:00Z, inside every date type used.
MAX_UNIX_SECONDS = 4_102_444_800


class EventIn(BaseModel):
    """One behaviour event as a client sends it."""

    model_config = ConfigDict(extra="forbid")
    event_id: str = Field(
        min_length=1,
        max_length=128,
        pattern=ID_PATTERN,
        description="unique per user; retries resend it",
    )
    user_id: str = Field(min_length=1, max_length=128, pattern=ID_PATTERN)
    item_id: str = Field(min_length=1, max_length=128, pattern=ID_PATTERN)
    action: str = Field(
        description="browse | collect | cart | purchase (click/pv/view = browse, fav = collect, "
        "buy = purchase)"
    )
    timestamp: float = Field(description="Unix seconds, or an ISO-8601 time (UTC if no zone)")
    category_id: str | None = Field(default=None, min_length=1, max_length=128, pattern=ID_PATTERN)
    features: dict[str, float] | None = Field(
        default=None, max_length=64, description="optional numeric context for state updaters"
    )

    @field_validator("action", mode="before")
    @classmethod
    def _action(cls, value: Any) -> str:
        canonical = (
            ACTION_ALIASES.get(value) or ACTION_ALIASES.get(value.strip().lower())
            if isinstance(value, str)
            else None
        )
        if canonical is None:
            raise ValueError(f"must be one of {', '.join(ACTION_ALIASES)}")
        return canonical

    @field_validator("timestamp", mode="before")
    @classmethod
    def _timestamp(cls, value: Any) -> float:
        if isinstance(value, bool):
            raise ValueError("must be Unix seconds or an ISO-8601 time")
        if isinstance(value, int | float):
            ts = float(value)
        elif isinstance(value, str):
            try:
                ts = float(value)
            except ValueError:
                try:
                    parsed = datetime.fromisoformat(value.strip())
                except ValueError as exc:
                    raise ValueError("must be Unix seconds or an ISO-8601 time") from exc
                if parsed.tzinfo is None:
                    parsed = parsed.replace(tzinfo=UTC)
                ts = parsed.timestamp()
        else:
            raise ValueError("must be Unix seconds or an ISO-8601 time")
        if not math.isfinite(ts) or not 0 <= ts <= MAX_UNIX_SECONDS:
            raise ValueError(f"must be a time from 0 to {MAX_UNIX_SECONDS} Unix seconds (2100)")
        return ts

    @field_validator("features")
    @classmethod
    def _features(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is not None and not all(math.isfinite(v) for v in value.values()):
            raise ValueError("feature values must be finite")
        return value


_BATCH = TypeAdapter(list[EventIn])


@dataclass(slots=True)
class Event:
    """A validated event with its position in the request."""

    index: int
    event_id: str
    user_id: str
    item_id: str
    action: str
    ts: float
    category_id: str | None = None
    features: Mapping[str, float] = field(default_factory=dict)  # never mutated

    @property
    def order(self) -> tuple[float, str]:
        return (self.ts, self.event_id)


@dataclass(frozen=True)
class Invalid:
    """An event that failed validation: where and why."""

    index: int
    event_id: str | None
    field: str
    reason: str


def _error_reason(exc: ValidationError) -> tuple[str, str]:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err.get("loc", ())) or "event"
    return loc, f"{loc}: {err.get('msg', 'invalid')}"


def validate_events(raw: Sequence[EventIn | Mapping[str, Any]]) -> list[EventIn | Invalid]:
    """Each raw event as an `EventIn`, or `Invalid` with the field and the reason."""
    if all(isinstance(r, EventIn) for r in raw):
        return list(raw)  # type: ignore[arg-type]
    try:
        return list(_BATCH.validate_python(list(raw)))
    except ValidationError:
        pass  # some event is bad: find which, one by one
    out: list[EventIn | Invalid] = []
    for i, r in enumerate(raw):
        try:
            out.append(r if isinstance(r, EventIn) else EventIn.model_validate(r))
        except ValidationError as exc:
            field_name, reason = _error_reason(exc)
            event_id = r.get("event_id") if isinstance(r, Mapping) else None
            out.append(
                Invalid(i, event_id if isinstance(event_id, str) else None, field_name, reason)
            )
    return out
