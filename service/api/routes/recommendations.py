"""`GET /v1/recommendations/{user_id}?k=`: the next items a user is most likely to act on.

A hot route (`service.api.fast`): the request object only, a bytes response.
"""

from __future__ import annotations

import re

from fastapi import Request, Response

from service.api.fast import (
    HotRouter,
    json_response,
    parameter,
    query_float,
    query_int,
)
from service.api.schemas.recommendations import RecommendationResponse
from service.api.schemas.types import ID_PATTERN
from service.errors import InvalidInput
from service.servables.imn import MODEL, SERVABLE

router = HotRouter(tags=["recommendations"])

MAX_ID = 128
VALID_ID = re.compile(ID_PATTERN)
K_LIMIT = 10_000  # the model's own k max (usually far lower) is checked by the servable
MAX_AT = 1e11  # Unix seconds; about the year 5138


@router.hot(
    "/v1/recommendations/{user_id}",
    "GET",
    response_model=RecommendationResponse,
    parameters=[
        parameter("user_id", "path", {"type": "string", "minLength": 1, "maxLength": MAX_ID,
                  "pattern": ID_PATTERN, "examples": ["u1"]}, "the user"),
        parameter("k", "query", {"type": "integer", "minimum": 1, "default": 20},
                  "how many items (1 .. the model's k max)"),
        parameter("at", "query", {"type": "number", "minimum": 0, "maximum": MAX_AT},
                  "Unix seconds the ranking is for (default: now)"),
    ],
)  # fmt: skip
async def get_recommendations(request: Request) -> Response:
    """Top-k items ranked by IMN-Net from the user's state in Redis and the item table.

    A user with no state yet gets the most popular items with `fallback: true`. `k` outside
    1..k max is a 422 naming `k`.
    """
    user_id: str = request.path_params["user_id"]
    if not 1 <= len(user_id) <= MAX_ID or not VALID_ID.match(user_id):
        raise InvalidInput(
            "user_id", f"must be 1 to {MAX_ID} characters, no control or bidirectional ones"
        )
    k = query_int(request, "k", 20, 1, K_LIMIT)
    at = query_float(request, "at", 0.0, MAX_AT)
    state = request.app.state
    loaded = state.registry.get(MODEL)  # NotReady (503) when none is loaded
    rec = await SERVABLE.recommend(loaded, state.store, user_id, k, at)
    return json_response(
        {
            "user_id": user_id,
            "model_version": rec.version,
            "k": len(rec.items),
            "fallback": rec.fallback,
            "fallback_reason": rec.reason,
            "items": [{"item_id": i, "score": s} for i, s in rec.items],
        }
    )
