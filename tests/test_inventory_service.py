"""The inventory service: events to findings, retained lists, changes, counts and checkpoints."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import uuid
import zlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import pytest
import yaml

from stackpulse.kernel.auth import Principal, Role, TokenIssuer, hash_password
from stackpulse.kernel.bus import client as mqtt_client
from stackpulse.kernel.bus import parse_broker_url
from stackpulse.kernel.catalog import load_catalog
from stackpulse.kernel.clock import ScaledClock
from stackpulse.kernel.contracts.events import Event
from stackpulse.kernel.layout import Layout, load_layout
from stackpulse.kernel.runner import ServiceRunner, _decode, _encode
from stackpulse.kernel.statedb import StateDB
from stackpulse.kernel.store.base import Point, Row
from stackpulse.kernel.store.influxql import Query
from stackpulse.kernel.topics import Kind, event_batch_topic, state_topic
from stackpulse.services.inventory.demand_feed import DEMAND_LISTS, RANK_SLOTS, demand_topic
from stackpulse.services.inventory.model import Change, Finding, InventorySettings, Misplaced
from stackpulse.services.inventory.service import InventoryService
from stackpulse.services.inventory.settings import InventoryServiceSettings
from stackpulse.services.inventory.site import (
    SiteInventory,
    change_body,
    list_topic,
)
from stackpulse.services.inventory.view import InventoryView, run_view
from stackpulse.services.occupancy.view import OccupancyView
from stackpulse.web.auth import AuthService
from tests.support.app import app_for
from tests.support.browser import serve_app
from tests.support.events import data_event
from tests.support.procs import MosquittoProc
from tests.support.waiting import wait_until

T0 = datetime(2026, 11, 24, 9, tzinfo=UTC)
LAYOUT_DOC: dict[str, Any] = {
    "site": "main",
    "name": "Test Library",
    "timezone": "UTC",
    "zones": [
        {"id": "f1", "name": "Floor 1", "floor": 1, "capacity": 50},
        {"id": "f2", "name": "Floor 2", "floor": 2, "capacity": 50},
    ],
    "shelves": [
        {
            "device": "shelf-1",
            "zone": "f1",
            "sections": [
                {"id": "1F-A01-1", "first": "A", "last": "AZ"},
                {"id": "1F-A01-2", "first": "B", "last": "BZ"},
            ],
        },
        {
            "device": "shelf-2",
            "zone": "f2",
            "sections": [{"id": "2F-Q01-1", "first": "Q", "last": "QZ"}],
        },
    ],
    "circulation": [{"device": "circ-1", "zone": "f1"}],
    "catalog": "catalog.csv",
}
CATALOG_CSV = """item,call_number,title,collection
1001,A10 .B2 2001,Alpha of things,main
1002,B20 .C3 1999,Beta readings,main
1003,Q76 .D4 2010,Quanta for all,main
1004,Q80 .E5 2015,Questions,main
"""
# Where everything belongs: each reader's sections and the items shelved there.
HOME: dict[str, dict[str, list[str]]] = {
    "shelf-1": {"1F-A01-1": ["1001"], "1F-A01-2": ["1002"]},
    "shelf-2": {"2F-Q01-1": ["1003", "1004"]},
}


def write_site(folder: Path) -> Path:
    """The test layout and its catalog as files; the layout's path."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "catalog.csv").write_text(CATALOG_CSV)
    path = folder / "layout.yaml"
    path.write_text(yaml.safe_dump(LAYOUT_DOC))
    return path


def site_layout(folder: Path) -> Layout:
    return load_layout(write_site(folder))


@dataclass
class Shelves:
    """Shelf readers as the gateway republishes them: one batch per full sweep."""

    sweeps: dict[str, int] = field(default_factory=dict)
    seq: int = 0

    def sweep(
        self, device: str, contents: dict[str, list[str]], at: datetime, site: str = "main"
    ) -> list[Event]:
        n = self.sweeps[device] = self.sweeps.get(device, 0) + 1
        events = []
        for section, items in contents.items():
            self.seq += 1
            payload = {
                "ts": at.isoformat(),
                "boot": 1,
                "seq": self.seq,
                "sweep": n,
                "section": section,
                "part": 1,
                "parts": 1,
                "items": [{"id": i, "rssi": -50.0} for i in items],
            }
            events.append(data_event(Kind.SHELF, device, payload, at, site))
        return events

    def circ(self, item: str, action: str, at: datetime) -> Event:
        self.seq += 1
        payload = {"ts": at.isoformat(), "boot": 1, "seq": self.seq, "item": item, "action": action}
        return data_event(Kind.CIRC, "circ-1", payload, at)


