"""Wiring of the reports service: the only place it is built from real adapters."""

from __future__ import annotations

import asyncio

from stackpulse.kernel.context import Context
from stackpulse.services.reports.routes import STATIC_DIR, pages, report_page, router
from stackpulse.services.reports.service import ReportArchive, ReportsService
from stackpulse.services.reports.settings import ReportsSettings
from stackpulse.web.app import WebPart


async def start(ctx: Context, tg: asyncio.TaskGroup) -> ReportsService:
    """Archive each site's days as they end, from the store into the state database."""
    readiness = ctx.health.component("reports", needs_broker=False)
    service = ReportsService(
        ctx.layouts,
        ctx.need_store(),
        ReportArchive(ctx.need_db()),
        ctx.clock,
        ctx.component(ReportsSettings),
        readiness,
    )
    ctx.services["reports"] = service
    tg.create_task(service.run(), name="reports")
    return service


def web_part(archive: ReportArchive | None = None) -> WebPart:
    """The managers' report routes and pages (the store comes with the app)."""
    objects: dict[type, object] = {} if archive is None else {ReportArchive: archive}
    return WebPart(
        "reports",
        routers=(router, pages, report_page),
        objects=objects,
        static=(("/static/manager", STATIC_DIR),),
    )


def web(ctx: Context, tg: asyncio.TaskGroup) -> WebPart:
    return web_part(ReportArchive(ctx.db) if ctx.db is not None else None)
