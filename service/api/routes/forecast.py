"""`POST /v1/forecast/festival`: STMP forecasts per category and period, with intervals."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.deps import RegistryDep, StoreDep
from service.api.schemas.forecast import FestivalForecastRequest, FestivalForecastResponse
from service.servables.stmp import MODEL, SERVABLE, StoreSalesHistory

router = APIRouter(tags=["forecast"])


@router.post("/v1/forecast/festival", response_model=FestivalForecastResponse)
async def festival_forecast(
    body: FestivalForecastRequest, registry: RegistryDep, store: StoreDep
) -> FestivalForecastResponse:
    """Mean and 80 % / 95 % intervals (sampled psi) for a region's categories.

    Give `start` (and optionally `end`) for a date range, or `day_type` for the next
    occurrence of that festival after the region's known history. The model version is
    taken once, so a swap never changes it under the request.
    """
    loaded = registry.get(MODEL)  # NotReady (503) when none is loaded
    history = StoreSalesHistory(store, loaded.version)
    result = await SERVABLE.forecast(
        loaded, history, body.region, body.start, body.end, body.day_type, body.categories
    )
    return FestivalForecastResponse.model_validate(result)