def batch(events: Sequence[Event]) -> bytes:
    return ("[" + ",".join(e.model_dump_json() for e in events) + "]").encode()


MISPLACED_1001 = {"1F-A01-1": [], "1F-A01-2": ["1002", "1001"]}


class RecordingStore:
    """A series store that keeps what it is given (the counts for dashboards)."""

    def __init__(self) -> None:
        self.points: list[Point] = []

    async def write(self, points: Sequence[Point]) -> None:
        self.points.extend(points)

    async def query(self, q: Query) -> list[Row]:
        return []

    async def raw_query(self, influxql: str) -> list[dict[str, Any]]:
        return []

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None


# -- pure glue: events in, published form out -------------------------------------------


def fresh_site(tmp_path: Path, **settings: Any) -> SiteInventory:
    layout = site_layout(tmp_path)
    catalog = load_catalog(tmp_path / "catalog.csv", layout)
    return SiteInventory(layout, catalog, InventorySettings(), **settings)


def feed(site: SiteInventory, events: Sequence[Event]) -> list[Change]:
    out: list[Change] = []
    for ev in events:
        out += site.apply(ev)
    return out


def test_a_shelf_event_becomes_a_section_report_with_the_event_time(tmp_path: Path) -> None:
    site = fresh_site(tmp_path)
    shelves = Shelves()
    feed(site, shelves.sweep("shelf-1", HOME["shelf-1"], T0))
    assert site.inventory.located("1001") == ("1F-A01-1", T0)
    assert site.checkpoint_dirty and not feed(site, [])


def test_misplaced_over_two_sweeps_opens_one_change_and_a_task(tmp_path: Path) -> None:
    site = fresh_site(tmp_path, root="x/v1")
    shelves = Shelves()
    assert not feed(site, shelves.sweep("shelf-1", HOME["shelf-1"], T0))
    t1, t2 = T0 + timedelta(minutes=10), T0 + timedelta(minutes=20)
    assert not feed(site, shelves.sweep("shelf-1", MISPLACED_1001, t1))
    changes = feed(site, shelves.sweep("shelf-1", MISPLACED_1001, t2))
    assert [(c.finding, c.item, c.state) for c in changes] == [
        (Finding.MISPLACED, "1001", "opened")
    ]
    ((topic, body, retained),) = [
        (m.topic, m.payload, m.retain) for m in site.change_messages(changes)
    ]
    assert topic == "x/v1/main/_state/inventory/change/misplaced" and not retained
    change = json.loads(body)
    assert change["detail"] == {
        "item": "1001",
        "call_number": "A10 .B2 2001",
        "title": "Alpha of things",
        "seen_section": "1F-A01-2",
        "expected_sections": ["1F-A01-1"],
        "since": "2026-11-24T09:10:00.000Z",
    }
    lists = {
        m.topic.rsplit("/", 1)[1]: json.loads(m.payload) for m in site.list_messages(t2) if m.retain
    }
    assert set(lists) == {"misplaced", "missing", "reshelving", "tasks"}
    assert lists["tasks"]["items"] == [
        {
            "item": "1001",
            "call_number": "A10 .B2 2001",
            "title": "Alpha of things",
            "from_section": "1F-A01-2",
            "to_section": "1F-A01-1",
            "floor": 1,
            "opened_at": lists["tasks"]["items"][0]["opened_at"],
            "order": [0, 1],
        }
    ]
    assert lists["misplaced"]["total"] == 1 and lists["missing"]["items"] == []
    assert site.list_messages(t2) == []  # nothing changed since: nothing to send
    # Seen home again in two sweeps (one could be a stray read): the finding and task close.
    assert not feed(site, shelves.sweep("shelf-1", HOME["shelf-1"], t2 + timedelta(minutes=5)))
    changes = feed(site, shelves.sweep("shelf-1", HOME["shelf-1"], t2 + timedelta(minutes=10)))
    assert [(c.finding, c.item, c.state) for c in changes] == [
        (Finding.MISPLACED, "1001", "closed")
    ]
    sent = {m.topic.rsplit("/", 1)[1]: json.loads(m.payload) for m in site.list_messages(t2)}
    assert set(sent) == {"misplaced", "tasks"}  # only what changed is republished
    assert sent["tasks"]["items"] == [] and sent["misplaced"]["total"] == 0


