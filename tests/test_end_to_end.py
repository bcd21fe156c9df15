"""Simulator -> Mosquitto -> gateway -> InfluxDB -> occupancy -> API, against ground truth."""

from __future__ import annotations

import asyncio
import collections
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from stackpulse.broker import free_port
from stackpulse.kernel.bus import client, parse_broker_url
from stackpulse.kernel.clock import ScaledClock
from stackpulse.kernel.layout import Layout, load_layout
from stackpulse.kernel.settings import Settings
from stackpulse.kernel.store.factory import open_store
from stackpulse.runtime import prepare, run_components
from stackpulse.simulators.run import Simulation, load_catalog
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "main" / "layout.yaml"
SPEED = 240.0  # four simulated minutes per second


async def _settle(read: collections.abc.Callable[[], int], quiet: float, limit: float) -> int:
    """Wait until a counter stops moving for `quiet` seconds (bounded by `limit`)."""
    last, since = read(), asyncio.get_running_loop().time()
    async with asyncio.timeout(limit):
        while asyncio.get_running_loop().time() - since < quiet:
            await asyncio.sleep(0.1)
            if (now := read()) != last:
                last, since = now, asyncio.get_running_loop().time()
    return last


async def _watch_gates(url: str, root: str, sent: dict[str, tuple[int, int, int, int]]) -> None:
    async with client(parse_broker_url(url)) as mqtt:
        await mqtt.subscribe(f"{root}/+/gate/+/data", qos=1)
        async for m in mqtt.messages:
            body = json.loads(m.payload)  # type: ignore[arg-type]
            key = (body["boot"], body["seq"], body["in"], body["out"])
            gate = m.topic.value.split("/")[-2]
            sent[gate] = max(sent.get(gate, key), key)


def _zones_from_gates(layout: Layout, sent: dict[str, tuple[int, int, int, int]]) -> dict[str, int]:
    """People per zone from the gates' last totals (one boot each: no faults here)."""
    net = {z.id: 0 for z in layout.zones}
    for gate in layout.gates:
        _, _, n_in, n_out = sent.get(gate.device, (0, 0, 0, 0))
        for zone, sign in ((gate.inner, 1), (gate.outer, -1)):
            if zone in net:
                net[zone] += sign * (n_in - n_out)
    return {z.id: min(max(0, net[z.id]), 2 * z.capacity) for z in layout.zones}


async def test_the_api_tells_what_the_simulator_knows(
    mosquitto: object, influx_db: str, mqtt_root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Exact counts for every zone: no privacy floor here (it has tests of its own).
    monkeypatch.setenv("STACKPULSE_PRIVACY_FLOOR", "0")
    layout = load_layout(EXAMPLE)
    hours = layout.hours_for(datetime(2026, 11, 24).date())
    assert hours is not None
    start = hours[0].astimezone(UTC) + timedelta(hours=2)  # mid-morning: people about
    port = free_port()
    settings = Settings(
        layout=str(EXAMPLE),
        broker=mosquitto.url,  # type: ignore[attr-defined]
        store=influx_db,
        http=f"127.0.0.1:{port}",
        root=mqtt_root,
    )
    rt = prepare(settings)
    # Devices and servers keep their own clocks; both run at the same simulated pace.
    device_clock = ScaledClock(start, SPEED)
    rt.clock = server_clock = ScaledClock(start, SPEED)
    system = asyncio.create_task(run_components(rt, ("gateway", "occupancy", "api")))
    await asyncio.wait_for(rt.started.wait(), timeout=30)
    gateway, occupancy = rt.services["gateway"], rt.services["occupancy"]
    await asyncio.wait_for(gateway.connected.wait(), timeout=15)
    await wait_until(lambda: rt.health.ready, 15)

    sim = Simulation(
        layout,
        parse_broker_url(mosquitto.url),  # type: ignore[attr-defined]
        root=mqtt_root,
        clock=device_clock,
        seed=7,
        catalog=load_catalog(Path(layout.catalog or ""), layout),
        client_prefix=f"sim-{mqtt_root}",
    )
    stop = asyncio.Event()
    sent: dict[str, tuple[int, int, int, int]] = {}  # gate -> (boot, seq, in, out) last sent
    watcher = asyncio.create_task(_watch_gates(mosquitto.url, mqtt_root, sent))  # type: ignore[attr-defined]
    await asyncio.sleep(0.5)
    running = asyncio.create_task(sim.run(stop=stop))
    try:
        await asyncio.wait_for(sim.ready.wait(), timeout=30)
        await asyncio.sleep(12)  # ~48 simulated minutes of a busy morning
        dead_seat = layout.seats[0]
        sim.kill(dead_seat.device)  # its Last Will must make the seat unknown
        await asyncio.sleep(1)

        # Freeze both clocks: the simulator publishes nothing more; let the pipeline drain.
        device_clock.pause()
        server_clock.pause()
        assert sim.publisher is not None
        stats = sim.publisher.stats
        await _settle(lambda: sum(stats.published.values()), quiet=1.0, limit=30)
        await _settle(lambda: occupancy.metrics.applied, quiet=1.5, limit=30)
        truth = sim.model.truth()
        assert sum(truth.zones.values()) > 50, "the morning should have filled the library"

        # Let every seat's on-delay run out on the servers' side, then look.
        server_clock.advance(61)
        await asyncio.sleep(1.5)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            zones = (await http.get(f"/api/v1/sites/{layout.site}/zones")).json()
            seats = (await http.get(f"/api/v1/sites/{layout.site}/seats")).json()

        # Zone occupancy is exactly what the gates the simulator ran have reported (a gate
        # sends at most every few seconds, so the last few crossings may still be unsent).
        shown_zones = {z["id"]: z["occupancy"] for z in zones}
        assert shown_zones == _zones_from_gates(layout, sent)
        assert sum(abs(shown_zones[z] - n) for z, n in truth.zones.items()) <= 10
        # Each seat tells the truth: taken seats are occupied or held, and a seat shown
        # free is really empty; the sensor whose link was cut shows unknown, never free.
        shown = {s["id"]: s["state"] for s in seats}
        assert shown[dead_seat.id] == "unknown"
        for seat_id, presence in truth.seats.items():
            if seat_id == dead_seat.id:
                continue
            if presence == "person":
                assert shown[seat_id] == "occupied", seat_id
            elif presence == "object":
                assert shown[seat_id] == "held", seat_id
            else:
                # Free, or still within the 10-minute grace after its student left.
                assert shown[seat_id] in ("free", "occupied", "held"), seat_id
            if shown[seat_id] == "free":
                assert presence == "empty"
        for z in zones:
            in_zone = [s for s in seats if s["zone"] == z["id"]]
            assert z["seats_total"] == len(in_zone)
            assert z["seats_free"] == sum(s["state"] == "free" for s in in_zone)

        # Every message the broker acknowledged is in InfluxDB, once.
        await _settle(lambda: gateway.metrics.points_written, quiet=1.0, limit=30)
        store = open_store(influx_db)
        try:
            for kind in ("gate", "seat", "shelf"):
                rows = await store.raw_query(f'SELECT count("seq") FROM "{kind}"')
                assert rows and int(rows[0]["count"]) == stats.published[kind], kind
        finally:
            await store.close()
        assert gateway.metrics.dead_lettered == collections.Counter()
    finally:
        watcher.cancel()
        device_clock.resume()
        stop.set()
        await asyncio.wait_for(running, timeout=30)
        system.cancel()
        with pytest.raises(asyncio.CancelledError):
            await system
