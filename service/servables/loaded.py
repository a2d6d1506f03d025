"""What a servable needs of a loaded model version, as a Protocol.

Servables depend on this slice rather than on `service.runtime.registry.LoadedModel`, so the
benchmarks and tests can hand them a bare ONNX Runtime wrapper
(`service.runtime.direct.DirectLoaded`) and measure or check the model work without the
registry and its micro-batcher.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from service.runtime.manifest import Manifest


class Loaded(Protocol):
    """The slice of `service.runtime.registry.LoadedModel` a servable uses."""

    version: str
    path: Path
    manifest: Manifest
    state: dict[str, Any]  # per-version objects servables derive (tables, configs)

    async def infer(
        self, graph: str, inputs: Mapping[str, np.ndarray], *, joined: bool = False
    ) -> dict[str, np.ndarray]: ...


T = TypeVar("T")


def per_version(loaded: Loaded, key: str, build: Callable[[Loaded], T]) -> T:
    """`build(loaded)` once per loaded version, kept on the version itself.

    The registry gives each version its own `state` dict and drops it with the version, so
    a servable needs no cache of its own keyed by path or version (and none that outlives
    the versions it was built for).
    """
    if key not in loaded.state:
        loaded.state[key] = build(loaded)
    value: T = loaded.state[key]
    return value
