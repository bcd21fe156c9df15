"""Dashboards as code: the committed JSON is what the code builds; every query runs on InfluxDB."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models.dashboard import Dashboard

from stackpulse.dashboards.build import DATASOURCE_UID, OCCUPANCY_UID, build_all
from stackpulse.dashboards.cli import GENERATED_DIR, main, push_payload
from stackpulse.dashboards.influx import (
    Arith,
    Call,
    InfluxQLQuery,
    expand_macros,
    panel_queries,
    render_computed,
    variable_queries,
    variant_config,
)
from stackpulse.kernel.layout import Layout
from stackpulse.kernel.store import Point, open_store
from stackpulse.kernel.store.influxql import Agg, Query, TagEq
from stackpulse.services.occupancy.logic import SeatTiming
from stackpulse.services.occupancy.site import SiteOccupancy
from stackpulse.simulators import messages
from stackpulse.simulators.synth import synthetic_layout
from tests.support.events import sim_event

ROOT = Path(__file__).resolve().parent.parent
PROVISIONING = ROOT / "dashboards" / "provisioning"
DAY_START = datetime(2026, 11, 24, tzinfo=UTC)
DAY_END = DAY_START + timedelta(days=1)
INTERVAL = "5m"
_LEFT_MACRO = re.compile(r"\$\{?[A-Za-z_]|\[\[")
# Two sites whose zone sets differ, so a query that ignores $site shows up as extra zones.
SITES = {
    "main": synthetic_layout(site="main", floors=1, rooms_per_floor=2, seats_per_room=12),
    "law": synthetic_layout(site="law", floors=2, rooms_per_floor=1, seats_per_room=8),
}


def _committed() -> dict[str, Any]:
    return dict(json.loads((GENERATED_DIR / "occupancy.json").read_text(encoding="utf-8")))


def _panels_by_title(board: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["title"]: p for p in board["panels"]}


# -- the committed JSON ------------------------------------------------------------


def test_committed_json_is_what_the_code_builds(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build", "--check"]) == 0, capsys.readouterr().err


def test_check_fails_on_drift_and_build_repairs_it(tmp_path: Path) -> None:
    assert main(["build", "--check", "--out", str(tmp_path)]) == 1  # nothing written yet
    assert main(["build", "--out", str(tmp_path)]) == 0
    assert main(["build", "--check", "--out", str(tmp_path)]) == 0
    path = tmp_path / "occupancy.json"
    path.write_text(path.read_text().replace('"10s"', '"1m"'))
    assert main(["build", "--check", "--out", str(tmp_path)]) == 1
    (tmp_path / "occupancy.json").write_text(build_all()["occupancy.json"])
    (tmp_path / "old.json").write_text("{}")
    assert main(["build", "--check", "--out", str(tmp_path)]) == 1  # a stale leftover


def test_dashboard_has_a_grafana_shape() -> None:
    board = _committed()
    assert board["uid"] == OCCUPANCY_UID
    assert board["title"] == "StackPulse — Occupancy"
    assert board["refresh"] == "10s"
    assert board["time"] == {"from": "now-12h", "to": "now"}
    assert "stackpulse" in board["tags"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "influxdb"
    assert variables["datasource"]["current"]["value"] == DATASOURCE_UID
    assert variables["site"]["type"] == "query"
    assert variables["site"]["query"] == 'SHOW TAG VALUES FROM "zone_occupancy" WITH KEY = "site"'

    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)) >= 4
    cells: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        assert panel["datasource"] == {"type": "influxdb", "uid": "${datasource}"}
        assert panel["type"] in {"timeseries", "stat", "bargauge"}
        assert panel["fieldConfig"]["defaults"]["unit"] in {"short", "percent"}
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24 and pos["h"] > 0
        mine = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not cells & mine, f"panel {panel['title']!r} overlaps another"
        cells |= mine
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            assert target["rawQuery"] is True
            assert target["resultFormat"] == "time_series"
            assert target["datasource"] == panel["datasource"]
            if target["query"].endswith('"zone"'):  # one series per zone, named by it
                assert target["alias"] == "$tag_zone"
            else:
                assert target["alias"], f"panel {panel['title']!r} leaves series unnamed"
            assert "$timeFilter" in target["query"]
            assert re.search(r'"site" =~ /\^\$site\$/', target["query"])


def test_json_loads_back_through_the_sdk_models() -> None:
    register_default_plugins()
    cogruntime.register_dataquery_variant(variant_config())
    board = _committed()
    model = Dashboard.from_json(board)
    assert model.panels and all(
        isinstance(t, InfluxQLQuery)
        for p in model.panels
        for t in getattr(p, "targets", None) or []
    )
    assert json.loads(json.dumps(model, cls=JSONEncoder)) == board


@pytest.mark.parametrize("name", sorted(build_all()))
def test_every_dashboard_has_a_grafana_shape(name: str) -> None:
    register_default_plugins()
    cogruntime.register_dataquery_variant(variant_config())
    board = json.loads(build_all()[name])
    assert "stackpulse" in board["tags"] and board["uid"].startswith("stackpulse-")
    assert json.loads(json.dumps(Dashboard.from_json(board), cls=JSONEncoder)) == board
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["current"]["value"] == DATASOURCE_UID
    assert variables["site"]["type"] == "query" and variables["site"]["multi"] is False
    if "zone" in variables:
        assert variables["zone"]["multi"] is True and variables["zone"]["includeAll"] is True
        assert variables["zone"]["query"].endswith('WHERE "site" =~ /^$site$/')
    cells: set[tuple[int, int]] = set()
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        assert panel["datasource"] == {"type": "influxdb", "uid": "${datasource}"}
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24 and pos["h"] > 0
        mine = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not cells & mine, f"panel {panel['title']!r} overlaps another"
        cells |= mine
        assert panel["targets"] and panel.get("description"), panel["title"]
        for target in panel["targets"]:
            assert target["rawQuery"] is True and target["datasource"] == panel["datasource"]
            assert "$timeFilter" in target["query"]
            assert re.search(r'"site" =~ /\^\$site\$/', target["query"]), panel["title"]
            if "zone" in variables and '"zone"' in target["query"]:
                assert "/^$zone$/" in target["query"] or '"floor"' in target["query"]


def test_busy_and_full_thresholds_on_the_percent_panels() -> None:
    percent_panels = [
        p for p in _committed()["panels"] if p["fieldConfig"]["defaults"]["unit"] == "percent"
    ]
    assert len(percent_panels) >= 2
    for panel in percent_panels:
        steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
        assert [(s["value"], s["color"]) for s in steps] == [
            (None, "green"),
            (80, "orange"),
            (100, "red"),
        ]


def test_provisioning_names_the_datasource_the_dashboard_expects() -> None:
    ds = yaml.safe_load((PROVISIONING / "datasources" / "stackpulse.yaml").read_text())
    (source,) = ds["datasources"]
    assert source["uid"] == DATASOURCE_UID
    assert source["type"] == "influxdb"
    assert source["url"] == "${STACKPULSE_INFLUX_URL}"
    assert source["jsonData"]["dbName"] == "${STACKPULSE_INFLUX_DB}"
    assert source["jsonData"]["version"] == "InfluxQL"
    boards = yaml.safe_load((PROVISIONING / "dashboards" / "stackpulse.yaml").read_text())
    (provider,) = boards["providers"]
    assert provider["type"] == "file" and provider["options"]["path"]


# -- the InfluxQL helper and Grafana's macros -----------------------------------------


def test_computed_select_keeps_the_typed_rest_of_the_statement() -> None:
    q = Query(
        "zone_occupancy",
        (Agg("mean", "occupancy"),),
        where=(TagEq("site", "$site", variable=True),),
        group_by_time="auto",
        group_by_tags=("zone",),
        fill="null",
    )
    expr = Arith(Arith(Call("mean", "occupancy"), "/", Call("mean", "capacity")), "*", 100)
    assert render_computed(q, expr, "percent") == (
        'SELECT (mean("occupancy") / mean("capacity")) * 100 AS "percent" FROM "zone_occupancy" '
        'WHERE "site" =~ /^$site$/ AND $timeFilter GROUP BY time($__interval), "zone" fill(null)'
    )
    with pytest.raises(ValueError, match="aggregate"):
        Call("median", "occupancy")


def test_expand_macros_like_grafana() -> None:
    text = (
        'SELECT last("x") FROM "m" WHERE "site" =~ /^$site$/ AND $timeFilter '
        "GROUP BY time($__interval)"
    )
    out = expand_macros(
        text, start=DAY_START, end=DAY_END, interval="5m", variables={"site": "a.b"}
    )
    start_ms = int(DAY_START.timestamp() * 1000)
    assert out == (
        'SELECT last("x") FROM "m" WHERE "site" =~ /^a\\.b$/ AND '
        f"time >= {start_ms}ms and time <= {start_ms + 86_400_000}ms GROUP BY time(5m)"
    )


def test_push_payload_overwrites_into_the_folder() -> None:
    board = _committed()
    payload = push_payload(board, "stackpulse")
    assert payload["dashboard"]["uid"] == OCCUPANCY_UID
    assert payload["overwrite"] is True and payload["folderUid"] == "stackpulse"
    assert "folderUid" not in push_payload(board, None)


def test_push_to_nowhere_fails_with_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["push", "--grafana", "ftp://grafana", "--token", "x"]) == 2
    assert "--grafana" in capsys.readouterr().err
    argv = ["push", "--grafana", "http://127.0.0.1:9", "--token", "x", "--timeout", "2"]
    assert main([*argv, "--influx-url", "http://127.0.0.1:8086"]) == 1
    err = capsys.readouterr().err
    assert "unreachable" in err and len(err.strip().splitlines()) == 1


# -- every query against a real InfluxDB holding a simulated day --------------------------


def _simulated_day(layout: Layout, seed: int) -> list[Point]:
    """zone_occupancy as the occupancy service records it, from the simulators' stream."""
    site = SiteOccupancy(layout, SeatTiming(), "lib/v1")
    points: list[Point] = []
    record_at = DAY_START + timedelta(minutes=1)
    for m in messages(layout, DAY_START, DAY_END, seed, step=60):
        at = datetime.fromtimestamp(m.at, UTC)
        while at >= record_at:
            site.tick(record_at)
            points += site.zone_points(record_at)
            record_at += timedelta(minutes=1)
        site.apply(sim_event(m, layout.site), at)
    while record_at < DAY_END:
        site.tick(record_at)
        points += site.zone_points(record_at)
        record_at += timedelta(minutes=1)
    return points


