"""The alerts service end to end: a real broker, the real gateway, a real webhook receiver."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from stackpulse.gateway.decode import index_sites
from stackpulse.gateway.service import Gateway, GatewaySettings
from stackpulse.kernel.bus import BrokerAddress, parse_broker_url
from stackpulse.kernel.bus import client as mqtt_client
from stackpulse.kernel.clock import SystemClock
from stackpulse.kernel.contracts.events import decode_events
from stackpulse.kernel.contracts.occupancy import DRIFT
from stackpulse.kernel.models import format_ts
from stackpulse.kernel.runner import ServiceRunner
from stackpulse.kernel.statedb import StateDB
from stackpulse.kernel.store import open_store
from stackpulse.kernel.store.base import SeriesStore
from stackpulse.kernel.topics import Kind, device_topic
from stackpulse.services.alerts.entry import notify_settings
from stackpulse.services.alerts.model import (
    DeviceSeen,
    DriftSeen,
    FindingSeen,
    Input,
    SeatSeen,
    ZoneSeen,
)
from stackpulse.services.alerts.notify import alert_topic, alerts_subscription, transitions_topic
from stackpulse.services.alerts.service import AlertService
from stackpulse.services.alerts.settings import AlertServiceSettings, AlertSettings
from stackpulse.services.alerts.site import device_inputs, state_inputs
from stackpulse.services.inventory.model import Change, Finding
from stackpulse.services.inventory.site import change_body, change_topic
from stackpulse.services.occupancy.logic import SeatTiming
from stackpulse.services.occupancy.site import SiteOccupancy
from stackpulse.simulators.synth import synthetic_layout
from tests.support.events import data_event
from tests.support.procs import MosquittoProc
from tests.support.waiting import wait_until
from tests.test_alerts_webhooks import Receiver, check_signed, fast
from tests.test_inventory_service import RecordingStore

ROOT_DIR = Path(__file__).resolve().parent.parent
LAYOUT = synthetic_layout(
    site="main", floors=1, rooms_per_floor=1, seats_per_room=2, shelves=1, sections_per_shelf=2
)
SEAT, OTHER_SEAT = "seat-11000", "seat-11001"


def read_inputs(root: str, topic: str, raw: bytes, now: datetime) -> list[Input]:
    """What the service makes of one message: events, or another service's state."""
    if "/_events/" in topic:
        return device_inputs(decode_events(raw))
    return state_inputs(root, topic, raw, now)[1]


# -- the bus, read as the rules' inputs (pure) -------------------------------------------


def test_occupancy_state_and_drift_become_rule_inputs() -> None:
    root = "lib/v1"
    site = SiteOccupancy(LAYOUT, SeatTiming(), root)
    opening = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai, a Tuesday
    payload = {"ts": format_ts(opening), "boot": 1, "seq": 1, "in": 12, "out": 0}
    out = site.apply(data_event(Kind.GATE, "gate-door-1", payload, opening), opening)
    site.tick(opening)
    [(topic, raw)] = [(m.topic, m.payload) for m in out if m.topic.endswith("/zone/lobby")]
    [zone] = read_inputs(root, topic, raw, opening)
    assert zone == ZoneSeen("main", "lobby", 12, 60, opening)

    closed = site.tick(opening + timedelta(hours=14))  # past 22:30 local: closing reset
    drifts = [(m.topic, m.payload) for m in closed if m.topic == DRIFT.topic(root, "main", "lobby")]
    assert len(drifts) == 1
    [drift] = read_inputs(root, *drifts[0], opening)
    assert isinstance(drift, DriftSeen) and (drift.zone, drift.drift) == ("lobby", 12)
    assert drift.at == datetime(2026, 11, 24, 14, 30, tzinfo=UTC)

    first = site.snapshot(opening)[0]
    seat_topic, seat_raw = first.topic, first.payload
    [seat] = read_inputs(root, seat_topic, seat_raw, opening)
    assert isinstance(seat, SeatSeen) and seat.state == "unknown"


