"""The occupancy service: normalized events in; retained zone and seat state out."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import aiomqtt
from pydantic import ValidationError

from stackpulse.kernel.aio import Backoff, raise_if_cancelling
from stackpulse.kernel.bus import BrokerAddress, client
from stackpulse.kernel.clock import Clock
from stackpulse.kernel.layout import Layout
from stackpulse.kernel.models import (
    Event,
    GateData,
    SeatData,
    StatusMessage,
    decode_events,
    format_ts,
)
from stackpulse.kernel.schema import drift_point, typical_point, zone_point
from stackpulse.kernel.store.base import Point, SeriesStore
from stackpulse.kernel.topics import Kind, event_subscription, state_topic
from stackpulse.services.occupancy.forecast import (
    Profile,
    forecast,
    history_query,
    hour_of_week,
    weekly_profile,
)
from stackpulse.services.occupancy.logic import (
    CheckpointError,
    SeatMachine,
    SeatState,
    SeatTiming,
    ZoneCounts,
    busyness,
    next_closing,
)

log = logging.getLogger("stackpulse.occupancy")

Outgoing = tuple[str, bytes]  # (topic, retained JSON payload)


CHECKPOINT_VERSION = 1
MAX_CHECKPOINT_BYTES = 4 * 1024 * 1024

PRIVACY_FLOOR = 5  # the recommended floor; the dataclass default 0 publishes every count
DRIFT = "drift"  # `_state/occupancy/drift/{zone}`, published (not retained) at each closing

_ENV_SECONDS = {
    "STACKPULSE_SEAT_ON_DELAY": "on_delay",
    "STACKPULSE_SEAT_OFF_DELAY": "off_delay",
    "STACKPULSE_SEAT_HEARTBEAT": "heartbeat",
    "STACKPULSE_SEAT_HOG_AFTER": "hog_after",
}


@dataclass(frozen=True, slots=True)
class OccupancySettings:
    root: str = "lib/v1"
    client_id: str = "stackpulse-occupancy"
    timing: SeatTiming = field(default_factory=SeatTiming)
    tick_seconds: float = 0.5  # wall seconds between clock re-evaluations
    record_every: timedelta = timedelta(minutes=1)  # clock time between stored snapshots
    # A zone with fewer people than this (but some) publishes `occupancy: null` and
    # `occupancy_band: "few"`: a count of 1-4 in a small room can single somebody out.
    # The store keeps exact counts for staff; only the public state is floored.
    privacy_floor: int = 0
    forecast_every: timedelta = timedelta(minutes=15)  # clock time between forecasts
    forecast_weeks: int = 4  # history the "usually" figures are drawn from
    forecast_hours: int = 4  # this hour and the next ones
    # The counting state is checkpointed to a retained topic so that a restart does not
    # take each gate's totals since boot for new crossings (wall seconds, all three).
    checkpoint_every: float = 10.0  # publish the checkpoint this often, when it changed
    restore_wait: float = 2.0  # on start, wait this long at most for the retained one
    final_checkpoint_timeout: float = 3.0  # on stop, one last checkpoint within this

    def __post_init__(self) -> None:
        if self.privacy_floor < 0:
            raise ValueError("privacy_floor must not be negative")
        for name in ("checkpoint_every", "restore_wait", "final_checkpoint_timeout"):
            value = getattr(self, name)
            if not 0 <= value < float("inf") or (name == "checkpoint_every" and value == 0):
                raise ValueError(f"{name} must be a finite number of seconds >= 0")

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, root: str = "lib/v1") -> OccupancySettings:
        """Settings from environment variables (seconds for the seat delays).

        STACKPULSE_SEAT_ON_DELAY (60), STACKPULSE_SEAT_OFF_DELAY (600),
        STACKPULSE_SEAT_HEARTBEAT (300), STACKPULSE_SEAT_HOG_AFTER (1800),
        STACKPULSE_SEAT_SILENT_HEARTBEATS (3), STACKPULSE_PRIVACY_FLOOR (5).
        A bad value raises ValueError naming the variable.
        """
        timing: dict[str, Any] = {}
        for var, name in _ENV_SECONDS.items():
            if var in env:
                timing[name] = timedelta(seconds=_number(env, var))
        if "STACKPULSE_SEAT_SILENT_HEARTBEATS" in env:
            timing["silent_after_heartbeats"] = int(
                _number(env, "STACKPULSE_SEAT_SILENT_HEARTBEATS")
            )
        floor = PRIVACY_FLOOR
        if "STACKPULSE_PRIVACY_FLOOR" in env:
            floor = int(_number(env, "STACKPULSE_PRIVACY_FLOOR"))
        try:
            return cls(root=root, timing=SeatTiming(**timing), privacy_floor=floor)
        except ValueError as err:
            raise ValueError(f"occupancy settings: {err}") from None


def _number(env: Mapping[str, str], var: str) -> float:
    try:
        value = float(env[var])
    except ValueError:
        raise ValueError(f"{var}={env[var][:40]!r} is not a number") from None
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"{var}={env[var][:40]!r} must be a finite number >= 0")
    return value


class SiteOccupancy:
    """All derived occupancy state of one site; pure apart from the `now` it is given."""

    MAX_PENDING_POINTS = 10_000

    def __init__(
        self, layout: Layout, timing: SeatTiming, root: str, *, privacy_floor: int = 0
    ) -> None:
        self.layout = layout
        self.root = root
        self.privacy_floor = privacy_floor
        self._next_close: datetime | None = None
        self._look_after: datetime | None = None
        self.drift: list[tuple[datetime, dict[str, int]]] = []  # (closing, zone -> drift)
        self._pending: list[Point] = []
        self.zones = ZoneCounts(layout)
        self.seats = {s.device: SeatMachine(timing) for s in layout.seats}
        self._seat_of = {s.device: s for s in layout.seats}
        self._seats_in_zone: dict[str, list[str]] = {z.id: [] for z in layout.zones}
        for s in layout.seats:
            self._seats_in_zone.setdefault(s.zone, []).append(s.device)
        self.updated_at: dict[str, datetime] = {}
        self.profile: Profile = {}  # the forecaster's latest: what is usual per hour of week

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
        out: list[Outgoing] = self._closings(now)
        for device, machine in self.seats.items():
            if machine.tick(now):
                out.extend(self._seat_changed(device, now))
        return _last_per_topic(out)

    @property
    def checkpoint_topic(self) -> str:
        site = self.layout.site
        return state_topic(self.root, site, "occupancy", "checkpoint", site)

    def checkpoint(self, now: datetime) -> dict[str, Any]:
        """The counting state as JSON-able data, to survive a restart (`restore`).

        Each gate's counter and each zone's unclamped sum, when it was taken, and the
        closing the site waits for: a closing that passes while the service is down
        still resets the counts once it is back.
        """
        closes = (
            self._next_close if self._next_close is not None else next_closing(self.layout, now)
        )
        return {
            "version": CHECKPOINT_VERSION,
            "site": self.layout.site,
            "at": format_ts(now),
            "next_close": format_ts(closes) if closes is not None else None,
            **self.zones.checkpoint(),
        }

    def restore(self, data: object) -> bool:
        """Take up the counting state of a `checkpoint`; False (and a log line) if unusable.

        A checkpoint of an older layout is fine: what the layout no longer has is
        ignored, what is new starts at zero. Anything malformed leaves the state alone.
        """
        site = self.layout.site
        try:
            if not isinstance(data, dict):
                raise CheckpointError("not a JSON object")
            if data.get("version") != CHECKPOINT_VERSION:
                raise CheckpointError(f"version {str(data.get('version'))[:20]} is not supported")
            if data.get("site") != site:
                raise CheckpointError(f"it is of site {str(data.get('site'))[:40]!r}")
            at = _checkpoint_time(data, "at")
            closes = _checkpoint_time(data, "next_close") if data.get("next_close") else None
            if at is None:
                raise CheckpointError("'at' is missing")
            ignored = self.zones.restore(data)
        except CheckpointError as err:
            log.warning("ignoring the occupancy checkpoint of %s: %s", site, err)
            return False
        if ignored:
            log.info("checkpoint of %s: not in the layout any more: %s", site, ", ".join(ignored))
        if closes is not None:
            self._next_close, self._look_after = closes, None
        log.info(
            "restored the counts of %s from %s (next closing %s)",
            site,
            format_ts(at),
            format_ts(closes) if closes else "none",
        )
        return True

    def restore_payload(self, raw: bytes) -> bool:
        """`restore` from a retained message's payload (JSON)."""
        if len(raw) > MAX_CHECKPOINT_BYTES:
            log.warning("ignoring the occupancy checkpoint of %s: too large", self.layout.site)
            return False
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError) as err:  # UnicodeDecodeError is a ValueError
            log.warning(
                "ignoring the occupancy checkpoint of %s: not JSON (%s)", self.layout.site, err
            )
            return False
        return self.restore(data)

    def take_points(self) -> list[Point]:
        """Points made since the last call (the drift found at each closing)."""
        points, self._pending = self._pending, []
        return points

    def restore_points(self, points: list[Point]) -> None:
        """Put back points that could not be stored, ahead of newer ones (bounded)."""
        self._pending[:0] = points
        del self._pending[: -self.MAX_PENDING_POINTS]

    def _closings(self, now: datetime) -> list[Outgoing]:
        """At each closing time everyone has left: reset the counts, record the drift."""
        if self._next_close is None:
            if self._look_after is not None and now < self._look_after:
                return []
            self._next_close = next_closing(self.layout, now)
            self._look_after = now + timedelta(days=1)  # an always-open site: look daily
        out: list[Outgoing] = []
        while self._next_close is not None and now >= self._next_close:
            closed_at = self._next_close
            shown = self.zones.counts
            drift = self.zones.reset_net()
            self.drift.append((closed_at, drift))
            del self.drift[:-30]  # a month of closings is plenty to look back on
            for z in self.layout.zones:
                point = drift_point(
                    self.layout.site,
                    z.id,
                    z.floor,
                    drift=drift[z.id],
                    shown=shown[z.id],
                    ts=closed_at,
                )
                self._pending.append(point)
            del self._pending[: -self.MAX_PENDING_POINTS]
            if any(drift.values()):
                log.info("closing reset of %s at %s: drift %s", self.layout.site, closed_at, drift)
            out += [self._zone_message(z.id, now) for z in self.layout.zones]
            out += [
                self._drift_message(z.id, drift[z.id], shown[z.id], closed_at)
                for z in self.layout.zones
            ]
            self._next_close = next_closing(self.layout, closed_at)
        return out

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
            # Next to each snapshot, what is usual then: "today vs a typical <weekday>".
            usual = self.profile.get(z.id, {}).get(hour_of_week(now, self.layout.tz))
            if usual is not None:
                points.append(typical_point(self.layout.site, z.id, z.floor, typical=usual, ts=now))
        return points

    def forecast_messages(self, profile: Profile, now: datetime, hours: int) -> list[Outgoing]:
        """Retained `_state/occupancy/forecast/{zone}`: typical occupancy of coming hours."""
        out: list[Outgoing] = []
        for zone, coming in forecast(self.layout, profile, now, hours).items():
            body = {
                "id": zone,
                "hours": [
                    {
                        "at": format_ts(u.at),
                        "occupancy": self._floored(u.occupancy),
                        "busyness": u.busyness,
                    }
                    for u in coming
                ],
            }
            topic = state_topic(self.root, self.layout.site, "occupancy", "forecast", zone)
            out.append((topic, json.dumps(body).encode()))
        return out

    def _floored(self, n: int | None) -> int | None:
        return None if n is None or 0 < n < self.privacy_floor else n

    def _seat_changed(self, device: str, now: datetime) -> list[Outgoing]:
        return [self._seat_message(device), self._zone_message(self._seat_of[device].zone, now)]

    def _zone_seat_states(self, zone: str) -> list[SeatState]:
        return [self.seats[d].state for d in self._seats_in_zone.get(zone, [])]

    def _zone_message(self, zone_id: str, now: datetime) -> Outgoing:
        z = self.layout.zone(zone_id)
        states = self._zone_seat_states(zone_id)
        occupancy = self.zones.count(zone_id)
        self.updated_at[zone_id] = now
        few = 0 < occupancy < self.privacy_floor
        body = {
            "id": z.id,
            "name": z.name,
            "floor": z.floor,
            "capacity": z.capacity,
            # Below the privacy floor the exact count is withheld, not rounded to zero:
            # zero would claim the room is empty, which is a different (false) fact.
            "occupancy": None if few else occupancy,
            "occupancy_band": "few" if few else None,
            "seats_total": len(states),
            "seats_free": states.count(SeatState.FREE),
            "busyness": busyness(occupancy, z.capacity),
            "updated_at": format_ts(now),
        }
        topic = state_topic(self.root, self.layout.site, "occupancy", "zone", z.id)
        return topic, json.dumps(body).encode()

    def _drift_message(self, zone: str, drift: int, shown: int, closed_at: datetime) -> Outgoing:
        """Non-retained `_state/occupancy/drift/{zone}`: one closing's drift (for alerts)."""
        body = {
            "site": self.layout.site,
            "zone": zone,
            "drift": drift,
            "shown": shown,
            "closed_at": format_ts(closed_at),
        }
        return drift_topic(self.root, self.layout.site, zone), json.dumps(body).encode()

    def _seat_message(self, device: str) -> Outgoing:
        seat = self._seat_of[device]
        machine = self.seats[device]
        body = {
            "id": seat.id,
            "zone": seat.zone,
            "state": machine.state.value,
            "since": format_ts(machine.since) if machine.since else None,
            "held_since": format_ts(machine.held_since) if machine.held_since else None,
            "held_too_long": machine.held_too_long,
            "features": list(seat.features),
            "x": seat.x,
            "y": seat.y,
        }
        topic = state_topic(self.root, self.layout.site, "occupancy", "seat", seat.id)
        return topic, json.dumps(body).encode()