def test_a_closed_finding_is_stored_with_how_long_it_was_open(tmp_path: Path) -> None:
    """Time to fix, for the Inventory dashboard: one finding_closed point per closing,
    from the finding's start (its `since`), also across a checkpoint restore."""
    site = fresh_site(tmp_path)
    shelves = Shelves()
    feed(site, shelves.sweep("shelf-1", HOME["shelf-1"], T0))
    t1, t2 = T0 + timedelta(minutes=10), T0 + timedelta(minutes=20)
    feed(site, shelves.sweep("shelf-1", MISPLACED_1001, t1))
    feed(site, shelves.sweep("shelf-1", MISPLACED_1001, t2))
    assert site.take_closed_points() == []  # opened, not closed
    again = fresh_site(tmp_path)
    assert again.restore(json.loads(json.dumps(site.checkpoint(t2))))
    for s in (site, again):
        feed(s, shelves.sweep("shelf-1", HOME["shelf-1"], t2 + timedelta(minutes=5)))
        shelves.sweeps["shelf-1"] -= 1  # the same sweep again for the restored copy
    shelves.sweeps["shelf-1"] += 1
    fixed = t2 + timedelta(minutes=10)
    for s in (site, again):
        feed(s, shelves.sweep("shelf-1", HOME["shelf-1"], fixed))
        shelves.sweeps["shelf-1"] -= 1
        (point,) = s.take_closed_points()
        assert point.measurement == "finding_closed"
        assert point.tags == {"site": "main", "finding": "misplaced"}
        assert point.fields["seconds_open"] == (fixed - t1).total_seconds()  # since t1
        assert s.take_closed_points() == []


def test_long_lists_are_capped_and_say_their_total(tmp_path: Path) -> None:
    site = fresh_site(tmp_path, max_list_items=1)
    shelves = Shelves()
    feed(site, shelves.sweep("shelf-2", HOME["shelf-2"], T0))
    for n in range(1, 4):  # both items of shelf 2 unseen for three sweeps: missing
        feed(site, shelves.sweep("shelf-2", {"2F-Q01-1": []}, T0 + timedelta(minutes=n)))
    doc = next(
        json.loads(m.payload) for m in site.list_messages(T0) if m.topic.endswith("/list/missing")
    )
    assert doc["total"] == 2 and [i["item"] for i in doc["items"]] == ["1003"]
    assert doc["items"][0]["last_seen_section"] == "2F-Q01-1"


def test_change_body_of_a_closed_finding_has_no_detail() -> None:
    body = change_body("main", Change(Finding.MISSING, "1003", "closed", T0)).model_dump(
        mode="json"
    )
    assert body == {
        "site": "main",
        "finding": "missing",
        "item": "1003",
        "state": "closed",
        "at": "2026-11-24T09:00:00.000Z",
        "detail": None,
    }
    detail = Misplaced("1", "A1", "T", "S2", ("S1",), T0)
    opened = change_body("main", Change(Finding.MISPLACED, "1", "opened", T0, detail))
    assert json.loads(opened.dump())["detail"]["expected_sections"] == ["S1"]


