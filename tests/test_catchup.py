"""No accepted message is missed by a service, whatever the start order (issue: "One package").

Against real Mosquitto and InfluxDB: a library that is not the sample (other ids, a site in
another time zone), devices publishing on the broker the way hardware does, the gateway,
occupancy and inventory services of `stackpulse.runtime`. In every case the services' state
must equal that of an uninterrupted run over what the gateway accepted, which is what the
store holds: the reference is the pure per-site logic fed every stored event in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import pytest
import yaml

from stackpulse.kernel.bus import client as mqtt_client
from stackpulse.kernel.bus import parse_broker_url
from stackpulse.kernel.catalog import load_catalog
from stackpulse.kernel.catchup import stored_events
from stackpulse.kernel.clock import ScaledClock
from stackpulse.kernel.layout import Layout, load_layout
from stackpulse.kernel.settings import Settings
from stackpulse.kernel.store import open_store
from stackpulse.kernel.topics import Kind, device_topic
from stackpulse.runtime import Runtime, prepare, run_components
from stackpulse.services.inventory.model import InventorySettings
from stackpulse.services.inventory.settings import InventoryServiceSettings
from stackpulse.services.inventory.site import SiteInventory
from stackpulse.services.occupancy.settings import OccupancySettings
from stackpulse.services.occupancy.site import SiteOccupancy
from tests.support.procs import MosquittoProc, free_port
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

SITE = "riverside"
LAYOUT_DOC: dict[str, Any] = {
    "site": SITE,
    "name": "Riverside Branch",
    "timezone": "America/Chicago",
    "hours": {"mon-sun": "06:00-23:00"},
    "zones": [
        {"id": "hall", "name": "Hall", "floor": 0, "capacity": 80},
        {"id": "study", "name": "Study Room", "floor": 1, "capacity": 40},
    ],
    "gates": [
        {"device": "gt-east", "outer": "outside", "inner": "hall"},
        {"device": "gt-west", "outer": "outside", "inner": "hall"},
        {"device": "gt-stairs", "outer": "hall", "inner": "study"},
    ],
    "seats": [
        {"id": f"st-{n}", "device": f"occ-{n}", "zone": "study", "features": []}
        for n in range(1, 7)
    ],
    "shelves": [
        {
            "device": "rfid-1",
            "zone": "hall",
            "sections": [
                {"id": "H-01", "first": "A", "last": "AZ"},
                {"id": "H-02", "first": "B", "last": "BZ"},
            ],
        }
    ],
    "catalog": "catalog.csv",
}
CATALOG = """item,call_number,title,collection
R-2001,A10 .B2 2001,Rivers of the plains,main
R-2002,B20 .C3 1999,Bridges,main
R-2003,B40 .D5 2010,Boats,main
"""
# Noon in Chicago on a Tuesday, speeded up: a wall second is a simulated minute.
START = datetime(2026, 11, 24, 18, tzinfo=UTC)
SPEED = 60.0


def write_site(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "catalog.csv").write_text(CATALOG)
    path = folder / "layout.yaml"
    path.write_text(yaml.safe_dump(LAYOUT_DOC))
    return path


@dataclass
class Devices:
    """The library's hardware: gates count, seats sense, the reader sweeps."""

    mqtt: aiomqtt.Client
    root: str
    clock: ScaledClock
    seq: dict[str, int] = field(default_factory=dict)
    totals: dict[str, list[int]] = field(default_factory=dict)
    sweeps: int = 0
    sent: int = 0

    async def _send(self, kind: Kind, device: str, body: dict[str, Any]) -> None:
        n = self.seq[device] = self.seq.get(device, -1) + 1
        now = self.clock.now()
        body = {"ts": now.isoformat().replace("+00:00", "Z"), "boot": 1, "seq": n, **body}
        topic = device_topic(self.root, SITE, kind, device, "data")
        await self.mqtt.publish(topic, json.dumps(body).encode(), qos=1, timeout=10)
        self.sent += 1

    async def gate(self, device: str, entered: int, left: int) -> None:
        t = self.totals.setdefault(device, [0, 0])
        t[0] += entered
        t[1] += left
        await self._send(Kind.GATE, device, {"in": t[0], "out": t[1]})

    async def seat(self, n: int, presence: str) -> None:
        await self._send(Kind.SEAT, f"occ-{n}", {"presence": presence, "battery": 0.9})

    async def sweep(self, h01: list[str], h02: list[str]) -> None:
        self.sweeps += 1
        for section, items in (("H-01", h01), ("H-02", h02)):
            reads = [{"id": i, "rssi": -50.0 - k} for k, i in enumerate(items)]
            body = {"sweep": self.sweeps, "section": section, "items": reads}
            await self._send(Kind.SHELF, "rfid-1", body)

    async def busy_hour(self, rounds: int, *, pause: float = 0.05) -> None:
        """People come in, go upstairs, sit down; a book gets put back on the wrong shelf."""
        for r in range(rounds):
            await self.gate("gt-east", 3, 1)
            await self.gate("gt-west", 2, 1 if r % 2 else 0)
            await self.gate("gt-stairs", 2, 1)
            await self.seat(r % 6 + 1, "person" if r % 3 else "object")
            if r % 4 == 3:
                await self.seat((r + 2) % 6 + 1, "empty")
            if r % 3 == 0:
                home = r < rounds // 2
                await self.sweep(
                    ["R-2001"] if home else [],
                    ["R-2002", "R-2003"] if home else ["R-2002", "R-2003", "R-2001"],
                )
            await asyncio.sleep(pause)


