"""Pure occupancy logic: counter deltas across reboots and reordering, seat state machines."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from stackpulse.kernel.layout import Layout
from stackpulse.services.occupancy.logic import (
    GateCounter,
    SeatMachine,
    SeatState,
    SeatTiming,
    ZoneCounts,
    busyness,
)

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
LAYOUT = Layout.model_validate(
    {
        "site": "main",
        "name": "Test",
        "zones": [
            {"id": "lobby", "name": "Lobby", "floor": 1, "capacity": 50},
            {"id": "reading", "name": "Reading", "floor": 2, "capacity": 40},
        ],
        "gates": [
            {"device": "gate-front", "outer": "outside", "inner": "lobby"},
            {"device": "door-reading", "outer": "lobby", "inner": "reading"},
        ],
    }
)


def s(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_counter_deltas_within_a_boot_and_across_a_reboot() -> None:
    c = GateCounter()
    assert c.update(1, 0, 5, 0) == (5, 0)  # first message since boot: all of it is new
    assert c.update(1, 1, 8, 2) == (3, 2)
    assert c.update(1, 1, 8, 2) == (0, 0)  # duplicate
    assert c.update(1, 0, 5, 0) == (0, 0)  # overtaken
    assert c.update(1, 3, 8, 1) == (0, 0)  # a counter going back is refused, not negative
    assert c.update(2, 0, 1, 0) == (1, 0)  # reboot: counting restarts from zero
    # A straggler from the old boot, delivered late: the crossings only it carries count.
    assert c.update(1, 9, 10, 3) == (2, 1)
    assert c.update(1, 8, 9, 3) == (0, 0)  # overtaken within its boot
    assert (c.boot, c.in_total) == (2, 1)  # the newest boot is still the current one
    assert c.update(2, 1, 4, 1) == (3, 1)


def test_internal_door_moves_people_between_zones() -> None:
    z = ZoneCounts(LAYOUT)
    assert z.apply_gate("gate-front", 1, 0, 10, 0) == {"lobby"}
    assert z.apply_gate("door-reading", 1, 0, 4, 0) == {"lobby", "reading"}
    assert z.counts == {"lobby": 6, "reading": 4}
    z.apply_gate("door-reading", 1, 1, 4, 1)  # one goes back to the lobby
    assert z.counts == {"lobby": 7, "reading": 3}
    assert z.apply_gate("unknown-gate", 1, 0, 3, 0) == set()


def test_zone_counts_never_go_negative() -> None:
    z = ZoneCounts(LAYOUT)
    z.apply_gate("gate-front", 1, 0, 0, 5)  # missed entries: five leave who never came in
    assert z.counts["lobby"] == 0


def _stream(seed: int, people: int) -> tuple[list[tuple[str, int, int, int, int]], dict[str, int]]:
    """A ground-truth walk: people enter, move between zones and leave; gates count them."""
    rnd = random.Random(seed)
    where = ["outside"] * people
    totals = {"gate-front": [0, 0], "door-reading": [0, 0]}
    boots = {"gate-front": 1, "door-reading": 1}
    seqs = {"gate-front": 0, "door-reading": 0}
    msgs = []
    for _ in range(people * 6):
        p = rnd.randrange(people)
        step = {
            "outside": ("gate-front", 0),
            "lobby": rnd.choice([("gate-front", 1), ("door-reading", 0)]),
            "reading": ("door-reading", 1),
        }[where[p]]
        gate, direction = step
        totals[gate][direction] += 1
        where[p] = {
            ("gate-front", 0): "lobby",
            ("gate-front", 1): "outside",
            ("door-reading", 0): "reading",
            ("door-reading", 1): "lobby",
        }[step]
        if rnd.random() < 0.3:
            msgs.append((gate, boots[gate], seqs[gate], *totals[gate]))
            seqs[gate] += 1
    for gate in totals:  # every gate reports its totals at the end (heartbeat)
        msgs.append((gate, boots[gate], seqs[gate], *totals[gate]))
    truth = {z: where.count(z) for z in ("lobby", "reading")}
    return msgs, truth


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 30), st.randoms())
def test_counts_match_truth_under_shuffles_duplicates_and_losses(
    seed: int, people: int, rnd: random.Random
) -> None:
    msgs, truth = _stream(seed, people)
    last = {g: max(m for m in msgs if m[0] == g) for g in ("gate-front", "door-reading")}
    noisy = [m for m in msgs if rnd.random() > 0.2 or m in last.values()]  # lost messages
    noisy += rnd.sample(noisy, len(noisy) // 3)  # duplicates
    rnd.shuffle(noisy)  # reordering
    # The final heartbeat of each gate arrives last, as it would after a quiet spell.
    noisy = [m for m in noisy if m not in last.values()] + list(last.values())
    z = ZoneCounts(LAYOUT)
    for m in noisy:
        z.apply_gate(*m)
    assert z.counts == truth


TIMING = SeatTiming(on_delay=timedelta(seconds=60), off_delay=timedelta(minutes=10))


def test_seat_turns_occupied_after_the_on_delay_and_free_only_after_the_off_delay() -> None:
    m = SeatMachine(TIMING)
    assert m.state is SeatState.UNKNOWN
    m.reading(1, 0, "empty", s(0), s(0))
    assert m.state is SeatState.FREE
    m.reading(1, 1, "person", s(10), s(10))
    assert m.state is SeatState.FREE  # not yet: a passer-by is not a student sitting down
    m.tick(s(69))
    assert m.state is SeatState.FREE
    m.tick(s(70))
    assert m.state is SeatState.OCCUPIED
    m.reading(1, 2, "empty", s(100), s(100))
    m.tick(s(100 + 9 * 60))
    assert m.state is SeatState.OCCUPIED  # stepped out for a book
    m.tick(s(100 + 10 * 60))
    assert m.state is SeatState.FREE


def test_a_bag_holds_the_seat() -> None:
    m = SeatMachine(TIMING)
    m.reading(1, 0, "empty", s(0), s(0))
    m.reading(1, 1, "object", s(10), s(10))
    m.tick(s(71))
    assert m.state is SeatState.HELD


def test_last_will_and_silence_make_a_seat_unknown_never_free() -> None:
    m = SeatMachine(TIMING)
    m.reading(1, 0, "empty", s(0), s(0))
    m.status(False, s(5), s(5))
    assert m.state is SeatState.UNKNOWN
    m.status(True, s(30), s(30))
    assert m.state is SeatState.FREE  # back online, last reading still stands
    m.tick(s(30 + 3 * 300 + 1))
    assert m.state is SeatState.UNKNOWN  # three heartbeats missed


def test_stale_readings_are_ignored() -> None:
    m = SeatMachine(TIMING)
    m.reading(1, 5, "person", s(0), s(0))
    assert not m.reading(1, 4, "empty", s(1), s(1))
    assert m.raw == "person"


@settings(max_examples=100, deadline=None)
@given(st.integers(2, 20))
def test_a_flapping_sensor_does_not_flap_the_seat(period: int) -> None:
    m = SeatMachine(TIMING)
    m.reading(1, 0, "person", s(0), s(0))
    m.tick(s(61))
    changes = 0
    for i in range(1, 400):
        changes += m.reading(
            1, i, "empty" if i % 2 else "person", s(61 + i * period), s(61 + i * period)
        )
    assert m.state is SeatState.OCCUPIED
    assert changes == 0


def test_busyness_bands() -> None:
    assert [busyness(n, 100) for n in (0, 30, 60, 81, 100, 120)] == [
        "quiet",
        "moderate",
        "busy",
        "very busy",
        "full",
        "full",
    ]
