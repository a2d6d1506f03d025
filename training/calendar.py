"""Day types of particular sales sources, on top of the shared festival calendar.

The festival dates and the promotion-phase rule are `service.calendar` (serving needs them
too); this module only holds how two public sources name their holiday periods:

- `walmart_day_type(week_date)`: Walmart's holiday weeks -> `super_bowl`, `labor_day`,
  `thanksgiving`, `christmas`, else `ordinary`.
- `m5_day_type(event_name_1, event_name_2)`: M5's ~30 event names grouped to a handful.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from service.calendar import ORDINARY, week_day_type

# ---- Walmart (weekly) -----------------------------------------------------------------

#: The four holiday weeks of the Walmart Kaggle data, in priority order.
WALMART_HOLIDAYS: tuple[str, ...] = ("super_bowl", "labor_day", "thanksgiving", "christmas")


def walmart_day_type(week_end: Any) -> str:
    """`super_bowl`, `labor_day`, `thanksgiving`, `christmas` or `ordinary` for a Walmart week."""
    return week_day_type(week_end, WALMART_HOLIDAYS)


# ---- M5 (daily) ------------------------------------------------------------------------

#: M5 event names -> day type; every other named event is `other_event`.
M5_EVENT_GROUPS: dict[str, str] = {
    "thanksgiving": "thanksgiving",
    "christmas": "christmas",
    "orthodoxchristmas": "other_event",
    "newyear": "newyear",
    "superbowl": "superbowl",
    "easter": "easter",
}
#: When a day has two events, the first group in this order names it.
M5_DAY_TYPES: tuple[str, ...] = (
    "thanksgiving",
    "christmas",
    "newyear",
    "superbowl",
    "easter",
    "other_event",
    ORDINARY,
)


def _m5_group(name: Any) -> str:
    if name is None or (isinstance(name, float) and np.isnan(name)):
        return ORDINARY
    key = str(name).strip().replace(" ", "").replace("'", "").lower()
    if not key or key == "nan":
        return ORDINARY
    return M5_EVENT_GROUPS.get(key, "other_event")


def m5_day_type(*event_names: Any) -> str:
    """The grouped day type of one M5 day from its event names (calendar: up to two)."""
    groups = {_m5_group(name) for name in event_names}
    for day_type in M5_DAY_TYPES:
        if day_type in groups:
            return day_type
    return ORDINARY
