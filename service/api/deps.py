"""`Annotated` dependencies so route signatures stay short and typed.

The objects live on `app.state` (set by `create_app` and its lifespan); routes ask for them
here rather than reaching into `request.app.state` so that tests and type checks see one seam.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.config import Settings
from service.errors import NotReady
from service.runtime.registry import ModelRegistry
from service.state.store import StateStore


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_registry(request: Request) -> ModelRegistry:
    registry: ModelRegistry = request.app.state.registry
    return registry


def get_store(request: Request) -> StateStore:
    """The state store; NotReady (503) when the app runs without Redis."""
    store: StateStore | None = getattr(request.app.state, "store", None)
    if store is None:
        raise NotReady("no state store is connected", retry_after_s=5.0)
    return store


def get_optional_store(request: Request) -> StateStore | None:
    """The state store or None (routes that can answer statelessly)."""
    store: StateStore | None = getattr(request.app.state, "store", None)
    return store


SettingsDep = Annotated[Settings, Depends(get_settings)]
RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
StoreDep = Annotated[StateStore, Depends(get_store)]
OptionalStoreDep = Annotated[StateStore | None, Depends(get_optional_store)]
