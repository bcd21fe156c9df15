"""Grafana dashboards as code: built with grafana-foundation-sdk, provisioned or pushed."""

from stackpulse.dashboards.build import DASHBOARDS, DATASOURCE_UID, build_all, occupancy_dashboard
from stackpulse.dashboards.influx import (
    InfluxQLTarget,
    expand_macros,
    panel_queries,
    variable_queries,
)

__all__ = [
    "DASHBOARDS",
    "DATASOURCE_UID",
    "InfluxQLTarget",
    "build_all",
    "expand_macros",
    "occupancy_dashboard",
    "panel_queries",
    "variable_queries",
]
