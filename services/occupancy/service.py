"""The occupancy service: normalized events in; retained zone and seat state out."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import aiomqtt
from pydantic import ValidationError

from kernel.aio import raise_if_cancelling
from kernel.bus import BrokerAddress, client
from kernel.clock import Clock
from kernel.layout import Layout
from kernel.models import Event, GateData, SeatData, StatusMessage, format_ts
from kernel.schema import zone_point
from kernel.store.base import Point, SeriesStore
from kernel.topics import Kind, event_subscription, state_topic
from services.occupancy.logic import SeatMachine, SeatState, SeatTiming, ZoneCounts, busyness

log = logging.getLogger("stackpulse.occupancy")

Outgoing = tuple[str, bytes]  # (topic, retained JSON payload)


@dataclass(frozen=True, slots=True)
class OccupancySettings:
    root: str = "lib/v1"
    client_id: str = "stackpulse-occupancy"
    timing: SeatTiming = field(default_factory=SeatTiming)
    tick_seconds: float = 0.5  # wall seconds between clock re-evaluations
    record_every: timedelta = timedelta(minutes=1)  # clock time between stored snapshots


class SiteOccupancy:
    """All derived occupancy state of one site; pure apart from the `now` it is given."""

    def __init__(self, layout: Layout, timing: SeatTiming, root: str) -> None:
        self.layout = layout
        self.root = root
        self.zones = ZoneCounts(layout)
        self.seats = {s.device: SeatMachine(timing) for s in layout.seats}
        self._seat_of = {s.device: s for s in layout.seats}
        self._seats_in_zone: dict[str, list[str]] = {z.id: [] for z in layout.zones}
        for s in layout.seats:
            self._seats_in_zone.setdefault(s.zone, []).append(s.device)
        self.updated_at: dict[str, datetime] = {}

    def apply(self, ev: Event, now: datetime) -> list[Outgoing]:
        data = ev.data()
        if ev.kind is Kind.GATE and isinstance(data, GateData):
            zones = self.zones.apply_gate(ev.device, data.boot, data.seq, data.in_, data.out)
            return [self._zone_message(z, now) for z in sorted(zones)]
        if ev.kind is Kind.SEAT:
            machine = self.seats.get(ev.device)
            if machine is None:
                return []
            if isinstance(data, SeatData):
                changed = machine.reading(data.boot, data.seq, data.presence, ev.ts, now)
            elif isinstance(data, StatusMessage):
                changed = machine.status(data.online, ev.ts, now)
            else:
                return []
            return self._seat_changed(ev.device, now) if changed else []
        return []

    def tick(self, now: datetime) -> list[Outgoing]:
        out: list[Outgoing] = []
        for device, machine in self.seats.items():
            if machine.tick(now):
                out.extend(self._seat_changed(device, now))
        return _last_per_topic(out)

    def snapshot(self, now: datetime) -> list[Outgoing]:
        """Everything, as retained messages: what a new reader needs."""
        out = [self._seat_message(d) for d in self.seats]
        out += [self._zone_message(z.id, now) for z in self.layout.zones]
        return out

    def zone_points(self, now: datetime) -> list[Point]:
        points = []
        for z in self.layout.zones:
            states = self._zone_seat_states(z.id)
            points.append(
                zone_point(
                    self.layout.site,
                    z.id,
                    z.floor,
                    occupancy=self.zones.count(z.id),
                    capacity=z.capacity,
                    seats_total=len(states),
                    seats_free=states.count(SeatState.FREE),
                    seats_occupied=states.count(SeatState.OCCUPIED),
                    seats_held=states.count(SeatState.HELD),
                    seats_unknown=states.count(SeatState.UNKNOWN),
                    ts=now,
                )
            )
        return points

    def _seat_changed(self, device: str, now: datetime) -> list[Outgoing]:
        return [self._seat_message(device), self._zone_message(self._seat_of[device].zone, now)]

    def _zone_seat_states(self, zone: str) -> list[SeatState]:
        return [self.seats[d].state for d in self._seats_in_zone.get(zone, [])]

    def _zone_message(self, zone_id: str, now: datetime) -> Outgoing:
        z = self.layout.zone(zone_id)
        states = self._zone_seat_states(zone_id)
        occupancy = self.zones.count(zone_id)
        self.updated_at[zone_id] = now
        body = {
            "id": z.id,
            "name": z.name,
            "floor": z.floor,
            "capacity": z.capacity,
            "occupancy": occupancy,
            "seats_total": len(states),
            "seats_free": states.count(SeatState.FREE),
            "busyness": busyness(occupancy, z.capacity),
            "updated_at": format_ts(now),
        }
        topic = state_topic(self.root, self.layout.site, "occupancy", "zone", z.id)
        return topic, json.dumps(body).encode()

    def _seat_message(self, device: str) -> Outgoing:
        seat = self._seat_of[device]
        machine = self.seats[device]
        body = {
            "id": seat.id,
            "zone": seat.zone,
            "state": machine.state.value,
            "since": format_ts(machine.since) if machine.since else None,
            "features": list(seat.features),
            "x": seat.x,
            "y": seat.y,
        }
        topic = state_topic(self.root, self.layout.site, "occupancy", "seat", seat.id)
        return topic, json.dumps(body).encode()


def _last_per_topic(messages: Iterable[Outgoing]) -> list[Outgoing]:
    """Retained state: only the newest message per topic matters."""
    return list(dict(messages).items())


class OccupancyService:
    """Runs SiteOccupancy for each layout against the bus, the clock and the store."""

    def __init__(
        self,
        layouts: Iterable[Layout],
        store: SeriesStore,
        clock: Clock,
        settings: OccupancySettings | None = None,
    ) -> None:
        self.settings = settings or OccupancySettings()
        self.sites = {
            lay.site: SiteOccupancy(lay, self.settings.timing, self.settings.root)
            for lay in layouts
        }
        self._store = store
        self._clock = clock
        self._out: asyncio.Queue[Outgoing] = asyncio.Queue(maxsize=10_000)
        self.events_applied = 0
        self.events_refused = 0
        self.ready = asyncio.Event()

    def apply(self, topic: str, raw: bytes) -> list[Outgoing]:
        try:
            ev = Event.model_validate_json(raw)
        except ValidationError as err:
            self.events_refused += 1
            log.warning("ignoring a malformed event on %s: %s", topic, err.errors()[0]["msg"])
            return []
        site = self.sites.get(ev.site)
        if site is None:
            return []
        self.events_applied += 1
        return site.apply(ev, self._clock.now())

    async def run(self, broker: BrokerAddress) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._ticker(), name="occupancy-tick")
            tg.create_task(self._recorder(), name="occupancy-record")
            tg.create_task(self._connection_loop(broker), name="occupancy-mqtt")

    async def _connection_loop(self, broker: BrokerAddress) -> None:
        delay = 0.5
        while True:
            raise_if_cancelling()
            try:
                async with client(broker, identifier=self.settings.client_id) as mqtt:
                    await mqtt.subscribe(event_subscription(self.settings.root), qos=1, timeout=10)
                    for site in self.sites.values():
                        for msg in site.snapshot(self._clock.now()):
                            await self._enqueue(msg)
                    async with asyncio.TaskGroup() as tg:
                        tg.create_task(self._publisher(mqtt), name="occupancy-publish")
                        self.ready.set()
                        delay = 0.5
                        async for message in mqtt.messages:
                            raise_if_cancelling()
                            payload = message.payload
                            raw = payload if isinstance(payload, bytes) else str(payload).encode()
                            for out in self.apply(message.topic.value, raw):
                                await self._enqueue(out)
            except* aiomqtt.MqttError as group:
                self.ready.clear()
                log.warning("broker %s: %s; reconnecting", broker, group.exceptions[0])
                await asyncio.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, 30.0)

    async def _enqueue(self, out: Outgoing) -> None:
        async with asyncio.timeout(30):
            await self._out.put(out)

    async def _publisher(self, mqtt: aiomqtt.Client) -> None:
        while True:
            raise_if_cancelling()
            topic, body = await self._out.get()
            await mqtt.publish(topic, body, qos=1, retain=True, timeout=30)

    async def _ticker(self) -> None:
        while True:
            raise_if_cancelling()
            await asyncio.sleep(self.settings.tick_seconds)
            now = self._clock.now()
            for site in self.sites.values():
                for out in site.tick(now):
                    await self._enqueue(out)

    async def _recorder(self) -> None:
        while True:
            raise_if_cancelling()
            await self._clock.sleep(self.settings.record_every.total_seconds())
            now = self._clock.now()
            points = [p for site in self.sites.values() for p in site.zone_points(now)]
            try:
                await self._store.write(points)
            except Exception as err:  # a missed snapshot is repaired by the next one
                log.warning("could not store zone snapshot: %s", err)
