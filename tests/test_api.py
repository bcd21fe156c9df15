"""Occupancy read model and HTTP API, fed through a real Mosquitto and served by uvicorn."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stackpulse.kernel.bus import client as mqtt_client
from stackpulse.kernel.bus import parse_broker_url
from stackpulse.kernel.layout import Layout
from stackpulse.kernel.topics import state_topic
from stackpulse.services.occupancy.view import OccupancyView, SeatView, run_view
from tests.support.app import app_for
from tests.support.browser import publish_retained, serve_app
from tests.support.procs import MosquittoProc
from tests.support.waiting import wait_until

ZONE_FIELDS = {
    "id",
    "name",
    "floor",
    "capacity",
    "occupancy",
    "seats_total",
    "seats_free",
    "busyness",
    "updated_at",
}
SEAT_FIELDS = {"id", "zone", "state", "since"}
# Fields beyond protocol.md section 5's minimum ("more fields may be added").
ZONE_EXTRAS = {"occupancy_band"}
SEAT_EXTRAS = {"features", "x", "y", "held_since", "held_too_long"}
ROOT = "lib/v1"

MAIN = Layout.model_validate(
    {
        "site": "main",
        "name": "Main Library",
        "timezone": "Asia/Shanghai",
        "zones": [
            {"id": "f1-reading", "name": "1F Reading Room", "floor": 1, "capacity": 100},
            {"id": "f2-quiet", "name": "2F Silent Study", "floor": 2, "capacity": 40},
        ],
        "seats": [
            {"id": "f1-r-001", "device": "seat-1", "zone": "f1-reading", "x": 0.0, "y": 0.0},
            {"id": "f1-r-002", "device": "seat-2", "zone": "f1-reading", "x": 2.0, "y": 0.0},
            {"id": "f2-q-001", "device": "seat-3", "zone": "f2-quiet"},
        ],
    }
)
LAW = Layout.model_validate(
    {
        "site": "law",
        "name": "Law Library",
        "zones": [{"id": "l1", "name": "L1", "floor": 1, "capacity": 9}],
    }
)
LAYOUTS = [MAIN, LAW]


def zone(zid: str, seats_free: int, *, seats_total: int = 2, occupancy: int = 10) -> dict[str, Any]:
    z = next(z for lay in LAYOUTS for z in lay.zones if z.id == zid)
    return {
        "id": zid,
        "name": z.name,
        "floor": z.floor,
        "capacity": z.capacity,
        "occupancy": occupancy,
        "seats_total": seats_total,
        "seats_free": seats_free,
        "busyness": "quiet",
        "updated_at": "2026-11-24T10:42:00Z",
    }


def seat(sid: str, zid: str, state: str, **extra: Any) -> dict[str, Any]:
    return {"id": sid, "zone": zid, "state": state, "since": "2026-11-24T10:00:00Z", **extra}


def msg(root: str, site: str, item: dict[str, Any], what: str) -> tuple[str, bytes]:
    return state_topic(root, site, "occupancy", what, item["id"]), json.dumps(item).encode()


def initial_state(root: str) -> list[tuple[str, bytes]]:
    return [
        msg(root, "main", zone("f1-reading", 1), "zone"),
        msg(root, "main", zone("f2-quiet", 0, seats_total=1), "zone"),
        msg(root, "main", seat("f1-r-001", "f1-reading", "free", x=0.0, y=0.0), "seat"),
        msg(root, "main", seat("f1-r-002", "f1-reading", "held", features=["power"]), "seat"),
        msg(root, "main", seat("f2-q-001", "f2-quiet", "unknown"), "seat"),
        msg(root, "law", zone("l1", 0, seats_total=0), "zone"),
        (state_topic(root, "main", "occupancy", "seat", "f9-bad"), b"{not json"),
        (state_topic(root, "main", "inventory", "item", "x1"), b'{"anything": 1}'),
    ]


@pytest.fixture
async def fed_view(mosquitto: MosquittoProc, mqtt_root: str) -> AsyncIterator[OccupancyView]:
    """A view fed by run_view from retained messages that paho put on the broker."""
    await asyncio.to_thread(
        publish_retained, mosquitto.host, mosquitto.port, initial_state(mqtt_root)
    )
    view = OccupancyView(mqtt_root)
    async with mqtt_client(parse_broker_url(mosquitto.url)) as mqtt:
        task = asyncio.create_task(run_view(view, mqtt, mqtt_root), name="test-view")
        await wait_until(lambda: len(view.seats("main")) == 3 and len(view.zones("law")) == 1)
        yield view
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def api(view: OccupancyView, **kwargs: Any) -> httpx.AsyncClient:
    app = app_for(LAYOUTS, view, **kwargs)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test")


# ---- list endpoints through the real broker ------------------------------------------


@pytest.mark.integration
async def test_zones_carry_exactly_the_protocol_fields(fed_view: OccupancyView) -> None:
    async with api(fed_view) as http:
        response = await http.get("/api/v1/sites/main/zones")
    assert response.status_code == 200
    zones = response.json()
    assert [z["id"] for z in zones] == ["f1-reading", "f2-quiet"]
    assert all(set(z) == ZONE_FIELDS | ZONE_EXTRAS for z in zones)
    first = zones[0]
    assert (first["seats_free"], first["seats_total"], first["busyness"]) == (1, 2, "quiet")
    assert first["updated_at"].endswith("Z")
    assert datetime.fromisoformat(first["updated_at"]) == datetime(2026, 11, 24, 10, 42, tzinfo=UTC)


@pytest.mark.integration
async def test_seats_carry_the_protocol_fields_and_filter_by_zone(
    fed_view: OccupancyView,
) -> None:
    async with api(fed_view) as http:
        every = (await http.get("/api/v1/sites/main/seats")).json()
        reading = (await http.get("/api/v1/sites/main/seats", params={"zone": "f1-reading"})).json()
        quiet = (await http.get("/api/v1/sites/main/seats?zone=f2-quiet")).json()
    assert [s["id"] for s in every] == ["f1-r-001", "f1-r-002", "f2-q-001"]
    assert all(SEAT_FIELDS <= set(s) <= SEAT_FIELDS | SEAT_EXTRAS for s in every)
    assert [(s["id"], s["state"]) for s in reading] == [("f1-r-001", "free"), ("f1-r-002", "held")]
    assert reading[1]["features"] == ["power"] and reading[0]["x"] == 0.0
    assert [(s["id"], s["state"]) for s in quiet] == [("f2-q-001", "unknown")]


@pytest.mark.integration
async def test_bad_and_foreign_state_messages_do_not_reach_the_api(
    fed_view: OccupancyView,
) -> None:
    assert "f9-bad" not in {s.id for s in fed_view.seats("main")}
    assert fed_view.sites() == ["law", "main"]  # inventory's state is not read as ours


@pytest.mark.integration
async def test_unknown_site_and_zone_are_404_with_a_clear_detail(fed_view: OccupancyView) -> None:
    async with api(fed_view) as http:
        for path in ("zones", "seats", "stream"):
            response = await http.get(f"/api/v1/sites/nowhere/{path}")
            assert response.status_code == 404
            assert response.json()["detail"] == "unknown site 'nowhere'; known sites: law, main"
        response = await http.get("/api/v1/sites/main/seats", params={"zone": "l1"})
        assert response.status_code == 404
        assert response.json()["detail"] == "unknown zone 'l1' in site 'main'"
        # A zone of the layout with no state yet is empty, not missing.
        assert (await http.get("/api/v1/sites/law/seats?zone=l1")).json() == []


async def test_sites_health_page_and_openapi() -> None:
    async with api(OccupancyView()) as http:
        sites = (await http.get("/api/v1/sites")).json()
        assert sites == [
            {"id": "main", "name": "Main Library", "timezone": "Asia/Shanghai"},
            {"id": "law", "name": "Law Library", "timezone": "UTC"},
        ]
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        for page in ("/", "/sites/law"):
            response = await http.get(page)
            assert response.status_code == 200 and "text/html" in response.headers["content-type"]
        assert (await http.get("/sites/nowhere")).status_code == 404
        assert (await http.get("/static/occupancy/app.js")).status_code == 200
        spec = (await http.get("/openapi.json")).json()
    paths = spec["paths"]
    for path in ("zones", "seats", "stream"):
        assert "get" in paths[f"/api/v1/sites/{{site}}/{path}"]
    assert "/api/v1/sites" in paths and "/healthz" in paths
    schemas = spec["components"]["schemas"]
    assert set(schemas["Zone"]["properties"]) == ZONE_FIELDS | ZONE_EXTRAS
    assert set(schemas["Seat"]["properties"]) >= SEAT_FIELDS
    seats_ok = paths["/api/v1/sites/{site}/seats"]["get"]["responses"]["200"]
    assert seats_ok["content"]["application/json"]["schema"]["items"]["$ref"].endswith("/Seat")
    assert (
        "text/event-stream"
        in paths["/api/v1/sites/{site}/stream"]["get"]["responses"]["200"]["content"]
    )


# ---- the live stream, over a real server -------------------------------------------


async def sse(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str, Any]]:
    """(event, decoded data) for each event of a text/event-stream; comments skipped."""
    event, data = "message", list[str]()
    async for line in lines:
        if not line:
            if data:
                yield event, json.loads("\n".join(data))
            event, data = "message", []
        elif not line.startswith(":"):
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)


@pytest.mark.integration
async def test_stream_sends_a_snapshot_then_a_seat_change_published_later(
    fed_view: OccupancyView, mosquitto: MosquittoProc, mqtt_root: str
) -> None:
    async with (
        asyncio.timeout(20),
        serve_app(app_for(LAYOUTS, fed_view)) as base,
        httpx.AsyncClient(base_url=base, timeout=10) as http,
        http.stream("GET", "/api/v1/sites/main/stream") as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse(response.aiter_lines())
        name, snapshot = await anext(events)
        assert name == "snapshot" and snapshot["site"] == "main"
        assert {s["id"]: s["state"] for s in snapshot["seats"]}["f1-r-001"] == "free"
        assert all(set(z) == ZONE_FIELDS | ZONE_EXTRAS for z in snapshot["zones"])

        changed = seat("f1-r-001", "f1-reading", "occupied")
        changed["since"] = "2026-11-24T10:43:00Z"
        await asyncio.to_thread(
            publish_retained,
            mosquitto.host,
            mosquitto.port,
            [
                msg(mqtt_root, "law", zone("l1", 0, seats_total=0, occupancy=3), "zone"),
                msg(mqtt_root, "main", changed, "seat"),
            ],
        )
        name, data = await anext(events)
    await wait_until(lambda: fed_view.subscribers == 0)  # the client left, and so did its feed
    # The law site's change went to law's subscribers only.
    assert name == "seat"
    assert data["id"] == "f1-r-001" and data["state"] == "occupied"
    assert data["since"] == "2026-11-24T10:43:00.000Z"
    assert set(data) >= SEAT_FIELDS


async def test_stream_keeps_alive_and_drops_a_client_that_falls_behind() -> None:
    view = OccupancyView(ROOT, queue_size=2)
    app = app_for(LAYOUTS, view, ping_seconds=0.2)
    async with (
        asyncio.timeout(20),
        serve_app(app) as base,
        httpx.AsyncClient(base_url=base, timeout=10) as http,
        http.stream("GET", "/api/v1/sites/main/stream") as response,
    ):
        lines = response.aiter_lines()
        while not (await anext(lines)).startswith(": ping"):
            pass  # a keep-alive comment arrives while nothing changes
        # Three changes in one go, before the stream can take any: one too many.
        for state in ("occupied", "free", "held"):
            view.apply(*msg(ROOT, "main", seat("f1-r-001", "f1-reading", state), "seat"))
        events = [e async for e in sse(lines)]
    assert [name for name, _ in events] == ["reset"]  # what was queued is dropped too
    assert "fell behind" in events[0][1]["reason"]
    assert view.subscribers == 0


# ---- the read model on its own -------------------------------------------------------


def test_view_ignores_bad_payloads_with_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    view = OccupancyView(ROOT)
    topic, good = msg(ROOT, "main", seat("f1-r-001", "f1-reading", "free"), "seat")
    caplog.set_level(logging.WARNING)
    bad = [
        b"{",
        json.dumps(seat("f1-r-001", "f1-reading", "vacant")).encode(),
        json.dumps(seat("f1-r-002", "f1-reading", "free")).encode(),  # id differs from topic
        json.dumps({**zone("f1-reading", 1), "occupancy": "lots"}).encode(),
    ]
    for payload in bad:
        assert view.apply(topic, payload) is None
    assert view.seats("main") == []
    assert len(caplog.records) == 4 and all(topic in r.getMessage() for r in caplog.records)
    assert view.apply(topic, good) is not None
    assert view.apply(topic, good) is None  # a redelivered retained message changes nothing
    assert view.apply(topic, b"") is None and view.seats("main") == []  # retained cleared


async def test_subscription_is_bounded_and_per_site() -> None:
    view = OccupancyView(ROOT)
    main = view.subscribe("main", maxsize=2)
    law = view.subscribe("law", maxsize=2)
    for state in ("free", "occupied", "held"):
        view.apply(*msg(ROOT, "main", seat("f1-r-001", "f1-reading", state), "seat"))
    assert main.reason is not None and "more than 2" in main.reason
    assert [c async for c in main] == []  # a dropped feed ends at once
    assert law.reason is None and view.subscribers == 1
    waiting = asyncio.create_task(anext(law))
    await asyncio.sleep(0)
    law.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(waiting, 1)
    assert view.subscribers == 0


@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b", "c"]), st.sampled_from(["free", "held", "unknown"]))
    )
)
def test_view_holds_the_last_state_and_reports_only_real_changes(
    updates: list[tuple[str, str]],
) -> None:
    view = OccupancyView(ROOT)
    last: dict[str, str] = {}
    expected, got = [], []
    for ident, state in updates:
        change = view.apply(*msg(ROOT, "main", seat(ident, "z", state), "seat"))
        if last.get(ident) != state:
            expected.append((ident, state))
        last[ident] = state
        if change is not None:
            assert isinstance(change.item, SeatView) and change.what == "seat"
            got.append((change.item.id, change.item.state))
    assert {s.id: s.state for s in view.seats("main")} == last
    assert got == expected


def test_a_small_crowd_and_a_hogged_seat_reach_the_api_as_published() -> None:
    view = OccupancyView(ROOT)
    few = zone("f1-reading", 1) | {"occupancy": None, "occupancy_band": "few"}
    view.apply(*msg(ROOT, "main", few, "zone"))
    hog = seat(
        "f1-r-002", "f1-reading", "held", held_since="2026-11-24T09:00:00Z", held_too_long=True
    )
    view.apply(*msg(ROOT, "main", hog, "seat"))
    [z] = view.zones("main")
    assert z.occupancy is None and z.occupancy_band == "few"
    [s] = view.seats("main")
    assert s.held_too_long and s.held_since is not None
    assert s.model_dump(mode="json")["held_since"] == "2026-11-24T09:00:00.000Z"
