"""Inventory HTTP routes: misplaced, missing, reshelving, tasks, a live stream (staff);
demand rankings (managers); the staff page."""

# No `from __future__ import annotations`: FastAPI resolves the dependency aliases at run time.

from collections.abc import AsyncIterator, Sequence
from pathlib import Path as FilePath
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel
from sse_starlette import EventSourceResponse, ServerSentEvent

from stackpulse.kernel.contracts.inventory import ListName
from stackpulse.services.inventory.demand_feed import PUBLISHED_ROWS
from stackpulse.services.inventory.view import (
    DemandClass,
    DemandTitle,
    FloorTasks,
    InventoryView,
    MisplacedItem,
    MissingItem,
    ReshelvingItem,
)
from stackpulse.web.deps import (
    MANAGER_RESPONSES,
    RETRY_MS,
    STAFF_RESPONSES,
    STREAM_RESPONSE,
    SiteLayout,
    State,
    demand_of_site,
    event_stream,
    provided,
    reader_of_site,
)
from stackpulse.web.pages import page_routes

STATIC_DIR = FilePath(__file__).parent / "static"

STREAM_DOC = """Server-Sent Events of this site's inventory lists, for the staff page.

The first event is `snapshot` (`{site, misplaced, missing, reshelving, tasks}`, the same
lists as the list endpoints). Then, whenever a list changes, one event named after it
(`misplaced`, `missing`, `reshelving` or `tasks`) carrying the whole list as its endpoint
returns it (at most about one per list per second). Comment lines keep the connection
alive. Needs the same bearer token as the list endpoints (read it with `fetch`, since
`EventSource` sends no headers)."""

View = Annotated[InventoryView, Depends(provided(InventoryView))]


class InventorySnapshot(BaseModel):
    """The first event of a stream: everything the staff page needs to start from."""

    site: str
    misplaced: list[MisplacedItem]
    missing: list[MissingItem]
    reshelving: list[ReshelvingItem]
    tasks: list[FloorTasks]


# Every route behind "staff of this site", checked before anything else of the request.
router = APIRouter(prefix="/api/v1", tags=["inventory"], dependencies=[Depends(reader_of_site)])


@router.get("/sites/{site}/items/misplaced", responses=STAFF_RESPONSES)
async def list_misplaced(layout: SiteLayout, view: View) -> list[MisplacedItem]:
    """Items confirmed on a section that does not hold their call number, oldest first."""
    return view.misplaced(layout.site)


@router.get("/sites/{site}/items/missing", responses=STAFF_RESPONSES)
async def list_missing(layout: SiteLayout, view: View) -> list[MissingItem]:
    """Items unseen for several sweeps of their home sections and not on loan."""
    return view.missing(layout.site)


@router.get("/sites/{site}/items/reshelving", responses=STAFF_RESPONSES)
async def list_reshelving(layout: SiteLayout, view: View) -> list[ReshelvingItem]:
    """Checked-in items not seen back on a shelf within the allowed time."""
    return view.reshelving(layout.site)


@router.get("/sites/{site}/tasks", responses=STAFF_RESPONSES)
async def list_tasks(layout: SiteLayout, view: View) -> list[FloorTasks]:
    """Reshelving tasks by floor (ascending), each floor's tasks in walking order.

    A task closes by itself when its item is seen in one of its home sections."""
    return view.tasks(layout.site)


@router.get(
    "/sites/{site}/inventory/stream",
    description=STREAM_DOC,
    response_class=EventSourceResponse,
    responses={**STREAM_RESPONSE, **STAFF_RESPONSES},
)
async def stream(layout: SiteLayout, view: View, state: State) -> EventSourceResponse:
    return event_stream(state, _events(view, layout.site))


demand_router = APIRouter(prefix="/api/v1", tags=["demand"], dependencies=[Depends(demand_of_site)])


@demand_router.get("/sites/{site}/demand", responses=MANAGER_RESPONSES)
async def ranked(
    layout: SiteLayout,
    view: View,
    limit: Annotated[int, Query(ge=1, le=PUBLISHED_ROWS, description="Titles at most")] = 20,
) -> list[DemandTitle]:
    """Titles in most demand over the window, highest score first.

    `score` is the weighted signals per copy (hold 3, checkout 2, in-library use 1,
    renewal 1); `suggest_purchase` when holds or in-library uses per copy pass the
    thresholds, and `reason` says which. Empty until the inventory service published."""
    return view.ranked(layout.site, limit)


@demand_router.get("/sites/{site}/demand/classes", responses=MANAGER_RESPONSES)
async def classes(layout: SiteLayout, view: View) -> list[DemandClass]:
    """Call-number classes (LC class and number, Dewey hundreds) by weighted signals."""
    return view.classes(layout.site)


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


pages = page_routes(STATIC_DIR / "index.html", "/staff", "/staff/{site}")

__all__ = ["STATIC_DIR", "InventorySnapshot", "demand_router", "pages", "router"]
