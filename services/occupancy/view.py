"""Read model of the occupancy service's retained state, with bounded change feeds for SSE."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from types import TracebackType
from typing import Literal

import aiomqtt

from stackpulse.kernel.bus import follow
from stackpulse.kernel.contracts.base import ContractError
from stackpulse.kernel.contracts.occupancy import (
    FORECAST,
    SEAT,
    ZONE,
    Forecast,
    Seat,
    Zone,
)
from stackpulse.kernel.topics import (
    DEFAULT_ROOT,
    DEVICE_RE,
    SITE_RE,
    parse_system_topic,
    state_topic,
)

log = logging.getLogger(__name__)

SERVICE = "occupancy"
DEFAULT_QUEUE_SIZE = 512
What = Literal["zone", "seat"]

# The published contract (kernel.contracts.occupancy), under the names the API uses.
ZoneView = Zone
SeatView = Seat
ForecastView = Forecast


@dataclass(frozen=True, slots=True)
class Change:
    """A zone or seat whose published state differs from what the view held."""

    site: str
    item: ZoneView | SeatView

    @property
    def what(self) -> What:
        return "zone" if isinstance(self.item, ZoneView) else "seat"


class Subscription:
    """A bounded feed of changes for one consumer; dropped, not grown, when it falls behind.

    Iterate it (`async for change in sub`); the iteration ends when the feed is closed or
    dropped, and `reason` then says why. Use it as an async context manager so that it
    always leaves the view.
    """

    def __init__(self, view: OccupancyView, site: str | None, maxsize: int) -> None:
        self._view = view
        self.site = site
        self.maxsize = maxsize
        self._queue: asyncio.Queue[Change | None] = asyncio.Queue(maxsize + 1)
        self.reason: str | None = None

    def offer(self, change: Change) -> None:
        """Queue a change without waiting; a full queue drops this subscriber."""
        if self.reason is not None or (self.site is not None and change.site != self.site):
            return
        if self._queue.qsize() >= self.maxsize:
            self._end(f"consumer fell behind: more than {self.maxsize} changes queued")
            log.warning("occupancy stream dropped (site %s): %s", self.site, self.reason)
            return
        self._queue.put_nowait(change)

    def close(self, reason: str = "closed") -> None:
        if self.reason is None:
            self._end(reason)

    def _end(self, reason: str) -> None:
        self.reason = reason
        self._view._unsubscribe(self)
        # The spare slot guarantees room for the wake-up of a consumer blocked in get().
        self._queue.put_nowait(None)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Change:
        if self.reason is not None:
            raise StopAsyncIteration
        change = await self._queue.get()
        if change is None or self.reason is not None:
            raise StopAsyncIteration
        return change

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class OccupancyView:
    """Zones and seats per site, rebuilt from retained state messages; one event loop only."""

    def __init__(self, root: str = DEFAULT_ROOT, *, queue_size: int = DEFAULT_QUEUE_SIZE) -> None:
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        self.root = root
        self.queue_size = queue_size
        self._items: dict[tuple[str, What], dict[str, ZoneView | SeatView]] = {}
        self._subs: set[Subscription] = set()
        self._forecasts: dict[str, dict[str, ForecastView]] = {}

    def apply(self, topic: str, payload: bytes | str) -> Change | None:
        """Take one state message; return the change, or None if nothing changed.

        An empty payload clears a retained topic, so it removes the entry. Anything that
        does not parse is logged and ignored: a bad message must not stop the view.
        """
        raw = payload.encode() if isinstance(payload, str) else payload
        parts = parse_system_topic(topic, self.root, "_state")
        if parts is not None and len(parts) == 4 and parts[1:3] == [SERVICE, "forecast"]:
            self._apply_forecast(topic, parts[0], parts[3], raw)
            return None  # forecasts are read on request, not streamed
        target = self._target(topic)
        if target is None:
            return None
        site, what, ident = target
        if not raw:
            self._items.get((site, what), {}).pop(ident, None)
            return None
        item = _parse(topic, what, ident, raw)
        if item is None:
            return None
        entries = self._items.setdefault((site, what), {})
        if entries.get(ident) == item:
            return None  # a redelivered retained message after a reconnect
        entries[ident] = item
        change = Change(site, item)
        for sub in list(self._subs):
            sub.offer(change)
        return change

    def _apply_forecast(self, topic: str, site: str, ident: str, raw: bytes) -> None:
        if not SITE_RE.fullmatch(site) or not DEVICE_RE.fullmatch(ident):
            return
        entries = self._forecasts.setdefault(site, {})
        if not raw:
            entries.pop(ident, None)
            return
        try:
            item = FORECAST.load(raw)
        except ContractError as err:
            log.warning("ignored occupancy forecast on %s: %s", topic[:200], err)
            return
        if item.id == ident:
            entries[ident] = item

    def forecasts(self, site: str) -> list[ForecastView]:
        return sorted(self._forecasts.get(site, {}).values(), key=lambda f: f.id)

    def sites(self) -> list[str]:
        return sorted({site for site, _ in self._items})

    def zones(self, site: str) -> list[ZoneView]:
        zones = [z for z in self._items.get((site, "zone"), {}).values() if isinstance(z, ZoneView)]
        return sorted(zones, key=lambda z: (z.floor, z.id))

    def seats(self, site: str, zone: str | None = None) -> list[SeatView]:
        seats = [
            s
            for s in self._items.get((site, "seat"), {}).values()
            if isinstance(s, SeatView) and (zone is None or s.zone == zone)
        ]
        return sorted(seats, key=lambda s: s.id)

    def subscribe(self, site: str | None = None, *, maxsize: int | None = None) -> Subscription:
        """A feed of every later change (of one site, or all); bounded by `maxsize`."""
        sub = Subscription(self, site, maxsize or self.queue_size)
        self._subs.add(sub)
        return sub

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def _unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    def _target(self, topic: str) -> tuple[str, What, str] | None:
        parts = parse_system_topic(topic, self.root, "_state")
        if parts is None or len(parts) != 4 or parts[1] != SERVICE:
            return None  # another service's state: not ours to read
        site, _, what, ident = parts
        if what not in ("zone", "seat") or not SITE_RE.fullmatch(site):
            # Not part of the read model, and skipped without a word (there may be many):
            # forecasts are taken in `apply`; `checkpoint` is the service's own counting
            # state for its restarts; other kinds may come with newer versions.
            return None
        if not DEVICE_RE.fullmatch(ident):
            log.warning("ignored occupancy state on %s: bad id", topic[:200])
            return None
        return site, "zone" if what == "zone" else "seat", ident


def _parse(topic: str, what: What, ident: str, raw: bytes) -> Zone | Seat | None:
    try:
        item: Zone | Seat = (ZONE if what == "zone" else SEAT).load(raw)
    except ContractError as err:
        log.warning("ignored occupancy state on %s: %s", topic[:200], err)
        return None
    if item.id != ident:
        log.warning("ignored occupancy state on %s: payload id %r differs", topic, item.id[:70])
        return None
    return item


def subscriptions(root: str = DEFAULT_ROOT) -> list[str]:
    """The topic filters of the occupancy state, and nothing of other services."""
    return [state_topic(root, "+", SERVICE, what, "+") for what in ("zone", "seat", "forecast")]


async def run_view(view: OccupancyView, client: aiomqtt.Client, root: str = DEFAULT_ROOT) -> None:
    """Feed `view` from a connected client until the connection ends (then MqttError).

    The broker replays every retained state message on subscribe, so after a reconnect
    the caller only needs to call this again to be whole.
    """
    await follow(client, subscriptions(root), view.apply)
