"""The HTTP application: the services' web parts mounted one way, logins, operations."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from stackpulse.kernel.health import Health
from stackpulse.kernel.layout import Layout
from stackpulse.kernel.store.base import SeriesStore
from stackpulse.web.auth import AuthService, auth_router
from stackpulse.web.deps import State, WebState
from stackpulse.web.ops import ops_router
from stackpulse.web.ratelimit import RateLimit, RateLimitMiddleware, limited_responses
from stackpulse.web.settings import ApiSettings

DESCRIPTION = """Live library signals: how full each zone is and which seats are free.
Public endpoints need no authentication; times are RFC 3339 in UTC."""

COMMON_STATIC = Path(__file__).parent / "static" / "common"


@dataclass(frozen=True)
class WebPart:
    """What one service serves over HTTP: routers, the objects they read, static assets."""

    name: str
    routers: Sequence[APIRouter] = ()
    objects: Mapping[type, object] = field(default_factory=dict)
    static: Sequence[tuple[str, Path]] = ()  # (URL prefix, directory)


class SiteInfo(BaseModel):
    id: str
    name: str
    timezone: str


def version() -> str:
    try:
        return metadata.version("stackpulse")
    except metadata.PackageNotFoundError:  # run from a checkout, not installed
        return "0.0.0+checkout"


sites_router = APIRouter(prefix="/api/v1", tags=["sites"])


@sites_router.get("/sites")
async def list_sites(state: State) -> list[SiteInfo]:
    """The buildings this deployment serves, in layout order."""
    return [
        SiteInfo(id=lay.site, name=lay.name, timezone=lay.timezone)
        for lay in state.layouts.values()
    ]


def build_app(
    layouts: Sequence[Layout],
    parts: Sequence[WebPart],
    *,
    settings: ApiSettings | None = None,
    auth: AuthService | None = None,
    rate_limit: RateLimit | None = None,
    store: SeriesStore | None = None,
    clock: Callable[[], datetime] | None = None,
    health: Health | None = None,
) -> FastAPI:
    """Compose the API and pages from the services' `parts` (each service's `entry.web`).

    Without `auth` the protected routes answer 503; `rate_limit` limits /api/ per client.
    """
    if not layouts:
        raise ValueError("build_app needs at least one site layout")
    app = FastAPI(title="StackPulse", version=version(), description=DESCRIPTION)
    state = WebState(
        layouts={lay.site: lay for lay in layouts},
        settings=settings or ApiSettings(),
        store=store,
        health=health or Health(),
    )
    if clock is not None:
        state.clock = clock
    for part in parts:
        state.objects.update(part.objects)
    app.state.web = state
    app.state.auth = auth  # read by the dependencies in stackpulse.web.auth
    if rate_limit is not None and rate_limit.enabled:
        app.add_middleware(RateLimitMiddleware, limit=rate_limit)
    limited: dict[int | str, dict[str, Any]] = limited_responses(rate_limit)
    for router in (auth_router(), sites_router, *(r for p in parts for r in p.routers)):
        app.include_router(router, responses=limited if _is_api(router) else None)
    app.include_router(ops_router)
    app.mount("/static/common", StaticFiles(directory=COMMON_STATIC), name="common-static")
    for part in parts:
        for prefix, directory in part.static:
            app.mount(prefix, StaticFiles(directory=directory), name=f"{part.name}-static")
    return app


def _is_api(router: APIRouter) -> bool:
    return router.prefix.startswith("/api/")


__all__ = ["SiteInfo", "WebPart", "build_app", "version"]
