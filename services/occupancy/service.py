"""The occupancy service's loop: gate and seat events in; retained zone and seat state out."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from stackpulse.kernel.aio import raise_if_cancelling
from stackpulse.kernel.clock import Clock
from stackpulse.kernel.contracts.events import Event
from stackpulse.kernel.layout import Layout
from stackpulse.kernel.service import Bus, Message, ServiceBase
from stackpulse.kernel.store.base import SeriesStore
from stackpulse.kernel.topics import Kind
from stackpulse.services.occupancy.forecast import history_query, weekly_profile
from stackpulse.services.occupancy.logic import next_closing
from stackpulse.services.occupancy.settings import OccupancySettings
from stackpulse.services.occupancy.site import SiteOccupancy, last_per_topic

log = logging.getLogger("stackpulse.occupancy")


class OccupancyService(ServiceBase):
    """SiteOccupancy for each layout, on the kernel's runner (`kernel.runner`)."""

    name = "occupancy"
    kinds = frozenset({Kind.GATE, Kind.SEAT})
    status = True  # a seat's Last Will makes it unknown

    def __init__(
        self,
        layouts: Iterable[Layout],
        store: SeriesStore | None,
        clock: Clock,
        settings: OccupancySettings,
        root: str,
    ) -> None:
        self.settings = settings
        timing = settings.timing
        self.by_site = {
            lay.site: SiteOccupancy(lay, timing, root, privacy_floor=settings.privacy_floor)
            for lay in layouts
        }
        self.sites = tuple(self.by_site)
        self._store = store
        self._clock = clock

    # -- the runner's hooks -------------------------------------------------------------

    def apply(self, events: Sequence[Event], now: datetime, *, live: bool) -> list[Message]:
        out: list[Message] = []
        for ev in events:
            site = self.by_site[ev.site]
            if live:
                out += site.apply(ev, now)
            else:  # read back from the store: the clock of then, as if it ran uninterrupted
                out += site.tick(ev.ts)
                out += site.apply(ev, ev.ts)
        if not live:
            for site in self.by_site.values():
                out += site.tick(now)
        # A batch that moves one seat three times publishes it once.
        return last_per_topic(out)

    def connected(self, now: datetime) -> list[Message]:
        return [m for site in self.by_site.values() for m in site.snapshot(now)]

    def checkpoint(self, site: str, now: datetime) -> dict[str, Any]:
        return self.by_site[site].checkpoint(now)

    def restore(self, site: str, state: Any | None) -> None:
        if state is not None:
            self.by_site[site].restore(state)

    def first_start(self, site: str, now: datetime) -> datetime | None:
        """Counts start at each closing: read back to the last one, or `catchup_first`."""
        layout = self.by_site[site].layout
        horizon = now - self.settings.catchup_first
        last = None
        closes = next_closing(layout, horizon)
        while closes is not None and closes <= now:
            last, closes = closes, next_closing(layout, closes)
        return last if last is not None else horizon

    # -- its own loops ------------------------------------------------------------------

    async def run(self, bus: Bus) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._ticker(bus), name="occupancy-tick")
            tg.create_task(self._recorder(), name="occupancy-record")
            tg.create_task(self._forecaster(bus), name="occupancy-forecast")

    async def _ticker(self, bus: Bus) -> None:
        while True:
            raise_if_cancelling()
            await asyncio.sleep(self.settings.tick.total_seconds())
            now = self._clock.now()
            for site in self.by_site.values():
                await bus.send_all(site.tick(now))

    async def _forecaster(self, bus: Bus) -> None:
        """Every `forecast_every`, read the history and publish what is usual now."""
        s = self.settings
        while True:
            raise_if_cancelling()
            now = self._clock.now()
            for site in self.by_site.values():
                if self._store is None:
                    break
                query = history_query(site.layout.site, now, s.forecast_weeks)
                try:
                    async with asyncio.timeout(30):
                        rows = await self._store.query(query)
                except Exception as err:  # no forecast this round; the last one stays
                    log.warning("could not read occupancy history: %s", err)
                    continue
                profile = site.profile = weekly_profile(rows, site.layout.tz)
                await bus.send_all(site.forecast_messages(profile, now, s.forecast_hours))
            await self._clock.sleep(s.forecast_every.total_seconds())

    async def _recorder(self) -> None:
        while True:
            raise_if_cancelling()
            await self._clock.sleep(self.settings.record_every.total_seconds())
            if self._store is None:
                continue
            now = self._clock.now()
            points = [p for site in self.by_site.values() for p in site.zone_points(now)]
            drift = {name: site.take_points() for name, site in self.by_site.items()}
            try:
                async with asyncio.timeout(60):
                    await self._store.write(points + [p for ps in drift.values() for p in ps])
            except Exception as err:  # a missed snapshot is repaired by the next one
                log.warning("could not store zone snapshot: %s", err)
                for name, ps in drift.items():  # but a day's drift is kept for the next try
                    self.by_site[name].restore_points(ps)


__all__ = ["OccupancyService"]
