"""Knobs of the simulated library: its rhythm, its devices and the faults it suffers."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Faults:
    """Things that go wrong; all off by default so the plain stream stays clean.

    Device-state faults act inside the model; stream faults transform the message stream
    after it (see faults.py). Each draws from its own random stream, so turning one on
    leaves the rest of the day exactly as it was.
    """

    reboots_per_device_day: float = 0.0  # counters, seq and sweep restart with boot+1
    duplicate_p: float = 0.0  # a data message is delivered twice
    duplicate_delay_max: float = 5.0  # seconds after the original
    late_p: float = 0.0  # a data message is delivered late (its `ts` unchanged)
    late_delay: tuple[float, float] = (30.0, 600.0)
    missed_read_p: float = 0.0  # an RFID tag on its shelf is not heard in one sweep
    cross_read_p: float = 0.0  # a tag is also heard, weaker, by a neighbouring section
    misplace_p: float = 0.03  # a returned book is reshelved in the wrong section
    # An item disappears from its shelf (stolen, lost, taken to a carrel for good): this
    # many removals per catalogued item and day, each of a random shelved item, whose
    # true place becomes "removed".
    removals_per_item_day: float = 0.0
    # Gate faults: a crossing the counter does not count (people still move); the
    # running sum then drifts, which the closing-time reset measures.
    missed_exit_p: float = 0.0  # an inner -> outer crossing goes uncounted
    missed_entry_p: float = 0.0  # an outer -> inner crossing goes uncounted
    # Seat faults: the share of seat sensors that suffer each, from a moment drawn in
    # `seat_fault_window` (seconds after the start) on. The truth keeps real presence.
    flapping_seat_p: float = 0.0  # the reading flips person/empty every `flap_period`
    flap_period: float = 20.0
    dead_battery_seat_p: float = 0.0  # the sensor falls silent for good
    unscrewed_seat_p: float = 0.0  # the sensor fell off: it reads `empty` whatever is there
    seat_fault_window: tuple[float, float] = (0.0, 4 * 3600.0)


@dataclass(frozen=True, slots=True)
class SimConfig:
    """The library's habits; the defaults make a plausible university term day."""

    peak_fill: float = 0.8  # share of the building's capacity inside at the daily peak
    zone_max_fill: float = 0.95  # people stop choosing a zone this full
    control_interval: float = 60.0  # how often arrivals and departures are planned
    control_tau: float = 600.0  # seconds to close most of a gap to the target crowd
    walk: tuple[float, float] = (5.0, 30.0)  # seconds from one gate to the next
    dwell_median: float = 75 * 60.0
    dwell_sigma: float = 0.6
    dwell_bounds: tuple[float, float] = (10 * 60.0, 6 * 3600.0)
    sit_p: float = 0.85  # a person in a zone with free seats takes one
    break_p: float = 0.25  # leaves a bag on the seat, goes out, comes back
    break_length: tuple[float, float] = (15 * 60.0, 45 * 60.0)
    forget_bag_p: float = 0.02  # a bag stays on the seat after its owner left
    gate_heartbeat: float = 60.0
    gate_min_gap: float = 1.0  # crossings closer than this share one message
    seat_heartbeat: float = 300.0
    seat_battery: tuple[float, float] = (0.55, 1.0)
    sweep_interval: float = 15 * 60.0
    section_gap: float = 2.0  # seconds between two sections of one sweep
    max_items_per_part: int = 250
    rssi: tuple[float, float] = (-72.0, -38.0)
    initial_loan_p: float = 0.05
    checkouts_per_person_hour: float = 0.06
    checkins_per_person_hour: float = 0.06
    renews_per_person_hour: float = 0.01
    holds_per_person_hour: float = 0.005
    reshelve_delay: tuple[float, float] = (30 * 60.0, 120 * 60.0)
    faults: Faults = field(default_factory=Faults)
