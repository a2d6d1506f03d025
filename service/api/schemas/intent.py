"""Request/response models for `POST /v1/score/intent` and `POST /v1/coupons/allocate`."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from service.actions import Action
from service.api.schemas.types import Identifier, UnixSeconds
from service.servables.intent import MAX_USERS


class BehaviourEvent(BaseModel):
    """One past behaviour of a user, for stateless scoring."""

    model_config = ConfigDict(extra="forbid")
    action: Action
    ts: UnixSeconds = Field(description="Unix seconds; only events before `at` count")


class IntentUser(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: Identifier
    events: list[BehaviourEvent] | None = Field(
        default=None,
        max_length=10_000,
        description="the user's recent behaviour; when given, Redis state is not read (stateless)",
    )


class IntentScoreRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "users": [
                        "u1",
                        {
                            "user_id": "u2",
                            "events": [
                                {"action": "browse", "ts": 1733050800},
                                {"action": "cart", "ts": 1733051400},
                            ],
                        },
                    ],
                    "at": 1733097600,
                }
            ]
        },
    )
    users: list[Identifier | IntentUser] = Field(
        min_length=1, max_length=MAX_USERS, description="user ids, or objects with events"
    )
    at: UnixSeconds | None = Field(
        default=None,
        description="cut time (Unix seconds): features use behaviour before it; default now",
    )


class IntentScore(BaseModel):
    user_id: str
    p_browse: float
    p_collect: float
    p_cart: float
    p_purchase: float
    order_volume: float = Field(description="expected purchases in the label window")
    cold_start: bool = Field(
        description="no behaviour before `at`: population base rates, not a model score"
    )
    source: Literal["state", "request", "prior"]


class IntentScoreResponse(BaseModel):
    model_version: str
    at: int = Field(description="where the features end: the request's `at` rounded up to a bucket")
    label_window_seconds: int = Field(description="the scores are for [at, at + this)")
    scores: list[IntentScore]


class Coupon(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: float = Field(ge=0, allow_inf_nan=False, description="value of one redeemed order")
    cost: float = Field(gt=0, allow_inf_nan=False, description="cost of giving the coupon")


class Candidate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: Identifier
    cost: float | None = Field(
        default=None, gt=0, allow_inf_nan=False, description="overrides coupon.cost"
    )
    events: list[BehaviourEvent] | None = Field(default=None, max_length=10_000)


class AllocateRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "candidates": ["u1", "u2", {"user_id": "u3", "cost": 1.5}],
                    "budget": 3.0,
                    "coupon": {"value": 20.0, "cost": 1.0},
                    "strategy": "budget",
                    "at": 1733097600,
                }
            ]
        },
    )
    candidates: list[Identifier | Candidate] = Field(min_length=1, max_length=MAX_USERS)
    budget: float = Field(ge=0, allow_inf_nan=False)
    coupon: Coupon
    strategy: Literal["threshold", "budget"] = "budget"
    threshold: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="P(purchase) cut-off; default: the artifact's validation F1 threshold",
    )
    at: UnixSeconds | None = None


class Allocation(BaseModel):
    user_id: str
    p_purchase: float
    order_volume: float
    expected_value: float
    cost: float


class ColdStartCandidate(BaseModel):
    user_id: str
    allocated: Literal[False] = False
    reason: str


class AllocateResponse(BaseModel):
    model_version: str
    strategy: Literal["threshold", "budget"]
    threshold: float | None
    budget: float
    spent: float
    expected_value: float
    chosen: list[Allocation]
    not_chosen: int = Field(
        description="scored candidates left out (below threshold or over budget)"
    )
    cold_start: list[ColdStartCandidate]
