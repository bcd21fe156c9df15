"""The counting-health dashboard's queries, run on a real InfluxDB holding simulated drift."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta

from stackpulse.dashboards.build import HEALTH_UID, build_all
from stackpulse.dashboards.cli import GENERATED_DIR
from stackpulse.dashboards.influx import expand_macros, panel_queries
from stackpulse.kernel.store import open_store
from stackpulse.services.occupancy.logic import SeatTiming
from stackpulse.services.occupancy.site import SiteOccupancy
from stackpulse.simulators import Faults, LibraryModel, SimConfig
from stackpulse.simulators.synth import synthetic_layout
from tests.test_occupancy_service import run_day

LAYOUT = synthetic_layout(site="main", floors=1, rooms_per_floor=2, seats_per_room=4)


def test_committed_health_dashboard_is_what_the_code_builds() -> None:
    committed = (GENERATED_DIR / "counting-health.json").read_text(encoding="utf-8")
    assert committed == build_all()["counting-health.json"]
    assert json.loads(committed)["uid"] == HEALTH_UID


async def test_drift_panels_show_each_closing_of_each_zone(influx_db: str) -> None:
    day = date(2026, 11, 24)
    start = datetime.combine(day, time(8), LAYOUT.tz).astimezone(UTC)
    end = datetime.combine(day + timedelta(1), time(23), LAYOUT.tz).astimezone(UTC)
    faults = Faults(missed_exit_p=0.08)
    model = LibraryModel(LAYOUT, start=start, seed=21, config=SimConfig(faults=faults))
    site = SiteOccupancy(LAYOUT, SeatTiming(), "lib/v1")
    run_day(site, model, end, timedelta(minutes=5))
    assert len(site.drift) == 2  # Tuesday's and Wednesday's closings
    assert any(v > 0 for _, d in site.drift for v in d.values())
    points = site.take_points()
    assert len(points) == 2 * len(LAYOUT.zones)

    board = json.loads(build_all()["counting-health.json"])
    queries = panel_queries(board)
    assert len(queries) == 2
    store = open_store(influx_db)
    try:
        await store.write(points)
        for title, _, text in queries:
            sent = expand_macros(
                text, start=start, end=end, interval="1h", variables={"site": "main"}
            )
            rows = await store.raw_query(sent)
            assert {r["zone"] for r in rows} == {z.id for z in LAYOUT.zones}, title
            if "last(" in sent:
                last = site.drift[-1][1]
                assert {r["zone"]: r["last"] for r in rows} == {z: abs(v) for z, v in last.items()}
            else:
                got = sorted((r["zone"], r["drift"]) for r in rows)
                want = sorted((z, v) for _, d in site.drift for z, v in d.items())
                assert got == want, title
        other = expand_macros(
            queries[0][2], start=start, end=end, interval="1h", variables={"site": "law"}
        )
        assert await store.raw_query(other) == []
    finally:
        await store.close()
