"""The `/v1/events` pipeline: validate, order, de-duplicate and apply behaviour events.

`pipeline.EventPipeline` is the entry point; `schema` says what an event is, `waves` how a
batch is split, `atomic` and `two_phase` how it is written (one server / Redis Cluster),
`updater` how a model plugs its state update in, `outcomes` what each event is answered.
The guarantees replicas give each other are written down in docs/consistency.md.
"""

from __future__ import annotations

from service.events.outcomes import BatchResult, EventOutcome
from service.events.pipeline import EventPipeline
from service.events.schema import MAX_EVENTS, Event, EventIn
from service.events.updater import StateUpdater
from service.events.waves import make_waves

__all__ = [
    "MAX_EVENTS",
    "BatchResult",
    "Event",
    "EventIn",
    "EventOutcome",
    "EventPipeline",
    "StateUpdater",
    "make_waves",
]
