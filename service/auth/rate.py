"""`RateLimiter`: a token bucket per API key, in this replica.

Each key may carry a rate (requests per second, the key file's last column); its bucket holds
one second's worth of requests, refills continuously, and a request finding it empty is told
when the next token arrives (HTTP 429 with Retry-After). Buckets are per replica, as nginx's
``limit_req`` is per instance: N replicas admit up to N times the rate, which the operator sets
knowing the replica count.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class RateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def allow(self, key: str, rate_per_s: float) -> float:
        """0 when the request may go now, else the seconds until it may."""
        now = self._clock()
        burst = max(rate_per_s, 1.0)
        tokens, at = self._buckets.get(key, (burst, now))
        tokens = min(burst, tokens + (now - at) * rate_per_s)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / rate_per_s

    @staticmethod
    def retry_after(wait_s: float) -> str:
        return str(max(1, math.ceil(wait_s)))
