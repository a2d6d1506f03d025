"""`POST /v1/score/intent`: TPG-DNN intent scores for a batch of users (up to 20,000 per call)."""

from __future__ import annotations

from fastapi import Request, Response

from service.api.fast import HotRouter, body_as, json_response
from service.api.schemas.intent import IntentScoreRequest, IntentScoreResponse
from service.servables.intent import MODEL, SERVABLE, UserInput, count_source

router = HotRouter(tags=["intent"])


def to_user_inputs(users: list[str | object]) -> list[UserInput]:
    """Bare ids read Redis state; objects with `events` are scored statelessly."""
    out = []
    for u in users:
        if isinstance(u, str):
            out.append(UserInput(u))
        else:
            events = getattr(u, "events", None)
            out.append(
                UserInput(
                    u.user_id,  # type: ignore[attr-defined]
                    None if events is None else [(e.action, e.ts) for e in events],
                )
            )
    return out


@router.hot(
    "/v1/score/intent",
    "POST",
    response_model=IntentScoreResponse,
    body=IntentScoreRequest,
)
async def score_intent(request: Request) -> Response:
    """P(browse), P(collect), P(cart), P(purchase) and expected order volume per user.

    Users without behaviour before `at` get `cold_start: true` and the population base
    rates of the training data instead of an error.
    """
    body = await body_as(request, IntentScoreRequest)
    state = request.app.state
    loaded = state.registry.get(MODEL)  # NotReady (503) when none is loaded
    at, scores = await SERVABLE.score(
        loaded, to_user_inputs(list(body.users)), count_source(state.store), body.at
    )
    return json_response(
        {
            "model_version": loaded.version,
            "at": at,
            "label_window_seconds": int(loaded.manifest.config.get("label_seconds", 86_400)),
            "scores": scores,
        }
    )
