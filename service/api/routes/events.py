"""`POST /v1/events`: apply a batch of behaviour events to the online state.

A hot route (`service.api.fast`): the body is validated from its bytes, the answer is bytes.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from service.api.fast import body_as, json_response, openapi
from service.api.schemas.events import EventsRequest, EventsResponse
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


@router.post("/v1/events", response_model=EventsResponse, openapi_extra=openapi(body=EventsRequest))
async def post_events(request: Request) -> Response:
    """Apply events through the compare-and-set path.

    Each event comes back as `applied`, `duplicate` (its id was already applied: retries are
    safe) or `rejected` with a reason (invalid, or older than the state already stored). A
    503 means nothing after the failure point was applied; resend the whole batch.
    """
    body = await body_as(request, EventsRequest)
    result = await pipeline_for(request).process(body.events)
    counts = {"applied": 0, "duplicate": 0, "rejected": 0}
    results = []
    for o in result.results:
        counts[o.status] += 1
        results.append(
            {
                "index": o.index,
                "event_id": o.event_id,
                "status": o.status,
                "reason": o.reason,
                "commit": o.commit,
            }
        )
    return json_response({**counts, "models": result.models, "results": results})
