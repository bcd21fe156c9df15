"""Occupancy over a simulated day: closing resets, drift, hogging, privacy, against truth."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stackpulse.kernel.layout import Layout
from stackpulse.kernel.schema import ZONE_DRIFT
from stackpulse.kernel.topics import Kind
from stackpulse.services.occupancy.logic import (
    SeatMachine,
    SeatState,
    SeatTiming,
    ZoneCounts,
    next_closing,
)
from stackpulse.services.occupancy.settings import OccupancySettings
from stackpulse.services.occupancy.site import SiteOccupancy
from stackpulse.simulators import Faults, LibraryModel, SimConfig
from stackpulse.simulators.synth import synthetic_layout
from tests.support.events import data_event, sim_event

LAYOUT = synthetic_layout(site="main", floors=1, rooms_per_floor=2, seats_per_room=6)
TZ = LAYOUT.tz
# Tuesday 24 November 2026, local time: the site opens 07:30-22:30 on weekdays.
OPEN_DAY = date(2026, 11, 24)


def local(day: date, hh: int, mm: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm, tzinfo=TZ).astimezone(UTC)


def run_day(
    site: SiteOccupancy, model: LibraryModel, end: datetime, step: timedelta
) -> list[tuple[str, bytes]]:
    """Feed the model's messages to the site, ticking it on the way, as the service does."""
    out: list[tuple[str, bytes]] = []
    t = model.now
    while t < end:
        t = min(end, t + step)
        for m in model.advance(t):
            out += site.apply(sim_event(m), datetime.fromtimestamp(m.at, UTC))
        out += site.tick(t)
    return out


# -- seats: hogging and configurable delays -------------------------------------------


def s(seconds: float) -> datetime:
    return datetime(2026, 11, 24, 9, tzinfo=UTC) + timedelta(seconds=seconds)


def test_a_bag_left_too_long_is_flagged_and_the_flag_clears_when_the_seat_does() -> None:
    m = SeatMachine(SeatTiming(hog_after=timedelta(minutes=30)))
    m.reading(1, 0, "empty", s(0), s(0))
    m.reading(1, 1, "object", s(10), s(10))
    assert m.tick(s(70)) and m.state is SeatState.HELD
    assert m.held_since == s(70) and not m.held_too_long
    for seq, minute in enumerate(range(5, 30, 5), 2):  # heartbeats: still a bag
        m.reading(1, seq, "object", s(10 + minute * 60), s(10 + minute * 60))
    assert not m.tick(s(70 + 29 * 60))
    assert m.tick(s(70 + 30 * 60))  # the flag changing is a change to publish
    assert m.held_too_long and m.held_since == s(70)
    m.reading(1, 9, "person", s(2000), s(2000))  # the owner is back
    m.tick(s(2100))
    assert m.state is SeatState.OCCUPIED and not m.held_too_long and m.held_since is None


def test_delays_and_the_privacy_floor_come_from_settings() -> None:
    cfg = OccupancySettings.from_env(
        {
            "STACKPULSE_SEAT_ON_DELAY": "5",
            "STACKPULSE_SEAT_OFF_DELAY": "120",
            "STACKPULSE_SEAT_HOG_AFTER": "900",
            "STACKPULSE_PRIVACY_FLOOR": "3",
        },
    )
    assert cfg.timing.on_delay == timedelta(seconds=5)
    assert cfg.timing.off_delay == timedelta(minutes=2)
    assert cfg.timing.hog_after == timedelta(minutes=15)
    assert cfg.timing.heartbeat == timedelta(seconds=300)  # untouched default
    assert cfg.privacy_floor == 3
    assert OccupancySettings.from_env({}).privacy_floor == 5
    m = SeatMachine(cfg.timing)
    m.reading(1, 0, "empty", s(0), s(0))
    m.reading(1, 1, "person", s(1), s(1))
    assert m.tick(s(6)) and m.state is SeatState.OCCUPIED  # after 5 s, not 60
    with pytest.raises(ValueError, match="STACKPULSE_SEAT_OFF_DELAY"):
        OccupancySettings.from_env({"STACKPULSE_SEAT_OFF_DELAY": "ten"})
    with pytest.raises(ValueError, match="STACKPULSE_PRIVACY_FLOOR"):
        OccupancySettings.from_env({"STACKPULSE_PRIVACY_FLOOR": "-1"})