def test_device_events_and_inventory_changes_become_rule_inputs() -> None:
    root = "lib/v1"
    at = datetime(2026, 11, 24, 3, tzinfo=UTC)
    seat = data_event(
        Kind.SEAT,
        SEAT,
        {"ts": format_ts(at), "boot": 1, "seq": 3, "presence": "empty", "battery": 0.07},
        at,
    )
    batch = f"[{seat.model_dump_json()}]".encode()
    assert read_inputs(root, f"{root}/main/_events/seat/_batch/data", batch, at) == [
        DeviceSeen("main", "seat", SEAT, at, None, 0.07)
    ]
    change = Change(Finding.MISSING, "1001", "opened", at)
    body = change_body("main", change).dump()
    [finding] = read_inputs(root, change_topic(root, "main", "missing"), body, at)
    assert isinstance(finding, FindingSeen)
    assert finding == FindingSeen("main", "missing", "1001", "opened", at, finding.detail)
    assert read_inputs(root, f"{root}/main/_state/occupancy/zone/lobby", b"", at) == []
    with pytest.raises(ValueError, match="Zone"):
        read_inputs(root, f"{root}/main/_state/occupancy/zone/x", b'{"id":"x"}', at)


# -- end to end -------------------------------------------------------------------------


DEVICE_SCRIPT = """
import json, sys, time
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
host, port, topic = sys.argv[1], int(sys.argv[2]), sys.argv[3]
c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=sys.argv[4], protocol=mqtt.MQTTv311)
c.will_set(topic, json.dumps({"online": False}), qos=1, retain=True)
c.connect(host, port, keepalive=5)
c.loop_start()
birth = {"ts": sys.argv[5], "online": True, "boot": 1, "fw": "1.0.0"}
c.publish(topic, json.dumps(birth), qos=1, retain=True).wait_for_publish(10)
print("online", flush=True)
time.sleep(600)
"""


