"""Realistic traffic for a demo deployment: the next promotion both sales models know, and the
sales that lead up to it.

`tests/test_demo.py` drives the `make serve` path with it and `bench/http_load.py` measures
the forecast routes with it, so both send the same requests. Everything comes from the
artifacts' manifests and the synthetic generator that made the demo data, never from
hard-coded ids, so a change of the demo data cannot silently turn these into requests for
unknown regions or categories.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal

from service.calendar import ORDINARY, week_day_type
from service.runtime.manifest import Manifest


def _date(value: str) -> dt.date:
    return dt.date.fromisoformat(value[:10])


@dataclass(frozen=True)
class PromotionScenario:
    """The first promotion after the demo history whose static and pre-sale windows lie
    wholly after it, so every period the models read arrives through `POST /v1/sales`."""

    promotion: dict[str, str]  # the `POST /v1/promotions` body
    date: dt.date
    step: dt.timedelta
    history_end: dt.date
    calendar_start: dt.date
    frequency: Literal["W", "D"]
    presale: int
    static: int
    items: list[tuple[str, str]]  # (region, category) pairs both models know


def promotion_scenario(stmp: Manifest, dinop: Manifest, n: int = 2) -> PromotionScenario:
    """The scenario for `n` regions x `n` categories known to both STMP and DINOP."""
    if stmp.config["frequency"] != dinop.config["frequency"]:
        raise ValueError("the STMP and DINOP artifacts use different frequencies")
    frequency = stmp.config["frequency"]
    if frequency not in ("W", "D"):
        raise ValueError(f"the STMP artifact has frequency {frequency!r}, not W or D")
    step_days = 7 if frequency == "W" else 1
    step = dt.timedelta(days=step_days)
    history_end = _date(stmp.config["history_end"])
    feat = dinop.config["featurizer"]
    presale, static = int(feat["presale_steps"]), int(feat["static_steps"])
    types = [t for t in dinop.vocabularies["promo_types"] if t in stmp.vocabularies["day_type"]]
    if not types:
        raise ValueError("no promotion type is known to both STMP and DINOP")
    for k in range(presale + static + 1, presale + static + 1 + 2 * 366 // step_days):
        day = history_end + k * step
        day_type = week_day_type(day, types, days=step_days)
        if day_type != ORDINARY:
            break
    else:
        raise ValueError("no promotion within two years of the demo history")
    regions = [r for r in dinop.vocabularies["regions"] if r in stmp.vocabularies["region"]][:n]
    cats = [c for c in dinop.vocabularies["categories"] if c in stmp.vocabularies["category"]][:n]
    if len(regions) < n or len(cats) < n:
        raise ValueError(f"fewer than {n} regions or categories known to both models")
    return PromotionScenario(
        promotion={"type": day_type, "date": day.isoformat()},
        date=day,
        step=step,
        history_end=history_end,
        calendar_start=_date(stmp.config["calendar_start"]),
        frequency=frequency,
        presale=presale,
        static=static,
        items=[(r, c) for r in regions for c in cats],
    )


def sales_records(scenario: PromotionScenario) -> list[dict[str, Any]]:
    """Synthetic sales continuing the demo's series to the period before the promotion, as
    `POST /v1/sales` records, oldest first."""
    from training.synthetic import generate_sales

    first = scenario.calendar_start
    years = (scenario.date - first).days // 364 + 1
    data = generate_sales(years=years, frequency=scenario.frequency, seed=0, start=first)
    frame = data.sales
    dates = frame["date"].dt.date
    keep = (dates > scenario.history_end) & (dates < scenario.date)
    keep &= frame[["region", "category"]].apply(tuple, axis=1).isin(scenario.items)
    rows = frame[keep].sort_values(["date", "region", "category"])
    if rows["date"].dt.date.min() != scenario.history_end + scenario.step:
        raise ValueError("the generated sales do not continue the demo history")
    return [
        {
            "region": r.region,
            "category": r.category,
            "date": r.date.date().isoformat(),
            "sales": float(r.sales),
            "external": {c: float(getattr(r, c)) for c in data.external_columns},
        }
        for r in rows.itertuples()
    ]