@pytest.fixture
async def site_files(tmp_path: Path) -> Path:
    return write_site(tmp_path / "site")


def settings_for(
    path: Path, broker: str, store: str, root: str, tmp: Path, **more: str
) -> Settings:
    return Settings(
        layout=str(path),
        broker=broker,
        store=store,
        db=f"sqlite:///{tmp / 'state.db'}",
        root=root,
        http=f"127.0.0.1:{free_port()}",
        **more,
    )


@contextlib.asynccontextmanager
async def running(rt: Runtime, components: tuple[str, ...]) -> AsyncIterator[Runtime]:
    task = asyncio.create_task(run_components(rt, components), name=f"run {components}")
    try:
        await asyncio.wait_for(rt.started.wait(), timeout=60)
        yield rt
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def runtime(settings: Settings, components: tuple[str, ...], clock: ScaledClock) -> Runtime:
    rt = prepare(settings, components)
    rt.clock = clock
    # Sessions of this test's own (the broker is shared); exact counts (no privacy floor).
    ids = client_ids(settings.root)
    rt.components[OccupancySettings] = OccupancySettings(privacy_floor=0, client_id=ids[0])
    rt.components[InventoryServiceSettings] = InventoryServiceSettings(client_id=ids[1])
    return rt


def client_ids(root: str) -> tuple[str, str]:
    tag = root.split("/")[1]
    return f"occupancy-{tag}", f"inventory-{tag}"


async def reference(
    store_url: str, layout: Layout, catalog_path: Path, until: datetime
) -> tuple[SiteOccupancy, SiteInventory]:
    """An uninterrupted run over every event the gateway accepted (the store's)."""
    occupancy = SiteOccupancy(layout, OccupancySettings().timing, "ref")
    inventory = SiteInventory(layout, load_catalog(catalog_path, layout), InventorySettings())
    store = open_store(store_url)
    try:
        kinds = [Kind.GATE, Kind.SEAT, Kind.SHELF, Kind.CIRC]
        async for batch in stored_events(store, SITE, kinds, START - timedelta(hours=1), until):
            for ev in batch:
                occupancy.tick(ev.ts)
                occupancy.apply(ev, ev.ts)
                if ev.kind in (Kind.SHELF, Kind.CIRC):
                    inventory.apply(ev)
    finally:
        await store.close()
    occupancy.tick(until)
    inventory.tick(until)
    return occupancy, inventory


def occupancy_of(rt: Runtime) -> SiteOccupancy:
    return rt.services["occupancy"].service.by_site[SITE]  # type: ignore[no-any-return]


def inventory_of(rt: Runtime) -> SiteInventory:
    return rt.services["inventory"].service.by_site[SITE]  # type: ignore[no-any-return]


def same_state(
    got_occ: SiteOccupancy, got_inv: SiteInventory | None, ref: tuple[SiteOccupancy, SiteInventory]
) -> None:
    want_occ, want_inv = ref
    assert got_occ.zones.counts == want_occ.zones.counts
    assert got_occ.zones.net == want_occ.zones.net
    got_seats = {d: m.state for d, m in got_occ.seats.items()}
    want_seats = {d: m.state for d, m in want_occ.seats.items()}
    assert got_seats == want_seats
    if got_inv is not None:
        assert {m.item for m in got_inv.inventory.misplaced()} == {
            m.item for m in want_inv.inventory.misplaced()
        }
        assert got_inv.inventory.located("R-2001") == want_inv.inventory.located("R-2001")


async def settle_and_freeze(clock: ScaledClock, store_url: str, sent: int) -> datetime:
    """Let the last messages reach the store (and the services), then stop time."""
    store = open_store(store_url)
    try:
        async with asyncio.timeout(30):
            while True:
                rows = await store.raw_query('SELECT count("seq") FROM "gate"')
                seats = await store.raw_query('SELECT count("seq") FROM "seat"')
                shelf = await store.raw_query('SELECT count("seq") FROM "shelf"')
                n = sum(int(r[0].get("count", 0)) if r else 0 for r in (rows, seats, shelf))
                if n >= sent:
                    break
                await asyncio.sleep(0.2)
    finally:
        await store.close()
    await asyncio.sleep(1.5)  # the events reach the services; ticks run
    clock.pause()
    await asyncio.sleep(1.0)  # the last tick at the frozen time
    return clock.now()


