"""Request/response models of the promotion-item forecasts (DINOP)."""

from __future__ import annotations

import datetime as dt
import math
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from service.api.schemas.types import ID_PATTERN, Day, Identifier

MAX_ITEMS = 5_000
MAX_PAIRS = 5_000


class PromotionRef(BaseModel):
    """A promotion day: its type (a day type the model was trained on) and its date."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"type": "thanksgiving", "date": "2013-11-29"}]}
    )

    type: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=ID_PATTERN)] = (
        Field(examples=["thanksgiving"])
    )
    date: Day = Field(examples=["2012-11-23"])


class PromotionItem(BaseModel):
    """An item is one (region, category) sales series (Walmart: store x department)."""

    region: Identifier
    category: Identifier


def _finite(values: list[float] | None) -> list[float] | None:
    if values is not None and not all(math.isfinite(v) for v in values):
        raise ValueError("must be finite numbers")
    return values


class PromotionForecastRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "promotion": {"type": "thanksgiving", "date": "2013-11-29"},
                    "items": [
                        {"region": "R01", "category": "C01"},
                        {"region": "R02", "category": "C01"},
                    ],
                }
            ]
        }
    )
    promotion: PromotionRef
    items: list[PromotionItem] = Field(min_length=1, max_length=MAX_ITEMS)
    # ACT features of the activity to join (JA task); omitted -> no JA probability.
    activity: list[float] | None = Field(default=None, max_length=1024)

    @field_validator("activity")
    @classmethod
    def _finite_activity(cls, value: list[float] | None) -> list[float] | None:
        return _finite(value)


class ItemForecast(BaseModel):
    region: str
    category: str
    gmv: float  # promotion-day GMV, the sales data's currency units
    best_seller_probability: float  # eq. 1
    slot_probabilities: list[float]  # eq. 2: slot 1 (best) .. 10
    slot: int  # the most likely slot, 1..10
    join_activity_probability: float | None  # null when the model has no trained JA head
    presale_periods_seen: int  # pre-sale periods folded into the item's state so far
    known_item: bool  # region and category were in the training vocabulary


class PromotionForecastResponse(BaseModel):
    model_version: str
    promotion: PromotionRef
    items: list[ItemForecast]
    notes: list[str] = Field(default_factory=list)


class PromotionRegisterResponse(BaseModel):
    key: str
    promotion: PromotionRef
    presale_periods: list[dt.date]  # the periods whose sales advance the item states
    static_periods: list[dt.date]  # the window the static profiles are read from


class PromotionList(BaseModel):
    promotions: list[PromotionRef]


class BuyPair(BaseModel):
    user: Identifier
    region: Identifier
    category: Identifier
    user_features: list[float] = Field(min_length=1, max_length=1024)

    @field_validator("user_features")
    @classmethod
    def _finite_features(cls, value: list[float]) -> list[float]:
        return _finite(value) or []


class BuyThroughRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "promotion": {"type": "thanksgiving", "date": "2013-11-29"},
                    "pairs": [
                        {"user": "u1", "region": "R01", "category": "C01", "user_features": [0.4]}
                    ],
                }
            ]
        }
    )
    promotion: PromotionRef
    pairs: list[BuyPair] = Field(min_length=1, max_length=MAX_PAIRS)


class BuyThroughScore(BaseModel):
    user: str
    region: str
    category: str
    probability: float


class BuyThroughResponse(BaseModel):
    model_version: str
    promotion: PromotionRef
    scores: list[BuyThroughScore]
