"""`POST /v1/sales`: ingest recent sales per region x category into bounded Redis history.

The history is shared by every model that forecasts from sales: STMP refreshes the region's
task representation here, and other servables (DINOP advances item states from the same
ingestion) declare a sales hook in their wiring (`service.servables.wiring`); the app holds
them in `app.state.sales_hooks` and each gets the accepted records after they are stored.
"""

from __future__ import annotations

from collections import defaultdict

from fastapi import APIRouter, Request

from service.api.deps import RegistryDep, StoreDep
from service.api.schemas.forecast import (
    RejectedRecord,
    SalesIngestRequest,
    SalesIngestResponse,
    SalesRecord,
)
from service.errors import NotReady
from service.runtime.registry import LoadedModel, ModelRegistry
from service.servables.stmp import MODEL, SERVABLE, StoreSalesHistory, unique

router = APIRouter(tags=["sales"])


def _loaded_stmp(registry: ModelRegistry) -> LoadedModel | None:
    try:
        return registry.get(MODEL)
    except NotReady:
        return None


@router.post("/v1/sales", response_model=SalesIngestResponse)
async def ingest_sales(
    body: SalesIngestRequest, registry: RegistryDep, store: StoreDep, request: Request
) -> SalesIngestResponse:
    """Store the records (bounded per region x category), refresh STMP's task
    representation of every region that got new periods, then run the registered hooks."""
    loaded = _loaded_stmp(registry)
    tables = SERVABLE.tables(loaded) if loaded is not None else None
    rejected: list[RejectedRecord] = []
    accepted: list[SalesRecord] = []
    sales: dict[str, dict[str, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    external: dict[str, dict[str, dict[str, float]]] = defaultdict(dict)
    for i, record in enumerate(body.records):
        if tables is not None:
            reason = SERVABLE.check_record(tables, record.date)
            if reason is not None:
                rejected.append(RejectedRecord(index=i, field=f"records.{i}.date", reason=reason))
                continue
        date_s = record.date.isoformat()
        sales[record.region][record.category][date_s] = record.sales
        if record.external:
            external[record.region].setdefault(date_s, {}).update(record.external)
        accepted.append(record)
    history = StoreSalesHistory(store, loaded.version if loaded is not None else "")
    for region, by_category in sales.items():
        await history.append(region, by_category, external.get(region, {}))
    regions = unique(r.region for r in accepted)
    refreshed = []
    if loaded is not None:
        for region in regions:
            if await SERVABLE.refresh_region(loaded, history, region):
                refreshed.append(region)
    for hook in request.app.state.sales_hooks:
        await hook(accepted, registry, store)
    return SalesIngestResponse(
        accepted=len(accepted), rejected=rejected, regions=regions, refreshed=refreshed
    )
