"""`POST /v1/events`: apply a batch of behaviour events to the online state."""

from __future__ import annotations

from fastapi import APIRouter, Request

from service.api.schemas.events import EventResult, EventsRequest, EventsResponse
from service.errors import NotReady
from service.events import EventPipeline

router = APIRouter(tags=["events"])


def pipeline_for(request: Request) -> EventPipeline:
    """The app's pipeline (`app.state.events`), built over `app.state.store` (again if the
    store was reconnected); 503 while no state store is connected."""
    state = request.app.state
    store = getattr(state, "store", None)
    if store is None:
        raise NotReady("the state store is not connected")
    pipeline = getattr(state, "events", None)
    if isinstance(pipeline, EventPipeline) and pipeline.store is store:
        return pipeline
    pipeline = EventPipeline(
        store,
        state.updaters,
        max_future_seconds=state.settings.max_future_seconds,
    )
    state.events = pipeline
    return pipeline


@router.post("/v1/events", response_model=EventsResponse)
async def post_events(body: EventsRequest, request: Request) -> EventsResponse:
    """Apply events through the compare-and-set path.

    Each event comes back as `applied`, `duplicate` (its id was already applied: retries are
    safe) or `rejected` with a reason (invalid, or older than the state already stored). A
    503 means nothing after the failure point was applied; resend the whole batch.
    """
    result = await pipeline_for(request).process(body.events)
    return EventsResponse(
        applied=result.count("applied"),
        duplicate=result.count("duplicate"),
        rejected=result.count("rejected"),
        models=result.models,
        results=[
            EventResult(
                index=o.index,
                event_id=o.event_id,
                status=o.status,
                reason=o.reason,
                commit=o.commit,
            )
            for o in result.results
        ],
    )
