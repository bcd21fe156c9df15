"""Inventory HTTP routes: misplaced, missing, reshelving, tasks, a live stream (staff);
demand rankings (managers)."""

# No `from __future__ import annotations`: FastAPI must resolve the dependency alias that
# the router builds locally, and string annotations would hide it.

from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path as FilePath
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from pydantic import BaseModel
from sse_starlette import EventSourceResponse, ServerSentEvent

from stackpulse.kernel.layout import Layout
from stackpulse.kernel.topics import SITE_RE
from stackpulse.services.inventory.demand_feed import PUBLISHED_ROWS
from stackpulse.services.inventory.view import (
    DemandClass,
    DemandTitle,
    FloorTasks,
    InventoryView,
    ListName,
    MisplacedItem,
    MissingItem,
    ReshelvingItem,
)

STATIC_DIR = FilePath(__file__).parent / "static"
RETRY_MS = 3000

STREAM_DOC = """Server-Sent Events of this site's inventory lists, for the staff page.

The first event is `snapshot` (`{site, misplaced, missing, reshelving, tasks}`, the same
lists as the list endpoints). Then, whenever a list changes, one event named after it
(`misplaced`, `missing`, `reshelving` or `tasks`) carrying the whole list as its endpoint
returns it (at most about one per list per second). Comment lines keep the connection
alive. Needs the same bearer token as the list endpoints (read it with `fetch`, since
`EventSource` sends no headers)."""


class ErrorDetail(BaseModel):
    detail: str


class InventorySnapshot(BaseModel):
    """The first event of a stream: everything the staff page needs to start from."""

    site: str
    misplaced: list[MisplacedItem]
    missing: list[MissingItem]
    reshelving: list[ReshelvingItem]
    tasks: list[FloorTasks]


RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorDetail, "description": "No or a bad bearer token"},
    403: {"model": ErrorDetail, "description": "Not staff of this site"},
    404: {"model": ErrorDetail, "description": "Unknown site"},
}


def inventory_router(
    view: InventoryView,
    layouts: Sequence[Layout],
    guard: Callable[..., Any],
    *,
    ping_seconds: float = 15.0,
    send_timeout: float = 30.0,
) -> APIRouter:
    """Staff routes over `view` for the sites of `layouts`, every one behind `guard`.

    `guard` is a FastAPI dependency ("staff of this site"): it runs before each route
    and raises 401/403 itself; it may take the `site` path parameter.
    """
    router = APIRouter(prefix="/api/v1", tags=["inventory"], dependencies=[Depends(guard)])
    SiteLayout = Annotated[Layout, Depends(_site_layout(layouts))]

    @router.get("/sites/{site}/items/misplaced", responses=RESPONSES)
    async def list_misplaced(layout: SiteLayout) -> list[MisplacedItem]:
        """Items confirmed on a section that does not hold their call number, oldest first."""
        return view.misplaced(layout.site)

    @router.get("/sites/{site}/items/missing", responses=RESPONSES)
    async def list_missing(layout: SiteLayout) -> list[MissingItem]:
        """Items unseen for several sweeps of their home sections and not on loan."""
        return view.missing(layout.site)

    @router.get("/sites/{site}/items/reshelving", responses=RESPONSES)
    async def list_reshelving(layout: SiteLayout) -> list[ReshelvingItem]:
        """Checked-in items not seen back on a shelf within the allowed time."""
        return view.reshelving(layout.site)

    @router.get("/sites/{site}/tasks", responses=RESPONSES)
    async def list_tasks(layout: SiteLayout) -> list[FloorTasks]:
        """Reshelving tasks by floor (ascending), each floor's tasks in walking order.

        A task closes by itself when its item is seen in one of its home sections."""
        return view.tasks(layout.site)

    @router.get(
        "/sites/{site}/inventory/stream",
        description=STREAM_DOC,
        response_class=EventSourceResponse,
        responses={
            200: {"content": {"text/event-stream": {}}, "description": "An event stream"},
            **RESPONSES,
        },
    )
    async def stream(layout: SiteLayout) -> EventSourceResponse:
        return EventSourceResponse(
            _events(view, layout.site),
            ping=ping_seconds,
            send_timeout=send_timeout,
            headers={"Cache-Control": "no-store"},
        )

    return router


MANAGER_RESPONSES: dict[int | str, dict[str, Any]] = {
    **RESPONSES,
    403: {"model": ErrorDetail, "description": "Not a manager of this site"},
}


def demand_router(
    view: InventoryView, layouts: Sequence[Layout], guard: Callable[..., Any]
) -> APIRouter:
    """Managers' demand routes over `view`, every one behind `guard` ("manager of this site")."""
    router = APIRouter(prefix="/api/v1", tags=["demand"], dependencies=[Depends(guard)])
    SiteLayout = Annotated[Layout, Depends(_site_layout(layouts))]

    @router.get("/sites/{site}/demand", responses=MANAGER_RESPONSES)
    async def ranked(
        layout: SiteLayout,
        limit: Annotated[int, Query(ge=1, le=PUBLISHED_ROWS, description="Titles at most")] = 20,
    ) -> list[DemandTitle]:
        """Titles in most demand over the window, highest score first.

        `score` is the weighted signals per copy (hold 3, checkout 2, in-library use 1,
        renewal 1); `suggest_purchase` when holds or in-library uses per copy pass the
        thresholds, and `reason` says which. Empty until the inventory service published."""
        return view.ranked(layout.site, limit)

    @router.get("/sites/{site}/demand/classes", responses=MANAGER_RESPONSES)
    async def classes(layout: SiteLayout) -> list[DemandClass]:
        """Call-number classes (LC class and number, Dewey hundreds) by weighted signals."""
        return view.classes(layout.site)

    return router


def _site_layout(layouts: Sequence[Layout]) -> Callable[[str], Layout]:
    """A dependency giving the layout of the route's `{site}`, or 404 naming the known ones."""
    by_site = {layout.site: layout for layout in layouts}

    def site_layout(
        site: Annotated[str, Path(description="Site id, e.g. `main`", max_length=32)],
    ) -> Layout:
        layout = by_site.get(site) if SITE_RE.fullmatch(site) else None
        if layout is None:
            known = ", ".join(sorted(by_site)) or "none"
            raise HTTPException(404, f"unknown site {site[:40]!r}; known sites: {known}")
        return layout

    return site_layout


def _list_json(view: InventoryView, site: str, name: ListName) -> str:
    items: Sequence[BaseModel]
    if name == "misplaced":
        items = view.misplaced(site)
    elif name == "missing":
        items = view.missing(site)
    elif name == "reshelving":
        items = view.reshelving(site)
    else:
        items = view.tasks(site)
    return "[" + ",".join(i.model_dump_json() for i in items) + "]"


async def _events(view: InventoryView, site: str) -> AsyncIterator[ServerSentEvent]:
    # Subscribing and taking the snapshot with no await in between: nothing falls between.
    async with view.subscribe(site) as feed:
        snapshot = InventorySnapshot(
            site=site,
            misplaced=view.misplaced(site),
            missing=view.missing(site),
            reshelving=view.reshelving(site),
            tasks=view.tasks(site),
        )
        yield ServerSentEvent(snapshot.model_dump_json(), event="snapshot", retry=RETRY_MS)
        async for name, _doc in feed:
            yield ServerSentEvent(_list_json(view, site, name), event=name)


__all__ = ["STATIC_DIR", "InventorySnapshot", "demand_router", "inventory_router"]