def test_a_checkpoint_round_trips_and_garbage_is_refused_with_a_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    site = fresh_site(tmp_path)
    shelves = Shelves()
    feed(site, shelves.sweep("shelf-1", HOME["shelf-1"], T0))
    for n in (1, 2):
        feed(site, shelves.sweep("shelf-1", MISPLACED_1001, T0 + timedelta(minutes=n)))
    body, _ = _encode({"applied": [], "state": site.checkpoint(T0)})
    again = fresh_site(tmp_path / "again")
    assert again.restore(_decode(body)["state"])
    assert again.inventory.misplaced() == site.inventory.misplaced()
    # The same sweep again after the restore opens nothing a second time.
    assert not feed(again, shelves.sweep("shelf-1", MISPLACED_1001, T0 + timedelta(minutes=3)))

    with pytest.raises(ValueError):
        _decode(b"not compressed")
    other = json.loads(zlib.decompress(body))["state"]
    other["site"] = "law"
    with caplog.at_level(logging.WARNING, "stackpulse.inventory"):
        assert not again.restore(other)
        assert not again.restore({"version": 1, "site": "main", "inventory": {"x": 1}})
        assert not again.restore([1, 2])
    assert again.inventory.misplaced() == site.inventory.misplaced()  # left alone
    messages = [r.getMessage() for r in caplog.records]
    assert "of site 'law'" in messages[0] and "not a JSON object" in messages[2]


# -- live: a real broker, a real state database -----------------------------------------


@dataclass
class Bus:
    """A test client on the broker: sends events as the gateway does, keeps what comes back."""

    mqtt: aiomqtt.Client
    root: str
    lists: dict[str, Any] = field(default_factory=dict)  # list name -> newest document
    changes: list[dict[str, Any]] = field(default_factory=list)
    demand: dict[str, Any] = field(default_factory=dict)  # ranked|classes -> newest document

    async def send(self, kind: Kind, events: Sequence[Event]) -> None:
        topic = event_batch_topic(self.root, "main", kind)
        await self.mqtt.publish(topic, batch(events), qos=1, timeout=10)

    async def watch(self) -> None:
        await self.mqtt.subscribe(state_topic(self.root, "main", "inventory", "+", "+"), qos=1)
        async for message in self.mqtt.messages:
            if not isinstance(message.payload, bytes) or not message.payload:
                continue
            body = json.loads(message.payload)
            kind, name = message.topic.value.split("/")[-2:]
            if kind == "list":
                self.lists[name] = body
            elif kind == "change":
                self.changes.append(body)
            elif kind == "demand":
                self.demand[name] = body

    def items(self, name: str) -> list[str]:
        return [i["item"] for i in self.lists.get(name, {}).get("items", [])]

    def opened(self, item: str) -> int:
        return sum(1 for c in self.changes if c["item"] == item and c["state"] == "opened")


@pytest.fixture
async def bus(mosquitto: MosquittoProc, mqtt_root: str) -> AsyncIterator[Bus]:
    async with mqtt_client(parse_broker_url(mosquitto.url)) as mqtt:
        b = Bus(mqtt, mqtt_root)
        watcher = asyncio.create_task(b.watch(), name="test-watch")
        try:
            yield b
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            for name in ("misplaced", "missing", "reshelving", "tasks"):  # leave no trace
                await mqtt.publish(list_topic(mqtt_root, "main", name), b"", retain=True, qos=1)
            for ranking in DEMAND_LISTS:
                topic = demand_topic(mqtt_root, "main", ranking)
                await mqtt.publish(topic, b"", retain=True, qos=1)


