"""What a servable needs of a loaded model version, as a Protocol.

Servables depend on this slice rather than on `service.runtime.registry.LoadedModel`, so the
benchmarks can hand them a bare ONNX Runtime wrapper (`bench.common.OrtLoaded`) and measure
the model work without the registry and its micro-batcher.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np


class Loaded(Protocol):
    """The slice of `service.runtime.registry.LoadedModel` a servable uses."""

    version: str
    path: Path
    manifest: Any

    async def infer(
        self, graph: str, inputs: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray]: ...
