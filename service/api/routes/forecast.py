"""`POST /v1/forecast/festival`: STMP forecasts per category and period, with intervals."""

from __future__ import annotations

from fastapi import Request, Response

from service.api.deps import get_store
from service.api.fast import HotRouter, body_as, json_response
from service.api.schemas.forecast import FestivalForecastRequest, FestivalForecastResponse
from service.servables.stmp import MODEL, SERVABLE, StoreSalesHistory

router = HotRouter(tags=["forecast"])


@router.hot(
    "/v1/forecast/festival",
    "POST",
    response_model=FestivalForecastResponse,
    body=FestivalForecastRequest,
)
async def festival_forecast(request: Request) -> Response:
    """Mean and 80 % / 95 % intervals (sampled psi) for a region's categories.

    Give `start` (and optionally `end`) for a date range, or `day_type` for the next
    occurrence of that festival after the region's known history. The model version is
    taken once, so a swap never changes it under the request.
    """
    body = await body_as(request, FestivalForecastRequest)
    loaded = request.app.state.registry.get(MODEL)  # NotReady (503) when none is loaded
    history = StoreSalesHistory(get_store(request), loaded.version)
    result = await SERVABLE.forecast(
        loaded, history, body.region, body.start, body.end, body.day_type, body.categories
    )
    return json_response(result)
