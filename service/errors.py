"""The core exception hierarchy.

Core code raises these and knows nothing of HTTP; `service.api.errors` maps each class to a
status code at the edge, so a validation problem can never surface as a 500.
"""

from __future__ import annotations


class SalecastError(Exception):
    """Base of every error salecast raises on purpose."""


class InvalidInput(SalecastError):
    """A request field is malformed or out of range (HTTP 422).

    `field` is the dotted path of the offending field (``events.3.timestamp``) so that a
    caller can fix the exact value without reading server logs.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class NotFound(SalecastError):
    """An id the caller named does not exist (HTTP 404)."""

    def __init__(self, what: str, identifier: str) -> None:
        super().__init__(f"{what} {identifier!r} not found")
        self.what = what
        self.identifier = identifier


class NotReady(SalecastError):
    """The service cannot answer yet: model not loaded or warming, Redis down (HTTP 503)."""

    def __init__(self, reason: str, retry_after_s: float = 1.0) -> None:
        super().__init__(reason)
        self.retry_after_s = retry_after_s


class Overloaded(NotReady):
    """A bounded queue is full; the caller should back off and retry (HTTP 503 + Retry-After)."""


class ArtifactError(SalecastError):
    """A model artifact on disk is broken or disagrees with its manifest; it is refused."""


class StateStoreError(SalecastError):
    """Redis answered with an error or did not answer (HTTP 503: the state is not lost)."""
