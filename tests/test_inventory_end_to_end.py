"""Simulated shelves -> Mosquitto -> gateway -> inventory service -> API, against the truth.

A small simulated library (two readers of three sections, 60 books, RFID reads that miss
and cross) publishes to a real Mosquitto; the real gateway, inventory service and API run
as `stackpulse run gateway,inventory,api` runs them, over InfluxDB and a state database
holding real users. A book the test puts on the wrong shelf must be listed misplaced with
the right sections, books the simulator takes away must be listed missing, and the
demand ranking of the simulated circulation must reach a manager (and not staff).
"""

from __future__ import annotations

import asyncio
import csv
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from stackpulse.broker import free_port
from stackpulse.kernel.auth import hash_password
from stackpulse.kernel.bus import parse_broker_url
from stackpulse.kernel.clock import ScaledClock
from stackpulse.kernel.layout import load_layout
from stackpulse.kernel.settings import Settings
from stackpulse.kernel.statedb import StateDB
from stackpulse.kernel.store.factory import open_store
from stackpulse.runtime import prepare, run_components
from stackpulse.services.inventory.settings import InventoryServiceSettings
from stackpulse.simulators import Faults, SimConfig
from stackpulse.simulators.run import Simulation, load_catalog
from stackpulse.simulators.stacks import LOAN, REMOVED
from tests.support.procs import MosquittoProc
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

SPEED = 900.0  # one 15-minute sweep of every reader per second
SWEEP = timedelta(minutes=15)
START = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)  # 10:00 in Asia/Shanghai: open, busy
PASSWORD = "correct horse battery"
# Books the test puts on the wrong shelf (another reader's): item -> (wrong, home section).
MOVES = {
    "31234000000001": ("S2-03", "S1-01"),
    "31234000000041": ("S1-02", "S1-03"),
    "31234000000085": ("S1-01", "S2-02"),
}

LAYOUT: dict[str, Any] = {
    "site": "main",
    "name": "Small Library",
    "timezone": "Asia/Shanghai",
    "hours": {"mon-fri": "07:30-22:30", "sat-sun": "09:00-21:00"},
    "zones": [
        {"id": "lobby", "name": "Lobby", "floor": 1, "capacity": 80},
        {"id": "stacks", "name": "Stacks", "floor": 1, "capacity": 60},
    ],
    "gates": [
        {"device": "gate-door", "outer": "outside", "inner": "lobby"},
        {"device": "gate-stacks", "outer": "lobby", "inner": "stacks"},
    ],
    "seats": [{"id": f"st-{n}", "device": f"seat-{n}", "zone": "stacks"} for n in range(4)],
    "shelves": [
        {
            "device": f"shelf-ctrl-{k}",
            "zone": "stacks",
            "sections": [
                {
                    "id": f"S{k}-{j:02d}",
                    "first": f"QA{100 + 3 * k + j}",
                    "last": f"QA{100 + 3 * k + j}",
                }
                for j in range(1, 4)
            ],
        }
        for k in (1, 2)
    ],
    "circulation": [{"device": "circ-desk-1", "zone": "lobby"}],
    "catalog": "catalog.csv",
}


