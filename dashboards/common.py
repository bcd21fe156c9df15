"""What every StackPulse dashboard shares: data source, variables, thresholds, panel bases."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, TypeAlias

from grafana_foundation_sdk.builders import (
    bargauge,
    histogram,
    stat,
    table,
    timeseries,
)
from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.builders import dashboard as dash_b
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dash_m

from dashboards.influx import DATASOURCE_TYPE, InfluxQLTarget, show_tag_values
from kernel.store.influxql import TagEq

__all__ = [
    "DATASOURCE_UID",
    "DS",
    "SITE",
    "ZONE",
    "PanelBuilder",
    "board",
    "datasource_variable",
    "hide_columns",
    "last_value",
    "legend",
    "over_time",
    "plain_thresholds",
    "site_variable",
    "target",
    "zone_variable",
]

DATASOURCE_UID: Final = "stackpulse-influx"
"""The uid the provisioning file and `push` give the InfluxDB data source."""
DS: Final = dash_m.DataSourceRef(type_val=DATASOURCE_TYPE, uid="${datasource}")
SITE: Final = TagEq("site", "$site", variable=True)
ZONE: Final = TagEq("zone", "$zone", variable=True)
# Gaps shorter than this are drawn through; longer ones (an outage) stay visible.
SPAN_GAPS_MS: Final = 5 * 60 * 1000

PanelBuilder: TypeAlias = (
    timeseries.Panel | stat.Panel | bargauge.Panel | table.Panel | histogram.Panel
)


def target(ref_id: str = "A", *, alias: str | None = None) -> InfluxQLTarget:
    t = InfluxQLTarget().ref_id(ref_id).datasource(DS)
    return t.alias(alias) if alias else t


def plain_thresholds(color: str = "blue") -> dash_b.ThresholdsConfig:
    # Without any, Grafana colours values past 80 red: wrong for counts.
    return (
        dash_b.ThresholdsConfig()
        .mode(dash_m.ThresholdsMode.ABSOLUTE)
        .steps([dash_m.Threshold(value=None, color=color)])
    )


def legend(calcs: Sequence[str] = ("lastNotNull", "max")) -> common_b.VizLegendOptions:
    return (
        common_b.VizLegendOptions()
        .show_legend(True)
        .display_mode(common.LegendDisplayMode.TABLE)
        .placement(common.LegendPlacement.RIGHT)
        .calcs(list(calcs))
    )


def last_value() -> common_b.ReduceDataOptions:
    return common_b.ReduceDataOptions().values(False).calcs(["lastNotNull"]).fields("")


def over_time(title: str, description: str, *, interval: str = "1m") -> timeseries.Panel:
    """A time-series panel with the house look; `interval` is the finest useful bucket."""
    return (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DS)
        .interval(interval)
        .legend(legend())
        .tooltip(common_b.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI))
        .color_scheme(dash_b.FieldColor().mode(dash_m.FieldColorModeId.PALETTE_CLASSIC))
        .line_width(2)
        .fill_opacity(10)
        .span_nulls(SPAN_GAPS_MS)
        .min(0)
        .thresholds(plain_thresholds())
        .height(9)
    )


def hide_columns(*names: str, rename: dict[str, str] | None = None) -> dash_m.DataTransformerConfig:
    return dash_m.DataTransformerConfig(
        id_val="organize",
        options={"excludeByName": dict.fromkeys(names, True), "renameByName": rename or {}},
    )


def datasource_variable() -> dash_b.DatasourceVariable:
    return (
        dash_b.DatasourceVariable("datasource")
        .label("Data source")
        .type(DATASOURCE_TYPE)
        .current(
            dash_m.VariableOption(selected=True, text="StackPulse InfluxDB", value=DATASOURCE_UID)
        )
    )


def site_variable(measurement: str) -> dash_b.QueryVariable:
    """One site at a time, from the sites `measurement` has points of."""
    return (
        dash_b.QueryVariable("site")
        .label("Site")
        .datasource(DS)
        .query(show_tag_values(measurement, "site"))
        .refresh(dash_m.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dash_m.VariableSort.ALPHABETICAL_ASC)
        .multi(False)
        .include_all(False)
    )


def zone_variable(measurement: str) -> dash_b.QueryVariable:
    """Any zones of the chosen site (All by default): panels filter ``zone =~ /^$zone$/``."""
    return (
        dash_b.QueryVariable("zone")
        .label("Zone")
        .datasource(DS)
        .query(show_tag_values(measurement, "zone", (SITE,)))
        .refresh(dash_m.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dash_m.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .current(dash_m.VariableOption(selected=True, text="All", value="$__all"))
    )


def board(builder: dash_b.Dashboard, panels: Sequence[PanelBuilder]) -> dash_m.Dashboard:
    """The dashboard with its panels numbered 1.. in order (stable viewPanel links)."""
    for panel_id, panel in enumerate(panels, start=1):
        builder.with_panel(panel.id(panel_id))
    return builder.build()
