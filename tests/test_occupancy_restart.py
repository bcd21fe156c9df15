"""Occupancy across a restart: the counting state checkpointed, restored, and counted on."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stackpulse.kernel.bus import client as mqtt_client
from stackpulse.kernel.bus import parse_broker_url
from stackpulse.kernel.clock import ScaledClock
from stackpulse.kernel.layout import Layout
from stackpulse.kernel.runner import ServiceRunner, _decode
from stackpulse.kernel.statedb import StateDB
from stackpulse.kernel.store.base import Point, Row
from stackpulse.kernel.store.influxql import Query
from stackpulse.kernel.topics import Kind, event_batch_topic, state_topic
from stackpulse.services.occupancy.logic import GateCounter, SeatTiming, ZoneCounts
from stackpulse.services.occupancy.service import OccupancyService
from stackpulse.services.occupancy.settings import OccupancySettings
from stackpulse.services.occupancy.site import SiteOccupancy
from stackpulse.services.occupancy.view import OccupancyView
from tests.support.events import data_event
from tests.support.procs import MosquittoProc
from tests.support.waiting import wait_until

ZONES = [
    {"id": "lobby", "name": "Lobby", "floor": 1, "capacity": 200},
    {"id": "reading", "name": "Reading", "floor": 2, "capacity": 100},
]
GATES = [
    {"device": "gate-front", "outer": "outside", "inner": "lobby"},
    {"device": "gate-side", "outer": "outside", "inner": "lobby"},
    {"device": "door-reading", "outer": "lobby", "inner": "reading"},
]
ALWAYS = Layout.model_validate({"site": "main", "name": "Test", "zones": ZONES, "gates": GATES})
# Open 08:00-22:00 UTC on weekdays: each weekday's closing resets the counts.
WEEKDAYS = Layout.model_validate(
    {
        "site": "main",
        "name": "Test",
        "timezone": "UTC",
        "hours": {"mon-fri": "08:00-22:00"},
        "zones": ZONES,
        "gates": GATES,
    }
)
TUESDAY = datetime(2026, 11, 24, tzinfo=UTC)

Msg = tuple[str, int, int, int, int]  # (gate, boot, seq, in, out)
Item = Msg | None  # None: a closing reset


def at(day: int, hh: int, mm: int = 0) -> datetime:
    return TUESDAY + timedelta(days=day, hours=hh, minutes=mm)


def walk(rnd: random.Random, people: int, reboot_p: float, resets: int) -> list[Item]:
    """People walking through the three gates; gates report now and then, sometimes reboot.

    A reboot starts the gate's counters (and seq) from zero under a new boot; crossings
    it had not reported yet are lost, as on a real device. Then the delivery is made
    noisy: duplicates, and reordering within a window.
    """
    where = ["outside"] * people
    totals = {g["device"]: [0, 0] for g in GATES}
    boots = dict.fromkeys(totals, 1)
    seqs = dict.fromkeys(totals, 0)
    sent: list[Msg] = []
    for _ in range(people * 8):
        p = rnd.randrange(people)
        if where[p] == "outside":
            gate, direction, to = rnd.choice(["gate-front", "gate-side"]), 0, "lobby"
        elif where[p] == "lobby":
            gate, direction, to = rnd.choice(
                [
                    ("gate-front", 1, "outside"),
                    ("gate-side", 1, "outside"),
                    ("door-reading", 0, "reading"),
                ]
            )
        else:
            gate, direction, to = "door-reading", 1, "lobby"
        totals[gate][direction] += 1
        where[p] = to
        if rnd.random() < reboot_p:
            boots[gate] += 1
            seqs[gate] = 0
            totals[gate] = [0, 0]
        if rnd.random() < 0.4:
            sent.append((gate, boots[gate], seqs[gate], *totals[gate]))
            seqs[gate] += 1
    for gate in totals:
        sent.append((gate, boots[gate], seqs[gate], *totals[gate]))
    noisy: list[Item] = []
    for m in sent:
        noisy.append(m)
        if rnd.random() < 0.2:
            noisy.insert(rnd.randrange(max(0, len(noisy) - 6), len(noisy) + 1), m)  # duplicate
    for i in range(0, len(noisy), 5):  # reordering within windows
        window = noisy[i : i + 7]
        rnd.shuffle(window)
        noisy[i : i + 7] = window
    for _ in range(resets):
        noisy.insert(rnd.randrange(len(noisy) + 1), None)
    return noisy


def feed(site: SiteOccupancy, items: Sequence[Item]) -> None:
    for item in items:
        if item is None:
            site.zones.reset_net()
        else:
            site.zones.apply_gate(*item)


def round_trip(data: dict[str, Any]) -> Any:
    return json.loads(json.dumps(data))


def fresh(layout: Layout = ALWAYS) -> SiteOccupancy:
    return SiteOccupancy(layout, SeatTiming(), "lib/v1")


# -- pure: checkpoint, JSON, restore ----------------------------------------------------


@settings(max_examples=80, deadline=None)
@given(
    st.randoms(use_true_random=False),
    st.integers(1, 25),
    st.sampled_from([0.0, 0.05, 0.2]),
    st.integers(0, 2),
    st.floats(0.0, 1.0),
)
def test_a_restart_at_any_point_counts_exactly_as_if_there_had_been_none(
    rnd: random.Random, people: int, reboot_p: float, resets: int, split: float
) -> None:
    items = walk(rnd, people, reboot_p, resets)
    k = int(split * len(items))
    whole = fresh()
    feed(whole, items)

    before = fresh()
    feed(before, items[:k])
    data = round_trip(before.checkpoint(at(0, 12)))
    after = fresh()
    assert after.restore(data)
    feed(after, items[k:])
    assert after.zones.net == whole.zones.net
    assert after.zones.gates == whole.zones.gates
    assert after.zones.counts == whole.zones.counts


def test_without_the_checkpoint_a_restart_counts_a_closed_day_again() -> None:
    """The bug this fixes: totals since boot span a closing reset, so they are not new."""
    site = fresh(WEEKDAYS)
    site.tick(at(0, 21))
    site.zones.apply_gate("gate-front", 1, 0, 50, 40)  # 10 exits missed on Tuesday
    site.tick(at(1, 7))  # Tuesday's closing: everyone has left
    assert site.zones.net == {"lobby": 0, "reading": 0}
    site.zones.apply_gate("gate-front", 1, 1, 60, 43)  # Wednesday: 10 in, 3 out
    data = round_trip(site.checkpoint(at(1, 9)))
    later = ("gate-front", 1, 2, 62, 43)

    forgetful = fresh(WEEKDAYS)
    forgetful.zones.apply_gate(*later)
    assert forgetful.zones.count("lobby") == 19  # Tuesday's 10 missed exits again

    restored = fresh(WEEKDAYS)
    assert restored.restore(data)
    restored.zones.apply_gate(*later)
    assert restored.zones.count("lobby") == 9


def test_a_closing_that_passed_while_down_still_resets() -> None:
    site = fresh(WEEKDAYS)
    site.tick(at(0, 20))
    site.zones.apply_gate("gate-front", 1, 0, 30, 20)
    data = round_trip(site.checkpoint(at(0, 21)))
    assert datetime.fromisoformat(data["next_close"]) == at(0, 22)

    back = fresh(WEEKDAYS)
    assert back.restore(data)
    assert back.zones.net["lobby"] == 10
    back.tick(at(1, 7, 30))  # back the next morning: Tuesday's closing is due
    assert back.zones.net["lobby"] == 0
    assert back.drift == [(at(0, 22), {"lobby": 10, "reading": 0})]
    back.zones.apply_gate("gate-front", 1, 1, 33, 20)
    assert back.zones.count("lobby") == 3


def test_a_checkpoint_of_an_older_layout_is_taken_up_as_far_as_it_fits() -> None:
    older = Layout.model_validate(
        {
            "site": "main",
            "name": "Test",
            "zones": [*ZONES, {"id": "annex", "name": "Annex", "floor": 1, "capacity": 9}],
            "gates": [
                {"device": "gate-front", "outer": "outside", "inner": "lobby"},
                {"device": "gate-annex", "outer": "lobby", "inner": "annex"},
            ],
        }
    )
    site = fresh(older)
    site.zones.apply_gate("gate-front", 1, 0, 12, 2)
    site.zones.apply_gate("gate-annex", 3, 7, 4, 1)
    now = fresh()
    assert now.restore(round_trip(site.checkpoint(at(0, 12))))
    assert now.zones.net == {"lobby": 7, "reading": 0}  # annex dropped, reading new
    assert set(now.zones.gates) == {"gate-front"}
    assert now.zones.apply_gate("gate-side", 1, 0, 2, 0) == {"lobby"}  # new: from zero
    assert now.zones.count("lobby") == 9


GOOD = round_trip(fresh().checkpoint(at(0, 12)))


def changed(path: Sequence[str], value: Any) -> Any:
    data = json.loads(json.dumps(GOOD))
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return data


def gate(**fields: Any) -> dict[str, Any]:
    return {"boot": 1, "seq": 3, "in": 5, "out": 2, "boots": [[1, 5, 2]], **fields}


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"[1, 2]", "not a JSON object"),
        (json.dumps(changed(["version"], 99)).encode(), "version 99"),
        (json.dumps(changed(["site"], "law")).encode(), "of site 'law'"),
        (json.dumps(changed(["next_close"], "yesterday")).encode(), "RFC 3339"),
        (json.dumps(changed(["seats"], [1])).encode(), "'seats' must be an object"),
        (json.dumps(changed(["net"], [1])).encode(), "must be objects"),
        (json.dumps(changed(["net", "lobby"], "7")).encode(), "must be an integer"),
        (json.dumps(changed(["gates"], {"gate-front": 7})).encode(), "not an object"),
        (json.dumps(changed(["gates"], {"gate-front": gate(seq=True)})).encode(), "'seq'"),
        (
            json.dumps(changed(["gates"], {"gate-front": gate(boots=[[1, -5, 2]])})).encode(),
            "[boot, in, out]",
        ),
        (
            json.dumps(
                changed(["gates"], {"gate-front": gate(boots=[[1, 5, 2], [1, 6, 2]])})
            ).encode(),
            "twice",
        ),
        (json.dumps(changed(["gates"], {"gate-front": gate(**{"in": 9})})).encode(), "differ"),
    ],
)
def test_garbage_is_refused_with_a_reason_and_changes_nothing(
    payload: bytes, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    site = fresh()
    site.zones.apply_gate("gate-front", 1, 0, 4, 1)
    state = (dict(site.zones.net), dict(site.zones.gates))
    with caplog.at_level(logging.WARNING, "stackpulse.occupancy"):
        assert not site.restore(json.loads(payload))
    assert (site.zones.net, site.zones.gates) == state
    (record,) = caplog.records
    assert "ignoring the occupancy checkpoint of main" in record.getMessage()
    assert reason in record.getMessage()


def test_a_counter_keeps_its_boots_through_json() -> None:
    c = GateCounter()
    for boot in range(1, 12):  # more boots than a counter remembers
        c.update(boot, 0, boot, 0)
    c.update(5, 3, 1, 0)  # an old boot, refused, and the newest boot stays current
    back = GateCounter.from_checkpoint(round_trip(c.checkpoint()))
    assert back == c and len(back.boots) == GateCounter.MAX_BOOTS
    z = ZoneCounts(ALWAYS)
    assert z.restore(round_trip(z.checkpoint())) == []


def test_the_read_model_skips_checkpoints_quietly(caplog: pytest.LogCaptureFixture) -> None:
    view = OccupancyView("lib/v1")
    site = fresh()
    site.zones.apply_gate("gate-front", 1, 0, 4, 1)
    # Where releases before the runner kept it (retained): the view must stay quiet.
    topic = "lib/v1/main/_state/occupancy/checkpoint/main"
    with caplog.at_level(logging.DEBUG):
        for _ in range(100):
            assert view.apply(topic, json.dumps(site.checkpoint(at(0, 12))).encode()) is None
        assert view.apply(topic, b"") is None
    assert caplog.records == []
    assert view.sites() == []


# -- live: a real broker, a service stopped and started again ---------------------------


class NullStore:
    """The service writes snapshots and reads history; neither matters here."""

    async def write(self, points: Sequence[Point]) -> None:
        return None

    async def query(self, q: Query) -> list[Row]:
        return []

    async def raw_query(self, influxql: str) -> list[dict[str, Any]]:
        return []

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None


class Bus:
    """A test client on the broker: sends gate events as the gateway does, keeps state."""

    def __init__(self, mqtt: aiomqtt.Client, root: str, clock: ScaledClock, db: StateDB) -> None:
        self.mqtt, self.root, self.clock, self.db = mqtt, root, clock, db
        self.state: dict[str, Any] = {}  # topic -> the newest retained state, parsed

    async def gates(self, *messages: Msg) -> None:
        now = self.clock.now()
        events = [
            data_event(
                Kind.GATE,
                device,
                {"ts": now.isoformat(), "boot": boot, "seq": seq, "in": n_in, "out": n_out},
                now,
            )
            for device, boot, seq, n_in, n_out in messages
        ]
        body = "[" + ",".join(ev.model_dump_json() for ev in events) + "]"
        topic = event_batch_topic(self.root, "main", Kind.GATE)
        await self.mqtt.publish(topic, body.encode(), qos=1, timeout=10)

    async def watch(self) -> None:
        await self.mqtt.subscribe(state_topic(self.root, "main", "occupancy", "+", "+"), qos=1)
        async for message in self.mqtt.messages:
            if isinstance(message.payload, bytes) and message.payload:
                self.state[message.topic.value] = json.loads(message.payload)

    def zone(self, zone: str) -> Any:
        return self.state.get(state_topic(self.root, "main", "occupancy", "zone", zone), {})

    def checkpoint(self) -> Any:
        body = self.db.load_checkpoint(f"occupancy/{self.root}/main")
        return None if body is None else _decode(body)["state"]


@pytest.fixture
async def bus(mosquitto: MosquittoProc, mqtt_root: str, tmp_path: Path) -> AsyncIterator[Bus]:
    clock = ScaledClock(at(0, 21))
    clock.pause()
    db = StateDB.open(f"sqlite:///{tmp_path / 'state.db'}")
    async with mqtt_client(parse_broker_url(mosquitto.url)) as mqtt:
        b = Bus(mqtt, mqtt_root, clock, db)
        watcher = asyncio.create_task(b.watch(), name="test-watch")
        try:
            yield b
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            db.close()


async def start(
    bus: Bus, url: str, checkpoint_every: float = 0.1
) -> tuple[OccupancyService, asyncio.Task[None]]:
    cfg = OccupancySettings(
        client_id=f"occupancy-{uuid.uuid4().hex[:8]}",
        tick=timedelta(seconds=0.05),
        checkpoint_every=timedelta(seconds=checkpoint_every),
        catchup_settle=timedelta(seconds=0.1),
        privacy_floor=0,
    )
    service = OccupancyService([WEEKDAYS], NullStore(), bus.clock, cfg, bus.root)
    runner = ServiceRunner(
        service,
        broker=parse_broker_url(url),
        root=bus.root,
        clock=bus.clock,
        settings=cfg,
        store=NullStore(),
        checkpoints=bus.db,
    )
    task = asyncio.create_task(runner.run(), name="test-occupancy")
    await wait_until(lambda: runner.readiness.ready)
    return service, task


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


@pytest.mark.timeout(60)
async def test_a_restarted_service_counts_on_from_its_checkpoint(
    bus: Bus, mosquitto: MosquittoProc
) -> None:
    a, task = await start(bus, mosquitto.url)
    try:
        net = a.by_site["main"].zones.net
        # Tuesday evening: 10 left the lobby uncounted, 2 are upstairs.
        await bus.gates(("gate-front", 1, 0, 50, 40), ("door-reading", 1, 0, 20, 18))
        await wait_until(lambda: net == {"lobby": 8, "reading": 2})
        bus.clock.advance(10 * 3600)  # Wednesday 07:00: the closing has reset the counts
        await wait_until(lambda: net == {"lobby": 0, "reading": 0})
        bus.clock.advance(2 * 3600)
        # Wednesday morning: 10 came in, 4 of them went upstairs.
        await bus.gates(("gate-front", 1, 1, 60, 40), ("door-reading", 1, 1, 24, 18))
        await wait_until(lambda: net == {"lobby": 6, "reading": 4})
        await wait_until(lambda: (bus.checkpoint() or {}).get("net") == net)  # periodic
    finally:
        await stop(task)
    assert datetime.fromisoformat(bus.checkpoint()["next_close"]) == at(1, 22)

    b, task = await start(bus, mosquitto.url)
    try:
        site = b.by_site["main"]
        assert site.zones.net == {"lobby": 6, "reading": 4}  # before any event
        assert site.zones.gates == a.by_site["main"].zones.gates
        # The gates report their totals since boot: 2 more came in, 1 left, 1 went up.
        await bus.gates(("gate-front", 1, 2, 62, 41), ("door-reading", 1, 2, 25, 18))
        await wait_until(lambda: site.zones.net == {"lobby": 6, "reading": 5})
        await wait_until(lambda: bus.zone("reading").get("occupancy") == 5)
        await wait_until(lambda: bus.zone("lobby").get("occupancy") == 6)
        # What a service without the checkpoint would show: yesterday's drift again.
        forgetful = ZoneCounts(WEEKDAYS)
        forgetful.apply_gate("gate-front", 1, 2, 62, 41)
        forgetful.apply_gate("door-reading", 1, 2, 25, 18)
        assert forgetful.counts == {"lobby": 14, "reading": 7}
    finally:
        await stop(task)


@pytest.mark.timeout(60)
async def test_the_last_checkpoint_is_saved_on_stop_and_garbage_is_survived(
    bus: Bus, mosquitto: MosquittoProc, caplog: pytest.LogCaptureFixture
) -> None:
    a, task = await start(bus, mosquitto.url, checkpoint_every=3600.0)  # no periodic one
    try:
        await bus.gates(("gate-front", 1, 0, 5, 0))
        await wait_until(lambda: a.by_site["main"].zones.net["lobby"] == 5)
        assert bus.checkpoint() is None
    finally:
        await stop(task)
    assert (bus.checkpoint() or {}).get("net", {}).get("lobby") == 5

    for garbage, why in (
        (b"{not json", "ignoring the checkpoint occupancy/"),
        (
            b'{"version": 2, "site": "main", "state": {"version": 1, "site": "main", "net": 1}}',
            "ignoring the occupancy checkpoint of main",
        ),
    ):
        bus.db.save_checkpoint(f"occupancy/{bus.root}/main", garbage)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            b, task = await start(bus, mosquitto.url)
            try:
                assert b.by_site["main"].zones.net == {"lobby": 0, "reading": 0}
                await bus.gates(("gate-front", 1, 1, 7, 0))
                await wait_until(lambda b=b: b.by_site["main"].zones.net["lobby"] == 7)  # type: ignore[misc]
            finally:
                await stop(task)
        assert any(why in r.getMessage() for r in caplog.records), caplog.records
