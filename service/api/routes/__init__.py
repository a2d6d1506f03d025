"""The routers the app serves: `create_app` includes every module named in `ROUTERS`.

Add a resource by writing `service/api/routes/<resource>.py` with a module-level
`router = APIRouter(...)` and appending its dotted module name here. Names (not imported
modules) keep this file free of import cycles and let `create_app` import them in order.
"""

from __future__ import annotations

# Routes are matched in this order: probes first, then the hot routes, then the rest.
ROUTERS: list[str] = [
    "service.api.routes.health",
    "service.api.routes.recommendations",
    "service.api.routes.events",
    "service.api.routes.intent",
    "service.api.routes.cvr",
    "service.api.routes.forecast",
    "service.api.routes.promotion",
    "service.api.routes.coupons",
    "service.api.routes.sales",
    "service.api.routes.models",
    "service.api.routes.inference",
]
