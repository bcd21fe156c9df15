"""'Usually busy at this hour': history in a real InfluxDB -> forecast -> state -> API."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta

import httpx
import pytest

from stackpulse.kernel.schema import zone_point
from stackpulse.kernel.store import open_store
from stackpulse.services.occupancy.forecast import history_query, hour_of_week, weekly_profile
from stackpulse.services.occupancy.logic import SeatTiming
from stackpulse.services.occupancy.site import SiteOccupancy
from stackpulse.services.occupancy.view import OccupancyView
from stackpulse.simulators.synth import synthetic_layout
from tests.support.app import app_for

LAYOUT = synthetic_layout(site="main", floors=1, rooms_per_floor=1, seats_per_room=2)
TUESDAY = date(2026, 11, 24)


def occupancy_at(local: datetime) -> int:
    """The history: the lobby is busy on Tuesdays 14:00-15:00, nearly empty otherwise."""
    return 40 if (local.weekday(), local.hour) == (1, 14) else 2


async def test_forecast_is_the_mean_of_the_same_hour_in_past_weeks(influx_db: str) -> None:
    tz = LAYOUT.tz
    now = datetime.combine(TUESDAY, time(14, 20), tz).astimezone(UTC)
    points = []
    t = now - timedelta(weeks=3)
    while t < now - timedelta(hours=1):
        local = t.astimezone(tz)
        for z in LAYOUT.zones:
            n = occupancy_at(local) + (4 if local.date() == TUESDAY - timedelta(weeks=1) else 0)
            points.append(
                zone_point(
                    LAYOUT.site,
                    z.id,
                    z.floor,
                    occupancy=n if z.id == "lobby" else 0,
                    capacity=z.capacity,
                    seats_total=0,
                    seats_free=0,
                    seats_occupied=0,
                    seats_held=0,
                    seats_unknown=0,
                    ts=t,
                )
            )
        t += timedelta(minutes=10)
    # Another site's history must not leak in.
    points.append(
        zone_point(
            "law",
            "lobby",
            1,
            occupancy=999,
            capacity=1000,
            seats_total=0,
            seats_free=0,
            seats_occupied=0,
            seats_held=0,
            seats_unknown=0,
            ts=now - timedelta(weeks=1),
        )
    )
    store = open_store(influx_db)
    try:
        await store.write(points)
        rows = await store.query(history_query(LAYOUT.site, now, weeks=4))
    finally:
        await store.close()
    profile = weekly_profile(rows, tz)
    # Three past Tuesdays at 14h: 40, 40 and 44 (last week was busier).
    assert profile["lobby"][1 * 24 + 14] == pytest.approx(124 / 3)
    assert profile["lobby"][1 * 24 + 15] == pytest.approx(10 / 3)

    site = SiteOccupancy(LAYOUT, SeatTiming(), "lib/v1", privacy_floor=5)
    messages = {m.topic: m.payload for m in site.forecast_messages(profile, now, hours=3)}
    lobby = json.loads(messages["lib/v1/main/_state/occupancy/forecast/lobby"])
    at = [h["at"] for h in lobby["hours"]]
    assert at[0] == "2026-11-24T06:00:00.000Z"  # 14:00 in Shanghai
    assert [h["occupancy"] for h in lobby["hours"]] == [41, None, None]  # 3: below the floor
    assert [h["busyness"] for h in lobby["hours"]] == ["busy", "quiet", "quiet"]

    view = OccupancyView("lib/v1")
    for topic, body in messages.items():
        view.apply(topic, body)
    view.apply("lib/v1/main/_state/occupancy/forecast/nowhere", b"{bad")  # ignored, logged
    transport = httpx.ASGITransport(app=app_for([LAYOUT], view))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        got = (await http.get("/api/v1/sites/main/forecast")).json()
        assert (await http.get("/api/v1/sites/nope/forecast")).status_code == 404
    assert [f["id"] for f in got] == sorted(z.id for z in LAYOUT.zones)
    first = next(f for f in got if f["id"] == "lobby")["hours"][0]
    assert (first["occupancy"], first["busyness"]) == (41, "busy")


def test_snapshots_carry_the_typical_figure_once_a_profile_exists() -> None:
    """Each zone snapshot gets a zone_typical point beside it (the dashboards' "today vs a
    typical day"), from the forecaster's latest profile; none before there is one."""
    layout = synthetic_layout()
    site = SiteOccupancy(layout, SeatTiming(), "lib/v1")
    at = datetime(2026, 11, 24, 10, 30, tzinfo=UTC)
    assert all(p.measurement == "zone_occupancy" for p in site.zone_points(at))
    first = layout.zones[0]
    site.profile = {first.id: {hour_of_week(at, layout.tz): 12.5}}
    typical = [p for p in site.zone_points(at) if p.measurement == "zone_typical"]
    assert [(p.tags["zone"], p.fields["typical"]) for p in typical] == [(first.id, 12.5)]
    later = at + timedelta(hours=1)  # no figure for that hour of the week: nothing written
    assert not [p for p in site.zone_points(later) if p.measurement == "zone_typical"]
