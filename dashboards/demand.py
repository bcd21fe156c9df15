"""The "StackPulse — Demand" dashboard: ranked titles, demand per call-number class, signals.

InfluxQL groups only by tags, and titles are fields (schema rules: no titles or item ids as
tags), so a ranking of titles cannot be computed in a query. The inventory service writes
the ranking it serves at `GET .../demand` as `demand_rank` snapshots (one point per rank
slot); the table shows the latest. Classes and kinds are tags, so their panels aggregate
the raw `demand_signal` points over the dashboard's time range.
"""

from __future__ import annotations

from typing import Final

from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.builders import dashboard as dash_b
from grafana_foundation_sdk.builders import table, timeseries
from grafana_foundation_sdk.models import common, units
from grafana_foundation_sdk.models import dashboard as dash_m

from stackpulse.dashboards.common import DS, SITE, plain_thresholds, site_variable
from stackpulse.dashboards.influx import InfluxQLTarget
from stackpulse.kernel.store.influxql import Agg, Query
from stackpulse.services.inventory.demand import DEMAND_RANK, DEMAND_SIGNAL, KINDS, WEIGHTS

__all__ = ["DEMAND_UID", "SIGNAL_INTERVAL", "demand_dashboard"]

DEMAND_UID: Final = "stackpulse-demand"
# Demand is counted in hourly buckets; finer bars over weeks would be mostly empty.
SIGNAL_INTERVAL: Final = "1h"

_RANK_COLUMNS: Final = (
    "title",
    "call_number",
    "call_class",
    "copies",
    "score",
    *KINDS,
    "suggest",
    "reason",
)
_HIDDEN: Final = ("Time", "call_class", "checkin")


def _target(q: Query, *, alias: str | None = None, as_table: bool = False) -> InfluxQLTarget:
    target = InfluxQLTarget().ref_id("A").datasource(DS).select(q)
    if alias:
        target = target.alias(alias)
    return target.result_format("table") if as_table else target


def _weights_text() -> str:
    return ", ".join(f"{kind} {w}" for kind, w in WEIGHTS.items())


def _gauge_cells(*columns: str) -> list[tuple[str, list[dash_m.DynamicConfigValue]]]:
    cells = {"type": "gauge", "mode": "basic", "valueDisplayMode": "text"}
    return [
        (c, [dash_m.DynamicConfigValue(id_val="custom.cellOptions", value=cells)]) for c in columns
    ]


def _top_titles_panel() -> table.Panel:
    q = Query(
        DEMAND_RANK,
        tuple(Agg("last", column, column) for column in _RANK_COLUMNS),
        where=(SITE,),
        group_by_tags=("rank",),
    )
    organize = dash_m.DataTransformerConfig(
        id_val="organize",
        options={
            "excludeByName": dict.fromkeys(_HIDDEN, True),
            "indexByName": {c: i for i, c in enumerate(("rank", *_RANK_COLUMNS))},
            "renameByName": {"call_number": "call number", "suggest": "buy?"},
        },
    )
    # Slots the latest ranking did not fill are written with copies 0: hide them.
    filled = dash_m.DataTransformerConfig(
        id_val="filterByValue",
        options={
            "type": "include",
            "match": "all",
            "filters": [
                {"fieldName": "copies", "config": {"id": "greater", "options": {"value": 0}}}
            ],
        },
    )
    panel = (
        table.Panel()
        .title("Top titles")
        .description(
            "The titles in most demand over the inventory service's window, as GET"
            " /sites/{site}/demand ranks them: score = weighted signals per copy"
            f" ({_weights_text()}). 'buy?' when holds or in-library uses per copy pass the"
            " thresholds; the reason says which."
        )
        .datasource(DS)
        .with_target(_target(q, as_table=True))
        .with_transformation(filled)
        .with_transformation(organize)
        .sort_by([common_b.TableSortByFieldState().display_name("rank")])
        .thresholds(plain_thresholds())
        .height(10)
        .span(24)
    )
    for name, props in _gauge_cells("score"):
        panel = panel.override_by_name(name, props)
    return panel


def _classes_panel() -> table.Panel:
    q = Query(
        DEMAND_SIGNAL,
        (Agg("sum", "weight", "score"), Agg("sum", "count", "signals")),
        where=(SITE,),
        group_by_tags=("call_class",),
    )
    panel = (
        table.Panel()
        .title("Demand per call-number class")
        .description(
            "Weighted signals per class over the dashboard's time range (LC: class letters"
            " and number, e.g. QA76; Dewey: hundreds, e.g. 500)."
        )
        .datasource(DS)
        .with_target(_target(q, as_table=True))
        .with_transformation(
            dash_m.DataTransformerConfig(
                id_val="organize",
                options={"excludeByName": {"Time": True}, "renameByName": {"call_class": "class"}},
            )
        )
        .sort_by([common_b.TableSortByFieldState().display_name("score").desc(True)])
        .unit(units.Short)
        .decimals(0)
        .thresholds(plain_thresholds())
        .height(10)
        .span(10)
    )
    for name, props in _gauge_cells("score"):
        panel = panel.override_by_name(name, props)
    return panel


def _kinds_panel() -> timeseries.Panel:
    q = Query(
        DEMAND_SIGNAL,
        (Agg("sum", "count"),),
        where=(SITE,),
        group_by_time="auto",
        group_by_tags=("kind",),
        fill="0",
    )
    return (
        timeseries.Panel()
        .title("Signals by kind")
        .description(
            "In-library uses (off the shelf and back without a checkout), checkouts,"
            " renewals, holds and checkins, per interval."
        )
        .datasource(DS)
        .interval(SIGNAL_INTERVAL)
        .with_target(_target(q, alias="$tag_kind"))
        .legend(
            common_b.VizLegendOptions()
            .show_legend(True)
            .display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.RIGHT)
            .calcs(["sum"])
        )
        .tooltip(common_b.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI))
        .color_scheme(dash_b.FieldColor().mode(dash_m.FieldColorModeId.PALETTE_CLASSIC))
        .draw_style(common.GraphDrawStyle.BARS)
        .stacking(common_b.StackingConfig().mode(common.StackingMode.NORMAL))
        .fill_opacity(80)
        .line_width(1)
        .unit(units.Short)
        .decimals(0)
        .min(0)
        .thresholds(plain_thresholds())
        .height(10)
        .span(14)
    )


def demand_dashboard(datasource: dash_b.DatasourceVariable) -> dash_m.Dashboard:
    """What is in demand at one site; `datasource` is the shared data source variable."""
    board = (
        dash_b.Dashboard("StackPulse — Demand")
        .uid(DEMAND_UID)
        .description("Titles and call-number classes in demand, and purchase suggestions.")
        .tags(["stackpulse", "inventory", "demand"])
        .readonly()  # edits belong in dashboards/demand.py; the JSON is generated
        .timezone("browser")
        .time("now-30d", "now")
        .refresh("15m")
        .with_variable(datasource)
        .with_variable(site_variable(DEMAND_SIGNAL))
    )
    panels: list[table.Panel | timeseries.Panel] = [
        _top_titles_panel(),
        _kinds_panel(),
        _classes_panel(),
    ]
    for panel_id, panel in enumerate(panels, start=1):
        board.with_panel(panel.id(panel_id))
    return board.build()
