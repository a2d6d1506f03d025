"""`POST /v1/coupons/allocate`: choose coupon receivers within a budget from intent scores."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.deps import OptionalStoreDep, RegistryDep
from service.api.routes.intent import to_user_inputs
from service.api.schemas.intent import AllocateRequest, AllocateResponse
from service.servables.coupons import allocate
from service.servables.intent import MODEL, SERVABLE, count_source

router = APIRouter(tags=["coupons"])

COLD_START_REASON = "no behaviour before the cut time: cold start, no model score to allocate on"


@router.post("/v1/coupons/allocate", response_model=AllocateResponse)
async def allocate_coupons(
    body: AllocateRequest, registry: RegistryDep, store: OptionalStoreDep
) -> AllocateResponse:
    """Score the candidates with TPG-DNN, then fill the budget by `threshold` or `budget`.

    Total cost never exceeds `budget`. Cold-start candidates are listed with the reason and
    never allocated (there is no evidence to rank them on).
    """
    loaded = registry.get(MODEL)
    candidates = list(body.candidates)
    users = to_user_inputs(candidates)  # type: ignore[arg-type]
    _, scores = await SERVABLE.score(loaded, users, count_source(store), body.at)
    costs = [None if isinstance(c, str) else c.cost for c in candidates]
    warm = [i for i, s in enumerate(scores) if not s["cold_start"]]
    threshold = body.threshold
    if body.strategy == "threshold" and threshold is None:
        threshold = SERVABLE.config(loaded).thresholds["purchase"]
    chosen = allocate(
        [scores[i]["user_id"] for i in warm],
        [scores[i] for i in warm],
        budget=body.budget,
        coupon_cost=body.coupon.cost,
        coupon_value=body.coupon.value,
        strategy=body.strategy,
        threshold=threshold,
        costs=[costs[i] for i in warm],
    )
    return AllocateResponse(
        model_version=loaded.version,
        strategy=body.strategy,
        threshold=threshold if body.strategy == "threshold" else None,
        budget=body.budget,
        spent=sum(c["cost"] for c in chosen),
        expected_value=sum(c["expected_value"] for c in chosen),
        chosen=chosen,  # type: ignore[arg-type]
        not_chosen=len(warm) - len(chosen),
        cold_start=[
            {"user_id": s["user_id"], "reason": COLD_START_REASON}  # type: ignore[misc]
            for s in scores
            if s["cold_start"]
        ],
    )
