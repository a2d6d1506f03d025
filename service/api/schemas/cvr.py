"""Request/response models for `POST /v1/score/cvr`."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from service.actions import Action
from service.api.schemas.types import Identifier, UnixSeconds
from service.servables.cvr import MAX_PAIRS, MAX_SEQUENCE

Occasion = Literal["BP", "DP", "AP", "NP"]


class SequenceEvent(BaseModel):
    """One past behaviour of the user, for stateless scoring."""

    model_config = ConfigDict(extra="forbid")
    item_id: Identifier
    category_id: Identifier | Literal[""] = ""
    action: Action
    ts: UnixSeconds = Field(description="Unix seconds; only events before the click count")


class CvrPair(BaseModel):
    """A clicked (user, item) pair and its context."""

    model_config = ConfigDict(extra="forbid")
    user_id: Identifier
    item_id: Identifier
    category_id: Identifier | None = Field(
        default=None, description="default: the item's category in the artifact"
    )
    ts: UnixSeconds | None = Field(default=None, description="click time; default: `at`")
    occasion: Occasion | None = Field(
        default=None, description="BP/DP/AP/NP; default: the artifact's promotion calendar"
    )
    sequence: list[SequenceEvent] | None = Field(
        default=None,
        max_length=MAX_SEQUENCE,
        description="the user's recent behaviour; when given, Redis is not read for this pair",
    )


class CvrScoreRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "pairs": [
                        {"user_id": "u1", "item_id": "i10"},
                        {
                            "user_id": "u2",
                            "item_id": "i3",
                            "occasion": "DP",
                            "sequence": [
                                {
                                    "item_id": "i3",
                                    "category_id": "c1",
                                    "action": "browse",
                                    "ts": 1733050800,
                                }
                            ],
                        },
                    ],
                    "at": 1733097600,
                }
            ]
        },
    )
    pairs: list[CvrPair] = Field(min_length=1, max_length=MAX_PAIRS)
    at: UnixSeconds | None = Field(default=None, description="request time (Unix s); default now")


class CvrScore(BaseModel):
    user_id: str
    item_id: str
    cvr: float = Field(description="MetaCVR conversion probability of the click")
    base_cvr: float = Field(description="the frozen base model's probability (stage 1)")
    occasion: Occasion
    occasion_source: Literal["calendar", "request"]
    history_events: int = Field(description="behaviour events before the click that were used")


class CvrScoreResponse(BaseModel):
    model_version: str
    at: int
    scores: list[CvrScore]
