"""Request and response models, one module per resource; the shared error body lives here."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    """Why a request failed; `field` is the dotted path of the offending value, if any."""

    type: str = Field(description="invalid_input, not_found, not_ready, overloaded, ...")
    field: str | None = Field(default=None, description="Dotted path of the offending field.")
    reason: str = Field(description="What is wrong, in words.")
    request_id: str | None = Field(default=None, description="Echo of the X-Request-ID header.")


class ErrorResponse(BaseModel):
    """Every non-2xx answer of the API has this one shape."""

    error: ErrorDetail
