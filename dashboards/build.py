"""The StackPulse Grafana dashboards, built with grafana-foundation-sdk from the typed schema."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Final, TypeAlias

from grafana_foundation_sdk.builders import bargauge, stat, timeseries
from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.builders import dashboard as dash_b
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common, units
from grafana_foundation_sdk.models import dashboard as dash_m

from stackpulse.dashboards.alerts import alerts_dashboard
from stackpulse.dashboards.common import (
    DATASOURCE_UID,
    DS,
    SITE,
    ZONE,
    datasource_variable,
    last_value,
    legend,
    plain_thresholds,
    site_variable,
    zone_variable,
)
from stackpulse.dashboards.demand import demand_dashboard
from stackpulse.dashboards.devices import devices_dashboard
from stackpulse.dashboards.influx import (
    Arith,
    Call,
    InfluxQLTarget,
)
from stackpulse.dashboards.inventory import inventory_dashboard
from stackpulse.dashboards.seats import seats_dashboard
from stackpulse.kernel.schema import ZONE_DRIFT, ZONE_OCCUPANCY, ZONE_TYPICAL
from stackpulse.kernel.store.influxql import Agg, Query

__all__ = [
    "DASHBOARDS",
    "DATASOURCE_UID",
    "HEALTH_UID",
    "OCCUPANCY_UID",
    "build_all",
    "counting_health_dashboard",
    "occupancy_dashboard",
    "to_json_text",
]

OCCUPANCY_UID: Final = "stackpulse-occupancy"
HEALTH_UID: Final = "stackpulse-counting-health"
BUSY_PERCENT: Final = 80.0
FULL_PERCENT: Final = 100.0
# The occupancy service stores one snapshot per zone and minute; a finer $__interval
# would leave every other bucket empty and break the lines.
RECORD_INTERVAL: Final = "1m"
# Gaps shorter than this are drawn through; longer ones (an outage) stay visible.
SPAN_GAPS_MS: Final = 5 * 60 * 1000

_BY_ZONE: Final = "$tag_zone"

PanelBuilder: TypeAlias = timeseries.Panel | stat.Panel | bargauge.Panel


def _zone_query(agg: Agg, *, over_time: bool) -> Query:
    """One aggregate of zone_occupancy for the chosen site, one series per zone."""
    return Query(
        ZONE_OCCUPANCY,
        (agg,),
        where=(SITE, ZONE),
        group_by_time="auto" if over_time else None,
        group_by_tags=("zone",),
    )


def _summed(
    ref_id: str, measurement: str, field: str, alias: str, *, by: tuple[str, ...] = ()
) -> InfluxQLTarget:
    """Per interval, the sum over zones of each zone's mean `field` (through a subquery)."""
    where = (SITE,) if by else (SITE, ZONE)  # floors are whole: no zone filter
    inner = Query(
        measurement,
        (Agg("mean", field, alias),),
        where=where,
        group_by_time="auto",
        group_by_tags=("zone", *by),
    )
    outer = Query("per_zone", (Agg("sum", alias, alias),), group_by_time="auto", group_by_tags=by)
    return InfluxQLTarget().ref_id(ref_id).datasource(DS).select_nested(outer, inner)


def _target(ref_id: str = "A") -> InfluxQLTarget:
    return InfluxQLTarget().ref_id(ref_id).datasource(DS).alias(_BY_ZONE)


def _percent_of_capacity(func: str) -> Arith:
    return Arith(Arith(Call(func, "occupancy"), "/", Call(func, "capacity")), "*", 100)


def _load_thresholds() -> dash_b.ThresholdsConfig:
    return (
        dash_b.ThresholdsConfig()
        .mode(dash_m.ThresholdsMode.ABSOLUTE)
        .steps(
            [
                dash_m.Threshold(value=None, color="green"),
                dash_m.Threshold(value=BUSY_PERCENT, color="orange"),
                dash_m.Threshold(value=FULL_PERCENT, color="red"),
            ]
        )
    )


def _over_time(title: str, description: str) -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DS)
        .interval(RECORD_INTERVAL)
        .legend(legend())
        .tooltip(common_b.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI))
        .color_scheme(dash_b.FieldColor().mode(dash_m.FieldColorModeId.PALETTE_CLASSIC))
        .line_width(2)
        .fill_opacity(10)
        .span_nulls(SPAN_GAPS_MS)
        .min(0)
        .height(9)
    )


def _occupancy_panel() -> timeseries.Panel:
    q = _zone_query(Agg("mean", "occupancy"), over_time=True)
    return (
        _over_time("Occupancy per zone", "People in each zone, counted at the gates.")
        .with_target(_target().select(q))
        .unit(units.Short)
        .decimals(0)
        .thresholds(plain_thresholds())
        .span(16)
    )


