"""What the pipeline answers per event, and the counters the answers add up to."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from service.events.schema import Event, EventIn, Status
from service.metrics import EVENTS_ACCEPTED, EVENTS_APPLIED, EVENTS_DUPLICATE, EVENTS_REJECTED


@dataclass(slots=True)
class EventOutcome:
    index: int
    event_id: str | None
    status: Status
    reason: str | None = None
    commit: int | None = None  # applied or accepted on a single server: the commit number
    label: str = ""  # the metric label: the action (applied) or the field (rejected)


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
    return EventOutcome(index, event_id, "rejected", reason, label=label)


def duplicate(index: int, event_id: str, reason: str, commit: int | None = None) -> EventOutcome:
    return EventOutcome(index, event_id, "duplicate", reason, commit)


def applied(e: Event, commit: int | None = None) -> EventOutcome:
    return EventOutcome(e.index, e.event_id, "applied", None, commit, e.action)


def accepted(e: Event, commit: int) -> EventOutcome:
    return EventOutcome(e.index, e.event_id, "accepted", None, commit, e.action)


def stale(e: Event, newer: tuple[float, str]) -> EventOutcome:
    return rejected(
        e.index, e.event_id, "stale", f"stale: older than the stored state {fmt_version(newer)}"
    )


def conflict_exhausted(e: Event) -> EventOutcome:
    return rejected(e.index, e.event_id, "state", "conflict: state kept changing; retry")


def count(results: Sequence[EventOutcome]) -> None:
    """Add a batch's answers to the events counters: one increment per label, not per event."""
    tally = Counter((o.status, o.label) for o in results)
    for (status, label), n in tally.items():
        if status == "applied":
            EVENTS_APPLIED.labels(action=label).inc(n)
        elif status == "accepted":
            EVENTS_ACCEPTED.labels(action=label).inc(n)
        elif status == "duplicate":
            EVENTS_DUPLICATE.inc(n)
        else:
            EVENTS_REJECTED.labels(field=label).inc(n)
