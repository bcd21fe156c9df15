"""The inventory service's loop: shelf and circ events in; item lists, changes, demand out."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from stackpulse.kernel.aio import raise_if_cancelling
from stackpulse.kernel.catalog import CatalogItem
from stackpulse.kernel.clock import Clock
from stackpulse.kernel.contracts.events import Event
from stackpulse.kernel.layout import Layout
from stackpulse.kernel.service import Bus, Message, ServiceBase
from stackpulse.kernel.store.base import Point, SeriesStore
from stackpulse.kernel.topics import Kind
from stackpulse.services.inventory.demand_feed import RANK_EVERY
from stackpulse.services.inventory.model import Signal
from stackpulse.services.inventory.settings import InventoryServiceSettings
from stackpulse.services.inventory.site import SiteInventory, _next_boundary, inventory_point

log = logging.getLogger("stackpulse.inventory")

MAX_PENDING_POINTS = 100_000  # demand points awaiting the store; past it the oldest go


class InventoryService(ServiceBase):
    """SiteInventory for each layout, on the kernel's runner (`kernel.runner`)."""

    name = "inventory"
    kinds = frozenset({Kind.SHELF, Kind.CIRC})

    def __init__(
        self,
        layouts: Iterable[Layout],
        catalogs: Mapping[str, Mapping[str, CatalogItem]],
        store: SeriesStore | None,
        clock: Clock,
        settings: InventoryServiceSettings,
        root: str,
    ) -> None:
        self.settings = settings
        logic = settings.logic
        self.by_site = {
            lay.site: SiteInventory(
                lay,
                catalogs.get(lay.site, {}),
                logic,
                root=root,
                max_list_items=settings.max_list_items,
            )
            for lay in layouts
        }
        self.sites = tuple(self.by_site)
        self._store = store
        self._clock = clock
        self._points: list[Point] = []  # demand and finding points not yet stored
        self.points_dropped = 0
        self.connected_once = asyncio.Event()

    # -- the runner's hooks -------------------------------------------------------------

    def apply(self, events: Sequence[Event], now: datetime, *, live: bool) -> list[Message]:
        out: list[Message] = []
        for ev in events:
            site = self.by_site[ev.site]
            out += site.change_messages(site.apply(ev))
            self._record(site)
        return out

    def connected(self, now: datetime) -> list[Message]:
        for site in self.by_site.values():
            site.forget_published()  # the broker may have lost the retained lists
        self.connected_once.set()
        return []

    def checkpoint(self, site: str, now: datetime) -> dict[str, Any] | None:
        inventory = self.by_site[site]
        if not inventory.checkpoint_dirty:
            return None
        inventory.checkpoint_dirty = False
        return inventory.checkpoint(now)

    def restore(self, site: str, state: Any | None) -> None:
        if state is not None:
            self.by_site[site].restore(state)

    # -- demand and findings into the store ---------------------------------------------

    def _record(self, site: SiteInventory) -> None:
        signals: list[Signal] = site.inventory.take_signals()
        if signals:
            self._pending(site.demand.record(signals))
        self._pending(site.take_closed_points())

    def _pending(self, points: list[Point], *, first: bool = False) -> None:
        """Queue points for the store (`first`: back in front, after a failed write)."""
        if not points:
            return
        self._points = points + self._points if first else self._points + points
        over = len(self._points) - MAX_PENDING_POINTS
        if over > 0:
            del self._points[:over]
            self.points_dropped += over
            log.warning("the store is behind: dropped the %d oldest demand points", over)

    # -- its own loops ------------------------------------------------------------------

    async def run(self, bus: Bus) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._ticker(bus), name="inventory-tick")
            tg.create_task(self._recorder(), name="inventory-record")

    async def stop(self, bus: Bus) -> None:
        """The last ranking and the demand points still pending (a store that is down
        must not hold the stop: the runner bounds it)."""
        now = self._clock.now()
        ranks = [p for s in self.by_site.values() for p in s.demand.rank_points(now)]
        await self._write(ranks, within=10.0)

    async def _ticker(self, bus: Bus) -> None:
        """Tick the logic with the clock, then publish the lists that changed (coalesced)."""
        while True:
            raise_if_cancelling()
            await asyncio.sleep(self.settings.tick.total_seconds())
            now = self._clock.now()
            for site in self.by_site.values():
                await bus.send_all(site.change_messages(site.tick(now)))
                self._record(site)
                if self.connected_once.is_set():
                    await bus.send_all(site.list_messages(now) + site.demand.messages(now))

    async def _recorder(self) -> None:
        """Store the demand points as they come (each tick), the counts once per
        `record_every` and the demand ranking once per RANK_EVERY of clock time (on their
        boundaries). It looks at the clock every tick rather than sleeping a clock
        interval, so a simulated clock that jumps or pauses records when its time says so.
        """
        every = self.settings.record_every
        now = self._clock.now()
        due, rank_due = _next_boundary(now, every), _next_boundary(now, RANK_EVERY)
        while True:
            raise_if_cancelling()
            await asyncio.sleep(self.settings.tick.total_seconds())
            now = self._clock.now()
            points: list[Point] = []
            if now >= due:
                due = _next_boundary(now, every)
                points += [inventory_point(s.site, s.counts(), now) for s in self.by_site.values()]
            if now >= rank_due:
                rank_due = _next_boundary(now, RANK_EVERY)
                points += [p for s in self.by_site.values() for p in s.demand.rank_points(now)]
            await self._write(points)

    async def _write(self, points: list[Point], within: float = 60.0) -> None:
        """Write `points` and the pending ones; a failure keeps the pending points for
        the next try (a missed count or ranking is repaired by the next one)."""
        pending, self._points = self._points, []
        if self._store is None or (not points and not pending):
            self._points = pending
            return
        try:
            async with asyncio.timeout(within):
                await self._store.write(pending + points)
        except Exception as err:
            self._pending(pending, first=True)
            log.warning("could not store the inventory counts and demand: %s", err)


__all__ = ["InventoryService"]
