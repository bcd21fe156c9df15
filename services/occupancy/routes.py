"""Public occupancy HTTP routes: zones, seats, forecasts, a live stream; the student page."""

# No `from __future__ import annotations`: FastAPI resolves the dependency aliases at run time.

from collections.abc import AsyncIterator
from pathlib import Path as FilePath
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel
from sse_starlette import EventSourceResponse, ServerSentEvent

from stackpulse.kernel.topics import DEVICE_RE
from stackpulse.services.occupancy.view import ForecastView, OccupancyView, SeatView, ZoneView
from stackpulse.web.deps import (
    NOT_FOUND,
    RETRY_MS,
    STREAM_RESPONSE,
    SiteLayout,
    State,
    event_stream,
    provided,
)
from stackpulse.web.pages import page_routes

STATIC_DIR = FilePath(__file__).parent / "static"

STREAM_DOC = """Server-Sent Events of this site's zones and seats.

The first event is `snapshot` (`{site, zones, seats}`, the same items as the list
endpoints), then one `zone` or `seat` event per change, carrying the item. A client that
falls too far behind gets `reset` (`{reason}`) and the stream ends; reconnecting yields a
fresh snapshot, so no state is ever missed. Comment lines keep the connection alive."""

View = Annotated[OccupancyView, Depends(provided(OccupancyView))]


class Snapshot(BaseModel):
    """The first event of a stream: everything a client needs to start from."""

    site: str
    zones: list[ZoneView]
    seats: list[SeatView]


class StreamReset(BaseModel):
    reason: str


router = APIRouter(prefix="/api/v1", tags=["occupancy"])


@router.get("/sites/{site}/zones", responses=NOT_FOUND)
async def list_zones(layout: SiteLayout, view: View) -> list[ZoneView]:
    """Every zone of the site with its occupancy and free seats."""
    return view.zones(layout.site)


@router.get("/sites/{site}/seats", responses=NOT_FOUND)
async def list_seats(
    layout: SiteLayout,
    view: View,
    zone: Annotated[
        str | None, Query(description="Only the seats of this zone id", max_length=64)
    ] = None,
) -> list[SeatView]:
    """Seats and their state (`free`, `occupied`, `held`, `unknown`)."""
    if zone is not None and not (
        DEVICE_RE.fullmatch(zone) and any(z.id == zone for z in layout.zones)
    ):
        raise HTTPException(404, f"unknown zone {zone[:70]!r} in site {layout.site!r}")
    return view.seats(layout.site, zone)


@router.get("/sites/{site}/forecast", responses=NOT_FOUND)
async def list_forecasts(layout: SiteLayout, view: View) -> list[ForecastView]:
    """Per zone, how busy this hour and the next few usually are (means of past weeks).

    Empty until the occupancy service has published its first forecast; an hour with
    no history has `occupancy` and `busyness` null."""
    return view.forecasts(layout.site)


@router.get(
    "/sites/{site}/stream",
    description=STREAM_DOC,
    response_class=EventSourceResponse,
    responses={**STREAM_RESPONSE, **NOT_FOUND},
)
async def stream(layout: SiteLayout, view: View, state: State) -> EventSourceResponse:
    return event_stream(state, _events(view, layout.site))


async def _events(view: OccupancyView, site: str) -> AsyncIterator[ServerSentEvent]:
    # Subscribing and taking the snapshot with no await in between: nothing falls between.
    async with view.subscribe(site) as changes:
        snapshot = Snapshot(site=site, zones=view.zones(site), seats=view.seats(site))
        yield ServerSentEvent(snapshot.model_dump_json(), event="snapshot", retry=RETRY_MS)
        async for change in changes:
            yield ServerSentEvent(change.item.model_dump_json(), event=change.what)
        reason = StreamReset(reason=changes.reason or "closed")
        yield ServerSentEvent(reason.model_dump_json(), event="reset")


pages = page_routes(STATIC_DIR / "index.html", "/", "/sites/{site}")

__all__ = ["STATIC_DIR", "Snapshot", "StreamReset", "pages", "router"]
