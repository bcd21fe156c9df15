"""The staff shelves page in a real headless chromium: sign in, see a task appear, see it close."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.async_api import Page

from stackpulse.kernel.bus import client as mqtt_client
from stackpulse.kernel.bus import parse_broker_url
from stackpulse.kernel.catalog import load_catalog
from stackpulse.kernel.clock import ScaledClock
from stackpulse.kernel.statedb import StateDB
from stackpulse.kernel.topics import Kind
from stackpulse.services.inventory.service import InventoryService
from stackpulse.services.inventory.settings import InventoryServiceSettings
from stackpulse.services.inventory.site import list_topic
from stackpulse.services.inventory.view import InventoryView, run_view
from stackpulse.services.occupancy.view import OccupancyView
from tests.support.app import app_for
from tests.support.browser import ARTIFACTS, phone_page, serve_app
from tests.support.procs import MosquittoProc
from tests.support.services import start_runner
from tests.test_inventory_service import (
    HOME,
    MISPLACED_1001,
    PASSWORD,
    T0,
    Bus,
    RecordingStore,
    Shelves,
    site_layout,
    staff_auth,
)

pytestmark = pytest.mark.browser
__all__ = ["phone_page"]  # the fixture, imported for pytest to find


@dataclass
class StaffSite:
    base: str
    bus: Bus
    service: InventoryService


@pytest.fixture
async def staff_site(
    mosquitto: MosquittoProc, mqtt_root: str, tmp_path: Path
) -> AsyncIterator[StaffSite]:
    """Service, read model and API over a real broker, served by uvicorn; one staff user."""
    layout = site_layout(tmp_path)
    catalogs = {"main": load_catalog(tmp_path / "catalog.csv", layout)}
    clock = ScaledClock(T0)
    clock.pause()
    settings = InventoryServiceSettings(
        client_id=f"inventory-{uuid.uuid4().hex[:8]}",
        tick=timedelta(seconds=0.1),
        catchup_settle=timedelta(seconds=0.1),
    )
    db = StateDB.open("sqlite://")
    service = InventoryService([layout], catalogs, RecordingStore(), clock, settings, mqtt_root)
    view = InventoryView(mqtt_root)
    auth = staff_auth(("ana", "staff", ["main"]))
    app = app_for([layout], OccupancyView(mqtt_root), inventory=view, auth=auth, ping_seconds=5)
    broker = parse_broker_url(mosquitto.url)
    async with mqtt_client(broker) as api_mqtt, mqtt_client(broker) as test_mqtt:
        _, running = await start_runner(
            service, broker, mqtt_root, clock, settings, store=RecordingStore(), db=db
        )
        tasks = [
            running,
            asyncio.create_task(run_view(view, api_mqtt, mqtt_root), name="page-view"),
        ]
        bus = Bus(test_mqtt, mqtt_root)
        try:
            async with serve_app(app) as base:
                yield StaffSite(base, bus, service)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for name in ("misplaced", "missing", "reshelving", "tasks"):  # leave no trace
                await test_mqtt.publish(
                    list_topic(mqtt_root, "main", name), b"", retain=True, qos=1
                )
            db.close()


@pytest.mark.integration
async def test_staff_see_a_reshelving_task_appear_and_close_without_reload(
    phone_page: Page, staff_site: StaffSite
) -> None:
    page, bus = phone_page, staff_site.bus
    ARTIFACTS.mkdir(exist_ok=True)
    await page.goto(staff_site.base + "/staff/main")
    await page.locator("form#login").wait_for()
    assert await page.locator("#board").is_hidden()  # nothing shown before signing in

    await page.fill("#username", "ana")
    await page.fill("#password", "not the password")
    await page.click("form#login button[type=submit]")
    await page.locator("#login-error", has_text="Wrong username or password").wait_for()

    await page.fill("#password", PASSWORD)
    await page.click("form#login button[type=submit]")
    await page.wait_for_selector("#conn[data-state='live']")
    assert await page.locator("#site-name").inner_text() == "Test Library"
    assert await page.locator("#tasks-empty").is_visible()
    assert await page.evaluate("sessionStorage.getItem('stackpulse.token')")
    await page.evaluate("window.__sameDocument = true")  # gone if the page reloads

    # The reader finds the book on the wrong section two sweeps in a row.
    shelves = Shelves()
    await bus.send(Kind.SHELF, shelves.sweep("shelf-1", HOME["shelf-1"], T0))
    for n in (1, 2):
        at = T0 + timedelta(minutes=n)
        await bus.send(Kind.SHELF, shelves.sweep("shelf-1", MISPLACED_1001, at))
    task = page.locator("#tasks [data-testid='task'][data-item='1001']")
    await task.wait_for()
    assert (await task.locator(".task-move").inner_text()) == (
        "Move 1001 (A10 .B2 2001, Alpha of things) from 1F-A01-2 to 1F-A01-1"
    )
    floor = page.locator("#task-floors .floor").first
    assert await floor.get_attribute("data-floor") == "1"
    assert await floor.locator("h3").inner_text() in ("Floor 1", "FLOOR 1")
    await page.locator("#misplaced-list li[data-item='1001']").wait_for()
    assert await page.locator("#n-tasks").inner_text() == "1"
    assert "belongs in" in await page.locator("#misplaced-list").inner_text()
    assert await page.evaluate("document.documentElement.scrollWidth") <= 375
    await page.screenshot(path=ARTIFACTS / "staff-page-375-task.png", full_page=True)

    # Somebody puts it back: two sweeps hear it at home and the task closes itself.
    for n in (3, 4):
        at = T0 + timedelta(minutes=n)
        await bus.send(Kind.SHELF, shelves.sweep("shelf-1", HOME["shelf-1"], at))
    await task.wait_for(state="detached")
    await page.locator("#tasks-empty").wait_for()
    assert await page.locator("#misplaced-list li").count() == 0
    assert await page.locator("#n-misplaced").inner_text() == "0"
    assert await page.evaluate("window.__sameDocument") is True
    await page.screenshot(path=ARTIFACTS / "staff-page-375-done.png", full_page=True)

    # Signing out forgets the token and hides the lists.
    await page.click("#logout")
    await page.locator("form#login").wait_for()
    assert await page.evaluate("sessionStorage.getItem('stackpulse.token')") is None
