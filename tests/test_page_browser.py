"""The student page in a real headless chromium at phone size, kept live over SSE."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from datetime import time as clock_time
from pathlib import Path

import pytest
import yaml
from playwright.async_api import Page

from stackpulse.broker import free_port
from stackpulse.kernel.bus import client as mqtt_client
from stackpulse.kernel.bus import parse_broker_url
from stackpulse.kernel.clock import ScaledClock
from stackpulse.kernel.layout import Layout
from stackpulse.kernel.settings import Settings
from stackpulse.kernel.topics import state_topic
from stackpulse.runtime import prepare, run_components
from stackpulse.services.occupancy.view import OccupancyView, run_view
from stackpulse.simulators.run import Simulation
from stackpulse.simulators.synth import synthetic_layout
from tests.support.app import app_for
from tests.support.browser import ARTIFACTS, phone_page, publish_retained, serve_app
from tests.support.procs import MosquittoProc
from tests.support.waiting import wait_until

pytestmark = pytest.mark.browser
__all__ = ["phone_page"]  # the fixture, imported for pytest to find

ZONES = [  # id, name, floor, capacity, seats (state per seat), occupancy, busyness
    ("f1-reading", "1F Reading Room", 1, 120, "FOOHFOUO", 97, "very busy"),
    ("f2-quiet", "2F Silent Study", 2, 40, "FFOOUOFOOFOO", 21, "moderate"),
    ("f2-group", "2F Group Rooms", 2, 30, "OOOO", 30, "full"),
    ("f3-stacks", "3F Stacks", 3, 60, "", 8, "quiet"),
]
STATE = {"F": "free", "O": "occupied", "H": "held", "U": "unknown"}
MAIN = Layout.model_validate(
    {
        "site": "main",
        "name": "Main Library",
        "timezone": "Asia/Shanghai",
        "zones": [{"id": z, "name": n, "floor": f, "capacity": c} for z, n, f, c, *_ in ZONES],
    }
)
LAW = Layout.model_validate(
    {
        "site": "law",
        "name": "Law Library",
        "zones": [{"id": "l1", "name": "L1", "floor": 1, "capacity": 9}],
    }
)


def seat_id(zone: str, n: int) -> str:
    return f"{zone[:2]}-{zone[3]}-{n:03d}"


def zone_msg(root: str, zid: str, *, free: int | None = None) -> tuple[str, bytes]:
    _, name, floor, capacity, seats, occupancy, busy = next(z for z in ZONES if z[0] == zid)
    body = {
        "id": zid,
        "name": name,
        "floor": floor,
        "capacity": capacity,
        "occupancy": occupancy,
        "seats_total": len(seats),
        "seats_free": seats.count("F") if free is None else free,
        "busyness": busy,
        "updated_at": "2026-11-24T02:42:05Z",
    }
    return state_topic(root, "main", "occupancy", "zone", zid), json.dumps(body).encode()


def seat_msg(root: str, zid: str, n: int, state: str) -> tuple[str, bytes]:
    # The reading room has a floor plan: two rows of four, 3 m apart.
    x, y = (float(n % 4) * 3, float(n // 4) * 2.5) if zid == "f1-reading" else (None, None)
    body = {
        "id": seat_id(zid, n),
        "zone": zid,
        "state": state,
        "since": "2026-11-24T02:00:00Z",
        "features": ["power"] if n % 3 == 0 else [],
        "x": x,
        "y": y,
    }
    return state_topic(root, "main", "occupancy", "seat", seat_id(zid, n)), json.dumps(
        body
    ).encode()


def forecast_msg(root: str, zid: str) -> tuple[str, bytes]:
    """What the service publishes from history: busy this hour, quiet the next."""
    body = {
        "id": zid,
        "hours": [
            {"at": "2026-11-24T02:00:00Z", "occupancy": 70, "busyness": "busy"},
            {"at": "2026-11-24T03:00:00Z", "occupancy": None, "busyness": "quiet"},
        ],
    }
    return state_topic(root, "main", "occupancy", "forecast", zid), json.dumps(body).encode()


def initial_state(root: str) -> list[tuple[str, bytes]]:
    out = [zone_msg(root, z[0]) for z in ZONES] + [forecast_msg(root, "f1-reading")]
    for zid, *_, seats, _, _ in ZONES:
        out += [seat_msg(root, zid, n, STATE[s]) for n, s in enumerate(seats)]
    return out


@pytest.fixture
async def live_site(mosquitto: MosquittoProc, mqtt_root: str) -> AsyncIterator[str]:
    """The app over a view fed from the broker, served by uvicorn; yields its base URL."""
    await asyncio.to_thread(
        publish_retained, mosquitto.host, mosquitto.port, initial_state(mqtt_root)
    )
    view = OccupancyView(mqtt_root)
    async with mqtt_client(parse_broker_url(mosquitto.url)) as mqtt:
        task = asyncio.create_task(run_view(view, mqtt, mqtt_root), name="page-view")
        try:
            async with serve_app(app_for([MAIN, LAW], view, ping_seconds=5)) as base:
                yield base
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def zone_order(page: Page) -> list[str]:
    ids: list[str] = await page.eval_on_selector_all(
        "#zones > li", "els => els.map(e => e.dataset.zoneId)"
    )
    return ids


@pytest.mark.integration
async def test_page_shows_zones_and_follows_changes_without_reload(
    phone_page: Page, live_site: str, mosquitto: MosquittoProc, mqtt_root: str
) -> None:
    page = phone_page
    ARTIFACTS.mkdir(exist_ok=True)
    await page.goto(live_site + "/")
    await page.wait_for_selector("#conn[data-state='live']")
    await page.wait_for_function("document.querySelectorAll('#zones > li').length === 4")
    # Zones with free seats first (by floor), then those without seat sensors, then full.
    assert await zone_order(page) == ["f1-reading", "f2-quiet", "f3-stacks", "f2-group"]
    reading = page.locator("li[data-zone-id='f1-reading']")
    assert await reading.locator(".free-n").inner_text() == "2"
    assert "free of 8" in await reading.inner_text()
    assert "Very busy" in await reading.inner_text()
    usual = reading.locator("[data-testid='usual']")
    await usual.wait_for()  # fetched apart from the stream, so it may come a little later
    assert (await usual.inner_text()).startswith("Usually busy at this hour · quiet from 11")
    assert "null" not in await page.locator("#zones").inner_text()
    assert await page.locator("#free-total").inner_text() == "6"
    assert await page.locator("#site-name").inner_text() == "Main Library"
    assert await page.evaluate("document.documentElement.scrollWidth") <= 375
    await page.screenshot(
        path=ARTIFACTS / "student-page-375.png", full_page=True, animations="disabled"
    )
    await page.evaluate("window.__sameDocument = true")  # gone if the page reloads

    await reading.locator("button").click()
    sheet = page.locator("dialog#sheet[open]")
    await sheet.wait_for()
    first = sheet.locator(f"[data-seat-id='{seat_id('f1-reading', 0)}']")
    assert await first.get_attribute("data-state") == "free"
    unknown = sheet.locator(f"[data-seat-id='{seat_id('f1-reading', 6)}']")
    assert await unknown.get_attribute("data-state") == "unknown"
    assert "unknown" in await unknown.inner_text()  # never shown as free
    assert await sheet.locator(".seat[data-state='free']").count() == 2
    assert "is-map" in (await sheet.locator("#seat-map").get_attribute("class") or "")

    # The seat is taken: the service publishes the seat, then its zone.
    await asyncio.to_thread(
        publish_retained,
        mosquitto.host,
        mosquitto.port,
        [
            seat_msg(mqtt_root, "f1-reading", 0, "occupied"),
            zone_msg(mqtt_root, "f1-reading", free=1),
        ],
    )
    await sheet.locator(
        f"[data-seat-id='{seat_id('f1-reading', 0)}'][data-state='occupied']"
    ).wait_for()
    await sheet.locator("#sheet-sub", has_text="1 free of 8").wait_for()
    await page.screenshot(path=ARTIFACTS / "student-page-375-zone.png", animations="disabled")
    await page.locator("#sheet-close").click()
    await page.wait_for_function(
        "document.querySelector(\"li[data-zone-id='f1-reading'] .free-n\").textContent === '1'"
    )
    assert await page.locator("#free-total").inner_text() == "5"

    # The last free seat goes too: the zone drops below those with free seats.
    await asyncio.to_thread(
        publish_retained,
        mosquitto.host,
        mosquitto.port,
        [seat_msg(mqtt_root, "f1-reading", 4, "held"), zone_msg(mqtt_root, "f1-reading", free=0)],
    )
    await page.wait_for_function(
        "document.querySelector('#zones > li').dataset.zoneId === 'f2-quiet'"
    )
    assert await zone_order(page) == ["f2-quiet", "f3-stacks", "f1-reading", "f2-group"]
    assert await page.evaluate("window.__sameDocument") is True
    assert await page.locator("#conn").get_attribute("data-state") == "live"

    # Only seats with power: 3 of the silent study's 4 power seats are free.
    quiet = page.locator("li[data-zone-id='f2-quiet']")
    assert await quiet.locator(".free-n").inner_text() == "4"
    await page.locator("#filters label", has_text="Power").click()
    await quiet.locator(".free-n", has_text="3").wait_for()
    assert "free of 4" in await quiet.inner_text()
    assert await page.locator("#free-label").inner_text() == "seats free with power"
    await quiet.locator("button").click()
    await sheet.wait_for()
    assert await sheet.locator(".seat[data-match='false']").count() == 8
    assert await sheet.locator("#free-list li").count() == 3
    assert await page.evaluate("document.documentElement.scrollWidth") <= 375
    await page.screenshot(path=ARTIFACTS / "student-page-375-filter.png", animations="disabled")
    await page.locator("#sheet-close").click()
    await page.locator("#filters label", has_text="Power").click()
    await quiet.locator(".free-n", has_text="4").wait_for()


async def test_page_picks_the_site_from_its_path_and_shows_when_the_server_goes(
    phone_page: Page,
) -> None:
    async with serve_app(app_for([MAIN, LAW], OccupancyView())) as base:
        await phone_page.goto(base + "/sites/law")
        await phone_page.wait_for_selector("#conn[data-state='live']")
        assert await phone_page.locator("#site-name").inner_text() == "Law Library"
        assert await phone_page.locator("#site-select").input_value() == "law"
        assert await phone_page.locator("#empty").is_visible()
    await phone_page.wait_for_selector("#conn:not([data-state='live'])", timeout=15_000)
    assert "Reconnecting" in await phone_page.locator("#conn").inner_text() or "Offline" in (
        await phone_page.locator("#conn").inner_text()
    )


SIM_SPEED = 300.0  # five simulated minutes per second: the 60 s on-delay takes 0.2 s


async def _watch_seats(url: str, root: str, heard: dict[str, list[tuple[float, str]]]) -> None:
    """What the simulated sensors publish: device -> [(wall time, presence)]."""
    async with mqtt_client(parse_broker_url(url)) as mqtt:
        await mqtt.subscribe(f"{root}/+/seat/+/data", qos=1)
        async for m in mqtt.messages:
            body = json.loads(m.payload)  # type: ignore[arg-type]
            heard.setdefault(m.topic.value.split("/")[-2], []).append(
                (time.monotonic(), body["presence"])
            )


@pytest.mark.integration
async def test_page_shows_a_seat_taken_by_the_simulator_through_gateway_and_occupancy(
    phone_page: Page,
    mosquitto: MosquittoProc,
    influx_db: str,
    mqtt_root: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Simulated sensors -> Mosquitto -> gateway -> occupancy -> API -> SSE -> the screen."""
    # A private spool: what this gateway leaves unflushed must not reach another test.
    monkeypatch.setenv("STACKPULSE_GATEWAY_SPOOL", str(tmp_path / "spool"))
    layout = synthetic_layout(site="main", floors=1, rooms_per_floor=1, seats_per_room=10)
    path = tmp_path / "layout.yaml"
    path.write_text(yaml.safe_dump(layout.model_dump(mode="json", exclude_none=True)))
    day = date(2026, 11, 24)
    start = datetime.combine(day, clock_time(12, 30), layout.tz).astimezone(UTC)  # lunch peak
    port = free_port()
    settings = Settings(
        layout=str(path),
        broker=mosquitto.url,
        store=influx_db,
        http=f"127.0.0.1:{port}",
        root=mqtt_root,
    )
    rt = prepare(settings)
    rt.clock = ScaledClock(start, SIM_SPEED)
    system = asyncio.create_task(run_components(rt, ("gateway", "occupancy", "api")))
    heard: dict[str, list[tuple[float, str]]] = {}
    watcher = asyncio.create_task(_watch_seats(mosquitto.url, mqtt_root, heard))
    stop = asyncio.Event()
    running: asyncio.Task[object] | None = None
    try:
        async with asyncio.timeout(30):
            await rt.started.wait()
            await rt.services["gateway"].connected.wait()
            await wait_until(lambda: rt.health.ready, 20)
        sim = Simulation(
            layout,
            parse_broker_url(mosquitto.url),
            root=mqtt_root,
            clock=ScaledClock(start, SIM_SPEED),
            seed=11,
            client_prefix=f"sim-{mqtt_root}",
        )
        running = asyncio.create_task(sim.run(stop=stop))
        page = phone_page
        await page.goto(f"http://127.0.0.1:{port}/")
        await page.wait_for_selector("#conn[data-state='live']")
        room = page.locator("li[data-zone-id='f1-room1']")
        await room.wait_for()
        await room.locator("button").click()
        sheet = page.locator("dialog#sheet[open]")
        await sheet.locator(".seat").nth(9).wait_for()

        # Watch the screen: a seat shown free, then shown occupied.
        shown_free: set[str] = set()
        taken: str | None = None
        deadline = time.monotonic() + 40
        while taken is None:
            assert time.monotonic() < deadline, "no seat went from free to occupied on screen"
            states: dict[str, str] = await sheet.locator(".seat").evaluate_all(
                "els => Object.fromEntries(els.map(e => [e.dataset.seatId, e.dataset.state]))"
            )
            taken = next((s for s in sorted(shown_free) if states.get(s) == "occupied"), None)
            shown_free = {s for s, state in states.items() if state == "free"}
            await asyncio.sleep(0.05)
        seen_at = time.monotonic()
        await page.screenshot(path=ARTIFACTS / "student-page-375-simulated.png")

        # The simulator sat somebody there: its sensor said `person` before the screen did.
        device = layout.seats_by_id[taken].device
        said = [(t, p) for t, p in heard.get(device, []) if t <= seen_at]
        assert said and said[-1][1] == "person", (taken, said[-3:])
        assert await page.evaluate("document.documentElement.scrollWidth") <= 375
    finally:
        stop.set()
        if running is not None:
            await asyncio.wait([running], timeout=30)
        watcher.cancel()
        system.cancel()
        await asyncio.gather(watcher, system, return_exceptions=True)
