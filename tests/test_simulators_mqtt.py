"""The simulator against a real Mosquitto: births, data, Wills and goodbyes, per device."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import aiomqtt
import pytest

from stackpulse.kernel import bus
from stackpulse.kernel.clock import ScaledClock
from stackpulse.kernel.models import StatusMessage, parse_payload
from stackpulse.kernel.topics import Channel, parse_device_topic
from stackpulse.simulators import Simulation, run_simulation
from stackpulse.simulators.publisher import BrokerUnreachable
from stackpulse.simulators.synth import synthetic_catalog, synthetic_layout
from tests.support.procs import MosquittoProc

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

LAYOUT = synthetic_layout(
    floors=1, rooms_per_floor=2, seats_per_room=20, shelves=2, sections_per_shelf=3
)
NOON = datetime(2026, 11, 24, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai"))

Seen = list[tuple[str, bytes, bool]]


async def _collect(client: aiomqtt.Client, into: Seen) -> None:
    async for msg in client.messages:
        assert isinstance(msg.payload, bytes)
        into.append((str(msg.topic), msg.payload, msg.retain))


async def _until(check: Callable[[], bool], within: float, what: str) -> None:
    for _ in range(int(within / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    assert check(), f"waited {within}s for {what}"


def _status(seen: Seen, root: str) -> dict[str, list[tuple[dict[str, object], bool]]]:
    out: dict[str, list[tuple[dict[str, object], bool]]] = defaultdict(list)
    for topic, payload, retain in seen:
        t = parse_device_topic(topic, root)
        if t.channel is Channel.STATUS:
            out[t.device].append((json.loads(payload), retain))
    return out


async def _retained_status(
    broker: bus.BrokerAddress, root: str, n: int
) -> dict[str, dict[str, object]]:
    """What a newcomer learns from the broker alone: the retained status of each device."""
    seen: Seen = []
    async with bus.client(broker, identifier=f"late-{uuid.uuid4().hex[:8]}") as late:
        await late.subscribe(f"{root}/+/+/+/status", qos=1)
        task = asyncio.create_task(_collect(late, seen))
        try:
            await _until(lambda: len(seen) >= n, 10, f"{n} retained statuses")
        finally:
            task.cancel()
    assert all(retain for _, _, retain in seen)
    return {parse_device_topic(t, root).device: json.loads(p) for t, p, _ in seen}


async def test_devices_publish_births_data_wills_and_goodbyes(
    mosquitto: MosquittoProc, mqtt_root: str
) -> None:
    broker = bus.parse_broker_url(mosquitto.url)
    devices = LAYOUT.devices()
    assert 45 <= len(devices) <= 60
    clock = ScaledClock(NOON, speed=120)
    sim = Simulation(
        LAYOUT,
        broker,
        root=mqtt_root,
        clock=clock,
        seed=5,
        catalog=synthetic_catalog(LAYOUT, 10),
        client_prefix=f"t{uuid.uuid4().hex[:6]}",
    )
    seen: Seen = []
    async with bus.client(broker, identifier=f"watch-{uuid.uuid4().hex[:8]}") as watch:
        await watch.subscribe(f"{mqtt_root}/#", qos=1)
        collector = asyncio.create_task(_collect(watch, seen))
        stop = asyncio.Event()
        run = asyncio.create_task(sim.run(stop=stop))
        await asyncio.wait_for(sim.ready.wait(), 20)

        births = await _retained_status(broker, mqtt_root, len(devices))
        assert set(births) == set(devices)
        for device, birth in births.items():
            parsed = StatusMessage.model_validate(birth)
            assert parsed.online and parsed.fw and parsed.boot == sim.model.device(device).boot

        victim = "seat-11000"
        sim.kill(victim)
        await _until(
            lambda: ({"online": False}, False) in _status(seen, mqtt_root)[victim],
            10,
            "the Will of the killed device",
        )
        sim.revive(victim)
        await _until(
            lambda: _status(seen, mqtt_root)[victim][-1][0].get("online") is True,
            10,
            "a fresh birth after revival",
        )
        rebooted = "gate-door-1"
        boot = sim.model.device(rebooted).boot
        sim.model.reboot(rebooted)

        def restarted() -> bool:
            last = [s for s, _ in _status(seen, mqtt_root)[rebooted][-2:]]
            return last[:1] == [{"online": False}] and last[1:] == [
                {**births[rebooted], "boot": boot + 1, "ts": last[1]["ts"]}
            ]

        await _until(restarted, 10, "a Will, then a birth with the next boot, after a reboot")
        # Long enough (in clock time) for every seat to have sent its heartbeat.
        await _until(lambda: sim.model.now > NOON + timedelta(seconds=330), 10, "5.5 minutes")
        stop.set()
        report = await asyncio.wait_for(run, 20)
        await asyncio.sleep(0.3)
        collector.cancel()

    data = [(parse_device_topic(t, mqtt_root), p) for t, p, _ in seen]
    data = [(t, p) for t, p in data if t.channel is Channel.DATA]
    kinds = {t.kind for t, _ in data}
    assert {"gate", "seat"} <= kinds
    seqs: dict[tuple[str, int], list[int]] = defaultdict(list)
    for t, p in data:
        msg = parse_payload(t.kind, t.channel, p)
        assert not isinstance(msg, StatusMessage)
        seqs[(t.device, msg.boot)].append(msg.seq)
    for (device, _), seq in seqs.items():
        if device != victim:  # a dead device loses what it would have sent
            assert seq == list(range(seq[0], seq[0] + len(seq))), device
    statuses = [
        json.loads(p) for t, p, _ in seen if parse_device_topic(t, mqtt_root).channel == "status"
    ]
    wills = statuses.count({"online": False})  # the broker's, not ours
    assert wills == 2
    assert sum(report.published.values()) == len(data) + len(statuses) - wills
    heard = {t.device for t, _ in data if t.kind == "seat"}
    assert heard == {s.device for s in LAYOUT.seats}
    assert report.truth is not None and report.ended > report.started

    goodbyes = await _retained_status(broker, mqtt_root, len(devices))
    assert all(s["online"] is False and s["boot"] for s in goodbyes.values())


async def test_devices_come_back_with_fresh_births_after_the_broker_crashes(
    fresh_mosquitto: MosquittoProc, mqtt_root: str
) -> None:
    layout = synthetic_layout(floors=1, rooms_per_floor=1, seats_per_room=6, sections_per_shelf=2)
    n = len(layout.devices())
    broker = bus.parse_broker_url(fresh_mosquitto.url)
    sim = Simulation(layout, broker, root=mqtt_root, clock=ScaledClock(NOON, 120), seed=3)
    stop = asyncio.Event()
    run = asyncio.create_task(sim.run(stop=stop))
    await asyncio.wait_for(sim.ready.wait(), 20)
    assert sim.publisher is not None
    stats = sim.publisher.stats
    await _until(lambda: stats.connects == n, 10, "every device connected")

    # Killed, the broker keeps no retained message it had not saved yet.
    await asyncio.to_thread(fresh_mosquitto.kill)
    await asyncio.to_thread(fresh_mosquitto.start)
    await _until(lambda: stats.connects == 2 * n, 20, "every device connected again")
    statuses = await _retained_status(broker, mqtt_root, n)
    assert all(s["online"] is True for s in statuses.values())
    stop.set()
    report = await asyncio.wait_for(run, 20)
    assert report.connects == 2 * n and report.published["seat"] > 0


async def test_an_unreachable_broker_is_reported_at_start(mqtt_root: str) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    broker = bus.parse_broker_url(f"mqtt://127.0.0.1:{port}")
    layout = synthetic_layout(floors=1, rooms_per_floor=1, seats_per_room=2, shelves=0, desks=0)
    clock = ScaledClock(NOON, 60)
    with pytest.raises(BrokerUnreachable, match=f"127.0.0.1:{port}"):
        await asyncio.wait_for(
            run_simulation(layout, broker, root=mqtt_root, clock=clock, seed=1, duration=60), 20
        )
