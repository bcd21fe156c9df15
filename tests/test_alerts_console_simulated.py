"""The project's simulator raises an alert; staff see it live in chromium and acknowledge it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from playwright.async_api import Page

from stackpulse.kernel.bus import BrokerAddress
from stackpulse.kernel.clock import SystemClock
from stackpulse.kernel.statedb import StateDB
from stackpulse.services.alerts.lifecycle import AlertBook
from stackpulse.services.alerts.settings import AlertSettings
from stackpulse.services.alerts.store import AlertStore
from stackpulse.services.occupancy.view import OccupancyView
from stackpulse.simulators import Simulation
from stackpulse.simulators.config import SimConfig
from tests.support.app import app_for
from tests.support.browser import ARTIFACTS, phone_page, serve_app
from tests.support.waiting import wait_until
from tests.test_alerts_service import LAYOUT, SEAT, Stack, stack
from tests.test_inventory_service import PASSWORD, staff_auth

__all__ = ["phone_page", "stack"]  # fixtures, imported for pytest to find

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.timeout(60)]

# Every seat sensor of the simulated library reports a battery below the critical 10 %,
# and reports often (real time, no scaling), so the alert comes within seconds.
FLAT_BATTERIES = SimConfig(seat_battery=(0.05, 0.09), seat_heartbeat=2.0)


@asynccontextmanager
async def simulated_library(broker: BrokerAddress, root: str) -> AsyncIterator[Simulation]:
    """The simulator publishing the test layout's devices to `broker` until the block ends."""
    sim = Simulation(
        LAYOUT,
        broker,
        root=root,
        clock=SystemClock(),
        seed=7,
        config=FLAT_BATTERIES,
        client_prefix=f"sim{uuid.uuid4().hex[:6]}",
    )
    stop = asyncio.Event()
    run = asyncio.create_task(sim.run(stop=stop), name="test-simulator")
    try:
        async with asyncio.timeout(20):
            ready = asyncio.create_task(sim.ready.wait())
            await asyncio.wait({ready, run}, return_when=asyncio.FIRST_COMPLETED)
            if run.done():
                run.result()  # surfaces why the simulator stopped
            await ready
        yield sim
    finally:
        stop.set()
        try:
            await asyncio.wait_for(run, timeout=10)
        except TimeoutError:
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)


async def test_staff_ack_an_alert_the_simulator_raised(phone_page: Page, stack: Stack) -> None:
    """Simulator -> Mosquitto -> gateway -> alerts service -> state DB -> API -> console."""
    page = phone_page
    ARTIFACTS.mkdir(exist_ok=True)
    service = await stack.start_service()
    api_db = StateDB.open(stack.db_url)  # the API's own connection to the shared database
    try:
        book = AlertBook(AlertStore(api_db), AlertSettings())
        app = app_for(
            [LAYOUT],
            OccupancyView(stack.root),
            alerts=book,
            poll_seconds=0.2,
            auth=staff_auth(("ana", "staff", ["main"])),
            ping_seconds=5,
        )
        async with serve_app(app) as base:
            await page.goto(base + "/console/main")
            await page.locator("form#login").wait_for()
            await page.fill("#username", "ana")
            await page.fill("#password", PASSWORD)
            await page.click("form#login button[type=submit]")
            await page.wait_for_selector("#conn[data-state='live']")
            assert await page.locator("#alerts-empty").is_visible()  # nothing before the sim

            async with simulated_library(stack.broker, stack.root):
                await wait_until(lambda: service.inputs_applied >= 1, seconds=15)
                card = page.locator(
                    "li[data-testid='alert'][data-rule='battery_low']", has_text=SEAT
                )
                await card.wait_for(timeout=15_000)
                assert await card.get_attribute("data-severity") == "critical"
                assert await card.get_attribute("data-state") == "active_unack"

                await card.locator("button[data-action='ack']").click()
                acked = page.locator(
                    "li[data-testid='alert'][data-state='active_ack']", has_text=SEAT
                )
                await acked.wait_for(timeout=10_000)
                who = await acked.locator("[data-testid='alert-who']").inner_text()
                assert "Acknowledged by ana" in who
                await page.screenshot(
                    path=ARTIFACTS / "alerts-console-simulated.png", full_page=True
                )

                # The ack reached the service's own book through the shared database.
                alert_id = await acked.get_attribute("data-id")
                assert alert_id is not None
                stored = await asyncio.to_thread(service.book.get, alert_id)
                assert stored is not None and stored.acked_by == "ana"
    finally:
        api_db.close()
