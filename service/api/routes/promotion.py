"""Promotion-day item forecasts (DINOP): register a promotion, forecast items, BOP pairs.

`POST /v1/promotions` registers a promotion day so that `POST /v1/sales` advances each
item's pre-sale state as the periods arrive; `POST /v1/forecast/promotion-items` answers
from those states (catching up from the stored sales history first, so a promotion
registered late still sees every pre-sale period already ingested).
"""

from __future__ import annotations

from fastapi import Request, Response

from service.api.deps import RegistryDep, StoreDep, get_store
from service.api.fast import HotRouter, body_as, json_response
from service.api.schemas.promotion import (
    BuyThroughRequest,
    BuyThroughResponse,
    BuyThroughScore,
    PromotionForecastRequest,
    PromotionForecastResponse,
    PromotionList,
    PromotionRef,
    PromotionRegisterResponse,
)
from service.servables.dinop import MODEL, SERVABLE, Promotion

router = HotRouter(tags=["promotion"])


def _promotion(ref: PromotionRef) -> Promotion:
    return Promotion(ref.type, ref.date)


@router.post("/v1/promotions", response_model=PromotionRegisterResponse)
async def register_promotion(
    body: PromotionRef, registry: RegistryDep, store: StoreDep
) -> PromotionRegisterResponse:
    """Register a promotion day; its type must be one the loaded model was trained on."""
    loaded = registry.get(MODEL)
    tables = SERVABLE.tables(loaded)
    promo = _promotion(body)
    SERVABLE.check_promotion(tables, promo, "type")
    await SERVABLE.register(store, promo)
    return PromotionRegisterResponse(
        key=promo.key,
        promotion=body,
        presale_periods=SERVABLE.presale_dates(tables, promo),
        static_periods=SERVABLE.static_dates(tables, promo),
    )


@router.get("/v1/promotions", response_model=PromotionList)
async def list_promotions(store: StoreDep) -> PromotionList:
    promos = await SERVABLE.promotions(store)
    return PromotionList(promotions=[PromotionRef(type=p.type, date=p.date) for p in promos])


@router.hot(
    "/v1/forecast/promotion-items",
    "POST",
    response_model=PromotionForecastResponse,
    body=PromotionForecastRequest,
)
async def forecast_promotion_items(request: Request) -> Response:
    """GMV, best-seller probability, slot distribution and join-activity probability."""
    body = await body_as(request, PromotionForecastRequest)
    loaded = request.app.state.registry.get(MODEL)
    items = [(i.region, i.category) for i in body.items]
    results, notes = await SERVABLE.forecast(
        loaded, get_store(request), _promotion(body.promotion), items, body.activity
    )
    return json_response(
        {
            "model_version": loaded.version,
            "promotion": body.promotion.model_dump(mode="json"),
            "items": results,
            "notes": notes,
        }
    )


@router.post("/v1/forecast/buy-through-promotion", response_model=BuyThroughResponse)
async def buy_through_promotion(
    body: BuyThroughRequest, registry: RegistryDep, store: StoreDep
) -> BuyThroughResponse:
    """P(user buys the item through the promotion) for (user, item) pairs (BOP)."""
    loaded = registry.get(MODEL)
    pairs = [(p.user, p.region, p.category, p.user_features) for p in body.pairs]
    probs = await SERVABLE.buy_through_promotion(loaded, store, _promotion(body.promotion), pairs)
    return BuyThroughResponse(
        model_version=loaded.version,
        promotion=body.promotion,
        scores=[
            BuyThroughScore(user=p.user, region=p.region, category=p.category, probability=q)
            for p, q in zip(body.pairs, probs, strict=True)
        ],
    )
