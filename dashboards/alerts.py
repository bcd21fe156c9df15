"""The "StackPulse — Alerts" dashboard: open alerts by rule and severity, time to ack and clear.

Built on `alert_transition` (kernel.schema.alert_point): one point per transition of an
alert, tagged site, rule, severity and kind (opened | acked | cleared | escalated |
renotified), carrying how many alerts of that rule and severity are still open and, on
acks and clears, the seconds since the alert opened.
"""

from __future__ import annotations

from typing import Final

from grafana_foundation_sdk.models import common, units
from grafana_foundation_sdk.models import dashboard as dash_m

from stackpulse.dashboards.common import (
    SITE,
    PanelBuilder,
    board,
    counts_over_time,
    counts_per_interval,
    durations_over_time,
    hide_columns,
    site_dashboard,
    table_panel,
    target,
)
from stackpulse.kernel.schema import ALERT_TRANSITION
from stackpulse.kernel.store.influxql import Agg, Query, TagEq

__all__ = ["ALERTS_UID", "alerts_dashboard"]

ALERTS_UID: Final = "stackpulse-alerts"
_BY_RULE: Final = "$tag_rule ($tag_severity)"
_SEVERITY_COLORS: Final = {"critical": "red", "warning": "orange", "info": "blue"}


def _open_panel() -> PanelBuilder:
    q = Query(
        ALERT_TRANSITION,
        (Agg("last", "open_count", "open"),),
        where=(SITE,),
        group_by_time="auto",
        group_by_tags=("rule", "severity"),
        fill="previous",  # the count holds between transitions
    )
    return (
        counts_over_time(
            "Open alerts by rule and severity",
            "Alerts still active (acknowledged or not), per rule and severity, as of each"
            " transition; the line holds its value until the next one.",
            span=16,
        )
        .with_target(target(alias=_BY_RULE).select(q))
        .draw_style(common.GraphDrawStyle.LINE)
        .line_interpolation(common.LineInterpolation.STEP_AFTER)
    )


def _open_now_panel() -> PanelBuilder:
    q = Query(
        ALERT_TRANSITION,
        (Agg("last", "open_count", "open"),),
        where=(SITE,),
        group_by_tags=("rule", "severity"),
    )
    panel = (
        table_panel(
            "Open now",
            "Active alerts per rule and severity after the latest transition.",
            sort_by="open",
            descending=True,
            span=8,
        )
        .with_target(target().select(q).result_format("table"))
        .with_transformation(hide_columns("Time"))
    )
    mappings = dash_m.ValueMap(
        options={
            sev: dash_m.ValueMappingResult(color=color, index=i)
            for i, (sev, color) in enumerate(_SEVERITY_COLORS.items())
        }
    )
    cells = {"type": "color-text"}
    return panel.override_by_name(
        "severity",
        [
            dash_m.DynamicConfigValue(id_val="mappings", value=[mappings]),
            dash_m.DynamicConfigValue(id_val="custom.cellOptions", value=cells),
        ],
    )


def _transitions_panel() -> PanelBuilder:
    q = Query(
        ALERT_TRANSITION,
        (Agg("sum", "count"),),
        where=(SITE,),
        group_by_time="auto",
        group_by_tags=("kind",),
        fill="0",
    )
    return counts_per_interval(
        "Transitions",
        "Alerts opened, acknowledged, cleared, escalated and notified again, per interval.",
        interval="15m",
        span=12,
    ).with_target(target(alias="$tag_kind").select(q))


def _latency_over_time_panel() -> PanelBuilder:
    def q(kind: str, field: str) -> Query:
        return Query(
            ALERT_TRANSITION,
            (Agg("mean", field),),
            where=(SITE, TagEq("kind", kind)),
            group_by_time="auto",
            group_by_tags=("severity",),
        )

    return (
        durations_over_time(
            "Time to acknowledge and to clear",
            "Mean seconds from opening to the first acknowledgement, and to clearing (by"
            " staff or because the condition ended), of the alerts acked or cleared in each"
            " interval, per severity.",
            interval="1h",
            span=12,
        )
        .with_target(target("A", alias="ack $tag_severity").select(q("acked", "seconds_to_ack")))
        .with_target(
            target("B", alias="clear $tag_severity").select(q("cleared", "seconds_to_clear"))
        )
    )


def _latency_table_panel() -> PanelBuilder:
    def q(kind: str, field: str, prefix: str) -> Query:
        return Query(
            ALERT_TRANSITION,
            (
                Agg("sum", "count", f"{prefix}ed"),
                Agg("mean", field, f"mean_{prefix}"),
                Agg("max", field, f"longest_{prefix}"),
            ),
            where=(SITE, TagEq("kind", kind)),
            group_by_tags=("rule", "severity"),
        )

    seconds = [dash_m.DynamicConfigValue(id_val="unit", value=units.DurationSeconds)]
    panel = (
        table_panel(
            "Time to acknowledge and clear, by rule",
            "Per rule and severity over the time range: alerts acknowledged and cleared, and"
            " their mean and longest time from opening.",
            sort_by="mean_ack",
            descending=True,
            span=24,
        )
        .with_target(target("A").select(q("acked", "seconds_to_ack", "ack")).result_format("table"))
        .with_target(
            target("B").select(q("cleared", "seconds_to_clear", "clear")).result_format("table")
        )
        # One row per rule and severity, the two queries side by side.
        .with_transformation(dash_m.DataTransformerConfig(id_val="merge", options={}))
        .with_transformation(hide_columns("Time"))
    )
    for column in ("mean_ack", "longest_ack", "mean_clear", "longest_clear"):
        panel = panel.override_by_name(column, seconds)
    return panel


def alerts_dashboard() -> dash_m.Dashboard:
    """One site's alerts: what is open, how fast staff acknowledge and clear them."""
    builder = site_dashboard(
        "StackPulse — Alerts",
        uid=ALERTS_UID,
        description="Open alerts by rule and severity; time to acknowledge and to clear.",
        tags=("stackpulse", "alerts"),
        time_from="now-7d",
        refresh="1m",
        measurement=ALERT_TRANSITION,
    )
    panels = [
        _open_panel(),
        _open_now_panel(),
        _transitions_panel(),
        _latency_over_time_panel(),
        _latency_table_panel(),
    ]
    return board(builder, panels)