def write_library(folder: Path) -> Path:
    """The layout and a catalog of 20 books per section (two copies of each title)."""
    rows: list[list[str]] = []
    for k in (1, 2):
        for j in range(1, 4):
            number = 100 + 3 * k + j
            for i in range(20):
                n = len(rows)
                title = f"Studies in QA{number}, part {i // 2}"
                call_number = f"QA{number} .B{10 + i // 2} 2001 c.{i % 2 + 1}"
                rows.append([f"3123400000{n:04d}", call_number, title, "main"])
    assert [rows[int(i[-4:])][1][:5] for i in MOVES] == ["QA104", "QA106", "QA108"]
    with (folder / "catalog.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["item", "call_number", "title", "collection"])
        writer.writerows(rows)
    path = folder / "layout.yaml"
    path.write_text(yaml.safe_dump(LAYOUT))
    return path


def add_users(db_url: str) -> None:
    db = StateDB.open(db_url)
    try:
        db.add_user("ana", hash_password(PASSWORD), "staff", ["main"])
        db.add_user("max", hash_password(PASSWORD), "manager", [])
    finally:
        db.close()


async def settle(read: Callable[[], int], quiet: float, limit: float) -> None:
    """Wait until a counter stops moving for `quiet` seconds (bounded by `limit`)."""
    loop = asyncio.get_running_loop()
    last, since = read(), loop.time()
    async with asyncio.timeout(limit):
        while loop.time() - since < quiet:
            await asyncio.sleep(0.1)
            if (now := read()) != last:
                last, since = now, loop.time()


async def login(http: httpx.AsyncClient, username: str) -> dict[str, str]:
    answer = await http.post(
        "/api/v1/auth/token", data={"username": username, "password": PASSWORD}
    )
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


async def test_misplaced_missing_and_demand_reach_the_api_through_the_real_parts(
    mosquitto: MosquittoProc, influx_db: str, mqtt_root: str, tmp_path: Path
) -> None:
    layout_path = write_library(tmp_path)
    db_url = f"sqlite:///{tmp_path / 'state.db'}"
    add_users(db_url)
    port = free_port()
    settings = Settings(
        layout=str(layout_path),
        broker=mosquitto.url,
        store=influx_db,
        db=db_url,
        http=f"127.0.0.1:{port}",
        root=mqtt_root,
    )
    components = ("gateway", "inventory", "api")
    rt = prepare(settings, components)
    device_clock, rt.clock = ScaledClock(START, SPEED), ScaledClock(START, SPEED)
    server_clock = rt.clock
    assert isinstance(server_clock, ScaledClock)
    rt.components[InventoryServiceSettings] = InventoryServiceSettings(
        client_id=f"inventory-{uuid.uuid4().hex[:8]}", tick=timedelta(seconds=0.2)
    )
    system = asyncio.create_task(run_components(rt, components))
    layout = load_layout(layout_path)
    faults = Faults(
        missed_read_p=0.03, cross_read_p=0.02, misplace_p=0.0, removals_per_item_day=1.0
    )
    sim = Simulation(
        layout,
        parse_broker_url(mosquitto.url),
        root=mqtt_root,
        clock=device_clock,
        seed=5,
        catalog=load_catalog(tmp_path / "catalog.csv", layout),
        config=SimConfig(
            faults=faults,
            initial_loan_p=0.0,
            checkouts_per_person_hour=0.1,
            holds_per_person_hour=0.1,
        ),
        client_prefix=f"sim-{mqtt_root}",
    )
    stop = asyncio.Event()
    running: asyncio.Task[Any] | None = None
    try:
        await asyncio.wait_for(rt.started.wait(), timeout=30)
        await asyncio.wait_for(rt.services["gateway"].connected.wait(), timeout=15)
        await wait_until(lambda: rt.health.ready, 30)
        running = asyncio.create_task(sim.run(stop=stop))
        await asyncio.wait_for(sim.ready.wait(), timeout=30)
        for item, (wrong, _) in MOVES.items():
            sim.model.misplace(item, wrong)
        changed: dict[str, datetime] = {}  # item -> when its true place last changed
        lent: set[str] = set()  # items that were on loan at some point
        places = dict(sim.model.truth().items)
        for _ in range(16 * 10):  # four simulated hours, watching the truth every 0.1 s
            await asyncio.sleep(0.1)
            now = device_clock.now()
            for item, where in sim.model.truth().items.items():
                if places.get(item) != where:
                    places[item], changed[item] = where, now
                    if where == LOAN:
                        lent.add(item)
        # Freeze both clocks: nothing more is published; let the pipeline drain.
        device_clock.pause()
        server_clock.pause()
        assert sim.publisher is not None
        stats, inventory = sim.publisher.stats, rt.services["inventory"].metrics
        await settle(lambda: sum(stats.published.values()), quiet=1.0, limit=20)
        await settle(lambda: inventory.applied, quiet=1.0, limit=20)
        await asyncio.sleep(1.0)  # a tick publishes the lists; the API's view takes them
        truth = sim.model.truth()
        # A moved book may since have been checked out; those still away must be listed.
        still = {i: w for i, (w, _) in MOVES.items() if truth.items[i] == w}
        assert still, truth.items
        # Findings take sweeps to open and close: leave out what changed in the last 4.
        settled = {i for i in places if device_clock.now() - changed.get(i, START) > 4 * SWEEP}
        removed = {i for i, w in truth.items.items() if w == REMOVED}
        # A book checked in is off the shelves, not missing, until a shelf hears it: one
        # reshelved and then taken before any sweep is awaited at the desk, not missed.
        gone_long = (removed & settled) - lent
        assert gone_long, "the simulator should have taken some books away by now"

        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            staff, manager = await login(http, "ana"), await login(http, "max")
            url = "/api/v1/sites/main"
            misplaced = (await http.get(f"{url}/items/misplaced", headers=staff)).json()
            missing = (await http.get(f"{url}/items/missing", headers=staff)).json()
            denied = await http.get(f"{url}/demand", headers=staff)
            ranked = await http.get(f"{url}/demand?limit=5", headers=manager)
            classes = await http.get(f"{url}/demand/classes", headers=manager)

        shown = {m["item"]: m for m in misplaced}
        for item, wrong in still.items():
            assert item in shown, (item, misplaced)
            assert shown[item]["seen_section"] == wrong
            assert shown[item]["expected_sections"] == [MOVES[item][1]]
        assert set(shown) & settled <= set(truth.misplaced)  # nothing listed that is not so
        listed_missing = {m["item"] for m in missing}
        assert gone_long <= listed_missing, (gone_long, listed_missing)
        assert listed_missing & settled <= removed
        assert denied.status_code == 403
        assert ranked.status_code == 200 and classes.status_code == 200
        rows = ranked.json()
        assert 1 <= len(rows) <= 5, rows
        assert set(rows[0]) >= {"title", "call_number", "call_class", "copies", "score"}
        assert set(rows[0]) >= {"signals", "suggest_purchase", "reason"}
        assert rows[0]["copies"] == 2 and rows[0]["title"].startswith("Studies in QA")
        assert [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)
        assert {c["call_class"] for c in classes.json()} <= {f"QA{n}" for n in range(104, 110)}

        # The demand points are in InfluxDB, as the Demand dashboard reads them.
        store = open_store(influx_db)
        try:
            signals = await store.raw_query('SELECT count("count") FROM "demand_signal"')
            ranks = await store.raw_query('SELECT count("copies") FROM "demand_rank"')
        finally:
            await store.close()
        assert signals and int(signals[0]["count"]) >= sum(sum(r["signals"].values()) for r in rows)
        assert ranks and int(ranks[0]["count"]) >= 20
    finally:
        device_clock.resume()
        stop.set()
        if running is not None:
            await asyncio.wait_for(running, timeout=30)
        system.cancel()
        await asyncio.gather(system, return_exceptions=True)
