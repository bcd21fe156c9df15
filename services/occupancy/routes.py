"""Public occupancy HTTP routes: zones, seats and a live Server-Sent Events stream."""

# No `from __future__ import annotations`: FastAPI must resolve the dependency alias that
# each router builds locally, and string annotations would hide it.

from collections.abc import AsyncIterator, Sequence
from pathlib import Path as FilePath
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from pydantic import BaseModel
from sse_starlette import EventSourceResponse, ServerSentEvent

from stackpulse.kernel.layout import Layout
from stackpulse.kernel.topics import DEVICE_RE, SITE_RE
from stackpulse.services.occupancy.view import ForecastView, OccupancyView, SeatView, ZoneView

STATIC_DIR = FilePath(__file__).parent / "static"
RETRY_MS = 3000  # how long a browser's EventSource waits before it reconnects

STREAM_DOC = """Server-Sent Events of this site's zones and seats.

The first event is `snapshot` (`{site, zones, seats}`, the same items as the list
endpoints), then one `zone` or `seat` event per change, carrying the item. A client that
falls too far behind gets `reset` (`{reason}`) and the stream ends; reconnecting yields a
fresh snapshot, so no state is ever missed. Comment lines keep the connection alive."""


class ErrorDetail(BaseModel):
    detail: str


class Snapshot(BaseModel):
    """The first event of a stream: everything a client needs to start from."""

    site: str
    zones: list[ZoneView]
    seats: list[SeatView]


class StreamReset(BaseModel):
    reason: str


NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorDetail, "description": "Unknown site or zone"}
}


def occupancy_router(
    view: OccupancyView,
    layouts: Sequence[Layout],
    *,
    ping_seconds: float = 15.0,
    send_timeout: float = 30.0,
) -> APIRouter:
    """Routes over `view` for the sites of `layouts`; any other site is a 404."""
    by_site = {layout.site: layout for layout in layouts}
    router = APIRouter(prefix="/api/v1", tags=["occupancy"])

    def site_layout(
        site: Annotated[str, Path(description="Site id, e.g. `main`", max_length=32)],
    ) -> Layout:
        layout = by_site.get(site) if SITE_RE.fullmatch(site) else None
        if layout is None:
            known = ", ".join(sorted(by_site)) or "none"
            raise HTTPException(404, f"unknown site {site[:40]!r}; known sites: {known}")
        return layout

    SiteLayout = Annotated[Layout, Depends(site_layout)]

    @router.get("/sites/{site}/zones", responses=NOT_FOUND)
    async def list_zones(layout: SiteLayout) -> list[ZoneView]:
        """Every zone of the site with its occupancy and free seats."""
        return view.zones(layout.site)

    @router.get("/sites/{site}/seats", responses=NOT_FOUND)
    async def list_seats(
        layout: SiteLayout,
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
    async def list_forecasts(layout: SiteLayout) -> list[ForecastView]:
        """Per zone, how busy this hour and the next few usually are (means of past weeks).

        Empty until the occupancy service has published its first forecast; an hour with
        no history has `occupancy` and `busyness` null."""
        return view.forecasts(layout.site)

    @router.get(
        "/sites/{site}/stream",
        description=STREAM_DOC,
        response_class=EventSourceResponse,
        responses={
            200: {"content": {"text/event-stream": {}}, "description": "An event stream"},
            **NOT_FOUND,
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


async def _events(view: OccupancyView, site: str) -> AsyncIterator[ServerSentEvent]:
    # Subscribing and taking the snapshot with no await in between: nothing falls between.
    async with view.subscribe(site) as changes:
        snapshot = Snapshot(site=site, zones=view.zones(site), seats=view.seats(site))
        yield ServerSentEvent(snapshot.model_dump_json(), event="snapshot", retry=RETRY_MS)
        async for change in changes:
            yield ServerSentEvent(change.item.model_dump_json(), event=change.what)
        reason = StreamReset(reason=changes.reason or "closed")
        yield ServerSentEvent(reason.model_dump_json(), event="reset")


__all__ = ["STATIC_DIR", "Snapshot", "StreamReset", "occupancy_router"]
