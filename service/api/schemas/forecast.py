"""Request and response bodies of `POST /v1/sales` and `POST /v1/forecast/festival`.

Sales records and forecasts are per region x category x period, the canonical sales schema's
grain (a period is a day for daily models, the source's week date for weekly ones).
"""

from __future__ import annotations

import datetime as dt
import math

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from service.api.schemas.types import Day, Identifier

MAX_RECORDS = 10_000
MAX_CATEGORIES = 1_000


class SalesRecord(BaseModel):
    region: Identifier
    category: Identifier
    date: Day
    sales: float
    # Time-varying external factors by name (temperature, fuel price, ...), source units.
    external: dict[str, float] = Field(default_factory=dict, max_length=64)

    @field_validator("sales")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    @field_validator("external")
    @classmethod
    def _finite_external(cls, value: dict[str, float]) -> dict[str, float]:
        for name, v in value.items():
            if not math.isfinite(v):
                raise ValueError(f"{name} must be a finite number")
        return value


class SalesIngestRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "records": [
                        {
                            "region": "R01",
                            "category": "C01",
                            "date": "2013-02-01",
                            "sales": 15234.5,
                            "external": {"temperature": 41.2, "price": 3.52},
                        },
                        {
                            "region": "R01",
                            "category": "C02",
                            "date": "2013-02-01",
                            "sales": 8120.0,
                            "external": {"temperature": 41.2, "price": 3.52},
                        },
                    ]
                }
            ]
        }
    )
    records: list[SalesRecord] = Field(min_length=1, max_length=MAX_RECORDS)


class RejectedRecord(BaseModel):
    index: int
    field: str
    reason: str


class SalesIngestResponse(BaseModel):
    accepted: int
    rejected: list[RejectedRecord]
    regions: list[str]  # regions whose history changed
    # Regions whose STMP task representation was recomputed from the ingested history.
    refreshed: list[str] = Field(default_factory=list)


class FestivalForecastRequest(BaseModel):
    """A region and either a date range or a day type (its next occurrence is forecast)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"region": "R01", "day_type": "christmas", "categories": ["C01", "C02"]},
                {"region": "R01", "start": "2013-02-01", "end": "2013-03-01"},
            ]
        }
    )

    region: Identifier
    start: Day | None = None
    end: Day | None = None
    day_type: Identifier | None = None
    categories: list[Identifier] | None = Field(
        default=None, min_length=1, max_length=MAX_CATEGORIES
    )

    @model_validator(mode="after")
    def _range_or_day_type(self) -> FestivalForecastRequest:
        if self.day_type is None and self.start is None:
            raise ValueError("give a date range (start, optional end) or a day_type")
        if self.day_type is not None and (self.start is not None or self.end is not None):
            raise ValueError("give either a date range or a day_type, not both")
        if self.start is not None and self.end is not None and self.end < self.start:
            raise ValueError("end is before start")
        return self


class Interval(BaseModel):
    lower: float
    upper: float


class PeriodForecast(BaseModel):
    date: dt.date
    day_type: str
    mean: float  # the forecast at the mean of psi (source units)
    interval_80: Interval  # 10th-90th percentile of the predictive samples
    interval_95: Interval  # 2.5th-97.5th percentile


class CategoryForecast(BaseModel):
    category: str
    periods: list[PeriodForecast]


class FestivalForecastResponse(BaseModel):
    region: str
    model_version: str
    frequency: str  # "D" or "W"
    history_end: dt.date  # last period with known sales the forecast starts from
    samples: int  # predictive samples per period (psi and observation noise)
    forecasts: list[CategoryForecast]