def _current_occupancy_panel() -> stat.Panel:
    q = _zone_query(Agg("last", "occupancy"), over_time=False)
    return (
        stat.Panel()
        .title("Current occupancy")
        .description("People in each zone now.")
        .datasource(DS)
        .with_target(_target().select(q))
        .unit(units.Short)
        .decimals(0)
        .thresholds(plain_thresholds())
        .reduce_options(last_value())
        .color_mode(common.BigValueColorMode.VALUE)
        .graph_mode(common.BigValueGraphMode.NONE)
        .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
        .orientation(common.VizOrientation.AUTO)
        .height(9)
        .span(8)
    )


def _percent_panel() -> timeseries.Panel:
    base = _zone_query(Agg("mean", "occupancy"), over_time=True)
    target = _target().select_computed(base, _percent_of_capacity("mean"), "percent")
    return (
        _over_time(
            "Percent of capacity",
            f"Occupancy over capacity; busy from {BUSY_PERCENT:.0f}%, full at {FULL_PERCENT:.0f}%.",
        )
        .with_target(target)
        .unit(units.Percent)
        .decimals(0)
        .axis_soft_max(FULL_PERCENT)
        .thresholds(_load_thresholds())
        .thresholds_style(
            common_b.GraphThresholdsStyleConfig().mode(common.GraphTresholdsStyleMode.DASHED)
        )
        .span(16)
    )


def _current_load_panel() -> bargauge.Panel:
    base = _zone_query(Agg("last", "occupancy"), over_time=False)
    target = _target().select_computed(base, _percent_of_capacity("last"), "percent")
    return (
        bargauge.Panel()
        .title("Current load")
        .description("Each zone's occupancy now, as a share of its capacity.")
        .datasource(DS)
        .with_target(target)
        .unit(units.Percent)
        .decimals(0)
        .min(0)
        .max(120)
        .thresholds(_load_thresholds())
        .reduce_options(last_value())
        .display_mode(common.BarGaugeDisplayMode.BASIC)
        .orientation(common.VizOrientation.HORIZONTAL)
        .show_unfilled(True)
        .height(9)
        .span(8)
    )


def _free_seats_panel() -> timeseries.Panel:
    q = _zone_query(Agg("last", "seats_free"), over_time=True)
    return (
        _over_time(
            "Free seats per zone",
            "Seats free in each zone; held (a bag, nobody there) and unknown seats are not free.",
        )
        .with_target(_target().select(q))
        .unit(units.Short)
        .decimals(0)
        .thresholds(plain_thresholds())
        .span(24)
    )


def _floor_panel() -> timeseries.Panel:
    target = _summed("A", ZONE_OCCUPANCY, "occupancy", "occupancy", by=("floor",))
    return (
        _over_time("Occupancy per floor", "People on each floor: the sum of its zones.")
        .with_target(target.alias("floor $tag_floor"))
        .unit(units.Short)
        .decimals(0)
        .thresholds(plain_thresholds())
        .span(12)
    )


def _today_vs_typical_panel() -> timeseries.Panel:
    return (
        _over_time(
            "Today vs a typical day",
            "People in the selected zones now, against what is usual at the same hour of the"
            " same weekday (the occupancy service's weekly profile of the past weeks).",
        )
        .with_target(_summed("A", ZONE_OCCUPANCY, "occupancy", "today").alias("today"))
        .with_target(_summed("B", ZONE_TYPICAL, "typical", "typical").alias("typical"))
        .override_by_name(
            "typical",
            [
                dash_m.DynamicConfigValue(id_val="custom.lineStyle", value={"fill": "dash"}),
                dash_m.DynamicConfigValue(
                    id_val="color", value={"mode": "fixed", "fixedColor": "text"}
                ),
            ],
        )
        .unit(units.Short)
        .decimals(0)
        .thresholds(plain_thresholds())
        .span(12)
    )


def _last_week_panel() -> timeseries.Panel:
    return (
        _over_time(
            "Same weekday last week",
            "The selected zones' occupancy over the same hours seven days earlier.",
        )
        .with_target(_summed("A", ZONE_OCCUPANCY, "occupancy", "occupancy").alias("a week ago"))
        .time_shift("7d")
        .unit(units.Short)
        .decimals(0)
        .thresholds(plain_thresholds())
        .span(12)
    )


