"""Issue 7, point 4: the manager page in a real headless chromium, on a laptop and a tablet.

Zones and seats come from retained occupancy state on a real Mosquitto, the shelves and
demand from retained inventory state, alerts from the alert book in the state database
(where the manager's login lives too), charts and device health from a real InfluxDB.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from playwright.async_api import Page, async_playwright

from stackpulse.kernel.auth import TokenIssuer, hash_password
from stackpulse.kernel.bus import client as mqtt_client
from stackpulse.kernel.bus import parse_broker_url
from stackpulse.kernel.models import StatusMessage, format_ts
from stackpulse.kernel.schema import status_point, typical_point, zone_point
from stackpulse.kernel.statedb import StateDB
from stackpulse.kernel.store import Point, open_store
from stackpulse.kernel.topics import state_topic
from stackpulse.services.alerts.lifecycle import AlertBook
from stackpulse.services.alerts.model import Observation, Severity
from stackpulse.services.alerts.settings import AlertSettings
from stackpulse.services.alerts.store import AlertStore
from stackpulse.services.inventory.demand_feed import demand_topic
from stackpulse.services.inventory.site import list_topic
from stackpulse.services.inventory.view import InventoryView
from stackpulse.services.inventory.view import run_view as run_inventory_view
from stackpulse.services.occupancy.logic import busyness
from stackpulse.services.occupancy.view import OccupancyView, run_view
from stackpulse.simulators.synth import synthetic_layout
from stackpulse.web.auth import AuthService
from tests.support.app import app_for
from tests.support.browser import ARTIFACTS, CHROMIUM_ARGS, publish_retained, serve_app
from tests.support.procs import MosquittoProc

pytestmark = [pytest.mark.browser, pytest.mark.integration]

PASSWORD = "manager's long password"
NOW = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)  # 14:00 in the library (Asia/Shanghai)
LAYOUT = synthetic_layout(site="main", floors=2, rooms_per_floor=1, seats_per_room=4)
OCCUPANCY = {"lobby": 41, "f1-landing": 12, "f1-room1": 3, "f2-landing": 9, "f2-room1": 30}
SEATS = "OOFUOFOO"  # per seat of the layout, in order: occupied, free, unknown
STATE = {"O": "occupied", "F": "free", "U": "unknown"}
OFFLINE = {"seat-11003", "gate-f2"}
LAPTOP = {"width": 1366, "height": 768}
TABLET = {"width": 820, "height": 1180}


def zone_msg(root: str, zone_id: str, occupancy: int) -> tuple[str, bytes]:
    z = LAYOUT.zone(zone_id)
    seats = [s for s, st in zip(LAYOUT.seats, SEATS, strict=True) if s.zone == zone_id]
    free = sum(
        1 for s, st in zip(LAYOUT.seats, SEATS, strict=True) if s.zone == zone_id and st == "F"
    )
    body = {
        "id": z.id,
        "name": z.name,
        "floor": z.floor,
        "capacity": z.capacity,
        "occupancy": occupancy,
        "seats_total": len(seats),
        "seats_free": free,
        "busyness": busyness(occupancy, z.capacity),
        "updated_at": format_ts(NOW),
    }
    return state_topic(root, "main", "occupancy", "zone", z.id), json.dumps(body).encode()


def seat_msgs(root: str) -> list[tuple[str, bytes]]:
    out = []
    for seat, st in zip(LAYOUT.seats, SEATS, strict=True):
        body = {"id": seat.id, "zone": seat.zone, "state": STATE[st], "since": format_ts(NOW)}
        out.append(
            (state_topic(root, "main", "occupancy", "seat", seat.id), json.dumps(body).encode())
        )
    return out


def inventory_msgs(root: str) -> list[tuple[str, bytes]]:
    stamp = format_ts(NOW)
    misplaced = [
        {"item": f"10{n}", "call_number": f"QA{n} .B1", "title": f"Book {n}",
         "seen_section": "1F-A01-2", "expected_sections": ["1F-A01-1"], "since": stamp}
        for n in range(3)
    ]  # fmt: skip
    missing = [
        {"item": "2001", "call_number": "QA9 .M1", "title": "Gone", "last_seen_section": None,
         "last_seen_at": None}
    ]  # fmt: skip
    ranked = [
        {"title": "Linear Algebra Done Right", "call_number": "QA184.2 .A96", "call_class": "QA184",
         "copies": 2, "score": 7.5, "signals": {"hold": 4, "checkout": 1}, "suggest_purchase": True,
         "reason": "4 holds on 2 copies"},
        {"title": "Calculus", "call_number": "QA303.2 .S7", "call_class": "QA303", "copies": 3,
         "score": 2.0, "signals": {"checkout": 3}, "suggest_purchase": False, "reason": None},
    ]  # fmt: skip

    def doc(items: Sequence[Mapping[str, object]], total: bool = True) -> bytes:
        body: dict[str, object] = {"site": "main", "updated_at": stamp, "items": items}
        if total:
            body["total"] = len(items)
        return json.dumps(body).encode()

    return [
        (list_topic(root, "main", "misplaced"), doc(misplaced)),
        (list_topic(root, "main", "missing"), doc(missing)),
        (list_topic(root, "main", "reshelving"), doc([])),
        (list_topic(root, "main", "tasks"), doc([])),
        (demand_topic(root, "main", "ranked"), doc(ranked, total=False)),
    ]


def stored_day() -> list[Point]:
    """Today so far every 15 minutes since opening, a typical day, one status per device."""
    points: list[Point] = []
    start = NOW - timedelta(hours=6)  # 08:00 local
    at = start
    while at <= NOW:
        ramp = (at - start) / (NOW - start)
        for z in LAYOUT.zones:
            n = round(OCCUPANCY[z.id] * ramp)
            points.append(
                zone_point(
                    "main", z.id, z.floor, occupancy=n, capacity=z.capacity, seats_total=4,
                    seats_free=2, seats_occupied=2, seats_held=0, seats_unknown=0, ts=at,
                )
            )  # fmt: skip
        at += timedelta(minutes=15)
    at = NOW - timedelta(hours=14)  # local midnight
    while at < NOW + timedelta(hours=10):
        for z in LAYOUT.zones:
            points.append(typical_point("main", z.id, z.floor, typical=z.capacity / 3, ts=at))
        at += timedelta(minutes=15)
    for device, kind in LAYOUT.devices().items():
        msg = StatusMessage(ts=NOW, online=device not in OFFLINE, boot=1, fw="1.0")
        points.append(status_point("main", str(kind), device, msg, NOW - timedelta(minutes=5)))
    return points


def observation(subject: str, severity: Severity, rule: str) -> Observation:
    return Observation(rule, "main", subject, True, NOW, severity, f"{rule} on {subject}")


@dataclass
class Site:
    base: str
    root: str
    mosquitto: MosquittoProc
    book: AlertBook


@pytest.fixture
async def site(mosquitto: MosquittoProc, mqtt_root: str, influx_db: str) -> AsyncIterator[Site]:
    retained = [zone_msg(mqtt_root, z, n) for z, n in OCCUPANCY.items()]
    retained += seat_msgs(mqtt_root) + inventory_msgs(mqtt_root)
    await asyncio.to_thread(publish_retained, mosquitto.host, mosquitto.port, retained)
    store = open_store(influx_db)
    await store.write(stored_day())
    db = StateDB.open("sqlite://")
    db.add_user("dora", hash_password(PASSWORD), "manager", ["main"])  # the director
    db.add_user("sam", hash_password(PASSWORD), "staff", ["main"])
    auth = AuthService(db, TokenIssuer(uuid.uuid4().hex * 2))
    book = AlertBook(AlertStore(db), AlertSettings())
    book.apply(observation("f2-room1", Severity.CRITICAL, "zone_full"))
    book.apply(observation("seat-11003", Severity.WARNING, "device_offline"))
    book.apply(observation("f1-room1-000", Severity.INFO, "seat_hogging"))
    occupancy, inventory = OccupancyView(mqtt_root), InventoryView(mqtt_root)
    app = app_for(
        [LAYOUT],
        occupancy,
        alerts=book,
        poll_seconds=0.2,
        inventory=inventory,
        auth=auth,
        store=store,
        clock=lambda: NOW,
        ping_seconds=5,
    )
    broker = parse_broker_url(mosquitto.url)
    async with mqtt_client(broker) as a, mqtt_client(broker) as b:
        tasks = [
            asyncio.create_task(run_view(occupancy, a, mqtt_root), name="manager-occupancy"),
            asyncio.create_task(run_inventory_view(inventory, b, mqtt_root), name="manager-inv"),
        ]
        try:
            async with serve_app(app) as base:
                yield Site(base, mqtt_root, mosquitto, book)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            clear = [(topic, b"") for topic, _ in retained]
            await asyncio.to_thread(publish_retained, mosquitto.host, mosquitto.port, clear)
            await store.close()
            db.close()


@pytest.fixture
async def page() -> AsyncIterator[Page]:
    executable = shutil.which("chromium")
    if executable is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=executable, args=CHROMIUM_ARGS, headless=True, timeout=30_000
        )
        try:
            context = await browser.new_context(viewport=LAPTOP)  # type: ignore[arg-type]
            p = await context.new_page()
            p.set_default_timeout(10_000)
            yield p
            await context.close()
        finally:
            await browser.close()


async def text(page: Page, selector: str) -> str:
    return (await page.locator(selector).inner_text()).strip()


@pytest.mark.timeout(120)
async def test_manager_sees_the_library_live_on_a_laptop_and_a_tablet(
    page: Page, site: Site
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    await page.goto(site.base + "/manager/main")
    await page.locator("form#login").wait_for()
    assert await page.locator("#board").is_hidden()
    await page.fill("#username", "dora")
    await page.fill("#password", PASSWORD)
    await page.click("form#login button[type=submit]")
    await page.wait_for_selector("#conn[data-state='live']")
    await page.evaluate("window.__sameDocument = true")  # gone if the page reloads

    # The tiles say what the running system holds.
    people = sum(OCCUPANCY.values())
    capacity = sum(z.capacity for z in LAYOUT.zones)
    assert await text(page, "#people") == str(people)
    assert await text(page, "#capacity") == str(capacity)
    assert await text(page, "#seats-free") == str(SEATS.count("F"))
    assert await text(page, "#seats-total") == str(len(SEATS))
    assert "1 seat sensor not reporting" in await text(page, "#seats-hint")
    assert await text(page, "#alerts-open") == "3"
    assert [await text(page, f"#alerts-{s}") for s in ("critical", "warning", "info")] == [
        "1",
        "1",
        "1",
    ]
    assert await text(page, "#misplaced") == "3"
    assert await text(page, "#missing") == "1"
    await page.locator("#devices li[data-kind='seat']").wait_for()
    assert await text(page, "#devices-offline") == str(len(OFFLINE))
    assert "1 offline" in await text(page, "#devices li[data-kind='gate']")
    await page.locator("#demand li[data-title='Linear Algebra Done Right']").wait_for()
    assert "Buy: 4 holds on 2 copies" in await text(page, "#demand")
    # One chart per floor, each with today's line and the typical one.
    await page.locator("#floors figure[data-floor='2'] polyline.today").wait_for()
    assert await page.locator("#floors figure").count() == 2
    assert await page.locator("#floors polyline.typical").count() == 2
    assert await page.evaluate("document.documentElement.scrollWidth") <= LAPTOP["width"]
    await page.screenshot(path=ARTIFACTS / "manager-page-1366.png", full_page=False)

    # A zone fills up: the tile follows over the stream, without a reload.
    await asyncio.to_thread(
        publish_retained, site.mosquitto.host, site.mosquitto.port,
        [zone_msg(site.root, "f2-room1", 40)],
    )  # fmt: skip
    await page.locator("#people", has_text=str(people + 10)).wait_for()
    # A new critical alert opens: the alerts tile follows too.
    await asyncio.to_thread(site.book.apply, observation("lobby", Severity.CRITICAL, "zone_full"))
    await page.locator("#alerts-open", has_text="4").wait_for()
    assert await text(page, "#alerts-critical") == "2"
    assert await page.get_attribute("#tile-alerts", "data-level") == "high"
    assert await page.evaluate("window.__sameDocument") is True

    await page.set_viewport_size(TABLET)  # type: ignore[arg-type]
    await page.wait_for_timeout(300)
    assert await page.evaluate("document.documentElement.scrollWidth") <= TABLET["width"]
    box = await page.locator("#tile-people").bounding_box()
    assert box is not None and box["width"] >= 200  # tiles stay readable, not squeezed
    await page.screenshot(path=ARTIFACTS / "manager-page-820.png", full_page=True)

    # The daily report is one click away.
    await page.click("#report-link")
    await page.wait_for_url("**/manager/main/report")
    await page.locator("#report[data-date='2026-11-24']").wait_for()


@pytest.mark.timeout(60)
async def test_staff_accounts_cannot_open_the_manager_view(page: Page, site: Site) -> None:
    await page.goto(site.base + "/manager/main")
    await page.fill("#username", "sam")
    await page.fill("#password", PASSWORD)
    await page.click("form#login button[type=submit]")
    await page.locator("#login-error", has_text="not a manager").wait_for()
    assert await page.locator("#board").is_hidden()
