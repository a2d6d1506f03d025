"""The bounded types every request field is built from, so no value the schema allows can
reach code that cannot take it (a 500), and the OpenAPI document states each bound.

* `Identifier`: 1-128 characters, none of them a control character (the unit separator joins
  sequence fields in Redis), DEL, or a bidirectional override (``U+202A``-``U+202E``,
  ``U+2066``-``U+2069``, ``U+200E``/``U+200F``: they make logs and dashboards lie). Lone
  surrogates never get this far: the JSON parser refuses them.
* `UnixSeconds`: an integer from 0 to `MAX_UNIX_SECONDS` (2100-01-01), inside every date and
  time type the servables convert to; a JSON ``true`` is not a time (strict).
* `Day`: a calendar date from 1970 to 2099.
* `Finite`: a float that is not NaN or infinite.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import AfterValidator, Field, Strict, StringConstraints

from service.events.schema import ID_PATTERN, MAX_UNIX_SECONDS

__all__ = ["ID_PATTERN", "MAX_UNIX_SECONDS", "Day", "Finite", "Identifier", "UnixSeconds"]

FIRST_DAY = dt.date(1970, 1, 1)
LAST_DAY = dt.date(2099, 12, 31)

Identifier = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=ID_PATTERN)]
UnixSeconds = Annotated[int, Strict(), Field(ge=0, le=MAX_UNIX_SECONDS)]


def _in_range(value: dt.date) -> dt.date:
    if not FIRST_DAY <= value <= LAST_DAY:
        raise ValueError(f"must be between {FIRST_DAY} and {LAST_DAY}")
    return value


Day = Annotated[dt.date, AfterValidator(_in_range)]
Finite = Annotated[float, Field(allow_inf_nan=False)]
