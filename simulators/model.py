"""The pure, seeded model of a library's day: devices, people and books, and the truth."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from stackpulse.kernel.layout import Layout
from stackpulse.kernel.topics import DEFAULT_ROOT, Kind
from stackpulse.simulators.building import Building
from stackpulse.simulators.config import SimConfig
from stackpulse.simulators.crowd import Crowd
from stackpulse.simulators.devices import (
    CircDevice,
    Device,
    Fleet,
    GateDevice,
    Message,
    SeatDevice,
    ShelfDevice,
)
from stackpulse.simulators.engine import Engine
from stackpulse.simulators.faults import StreamFaults
from stackpulse.simulators.rhythm import Hours
from stackpulse.simulators.stacks import CatalogEntry, Stacks


@dataclass(frozen=True, slots=True)
class GateTruth:
    outer: str
    inner: str
    boot: int
    count_in: int  # since boot: what the device sends
    count_out: int
    total_in: int  # since the simulation started, across boots
    total_out: int
    missed_in: int = 0  # crossings a fault kept the device from counting
    missed_out: int = 0
    lost_in: int = 0  # crossings counted but never sent: a restart came first
    lost_out: int = 0

    @property
    def sent_net(self) -> int:
        """People moved inwards as the device's messages can ever tell it."""
        uncounted = self.missed_in + self.lost_in - self.missed_out - self.lost_out
        return self.total_in - self.total_out - uncounted


@dataclass(frozen=True)
class Truth:
    """What really is, at `at`: compare the system's answers with it."""

    at: datetime
    zones: dict[str, int]  # people in each zone (walkers counted where they are)
    seats: dict[str, str]  # seat id -> person | object | empty
    gates: dict[str, GateTruth]
    boots: dict[str, int]  # device -> current boot
    items: dict[str, str]  # item -> section id | "loan" | "reshelving"
    misplaced: dict[str, str]  # item -> the wrong section it sits on
    turned_away: int  # people who found every room full
    seat_faults: dict[str, str] = field(default_factory=dict)  # seat id -> fault, if any

    def net_from_gates(self, zone: str) -> int:
        """People in `zone` as the gates' totals tell it: what a perfect counter sees."""
        net = 0
        for g in self.gates.values():
            if g.inner == zone:
                net += g.total_in - g.total_out
            if g.outer == zone:
                net += g.total_out - g.total_in
        return net

    def net_from_messages(self, zone: str) -> int:
        """People in `zone` as the gates' messages can tell it: the truth less what the
        counters missed or lost to a restart. A correct consumer of every message gets
        exactly this, in any order, with any duplicates."""
        net = 0
        for g in self.gates.values():
            if g.inner == zone:
                net += g.sent_net
            if g.outer == zone:
                net -= g.sent_net
        return net


