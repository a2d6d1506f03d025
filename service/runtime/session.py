"""One ONNX Runtime session per graph of a model version.

Chooses the execution provider (CUDA with IO binding when present and allowed, the CPU with
bounded threads otherwise), checks the session's real inputs and outputs against the manifest
(a graph that disagrees with its manifest is refused before it can serve a wrong answer), and
holds the shared inputs (item tables, prototype banks) that are bound once per version: on the
GPU as device-resident OrtValues so each call copies only the per-request rows.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from service.errors import ArtifactError, InvalidInput
from service.runtime.manifest import GraphSpec, TensorSpec

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"

_ORT_TO_NUMPY = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(float16)": "float16",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
}


def choose_provider(preference: str) -> str:
    """The provider a new session uses under the `execution_provider` setting.

    `cuda` on a host without the CUDA provider falls back to the CPU with an error line rather
    than refusing every model: the service stays up, and `/v1/models` reports the provider
    really used, so the misconfiguration is visible.
    """
    available = ort.get_available_providers()
    if preference in ("auto", "cuda") and CUDA in available:
        return CUDA
    if preference == "cuda":
        log.error(
            "CUDA execution provider requested but onnxruntime offers only %s; using the CPU",
            available,
        )
    return CPU


def _is_static(dim: Any) -> bool:
    return isinstance(dim, int) and dim >= 0


def _describe(spec: TensorSpec) -> str:
    return f"{spec.name}:{spec.dtype}{list(spec.shape)}"


def _session_specs(args: Any) -> dict[str, TensorSpec]:
    specs: dict[str, TensorSpec] = {}
    for arg in args:
        dtype = _ORT_TO_NUMPY.get(arg.type, arg.type)
        shape: list[int | str | None] = list(arg.shape)
        specs[arg.name] = TensorSpec(name=arg.name, dtype=dtype, shape=shape)
    return specs


def check_against_manifest(path: Path, spec: GraphSpec, inputs: Any, outputs: Any) -> None:
    """Raise ArtifactError naming the file and the first disagreement between graph and manifest.

    Names, dtypes, ranks and every static dimension must match; a dimension dynamic on one side
    and static on the other is a mismatch too (the batcher relies on the dynamic batch axis).
    """
    for kind, declared, actual in (
        ("input", spec.inputs, _session_specs(inputs)),
        ("output", spec.outputs, _session_specs(outputs)),
    ):
        declared_names = [t.name for t in declared]
        if sorted(declared_names) != sorted(actual):
            raise ArtifactError(
                f"{path}: {kind}s {sorted(actual)} in the graph != "
                f"manifest {sorted(declared_names)}"
            )
        for want in declared:
            got = actual[want.name]
            mismatch = (
                got.dtype != want.dtype
                or len(got.shape) != len(want.shape)
                or any(
                    _is_static(a) != _is_static(b) or (_is_static(a) and a != b)
                    for a, b in zip(got.shape, want.shape, strict=True)
                )
            )
            if mismatch:
                raise ArtifactError(
                    f"{path}: {kind} {want.name} is {_describe(got)} in the graph but "
                    f"{_describe(want)} in the manifest"
                )
    unknown = set(spec.shared_inputs) - {t.name for t in spec.inputs}
    if unknown:
        raise ArtifactError(f"{path}: shared inputs {sorted(unknown)} are not graph inputs")


class GraphSession:
    """An ORT session for one graph file, checked against its manifest entry.

    Not thread-safe for `set_shared_inputs` racing `run`; the batcher runs one call at a time
    per graph and shared inputs are set before the version serves.
    """

    def __init__(
        self,
        path: Path,
        spec: GraphSpec,
        *,
        provider: str = "auto",
        intra_op_threads: int = 1,
    ) -> None:
        self.path = path
        self.spec = spec
        wanted = choose_provider(provider) if provider in ("auto", "cpu", "cuda") else provider
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Concurrency comes from batching, not from running operators side by side: one
        # inter-op thread, and intra-op threads bounded so several sessions share the cores.
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = max(1, intra_op_threads)
        # Many sessions (models x graphs x versions during a swap) share the cores with the
        # event loop: idle ORT workers must sleep, not spin, or they starve the HTTP thread.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = [wanted, CPU] if wanted == CUDA else [CPU]
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # ORT raises its own classes for corrupt or invalid graphs
            raise ArtifactError(f"{path}: ONNX Runtime cannot load the graph: {exc}") from exc
        # ORT silently falls back to the CPU when the CUDA libraries fail to load: report the
        # provider really in use.
        self.provider = self.session.get_providers()[0]
        check_against_manifest(path, spec, self.session.get_inputs(), self.session.get_outputs())
        self.input_specs = {t.name: t for t in spec.inputs}
        self.output_names = [t.name for t in spec.outputs]
        self.batched_inputs = [t.name for t in spec.inputs if t.name not in spec.shared_inputs]
        self._shared: dict[str, np.ndarray] = {}
        self._shared_device: dict[str, Any] = {}  # name -> OrtValue on the GPU
        self.use_io_binding = self.provider == CUDA

    @property
    def shared_ready(self) -> bool:
        """True when every shared input has been set (the graph can run)."""
        return all(name in self._shared for name in self.spec.shared_inputs)

    def set_shared_inputs(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Bind per-version inputs once; on CUDA they are copied to the device here only."""
        for name, value in arrays.items():
            if name not in self.spec.shared_inputs:
                raise InvalidInput(name, f"not a shared input of {self.path.name}")
            array = self.coerce(name, value)
            self._shared[name] = array
            if self.use_io_binding:
                self._shared_device[name] = ort.OrtValue.ortvalue_from_numpy(array, "cuda", 0)

    def coerce(self, name: str, value: Any) -> np.ndarray:
        """Check one input against its spec: dtype (safe casts only), rank, static dims."""
        spec = self.input_specs.get(name)
        if spec is None:
            raise InvalidInput(name, f"not an input of graph {self.path.stem}")
        array = np.asarray(value)
        if array.dtype != np.dtype(spec.dtype):
            if not np.can_cast(array.dtype, spec.dtype, casting="same_kind"):
                raise InvalidInput(name, f"dtype {array.dtype} cannot be cast to {spec.dtype}")
            array = array.astype(spec.dtype)
        if array.ndim != len(spec.shape):
            raise InvalidInput(name, f"rank {array.ndim} != {len(spec.shape)} ({spec.shape})")
        for axis, (got, want) in enumerate(zip(array.shape, spec.shape, strict=True)):
            if _is_static(want) and got != want:
                raise InvalidInput(name, f"dimension {axis} is {got}, expected {want}")
        return np.ascontiguousarray(array)

    def warm_inputs(self) -> dict[str, np.ndarray]:
        """Zero inputs for one row: dynamic dims 1, static dims as declared."""
        feeds = {}
        for name in self.batched_inputs:
            spec = self.input_specs[name]
            shape = [d if isinstance(d, int) and d >= 0 else 1 for d in spec.shape]
            feeds[name] = np.zeros(shape, dtype=spec.dtype)
        return feeds

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One synchronous call with the batched inputs; shared inputs are added here."""
        if not self.shared_ready:
            missing = sorted(set(self.spec.shared_inputs) - set(self._shared))
            raise ArtifactError(f"{self.path}: shared inputs {missing} were never set")
        if self.use_io_binding:
            return self._run_bound(inputs)
        feeds = dict(inputs)
        feeds.update(self._shared)
        results = self.session.run(self.output_names, feeds)
        return dict(zip(self.output_names, results, strict=True))

    def _run_bound(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        binding = self.session.io_binding()
        for name, array in inputs.items():
            binding.bind_cpu_input(name, array)
        for name, value in self._shared_device.items():
            binding.bind_ortvalue_input(name, value)
        for name in self.output_names:
            binding.bind_output(name, "cuda", 0)
        self.session.run_with_iobinding(binding)
        results = binding.copy_outputs_to_cpu()
        return dict(zip(self.output_names, results, strict=True))
