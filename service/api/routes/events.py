"""`POST /v1/events`: apply a batch of behaviour events to the online state.

Every accepted event extends its user's behaviour sequence and action counts (read by the
intent and CVR servables) and runs the state updaters of the app's servables
(`app.state.updaters`, declared in each servable's `wiring`): with the default servables,
IMN's user and item state update (`service.servables.imn.IMNUpdater`, the `update` graph).
The answer's `models` lists the updaters that ran.

A hot route (`service.api.fast`): the body is validated from its bytes, the answer is bytes.
"""

from __future__ import annotations

from fastapi import Request, Response

from service.api.fast import HotRouter, body_as, json_response
from service.api.schemas.events import EventsRequest, EventsResponse
from service.errors import NotReady
from service.events import EventPipeline
from service.events.ingest import EventIngestor

router = HotRouter(tags=["events"])


def ingestor_for(request: Request) -> EventIngestor:
    """The app's single event writer (`app.state.events`), built over `app.state.store`
    (again if the store was reconnected); 503 while no state store is connected."""
    state = request.app.state
    store = getattr(state, "store", None)
    if store is None:
        raise NotReady("the state store is not connected")
    ingestor = getattr(state, "events", None)
    if isinstance(ingestor, EventIngestor) and ingestor.store is store:
        return ingestor
    pipeline = EventPipeline(
        store,
        state.updaters,
        max_future_seconds=state.settings.max_future_seconds,
    )
    state.events = ingestor = EventIngestor(pipeline)
    return ingestor


@router.hot("/v1/events", "POST", response_model=EventsResponse, body=EventsRequest)
async def post_events(request: Request) -> Response:
    """Apply events through the compare-and-set path.

    Each event comes back as `applied`, `duplicate` (its id was already applied: retries are
    safe) or `rejected` with a reason (invalid, or older than the state already stored). A
    503 means nothing after the failure point was applied; resend the whole batch. Batches
    arriving together are applied together (`EventIngestor`), as one batch would be.
    """
    body = await body_as(request, EventsRequest)
    result = await ingestor_for(request).submit(body.events)
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
