"""The HTTP application: API routers, the student page and its assets, a health check."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from importlib import metadata
from typing import Annotated

from fastapi import APIRouter, FastAPI, HTTPException, Path
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from stackpulse.kernel.auth import DEMAND, READ
from stackpulse.kernel.layout import Layout
from stackpulse.kernel.store.base import SeriesStore
from stackpulse.services.inventory.routes import STATIC_DIR as STAFF_STATIC_DIR
from stackpulse.services.inventory.routes import demand_router, inventory_router
from stackpulse.services.inventory.view import InventoryView
from stackpulse.services.occupancy.routes import STATIC_DIR, occupancy_router
from stackpulse.services.occupancy.view import OccupancyView
from stackpulse.services.reports import manager_pages, reports_router
from stackpulse.web.auth import AuthService, auth_router, require_site
from stackpulse.web.ratelimit import RateLimit, RateLimitMiddleware, limited_responses

DESCRIPTION = """Live library signals: how full each zone is and which seats are free.
Public endpoints need no authentication; times are RFC 3339 in UTC."""


class SiteInfo(BaseModel):
    id: str
    name: str
    timezone: str


class Health(BaseModel):
    status: str


def _version() -> str:
    try:
        return metadata.version("stackpulse")
    except metadata.PackageNotFoundError:  # run from a checkout, not installed
        return "0.1.0"


def sites_router(layouts: Sequence[Layout]) -> APIRouter:
    """`GET /api/v1/sites`: the buildings this deployment serves, in layout order."""
    router = APIRouter(prefix="/api/v1", tags=["sites"])
    sites = [SiteInfo(id=lay.site, name=lay.name, timezone=lay.timezone) for lay in layouts]

    @router.get("/sites")
    async def list_sites() -> list[SiteInfo]:
        return sites

    return router


def build_app(
    view: OccupancyView,
    layouts: Sequence[Layout],
    *,
    routers: Sequence[APIRouter] = (),
    inventory: InventoryView | None = None,
    ping_seconds: float = 15.0,
    auth: AuthService | None = None,
    rate_limit: RateLimit | None = None,
    store: SeriesStore | None = None,
    clock: Callable[[], datetime] | None = None,
) -> FastAPI:
    """Compose the public API and pages over `view`; `routers` adds other services' routes.

    Without `auth` the protected routes answer 503; `rate_limit` limits /api/ per client.
    The managers' reports read `store` (503 without one); `clock` says what "today" is.
    """
    if not layouts:
        raise ValueError("build_app needs at least one site layout")
    known = {lay.site for lay in layouts}
    app = FastAPI(title="StackPulse", version=_version(), description=DESCRIPTION)
    app.state.auth = auth  # read by the dependencies in stackpulse.web.auth
    if rate_limit is not None and rate_limit.enabled:
        app.add_middleware(RateLimitMiddleware, limit=rate_limit)
    limited = limited_responses(rate_limit)  # every /api/ route may answer 429
    app.include_router(auth_router(), responses=limited)
    app.include_router(sites_router(layouts), responses=limited)
    app.include_router(
        occupancy_router(view, layouts, ping_seconds=ping_seconds), responses=limited
    )
    for router in routers:
        app.include_router(router, responses=limited)
    if inventory is not None:  # staff data: every route behind "staff of this site"
        staff = require_site("staff", "manager", "admin", scope=READ)
        app.include_router(
            inventory_router(inventory, layouts, staff, ping_seconds=ping_seconds),
            responses=limited,
        )
        # Demand: ManagerOfSite's rule (managers and admins of the site) with its scope.
        manager = require_site("manager", "admin", scope=DEMAND)
        app.include_router(demand_router(inventory, layouts, manager), responses=limited)
        _staff_page(app, known)
    # Managers of the site.
    app.include_router(reports_router(layouts, store, clock=clock), responses=limited)
    app.include_router(manager_pages(layouts))
    app.mount("/static/occupancy", StaticFiles(directory=STATIC_DIR), name="occupancy-static")
    # What the staff and manager pages share (session.js, common.css).
    common = StaticFiles(packages=[("stackpulse.web", "static/common")])
    app.mount("/static/common", common, name="common-static")
    page = STATIC_DIR / "index.html"
    no_cache = {"Cache-Control": "no-cache"}

    @app.get("/", include_in_schema=False)
    async def student_page() -> FileResponse:
        return FileResponse(page, headers=no_cache)

    @app.get("/sites/{site}", include_in_schema=False)
    async def site_page(site: Annotated[str, Path(max_length=32)]) -> FileResponse:
        if site not in known:
            raise HTTPException(
                404, f"unknown site {site!r}; known sites: {', '.join(sorted(known))}"
            )
        return FileResponse(page, headers=no_cache)

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> Health:
        return Health(status="ok")

    return app


def _staff_page(app: FastAPI, known: set[str]) -> None:
    """The staff shelves page at `/staff` and `/staff/{site}`; the page itself holds no data."""
    app.mount("/static/inventory", StaticFiles(directory=STAFF_STATIC_DIR), name="inventory-static")
    page = STAFF_STATIC_DIR / "index.html"
    headers = {"Cache-Control": "no-cache"}

    @app.get("/staff", include_in_schema=False)
    async def staff_page() -> FileResponse:
        return FileResponse(page, headers=headers)

    @app.get("/staff/{site}", include_in_schema=False)
    async def staff_site_page(site: Annotated[str, Path(max_length=32)]) -> FileResponse:
        if site not in known:
            raise HTTPException(
                404, f"unknown site {site!r}; known sites: {', '.join(sorted(known))}"
            )
        return FileResponse(page, headers=headers)