@pytest.mark.timeout(60)
async def test_live_findings_lists_changes_counts_and_checkpoint(
    bus: Bus, mosquitto: MosquittoProc, tmp_path: Path
) -> None:
    layout = site_layout(tmp_path)
    catalogs = {"main": load_catalog(tmp_path / "catalog.csv", layout)}
    clock = ScaledClock(T0)
    clock.pause()
    store = RecordingStore()
    db = StateDB.open(f"sqlite:///{tmp_path / 'state.db'}")
    cfg = InventoryServiceSettings(
        client_id=f"inventory-{uuid.uuid4().hex[:8]}",
        reshelve_within=timedelta(minutes=30),
        tick=timedelta(seconds=0.05),
        checkpoint_every=timedelta(seconds=0.2),
        record_every=timedelta(seconds=60),
        catchup_settle=timedelta(seconds=0.1),
    )
    service = InventoryService([layout], catalogs, store, clock, cfg, bus.root)
    runner = ServiceRunner(
        service,
        broker=parse_broker_url(mosquitto.url),
        root=bus.root,
        clock=clock,
        settings=cfg,
        store=store,
        checkpoints=db,
    )
    task = asyncio.create_task(runner.run())
    shelves = Shelves()

    def stored(measurement: str) -> list[Point]:
        return [p for p in store.points if p.measurement == measurement]

    def signals() -> list[str]:
        return sorted(str(p.tags["kind"]) for p in stored("demand_signal"))

    try:
        await wait_until(lambda: runner.readiness.ready)
        await wait_until(lambda: set(bus.lists) == {"misplaced", "missing", "reshelving", "tasks"})
        await bus.send(Kind.SHELF, shelves.sweep("shelf-1", HOME["shelf-1"], T0))
        for n in (1, 2):
            at = T0 + timedelta(minutes=n)
            await bus.send(Kind.SHELF, shelves.sweep("shelf-1", MISPLACED_1001, at))
        await wait_until(lambda: bus.items("tasks") == ["1001"])
        assert bus.items("misplaced") == ["1001"] and bus.opened("1001") == 1
        assert bus.changes[-1]["finding"] == "misplaced"

        # A checked-in book nobody shelves within 30 minutes is awaiting reshelving.
        await bus.send(Kind.CIRC, [shelves.circ("1003", "checkout", T0)])
        await bus.send(Kind.CIRC, [shelves.circ("1003", "checkin", T0 + timedelta(minutes=5))])
        await wait_until(lambda: "checkin" in signals())
        assert "checkout" in signals()  # each demand signal stored as it comes
        clock.advance(40 * 60)
        await wait_until(lambda: bus.items("reshelving") == ["1003"])
        clock.advance(60)  # a minute of clock time: the counts are stored

        await wait_until(lambda: bool(stored("inventory")))
        point = stored("inventory")[-1]
        assert dict(point.tags) == {"site": "main"}
        assert dict(point.fields) == {"misplaced": 1, "missing": 0, "reshelving": 1, "tasks": 1}
        # Demand: each signal stored as it comes, a ranking every 10 minutes of clock time,
        # and the retained ranking the API serves.
        assert signals() == ["checkin", "checkout"]
        ranks = stored("demand_rank")
        assert len(ranks) % RANK_SLOTS == 0 and ranks[0].fields["title"] == "Quanta for all"
        await wait_until(lambda: bool(bus.demand.get("ranked", {}).get("items")))
        [row] = bus.demand["ranked"]["items"]
        assert row["title"] == "Quanta for all" and row["signals"]["checkout"] == 1
        assert bus.demand["classes"]["items"][0]["call_class"] == row["call_class"]
        await wait_until(lambda: db.load_checkpoint(runner.checkpoint_name("main")) is not None)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    body = db.load_checkpoint(runner.checkpoint_name("main"))
    assert body is not None
    saved = _decode(body)["state"]
    assert isinstance(saved, dict) and saved["site"] == "main"
    assert saved["demand"]["buckets"]  # the demand window is kept too
    # On stop the last ranking is stored as well.
    assert len(stored("demand_rank")) > len(ranks)
    again = SiteInventory(layout, catalogs["main"], cfg.logic)
    assert again.restore(saved)
    assert again.demand.demand.ranked(clock.now()) == service.by_site["main"].demand.demand.ranked(
        clock.now()
    )
    db.close()


# -- restart safety: a real service process stopped and started again --------------------

PASSWORD = "correct horse battery"


def staff_auth(*users: tuple[str, str, list[str]]) -> AuthService:
    """Logins over an in-memory state database holding `(username, role, sites)` users."""
    db = StateDB.open("sqlite://")
    for username, role, sites in users:
        db.add_user(username, hash_password(PASSWORD), role, sites)
    return AuthService(db, TokenIssuer("t" * 40))


def token_for(auth: AuthService, username: str, role: Role, sites: Sequence[str] = ()) -> str:
    return auth.tokens.issue(Principal(username, role, frozenset(sites)), datetime.now(UTC))


