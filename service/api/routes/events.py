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
from service.api.schemas.events import EventLogStatus, EventsRequest, EventsResponse
from service.errors import NotReady
from service.events import EventPipeline
from service.events.event_log import EventLog
from service.events.ingest import EventIngestor
from service.events.log_applier import LogApplier

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
    applier: LogApplier | None = getattr(state, "log_applier", None)
    pipeline = EventPipeline(
        store,
        state.updaters,
        max_future_seconds=state.settings.max_future_seconds,
        event_log=(
            EventLog(store, max_entries=state.settings.event_log_max_entries)
            if state.settings.events_mode == "log"
            else None
        ),
        on_append=None if applier is None else applier.notify,
    )
    state.events = ingestor = EventIngestor(pipeline)
    return ingestor


@router.hot("/v1/events", "POST", response_model=EventsResponse, body=EventsRequest)
async def post_events(request: Request) -> Response:
    """Apply events (compare-and-set mode) or append them to the event log (log mode).

    Each event comes back as `applied`, `accepted` (log mode: appended, model states written
    shortly after, see `GET /v1/events/log`), `duplicate` (its id was already applied:
    retries are safe) or `rejected` with a reason (invalid, or older than the state already
    stored). A 503 means nothing after the failure point was applied; resend the whole
    batch. Batches arriving together are applied together (`EventIngestor`), as one batch
    would be.
    """
    body = await body_as(request, EventsRequest)
    result = await ingestor_for(request).submit(body.events)
    counts = {"applied": 0, "accepted": 0, "duplicate": 0, "rejected": 0}
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


@router.get("/v1/events/log", response_model=EventLogStatus)
async def event_log_status(request: Request) -> EventLogStatus:
    """What the event log has appended and applied: a client that needs its `accepted`
    events' model states (read-your-writes) waits until `applied` reaches its `commit`."""
    state = request.app.state
    mode = state.settings.events_mode
    store = getattr(state, "store", None)
    if mode != "log":
        return EventLogStatus(mode=mode)
    if store is None:
        raise NotReady("the state store is not connected")
    applied, newest, pending = await EventLog(store).marks()
    applier: LogApplier | None = getattr(state, "log_applier", None)
    return EventLogStatus(
        mode=mode,
        appended=newest,
        applied=applied,
        pending=pending,
        writer=bool(applier and applier.holding),
    )
