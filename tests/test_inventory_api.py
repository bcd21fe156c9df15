"""Staff inventory API: the read model, guarded routes, protocol fields and the live stream."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from stackpulse.kernel.auth import Role
from stackpulse.kernel.layout import Layout
from stackpulse.kernel.topics import state_topic
from stackpulse.services.inventory.view import InventoryView
from stackpulse.services.occupancy.view import OccupancyView
from stackpulse.web.auth import AuthService
from tests.support.app import app_for
from tests.support.browser import serve_app
from tests.test_inventory_service import staff_auth, token_for

ROOT = "lib/v1"
MAIN = Layout.model_validate(
    {
        "site": "main",
        "name": "Main",
        "zones": [{"id": "f1", "name": "F1", "floor": 1, "capacity": 9}],
    }
)
LAW = Layout.model_validate(
    {"site": "law", "name": "Law", "zones": [{"id": "l1", "name": "L1", "floor": 1, "capacity": 9}]}
)
ROUTES = ["items/misplaced", "items/missing", "items/reshelving", "tasks", "inventory/stream"]


def misplaced(item: str, since: str = "2026-11-24T09:10:00Z") -> dict[str, Any]:
    return {
        "item": item,
        "call_number": "A10 .B2 2001",
        "title": "Alpha of things",
        "seen_section": "1F-A01-2",
        "expected_sections": ["1F-A01-1"],
        "since": since,
    }


def missing(item: str) -> dict[str, Any]:
    return {
        "item": item,
        "call_number": "Q76 .D4 2010",
        "title": "Quanta for all",
        "last_seen_section": "2F-Q01-1",
        "last_seen_at": "2026-11-24T08:00:00+00:00",
        "since": "2026-11-24T09:30:00Z",
    }


def task(item: str, floor: int | None, order: tuple[int, int]) -> dict[str, Any]:
    return {
        "item": item,
        "call_number": "A10 .B2 2001",
        "title": f"Title of {item}",
        "from_section": "1F-A01-2",
        "to_section": "1F-A01-1",
        "floor": floor,
        "opened_at": "2026-11-24T09:20:00Z",
        "order": list(order),
    }


def doc(site: str, name: str, items: list[dict[str, Any]], total: int | None = None) -> bytes:
    body = {
        "site": site,
        "list": name,
        "updated_at": "2026-11-24T09:20:01Z",
        "total": len(items) if total is None else total,
        "items": items,
    }
    return json.dumps(body).encode()


def topic(site: str, name: str) -> str:
    return state_topic(ROOT, site, "inventory", "list", name)


def fed_view() -> InventoryView:
    view = InventoryView(ROOT)
    view.apply(topic("main", "misplaced"), doc("main", "misplaced", [misplaced("1001")]))
    view.apply(topic("main", "missing"), doc("main", "missing", [missing("1003")]))
    reshelving = {
        "item": "1004",
        "call_number": "Q80 .E5 2015",
        "title": "Questions",
        "checked_in_at": "2026-11-24T07:00:00Z",
        "overdue_since": "2026-11-24T09:00:00Z",
    }
    view.apply(topic("main", "reshelving"), doc("main", "reshelving", [reshelving]))
    tasks = [
        task("b", 2, (3, 0)),
        task("c", None, (0, 0)),
        task("a", 2, (1, 4)),
        task("d", 1, (0, 1)),
    ]
    view.apply(topic("main", "tasks"), doc("main", "tasks", tasks))
    view.apply(topic("law", "misplaced"), doc("law", "misplaced", [misplaced("L-9")]))
    return view


@pytest.fixture
async def api() -> AsyncIterator[tuple[httpx.AsyncClient, AuthService, InventoryView]]:
    auth = staff_auth()
    view = fed_view()
    app = app_for([MAIN, LAW], OccupancyView(ROOT), inventory=view, auth=auth, ping_seconds=0.2)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http, auth, view


def bearer(
    auth: AuthService, role: Role = "staff", sites: tuple[str, ...] = ("main",)
) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_for(auth, 'ana', role, sites)}"}


async def test_every_staff_route_needs_a_token_of_staff_of_that_site(
    api: tuple[httpx.AsyncClient, AuthService, InventoryView],
) -> None:
    http, auth, _ = api
    for route in ROUTES:
        answer = await http.get(f"/api/v1/sites/main/{route}")
        assert answer.status_code == 401, route
        assert answer.headers["www-authenticate"].startswith("Bearer")
        answer = await http.get(
            f"/api/v1/sites/main/{route}", headers={"Authorization": "Bearer x"}
        )
        assert answer.status_code == 401, route
        answer = await http.get(f"/api/v1/sites/law/{route}", headers=bearer(auth))
        assert answer.status_code == 403, route  # staff of main only
        assert "not assigned to site 'law'" in answer.json()["detail"]
    # A manager sees every site; an unknown one is a 404 naming the known ones.
    answer = await http.get(
        "/api/v1/sites/nope/items/misplaced", headers=bearer(auth, "manager", ())
    )
    assert answer.status_code == 404 and "main" in answer.json()["detail"]
    answer = await http.get(
        "/api/v1/sites/law/items/misplaced", headers=bearer(auth, "manager", ())
    )
    assert [i["item"] for i in answer.json()] == ["L-9"]


async def test_lists_carry_exactly_the_protocol_fields_in_utc(
    api: tuple[httpx.AsyncClient, AuthService, InventoryView],
) -> None:
    http, auth, _ = api
    headers = bearer(auth)
    (item,) = (await http.get("/api/v1/sites/main/items/misplaced", headers=headers)).json()
    assert item == {**misplaced("1001"), "since": "2026-11-24T09:10:00.000Z"}
    (gone,) = (await http.get("/api/v1/sites/main/items/missing", headers=headers)).json()
    assert set(gone) >= {"item", "call_number", "title", "last_seen_section", "last_seen_at"}
    assert gone["last_seen_at"] == "2026-11-24T08:00:00.000Z"
    (back,) = (await http.get("/api/v1/sites/main/items/reshelving", headers=headers)).json()
    assert back["item"] == "1004" and back["overdue_since"] == "2026-11-24T09:00:00.000Z"


async def test_tasks_come_by_floor_in_walking_order(
    api: tuple[httpx.AsyncClient, AuthService, InventoryView],
) -> None:
    http, auth, _ = api
    floors = (await http.get("/api/v1/sites/main/tasks", headers=bearer(auth))).json()
    assert [(f["floor"], [t["item"] for t in f["tasks"]]) for f in floors] == [
        (1, ["d"]),
        (2, ["a", "b"]),
        (None, ["c"]),
    ]
    first = floors[0]["tasks"][0]
    assert first["from_section"] == "1F-A01-2" and first["to_section"] == "1F-A01-1"
    assert first["opened_at"] == "2026-11-24T09:20:00.000Z"


async def test_the_stream_sends_a_snapshot_then_each_changed_list() -> None:
    auth = staff_auth()
    view = fed_view()
    app = app_for([MAIN, LAW], OccupancyView(ROOT), inventory=view, auth=auth, ping_seconds=0.2)
    async with (
        asyncio.timeout(20),
        serve_app(app) as base,
        httpx.AsyncClient(base_url=base, headers=bearer(auth), timeout=10) as http,
        http.stream("GET", "/api/v1/sites/main/inventory/stream") as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse(response.aiter_lines())
        name, snapshot = await anext(events)
        assert name == "snapshot" and snapshot["site"] == "main"
        assert [i["item"] for i in snapshot["misplaced"]] == ["1001"]
        assert [f["floor"] for f in snapshot["tasks"]] == [1, 2, None]
        # Another site's change is not ours; an unchanged republish is nothing.
        view.apply(topic("law", "misplaced"), doc("law", "misplaced", []))
        view.apply(topic("main", "missing"), doc("main", "missing", [missing("1003")]))
        view.apply(topic("main", "tasks"), doc("main", "tasks", [task("z", 3, (0, 0))]))
        name, data = await anext(events)
        assert name == "tasks"
        assert data == [{"floor": 3, "tasks": [{**task("z", 3, (0, 0)), "opened_at": ANY_TS}]}]
    await asyncio.sleep(0.1)
    assert view.subscribers == 0  # the client left, and so did its feed


class _AnyTimestamp:
    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and other.endswith("Z") and "T" in other


ANY_TS: Any = _AnyTimestamp()


async def sse(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str, Any]]:
    name, data = "message", list[str]()
    async for line in lines:
        if line == "":
            if data:
                yield name, json.loads("\n".join(data))
            name, data = "message", []
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)


def test_the_view_reads_only_good_lists_of_its_root(caplog: pytest.LogCaptureFixture) -> None:
    view = InventoryView(ROOT)
    caplog.set_level(logging.WARNING)
    good = doc("main", "misplaced", [misplaced("1001")])
    assert view.apply(topic("main", "misplaced"), good) == "misplaced"
    assert view.apply(topic("main", "misplaced"), good) is None  # unchanged
    ignored_quietly = [
        (state_topic(ROOT, "main", "inventory", "change", "misplaced"), b'{"item": "x"}'),
        (state_topic(ROOT, "main", "occupancy", "zone", "f1"), b"{}"),
        (state_topic("other/v1", "main", "inventory", "list", "misplaced"), good),
        (state_topic(ROOT, "main", "inventory", "list", "unknown"), good),
    ]
    for t, payload in ignored_quietly:
        assert view.apply(t, payload) is None
    assert caplog.records == []
    bad = [
        b"{",
        doc("main", "misplaced", [{**misplaced("1"), "since": "yesterday"}]),
        doc("law", "misplaced", []),  # a site that differs from the topic's
    ]
    for payload in bad:
        assert view.apply(topic("main", "misplaced"), payload) is None
    assert len(caplog.records) == 3
    assert [i.item for i in view.misplaced("main")] == ["1001"]
    assert view.apply(topic("main", "misplaced"), b"") is None  # cleared
    assert view.misplaced("main") == [] and view.tasks("main") == []


async def test_the_staff_page_is_served_with_no_data_in_it(
    api: tuple[httpx.AsyncClient, AuthService, InventoryView],
) -> None:
    http, _, _ = api
    for path in ("/staff", "/staff/main", "/staff/law"):
        answer = await http.get(path)
        assert answer.status_code == 200 and "<html" in answer.text.lower(), path
        assert "1001" not in answer.text
    assert (await http.get("/staff/nope")).status_code == 404
    assert (await http.get("/static/inventory/app.js")).status_code == 200
    schema = (await http.get("/openapi.json")).json()
    for route in ROUTES:
        assert f"/api/v1/sites/{{site}}/{route}" in schema["paths"], route


# -- demand: managers only ---------------------------------------------------------------


def demand_row(title: str, score: float) -> dict[str, Any]:
    return {
        "title": title,
        "call_number": "QA76.73 .P98 2001",
        "call_class": "QA76",
        "copies": 2,
        "score": score,
        "signals": {"use": 1, "checkout": 2, "checkin": 1, "renew": 0, "hold": 4},
        "suggest_purchase": score > 5,
        "reason": "4 holds on 2 copies (2 per copy, threshold 2)" if score > 5 else None,
    }


def demand_doc(site: str, items: list[dict[str, Any]]) -> bytes:
    return json.dumps({"site": site, "updated_at": "2026-11-24T09:20:01Z", "items": items}).encode()


def demand_view() -> InventoryView:
    view = fed_view()
    ranked = [demand_row("Python", 8.5), demand_row("Rust", 3.0), demand_row("Go", 1.0)]
    view.apply(
        state_topic(ROOT, "main", "inventory", "demand", "ranked"), demand_doc("main", ranked)
    )
    classes = [
        {
            "call_class": "QA76",
            "copies": 40,
            "titles": 3,
            "score": 25.0,
            "per_copy": 0.625,
            "signals": {"use": 3, "checkout": 6, "checkin": 3, "renew": 0, "hold": 12},
        }
    ]
    view.apply(
        state_topic(ROOT, "main", "inventory", "demand", "classes"), demand_doc("main", classes)
    )
    # Not ours: a wrong site in the payload, an unknown name, garbage.
    view.apply(state_topic(ROOT, "law", "inventory", "demand", "ranked"), demand_doc("main", []))
    view.apply(state_topic(ROOT, "main", "inventory", "demand", "other"), b"{}")
    view.apply(state_topic(ROOT, "law", "inventory", "demand", "classes"), b"{not json")
    return view


async def test_demand_is_for_managers_of_the_site_ranked_and_limited() -> None:
    auth = staff_auth()
    app = app_for([MAIN, LAW], OccupancyView(ROOT), inventory=demand_view(), auth=auth)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        for route in ("demand", "demand/classes"):
            url = f"/api/v1/sites/main/{route}"
            assert (await http.get(url)).status_code == 401
            answer = await http.get(url, headers=bearer(auth, "staff"))
            assert answer.status_code == 403, route  # staff of the site: not managers
            assert answer.json()["detail"] == "a staff may not do this"
            # Managers and admins see every site (kernel.auth.Principal.all_sites).
            assert (await http.get(url, headers=bearer(auth, "manager", ("law",)))).is_success
            assert (await http.get(url, headers=bearer(auth, "admin", ()))).status_code == 200
        manager = bearer(auth, "manager", ("main",))
        rows = (await http.get("/api/v1/sites/main/demand", headers=manager)).json()
        assert [r["title"] for r in rows] == ["Python", "Rust", "Go"]
        assert rows[0] == demand_row("Python", 8.5)
        top = await http.get("/api/v1/sites/main/demand?limit=2", headers=manager)
        assert [r["title"] for r in top.json()] == ["Python", "Rust"]
        for bad in ("0", "101", "x"):
            answer = await http.get(f"/api/v1/sites/main/demand?limit={bad}", headers=manager)
            assert answer.status_code == 422, bad
        (cls,) = (await http.get("/api/v1/sites/main/demand/classes", headers=manager)).json()
        assert cls["call_class"] == "QA76" and cls["per_copy"] == 0.625
        everywhere = bearer(auth, "manager", ())
        assert (await http.get("/api/v1/sites/law/demand", headers=everywhere)).json() == []
        answer = await http.get("/api/v1/sites/nope/demand", headers=everywhere)
        assert answer.status_code == 404
