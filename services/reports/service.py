"""The reports service's loop: each site's day, once over, is built and archived.

A day's report read from the store once and kept in the state database stays the same
when the raw points it came from are downsampled or expire (retention), and answers at
once. Today's report (and a day never archived) is built on request from the store.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import date

from stackpulse.kernel.aio import raise_if_cancelling
from stackpulse.kernel.clock import Clock
from stackpulse.kernel.health import Readiness
from stackpulse.kernel.layout import Layout
from stackpulse.kernel.service import CheckpointStore
from stackpulse.kernel.store.base import SeriesStore
from stackpulse.services.reports.logic import DailyReport, read_daily
from stackpulse.services.reports.settings import ReportsSettings
from stackpulse.services.reports.site import SiteCalendar, archive_name

log = logging.getLogger("stackpulse.reports")


class ReportArchive:
    """Daily reports kept in the state database (the checkpoints table), by site and day."""

    def __init__(self, db: CheckpointStore) -> None:
        self._db = db

    async def load(self, site: str, day: date) -> DailyReport | None:
        body = await asyncio.to_thread(self._db.load_checkpoint, archive_name(site, day))
        if body is None:
            return None
        try:
            return DailyReport.model_validate_json(body)
        except ValueError as err:
            log.warning("ignoring the archived report %s: %s", archive_name(site, day), err)
            return None

    async def save(self, report: DailyReport) -> None:
        name = archive_name(report.site, report.date)
        await asyncio.to_thread(self._db.save_checkpoint, name, report.model_dump_json().encode())


class ReportsService:
    """Archives each site's days as they end (and the recent ones it finds missing)."""

    name = "reports"

    def __init__(
        self,
        layouts: Iterable[Layout],
        store: SeriesStore,
        archive: ReportArchive,
        clock: Clock,
        settings: ReportsSettings,
        readiness: Readiness,
    ) -> None:
        self.calendars = [SiteCalendar(lay, settings.archive_after) for lay in layouts]
        self._store = store
        self._archive = archive
        self._clock = clock
        self._settings = settings
        self._readiness = readiness
        self._archived: dict[str, set[date]] = {c.site: set() for c in self.calendars}
        self.archived = 0

    async def run(self) -> None:
        self._readiness.restored = True
        while True:
            raise_if_cancelling()
            for calendar in self.calendars:
                await self._archive_due(calendar)
            await asyncio.sleep(self._settings.check_every.total_seconds())

    async def _archive_due(self, calendar: SiteCalendar) -> None:
        now = self._clock.now()
        known = self._archived[calendar.site]
        for day in calendar.due(now, known, self._settings.archive_days):
            try:
                async with asyncio.timeout(120):
                    if await self._archive.load(calendar.site, day) is None:
                        report = await read_daily(self._store, calendar.layout, day)
                        await self._archive.save(report)
                        self.archived += 1
                        log.info("archived the report of %s for %s", calendar.site, day)
            except Exception as err:  # the store or the database is away: next round
                self._readiness.problem = f"could not archive {day}: {err}"
                log.warning(
                    "could not archive the report of %s for %s: %s", calendar.site, day, err
                )
                return
            known.add(day)
        self._readiness.problem = None


__all__ = ["ReportArchive", "ReportsService"]