def test_seat_messages_carry_the_hog_flag() -> None:
    site = SiteOccupancy(LAYOUT, SeatTiming(hog_after=timedelta(minutes=5)), "lib/v1")
    seat = LAYOUT.seats[0]
    t0 = s(0)

    def reading(seq: int, presence: str, at: datetime) -> list[tuple[str, bytes]]:
        payload = {"ts": at.isoformat(), "boot": 1, "seq": seq, "presence": presence}
        return site.apply(data_event(Kind.SEAT, seat.device, payload, at), at)

    reading(0, "object", t0)
    assert not site.tick(t0 + timedelta(seconds=30))  # UNKNOWN -> OCCUPIED came at once
    out = site.tick(t0 + timedelta(seconds=61))
    body = next(json.loads(b) for t, b, _ in out if t.endswith(f"/seat/{seat.id}"))
    assert body["state"] == "held" and body["held_too_long"] is False
    out = site.tick(t0 + timedelta(seconds=61 + 300))
    body = next(json.loads(b) for t, b, _ in out if t.endswith(f"/seat/{seat.id}"))
    assert body["held_too_long"] is True and body["held_since"]


# -- closing time ---------------------------------------------------------------------


def test_next_closing_follows_the_site_hours_time_zone_and_night_openings() -> None:
    assert next_closing(LAYOUT, local(OPEN_DAY, 12)) == local(OPEN_DAY, 22, 30)
    saturday = date(2026, 11, 28)
    assert next_closing(LAYOUT, local(OPEN_DAY, 23)) == local(OPEN_DAY + timedelta(1), 22, 30)
    assert next_closing(LAYOUT, local(saturday, 12)) == local(saturday, 21)
    # Past midnight, and a library open around the clock on weekdays: only Friday's
    # closing (the weekend is closed) empties it.
    late = Layout.model_validate(
        {
            "site": "late",
            "name": "Late",
            "timezone": "Europe/Berlin",
            "hours": {"mon-fri": "00:00-24:00"},
            "zones": [{"id": "z", "name": "Z", "floor": 1, "capacity": 5}],
        }
    )
    tue = datetime(2026, 3, 24, 12, tzinfo=UTC)
    assert next_closing(late, tue) == datetime(2026, 3, 27, 23, tzinfo=UTC)  # Sat 00:00 CET
    owl = Layout.model_validate(
        {
            "site": "owl",
            "name": "Owl",
            "timezone": "Europe/Berlin",
            "hours": {"fri": "20:00-02:00"},
            "zones": [{"id": "z", "name": "Z", "floor": 1, "capacity": 5}],
        }
    )
    # Fri 27 March 2026 20:00 until 02:00 on Saturday; summer time starts on Sunday 29th.
    assert next_closing(owl, tue) == datetime(2026, 3, 28, 1, tzinfo=UTC)
    always = Layout.model_validate(
        {"site": "a", "name": "A", "zones": [{"id": "z", "name": "Z", "floor": 1, "capacity": 5}]}
    )
    assert next_closing(always, tue) is None


def _drift(points: Iterable[object]) -> dict[str, int]:
    return {p.tags["zone"]: p.fields["drift"] for p in points}  # type: ignore[attr-defined]


def test_closing_resets_counts_and_records_the_drift_missed_exits_caused() -> None:
    """A day with counters that miss exits: the count drifts up; closing puts it right."""
    start = local(OPEN_DAY, 7)
    faults = Faults(missed_exit_p=0.05)
    model = LibraryModel(LAYOUT, start=start, seed=3, config=SimConfig(faults=faults))
    site = SiteOccupancy(LAYOUT, SeatTiming(), "lib/v1")
    closing = local(OPEN_DAY, 22, 30)
    run_day(site, model, closing - timedelta(minutes=1), timedelta(minutes=2))
    truth = model.truth()
    assert sum(truth.zones.values()) == 0, "the simulated building empties before closing"
    missed = sum(g.missed_out for g in truth.gates.values())
    assert missed > 20
    before = dict(site.zones.net)
    assert sum(before.values()) > 0  # what the gates said: people left without being counted
    assert site.take_points() == []

    out = run_day(site, model, closing + timedelta(minutes=5), timedelta(minutes=1))
    assert site.zones.counts == dict.fromkeys(site.zones.counts, 0)
    (closed_at, drift) = site.drift[-1]
    assert closed_at == closing
    assert drift == before  # nobody crossed a gate in the last minute before closing
    points = site.take_points()
    assert {p.measurement for p in points} == {ZONE_DRIFT}
    assert _drift(points) == before
    assert all(p.ts_ns == int(closing.timestamp()) * 10**9 for p in points)
    # Each zone's missed exits to its outer side is its drift, zone by zone.
    expected = dict.fromkeys(before, 0)
    for g in truth.gates.values():
        for zone, sign in ((g.inner, 1), (g.outer, -1)):
            if zone in expected:
                expected[zone] += sign * (g.missed_out - g.missed_in)
    assert before == expected
    # The reset is published: every zone goes to 0.
    zones = {json.loads(b)["id"]: json.loads(b)["occupancy"] for t, b, _ in out if "/zone/" in t}
    assert set(zones) == {z.id for z in LAYOUT.zones} and not any(zones.values())


