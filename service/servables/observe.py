"""`observe_served`: what the models answer, sampled into `salecast_served_score` for drift panels.

A served probability that slides (purchase intent creeping up after a model swap, CVR
collapsing on a festival day) is the first sign of a model that no longer fits its traffic.
Every call adds at most `SAMPLE` evenly spaced values per output, so a 20,000-user call costs
the same few microseconds as a single user, and the label set is the fixed (model, output)
pairs of the servables.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from service.metrics import SERVED_SCORE

SAMPLE = 16


def observe_served(model: str, outputs: Mapping[str, np.ndarray | Sequence[float]]) -> None:
    for name, values in outputs.items():
        flat = np.ravel(np.asarray(values, dtype=np.float64))
        if not flat.size:
            continue
        child = SERVED_SCORE.labels(model=model, output=name)
        for value in flat[:: max(1, flat.size // SAMPLE)][:SAMPLE].tolist():
            if math.isfinite(value):
                child.observe(value)
