"""The "StackPulse — Devices" dashboard: online, silent, battery bands, dead letters by reason.

Online state comes from the retained status messages the gateway stores as
`device_status`; "heard" and "silent" from the gateway's raw data points (`gate`,
`seat`, `shelf`: one per accepted message); batteries from the seat points; dead
letters from `dead_letters` (kernel.schema.dead_letter_point, one per site, kind,
reason and minute with any).
"""

from __future__ import annotations

from typing import Final

from grafana_foundation_sdk.builders import dashboard as dash_b
from grafana_foundation_sdk.builders import histogram
from grafana_foundation_sdk.models import dashboard as dash_m
from grafana_foundation_sdk.models import units

from stackpulse.dashboards.common import (
    DS,
    SITE,
    PanelBuilder,
    board,
    count_bars,
    counts_over_time,
    counts_per_interval,
    hide_columns,
    legend,
    site_dashboard,
    table_panel,
    target,
)
from stackpulse.dashboards.influx import Arith, Call, InfluxQLTarget
from stackpulse.kernel.schema import DEAD_LETTERS, DEVICE_STATUS, GATE, SEAT, SHELF
from stackpulse.kernel.store.influxql import Agg, Query

__all__ = ["DEVICES_UID", "HEARD_INTERVAL", "STATUS_WINDOW", "devices_dashboard"]

DEVICES_UID: Final = "stackpulse-devices"
# Seats beat every 5 min and readers sweep every 15: a finer bucket would call them silent.
HEARD_INTERVAL: Final = "15m"
# Status messages come on connect and disconnect only: look back far enough to find them.
STATUS_WINDOW: Final = "30d"
BATTERY_LOW: Final = 20  # percent
BATTERY_WARN: Final = 40
_HEARD_KINDS: Final = (GATE, SEAT, SHELF)


def _battery_thresholds() -> dash_b.ThresholdsConfig:
    return (
        dash_b.ThresholdsConfig()
        .mode(dash_m.ThresholdsMode.ABSOLUTE)
        .steps(
            [
                dash_m.Threshold(value=None, color="red"),
                dash_m.Threshold(value=BATTERY_LOW, color="orange"),
                dash_m.Threshold(value=BATTERY_WARN, color="green"),
            ]
        )
    )


def _heard_panel() -> PanelBuilder:
    panel = counts_over_time(
        "Devices heard",
        "Gates, seat sensors and shelf readers that sent at least one accepted message in"
        " each interval. A drop is devices gone silent (flat battery, network, power).",
        interval=HEARD_INTERVAL,
        span=16,
    )
    for ref_id, kind in zip("ABC", _HEARD_KINDS, strict=True):
        inner = Query(
            kind,
            (Agg("last", "seq", "seq"),),
            where=(SITE,),
            group_by_time="auto",
            group_by_tags=("device",),
        )
        outer = Query("per_device", (Agg("count", "seq", kind),), group_by_time="auto")
        panel = panel.with_target(target(ref_id).select_nested(outer, inner))
    return panel


def _status_panel() -> PanelBuilder:
    q = Query(
        DEVICE_STATUS,
        (Agg("last", "online", "online"), Agg("last", "boot", "boot"), Agg("last", "fw", "fw")),
        where=(SITE,),
        group_by_tags=("kind", "device"),
    )
    online = dash_m.ValueMap(
        options={
            "true": dash_m.ValueMappingResult(text="online", color="green", index=0),
            "false": dash_m.ValueMappingResult(text="offline", color="red", index=1),
        }
    )
    return (
        table_panel(
            "Device status",
            "Each device's last birth or Last Will (retained status message) in the last"
            f" {STATUS_WINDOW}: offline devices first.",
            sort_by="online",
            span=8,
        )
        .time_from(STATUS_WINDOW)
        .with_target(target().select(q).result_format("table"))
        .with_transformation(hide_columns("Time"))
        .override_by_name(
            "online",
            [
                dash_m.DynamicConfigValue(id_val="mappings", value=[online]),
                dash_m.DynamicConfigValue(
                    id_val="custom.cellOptions", value={"type": "color-background"}
                ),
            ],
        )
    )