def occupancy_dashboard() -> dash_m.Dashboard:
    """Zone occupancy, load and free seats of one site, from the zone_occupancy snapshots."""
    board = (
        dash_b.Dashboard("StackPulse — Occupancy")
        .uid(OCCUPANCY_UID)
        .description("How full each zone of a library site is, and how many seats are free.")
        .tags(["stackpulse", "occupancy"])
        .readonly()  # edits belong in dashboards/build.py; the JSON is generated
        .timezone("browser")
        .tooltip(dash_m.DashboardCursorSync.CROSSHAIR)
        .time("now-12h", "now")
        .refresh("10s")
        .with_variable(datasource_variable())
        .with_variable(site_variable(ZONE_OCCUPANCY))
        .with_variable(zone_variable(ZONE_OCCUPANCY))
    )
    panels: list[PanelBuilder] = [
        _occupancy_panel(),
        _current_occupancy_panel(),
        _percent_panel(),
        _current_load_panel(),
        _today_vs_typical_panel(),
        _last_week_panel(),
        _floor_panel(),
        _drift_panel(by_zone_variable=True).span(12),
        _free_seats_panel(),
    ]
    for panel_id, panel in enumerate(panels, start=1):
        # Fixed ids keep links to a panel (viewPanel=N) and the committed JSON stable.
        board.with_panel(panel.id(panel_id))
    return board.build()


def _drift_panel(*, by_zone_variable: bool = False) -> timeseries.Panel:
    where = (SITE, ZONE) if by_zone_variable else (SITE,)
    q = Query(ZONE_DRIFT, (Agg(None, "drift"),), where=where, group_by_tags=("zone",))
    return (
        timeseries.Panel()
        .title("Nightly counting drift per zone")
        .description(
            "What each zone's gate count still said at closing time, when the building should"
            " be empty; the count is then reset to zero. Positive: exits were missed; negative:"
            " entries were. A zone that drifts night after night has a gate to check."
        )
        .datasource(DS)
        .with_target(_target().select(q))
        .legend(legend())
        .tooltip(common_b.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI))
        .color_scheme(dash_b.FieldColor().mode(dash_m.FieldColorModeId.PALETTE_CLASSIC))
        .draw_style(common.GraphDrawStyle.BARS)
        .fill_opacity(80)
        .line_width(1)
        .unit(units.Short)
        .decimals(0)
        .thresholds(plain_thresholds())
        .height(9)
        .span(16)
    )


def _last_drift_panel() -> bargauge.Panel:
    q = Query(ZONE_DRIFT, (Agg("last", "abs_drift"),), where=(SITE,), group_by_tags=("zone",))
    return (
        bargauge.Panel()
        .title("Drift at the last closing")
        .description("People the count was off by, per zone, at the most recent closing.")
        .datasource(DS)
        .with_target(_target().select(q))
        .reduce_options(last_value())
        .orientation(common.VizOrientation.HORIZONTAL)
        .unit(units.Short)
        .decimals(0)
        .min(0)
        .thresholds(plain_thresholds())
        .height(9)
        .span(8)
    )


def counting_health_dashboard() -> dash_m.Dashboard:
    """How far the gate counts drift each day, from the zone_drift closing-time records."""
    board = (
        dash_b.Dashboard("StackPulse — Counting health")
        .uid(HEALTH_UID)
        .description("Drift of the gate counts, measured at each closing-time reset.")
        .tags(["stackpulse", "occupancy", "health"])
        .readonly()
        .timezone("browser")
        .time("now-30d", "now")
        .refresh("5m")
        .with_variable(datasource_variable())
        .with_variable(site_variable(ZONE_OCCUPANCY))
    )
    panels: list[PanelBuilder] = [_drift_panel(), _last_drift_panel()]
    for panel_id, panel in enumerate(panels, start=1):
        board.with_panel(panel.id(panel_id))
    return board.build()


DASHBOARDS: Final[dict[str, Callable[[], dash_m.Dashboard]]] = {
    "occupancy.json": occupancy_dashboard,
    "seats.json": seats_dashboard,
    "inventory.json": inventory_dashboard,
    "demand.json": lambda: demand_dashboard(datasource_variable()),
    "alerts.json": alerts_dashboard,
    "devices.json": devices_dashboard,
    "counting-health.json": counting_health_dashboard,
}
"""Generated file name -> the function that builds its dashboard."""


def to_json_text(board: dash_m.Dashboard) -> str:
    """Stable JSON text: sorted keys, so a change in code shows as a small diff."""
    text = json.dumps(board, cls=JSONEncoder, indent=2, sort_keys=True, ensure_ascii=False)
    return text + "\n"


def build_all() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {name: to_json_text(make()) for name, make in DASHBOARDS.items()}
