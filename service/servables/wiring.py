"""What a servable adds to the app that serves it: declared by the servable, held by the app.

Most servables need nothing but their routes. Two need more: IMN binds its item table when
a version loads and updates user and item states on every accepted event; DINOP advances
item states when sales arrive. Every servable says so in one method, `wiring(state) ->
Wiring` (the `Servable` shape below), and `service.api.main.create_app` calls it for each
servable it is given (`SERVABLES` by default) and keeps what they return on that app:

- `load_hooks` go to the app's registry (`ModelRegistry.add_load_hook`), run after a
  version's warm-up and before it is swapped in;
- `updaters` are the app's events pipeline's state updaters (`app.state.updaters`), so
  `POST /v1/events` updates exactly the models the app was built with;
- `sales_hooks` run after `POST /v1/sales` stored its records (`app.state.sales_hooks`).

Nothing is registered process-wide: two apps in one process (tests build many) never share
a hook, and an app built with only the servables a test needs wires only those.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from starlette.datastructures import State

if TYPE_CHECKING:
    from service.events.updater import StateUpdater
    from service.runtime.registry import LoadHook, ModelRegistry
    from service.state.store import StateStore

#: `hook(records, registry, store)` after `POST /v1/sales` stored `records` (the route's
#: `SalesRecord`s). A hook that raises does not undo the ingestion; its error is the
#: route's error.
SalesHook = Callable[[Sequence[Any], "ModelRegistry", "StateStore | None"], Awaitable[None]]


@dataclass(frozen=True)
class Wiring:
    """What one servable adds to an app, beyond its routes."""

    model: str
    load_hooks: tuple[LoadHook, ...] = ()
    updaters: tuple[StateUpdater, ...] = ()
    sales_hooks: tuple[SalesHook, ...] = ()


class Servable(Protocol):
    """The shape every servable has: its model's name, and what it adds to an app.

    Each `service.servables.<model>` module holds one (`SERVABLE`) with the model's request
    logic as methods; `wiring` is called once per app with the app's `state` (its registry
    is set; its store may connect later, so hooks read `state.store` when they run).
    """

    @property
    def model(self) -> str: ...

    def wiring(self, state: State) -> Wiring: ...
