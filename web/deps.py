"""What every router shares: the site in the path, the logins, the services' read models.

Routers are module-level (`routes.py` of each service) and take what they need through
these `Annotated` aliases; the composition root puts the objects on `app.state.web`.
"""

# No `from __future__ import annotations`: FastAPI reads these annotations at run time.

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from fastapi import Depends, HTTPException, Path, Request
from pydantic import BaseModel
from sse_starlette import EventSourceResponse, ServerSentEvent

from stackpulse.kernel.auth import DEMAND, READ, Principal
from stackpulse.kernel.health import Health
from stackpulse.kernel.layout import Layout
from stackpulse.kernel.store.base import SeriesStore
from stackpulse.kernel.topics import SITE_RE
from stackpulse.web.auth import (
    Admin,
    AnyStaff,
    Editor,
    EditorOfSite,
    ManagerOfSite,
    StaffOfSite,
    require_site,
)
from stackpulse.web.settings import ApiSettings

T = TypeVar("T")
RETRY_MS = 3000  # how long a browser's EventSource waits before it reconnects


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class WebState:
    """Everything the routes read, set once on `app.state.web` by `build_app`."""

    layouts: Mapping[str, Layout]
    settings: ApiSettings = field(default_factory=ApiSettings)
    objects: dict[type, object] = field(default_factory=dict)  # read models, books, ...
    store: SeriesStore | None = None
    clock: Callable[[], datetime] = _utcnow
    health: Health = field(default_factory=Health)

    def get(self, kind: type[T]) -> T | None:
        found = self.objects.get(kind)
        return found if isinstance(found, kind) else None


def web_state(request: Request) -> WebState:
    state = request.app.state.web
    assert isinstance(state, WebState)
    return state


State = Annotated[WebState, Depends(web_state)]


def site_layout(
    state: State,
    site: Annotated[str, Path(description="Site id, e.g. `main`", max_length=32)],
) -> Layout:
    """The layout of the path's `{site}`, or 404 naming the sites this server knows."""
    layout = state.layouts.get(site) if SITE_RE.fullmatch(site) else None
    if layout is None:
        known = ", ".join(sorted(state.layouts)) or "none"
        raise HTTPException(404, f"unknown site {site[:40]!r}; known sites: {known}")
    return layout


SiteLayout = Annotated[Layout, Depends(site_layout)]


def provided(kind: type[T]) -> Callable[[Request], T]:
    """A dependency giving the `kind` object the composition root provided, else 503."""

    def dependency(request: Request) -> T:
        found = web_state(request).get(kind)
        if found is None:
            raise HTTPException(503, f"this server does not serve {kind.__name__}")
        return found

    return dependency


# Who may call: each alias is one dependency, so FastAPI checks it once per request.
reader_of_site = require_site("staff", "manager", "admin", scope=READ)
demand_of_site = require_site("manager", "admin", scope=DEMAND)
ReaderOfSite = Annotated[Principal, Depends(reader_of_site)]
DemandOfSite = Annotated[Principal, Depends(demand_of_site)]


class ErrorDetail(BaseModel):
    detail: str


NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorDetail, "description": "Unknown site or zone"}
}
STAFF_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorDetail, "description": "No or a bad bearer token"},
    403: {"model": ErrorDetail, "description": "Not staff of this site"},
    404: {"model": ErrorDetail, "description": "Unknown site"},
}
MANAGER_RESPONSES: dict[int | str, dict[str, Any]] = {
    **STAFF_RESPONSES,
    403: {"model": ErrorDetail, "description": "Not a manager of this site"},
}
STREAM_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "An event stream"}
}


def event_stream(state: WebState, events: AsyncIterator[ServerSentEvent]) -> EventSourceResponse:
    """An SSE response with the server's keep-alive and send timeout, never cached."""
    return EventSourceResponse(
        events,
        ping=state.settings.ping.total_seconds(),
        send_timeout=state.settings.send_timeout.total_seconds(),
        headers={"Cache-Control": "no-store"},
    )


__all__ = [
    "MANAGER_RESPONSES",
    "NOT_FOUND",
    "RETRY_MS",
    "STAFF_RESPONSES",
    "STREAM_RESPONSE",
    "Admin",
    "AnyStaff",
    "DemandOfSite",
    "Editor",
    "EditorOfSite",
    "ErrorDetail",
    "ManagerOfSite",
    "ReaderOfSite",
    "SiteLayout",
    "StaffOfSite",
    "State",
    "WebState",
    "demand_of_site",
    "event_stream",
    "provided",
    "reader_of_site",
    "site_layout",
]
