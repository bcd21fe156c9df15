"""Alert routes over HTTP, and the staff console in a real headless chromium."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Page

from stackpulse.kernel.auth import Role
from stackpulse.kernel.bus import client as mqtt_client
from stackpulse.kernel.statedb import StateDB
from stackpulse.services.alerts.lifecycle import AlertBook
from stackpulse.services.alerts.model import Observation, Severity
from stackpulse.services.alerts.settings import AlertSettings
from stackpulse.services.alerts.store import AlertStore
from stackpulse.services.inventory.site import list_topic
from stackpulse.services.inventory.view import InventoryView, run_view
from stackpulse.services.occupancy.view import OccupancyView
from stackpulse.web.auth import AuthService
from tests.support.app import app_for
from tests.support.browser import ARTIFACTS, phone_page, serve_app
from tests.support.procs import MosquittoProc
from tests.support.waiting import wait_until
from tests.test_alerts_service import LAYOUT, SEAT, Device, Stack, stack
from tests.test_inventory_service import PASSWORD, staff_auth, token_for

__all__ = ["phone_page", "stack"]  # fixtures, imported for pytest to find


USERS: dict[str, tuple[Role, list[str]]] = {
    "ana": ("staff", ["main"]),
    "lee": ("staff", ["law"]),
    "max": ("manager", []),
}


def users() -> AuthService:
    return staff_auth(
        ("ana", "staff", ["main"]),
        ("lee", "staff", ["law"]),
        ("max", "manager", []),
    )


def observation(subject: str, *, rule: str = "device_offline", site: str = "main") -> Observation:
    return Observation(
        rule=rule,
        site=site,
        subject=subject,
        active=True,
        at=datetime.now(UTC),
        severity=Severity.CRITICAL if rule == "battery_low" else Severity.WARNING,
        message=f"{subject}: {rule}",
    )


@dataclass
class Api:
    http: httpx.AsyncClient
    book: AlertBook
    auth: AuthService

    def as_(self, username: str) -> dict[str, str]:
        role, sites = USERS[username]
        return {"Authorization": f"Bearer {token_for(self.auth, username, role, sites)}"}


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    db = StateDB.open("sqlite://")
    book = AlertBook(AlertStore(db), AlertSettings())
    auth = users()
    app = app_for([LAYOUT], OccupancyView("t"), alerts=book, auth=auth, poll_seconds=0.05)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield Api(http, book, auth)
    db.close()


# -- the routes -----------------------------------------------------------------------


async def test_staff_list_ack_and_clear_the_alerts_of_their_site(api: Api) -> None:
    [opened] = await asyncio.to_thread(api.book.apply, observation(SEAT))
    await asyncio.to_thread(api.book.apply, observation("seat-11001", rule="battery_low"))
    answer = await api.http.get("/api/v1/sites/main/alerts", headers=api.as_("ana"))
    assert answer.status_code == 200
    listed = answer.json()
    assert {a["rule"] for a in listed} == {"device_offline", "battery_low"}
    first = next(a for a in listed if a["rule"] == "device_offline")
    for name in (
        "id",
        "rule",
        "severity",
        "subject",
        "state",
        "opened_at",
        "acked_by",
        "cleared_at",
    ):
        assert name in first
    assert first["opened_at"].endswith("Z") and first["state"] == "active_unack"

    by_severity = await api.http.get(
        "/api/v1/sites/main/alerts", params={"severity": "critical"}, headers=api.as_("ana")
    )
    assert [a["rule"] for a in by_severity.json()] == ["battery_low"]
    by_rule = await api.http.get(
        "/api/v1/sites/main/alerts", params={"rule": "device_offline"}, headers=api.as_("ana")
    )
    assert [a["subject"] for a in by_rule.json()] == [SEAT]

    alert_id = opened.alert.id
    acked = await api.http.post(f"/api/v1/alerts/{alert_id}/ack", headers=api.as_("ana"))
    assert acked.status_code == 200
    assert acked.json()["state"] == "active_ack" and acked.json()["acked_by"] == "ana"
    again = await api.http.post(f"/api/v1/alerts/{alert_id}/ack", headers=api.as_("ana"))
    assert again.status_code == 200 and again.json()["acked_at"] == acked.json()["acked_at"]
    cleared = await api.http.post(f"/api/v1/alerts/{alert_id}/clear", headers=api.as_("ana"))
    assert cleared.json()["state"] == "cleared_ack"
    assert cleared.json()["cleared_at"].endswith("Z")
    twice = await api.http.post(f"/api/v1/alerts/{alert_id}/clear", headers=api.as_("ana"))
    assert twice.status_code == 409 and "already cleared" in twice.json()["detail"]

    active = await api.http.get("/api/v1/sites/main/alerts", headers=api.as_("ana"))
    assert [a["rule"] for a in active.json()] == ["battery_low"]
    everything = await api.http.get(
        "/api/v1/sites/main/alerts", params={"state": "all"}, headers=api.as_("ana")
    )
    assert len(everything.json()) == 2
    history = await api.http.get(f"/api/v1/alerts/{alert_id}/history", headers=api.as_("max"))
    assert [t["kind"] for t in history.json()] == ["opened", "acked", "cleared"]
    assert history.json()[1]["by"] == "ana"


async def test_other_sites_alerts_are_not_found_and_managers_cannot_change_them(
    api: Api,
) -> None:
    [opened] = await asyncio.to_thread(api.book.apply, observation(SEAT))
    alert_id = opened.alert.id
    # Staff of another site: the alert does not exist for them, whatever they try.
    for verb, path in (
        ("POST", f"/api/v1/alerts/{alert_id}/ack"),
        ("POST", f"/api/v1/alerts/{alert_id}/clear"),
        ("GET", f"/api/v1/alerts/{alert_id}/history"),
        ("GET", f"/api/v1/alerts/{alert_id}"),
    ):
        answer = await api.http.request(verb, path, headers=api.as_("lee"))
        assert answer.status_code == 404, path
    listed = await api.http.get("/api/v1/sites/main/alerts", headers=api.as_("lee"))
    assert listed.status_code == 403
    # Managers read every site but change nothing; nobody changes without a token.
    assert (await api.http.get("/api/v1/sites/main/alerts", headers=api.as_("max"))).is_success
    refused = await api.http.post(f"/api/v1/alerts/{alert_id}/ack", headers=api.as_("max"))
    assert refused.status_code == 403
    assert (await api.http.post(f"/api/v1/alerts/{alert_id}/ack")).status_code == 401
    unknown = await api.http.post("/api/v1/alerts/nope/ack", headers=api.as_("ana"))
    assert unknown.status_code == 404
    bad_site = await api.http.get("/api/v1/sites/nowhere/alerts", headers=api.as_("max"))
    assert bad_site.status_code == 404
    still = await asyncio.to_thread(api.book.get, alert_id)
    assert still is not None and still.state.value == "active_unack"


async def test_the_stream_sends_a_snapshot_then_each_transition() -> None:
    db = StateDB.open("sqlite://")
    book = AlertBook(AlertStore(db), AlertSettings())
    auth = users()
    app = app_for([LAYOUT], OccupancyView("t"), alerts=book, auth=auth, poll_seconds=0.05)
    [opened] = await asyncio.to_thread(book.apply, observation(SEAT))
    headers = {"Authorization": f"Bearer {token_for(auth, 'ana', 'staff', ['main'])}"}
    events: list[tuple[str, dict[str, Any]]] = []
    async with serve_app(app) as base, httpx.AsyncClient(base_url=base) as http:
        url = "/api/v1/sites/main/alerts/stream"
        async with http.stream("GET", url, headers=headers, timeout=10) as answer:
            assert answer.status_code == 200
            name = ""
            async for line in answer.aiter_lines():
                if line.startswith("event:"):
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("data:"):
                    events.append((name, json.loads(line.split(":", 1)[1])))
                    if name == "snapshot":
                        await asyncio.to_thread(book.ack, opened.alert.id, "ana", datetime.now(UTC))
                    if name == "transition":
                        break
    db.close()
    (first, snapshot), (second, transition) = events
    assert first == "snapshot" and [a["id"] for a in snapshot["alerts"]] == [opened.alert.id]
    assert second == "transition" and transition["kind"] == "acked" and transition["by"] == "ana"


# -- the console in a real browser ------------------------------------------------------


TASKS_DOC = {
    "site": "main",
    "list": "tasks",
    "updated_at": "2026-11-24T03:00:00.000Z",
    "total": 1,
    "items": [
        {
            "item": "31234000123456",
            "call_number": "QA76.73 .P98 2020",
            "title": "Programming in Python",
            "from_section": "1F-A01-2",
            "to_section": "1F-A01-1",
            "floor": 1,
            "opened_at": "2026-11-24T02:00:00.000Z",
            "order": [0, 1],
        }
    ],
}


@pytest.mark.integration
@pytest.mark.browser
async def test_staff_see_an_alert_arrive_live_ack_it_and_see_who_did(
    phone_page: Page, stack: Stack, mosquitto: MosquittoProc, tmp_path: Path
) -> None:
    """The real gateway hears a seat sensor's Last Will; the console shows it; ana acks it."""
    page = phone_page
    ARTIFACTS.mkdir(exist_ok=True)
    stack.receiver.start()
    service = await stack.start_service()
    api_db = StateDB.open(stack.db_url)  # the API's own connection to the shared database
    book = AlertBook(AlertStore(api_db), AlertSettings())
    view = InventoryView(stack.root)
    auth = staff_auth(("ana", "staff", ["main"]))
    app = app_for(
        [LAYOUT],
        OccupancyView(stack.root),
        alerts=book,
        poll_seconds=0.2,
        inventory=view,
        auth=auth,
        ping_seconds=5,
    )
    seat = Device(mosquitto, stack.root, SEAT)
    async with mqtt_client(stack.broker) as api_mqtt:
        view_task = asyncio.create_task(run_view(view, api_mqtt, stack.root))
        tasks_topic = list_topic(stack.root, "main", "tasks")
        try:
            async with mqtt_client(stack.broker) as pub:
                await pub.publish(tasks_topic, json.dumps(TASKS_DOC).encode(), qos=1, retain=True)
            async with serve_app(app) as base:
                await page.goto(base + "/console/main")
                await page.locator("form#login").wait_for()
                await page.fill("#username", "ana")
                await page.fill("#password", PASSWORD)
                await page.click("form#login button[type=submit]")
                await page.wait_for_selector("#conn[data-state='live']")
                assert await page.locator("#alerts-empty").is_visible()
                await page.locator("#tasks [data-testid='task']").wait_for()
                assert "Programming in Python" in await page.locator("#tasks").inner_text()

                seat.start()
                await wait_until(lambda: service.inputs_applied >= 1)
                seat.crash()  # a power cut: the broker sends its Last Will
                card = page.locator("li[data-testid='alert'][data-rule='device_offline']")
                await card.wait_for(timeout=15_000)
                assert await card.get_attribute("data-state") == "active_unack"
                assert SEAT in await card.inner_text()
                assert await page.locator("#n-alerts").inner_text() == "1"
                await page.screenshot(path=ARTIFACTS / "alerts-console-375-new.png", full_page=True)

                # Filters: a severity it does not have hides it; back to all shows it.
                await page.select_option("#filter-severity", "critical")
                await card.wait_for(state="detached")
                await page.select_option("#filter-severity", "")
                await page.select_option("#filter-rule", "device_offline")
                await card.wait_for()

                await card.locator("button[data-action='ack']").click()
                acked = page.locator("li[data-testid='alert'][data-state='active_ack']")
                await acked.wait_for()
                assert await acked.locator("[data-testid='alert-state']").inner_text() in (
                    "Acknowledged",
                    "ACKNOWLEDGED",
                )
                assert (
                    "Acknowledged by ana"
                    in await acked.locator("[data-testid='alert-who']").inner_text()
                )
                assert await page.evaluate("document.documentElement.scrollWidth") <= 375
                await page.screenshot(
                    path=ARTIFACTS / "alerts-console-375-acked.png", full_page=True
                )

                # The ack went through the database to the service: notified everywhere.
                await wait_until(lambda: len(stack.webhooks("acked")) == 1, seconds=10)
                assert stack.webhooks("acked")[0]["by"] == "ana"

                await page.set_viewport_size({"width": 1280, "height": 800})
                await page.screenshot(path=ARTIFACTS / "alerts-console-1280.png", full_page=True)

                await acked.locator("button[data-action='clear']").click()
                await page.locator("#recent-list li[data-state='cleared_ack']").wait_for()
                await page.locator("#alerts-empty").wait_for()
                who = await page.locator("#recent-list [data-testid='alert-who']").inner_text()
                assert "Cleared by ana" in who
        finally:
            view_task.cancel()
            await asyncio.gather(view_task, return_exceptions=True)
            seat.crash()
            async with mqtt_client(stack.broker) as pub:
                await pub.publish(tasks_topic, b"", qos=1, retain=True)
            api_db.close()
