"""Request/response models of `POST /v1/events`.

The batch accepts each event as either a well-formed `EventIn` or any JSON object: a
malformed *event* must not fail the whole batch (the pipeline re-validates it and reports it
as `rejected` with the reason), while a malformed *batch* (not a list, too long) is a 422.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.events import MAX_EVENTS, EventIn

__all__ = ["EventIn", "EventLogStatus", "EventResult", "EventsRequest", "EventsResponse"]

EventItem = Annotated[EventIn | dict[str, Any], Field(union_mode="left_to_right")]


class EventsRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "events": [
                        {
                            "event_id": "e-1001",
                            "user_id": "u1",
                            "item_id": "i10",
                            "category_id": "c1",
                            "action": "browse",
                            "timestamp": 1733050800,
                        },
                        {
                            "event_id": "e-1002",
                            "user_id": "u1",
                            "item_id": "i10",
                            "category_id": "c1",
                            "action": "cart",
                            "timestamp": 1733051400,
                        },
                    ]
                }
            ]
        },
    )
    events: list[EventItem] = Field(
        min_length=1,
        max_length=MAX_EVENTS,
        description="behaviour events, any order; applied in (timestamp, event_id) order",
    )


class EventResult(BaseModel):
    index: int = Field(description="position of the event in the request")
    event_id: str | None
    status: Literal["applied", "accepted", "duplicate", "rejected"] = Field(
        description="`accepted` only in the single-writer mode (`SALECAST_EVENTS_MODE=log`): "
        "appended to the event log, user side written, model states written by the log's "
        "writer once `GET /v1/events/log` reports `applied` at or past `commit`"
    )
    reason: str | None = Field(
        default=None, description="why an event was not applied (None when applied)"
    )
    commit: int | None = Field(
        default=None,
        description="applied or accepted on a single Redis server: the store's commit number; "
        "replaying applied events serially in this order gives the same states (see "
        "docs/consistency.md). In the log mode a `duplicate` carries the commit its first "
        "copy was accepted with, so a client whose answer was lost still learns it",
    )


class EventsResponse(BaseModel):
    applied: int
    accepted: int = Field(default=0, description="appended to the event log (single-writer mode)")
    duplicate: int
    rejected: int
    models: list[str] = Field(description="state updaters (models) the events were applied to")
    results: list[EventResult]


class EventLogStatus(BaseModel):
    """Where the event log stands (single-writer mode): what is appended, what is applied."""

    mode: Literal["cas", "log"] = Field(description="`SALECAST_EVENTS_MODE` of this replica")
    appended: int | None = Field(
        default=None, description="the newest commit number (events appended or applied)"
    )
    applied: int | None = Field(
        default=None,
        description="every accepted event with a commit at or below this has its model "
        "states written (None: none yet, or the compare-and-set mode)",
    )
    pending: int | None = Field(default=None, description="events in the log not yet applied")
    writer: bool = Field(default=False, description="this replica holds the log's writer lease")
