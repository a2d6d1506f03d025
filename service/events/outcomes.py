"""What the pipeline answers per event, and the counters each answer bumps."""

from __future__ import annotations

from dataclasses import dataclass

from service.events.schema import Event, EventIn, Status
from service.metrics import EVENTS_APPLIED, EVENTS_DUPLICATE, EVENTS_REJECTED


@dataclass
class EventOutcome:
    index: int
    event_id: str | None
    status: Status
    reason: str | None = None
    commit: int | None = None  # applied on a single server: the store's commit number


@dataclass
class BatchResult:
    results: list[EventOutcome]
    models: list[str]

    def count(self, status: Status) -> int:
        return sum(1 for r in self.results if r.status == status)


def fmt_version(version: tuple[float, str]) -> str:
    return f"(ts={version[0]!r}, event_id={version[1]!r})"


def rejected(index: int, event_id: str | None, field_name: str, reason: str) -> EventOutcome:
    label = field_name.split(".")[0] if field_name else "event"
    if label not in EventIn.model_fields and label not in ("stale", "state"):
        label = "event"  # unknown (extra) field names must not grow the label set
    EVENTS_REJECTED.labels(field=label).inc()
    return EventOutcome(index, event_id, "rejected", reason)


def duplicate(index: int, event_id: str, reason: str) -> EventOutcome:
    EVENTS_DUPLICATE.inc()
    return EventOutcome(index, event_id, "duplicate", reason)


def applied(e: Event, commit: int | None = None) -> EventOutcome:
    EVENTS_APPLIED.labels(action=e.action).inc()
    return EventOutcome(e.index, e.event_id, "applied", None, commit)


def stale(e: Event, newer: tuple[float, str]) -> EventOutcome:
    return rejected(
        e.index, e.event_id, "stale", f"stale: older than the stored state {fmt_version(newer)}"
    )


def conflict_exhausted(e: Event) -> EventOutcome:
    return rejected(e.index, e.event_id, "state", "conflict: state kept changing; retry")