class LibraryModel:
    """Advance it to a time and it says what every device published meanwhile.

    No I/O, no wall clock: the same layout, start, seed, catalog and config give the
    same messages, however the caller slices time.
    """

    def __init__(
        self,
        layout: Layout,
        *,
        start: datetime,
        seed: int,
        catalog: Sequence[CatalogEntry] = (),
        config: SimConfig | None = None,
    ) -> None:
        if start.tzinfo is None:
            raise ValueError("the simulation start must be timezone-aware")
        self.layout = layout
        self.cfg = cfg = config or SimConfig()
        t0 = start.timestamp()
        # One random stream per concern: switching a fault on leaves the rest unchanged.
        # Stream faults draw as the caller slices time, so they must share no stream
        # with anything drawn inside events.
        names = ("dev", "crowd", "stacks", "reboots", "stream", "gatefaults", "seatfaults")
        rng = {k: random.Random(f"{seed}:{k}") for k in names}
        self._rng_dev, self._rng_reboots = rng["dev"], rng["reboots"]
        self.engine = Engine(t0)
        self.hours = Hours(layout)
        self.fleet = self._build_fleet(layout, rng["dev"])
        f = cfg.faults
        for gate in self.fleet.gates.values():
            gate.miss_in_p, gate.miss_out_p = f.missed_entry_p, f.missed_exit_p
            gate.miss_rng = rng["gatefaults"]
        self._rng_seatfaults = rng["seatfaults"]
        self.crowd = Crowd(
            self.engine,
            rng["crowd"],
            cfg,
            Building(layout),
            self.hours,
            self.fleet.gates,
            self.fleet.seats,
            self._gate_crossed,
            self._seat_changed,
        )
        self.stacks = Stacks(
            self.engine, rng["stacks"], cfg, layout, catalog, self.fleet.shelves, self.fleet.desks
        )
        self.stream = StreamFaults(cfg.faults, rng["stream"])
        self._schedule_start(t0)

    def _build_fleet(self, layout: Layout, rng: random.Random) -> Fleet:
        fleet = Fleet()
        for g in layout.gates:
            gate = GateDevice(Kind.GATE, g.device, rng.randint(1, 9), outer=g.outer, inner=g.inner)
            fleet.add(gate)
        lo, hi = self.cfg.seat_battery
        for s in layout.seats:
            battery = rng.uniform(lo, hi)
            fleet.add(
                SeatDevice(
                    Kind.SEAT, s.device, rng.randint(1, 9), seat=s.id, zone=s.zone, battery=battery
                )
            )
        for sh in layout.shelves:
            sections = tuple(x.id for x in sh.sections)
            fleet.add(
                ShelfDevice(
                    Kind.SHELF, sh.device, rng.randint(1, 9), zone=sh.zone, sections=sections
                )
            )
        for d in layout.circulation:
            fleet.add(CircDevice(Kind.CIRC, d.device, rng.randint(1, 9), zone=d.zone))
        return fleet

    def _schedule_start(self, t0: float) -> None:
        cfg, rng, at = self.cfg, self._rng_dev, self.engine.at
        for gate in self.fleet.gates.values():
            at(t0 + rng.uniform(0, cfg.gate_heartbeat), self._heartbeat, gate, cfg.gate_heartbeat)
        for seat in self.fleet.seats.values():
            at(t0 + rng.uniform(0, cfg.seat_heartbeat), self._heartbeat, seat, cfg.seat_heartbeat)
        for shelf in self.fleet.shelves.values():
            at(t0 + rng.uniform(0, cfg.sweep_interval), self.stacks.sweep, shelf.device)
        at(t0, self._control)
        today = datetime.fromtimestamp(t0, self.hours.tz).date()
        for day in (today - timedelta(days=1), today):
            self._schedule_window(day)
        at(self.hours.next_midnight(self.now).timestamp(), self._midnight)
        self._schedule_seat_faults(t0)
        rate = cfg.faults.reboots_per_device_day / 86400
        if rate > 0:
            for dev in self.fleet.all():
                at(t0 + self._rng_reboots.expovariate(rate), self._random_reboot, dev.device)

    # -- public ---------------------------------------------------------------

    @property
    def now(self) -> datetime:
        return datetime.fromtimestamp(self.engine.now, UTC)

    def births(self) -> list[Message]:
        """Every device's retained `online: true`, as published when it connects."""
        return [d.birth(self.engine.now) for d in self.fleet.all()]

    def advance(self, to: datetime) -> list[Message]:
        """Run the world up to `to` (inclusive); the messages delivered meanwhile."""
        until = to.timestamp()
        msgs = self.engine.run_until(until)
        if self.stream.active:
            msgs = self.stream.apply(msgs, until)
        return msgs

    def truth(self) -> Truth:
        gates = {
            d: GateTruth(
                g.outer,
                g.inner,
                g.boot,
                g.count_in,
                g.count_out,
                g.total_in,
                g.total_out,
                g.missed_in,
                g.missed_out,
                g.lost_in,
                g.lost_out,
            )
            for d, g in self.fleet.gates.items()
        }
        return Truth(
            at=self.now,
            zones=dict(self.crowd.count),
            seats={s.seat: s.presence for s in self.fleet.seats.values()},
            gates=gates,
            boots={d.device: d.boot for d in self.fleet.all()},
            items=dict(self.stacks.where),
            misplaced=self.stacks.misplaced(),
            turned_away=self.crowd.turned_away,
            seat_faults={s.seat: s.fault for s in self.fleet.seats.values() if s.fault},
        )

    def device(self, device: str) -> Device:
        return self.fleet.get(device)

    def reboot(self, device: str, at: datetime | None = None) -> None:
        """Restart a device at `at` (default: now): boot+1, seq and counters from zero."""
        self.fleet.get(device)  # fail now on a wrong id, not inside the engine
        when = at.timestamp() if at else self.engine.now
        self.engine.at(when, self._reboot, device)

    def report(self, device: str) -> None:
        """Make a gate or seat send its current reading now, as a heartbeat would."""
        dev = self.fleet.get(device)
        if not isinstance(dev, GateDevice | SeatDevice):
            raise ValueError(f"{device!r} is not a gate or a seat: it has no reading to send")
        if not (isinstance(dev, SeatDevice) and dev.silent):
            self.engine.emit(dev.report(self.engine.now))

    def misplace(self, item: str, section: str) -> None:
        """Put a catalogued item on `section` now (a misplaced-book fault)."""
        self.stacks.misplace(item, section)

    def set_clock_offset(self, device: str, seconds: float) -> None:
        """Make a device's clock run `seconds` ahead (negative: behind) of true time."""
        self.fleet.get(device).clock_offset = seconds

    # -- events ---------------------------------------------------------------

    def _control(self, t: float) -> None:
        self.crowd.control(t)
        self.stacks.control(t, len(self.crowd.inside))
        self.engine.at(t + self.cfg.control_interval, self._control)

    def _schedule_window(self, day: date) -> None:
        w = self.hours.window(day)
        if w is None or w.closing_call is None:
            return  # closed, or open on through midnight
        if w.closing_call.timestamp() >= self.engine.now:
            self.engine.at(w.closing_call.timestamp(), self.crowd.closing_call)
        if w.closes.timestamp() >= self.engine.now:
            self.engine.at(w.closes.timestamp(), self.crowd.clear_bags)

    def _midnight(self, t: float) -> None:
        day = datetime.fromtimestamp(t + 1, self.hours.tz).date()
        self._schedule_window(day)
        self.engine.at(self.hours.next_midnight(self.now).timestamp(), self._midnight)

    def _schedule_seat_faults(self, t0: float) -> None:
        f, rng = self.cfg.faults, self._rng_seatfaults
        odds = (
            ("flapping", f.flapping_seat_p),
            ("dead", f.dead_battery_seat_p),
            ("unscrewed", f.unscrewed_seat_p),
        )
        if not any(p for _, p in odds):
            return
        for seat in self.fleet.seats.values():
            draw = rng.random()
            for fault, p in odds:
                if draw < p:
                    when = t0 + rng.uniform(*f.seat_fault_window)
                    self.engine.at(when, self._seat_fault, seat, fault)
                    break
                draw -= p

    def _seat_fault(self, t: float, seat: SeatDevice, fault: str) -> None:
        seat.fault = fault
        if fault == "flapping":
            self._flap(t, seat)
        elif fault == "unscrewed":
            self.engine.emit(seat.report(t))

    def _flap(self, t: float, seat: SeatDevice) -> None:
        if seat.fault != "flapping":
            return
        seat.flap = not seat.flap
        self.engine.emit(seat.report(t))
        self.engine.at(t + self.cfg.faults.flap_period, self._flap, seat)

    def _heartbeat(self, t: float, dev: GateDevice | SeatDevice, interval: float) -> None:
        if isinstance(dev, SeatDevice) and dev.silent:
            return  # a dead battery: nothing more, ever
        if t >= dev.last_sent + interval - 1e-6:
            self.engine.emit(dev.report(t))
        self.engine.at(dev.last_sent + interval, self._heartbeat, dev, interval)

    def _gate_crossed(self, t: float, gate: GateDevice) -> None:
        gap = self.cfg.gate_min_gap
        if t >= gate.last_sent + gap:
            self.engine.emit(gate.report(t))
        elif not gate.flush_pending:
            gate.flush_pending = True
            self.engine.at(gate.last_sent + gap, self._gate_flush, gate)

    def _gate_flush(self, t: float, gate: GateDevice) -> None:
        gate.flush_pending = False
        self.engine.emit(gate.report(t))

    def _seat_changed(self, t: float, seat: SeatDevice) -> None:
        if not seat.silent and seat.fault != "flapping":
            self.engine.emit(seat.report(t))

    def _reboot(self, t: float, device: str) -> None:
        dev = self.fleet.get(device)
        if isinstance(dev, SeatDevice) and dev.silent:
            return  # a dead device does not restart
        self.engine.emit(dev.reboot(t))
        if isinstance(dev, GateDevice | SeatDevice):
            self.engine.emit(dev.report(t))

    def _random_reboot(self, t: float, device: str) -> None:
        self._reboot(t, device)
        rate = self.cfg.faults.reboots_per_device_day / 86400
        self.engine.at(t + self._rng_reboots.expovariate(rate), self._random_reboot, device)


def messages(
    layout: Layout,
    start: datetime,
    end: datetime,
    seed: int,
    *,
    catalog: Sequence[CatalogEntry] = (),
    config: SimConfig | None = None,
    step: float = 300.0,
) -> Iterator[Message]:
    """The births, then everything published from `start` to `end`, without a clock."""
    model = LibraryModel(layout, start=start, seed=seed, catalog=catalog, config=config)
    yield from model.births()
    t = start
    while t < end:
        t = min(end, t + timedelta(seconds=step))
        yield from model.advance(t)


def generate(
    layout: Layout,
    start: datetime,
    end: datetime,
    seed: int,
    *,
    root: str = DEFAULT_ROOT,
    catalog: Sequence[CatalogEntry] = (),
    config: SimConfig | None = None,
) -> Iterator[tuple[str, bytes, bool]]:
    """`(topic, payload, retain)` as the broker would receive them, fast as it can go."""
    for m in messages(layout, start, end, seed, catalog=catalog, config=config):
        yield m.topic(root, layout.site), m.encode(), m.retain