async def test_messages_published_the_instant_the_api_answers_all_reach_the_services(
    site_files: Path, mosquitto: MosquittoProc, influx_db: str, mqtt_root: str, tmp_path: Path
) -> None:
    clock = ScaledClock(START, SPEED)
    settings = settings_for(site_files, mosquitto.url, influx_db, mqtt_root, tmp_path)
    components = ("gateway", "occupancy", "inventory", "api")
    rt = runtime(settings, components, clock)
    host, port = settings.http_bind()
    task = asyncio.create_task(run_components(rt, components), name="run all")
    async with mqtt_client(parse_broker_url(mosquitto.url)) as mqtt:
        devices = Devices(mqtt, mqtt_root, clock)
        try:
            async with httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=2) as http:
                async with asyncio.timeout(60):
                    while True:  # the instant the API first answers
                        with contextlib.suppress(httpx.HTTPError):
                            if (await http.get("/healthz")).status_code == 200:
                                break
                        await asyncio.sleep(0.01)
                await devices.busy_hour(24, pause=0)  # at once, no pause
                await devices.busy_hour(12)
                await wait_until(lambda: rt.health.ready, 30)
                ready = (await http.get("/readyz")).json()
                assert ready["ready"] is True and set(ready["components"]) >= {
                    "gateway",
                    "occupancy",
                    "inventory",
                }
            until = await settle_and_freeze(clock, influx_db, devices.sent)
            ref = await reference(
                influx_db, load_layout(site_files), site_files.parent / "catalog.csv", until
            )
            assert sum(ref[0].zones.counts.values()) > 0
            assert ref[1].inventory.misplaced(), "the sweeps moved a book: the reference says so"
            same_state(occupancy_of(rt), inventory_of(rt), ref)
            metrics = (await httpx.AsyncClient().get(f"http://{host}:{port}/metrics")).text
            assert 'stackpulse_events_applied_total{component="occupancy"}' in metrics
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def test_services_started_minutes_after_the_gateway_catch_up_from_the_store(
    site_files: Path, mosquitto: MosquittoProc, influx_db: str, mqtt_root: str, tmp_path: Path
) -> None:
    clock = ScaledClock(START, SPEED)
    settings = settings_for(site_files, mosquitto.url, influx_db, mqtt_root, tmp_path)
    async with mqtt_client(parse_broker_url(mosquitto.url)) as mqtt:
        devices = Devices(mqtt, mqtt_root, clock)
        gateway = runtime(settings, ("gateway",), clock)
        async with running(gateway, ("gateway",)):
            await asyncio.wait_for(gateway.services["gateway"].connected.wait(), 15)
            await devices.busy_hour(30)  # ~3 simulated minutes with nobody but the gateway
            services = runtime(settings, ("occupancy", "inventory"), clock)
            async with running(services, ("occupancy", "inventory")):
                await wait_until(lambda: services.health.ready, 30)
                await devices.busy_hour(6)
                until = await settle_and_freeze(clock, influx_db, devices.sent)
                ref = await reference(
                    influx_db, load_layout(site_files), site_files.parent / "catalog.csv", until
                )
                runner = services.services["occupancy"]
                assert runner.metrics.caught_up > 0  # the first minutes came from the store
                same_state(occupancy_of(services), inventory_of(services), ref)


async def test_a_service_whose_session_expired_catches_up_from_its_checkpoint(
    site_files: Path, mosquitto: MosquittoProc, influx_db: str, mqtt_root: str, tmp_path: Path
) -> None:
    clock = ScaledClock(START, SPEED)
    settings = settings_for(site_files, mosquitto.url, influx_db, mqtt_root, tmp_path)
    broker = parse_broker_url(mosquitto.url)
    async with mqtt_client(broker) as mqtt:
        devices = Devices(mqtt, mqtt_root, clock)
        gateway = runtime(settings, ("gateway",), clock)
        async with running(gateway, ("gateway",)):
            await asyncio.wait_for(gateway.services["gateway"].connected.wait(), 15)
            first = runtime(settings, ("occupancy", "inventory"), clock)
            async with running(first, ("occupancy", "inventory")):
                await wait_until(lambda: first.health.ready, 30)
                await devices.busy_hour(18)
                await asyncio.sleep(1.0)
            # Stopped (its last checkpoint saved). The broker forgets its sessions, as when a
            # session expires: a clean connection with the same client ids removes them.
            for client_id in client_ids(mqtt_root):
                async with mqtt_client(broker, identifier=client_id, clean_session=True):
                    pass
            await devices.busy_hour(18)  # ~2 simulated minutes the broker keeps for nobody
            second = runtime(settings, ("occupancy", "inventory"), clock)
            async with running(second, ("occupancy", "inventory")):
                await wait_until(lambda: second.health.ready, 30)
                await devices.busy_hour(4)
                until = await settle_and_freeze(clock, influx_db, devices.sent)
                ref = await reference(
                    influx_db, load_layout(site_files), site_files.parent / "catalog.csv", until
                )
                assert second.services["occupancy"].metrics.caught_up > 0
                same_state(occupancy_of(second), inventory_of(second), ref)
