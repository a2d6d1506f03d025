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


class ValidationSummary(BaseModel):
    """The artifact's validation metrics beside the best simple baseline's on the same split.

    Training fits the baselines on the same training data and scores them on the same
    validation split (`training.comparison.validation_summary`); `behind_baseline` flags a
    served model that a simple baseline beats on its own data.
    """

    split: str = ""
    metric: str
    higher_is_better: bool
    ours: dict[str, Any] = Field(description="Ours: name and validation metrics.")
    best_baseline: dict[str, Any] | None = Field(
        default=None, description="The best baseline on `metric`: name and validation metrics."
    )
    baselines: dict[str, float] = Field(
        default_factory=dict, description="Every baseline tried, its value of `metric`."
    )
    behind_baseline: bool | None = Field(
        default=None, description="True when the best baseline scores better on `metric`."
    )


class ModelInfo(BaseModel):
    """One served model version, as the registry holds it."""

    name: str
    version: str
    provider: str = Field(description="ONNX Runtime execution provider in use.")
    warm: bool = Field(description="Every graph has run once since loading.")
    loaded_at: str
    path: str = Field(description="the version folder, relative to the artifacts folder")
    created: str
    data_window: dict[str, Any]
    metrics: dict[str, Any] = Field(description="Metrics recorded in the manifest by training.")
    validation: ValidationSummary | None = Field(
        default=None,
        description="Validation metrics of this version next to the best baseline's on the "
        "same split (absent for artifacts trained before this was recorded).",
    )
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
