"""The "StackPulse — Seats" dashboard: free / occupied / held / unknown seats, and hogging.

Everything comes from the occupancy service's per-zone snapshots (`zone_occupancy`,
one per zone and minute), whose seat counts are the states the public API serves:
`held` is a seat with a bag and nobody on it, `unknown` a sensor offline or silent.
Hogging is seats held: how many, and what share of the taken seats they are.
"""

from __future__ import annotations

from typing import Final

from grafana_foundation_sdk.builders import bargauge, timeseries
from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.builders import dashboard as dash_b
from grafana_foundation_sdk.models import common, units
from grafana_foundation_sdk.models import dashboard as dash_m

from stackpulse.dashboards.common import (
    SITE,
    ZONE,
    PanelBuilder,
    board,
    count_bars,
    counts_over_time,
    last_value,
    over_time,
    site_dashboard,
    target,
    zone_variable,
)
from stackpulse.dashboards.influx import Arith, Call
from stackpulse.kernel.schema import ZONE_OCCUPANCY
from stackpulse.kernel.store.influxql import Agg, Query

__all__ = ["SEATS_UID", "STATES", "seats_dashboard"]

SEATS_UID: Final = "stackpulse-seats"
STATES: Final = ("free", "occupied", "held", "unknown")
_COLORS: Final = {"free": "green", "occupied": "blue", "held": "orange", "unknown": "red"}
_HOG_WARN_PERCENT: Final = 20.0


def _per_zone(func: str) -> Query:
    """Each selected zone's seat counts per interval: the inner half of the site totals."""
    return Query(
        ZONE_OCCUPANCY,
        tuple(Agg(func, f"seats_{s}", s) for s in STATES),
        where=(SITE, ZONE),
        group_by_time="auto",
        group_by_tags=("zone",),
    )


def _zone_series(agg: Agg) -> Query:
    """One figure per selected zone and interval."""
    return Query(
        ZONE_OCCUPANCY, (agg,), where=(SITE, ZONE), group_by_time="auto", group_by_tags=("zone",)
    )


def _totals() -> Query:
    # The measurement name is a placeholder: render_nested puts the subquery there.
    return Query(
        "per_zone",
        tuple(Agg("sum", s, s) for s in STATES),
        group_by_time="auto",
    )


def _state_colors(panel: timeseries.Panel) -> timeseries.Panel:
    for state, color in _COLORS.items():
        fixed = dash_m.DynamicConfigValue(
            id_val="color", value={"mode": "fixed", "fixedColor": color}
        )
        panel = panel.override_by_name(state, [fixed])
    return panel


def _states_panel() -> timeseries.Panel:
    panel = (
        counts_over_time(
            "Seat states over time",
            "Seats of the selected zones by state, stacked: free, occupied, held (a bag and"
            " nobody there) and unknown (sensor offline or silent; never counted as free).",
            span=16,
        )
        .with_target(target().select_nested(_totals(), _per_zone("mean")))
        .stacking(common_b.StackingConfig().mode(common.StackingMode.NORMAL))
        .fill_opacity(60)
    )
    return _state_colors(panel)


def _now_panel() -> bargauge.Panel:
    inner = Query(
        ZONE_OCCUPANCY,
        tuple(Agg("last", f"seats_{s}", s) for s in STATES),
        where=(SITE, ZONE),
        group_by_tags=("zone",),
    )
    outer = Query("per_zone", tuple(Agg("sum", s, s) for s in STATES))
    return (
        count_bars(
            "Seats now",
            "Seats of the selected zones in each state, at the latest snapshot.",
            span=8,
        )
        .with_target(target().select_nested(outer, inner))
        .reduce_options(last_value())
    )


def _held_panel() -> timeseries.Panel:
    q = _zone_series(Agg("mean", "seats_held"))
    return counts_over_time(
        "Held seats per zone (hogging)",
        "Seats with a bag on them and nobody there, per zone. The alerts service flags"
        " each seat held for longer than its hogging limit (rule on the Alerts dashboard).",
        span=12,
    ).with_target(target(alias="$tag_zone").select(q))


def _held_share_panel() -> timeseries.Panel:
    q = _zone_series(Agg("mean", "seats_held"))
    held, occupied = Call("mean", "seats_held"), Call("mean", "seats_occupied")
    # InfluxQL divides by zero as 0: a zone with nobody in it shows 0 %, not a gap.
    share = Arith(Arith(held, "/", Arith(held, "+", occupied)), "*", 100)
    return (
        over_time(
            "Held share of taken seats",
            "Held seats as a share of all taken seats (held + occupied), per zone: how much"
            f" of the room bags keep from readers. Orange from {_HOG_WARN_PERCENT:.0f} %.",
        )
        .with_target(target(alias="$tag_zone").select_computed(q, share, "held_percent"))
        .unit(units.Percent)
        .decimals(0)
        .max(100)
        .thresholds(
            dash_b.ThresholdsConfig()
            .mode(dash_m.ThresholdsMode.ABSOLUTE)
            .steps(
                [
                    dash_m.Threshold(value=None, color="green"),
                    dash_m.Threshold(value=_HOG_WARN_PERCENT, color="orange"),
                ]
            )
        )
        .thresholds_style(
            common_b.GraphThresholdsStyleConfig().mode(common.GraphTresholdsStyleMode.DASHED)
        )
        .span(12)
    )


def _unknown_panel() -> timeseries.Panel:
    q = _zone_series(Agg("max", "seats_unknown"))
    return counts_over_time(
        "Seats in unknown state per zone",
        "Seats whose sensor is offline or silent past its heartbeat (the Devices"
        " dashboard says which).",
        span=24,
    ).with_target(target(alias="$tag_zone").select(q))


def seats_dashboard() -> dash_m.Dashboard:
    """Seat states of one site's zones over time, and how much of them bags hold."""
    builder = (
        site_dashboard(
            "StackPulse — Seats",
            uid=SEATS_UID,
            description="Free, occupied, held and unknown seats over time, and seat hogging.",
            tags=("stackpulse", "occupancy", "seats"),
            time_from="now-12h",
            refresh="30s",
            measurement=ZONE_OCCUPANCY,
        )
        .tooltip(dash_m.DashboardCursorSync.CROSSHAIR)
        .with_variable(zone_variable(ZONE_OCCUPANCY))
    )
    panels: list[PanelBuilder] = [
        _states_panel(),
        _now_panel(),
        _held_panel(),
        _held_share_panel(),
        _unknown_panel(),
    ]
    return board(builder, panels)
