"""The alert rules table and engine: each rule opens, refreshes, clears; thresholds, bands,
hysteresis and holds-for against a fake clock; settings from the environment; checkpoints."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta

import pytest

from stackpulse.kernel.layout import Layout
from stackpulse.services.alerts.logic import RULES, RULES_BY_ID, RuleEngine
from stackpulse.services.alerts.model import (
    DeviceSeen,
    DriftSeen,
    FindingSeen,
    Observation,
    SeatSeen,
    Severity,
    ZoneSeen,
)
from stackpulse.services.alerts.settings import AlertSettings, AlertSettingsError

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)

LAYOUT = Layout.model_validate(
    {
        "site": "main",
        "name": "Main Library",
        "timezone": "Asia/Shanghai",
        "zones": [
            {"id": "f1-reading", "name": "1F Reading Room", "floor": 1, "capacity": 100},
            {"id": "f3-stacks", "name": "3F Stacks", "floor": 3, "capacity": 50},
        ],
        "gates": [{"device": "gate-main-1", "outer": "outside", "inner": "f1-reading"}],
        "seats": [{"id": "f1-r-001", "device": "seat-0001", "zone": "f1-reading"}],
        "shelves": [
            {
                "device": "shelf-ctrl-3A",
                "zone": "f3-stacks",
                "sections": [{"id": "3F-A07-2", "first": "QA1", "last": "QA99"}],
            }
        ],
        "circulation": [{"device": "circ-1", "zone": "f1-reading"}],
    }
)

MISPLACED = {
    "item": "31234000123456",
    "call_number": "QA76.73 .P98 2019",
    "title": "Python tricks",
    "seen_section": "3F-A07-2",
    "expected_sections": ["3F-B02-1"],
    "since": "2026-11-24T09:40:00.000Z",
}


def engine(**changes: object) -> RuleEngine:
    return RuleEngine([LAYOUT], AlertSettings.model_validate(changes))


def only(observations: list[Observation], rule: str) -> list[Observation]:
    return [o for o in observations if o.rule == rule]


def one(observations: list[Observation], rule: str) -> Observation:
    found = only(observations, rule)
    assert len(found) == 1, observations
    return found[0]


# ---- the table -------------------------------------------------------------------------


def test_the_table_holds_every_rule_of_the_issue_once_with_its_thresholds() -> None:
    ids = [r.id for r in RULES]
    assert len(ids) == len(set(ids))
    assert set(ids) == {
        "device_offline",
        "device_silent",
        "battery_low",
        "zone_over_capacity",
        "counter_drift",
        "seat_held_too_long",
        "item_misplaced",
        "item_missing",
        "item_awaiting_reshelving",
    }
    names = {*AlertSettings.model_fields, "heartbeat"}
    for rule in RULES:
        assert rule.title and rule.condition and rule.clear and rule.source
        assert set(rule.thresholds) <= names, rule.id
        assert rule.subject in ("device", "zone", "seat", "item")
    assert RULES_BY_ID["battery_low"].thresholds == (
        "battery_warning",
        "battery_critical",
        "battery_clear_margin",
    )


# ---- devices ---------------------------------------------------------------------------


def test_a_last_will_opens_offline_and_a_birth_or_any_data_clears_it() -> None:
    e = engine()
    will = DeviceSeen("main", "gate", "gate-main-1", T0, online=False)
    opened = one(e.observe(will), "device_offline")
    assert opened.active and opened.severity is Severity.WARNING and opened.subject == "gate-main-1"
    # 10:00 UTC is 18:00 in the site's timezone: staff read their own clock.
    assert opened.message == (
        "Gate counter gate-main-1 (outside → 1F Reading Room) went offline at 18:00 "
        "(its Last Will): check its power and network"
    )
    repeat = dataclasses.replace(will, at=T0 + timedelta(seconds=30))
    assert only(e.observe(repeat), "device_offline") == []  # refreshed at most once a minute
    back = one(e.observe(DeviceSeen("main", "gate", "gate-main-1", T0 + 2 * MIN)), "device_offline")
    assert not back.active
    e.observe(dataclasses.replace(will, at=T0 + 3 * MIN))
    birth = DeviceSeen("main", "gate", "gate-main-1", T0 + 4 * MIN, online=True)
    assert not one(e.observe(birth), "device_offline").active


def test_a_device_silent_past_its_heartbeat_opens_and_any_message_clears() -> None:
    e = engine()
    assert only(e.tick(T0), "device_silent") == []
    e.observe(DeviceSeen("main", "gate", "gate-main-1", T0))
    assert only(e.tick(T0 + 3 * MIN), "device_silent") == []  # 3 heartbeats: not yet past
    silent = only(e.tick(T0 + 3 * MIN + timedelta(seconds=1)), "device_silent")
    assert [o.subject for o in silent] == ["gate-main-1"]
    assert silent[0].active and silent[0].message.startswith(
        "Gate counter gate-main-1 (outside → 1F Reading Room) has sent nothing since 18:00"
    )
    assert "every 1 min" in silent[0].message
    assert only(e.tick(T0 + 3 * MIN + timedelta(seconds=20)), "device_silent") == []  # no spam
    refreshed = only(e.tick(T0 + 4 * MIN + timedelta(seconds=2)), "device_silent")
    assert [o.active for o in refreshed] == [True]  # a refresh once per refresh_every
    heard = e.observe(DeviceSeen("main", "gate", "gate-main-1", T0 + 5 * MIN))
    assert not one(heard, "device_silent").active


def test_never_heard_devices_go_silent_from_the_start_but_circ_has_no_heartbeat() -> None:
    e = engine()
    e.tick(T0)
    late = e.tick(T0 + timedelta(minutes=46))
    assert {o.subject for o in only(late, "device_silent")} == {
        "gate-main-1",
        "seat-0001",
        "shelf-ctrl-3A",
    }
    assert "since the alerts service started" in only(late, "device_silent")[0].message
    with_circ = engine(heartbeat={"circ": timedelta(hours=2)})
    with_circ.tick(T0)
    assert [o.subject for o in with_circ.tick(T0 + timedelta(hours=3))] == ["circ-1"]


def test_an_offline_device_is_not_also_reported_silent() -> None:
    e = engine()
    e.tick(T0)
    e.observe(DeviceSeen("main", "gate", "gate-main-1", T0, online=False))
    assert "gate-main-1" not in {o.subject for o in e.tick(T0 + timedelta(hours=1))}


def test_a_device_clock_running_behind_does_not_look_silent() -> None:
    e = engine()
    e.tick(T0 + 10 * MIN)
    e.observe(DeviceSeen("main", "gate", "gate-main-1", T0 + 6 * MIN))  # 4 min behind
    assert only(e.tick(T0 + 11 * MIN), "device_silent") == []


def test_battery_bands_raise_severity_and_clear_only_above_the_margin() -> None:
    e = engine()

    def seen(level: float, minutes: int) -> list[Observation]:
        at = T0 + minutes * MIN
        return only(
            e.observe(DeviceSeen("main", "seat", "seat-0001", at, battery=level)), "battery_low"
        )

    first = seen(0.80, 0)
    assert [o.active for o in first] == [False]  # reported once as fine (restart safety)
    assert seen(0.70, 1) == []
    low = seen(0.24, 2)
    assert low[0].active and low[0].severity is Severity.WARNING
    assert low[0].message == (
        "Seat sensor seat-0001 (seat f1-r-001, 1F Reading Room): battery at 24% (low at 25%); "
        "replace it soon"
    )
    critical = seen(0.09, 3)
    assert critical[0].active and critical[0].severity is Severity.CRITICAL
    assert "replace it now" in critical[0].message
    assert [o.severity for o in seen(0.27, 4)] == [Severity.WARNING]  # back in the margin
    still = seen(0.29, 10)  # within the margin: still low, refreshed
    assert [(o.active, o.severity) for o in still] == [(True, Severity.WARNING)]
    cleared = seen(0.31, 20)
    assert [o.active for o in cleared] == [False]


# ---- zones -----------------------------------------------------------------------------


def zone(occupancy: int | None, at: datetime) -> ZoneSeen:
    return ZoneSeen("main", "f1-reading", occupancy, 100, at)


def test_over_capacity_opens_only_after_holding_and_clears_below_the_hysteresis() -> None:
    e = engine()
    assert [o.active for o in only(e.observe(zone(80, T0)), "zone_over_capacity")] == [False]
    assert only(e.observe(zone(101, T0 + MIN)), "zone_over_capacity") == []
    assert only(e.tick(T0 + 5 * MIN), "zone_over_capacity") == []  # 4 min over
    opened = one(e.tick(T0 + 6 * MIN), "zone_over_capacity")
    assert opened.active and opened.subject == "f1-reading"
    assert opened.message == (
        "1F Reading Room is over capacity: 101 people for 100 places (101%) since 18:01; "
        "limit entry or open overflow space"
    )
    # Between clear and open: still over (hysteresis), refreshed at most once a minute.
    assert (
        only(e.observe(zone(95, T0 + 6 * MIN + timedelta(seconds=10))), "zone_over_capacity") == []
    )
    assert only(e.observe(zone(91, T0 + 8 * MIN)), "zone_over_capacity")[0].active
    assert not one(e.observe(zone(90, T0 + 9 * MIN)), "zone_over_capacity").active


def test_a_short_spike_does_not_open_and_holds_for_restarts_after_dipping() -> None:
    e = engine()
    e.observe(zone(120, T0))
    e.observe(zone(99, T0 + 3 * MIN))  # dipped under: the clock restarts
    e.observe(zone(105, T0 + 4 * MIN))
    assert only(e.tick(T0 + 8 * MIN), "zone_over_capacity") == []
    assert one(e.tick(T0 + 9 * MIN), "zone_over_capacity").active


def test_a_hidden_small_count_is_never_over_capacity_and_holds_may_be_zero() -> None:
    e = engine(capacity_holds=timedelta(0))
    assert not one(e.observe(zone(None, T0)), "zone_over_capacity").active
    assert one(e.observe(zone(100, T0 + MIN)), "zone_over_capacity").active


def test_counter_drift_at_closing_either_way() -> None:
    e = engine()
    drift = one(e.observe(DriftSeen("main", "f1-reading", 14, T0)), "counter_drift")
    assert drift.active and drift.subject == "f1-reading"
    assert drift.message == (
        "Gate counts of 1F Reading Room were off by 14 at closing (still inside; alert at 10): "
        "check the gate counters (gates gate-main-1)"
    )
    assert not one(
        e.observe(DriftSeen("main", "f1-reading", 3, T0 + 24 * 60 * MIN)), "counter_drift"
    ).active
    assert one(
        e.observe(DriftSeen("main", "f1-reading", -10, T0 + 48 * 60 * MIN)), "counter_drift"
    ).active


# ---- seats -----------------------------------------------------------------------------


def test_a_seat_held_too_long_opens_on_the_clock_and_clears_when_no_longer_held() -> None:
    e = engine()
    held = SeatSeen("main", "f1-r-001", "held", T0, T0)
    assert [o.active for o in e.observe(held)] == [False]
    assert e.tick(T0 + 29 * MIN) == []
    opened = one(e.tick(T0 + 30 * MIN), "seat_held_too_long")
    assert opened.active and opened.severity is Severity.INFO
    assert opened.message == (
        "Seat f1-r-001 in 1F Reading Room has been held by belongings with nobody there since "
        "18:00 (30 min; limit 30 min): check it and apply the seat policy"
    )
    back = SeatSeen("main", "f1-r-001", "occupied", T0 + 31 * MIN, T0 + 31 * MIN)
    assert not one(e.observe(back), "seat_held_too_long").active
    assert only(e.tick(T0 + 90 * MIN), "seat_held_too_long") == []


# ---- inventory findings ----------------------------------------------------------------


def test_a_misplaced_item_says_where_it_is_and_where_it_belongs() -> None:
    e = engine()
    found = FindingSeen("main", "misplaced", "31234000123456", "opened", T0, MISPLACED)
    opened = one(e.observe(found), "item_misplaced")
    assert opened.active and opened.subject == "31234000123456"
    assert opened.message == (
        "Item 31234000123456 (QA76.73 .P98 2019, Python tricks) is on shelf 3F-A07-2; "
        "it belongs in 3F-B02-1"
    )
    assert opened.detail["seen_section"] == "3F-A07-2"
    closed = FindingSeen("main", "misplaced", "31234000123456", "closed", T0 + MIN)
    assert not one(e.observe(closed), "item_misplaced").active


def test_a_missing_item_says_where_it_was_last_seen() -> None:
    e = engine()
    detail = {
        "item": "31234000999999",
        "call_number": "QA9 .B3",
        "title": "Logic",
        "last_seen_section": "3F-A07-2",
        "last_seen_at": "2026-11-24T08:30:00.000Z",
        "since": "2026-11-24T10:00:00.000Z",
    }
    opened = one(
        e.observe(FindingSeen("main", "missing", "31234000999999", "opened", T0, detail)),
        "item_missing",
    )
    assert opened.severity is Severity.WARNING
    assert opened.message == (
        "Item 31234000999999 (QA9 .B3, Logic) is missing: last seen on shelf 3F-A07-2 at 16:30, "
        "not on loan; search for it"
    )
    never = dict(detail, last_seen_section=None, last_seen_at=None)
    msg = one(e.observe(FindingSeen("main", "missing", "x1", "opened", T0, never)), "item_missing")
    assert "never seen on a shelf" in msg.message


def test_awaiting_reshelving_alerts_only_after_the_extra_wait() -> None:
    e = engine(reshelving_max=timedelta(minutes=30))
    detail = {
        "item": "31234000555555",
        "call_number": "QA1 .A1",
        "title": "Sets",
        "checked_in_at": "2026-11-24T08:00:00.000Z",
        "overdue_since": "2026-11-24T10:00:00.000Z",
    }
    seen = FindingSeen("main", "reshelving", "31234000555555", "opened", T0 + 5 * MIN, detail)
    assert [o.active for o in e.observe(seen)] == [False]  # not yet: the extra wait runs
    assert only(e.tick(T0 + 29 * MIN), "item_awaiting_reshelving") == []
    opened = one(e.tick(T0 + 30 * MIN), "item_awaiting_reshelving")
    assert opened.message == (
        "Item 31234000555555 (QA1 .A1, Sets) was checked in at 16:00 and has not been seen on "
        "a shelf since; reshelve it"
    )
    closed = FindingSeen("main", "reshelving", "31234000555555", "closed", T0 + 40 * MIN)
    assert not one(e.observe(closed), "item_awaiting_reshelving").active
    assert only(e.tick(T0 + 60 * MIN), "item_awaiting_reshelving") == []
    at_once = engine(reshelving_max=timedelta(0))
    assert one(at_once.observe(seen), "item_awaiting_reshelving").active


def test_unknown_sites_devices_and_findings_are_ignored() -> None:
    e = engine()
    assert e.observe(DeviceSeen("law", "gate", "gate-main-1", T0, online=False)) == []
    assert e.observe(DeviceSeen("main", "gate", "gate-nope", T0, online=False)) == []
    assert e.observe(FindingSeen("main", "weird", "x", "opened", T0)) == []


# ---- checkpoints -----------------------------------------------------------------------


def test_a_restored_engine_continues_where_the_old_one_stopped() -> None:
    e = engine()
    e.tick(T0)
    e.observe(zone(120, T0))
    e.observe(DeviceSeen("main", "seat", "seat-0001", T0, battery=0.05))
    e.observe(SeatSeen("main", "f1-r-001", "held", T0, T0))
    saved = json.loads(json.dumps(e.checkpoint()))

    again = engine()
    again.restore(saved)
    # The battery alert is still known to be open: a repeat within a minute says nothing.
    repeat = DeviceSeen("main", "seat", "seat-0001", T0 + timedelta(seconds=10), battery=0.05)
    assert only(again.observe(repeat), "battery_low") == []
    later = again.tick(T0 + 30 * MIN)
    assert {o.rule for o in later if o.active} >= {"zone_over_capacity", "seat_held_too_long"}
    assert again.checkpoint()["started"] == "2026-11-24T10:00:00Z"


def test_a_fresh_engine_reports_ended_conditions_once_so_a_restart_clears_stale_alerts() -> None:
    e = engine()
    first = e.observe(DeviceSeen("main", "seat", "seat-0001", T0, battery=0.9))
    assert {(o.rule, o.active) for o in first} == {
        ("device_offline", False),
        ("device_silent", False),
        ("battery_low", False),
    }
    assert e.observe(DeviceSeen("main", "seat", "seat-0001", T0 + MIN, battery=0.9)) == []


@pytest.mark.parametrize("data", [None, [], {"version": 2}, {"version": 1, "devices": [[1]]}])
def test_restoring_something_else_is_a_value_error(data: object) -> None:
    with pytest.raises(ValueError, match="not an alert rules checkpoint"):
        engine().restore(data)


# ---- settings --------------------------------------------------------------------------


def test_settings_defaults_and_environment() -> None:
    s = AlertSettings()
    assert s.heartbeat["gate"] == timedelta(seconds=180)
    assert s.heartbeat["seat"] == timedelta(seconds=900)
    assert "circ" not in s.heartbeat
    env = {
        "STACKPULSE_ALERT_BATTERY_WARNING": "30%",
        "STACKPULSE_ALERT_CAPACITY_HOLDS": "10m",
        "STACKPULSE_ALERT_DRIFT_THRESHOLD": "25",
        "STACKPULSE_ALERT_HEARTBEAT_CIRC": "2h",
        "STACKPULSE_ALERT_HEARTBEAT_SHELF": "off",
        "STACKPULSE_ALERT_RESHELVING_MAX": "0",
        "OTHER": "ignored",
    }
    got = AlertSettings.from_env(env)
    assert got.battery_warning == pytest.approx(0.30)
    assert got.capacity_holds == timedelta(minutes=10)
    assert got.drift_threshold == 25
    assert got.heartbeat == {
        "gate": timedelta(minutes=3),
        "seat": timedelta(minutes=15),
        "circ": timedelta(hours=2),
    }
    assert got.reshelving_max == timedelta(0)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"STACKPULSE_ALERT_ESCALATE_AFTER": "soon"}, "STACKPULSE_ALERT_ESCALATE_AFTER='soon'"),
        ({"STACKPULSE_ALERT_ESCALATE_AFTER": "0"}, "STACKPULSE_ALERT_ESCALATE_AFTER='0'"),
        ({"STACKPULSE_ALERT_DRIFT_THRESHOLD": "1.5"}, "not a whole number"),
        ({"STACKPULSE_ALERT_BATTERY_CRITICAL": "0.5"}, "STACKPULSE_ALERT_BATTERY_CRITICAL='0.5'"),
        ({"STACKPULSE_ALERT_CAPACITY_CLEAR": "1.2"}, "at most capacity_open"),
        ({"STACKPULSE_ALERT_HEARTBEAT_GATE": "x"}, "STACKPULSE_ALERT_HEARTBEAT_GATE='x'"),
    ],
)
def test_a_bad_variable_is_one_line_naming_it(env: dict[str, str], expected: str) -> None:
    with pytest.raises(AlertSettingsError) as caught:
        AlertSettings.from_env(env)
    assert expected in str(caught.value) and "\n" not in str(caught.value)