def test_a_clean_day_has_no_drift_and_the_next_day_counts_from_zero() -> None:
    start = local(OPEN_DAY, 21)
    model = LibraryModel(LAYOUT, start=start, seed=5)
    site = SiteOccupancy(LAYOUT, SeatTiming(), "lib/v1")
    run_day(site, model, local(OPEN_DAY + timedelta(1), 10), timedelta(minutes=2))
    (closed_at, drift) = site.drift[-1]
    assert closed_at == local(OPEN_DAY, 22, 30) and len(site.drift) == 1
    assert not any(drift.values())
    truth = model.truth()
    assert sum(truth.zones.values()) > 0
    # Tolerance: crossings in the last second may be unsent (a gate reports at most 1/s).
    assert sum(abs(site.zones.count(z) - n) for z, n in truth.zones.items()) <= 4


# -- counts against the simulator's truth, with faulty streams ------------------------


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    seed=st.integers(0, 10_000),
    duplicate_p=st.sampled_from([0.0, 0.1, 0.4]),
    late_p=st.sampled_from([0.0, 0.05, 0.2]),
    reboots=st.sampled_from([0.0, 24.0, 96.0]),
    step=st.sampled_from([7.0, 60.0, 300.0]),
)
def test_counts_match_the_simulators_truth_on_shuffled_duplicated_rebooting_streams(
    seed: int, duplicate_p: float, late_p: float, reboots: float, step: float
) -> None:
    faults = Faults(
        duplicate_p=duplicate_p,
        late_p=late_p,
        late_delay=(5.0, 300.0),
        reboots_per_device_day=reboots,
    )
    start = local(OPEN_DAY, 11)
    model = LibraryModel(LAYOUT, start=start, seed=seed, config=SimConfig(faults=faults))
    zones = ZoneCounts(LAYOUT)
    end = start + timedelta(minutes=90)
    t = start
    delivered = 0
    while t < end:
        t = min(end, t + timedelta(seconds=step))
        for m in model.advance(t):
            if m.kind is Kind.GATE and "in" in m.payload:
                p = m.payload
                zones.apply_gate(m.device, p["boot"], p["seq"], p["in"], p["out"])
                delivered += 1
    # Compare at `end`: every gate reports its counters now (a heartbeat), and only what
    # was observed by `end` is applied while the late copies come in.
    truth = model.truth()
    for gate in truth.gates:
        model.report(gate)
    for m in model.advance(end + timedelta(seconds=301)):
        observed = datetime.fromisoformat(m.payload["ts"]) if "ts" in m.payload else None
        if m.kind is Kind.GATE and "in" in m.payload and observed and observed <= end:
            p = m.payload
            zones.apply_gate(m.device, p["boot"], p["seq"], p["in"], p["out"])
    assert delivered > 50 and sum(truth.zones.values()) > 10
    # Exactly what the messages can tell, whatever the order, duplicates and reboots...
    assert zones.net == {z: truth.net_from_messages(z) for z in zones.net}
    # ...which is the truth itself but for crossings a restart swallowed before sending.
    lost = sum(g.lost_in + g.lost_out for g in truth.gates.values())
    assert lost or zones.net == {z: truth.net_from_gates(z) for z in zones.net}
    assert lost <= 2 * max((g.boot for g in truth.gates.values()), default=0) * len(truth.gates)


# -- privacy floor --------------------------------------------------------------------


def test_small_counts_are_withheld_not_shown_as_zero() -> None:
    site = SiteOccupancy(LAYOUT, SeatTiming(), "lib/v1", privacy_floor=5)
    gate = next(g for g in LAYOUT.gates if g.outer == "outside")
    lobby = gate.inner

    def crossing(seq: int, n_in: int, n_out: int) -> dict[str, object]:
        at = s(seq)
        payload = {"ts": at.isoformat(), "boot": 1, "seq": seq, "in": n_in, "out": n_out}
        out = site.apply(data_event(Kind.GATE, gate.device, payload, at), at)
        return next(json.loads(b) for t, b, _ in out if t.endswith(f"/zone/{lobby}"))

    few = crossing(1, 4, 0)
    assert few["occupancy"] is None and few["occupancy_band"] == "few"
    enough = crossing(2, 5, 0)
    assert enough["occupancy"] == 5 and enough["occupancy_band"] is None
    empty = crossing(3, 5, 5)
    assert empty["occupancy"] == 0 and empty["occupancy_band"] is None
    # Staff and dashboards keep the exact figure.
    crossing(4, 7, 5)
    stored = {p.tags["zone"]: p.fields["occupancy"] for p in site.zone_points(s(5))}
    assert stored[lobby] == 2