@dataclass
class Device:
    """A seat sensor in its own process: online on start, its Last Will when killed."""

    broker: MosquittoProc
    root: str
    device: str
    proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        topic = device_topic(self.root, "main", Kind.SEAT, self.device, "status")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                DEVICE_SCRIPT,
                self.broker.host,
                str(self.broker.port),
                topic,
                f"dev-{uuid.uuid4().hex[:8]}",
                format_ts(datetime.now(UTC)),
            ],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT_DIR,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "online"

    def crash(self) -> None:
        """Power cut: no DISCONNECT, so the broker sends the Last Will."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
            self.proc = None


@dataclass
class Stack:
    """Broker, gateway and webhook receiver for one test; the alerts service comes and goes."""

    broker: BrokerAddress
    mosquitto: MosquittoProc
    root: str
    db_url: str
    receiver: Receiver
    client_id: str = field(default_factory=lambda: f"alerts-{uuid.uuid4().hex[:8]}")
    heard: list[tuple[str, bytes]] = field(default_factory=list)  # everything on _alerts/#
    series: SeriesStore | None = None  # where transitions are recorded, if anywhere
    service: AlertService | None = None
    db: StateDB | None = None
    _task: asyncio.Task[None] | None = None

    async def start_service(self) -> AlertService:
        self.db = StateDB.open(self.db_url)
        settings = AlertServiceSettings(
            client_id=self.client_id,
            tick=timedelta(seconds=0.1),
            checkpoint_every=timedelta(seconds=0.2),
            record_every=timedelta(seconds=0.2),
            catchup_settle=timedelta(seconds=0.1),
        )
        self.service = AlertService(
            [LAYOUT],
            SystemClock(),
            self.db,
            settings,
            AlertSettings(),
            root=self.root,
            notify=fast(self.receiver.url),
            series=self.series,
        )
        runner = ServiceRunner(
            self.service,
            broker=self.broker,
            root=self.root,
            clock=SystemClock(),
            settings=settings,
            store=self.series,
            checkpoints=self.db,
        )
        self._task = asyncio.create_task(runner.run(), name="test-alerts")
        await wait_until(lambda: runner.readiness.ready)
        return self.service

    async def stop_service(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self.db is not None:
            self.db.close()
            self.db = None

    def device(self, name: str) -> Device:
        return Device(self.mosquitto, self.root, name)

    async def retained(self, topic: str, wait: float = 2.0) -> bytes | None:
        """What a new subscriber of `topic` gets at once: its retained message."""
        async with mqtt_client(self.broker) as mqtt:
            await mqtt.subscribe(topic, qos=1, timeout=10)
            try:
                async with asyncio.timeout(wait):
                    async for message in mqtt.messages:
                        payload = message.payload
                        return payload if isinstance(payload, bytes) else None
            except TimeoutError:
                return None
        return None

    def webhooks(self, kind: str | None = None) -> list[dict[str, Any]]:
        """The verified bodies the receiver got (answered 2xx or not)."""
        bodies = [check_signed(r) for r in self.receiver.requests]
        return [b for b in bodies if kind is None or b["kind"] == kind]


async def _watch(mqtt: aiomqtt.Client, stack: Stack) -> None:
    async for message in mqtt.messages:
        payload = message.payload
        stack.heard.append((message.topic.value, payload if isinstance(payload, bytes) else b""))


@asynccontextmanager
async def running_gateway(broker: BrokerAddress, root: str, spool: Path) -> AsyncIterator[None]:
    gw = Gateway(
        index_sites([LAYOUT]),
        RecordingStore(),
        SystemClock(),
        GatewaySettings(
            root=root,
            client_id=f"gw-{uuid.uuid4().hex[:8]}",
            flush_interval=0.1,
            spool=str(spool),
        ),
    )
    task = asyncio.create_task(gw.run(broker), name="test-gateway")
    try:
        await asyncio.wait_for(gw.connected.wait(), timeout=10)
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
async def stack(mosquitto: MosquittoProc, mqtt_root: str, tmp_path: Path) -> AsyncIterator[Stack]:
    broker = parse_broker_url(mosquitto.url)
    receiver = Receiver()
    s = Stack(broker, mosquitto, mqtt_root, f"sqlite:///{tmp_path / 'state.db'}", receiver)
    async with (
        running_gateway(broker, mqtt_root, tmp_path / "spool"),
        mqtt_client(broker) as watcher,
    ):
        await watcher.subscribe(alerts_subscription(mqtt_root), qos=1, timeout=10)
        watch = asyncio.create_task(_watch(watcher, s))
        try:
            yield s
        finally:
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)
            await s.stop_service()
            receiver.stop()
            async with mqtt_client(broker) as cleaner:  # leave no retained state behind
                for kind, device in (("seat", SEAT), ("seat", OTHER_SEAT)):
                    topic = f"{mqtt_root}/main/_events/{kind}/{device}/status"
                    await cleaner.publish(topic, b"", qos=1, retain=True)
                    raw = device_topic(mqtt_root, "main", Kind.SEAT, device, "status")
                    await cleaner.publish(raw, b"", qos=1, retain=True)
                for rule, subject in (("device_offline", SEAT), ("battery_low", OTHER_SEAT)):
                    topic = alert_topic(mqtt_root, "main", rule, subject)
                    await cleaner.publish(topic, b"", qos=1, retain=True)


@pytest.fixture
def device_reaper() -> Iterator[list[Device]]:
    devices: list[Device] = []
    yield devices
    for d in devices:
        with suppress(Exception):
            d.crash()


pytestmark = pytest.mark.integration


async def test_a_last_will_raises_device_offline_on_mqtt_and_a_signed_retried_webhook(
    stack: Stack, device_reaper: list[Device], influx_db: str
) -> None:
    stack.series = series = open_store(influx_db)
    stack.receiver.statuses = [500]  # the receiver fails once, then answers 200
    stack.receiver.start()
    service = await stack.start_service()
    seat = stack.device(SEAT)
    device_reaper.append(seat)
    seat.start()
    await wait_until(lambda: service.inputs_applied >= 1)  # its birth message came through
    seat.crash()

    await wait_until(lambda: len(stack.receiver.requests) >= 2, seconds=15)
    first, second = stack.webhooks()[:2]
    assert first == second  # the same body again after the 500: one event, retried
    assert first["kind"] == "opened"
    alert = first["alert"]
    assert (alert["rule"], alert["subject"], alert["site"]) == ("device_offline", SEAT, "main")
    assert alert["state"] == "active_unack" and alert["severity"] == "warning"
    assert SEAT in alert["message"]

    # On MQTT: the transition as an event, and the alert retained on its own topic.
    events = [json.loads(b) for t, b in stack.heard if t == transitions_topic(stack.root, "main")]
    assert [e["event_id"] for e in events] == [first["event_id"]]
    state = await stack.retained(alert_topic(stack.root, "main", "device_offline", SEAT))
    assert state is not None and json.loads(state)["id"] == alert["id"]

    # The device comes back: the alert clears by itself, and the retained one goes.
    seat.start()
    await wait_until(lambda: len(stack.webhooks("cleared")) == 1, seconds=15)
    cleared = stack.webhooks("cleared")[0]["alert"]
    assert cleared["state"] == "cleared_unack" and cleared["cleared_by"] is None
    await wait_until(
        lambda: any(
            t == alert_topic(stack.root, "main", "device_offline", SEAT) and b == b""
            for t, b in stack.heard
        )
    )
    assert await stack.retained(alert_topic(stack.root, "main", "device_offline", SEAT)) is None

    # Every transition is recorded for the Alerts dashboard, with how long it stayed open.
    q = 'SELECT "open_count", "seconds_to_clear" FROM "alert_transition" GROUP BY "kind"'
    rows: list[dict[str, Any]] = []
    async with asyncio.timeout(15):
        while len(rows) < 2:
            await asyncio.sleep(0.2)
            rows = await series.raw_query(q)
    by_kind = {r["kind"]: r for r in rows}
    assert set(by_kind) == {"opened", "cleared"}
    assert by_kind["opened"]["open_count"] == 1 and by_kind["cleared"]["open_count"] == 0
    assert by_kind["cleared"]["seconds_to_clear"] > 0
    await series.close()


async def test_a_restart_delivers_what_waited_and_opens_no_second_alert(
    stack: Stack, device_reaper: list[Device]
) -> None:
    service = await stack.start_service()  # the receiver is down: connections refused
    seat = stack.device(SEAT)
    device_reaper.append(seat)
    seat.start()
    await wait_until(lambda: service.inputs_applied >= 1)
    seat.crash()
    await wait_until(lambda: service.sender.failures >= 1, seconds=15)
    await asyncio.sleep(0.5)  # a rules checkpoint or two
    await stack.stop_service()
    assert stack.receiver.requests == []

    # While the service is away a seat reports a flat battery: its persistent session keeps it.
    async with mqtt_client(stack.broker) as pub:
        now = format_ts(datetime.now(UTC))
        body = {"ts": now, "boot": 1, "seq": 1, "presence": "empty", "battery": 0.05}
        topic = device_topic(stack.root, "main", Kind.SEAT, OTHER_SEAT, "data")
        await pub.publish(topic, json.dumps(body).encode(), qos=1, timeout=10)
    await asyncio.sleep(0.5)  # through the gateway, into the session

    stack.receiver.start()
    service = await stack.start_service()
    await wait_until(lambda: len(stack.webhooks("opened")) == 2, seconds=15)
    opened = {(b["alert"]["rule"], b["alert"]["subject"]) for b in stack.webhooks("opened")}
    assert opened == {("device_offline", SEAT), ("battery_low", OTHER_SEAT)}
    battery = next(b for b in stack.webhooks("opened") if b["alert"]["rule"] == "battery_low")
    assert battery["alert"]["severity"] == "critical"

    # The retained offline status came back on subscribing: the same alert, refreshed.
    await asyncio.sleep(1.0)
    assert stack.db is not None
    book = service.book
    offline = await asyncio.to_thread(book.list, site="main", rule="device_offline")
    assert [a.subject for a in offline] == [SEAT]
    assert len(stack.webhooks("opened")) == 2
    name = f"alerts/{stack.root}/main"
    assert await asyncio.to_thread(stack.db.load_checkpoint, name) is not None
    await wait_until(lambda: service.outbox.pending() == 0)


def test_the_service_settings_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="tick"):
        AlertServiceSettings(tick=timedelta(0))
    with pytest.raises(ValueError, match="work_queue"):
        AlertServiceSettings(work_queue=0)
    with pytest.raises(ValueError, match="STACKPULSE_ALERTS_WEBHOOK_SECRET"):
        notify_settings(AlertServiceSettings(webhooks="http://127.0.0.1:9/hook"))
