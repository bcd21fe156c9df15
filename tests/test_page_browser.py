"""The student page in a real headless chromium at phone size, kept live over SSE."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Page

from kernel.bus import client as mqtt_client
from kernel.bus import parse_broker_url
from kernel.layout import Layout
from kernel.topics import state_topic
from services.occupancy.view import OccupancyView, run_view
from stackpulse.api import build_app
from tests.support.browser import ARTIFACTS, phone_page, publish_retained, serve_app
from tests.support.procs import MosquittoProc

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


def initial_state(root: str) -> list[tuple[str, bytes]]:
    out = [zone_msg(root, z[0]) for z in ZONES]
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
            async with serve_app(build_app(view, [MAIN, LAW], ping_seconds=5)) as base:
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


async def test_page_picks_the_site_from_its_path_and_shows_when_the_server_goes(
    phone_page: Page,
) -> None:
    async with serve_app(build_app(OccupancyView(), [MAIN, LAW])) as base:
        await phone_page.goto(base + "/sites/law")
        await phone_page.wait_for_selector("#conn[data-state='live']")
        assert await phone_page.locator("#site-name").inner_text() == "Law Library"
        assert await phone_page.locator("#site-select").input_value() == "law"
        assert await phone_page.locator("#empty").is_visible()
    await phone_page.wait_for_selector("#conn:not([data-state='live'])", timeout=15_000)
    assert "Reconnecting" in await phone_page.locator("#conn").inner_text() or "Offline" in (
        await phone_page.locator("#conn").inner_text()
    )
