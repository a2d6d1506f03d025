"""Schemas of the model-management routes (`/v1/models`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class TensorInfo(BaseModel):
    name: str
    dtype: str
    shape: list[int | str | None]


class GraphInfo(BaseModel):
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    shared_inputs: list[str] = Field(default_factory=list)
    warm: bool
    queue_depth: int = 0


class RefusedVersion(BaseModel):
    version: str
    reason: str
    at: str


class ModelInfo(BaseModel):
    """One served model version, as the registry holds it."""

    name: str
    version: str
    provider: str = Field(description="ONNX Runtime execution provider in use.")
    warm: bool = Field(description="Every graph has run once since loading.")
    loaded_at: str
    path: str
    created: str
    data_window: dict[str, Any]
    metrics: dict[str, Any] = Field(description="Metrics recorded in the manifest by training.")
    graphs: dict[str, GraphInfo]
    refused: list[RefusedVersion] = Field(
        default_factory=list, description="Newer versions refused at load, with the reason."
    )


class ModelsResponse(BaseModel):
    models: list[ModelInfo]
    refused: dict[str, list[RefusedVersion]] = Field(
        default_factory=dict, description="Refused versions of every model folder."
    )
    message: str | None = Field(default=None, description="Set when no model is loaded.")


class ReloadOutcome(BaseModel):
    model: str
    status: str = Field(
        description="loaded (a newer version now serves), unchanged (nothing newer), refused "
        "(a newer version failed; the old one keeps serving) or none (nothing loadable)."
    )
    version: str | None = Field(default=None, description="The version serving after the reload.")
    reason: str | None = Field(default=None, description="Why the newest version was refused.")


class ReloadResponse(BaseModel):
    results: list[ReloadOutcome]
