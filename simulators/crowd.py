"""People: they arrive, walk through gates, sit, take breaks, and leave by closing."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum

from stackpulse.kernel.layout import OUTSIDE
from stackpulse.simulators.building import Building, Hop
from stackpulse.simulators.config import SimConfig
from stackpulse.simulators.devices import GateDevice, SeatDevice
from stackpulse.simulators.engine import Engine, IndexedSet, poisson
from stackpulse.simulators.rhythm import Hours, target_fill

RETRY = 20.0  # seconds before trying again to get through a full zone


class State(Enum):
    ENTERING = "entering"
    IN = "in"
    LEAVING = "leaving"
    STEPPING_OUT = "stepping_out"  # on a break, bag left on the seat
    AWAY = "away"
    RETURNING = "returning"


COMMITTED = (State.ENTERING, State.IN, State.STEPPING_OUT, State.AWAY, State.RETURNING)


@dataclass
class Person:
    pid: int
    dest: str
    state: State = State.ENTERING
    zone: str = OUTSIDE
    seat: str | None = None  # seat device id
    leave_at: float = 0.0
    plan: int = 0  # bumps cancel events scheduled for an older plan
    holds: set[str] = field(default_factory=set)  # zones reserved for this person


def _dt(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


class Crowd:
    """Where everyone is. Invariant: people in a zone <= reserved <= capacity.

    A person reserves every zone of a route before setting off and gives each back on
    leaving it, so nobody is ever stuck between two full rooms and no room overfills.
    """

    def __init__(
        self,
        engine: Engine,
        rng: random.Random,
        cfg: SimConfig,
        building: Building,
        hours: Hours,
        gates: dict[str, GateDevice],
        seats: dict[str, SeatDevice],
        on_cross: Callable[[float, GateDevice], None],
        on_seat: Callable[[float, SeatDevice], None],
    ) -> None:
        self.engine, self.rng, self.cfg = engine, rng, cfg
        self.building, self.hours = building, hours
        self.gates, self.seats = gates, seats
        self.on_cross, self.on_seat = on_cross, on_seat
        self.count = dict.fromkeys(building.capacity, 0)
        self.reserved = dict.fromkeys(building.capacity, 0)
        self.people: dict[int, Person] = {}
        self.inside: IndexedSet[int] = IndexedSet()  # people in state IN
        self.free: dict[str, IndexedSet[str]] = {z: IndexedSet() for z in building.capacity}
        for s in seats.values():
            if s.zone in self.free and s.presence == "empty":
                self.free[s.zone].add(s.device)
        self.pending = 0  # arrivals planned but not yet at the door
        self.turned_away = 0
        self.peak = cfg.peak_fill * building.total_capacity()
        self._next_pid = 0

    # -- planning -------------------------------------------------------------

    def committed(self) -> int:
        return self.pending + sum(1 for p in self.people.values() if p.state in COMMITTED)

    def control(self, t: float) -> None:
        """Plan the next interval's arrivals and departures toward the day's curve."""
        cfg = self.cfg
        gap = round(self.peak * target_fill(self.hours, _dt(t))) - self.committed()
        n = poisson(self.rng, abs(gap) * cfg.control_interval / cfg.control_tau)
        if gap > 0:
            self.pending += n
            for _ in range(n):
                self.engine.at(t + self.rng.uniform(0, cfg.control_interval), self._arrive)
        elif gap < 0:
            for pid in self.inside.sample(self.rng, n):
                p = self.people[pid]
                self.inside.discard(pid)  # not chosen again while on the way out
                p.plan += 1
                when = t + self.rng.uniform(0, cfg.control_interval)
                self.engine.at(when, self._depart, p.pid, p.plan)

    def closing_call(self, t: float) -> None:
        """Fifteen minutes to closing: everyone inside packs up and goes."""
        spread = self.cfg.control_interval * 7
        for p in self.people.values():
            if p.state is State.IN:
                p.plan += 1
                self.engine.at(t + self.rng.uniform(0, spread), self._depart, p.pid, p.plan)

    def clear_bags(self, t: float) -> None:
        """At closing, staff take whatever was left on the seats."""
        for s in self.seats.values():
            if s.presence == "object":
                self._set_seat(t, s, "empty")

    def _closing(self, t: float) -> bool:
        w = self.hours.window_at(_dt(t))
        if w is None:
            return True
        return w.last_entry is not None and t >= w.last_entry.timestamp()

    # -- moving ---------------------------------------------------------------

    def _reserve(self, p: Person, hops: tuple[Hop, ...], dest_limit: float) -> bool:
        zones = [h.dst for h in hops if h.dst != OUTSIDE and h.dst not in p.holds]
        for z in zones:
            limit = dest_limit if z == p.dest else self.building.capacity[z]
            if self.reserved[z] + 1 > limit:
                return False
        for z in zones:
            self.reserved[z] += 1
            p.holds.add(z)
        return True

    def _release(self, p: Person, zone: str) -> None:
        if zone in p.holds:
            p.holds.discard(zone)
            self.reserved[zone] -= 1

    def _walk(self, t: float, pid: int, hops: tuple[Hop, ...], i: int) -> None:
        p = self.people[pid]
        hop = hops[i]
        gate = self.gates[self.rng.choice(hop.gates)]
        gate.cross(inward=(gate.outer, gate.inner) == (hop.src, hop.dst))
        if hop.src != OUTSIDE:
            self.count[hop.src] -= 1
            keep = hop.src == p.dest and p.state in (State.STEPPING_OUT, State.AWAY)
            if not keep:
                self._release(p, hop.src)
        if hop.dst != OUTSIDE:
            self.count[hop.dst] += 1
        p.zone = hop.dst
        self.on_cross(t, gate)
        if i + 1 < len(hops):
            self.engine.at(t + self.rng.uniform(*self.cfg.walk), self._walk, pid, hops, i + 1)
        else:
            self._arrived(t, p)

    def _arrive(self, t: float) -> None:
        self.pending -= 1
        if self._closing(t):
            return
        b, limit = self.building, self.cfg.zone_max_fill
        room = [max(0.0, b.capacity[z] * limit - self.reserved[z]) for z in b.reachable]
        if sum(room) < 1:
            self.turned_away += 1
            return
        dest = self.rng.choices(b.reachable, weights=room)[0]
        p = Person(self._next_pid, dest)
        if not self._reserve(p, b.inward[dest], b.capacity[dest] * limit):
            self.turned_away += 1
            return
        self._next_pid += 1
        self.people[p.pid] = p
        self._walk(t, p.pid, b.inward[dest], 0)

    def _arrived(self, t: float, p: Person) -> None:
        cfg, rng = self.cfg, self.rng
        if p.state is State.LEAVING:
            for z in list(p.holds):
                self._release(p, z)
            del self.people[p.pid]
            return
        if p.state is State.STEPPING_OUT:
            p.state = State.AWAY
            self.engine.at(t + rng.uniform(*cfg.break_length), self._come_back, p.pid, p.plan)
            return
        returning = p.state is State.RETURNING
        p.state = State.IN
        self.inside.add(p.pid)
        if self._closing(t):
            p.plan += 1
            self.engine.at(t + rng.uniform(60, 180), self._depart, p.pid, p.plan)
            return
        if returning and p.seat is not None:
            self._set_seat(t, self.seats[p.seat], "person")
            self.engine.at(max(p.leave_at, t + 60), self._depart, p.pid, p.plan)
            return
        lo, hi = cfg.dwell_bounds
        dwell = min(hi, max(lo, cfg.dwell_median * math.exp(rng.gauss(0, cfg.dwell_sigma))))
        p.leave_at = t + dwell
        self.engine.at(p.leave_at, self._depart, p.pid, p.plan)
        free = self.free[p.dest]
        seat = free.choice(rng) if rng.random() < cfg.sit_p else None
        if seat is not None:
            p.seat = seat
            self._set_seat(t, self.seats[seat], "person")
            if rng.random() < cfg.break_p:
                when = t + dwell * rng.uniform(0.3, 0.7)
                self.engine.at(when, self._take_break, p.pid, p.plan)

    def _depart(self, t: float, pid: int, plan: int) -> None:
        p = self.people.get(pid)
        if p is None or p.plan != plan or p.state is not State.IN:
            return
        hops = self.building.outward(p.dest)
        if not self._reserve(p, hops, 0):
            self.engine.at(t + RETRY, self._depart, pid, plan)
            return
        self.inside.discard(pid)
        if p.seat is not None:
            seat = self.seats[p.seat]
            if self.rng.random() < self.cfg.forget_bag_p:
                self._set_seat(t, seat, "object")  # nobody's now; cleared at closing
            else:
                self._set_seat(t, seat, "empty")
            p.seat = None
        p.state = State.LEAVING
        self._walk(t, pid, hops, 0)

    def _take_break(self, t: float, pid: int, plan: int) -> None:
        p = self.people.get(pid)
        if p is None or p.plan != plan or p.state is not State.IN or p.seat is None:
            return
        hops = self.building.outward(p.dest)
        if not self._reserve(p, hops, 0):
            return  # too crowded to step out; stays
        self.inside.discard(pid)
        p.plan += 1
        p.state = State.STEPPING_OUT
        self._set_seat(t, self.seats[p.seat], "object")
        self._walk(t, pid, hops, 0)

    def _come_back(self, t: float, pid: int, plan: int) -> None:
        p = self.people[pid]
        if p.plan != plan:
            return
        if self._closing(t):
            # Gone for the day; the bag stays until closing.
            if p.seat is not None and self.seats[p.seat].presence == "person":
                self._set_seat(t, self.seats[p.seat], "empty")
            for z in list(p.holds):
                self._release(p, z)
            del self.people[pid]
            return
        hops = self.building.inward[p.dest]
        if not self._reserve(p, hops, self.building.capacity[p.dest]):
            self.engine.at(t + RETRY, self._come_back, pid, plan)
            return
        p.state = State.RETURNING
        self._walk(t, pid, hops, 0)

    def _set_seat(self, t: float, seat: SeatDevice, presence: str) -> None:
        if seat.presence == presence:
            return
        seat.presence = presence
        if presence == "empty":
            self.free[seat.zone].add(seat.device)
        else:
            self.free[seat.zone].discard(seat.device)
        self.on_seat(t, seat)
