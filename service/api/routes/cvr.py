"""`POST /v1/score/cvr`: MetaCVR conversion rate for a batch of clicked (user, item) pairs."""

from __future__ import annotations

from fastapi import Request, Response

from service.api.fast import HotRouter, body_as, json_response
from service.api.schemas.cvr import CvrPair, CvrScoreRequest, CvrScoreResponse
from service.servables.cvr import MODEL, SERVABLE, PairInput, SeqEvent, sequence_source

router = HotRouter(tags=["cvr"])


def to_pair_input(pair: CvrPair) -> PairInput:
    return PairInput(
        user_id=pair.user_id,
        item_id=pair.item_id,
        category_id=pair.category_id,
        ts=pair.ts,
        occasion=pair.occasion,
        sequence=None
        if pair.sequence is None
        else [SeqEvent(e.item_id, e.category_id, e.action, e.ts) for e in pair.sequence],
    )


@router.hot(
    "/v1/score/cvr",
    "POST",
    response_model=CvrScoreResponse,
    body=CvrScoreRequest,
)
async def score_cvr(request: Request) -> Response:
    """CVR per pair and the occasion used (from the artifact's calendar unless given).

    Pairs that carry a `sequence` are scored statelessly; the others read the user's
    behaviour sequence from Redis (503 when no state store is configured).
    """
    body = await body_as(request, CvrScoreRequest)
    loaded = request.app.state.registry.get(MODEL)  # NotReady (503) when none is loaded
    pairs = [to_pair_input(p) for p in body.pairs]
    needs_store = any(p.sequence is None for p in pairs)
    source = sequence_source(getattr(request.app.state, "store", None)) if needs_store else None
    at, scores = await SERVABLE.score(loaded, pairs, source, body.at)
    return json_response({"model_version": loaded.version, "at": at, "scores": scores})