class ServiceProcess:
    """`stackpulse run inventory` as its own process, stopped the way an operator stops it."""

    def __init__(self, argv: list[str], log: Path) -> None:
        self.argv, self.log = argv, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("STACKPULSE_")}
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
            )

    def stop(self) -> int:
        proc, self.proc = self.proc, None
        if proc is None:
            return 0
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
            raise

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.integration
@pytest.mark.timeout(120)
async def test_a_restarted_service_process_keeps_its_findings_and_opens_nothing_twice(
    bus: Bus, mosquitto: MosquittoProc, tmp_path: Path
) -> None:
    layout_path = write_site(tmp_path / "site")
    layout = load_layout(layout_path)
    service = ServiceProcess(
        [
            sys.executable,
            "-m",
            "stackpulse",
            "run",
            "inventory",
            "--layout",
            str(layout_path),
            "--broker",
            mosquitto.url,
            "--store",
            f"sqlite:///{tmp_path / 'series.db'}",
            "--db",
            f"sqlite:///{tmp_path / 'state.db'}",
            "--root",
            bus.root,
            "--clock",
            "sim:2026-11-24T09:00:00Zx1",
        ],
        tmp_path / "inventory.log",
    )
    auth = staff_auth(("ana", "staff", ["main"]))
    view = InventoryView(bus.root)
    app = app_for([layout], OccupancyView(bus.root), inventory=view, auth=auth)
    headers = {"Authorization": f"Bearer {token_for(auth, 'ana', 'staff', ['main'])}"}
    shelves = Shelves()
    lists = {"misplaced", "missing", "reshelving", "tasks"}
    async with (
        mqtt_client(parse_broker_url(mosquitto.url)) as api_mqtt,
        serve_app(app) as base,
        httpx.AsyncClient(base_url=base, headers=headers, timeout=10) as http,
    ):
        feeding = asyncio.create_task(run_view(view, api_mqtt, bus.root))

        async def misplaced() -> list[str]:
            answer = await http.get("/api/v1/sites/main/items/misplaced")
            assert answer.status_code == 200, answer.text
            return [i["item"] for i in answer.json()]

        try:
            service.start()
            await wait_until(lambda: set(bus.lists) == lists, 30)
            await bus.send(Kind.SHELF, shelves.sweep("shelf-1", HOME["shelf-1"], T0))
            for n in (1, 2):
                at = T0 + timedelta(minutes=n)
                await bus.send(Kind.SHELF, shelves.sweep("shelf-1", MISPLACED_1001, at))
            await wait_until(lambda: bus.items("tasks") == ["1001"], 20)
            assert await misplaced() == ["1001"]
            assert service.stop() == 0, service.output()
            assert bus.opened("1001") == 1

            bus.lists.clear()
            service.start()
            # Back up: it publishes its lists again, the finding still in them.
            await wait_until(lambda: set(bus.lists) == lists, 30)
            assert bus.items("misplaced") == ["1001"] and bus.items("tasks") == ["1001"]
            # More sweeps still find the book away: still one finding, never opened again.
            for n in (3, 4, 5):
                at = T0 + timedelta(minutes=n)
                await bus.send(Kind.SHELF, shelves.sweep("shelf-1", MISPLACED_1001, at))
            await bus.send(Kind.SHELF, shelves.sweep("shelf-2", HOME["shelf-2"], T0))
            await asyncio.sleep(1.5)  # a tick and a coalesced publish would have happened
            assert bus.opened("1001") == 1, bus.changes
            assert await misplaced() == ["1001"]
            # Shelved where it belongs while the service is down again: the broker keeps
            # the sweep for its session, and once back the finding closes, once.
            assert service.stop() == 0, service.output()
            for n in (6, 7):  # two sweeps home close a finding
                at = T0 + timedelta(minutes=n)
                await bus.send(Kind.SHELF, shelves.sweep("shelf-1", HOME["shelf-1"], at))
            service.start()
            await wait_until(lambda: bus.items("tasks") == [], 30)
            assert [c["state"] for c in bus.changes if c["item"] == "1001"] == [
                "opened",
                "closed",
            ]
            await wait_until(lambda: view.misplaced("main") == [])
            assert await misplaced() == []
        finally:
            service.stop()
            feeding.cancel()
            await asyncio.gather(feeding, return_exceptions=True)
    assert "Traceback" not in service.output(), service.output()
