"""Model management: what is served, and explicit reloads."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import ValidationError

from service.api.deps import RegistryDep
from service.api.schemas.models import (
    GraphInfo,
    ModelInfo,
    ModelsResponse,
    RefusedVersion,
    ReloadOutcome,
    ReloadResponse,
    TensorInfo,
    ValidationSummary,
)
from service.errors import NotFound
from service.runtime.registry import LoadedModel, ModelRegistry, check_model_name
from service.runtime.registry import ReloadOutcome as Outcome

router = APIRouter(prefix="/v1/models", tags=["models"])


def _refused(registry: ModelRegistry, name: str) -> list[RefusedVersion]:
    return [
        RefusedVersion(version=r.version, reason=r.reason, at=r.at)
        for r in registry.refused(name)[name]
    ]


def _validation(metrics: dict[str, Any]) -> ValidationSummary | None:
    """The manifest's `metrics.validation` block, if it has the recorded shape."""
    block = metrics.get("validation")
    if not isinstance(block, dict) or "metric" not in block or "ours" not in block:
        return None
    try:
        return ValidationSummary.model_validate(block)
    except ValidationError:  # an older or hand-written manifest: shown raw under `metrics`
        return None


def model_info(registry: ModelRegistry, loaded: LoadedModel) -> ModelInfo:
    manifest = loaded.manifest
    depths = loaded.queue_depths()
    graphs = {
        name: GraphInfo(
            inputs=[TensorInfo(**t.model_dump()) for t in spec.inputs],
            outputs=[TensorInfo(**t.model_dump()) for t in spec.outputs],
            shared_inputs=list(spec.shared_inputs),
            warm=name in loaded.warmed,
            queue_depth=depths.get(name, 0),
        )
        for name, spec in manifest.graphs.items()
    }
    return ModelInfo(
        name=loaded.name,
        version=loaded.version,
        provider=loaded.provider,
        warm=loaded.warm,
        loaded_at=loaded.loaded_at,
        path=f"{loaded.name}/{loaded.version}",
        created=manifest.created,
        data_window=manifest.data_window.model_dump(),
        metrics=manifest.metrics,
        validation=_validation(manifest.metrics),
        graphs=graphs,
        refused=[r for r in _refused(registry, loaded.name) if r.version > loaded.version],
    )


@router.get("", response_model=ModelsResponse)
async def list_models(registry: RegistryDep) -> ModelsResponse:
    models = [model_info(registry, m) for m in registry.list()]
    refused = {
        name: [RefusedVersion(version=r.version, reason=r.reason, at=r.at) for r in items]
        for name, items in registry.refused().items()
        if items
    }
    message = None if models else "no models loaded"
    return ModelsResponse(models=models, refused=refused, message=message)


@router.get("/{name}", response_model=ModelInfo)
async def get_model(name: str, registry: RegistryDep) -> ModelInfo:
    check_model_name(name)
    loaded = next((m for m in registry.list() if m.name == name), None)
    if loaded is None:
        raise NotFound("model", name)
    return model_info(registry, loaded)


def _outcomes(results: list[Outcome]) -> ReloadResponse:
    return ReloadResponse(
        results=[
            ReloadOutcome(model=r.model, status=r.status, version=r.version, reason=r.reason)
            for r in results
        ]
    )


@router.post("/reload", response_model=ReloadResponse)
async def reload_all(registry: RegistryDep) -> ReloadResponse:
    """Scan every model folder now and swap in newer valid versions."""
    return _outcomes(list(await registry.reload()))


@router.post("/{name}/reload", response_model=ReloadResponse)
async def reload_one(name: str, registry: RegistryDep) -> ReloadResponse:
    """Scan one model's folder now; 404 when there is no such model."""
    return _outcomes(list(await registry.reload(name)))
