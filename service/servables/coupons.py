"""Coupon allocation on top of intent scores: `threshold` (the paper's) and `budget` strategies.

TPG-DNN sec. 4.3 gives coupons to the users whose predicted score clears a threshold and
compares that against random allocation. A threshold alone does not respect a budget, so
both strategies here fill a budget greedily and never exceed it:

- `threshold`: users with P(purchase) >= threshold, highest score first;
- `budget`: users ranked by expected value per unit cost, highest first, skipping anyone
  whose cost no longer fits (so cheaper users further down can still use the remainder).

Expected value of a coupon to a user = coupon value x expected orders in the window, with
at least one order whenever the user buys: `value * max(P(purchase), order_volume)`. The
model has no uplift (treatment) signal, so "incremental" value is approximated by the
predicted value itself; that is a stated limitation, not a hidden one (docs/intent.md).

Pure functions on plain lists: the allocation benchmark in `training/jobs/intent.py` calls
the very same code the route does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from service.errors import InvalidInput

STRATEGIES: tuple[str, ...] = ("threshold", "budget")


def expected_value(score: Mapping[str, float], coupon_value: float) -> float:
    return float(coupon_value) * max(float(score["p_purchase"]), float(score["order_volume"]))


def _check_number(name: str, value: float, minimum: float, strict: bool = False) -> None:
    if not math.isfinite(value) or value < minimum or (strict and value == minimum):
        relation = ">" if strict else ">="
        raise InvalidInput(name, f"must be a finite number {relation} {minimum}")


def allocate(
    user_ids: Sequence[str],
    scores: Sequence[Mapping[str, float]],
    *,
    budget: float,
    coupon_cost: float,
    coupon_value: float,
    strategy: str,
    threshold: float | None = None,
    costs: Sequence[float | None] | None = None,
) -> list[dict[str, Any]]:
    """The chosen users, in the order they were picked; total cost never exceeds `budget`.

    `scores[i]` holds `p_purchase` and `order_volume` of `user_ids[i]`; `costs[i]`, when
    given and not None, overrides `coupon_cost` for that user (e.g. a larger red pocket).
    """
    _check_number("budget", budget, 0.0)
    _check_number("coupon.cost", coupon_cost, 0.0, strict=True)
    _check_number("coupon.value", coupon_value, 0.0)
    if strategy not in STRATEGIES:
        raise InvalidInput("strategy", f"must be one of {', '.join(STRATEGIES)}")
    if len(scores) != len(user_ids) or (costs is not None and len(costs) != len(user_ids)):
        raise InvalidInput("candidates", "scores and costs must match the candidates one to one")
    unit = [float(coupon_cost if c is None else c) for c in (costs or [None] * len(user_ids))]
    for i, c in enumerate(unit):
        _check_number(f"candidates.{i}.cost", c, 0.0, strict=True)
    values = [expected_value(s, coupon_value) for s in scores]

    if strategy == "threshold":
        if threshold is None:
            raise InvalidInput("threshold", "the threshold strategy needs a threshold")
        if not (math.isfinite(threshold) and 0.0 <= threshold <= 1.0):
            raise InvalidInput("threshold", "must be in [0, 1]")
        eligible = [i for i, s in enumerate(scores) if float(s["p_purchase"]) >= threshold]
        order = sorted(eligible, key=lambda i: (-float(scores[i]["p_purchase"]), i))
    else:
        order = sorted(range(len(user_ids)), key=lambda i: (-values[i] / unit[i], i))

    chosen: list[dict[str, Any]] = []
    spent = 0.0
    for i in order:
        if spent + unit[i] > budget + 1e-9:
            continue  # does not fit; a cheaper user further down may
        spent += unit[i]
        chosen.append(
            {
                "user_id": user_ids[i],
                "p_purchase": float(scores[i]["p_purchase"]),
                "order_volume": float(scores[i]["order_volume"]),
                "expected_value": values[i],
                "cost": unit[i],
            }
        )
    return chosen