def _silent_panel() -> PanelBuilder:
    panel = table_panel(
        "Last heard",
        "When each device's last accepted message came, oldest first: the silent ones"
        " top the list.",
        sort_by="last heard",
        span=8,
    )
    for ref_id, kind in zip("ABC", _HEARD_KINDS, strict=True):
        q = Query(kind, (Agg("last", "seq", "seq"),), where=(SITE,), group_by_tags=("device",))
        panel = panel.with_target(target(ref_id).select(q).result_format("table"))
    return panel.with_transformation(
        dash_m.DataTransformerConfig(id_val="merge", options={})
    ).with_transformation(hide_columns("seq", rename={"Time": "last heard"}))


def _battery_target() -> InfluxQLTarget:
    """Each seat sensor's last battery reading, in percent (devices report 0..1)."""
    q = Query(SEAT, (Agg("last", "battery"),), where=(SITE,), group_by_tags=("zone", "device"))
    percent = Arith(Call("last", "battery"), "*", 100)
    return target().select_computed(q, percent, "battery").result_format("table")


def _battery_bands_panel() -> PanelBuilder:
    return (
        histogram.Panel()
        .title("Seat sensor batteries")
        .description(
            "Seat sensors per battery band (10 % wide) at their last report;"
            f" red below {BATTERY_LOW} %, orange below {BATTERY_WARN} %."
        )
        .datasource(DS)
        .with_target(_battery_target())
        .bucket_size(10)
        .bucket_offset(0)
        .combine(False)
        .legend(legend(()))
        .unit(units.Percent)
        .min(0)
        .max(100)
        .fill_opacity(80)
        .thresholds(_battery_thresholds())
        .color_scheme(dash_b.FieldColor().mode(dash_m.FieldColorModeId.THRESHOLDS))
        .height(9)
        .span(8)
    )


def _battery_table_panel() -> PanelBuilder:
    return (
        table_panel(
            "Lowest batteries",
            "Seat sensors by their last reported battery, lowest first.",
            sort_by="battery",
            span=8,
        )
        .with_target(_battery_target())
        .with_transformation(hide_columns("Time"))
        .override_by_name(
            "battery",
            [
                dash_m.DynamicConfigValue(id_val="unit", value=units.Percent),
                dash_m.DynamicConfigValue(
                    id_val="custom.cellOptions", value={"type": "color-background"}
                ),
            ],
        )
        .thresholds(_battery_thresholds())
    )


def _dead_letters_panel() -> PanelBuilder:
    q = Query(
        DEAD_LETTERS,
        (Agg("sum", "count"),),
        where=(SITE,),
        group_by_time="auto",
        group_by_tags=("reason",),
        fill="0",
    )
    return counts_per_interval(
        "Dead letters by reason",
        "Messages refused by the gateway per interval (kept on the dead-letter topic):"
        " bad JSON or fields, unknown devices or sections, oversized payloads.",
        interval="5m",
        span=16,
    ).with_target(target(alias="$tag_reason").select(q))


def _dead_letters_total_panel() -> PanelBuilder:
    q = Query(
        DEAD_LETTERS,
        (Agg("sum", "count", "messages"),),
        where=(SITE,),
        group_by_tags=("reason", "kind"),
    )
    return count_bars(
        "Dead letters in the time range",
        "Refused messages per reason and device kind.",
        span=8,
        color="orange",
    ).with_target(target(alias="$tag_reason $tag_kind").select(q))


def devices_dashboard() -> dash_m.Dashboard:
    """The health of one site's devices and of what they send."""
    builder = site_dashboard(
        "StackPulse — Devices",
        uid=DEVICES_UID,
        description="Devices online and silent, seat sensor batteries, dead letters.",
        tags=("stackpulse", "devices"),
        time_from="now-24h",
        refresh="1m",
        measurement=DEVICE_STATUS,
    )
    panels = [
        _heard_panel(),
        _status_panel(),
        _silent_panel(),
        _battery_bands_panel(),
        _battery_table_panel(),
        _dead_letters_panel(),
        _dead_letters_total_panel(),
    ]
    return board(builder, panels)