def _value_columns(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in {"time", "zone", "site", "floor"}}


@pytest.mark.integration
@pytest.mark.timeout(120)
async def test_every_query_returns_sensible_data_from_real_influxdb(influx_db: str) -> None:
    written = {
        name: _simulated_day(layout, seed) for seed, (name, layout) in enumerate(SITES.items(), 1)
    }
    for points in written.values():
        assert any(p.fields["occupancy"] for p in points), "the simulated day had nobody in it"
    board = _committed()
    panels = _panels_by_title(board)
    # The per-zone panels of zone_occupancy; tests/test_dashboards_set.py runs all the rest.
    queries = [
        (title, ref_id, text)
        for title, ref_id, text in panel_queries(board)
        if 'FROM "zone_occupancy"' in text and text.endswith('"zone"')
    ]
    assert len(queries) >= 5

    store = open_store(influx_db)
    try:
        await store.ping()
        await store.write([p for points in written.values() for p in points])

        for name, text in variable_queries(board):
            if name == "site":
                rows = await store.raw_query(text)
                assert sorted(r["value"] for r in rows) == sorted(SITES)

        for site, layout in SITES.items():
            zones = {z.id for z in layout.zones}
            capacity = max(z.capacity for z in layout.zones)
            for title, ref_id, text in queries:
                what = f"{site}: panel {title!r} query {ref_id}"
                sent = expand_macros(
                    text,
                    start=DAY_START,
                    end=DAY_END,
                    interval=INTERVAL,
                    variables={"site": site, "zone": sorted(zones)},
                )
                assert not _LEFT_MACRO.search(sent), f"{what}: a macro was left: {sent}"
                rows = await store.raw_query(sent)
                assert rows, f"{what} returned nothing: {sent}"
                assert {r["zone"] for r in rows} == zones, f"{what}: not one series per zone"
                values = [v for r in rows for v in _value_columns(r).values() if v is not None]
                assert values, f"{what}: only nulls"
                bound = (
                    200.0
                    if panels[title]["fieldConfig"]["defaults"]["unit"] == "percent"
                    else 2.0 * capacity
                )
                assert all(isinstance(v, int | float) and math.isfinite(v) for v in values), what
                assert all(0 <= v <= bound for v in values), f"{what}: {max(values)} > {bound}"
                if "GROUP BY time(" in sent:
                    per_zone = len(rows) / len(zones)
                    assert per_zone >= 24 * 60 / 5, f"{what}: {per_zone} buckets per zone"

        # One end-to-end value: the stat shows exactly the last snapshot of each zone.
        (stat_text,) = [t for title, _, t in queries if panels[title]["type"] == "stat"]
        rows = await store.raw_query(
            expand_macros(
                stat_text,
                start=DAY_START,
                end=DAY_END,
                interval=INTERVAL,
                variables={"site": "main", "zone": [z.id for z in SITES["main"].zones]},
            )
        )
        last = {p.tags["zone"]: p.fields["occupancy"] for p in written["main"]}
        assert {r["zone"]: r["last"] for r in rows} == last
    finally:
        await store.close()
