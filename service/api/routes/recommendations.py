"""`GET /v1/recommendations/{user_id}?k=`: the next items a user is most likely to act on."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from service.api.schemas.recommendations import RecommendationResponse, RecommendedItem
from service.servables.imn import MODEL, install, recommend

router = APIRouter(tags=["recommendations"])

__all__ = ["install", "router"]


@router.get("/v1/recommendations/{user_id}", response_model=RecommendationResponse)
async def get_recommendations(
    request: Request,
    user_id: Annotated[str, Path(min_length=1, max_length=128)],
    k: Annotated[int, Query(description="how many items (1 .. the model's k max)")] = 20,
    at: Annotated[
        float | None,
        Query(ge=0, description="Unix seconds the ranking is for (default: now)"),
    ] = None,
) -> RecommendationResponse:
    """Top-k items ranked by IMN-Net from the user's state in Redis and the item table.

    A user with no state yet gets the most popular items with `fallback: true`. `k` outside
    1..k max is a 422 naming `k`.
    """
    loaded = request.app.state.registry.get(MODEL)  # NotReady (503) when none is loaded
    rec = await recommend(loaded, getattr(request.app.state, "store", None), user_id, k, at)
    return RecommendationResponse(
        user_id=user_id,
        model_version=rec.version,
        k=len(rec.items),
        fallback=rec.fallback,
        fallback_reason=rec.reason,
        items=[RecommendedItem(item_id=i, score=s) for i, s in rec.items],
    )
