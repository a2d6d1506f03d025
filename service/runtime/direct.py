"""A loaded version without the registry: one ONNX Runtime session per graph, no batching.

Benchmarks and tests hand this to a servable to measure or check the model work alone; it
satisfies `service.servables.loaded.Loaded`, as the registry's `LoadedModel` does, so the
code under test is the code that serves. Shared inputs (IMN's item table) are not bound
here: the caller passes every input the graph declares.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from service.runtime.manifest import Manifest, read_manifest


class DirectLoaded:
    """Every graph of the artifact version at `path`, run straight on ONNX Runtime."""

    def __init__(self, path: Path, threads: int = 2) -> None:
        self.path = Path(path)
        self.manifest: Manifest = read_manifest(self.path)
        self.version = self.manifest.version
        self.state: dict[str, Any] = {}  # what servables derive per version (`per_version`)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        providers = [
            p
            for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
            if p in ort.get_available_providers()
        ]
        self.provider = providers[0]
        self.sessions = {
            name: ort.InferenceSession(str(self.path / spec.file), options, providers=providers)
            for name, spec in self.manifest.graphs.items()
        }

    async def infer(
        self, graph: str, inputs: Mapping[str, np.ndarray], *, joined: bool = False
    ) -> dict[str, np.ndarray]:
        session = self.sessions[graph]
        names = [o.name for o in session.get_outputs()]
        return dict(zip(names, session.run(names, dict(inputs)), strict=True))
