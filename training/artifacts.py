"""Write a versioned model artifact: ONNX graphs, extra files, and the manifest.

The directory is assembled under a temporary name and renamed into place, so a polling
service never sees a half-written version.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import onnx

from service.runtime.manifest import (
    MANIFEST_NAME,
    DataWindow,
    GraphSpec,
    Manifest,
    TensorSpec,
    sha256_file,
)

_ONNX_TO_NUMPY = {
    onnx.TensorProto.FLOAT: "float32",
    onnx.TensorProto.DOUBLE: "float64",
    onnx.TensorProto.FLOAT16: "float16",
    onnx.TensorProto.INT64: "int64",
    onnx.TensorProto.INT32: "int32",
    onnx.TensorProto.BOOL: "bool",
}


def _tensor_specs(values: Any) -> list[TensorSpec]:
    specs = []
    for value in values:
        tensor_type = value.type.tensor_type
        dims: list[int | str | None] = []
        for dim in tensor_type.shape.dim:
            if dim.HasField("dim_value"):
                dims.append(int(dim.dim_value))
            else:
                dims.append(dim.dim_param or None)
        specs.append(
            TensorSpec(name=value.name, dtype=_ONNX_TO_NUMPY[tensor_type.elem_type], shape=dims)
        )
    return specs


def graph_spec(onnx_path: Path, shared_inputs: list[str] | None = None) -> GraphSpec:
    """Describe an ONNX file's inputs and outputs as the manifest records them."""
    model = onnx.load(str(onnx_path))
    initializers = {init.name for init in model.graph.initializer}
    inputs = [value for value in model.graph.input if value.name not in initializers]
    return GraphSpec(
        file=onnx_path.name,
        inputs=_tensor_specs(inputs),
        outputs=_tensor_specs(model.graph.output),
        shared_inputs=list(shared_inputs or []),
    )


def new_version() -> str:
    """Versions sort by creation time (UTC, microseconds) so 'newest' is a string max."""
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")


def write_artifact(
    root: Path,
    model: str,
    graphs: Mapping[str, Path],
    *,
    data_window: DataWindow,
    vocabularies: Mapping[str, list[str]] | None = None,
    normalisation: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    extra_files: Mapping[str, Path] | None = None,
    shared_inputs: Mapping[str, list[str]] | None = None,
    version: str | None = None,
) -> Path:
    """Copy `graphs` (name -> .onnx path) and `extra_files` into `root/model/version/`.

    Returns the final version directory. Extra files (numpy tables, calendars) are listed
    with their sha256 like the graphs, so the service refuses a tampered artifact.
    """
    version = version or new_version()
    model_dir = Path(root) / model
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=model_dir))
    try:
        specs: dict[str, GraphSpec] = {}
        for name, src in graphs.items():
            dst = staging / f"{name}.onnx"
            shutil.copyfile(src, dst)
            specs[name] = graph_spec(dst, (shared_inputs or {}).get(name))
        for rel, src in (extra_files or {}).items():
            dst = staging / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
        files = {
            str(path.relative_to(staging)): sha256_file(path)
            for path in sorted(staging.rglob("*"))
            if path.is_file()
        }
        manifest = Manifest(
            model=model,
            version=version,
            created=dt.datetime.now(dt.UTC).isoformat(),
            graphs=specs,
            vocabularies=dict(vocabularies or {}),
            normalisation=dict(normalisation or {}),
            data_window=data_window,
            metrics=dict(metrics or {}),
            files=files,
            config=dict(config or {}),
        )
        (staging / MANIFEST_NAME).write_text(json.dumps(manifest.model_dump(), indent=2))
        final = model_dir / version
        staging.rename(final)
        return final
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
