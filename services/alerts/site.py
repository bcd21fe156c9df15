"""One site's alert rules and what they read off the bus; pure apart from `now`.

Inputs: the gateway's events (device health: status, battery, heartbeats), the
occupancy service's zone and seat state and its drift at closing, and the inventory
service's finding changes, each validated by its contract (kernel.contracts), the site
taken from the topic. The rules (`logic.py`) turn them into observations.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from stackpulse.kernel.contracts.events import Event
from stackpulse.kernel.contracts.inventory import CHANGE
from stackpulse.kernel.contracts.occupancy import DRIFT, SEAT, ZONE
from stackpulse.kernel.layout import Layout
from stackpulse.kernel.topics import Channel, Kind
from stackpulse.services.alerts.logic import RuleEngine
from stackpulse.services.alerts.model import (
    DeviceSeen,
    DriftSeen,
    FindingSeen,
    Input,
    Observation,
    SeatSeen,
    ZoneSeen,
)
from stackpulse.services.alerts.settings import AlertSettings


def device_inputs(events: Iterable[Event]) -> list[Input]:
    """Device health in the gateway's events: status, battery, and that it spoke."""
    out: list[Input] = []
    for ev in events:
        # The gateway validated every payload; only the two fields the rules read are
        # looked at (a shelf sweep's thousands of reads are not validated again here).
        online: bool | None = None
        battery: float | None = None
        if ev.channel is Channel.STATUS:
            value = ev.payload.get("online")
            if not isinstance(value, bool):
                continue
            online = value
        elif ev.kind is Kind.SEAT:
            level = ev.payload.get("battery")
            if isinstance(level, int | float) and not isinstance(level, bool):
                battery = float(level) if 0 <= level <= 1 else None
        out.append(DeviceSeen(ev.site, ev.kind.value, ev.device, ev.ts, online, battery))
    return out


def state_filters(root: str, site: str) -> list[str]:
    """The other services' state the rules read, for one site."""
    return [
        ZONE.filter(root, site),
        SEAT.filter(root, site),
        DRIFT.filter(root, site),
        CHANGE.filter(root, site),
    ]


def state_inputs(root: str, topic: str, raw: bytes, now: datetime) -> tuple[str, list[Input]]:
    """(site, the rules' inputs) in one state message; ContractError when it breaks its
    contract. An empty payload (a retained message being cleared) says nothing."""
    for channel in (ZONE, SEAT, DRIFT, CHANGE):
        found = channel.match(topic, root)
        if found is None:
            continue
        site, ident = found
        if not raw:
            return site, []
        if channel is ZONE:
            z = ZONE.load(raw)
            if z.id != ident:
                return site, []
            return site, [ZoneSeen(site, z.id, z.occupancy, z.capacity, z.updated_at)]
        if channel is SEAT:
            s = SEAT.load(raw)
            if s.id != ident:
                return site, []
            return site, [SeatSeen(site, s.id, s.state, s.since or now, now)]
        if channel is DRIFT:
            d = DRIFT.load(raw)
            return site, [DriftSeen(site, d.zone, d.drift, d.closed_at)]
        c = CHANGE.load(raw)
        detail: dict[str, Any] = {} if c.detail is None else c.detail.model_dump(mode="json")
        return site, [FindingSeen(site, c.finding, c.item, c.state, c.at, detail)]
    return "", []


class SiteAlerts:
    """The rules of one site: a RuleEngine for its layout, checkpointed on its own."""

    def __init__(self, layout: Layout, settings: AlertSettings) -> None:
        self.layout = layout
        self.site = layout.site
        self.engine = RuleEngine([layout], settings)
        self._zones = {z.id for z in layout.zones}
        self._seats = {s.id for s in layout.seats}

    def observe(self, inputs: Iterable[Input]) -> list[Observation]:
        """Observations of the inputs the layout knows; the rest is ignored (counted by
        the caller): a zone or seat the site does not have is nobody's alert."""
        out: list[Observation] = []
        for item in inputs:
            if isinstance(item, ZoneSeen | DriftSeen) and item.zone not in self._zones:
                continue
            if isinstance(item, SeatSeen) and item.seat not in self._seats:
                continue
            out += self.engine.observe(item)
        return out

    def tick(self, now: datetime) -> list[Observation]:
        return self.engine.tick(now)

    def checkpoint(self) -> dict[str, Any]:
        return self.engine.checkpoint()

    def restore(self, data: object) -> None:
        """ValueError (nothing changed) when `data` is not a checkpoint of the rules."""
        self.engine.restore(data)


__all__ = ["SiteAlerts", "device_inputs", "state_filters", "state_inputs"]