def _checkpoint_time(data: dict[str, Any], key: str) -> datetime | None:
    value = data.get(key)
    if value is None:
        return None
    try:
        if not isinstance(value, str):
            raise ValueError
        ts = datetime.fromisoformat(value)
    except ValueError:
        raise CheckpointError(f"{key!r} is not an RFC 3339 time") from None
    if ts.tzinfo is None:
        raise CheckpointError(f"{key!r} has no UTC offset")
    return ts


def _checkpoint_key(body: Mapping[str, Any]) -> str:
    """What a checkpoint says but for when it was taken: unchanged means nothing to send."""
    return json.dumps({k: v for k, v in body.items() if k != "at"}, sort_keys=True)


def drift_topic(root: str, site: str, zone: str) -> str:
    """`{root}/{site}/_state/occupancy/drift/{zone}`: an event, the one topic not retained."""
    return state_topic(root, site, "occupancy", DRIFT, zone)


def _retained(topic: str) -> bool:
    return f"/_state/occupancy/{DRIFT}/" not in topic


def _last_per_topic(messages: Iterable[Outgoing]) -> list[Outgoing]:
    """Retained state: only the newest message per topic matters."""
    return list(dict(messages).items())


class OccupancyService:
    """Runs SiteOccupancy for each layout against the bus, the clock and the store."""

    MAX_INFLIGHT = 100  # QoS 1 state publishes awaiting their PUBACK at once

    def __init__(
        self,
        layouts: Iterable[Layout],
        store: SeriesStore,
        clock: Clock,
        settings: OccupancySettings | None = None,
    ) -> None:
        self.settings = settings or OccupancySettings()
        self.sites = {
            lay.site: SiteOccupancy(
                lay,
                self.settings.timing,
                self.settings.root,
                privacy_floor=self.settings.privacy_floor,
            )
            for lay in layouts
        }
        self._store = store
        self._clock = clock
        self._out: asyncio.Queue[Outgoing] = asyncio.Queue(maxsize=10_000)
        self.events_applied = 0
        self.events_refused = 0
        self.ready = asyncio.Event()
        # Set once the retained checkpoints were looked for (found or not): from then on
        # the memory is the truth and is checkpointed, never restored again.
        self.restored = asyncio.Event()
        self._checkpoint_topics = {site.checkpoint_topic: site for site in self.sites.values()}
        self._checkpointed: dict[str, str] = {}  # site -> the state last checkpointed

    def apply(self, topic: str, raw: bytes) -> list[Outgoing]:
        """Apply one message of events (a batch or one); the state messages it changes.

        Only the newest state of each topic is returned: a batch that moves one seat
        three times publishes it once.
        """
        try:
            events = decode_events(raw)
        except ValidationError as err:
            self.events_refused += 1
            log.warning("ignoring a malformed event on %s: %s", topic, err.errors()[0]["msg"])
            return []
        now = self._clock.now()
        out: list[Outgoing] = []
        for ev in events:
            site = self.sites.get(ev.site)
            if site is None:
                continue
            self.events_applied += 1
            out.extend(site.apply(ev, now))
        return out if len(events) == 1 else _last_per_topic(out)

    async def run(self, broker: BrokerAddress) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._ticker(), name="occupancy-tick")
                tg.create_task(self._recorder(), name="occupancy-record")
                tg.create_task(self._forecaster(), name="occupancy-forecast")
                tg.create_task(self._checkpointer(), name="occupancy-checkpoint")
                tg.create_task(self._connection_loop(broker), name="occupancy-mqtt")
        finally:
            await self._final_checkpoint(broker)

    async def _connection_loop(self, broker: BrokerAddress) -> None:
        backoff = Backoff()
        while True:
            raise_if_cancelling()
            try:
                async with client(broker, identifier=self.settings.client_id) as mqtt:
                    if not self.restored.is_set():
                        await self._restore(mqtt)
                    await mqtt.subscribe(event_subscription(self.settings.root), qos=1, timeout=10)
                    for site in self.sites.values():
                        for msg in site.snapshot(self._clock.now()):
                            await self._enqueue(msg)
                    async with asyncio.TaskGroup() as tg:
                        tg.create_task(self._publisher(mqtt), name="occupancy-publish")
                        self.ready.set()
                        backoff.reset()
                        async for message in mqtt.messages:
                            raise_if_cancelling()
                            if message.topic.value in self._checkpoint_topics:
                                continue  # a retained checkpoint that came after the wait
                            payload = message.payload
                            raw = payload if isinstance(payload, bytes) else str(payload).encode()
                            for out in self.apply(message.topic.value, raw):
                                await self._enqueue(out)
            except* aiomqtt.MqttError as group:
                self.ready.clear()
                log.warning("broker %s: %s; reconnecting", broker, group.exceptions[0])
                await asyncio.sleep(backoff.next())

    async def _restore(self, mqtt: aiomqtt.Client) -> None:
        """Take up the retained checkpoint of each site, waiting `restore_wait` at most.

        Called before the events are subscribed to, so that no event is counted against
        a counter that is about to be replaced. A site without a checkpoint in time (a
        first start, or a broker that lost its retained messages) counts from zero.
        """
        wait = self.settings.restore_wait
        waiting = dict(self._checkpoint_topics)
        if wait > 0 and waiting:
            for topic in waiting:
                await mqtt.subscribe(topic, qos=1, timeout=10)
            try:
                async with asyncio.timeout(wait):
                    async for message in mqtt.messages:
                        site = waiting.pop(message.topic.value, None)
                        payload = message.payload
                        # An empty payload: the checkpoint was cleared, start from zero.
                        if site is not None and isinstance(payload, bytes | bytearray) and payload:
                            site.restore_payload(bytes(payload))
                        if not waiting:
                            break
            except TimeoutError:
                pass
            for topic in self._checkpoint_topics:
                await mqtt.unsubscribe(topic, timeout=10)
        if waiting:
            names = ", ".join(sorted(s.layout.site for s in waiting.values()))
            log.info("no occupancy checkpoint of %s within %s s: counting from zero", names, wait)
        now = self._clock.now()
        for site in self.sites.values():
            for out in site.tick(now):  # a closing missed while down resets before any event
                await self._enqueue(out)
            self._checkpointed[site.layout.site] = _checkpoint_key(site.checkpoint(now))
        self.restored.set()

    def _checkpoint_message(self, site: SiteOccupancy, now: datetime) -> tuple[Outgoing, str]:
        body = site.checkpoint(now)
        return (site.checkpoint_topic, json.dumps(body).encode()), _checkpoint_key(body)

    async def _checkpointer(self) -> None:
        """Every `checkpoint_every` wall seconds, publish each site's changed checkpoint."""
        await self.restored.wait()
        while True:
            raise_if_cancelling()
            await asyncio.sleep(self.settings.checkpoint_every)
            now = self._clock.now()
            for name, site in self.sites.items():
                message, key = self._checkpoint_message(site, now)
                if key != self._checkpointed.get(name):
                    await self._enqueue(message)
                    self._checkpointed[name] = key

    async def _final_checkpoint(self, broker: BrokerAddress) -> None:
        """On the way out, one last checkpoint of every site: best effort, bounded."""
        timeout = self.settings.final_checkpoint_timeout
        if not self.restored.is_set() or timeout <= 0:
            return  # never publish a state that was not restored over a good checkpoint
        now = self._clock.now()
        messages = [self._checkpoint_message(site, now)[0] for site in self.sites.values()]
        try:
            async with asyncio.timeout(timeout):
                identifier = f"{self.settings.client_id}-checkpoint"
                async with client(broker, identifier=identifier) as mqtt:
                    for topic, body in messages:
                        await mqtt.publish(topic, body, qos=1, retain=True, timeout=timeout)
        except (TimeoutError, aiomqtt.MqttError) as err:
            log.warning(
                "could not publish the last occupancy checkpoint: %s", str(err) or "timed out"
            )

    async def _enqueue(self, out: Outgoing) -> None:
        async with asyncio.timeout(30):
            await self._out.put(out)

    async def _publisher(self, mqtt: aiomqtt.Client) -> None:
        # QoS 1 publishes waited for one by one cap the service at one PUBACK round trip
        # per message (about 100/s): keep up to MAX_INFLIGHT of them on the wire instead.
        # Each publish hands its message to the client in the order taken from the
        # queue, so the newest retained state of a topic is still the one sent last.
        inflight = asyncio.Semaphore(self.MAX_INFLIGHT)

        async def publish(topic: str, body: bytes) -> None:
            try:
                await mqtt.publish(topic, body, qos=1, retain=_retained(topic), timeout=30)
            finally:
                inflight.release()

        async with asyncio.TaskGroup() as tg:
            while True:
                raise_if_cancelling()
                topic, body = await self._out.get()
                async with asyncio.timeout(60):
                    await inflight.acquire()
                tg.create_task(publish(topic, body))

    async def _ticker(self) -> None:
        while True:
            raise_if_cancelling()
            await asyncio.sleep(self.settings.tick_seconds)
            now = self._clock.now()
            for site in self.sites.values():
                for out in site.tick(now):
                    await self._enqueue(out)

    async def _forecaster(self) -> None:
        """Every `forecast_every`, read the history and publish what is usual now."""
        s = self.settings
        while True:
            raise_if_cancelling()
            now = self._clock.now()
            for site in self.sites.values():
                query = history_query(site.layout.site, now, s.forecast_weeks)
                try:
                    async with asyncio.timeout(30):
                        rows = await self._store.query(query)
                except Exception as err:  # no forecast this round; the last one stays
                    log.warning("could not read occupancy history: %s", err)
                    continue
                profile = site.profile = weekly_profile(rows, site.layout.tz)
                for out in site.forecast_messages(profile, now, s.forecast_hours):
                    await self._enqueue(out)
            await self._clock.sleep(s.forecast_every.total_seconds())

    async def _recorder(self) -> None:
        while True:
            raise_if_cancelling()
            await self._clock.sleep(self.settings.record_every.total_seconds())
            now = self._clock.now()
            points = [p for site in self.sites.values() for p in site.zone_points(now)]
            drift = {name: site.take_points() for name, site in self.sites.items()}
            try:
                await self._store.write(points + [p for ps in drift.values() for p in ps])
            except Exception as err:  # a missed snapshot is repaired by the next one
                log.warning("could not store zone snapshot: %s", err)
                for name, ps in drift.items():  # but a day's drift is kept for the next try
                    self.sites[name].restore_points(ps)
