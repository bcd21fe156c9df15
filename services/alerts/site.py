"""The alerts service: derived signals and device health in; alerts and notifications out.

Reads, over one persistent MQTT session (a fixed client id, so the broker keeps what
comes while it restarts): the gateway's events (device health: status, battery,
heartbeats), the occupancy service's retained zone and seat state and its drift at
closing, and the inventory service's finding changes. The rules (pure, in memory,
checkpointed to the state database) turn them into observations; the lifecycle (the
state database) into alerts and transitions; the notification sender (`notify.py`)
delivers those from the durable outbox.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiomqtt
import httpx
from pydantic import ValidationError

from stackpulse.kernel.aio import Backoff, raise_if_cancelling
from stackpulse.kernel.bus import BrokerAddress, client
from stackpulse.kernel.clock import Clock
from stackpulse.kernel.layout import Layout
from stackpulse.kernel.models import decode_events, parse_rfc3339
from stackpulse.kernel.schema import alert_point
from stackpulse.kernel.statedb import StateDB
from stackpulse.kernel.store.base import Point, SeriesStore
from stackpulse.kernel.topics import (
    Channel,
    Kind,
    event_subscription,
    parse_system_topic,
    state_topic,
)
from stackpulse.services.alerts.lifecycle import AlertBook
from stackpulse.services.alerts.model import (
    AlertState,
    DeviceSeen,
    DriftSeen,
    FindingSeen,
    Input,
    Observation,
    SeatSeen,
    Transition,
    ZoneSeen,
)
from stackpulse.services.alerts.notify import NotifySettings, Sender
from stackpulse.services.alerts.rules import RuleEngine
from stackpulse.services.alerts.settings import AlertSettings
from stackpulse.services.alerts.store import AlertStore

log = logging.getLogger("stackpulse.alerts")

CHECKPOINT_NAME = "alerts/rules"
DEFAULT_CLIENT_ID = "stackpulse-alerts"
MAX_BATCH = 500  # observations handed to the lifecycle per database round
MAX_PENDING_POINTS = 10_000  # alert_transition points waiting for the store

Work = Observation | datetime  # an observation to apply, or a lifecycle tick at `now`


@dataclass(frozen=True, slots=True)
class AlertServiceSettings:
    root: str = "lib/v1"
    client_id: str = DEFAULT_CLIENT_ID  # fixed: the broker keeps its session across restarts
    tick_seconds: float = 1.0  # wall seconds between rule and lifecycle ticks
    checkpoint_every: float = 10.0  # wall seconds between rule checkpoints (when changed)
    db_timeout: float = 30.0  # one database round (a batch of observations)
    queue_size: int = 10_000  # observations waiting for the database
    notify: NotifySettings = field(default_factory=NotifySettings)
    record_every: float = 5.0  # wall seconds between writes of transitions to the store

    def __post_init__(self) -> None:
        for name in ("tick_seconds", "checkpoint_every", "db_timeout", "record_every"):
            if not 0 < getattr(self, name) < float("inf"):
                raise ValueError(f"{name} must be a positive number of seconds")
        if self.queue_size < 1:
            raise ValueError("queue_size must be positive")


# -- what the bus says, as the rules' inputs (pure) ------------------------------------


def subscriptions(root: str) -> list[str]:
    """Everything the service reads; never its own `_alerts` output."""
    return [
        event_subscription(root),
        state_topic(root, "+", "occupancy", "zone", "+"),
        state_topic(root, "+", "occupancy", "seat", "+"),
        state_topic(root, "+", "occupancy", "drift", "+"),
        state_topic(root, "+", "inventory", "change", "+"),
    ]


def read_inputs(root: str, topic: str, raw: bytes, now: datetime) -> list[Input]:
    """The rules' inputs in one message; ValueError (saying why) when it is malformed.

    An empty payload (a retained message being cleared) says nothing.
    """
    if not raw:
        return []
    events = parse_system_topic(topic, root, "_events")
    if events is not None:
        return _device_inputs(raw)
    state = parse_system_topic(topic, root, "_state")
    if state is None or len(state) != 4:
        return []
    site, service, what, _ident = state
    try:
        body = json.loads(raw)
        if not isinstance(body, dict):
            raise ValueError("not a JSON object")
        if (service, what) == ("occupancy", "zone"):
            return [_zone(site, body)]
        if (service, what) == ("occupancy", "seat"):
            return [_seat(site, body, now)]
        if (service, what) == ("occupancy", "drift"):
            return [_drift(site, body)]
        if (service, what) == ("inventory", "change"):
            return [_finding(site, body)]
    except (KeyError, TypeError) as err:
        raise ValueError(f"missing or mistyped field {err}") from None
    except RecursionError:
        raise ValueError("nested too deeply") from None
    return []


def _device_inputs(raw: bytes) -> list[Input]:
    try:
        events = decode_events(raw)
    except ValidationError as err:
        raise ValueError(err.errors()[0]["msg"]) from None
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


def _time(body: Mapping[str, Any], key: str) -> datetime:
    return parse_rfc3339(body[key])


def _zone(site: str, body: Mapping[str, Any]) -> ZoneSeen:
    occupancy = body["occupancy"]
    if occupancy is not None and not isinstance(occupancy, int):
        raise TypeError("'occupancy'")
    return ZoneSeen(
        site, str(body["id"]), occupancy, int(body["capacity"]), _time(body, "updated_at")
    )


def _seat(site: str, body: Mapping[str, Any], now: datetime) -> SeatSeen:
    since = _time(body, "since") if body.get("since") else now
    return SeatSeen(site, str(body["id"]), str(body["state"]), since, now)


def _drift(site: str, body: Mapping[str, Any]) -> DriftSeen:
    return DriftSeen(site, str(body["zone"]), int(body["drift"]), _time(body, "closed_at"))


def _finding(site: str, body: Mapping[str, Any]) -> FindingSeen:
    state = body["state"]
    if state not in ("opened", "closed"):
        raise TypeError("'state'")
    detail = body.get("detail") or {}
    if not isinstance(detail, dict):
        raise TypeError("'detail'")
    return FindingSeen(
        site, str(body["finding"]), str(body["item"]), state, _time(body, "at"), detail
    )


# -- the service -----------------------------------------------------------------------


class AlertService:
    """Rules, lifecycle and notifications for the sites of `layouts`, on one state database."""

    def __init__(
        self,
        layouts: Iterable[Layout],
        clock: Clock,
        db: StateDB,
        settings: AlertServiceSettings | None = None,
        rules: AlertSettings | None = None,
        series: SeriesStore | None = None,
    ) -> None:
        self.settings = settings or AlertServiceSettings()
        self.rules = rules or AlertSettings()
        layouts = list(layouts)
        self.sites = frozenset(lay.site for lay in layouts)
        self._clock = clock
        self._db = db
        self.engine = RuleEngine(layouts, self.rules)
        store = AlertStore(db)
        self.book = AlertBook(store, self.rules)
        self.outbox = store.outbox
        self.sender = Sender(
            self.outbox,
            root=self.settings.root,
            clock=clock,
            alerts=self.book,
            settings=self.settings.notify,
        )
        self._work: asyncio.Queue[Work] = asyncio.Queue(maxsize=self.settings.queue_size)
        self._applying = False  # a batch is with the database
        self._tick_waiting = False
        self._checkpointed: str | None = None  # the rules' state last saved
        self._checkpoint_due = 0.0  # loop time
        self.inputs_applied = 0
        self.inputs_refused = 0
        self.transitions = 0
        self.ready = asyncio.Event()  # subscribed
        self.restored = asyncio.Event()  # the rules' checkpoint was looked for
        # Every transition as a point for the Alerts dashboard (time to ack and clear).
        self._store = series
        self._points: list[Point] = []
        self._points_lock = threading.Lock()
        self.points_dropped = 0
        if series is not None:
            self.sender.on_transitions = self._record

    async def run(self, broker: BrokerAddress) -> None:
        await self._restore()
        try:
            async with httpx.AsyncClient(follow_redirects=False) as http, asyncio.TaskGroup() as tg:
                tg.create_task(self._ticker(), name="alerts-tick")
                tg.create_task(self._lifecycle(), name="alerts-lifecycle")
                tg.create_task(self.sender.run(http), name="alerts-notify")
                if self._store is not None:
                    tg.create_task(self._recorder(self._store), name="alerts-record")
                tg.create_task(self._connection_loop(broker), name="alerts-mqtt")
        finally:
            self.ready.clear()
            if self._work.empty() and not self._applying:
                # Only a state whose every observation reached the database is saved:
                # otherwise the rules would wake up believing they had reported it.
                await self._save_checkpoint(final=True)

    # -- input

    def take(self, topic: str, raw: bytes) -> list[Observation]:
        """The observations one message makes (rules updated); refused input is logged."""
        try:
            inputs = read_inputs(self.settings.root, topic, raw, self._clock.now())
        except ValueError as err:
            self.inputs_refused += 1
            log.warning("ignoring a malformed message on %s: %s", topic[:200], err)
            return []
        out: list[Observation] = []
        for item in inputs:
            if item.site in self.sites:
                self.inputs_applied += 1
                out += self.engine.observe(item)
        return out

    async def _connection_loop(self, broker: BrokerAddress) -> None:
        backoff = Backoff()
        while True:
            raise_if_cancelling()
            try:
                async with client(
                    broker, identifier=self.settings.client_id, clean_session=False
                ) as mqtt:
                    for topic_filter in subscriptions(self.settings.root):
                        await mqtt.subscribe(topic_filter, qos=1, timeout=10)

                    async def publish(topic: str, body: bytes, retain: bool) -> None:
                        await mqtt.publish(topic, body, qos=1, retain=retain, timeout=30)

                    self.sender.connect(publish)
                    self.sender.wake.set()  # what waited for the broker goes now
                    self.ready.set()
                    backoff.reset()
                    async for message in mqtt.messages:
                        raise_if_cancelling()
                        payload = message.payload
                        raw = payload if isinstance(payload, bytes) else str(payload).encode()
                        for obs in self.take(message.topic.value, raw):
                            await self._put(obs)
            except aiomqtt.MqttError as err:
                log.warning("broker %s: %s; reconnecting", broker, err)
                await asyncio.sleep(backoff.next())
            finally:
                self.ready.clear()
                self.sender.connect(None)

    async def _put(self, work: Work) -> None:
        # Back-pressure: a slow database slows the reading of the bus (and the broker
        # keeps the rest of the session), never drops an observation.
        while True:
            try:
                async with asyncio.timeout(60):
                    await self._work.put(work)
                    return
            except TimeoutError:
                log.warning("the alert lifecycle is %d observations behind", self._work.qsize())

    async def _ticker(self) -> None:
        while True:
            raise_if_cancelling()
            await asyncio.sleep(self.settings.tick_seconds)
            now = self._clock.now()
            for obs in self.engine.tick(now):
                await self._put(obs)
            if not self._tick_waiting:  # one lifecycle tick in the queue is enough
                self._tick_waiting = True
                await self._put(now)

    # -- the lifecycle, one database round at a time

    async def _lifecycle(self) -> None:
        backoff = Backoff(first=1.0, cap=30.0)
        loop = asyncio.get_running_loop()
        self._checkpoint_due = loop.time() + self.settings.checkpoint_every
        while True:
            raise_if_cancelling()
            pending = [await self._work.get()]
            while len(pending) < MAX_BATCH and not self._work.empty():
                pending.append(self._work.get_nowait())
            self._applying = True
            try:
                while pending:
                    try:
                        async with asyncio.timeout(self.settings.db_timeout):
                            made = await asyncio.to_thread(self._apply, pending)
                    except Exception as err:  # the database is away: keep what is left, retry
                        log.error("alert lifecycle: %s; %d waiting", err, len(pending))
                        await asyncio.sleep(backoff.next())
                        continue
                    backoff.reset()
                    if made:
                        self.transitions += made
                        self.sender.wake.set()
            finally:
                self._applying = False
            if self._work.empty() and loop.time() >= self._checkpoint_due:
                self._checkpoint_due = loop.time() + self.settings.checkpoint_every
                await self._save_checkpoint()

    def _apply(self, pending: list[Work]) -> int:
        """In a thread: apply `pending` in order, removing each once it is done."""
        made = 0
        while pending:
            work = pending[0]
            if isinstance(work, Observation):
                made += len(self.book.apply(work))
            else:
                self._tick_waiting = False
                made += len(self.book.tick(self._clock.now()))
            pending.pop(0)
        return made

    # -- the record of transitions, for the dashboards

    def _record(self, seen: list[tuple[Transition, int | None]]) -> None:
        """In the sender's thread: one alert_transition point per transition."""
        active = (AlertState.ACTIVE_UNACK, AlertState.ACTIVE_ACK)
        still_open: dict[tuple[str, str, str], int] = {}
        points = []
        for t, cursor in seen:
            a = t.alert
            key = (a.site, a.rule, a.severity.value)
            if key not in still_open:
                found = self.book.list(site=a.site, rule=a.rule, severity=a.severity, states=active)
                still_open[key] = len(found)
            since_open = (t.at - a.opened_at).total_seconds()
            points.append(
                alert_point(
                    a.site,
                    a.rule,
                    a.severity.value,
                    t.kind,
                    open_count=still_open[key],
                    ts=t.at,
                    seq=cursor or 0,  # a replayed transition overwrites itself
                    seconds_to_ack=since_open if t.kind == "acked" else None,
                    seconds_to_clear=since_open if t.kind == "cleared" else None,
                )
            )
        self._keep(points)

    def _keep(self, points: list[Point], *, first: bool = False) -> None:
        with self._points_lock:
            self._points = points + self._points if first else self._points + points
            over = len(self._points) - MAX_PENDING_POINTS
            if over > 0:
                del self._points[:over]
                self.points_dropped += over
                log.warning("the store is behind: dropped the %d oldest alert points", over)

    async def _recorder(self, store: SeriesStore) -> None:
        while True:
            raise_if_cancelling()
            await asyncio.sleep(self.settings.record_every)
            with self._points_lock:
                points, self._points = self._points, []
            if not points:
                continue
            try:
                async with asyncio.timeout(30):
                    await store.write(points)
            except Exception as err:  # kept for the next round
                log.warning("could not store %d alert transitions: %s", len(points), err)
                self._keep(points, first=True)

    # -- the rules' checkpoint

    async def _restore(self) -> None:
        try:
            async with asyncio.timeout(self.settings.db_timeout):
                body = await asyncio.to_thread(self._db.load_checkpoint, CHECKPOINT_NAME)
        except Exception as err:  # rules start from nothing; the bus refills them
            log.error("could not load the alert rules' checkpoint: %s", err)
            body = None
        if body is not None:
            try:
                self.engine.restore(json.loads(body))
                self._checkpointed = body.decode()
                log.info("restored the alert rules' state (%d bytes)", len(body))
            except (ValueError, TypeError, RecursionError) as err:
                log.warning("ignoring the alert rules' checkpoint: %s", err)
        self.restored.set()

    async def _save_checkpoint(self, *, final: bool = False) -> None:
        if not self.restored.is_set():
            return  # never overwrite a checkpoint that was not taken up first
        text = json.dumps(self.engine.checkpoint(), separators=(",", ":"), sort_keys=True)
        if text == self._checkpointed:
            return
        try:
            async with asyncio.timeout(self.settings.db_timeout):
                await asyncio.to_thread(self._db.save_checkpoint, CHECKPOINT_NAME, text.encode())
        except Exception as err:
            log.error("could not save the alert rules' checkpoint: %s", err)
            return
        self._checkpointed = text
        if final:
            log.info("saved the alert rules' checkpoint (%d bytes)", len(text))


__all__ = [
    "CHECKPOINT_NAME",
    "AlertService",
    "AlertServiceSettings",
    "read_inputs",
    "subscriptions",
]
