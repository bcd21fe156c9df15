"""The "StackPulse — Inventory" dashboard: misplaced and missing items, reshelving, sweeps.

Counts come from the inventory service's `inventory` points (one per site and minute:
the lengths of the lists it serves); time-to-fix from `finding_closed` (one per finding
closed, with how long it was open); sweeps' coverage from the gateway's raw `shelf`
points (one per section and sweep part), so it shows what the readers really covered.
"""

from __future__ import annotations

from typing import Final

from grafana_foundation_sdk.builders import stat
from grafana_foundation_sdk.models import common, units
from grafana_foundation_sdk.models import dashboard as dash_m

from stackpulse.dashboards.common import (
    DS,
    SITE,
    PanelBuilder,
    board,
    counts_over_time,
    counts_per_interval,
    durations_over_time,
    hide_columns,
    last_value,
    plain_thresholds,
    site_dashboard,
    table_panel,
    target,
)
from stackpulse.kernel.schema import FINDING_CLOSED, SHELF
from stackpulse.kernel.schema import INVENTORY as INVENTORY_MEASUREMENT
from stackpulse.kernel.store.influxql import Agg, Query

__all__ = ["INVENTORY_UID", "inventory_dashboard"]

INVENTORY_UID: Final = "stackpulse-inventory"
LISTS: Final = ("misplaced", "missing", "reshelving", "tasks")
# A reader sweeps all its sections every 15 minutes or so; finer buckets would split sweeps.
SWEEP_INTERVAL: Final = "15m"
# Findings close a few times an hour; finer buckets would be mostly empty.
FIX_INTERVAL: Final = "1h"


def _counts(*names: str) -> Query:
    return Query(
        INVENTORY_MEASUREMENT,
        tuple(Agg("last", n, n) for n in names),
        where=(SITE,),
        group_by_time="auto",
    )


def _misplaced_missing_panel() -> PanelBuilder:
    return counts_over_time(
        "Misplaced and missing over time",
        "Items on a shelf section that is not theirs, and items not heard where they"
        " belong for longer than the missing limit: the lengths of the staff lists.",
        span=16,
    ).with_target(target().select(_counts("misplaced", "missing")))


def _open_now_panel() -> PanelBuilder:
    q = Query(INVENTORY_MEASUREMENT, tuple(Agg("last", n, n) for n in LISTS), where=(SITE,))
    return (
        stat.Panel()
        .title("Open now")
        .description("Items on each staff list at the latest count.")
        .datasource(DS)
        .with_target(target().select(q))
        .reduce_options(last_value())
        .unit(units.Short)
        .decimals(0)
        .thresholds(plain_thresholds())
        .color_mode(common.BigValueColorMode.VALUE)
        .graph_mode(common.BigValueGraphMode.NONE)
        .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
        .orientation(common.VizOrientation.AUTO)
        .height(9)
        .span(8)
    )


def _backlog_panel() -> PanelBuilder:
    return counts_over_time(
        "Reshelving backlog",
        "Items checked in and not yet heard back on their shelf (reshelving), and the"
        " staff's open tasks (fetch a misplaced item, look for a missing one).",
        span=12,
    ).with_target(target().select(_counts("reshelving", "tasks")))


def _time_to_fix_panel() -> PanelBuilder:
    q = Query(
        FINDING_CLOSED,
        (Agg("mean", "seconds_open"),),
        where=(SITE,),
        group_by_time="auto",
        group_by_tags=("finding",),
    )
    return durations_over_time(
        "Time to fix",
        "How long the findings closed in each interval had been open: a misplaced item"
        " until it is back in its section, a missing one until it is heard again, a"
        " returned one until it is back on its shelf.",
        interval=FIX_INTERVAL,
        span=12,
    ).with_target(target(alias="$tag_finding").select(q))


def _fix_table_panel() -> PanelBuilder:
    q = Query(
        FINDING_CLOSED,
        (
            Agg("sum", "count", "fixed"),
            Agg("mean", "seconds_open", "mean"),
            Agg("max", "seconds_open", "longest"),
        ),
        where=(SITE,),
        group_by_tags=("finding",),
    )
    seconds = [dash_m.DynamicConfigValue(id_val="unit", value=units.DurationSeconds)]
    return (
        table_panel(
            "Fixed in the time range",
            "Findings closed per kind, with their mean and longest time open.",
            sort_by="fixed",
            descending=True,
            span=10,
            height=8,
        )
        .with_target(target().select(q).result_format("table"))
        .with_transformation(hide_columns("Time"))
        .override_by_name("mean", seconds)
        .override_by_name("longest", seconds)
    )


def _coverage_panel() -> PanelBuilder:
    inner = Query(
        SHELF,
        (Agg("last", "item_count", "n"),),
        where=(SITE,),
        group_by_time="auto",
        group_by_tags=("device", "section"),
    )
    outer = Query(
        "per_section",
        (Agg("count", "n", "sections"),),
        group_by_time="auto",
        group_by_tags=("device",),
    )
    return counts_per_interval(
        "Sweeps' coverage: sections read per reader",
        "Shelf sections each RFID reader reported in each interval. A reader whose line"
        " drops below its number of sections is skipping antennas; a gap is a reader"
        " that stopped sweeping.",
        interval=SWEEP_INTERVAL,
        span=14,
    ).with_target(target(alias="$tag_device").select_nested(outer, inner))


def inventory_dashboard() -> dash_m.Dashboard:
    """What is out of place at one site, how fast it is put right, and the readers' reach."""
    builder = site_dashboard(
        "StackPulse — Inventory",
        uid=INVENTORY_UID,
        description="Misplaced and missing items, reshelving backlog, time to fix, sweeps.",
        tags=("stackpulse", "inventory"),
        time_from="now-7d",
        refresh="1m",
        measurement=INVENTORY_MEASUREMENT,
    )
    panels = [
        _misplaced_missing_panel(),
        _open_now_panel(),
        _backlog_panel(),
        _time_to_fix_panel(),
        _coverage_panel(),
        _fix_table_panel(),
    ]
    return board(builder, panels)
