"""The artifact manifest: the only contract between training and serving.

Training writes `artifacts/<model>/<version>/manifest.json` next to the ONNX graphs; the
service reads it, checks it against the graphs and the file hashes, and refuses the version
on any disagreement. Kept free of torch so both sides import it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from service.errors import ArtifactError

MANIFEST_NAME = "manifest.json"
SCHEMA_VERSION = 1


class TensorSpec(BaseModel):
    """One graph input or output. A `None` or string dimension is dynamic (the batch axis)."""

    name: str
    dtype: str  # numpy dtype name: "float32", "int64", ...
    shape: list[int | str | None]


class GraphSpec(BaseModel):
    """One ONNX graph of a model version (IMN has `update` and `score`, most have one)."""

    file: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    # Inputs that are not batched per request but set once per version (an item table):
    # the micro-batcher binds them once instead of concatenating them.
    shared_inputs: list[str] = Field(default_factory=list)


class DataWindow(BaseModel):
    start: str  # ISO-8601
    end: str
    sha256: str
    source: str = ""


class Manifest(BaseModel):
    schema_version: int = SCHEMA_VERSION
    model: str
    version: str
    created: str
    graphs: dict[str, GraphSpec]
    vocabularies: dict[str, list[str]] = Field(default_factory=dict)
    normalisation: dict[str, Any] = Field(default_factory=dict)
    data_window: DataWindow
    metrics: dict[str, Any] = Field(default_factory=dict)
    files: dict[str, str] = Field(default_factory=dict)  # relative path -> sha256
    # Model-specific settings the serving side needs (state sizes, calendars, k, ...).
    config: dict[str, Any] = Field(default_factory=dict)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(version_dir: Path) -> Manifest:
    """Parse and hash-check a version directory's manifest; raise ArtifactError on any fault."""
    path = version_dir / MANIFEST_NAME
    if not path.is_file():
        raise ArtifactError(f"{version_dir}: no {MANIFEST_NAME}")
    try:
        manifest = Manifest.model_validate(json.loads(path.read_text()))
    except (json.JSONDecodeError, ValidationError) as exc:
        raise ArtifactError(f"{path}: invalid manifest: {exc}") from exc
    if manifest.version != version_dir.name:
        raise ArtifactError(
            f"{path}: manifest version {manifest.version!r} != directory {version_dir.name!r}"
        )
    for graph_name, graph in manifest.graphs.items():
        if graph.file not in manifest.files:
            raise ArtifactError(f"{path}: graph {graph_name!r} file {graph.file} has no sha256")
    for rel, expected in manifest.files.items():
        file_path = version_dir / rel
        if not file_path.is_file():
            raise ArtifactError(f"{version_dir}: listed file {rel} is missing")
        actual = sha256_file(file_path)
        if actual != expected:
            raise ArtifactError(
                f"{version_dir}: {rel} sha256 {actual[:12]} != manifest {expected[:12]}"
            )
    return manifest
