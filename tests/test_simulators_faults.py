"""Seat and gate faults of the simulator, and what the occupancy service makes of them."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, time, timedelta

from stackpulse.kernel.topics import Channel, Kind
from stackpulse.services.occupancy.logic import SeatState, SeatTiming
from stackpulse.services.occupancy.site import SiteOccupancy
from stackpulse.simulators import Faults, LibraryModel, SimConfig, messages
from stackpulse.simulators.synth import synthetic_layout
from tests.support.events import sim_event
from tests.test_occupancy_service import run_day

LAYOUT = synthetic_layout(site="main", floors=1, rooms_per_floor=2, seats_per_room=10)
START = datetime.combine(date(2026, 11, 24), time(10), LAYOUT.tz).astimezone(UTC)


def seat_faults(**odds: float) -> SimConfig:
    return SimConfig(faults=Faults(seat_fault_window=(0.0, 600.0), **odds))  # type: ignore[arg-type]


def test_faults_are_off_by_default_and_do_not_disturb_the_rest_of_the_day() -> None:
    end = START + timedelta(hours=2)
    plain = [m.payload for m in messages(LAYOUT, START, end, 4) if m.kind is Kind.GATE]
    flappy = seat_faults(flapping_seat_p=0.3)
    with_faults = [
        m.payload for m in messages(LAYOUT, START, end, 4, config=flappy) if m.kind is Kind.GATE
    ]
    assert plain == with_faults  # seat faults draw from their own random stream


def test_a_flapping_sensor_flaps_but_the_seat_it_shows_does_not() -> None:
    model = LibraryModel(LAYOUT, start=START, seed=2, config=seat_faults(flapping_seat_p=0.2))
    site = SiteOccupancy(LAYOUT, SeatTiming(), "lib/v1")
    changes: Counter[str] = Counter()
    t = START
    while t < START + timedelta(hours=2):
        t += timedelta(seconds=30)
        for m in model.advance(t):
            at = datetime.fromtimestamp(m.at, UTC)
            for topic, _, _ in site.apply(sim_event(m), at):
                if "/seat/" in topic:
                    changes[topic.rsplit("/", 1)[-1]] += 1
        site.tick(t)
    flapping = {s for s, f in model.truth().seat_faults.items() if f == "flapping"}
    assert 2 <= len(flapping) <= 8
    by_id = LAYOUT.seats_by_id
    for seat in flapping:
        readings = model.device(by_id[seat].device).sent
        assert readings > 200  # a reading every 20 s for two hours
        assert changes[seat] <= 3, (seat, changes[seat])  # free once, then held as occupied


def test_a_dead_battery_makes_the_seat_unknown_and_an_unscrewed_one_reads_empty() -> None:
    config = seat_faults(dead_battery_seat_p=0.3, unscrewed_seat_p=0.3)
    model = LibraryModel(LAYOUT, start=START, seed=9, config=config)
    site = SiteOccupancy(LAYOUT, SeatTiming(), "lib/v1")
    run_day(site, model, START + timedelta(hours=1), timedelta(seconds=30))
    truth = model.truth()
    faults = truth.seat_faults
    dead = {s for s, f in faults.items() if f == "dead"}
    loose = {s for s, f in faults.items() if f == "unscrewed"}
    assert dead and loose
    by_id = LAYOUT.seats_by_id
    for seat in dead:  # silent past three heartbeats: unknown, never free
        assert site.seats[by_id[seat].device].state is SeatState.UNKNOWN, seat
    for seat in loose:  # the sensor fell off: it says empty, whoever sits there
        assert site.seats[by_id[seat].device].raw == "empty", seat
    assert any(truth.seats[s] != "empty" for s in loose), "nobody sat on a loose sensor"
    # The dead sensors sent nothing in the last 15 minutes.
    tail = model.advance(START + timedelta(hours=1, minutes=15))
    sent = {m.device for m in tail if m.channel is Channel.DATA}
    assert not sent & {by_id[s].device for s in dead}


def test_missed_exits_make_the_gate_counts_drift_and_the_truth_says_by_how_much() -> None:
    model = LibraryModel(
        LAYOUT, start=START, seed=6, config=SimConfig(faults=Faults(missed_exit_p=0.1))
    )
    list(model.advance(START + timedelta(hours=3)))
    for gate in model.truth().gates.values():
        assert gate.total_out - gate.count_out == gate.missed_out  # one boot: all that was lost
        assert gate.missed_in == 0
    assert sum(g.missed_out for g in model.truth().gates.values()) > 10
