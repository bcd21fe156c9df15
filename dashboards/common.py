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
from grafana_foundation_sdk.models import common, units
from grafana_foundation_sdk.models import dashboard as dash_m

from stackpulse.dashboards.influx import DATASOURCE_TYPE, InfluxQLTarget, show_tag_values
from stackpulse.kernel.store.influxql import TagEq

__all__ = [
    "DATASOURCE_UID",
    "DS",
    "SITE",
    "ZONE",
    "PanelBuilder",
    "board",
    "count_bars",
    "counts_over_time",
    "counts_per_interval",
    "datasource_variable",
    "durations_over_time",
    "hide_columns",
    "last_value",
    "legend",
    "over_time",
    "plain_thresholds",
    "site_dashboard",
    "site_variable",
    "table_panel",
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


def counts_over_time(
    title: str, description: str, *, span: int, interval: str = "1m"
) -> timeseries.Panel:
    """`over_time` for whole counts (people, items, alerts, devices)."""
    return over_time(title, description, interval=interval).unit(units.Short).decimals(0).span(span)


def counts_per_interval(
    title: str, description: str, *, interval: str, span: int
) -> timeseries.Panel:
    """Counts per `interval` as stacked bars: events, not levels."""
    return (
        counts_over_time(title, description, interval=interval, span=span)
        .draw_style(common.GraphDrawStyle.BARS)
        .stacking(common_b.StackingConfig().mode(common.StackingMode.NORMAL))
        .fill_opacity(70)
    )


def durations_over_time(
    title: str, description: str, *, interval: str, span: int
) -> timeseries.Panel:
    """Seconds something took, a point per series and interval."""
    return (
        over_time(title, description, interval=interval)
        .draw_style(common.GraphDrawStyle.POINTS)
        .point_size(6)
        .unit(units.DurationSeconds)
        .span(span)
    )


def count_bars(title: str, description: str, *, span: int, color: str = "blue") -> bargauge.Panel:
    """Horizontal bars of counts, one per series, in one `color`."""
    return (
        bargauge.Panel()
        .title(title)
        .description(description)
        .datasource(DS)
        .orientation(common.VizOrientation.HORIZONTAL)
        .display_mode(common.BarGaugeDisplayMode.BASIC)
        .unit(units.Short)
        .decimals(0)
        .min(0)
        .thresholds(plain_thresholds(color))
        .height(9)
        .span(span)
    )


def table_panel(
    title: str,
    description: str,
    *,
    sort_by: str,
    descending: bool = False,
    span: int,
    height: int = 9,
) -> table.Panel:
    """A table sorted by the column `sort_by`; the caller adds targets and transformations."""
    sort = common_b.TableSortByFieldState().display_name(sort_by)
    return (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(DS)
        .sort_by([sort.desc(True) if descending else sort])
        .thresholds(plain_thresholds())
        .height(height)
        .span(span)
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


def site_dashboard(
    title: str,
    *,
    uid: str,
    description: str,
    tags: Sequence[str],
    time_from: str,
    refresh: str,
    measurement: str,
) -> dash_b.Dashboard:
    """A read-only dashboard of one site at a time (the site list from `measurement`)."""
    return (
        dash_b.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(list(tags))
        .readonly()  # edits belong in the dashboards/ module that builds it; the JSON is generated
        .timezone("browser")
        .time(time_from, "now")
        .refresh(refresh)
        .with_variable(datasource_variable())
        .with_variable(site_variable(measurement))
    )


def board(builder: dash_b.Dashboard, panels: Sequence[PanelBuilder]) -> dash_m.Dashboard:
    """The dashboard with its panels numbered 1.. in order (stable viewPanel links)."""
    for panel_id, panel in enumerate(panels, start=1):
        builder.with_panel(panel.id(panel_id))
    return builder.build()
