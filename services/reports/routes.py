"""Managers' HTTP routes: the daily report (JSON, CSV, printable HTML), the page's charts,
and the manager page itself (`/manager`, `/manager/{site}`, `/manager/{site}/report`)."""

# No `from __future__ import annotations`: FastAPI reads the dependency aliases at run time.

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path as FilePath
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from fastapi.responses import FileResponse, HTMLResponse, Response
from pydantic import BaseModel

from stackpulse.kernel.layout import Layout
from stackpulse.kernel.store.base import SeriesStore, StoreError
from stackpulse.kernel.topics import SITE_RE
from stackpulse.services.reports.charts import FloorSeries, KindHealth, read_floors, read_health
from stackpulse.services.reports.render import html_document, html_fragment, to_csv
from stackpulse.services.reports.report import DailyReport, local_today, read_daily
from stackpulse.web.auth import ManagerOfSite

STATIC_DIR = FilePath(__file__).parent / "static"
ASSETS = frozenset({"app.js", "style.css"})
STYLESHEET = "/static/manager/style.css"
T = TypeVar("T")


class ErrorDetail(BaseModel):
    detail: str


RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorDetail, "description": "No or a bad bearer token"},
    403: {"model": ErrorDetail, "description": "Not a manager of this site"},
    404: {"model": ErrorDetail, "description": "Unknown site"},
    503: {"model": ErrorDetail, "description": "The time-series store cannot answer"},
}


def _utcnow() -> datetime:
    return datetime.now(UTC)


def reports_router(
    layouts: Sequence[Layout],
    store: SeriesStore | None,
    *,
    clock: Callable[[], datetime] | None = None,
    timeout: float = 30.0,
) -> APIRouter:
    """`/api/v1/sites/{site}/reports/...` over `store`, managers and admins of the site only.

    Without a store every route answers 503. `clock` says what "today" is.
    """
    by_site = {lay.site: lay for lay in layouts}
    clock = clock or _utcnow
    router = APIRouter(prefix="/api/v1", tags=["reports"])

    def site_layout(
        site: Annotated[str, Path(description="Site id, e.g. `main`", max_length=32)],
    ) -> Layout:
        layout = by_site.get(site) if SITE_RE.fullmatch(site) else None
        if layout is None:
            known = ", ".join(sorted(by_site)) or "none"
            raise HTTPException(404, f"unknown site {site[:40]!r}; known sites: {known}")
        return layout

    SiteLayout = Annotated[Layout, Depends(site_layout)]
    Day = Annotated[
        date | None,
        Query(alias="date", description="Local calendar day, YYYY-MM-DD; default today"),
    ]

    async def ask(make: Callable[[SeriesStore], Awaitable[T]]) -> T:
        if store is None:
            raise HTTPException(503, "no time-series store is configured for the API (--store)")
        try:
            async with asyncio.timeout(timeout):
                return await make(store)
        except StoreError as err:
            raise HTTPException(503, f"the time-series store cannot answer: {err}") from None
        except TimeoutError:
            raise HTTPException(503, f"the time-series store took over {timeout:g} s") from None

    async def daily(layout: Layout, day: date | None) -> DailyReport:
        wanted = day or local_today(layout, clock())
        return await ask(lambda s: read_daily(s, layout, wanted))

    @router.get("/sites/{site}/reports/daily", responses=RESPONSES)
    async def daily_json(layout: SiteLayout, who: ManagerOfSite, day: Day = None) -> DailyReport:
        """The day's summary: occupancy peaks per zone, seat-hours, alerts raised and time to
        fix, items reshelved, top demand (definitions in stackpulse.services.reports.report)."""
        return await daily(layout, day)

    @router.get(
        "/sites/{site}/reports/daily.csv",
        response_class=Response,
        responses={200: {"content": {"text/csv": {}}}, **RESPONSES},
    )
    async def daily_csv(layout: SiteLayout, who: ManagerOfSite, day: Day = None) -> Response:
        """The same figures as CSV, one per row: `site,date,section,subject,metric,value`."""
        report = await daily(layout, day)
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
        day: Day = None,
        fragment: Annotated[bool, Query(description="Only the report's <article>")] = False,
    ) -> HTMLResponse:
        """A printable page of the summary (print media hides the navigation)."""
        report = await daily(layout, day)
        body = html_fragment(report) if fragment else html_document(report, STYLESHEET)
        return HTMLResponse(body, headers={"Cache-Control": "no-store"})

    @router.get("/sites/{site}/reports/floors", responses=RESPONSES)
    async def floors(layout: SiteLayout, who: ManagerOfSite, day: Day = None) -> list[FloorSeries]:
        """Per floor and quarter hour: occupancy that day and what is typical then."""
        wanted = day or local_today(layout, clock())
        return await ask(lambda s: read_floors(s, layout, wanted))

    @router.get("/sites/{site}/reports/devices", responses=RESPONSES)
    async def devices(layout: SiteLayout, who: ManagerOfSite) -> list[KindHealth]:
        """Per device kind: how many of the layout's devices last said online, offline, or
        nothing in the last 30 days."""
        now = clock()
        return await ask(lambda s: read_health(s, layout, now))

    return router


def manager_pages(layouts: Sequence[Layout]) -> APIRouter:
    """The manager page and the report page shell; they hold no data (the API checks logins)."""
    known = {lay.site for lay in layouts}
    router = APIRouter(include_in_schema=False)
    headers = {"Cache-Control": "no-cache"}

    def page(name: str, site: str | None) -> FileResponse:
        if site is not None and site not in known:
            raise HTTPException(
                404, f"unknown site {site[:40]!r}; known sites: {', '.join(sorted(known))}"
            )
        return FileResponse(STATIC_DIR / name, headers=headers)

    @router.get("/manager")
    async def manager_page() -> FileResponse:
        return page("index.html", None)

    @router.get("/manager/{site}")
    async def manager_site_page(site: Annotated[str, Path(max_length=32)]) -> FileResponse:
        return page("index.html", site)

    @router.get("/manager/{site}/report")
    async def report_page(site: Annotated[str, Path(max_length=32)]) -> FileResponse:
        return page("report.html", site)

    @router.get("/static/manager/{name}")
    async def asset(name: Annotated[str, Path(max_length=32)]) -> FileResponse:
        if name not in ASSETS:
            raise HTTPException(404, "not found")
        return FileResponse(STATIC_DIR / name, headers=headers)

    return router


__all__ = ["STATIC_DIR", "manager_pages", "reports_router"]
