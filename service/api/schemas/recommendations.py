"""Schemas of `GET /v1/recommendations/{user_id}` (IMN-Net next-item recommendations)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class RecommendedItem(BaseModel):
    item_id: str
    score: float = Field(
        description="fused IMN score (eq. 23; higher is better), or the item's interaction "
        "count when `fallback` is true"
    )


class RecommendationResponse(BaseModel):
    user_id: str
    model_version: str
    k: int
    fallback: bool = Field(
        description="true when the user has no IMN state yet and the list is by popularity"
    )
    fallback_reason: str | None = None
    items: list[RecommendedItem]
