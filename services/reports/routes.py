"""Managers' HTTP routes: the daily report (JSON, CSV, printable HTML), the page's charts,
and the manager page itself (`/manager`, `/manager/{site}`, `/manager/{site}/report`)."""

# No `from __future__ import annotations`: FastAPI reads the dependency aliases at run time.

import asyncio
from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from pathlib import Path as FilePath
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import HTMLResponse, Response

from stackpulse.kernel.layout import Layout
from stackpulse.kernel.store.base import SeriesStore, StoreError
from stackpulse.services.reports.logic import DailyReport, local_today, read_daily
from stackpulse.services.reports.render import html_document, html_fragment, to_csv
from stackpulse.services.reports.service import ReportArchive
from stackpulse.services.reports.site import DayOutOfRange, SiteCalendar
from stackpulse.services.reports.view import FloorSeries, KindHealth, read_floors, read_health
from stackpulse.web.deps import (
    MANAGER_RESPONSES,
    ErrorDetail,
    ManagerOfSite,
    SiteLayout,
    State,
    WebState,
)
from stackpulse.web.pages import page_routes

STATIC_DIR = FilePath(__file__).parent / "static"
STYLESHEET = "/static/manager/style.css"
T = TypeVar("T")

RESPONSES: dict[int | str, dict[str, Any]] = {
    **MANAGER_RESPONSES,
    503: {"model": ErrorDetail, "description": "The time-series store cannot answer"},
}
Day = Annotated[
    date | None,
    Query(alias="date", description="Local calendar day, YYYY-MM-DD; default today"),
]

router = APIRouter(prefix="/api/v1", tags=["reports"])


async def _ask(state: WebState, make: Callable[[SeriesStore], Awaitable[T]]) -> T:
    store = state.store
    timeout = state.settings.store_timeout.total_seconds()
    if store is None:
        raise HTTPException(503, "no time-series store is configured for the API (--store)")
    try:
        async with asyncio.timeout(timeout):
            return await make(store)
    except StoreError as err:
        raise HTTPException(503, f"the time-series store cannot answer: {err}") from None
    except TimeoutError:
        raise HTTPException(503, f"the time-series store took over {timeout:g} s") from None


def _day(state: WebState, layout: Layout, day: date | None) -> date:
    now = state.clock()
    if day is None:
        return local_today(layout, now)
    try:
        return SiteCalendar(layout, timedelta(0)).check(day, now)
    except DayOutOfRange as err:  # as FastAPI says what a parameter does not allow
        problem = {"type": "value_error", "loc": ["query", "date"], "msg": str(err)}
        raise HTTPException(422, [problem]) from None


async def _daily(state: WebState, layout: Layout, day: date | None) -> DailyReport:
    wanted = _day(state, layout, day)
    archive = state.get(ReportArchive)
    if archive is not None and wanted < local_today(layout, state.clock()):
        kept = await archive.load(layout.site, wanted)
        if kept is not None:
            return kept
    return await _ask(state, lambda s: read_daily(s, layout, wanted))


@router.get("/sites/{site}/reports/daily", responses=RESPONSES)
async def daily_json(
    layout: SiteLayout, who: ManagerOfSite, state: State, day: Day = None
) -> DailyReport:
    """The day's summary: occupancy peaks per zone, seat-hours, alerts raised and time to
    fix, items reshelved, top demand (definitions in stackpulse.services.reports.logic).
    A day that is over comes from the archive the reports service keeps."""
    return await _daily(state, layout, day)


@router.get(
    "/sites/{site}/reports/daily.csv",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}}, **RESPONSES},
)
async def daily_csv(
    layout: SiteLayout, who: ManagerOfSite, state: State, day: Day = None
) -> Response:
    """The same figures as CSV, one per row: `site,date,section,subject,metric,value`."""
    report = await _daily(state, layout, day)
    name = f"stackpulse-{report.site}-{report.date.isoformat()}.csv"
    return Response(
        to_csv(report),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get(
    "/sites/{site}/reports/daily.html",
    response_class=Response,  # not HTMLResponse: that would document the errors as HTML
    responses={200: {"content": {"text/html": {}}}, **RESPONSES},
)
async def daily_html(
    layout: SiteLayout,
    who: ManagerOfSite,
    state: State,
    day: Day = None,
    fragment: Annotated[bool, Query(description="Only the report's <article>")] = False,
) -> HTMLResponse:
    """A printable page of the summary (print media hides the navigation)."""
    report = await _daily(state, layout, day)
    body = html_fragment(report) if fragment else html_document(report, STYLESHEET)
    return HTMLResponse(body, headers={"Cache-Control": "no-store"})


@router.get("/sites/{site}/reports/floors", responses=RESPONSES)
async def floors(
    layout: SiteLayout, who: ManagerOfSite, state: State, day: Day = None
) -> list[FloorSeries]:
    """Per floor and quarter hour: occupancy that day and what is typical then."""
    wanted = _day(state, layout, day)
    return await _ask(state, lambda s: read_floors(s, layout, wanted))


@router.get("/sites/{site}/reports/devices", responses=RESPONSES)
async def devices(layout: SiteLayout, who: ManagerOfSite, state: State) -> list[KindHealth]:
    """Per device kind: how many of the layout's devices last said online, offline, or
    nothing in the last 30 days."""
    now = state.clock()
    return await _ask(state, lambda s: read_health(s, layout, now))


pages = page_routes(STATIC_DIR / "index.html", "/manager", "/manager/{site}")
report_page = page_routes(STATIC_DIR / "report.html", "/manager/{site}/report")

__all__ = ["STATIC_DIR", "pages", "report_page", "router"]
