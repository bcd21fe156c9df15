"""Pure occupancy logic: gate counter deltas, zone counts, seat state machines."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from kernel.layout import OUTSIDE, Layout


@dataclass(slots=True)
class GateCounter:
    """Turns one gate's cumulative counters into deltas.

    The counters are cumulative since boot, so a lost message loses nobody (the next one
    carries the totals), a repeat or an older message changes nothing, and a new boot
    starts again from zero.
    """

    boot: int = -1
    seq: int = -1
    in_total: int = 0
    out_total: int = 0

    def update(self, boot: int, seq: int, in_total: int, out_total: int) -> tuple[int, int]:
        """Return (people in, people out) since the last message applied."""
        if boot < self.boot or (boot == self.boot and seq <= self.seq):
            return 0, 0  # a duplicate or a message overtaken by a newer one
        if boot > self.boot:
            # A (re)boot restarts the counters at zero: everything since is new.
            d_in, d_out = in_total, out_total
            self.in_total, self.out_total = in_total, out_total
        else:
            # Within a boot the counters never decrease; a smaller value is a device bug
            # we refuse to turn into negative people.
            d_in = max(0, in_total - self.in_total)
            d_out = max(0, out_total - self.out_total)
            self.in_total = max(in_total, self.in_total)
            self.out_total = max(out_total, self.out_total)
        self.boot, self.seq = boot, seq
        return d_in, d_out


@dataclass(slots=True)
class ZoneCounts:
    """People per zone, moved by gate crossings across the layout's zone graph.

    The running sum is kept unclamped: messages from different gates arrive in any order,
    and a door's report may come before the entrance's that let those people in. Only
    what is shown is clamped to [0, twice the capacity]; once every gate has reported its
    totals, the sum is exact whatever the order was.
    """

    layout: Layout
    net: dict[str, int] = field(default_factory=dict)
    gates: dict[str, GateCounter] = field(default_factory=dict)
    _ends: dict[str, tuple[str, str]] = field(init=False, repr=False)
    _bound: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        for z in self.layout.zones:
            self.net.setdefault(z.id, 0)
        self._ends = {g.device: (g.outer, g.inner) for g in self.layout.gates}
        self._bound = {z.id: 2 * z.capacity for z in self.layout.zones}

    def count(self, zone: str) -> int:
        return min(max(0, self.net[zone]), self._bound[zone])

    @property
    def counts(self) -> dict[str, int]:
        return {z: self.count(z) for z in self.net}

    def apply_gate(
        self, device: str, boot: int, seq: int, in_total: int, out_total: int
    ) -> set[str]:
        """Apply one gate message; return the zones whose shown count changed."""
        ends = self._ends.get(device)
        if ends is None:
            return set()
        counter = self.gates.setdefault(device, GateCounter())
        d_in, d_out = counter.update(boot, seq, in_total, out_total)
        moved = d_in - d_out  # people moving from outer into inner
        changed = set()
        for zone, delta in zip(ends, (-moved, moved), strict=True):
            if moved == 0 or zone == OUTSIDE or zone not in self.net:
                continue
            before = self.count(zone)
            self.net[zone] += delta
            if self.count(zone) != before:
                changed.add(zone)
        return changed

    def reset(self) -> dict[str, int]:
        """Closing time: everyone has left. Return what each zone still showed (drift)."""
        drift = self.counts
        for z in self.net:
            self.net[z] = 0
        return drift


class SeatState(StrEnum):
    FREE = "free"
    OCCUPIED = "occupied"
    HELD = "held"
    UNKNOWN = "unknown"


_RAW_TARGET = {"person": SeatState.OCCUPIED, "object": SeatState.HELD, "empty": SeatState.FREE}


@dataclass(frozen=True, slots=True)
class SeatTiming:
    on_delay: timedelta = timedelta(seconds=60)  # presence this long before "occupied"
    off_delay: timedelta = timedelta(minutes=10)  # empty this long before "free" again
    heartbeat: timedelta = timedelta(seconds=300)
    silent_after_heartbeats: int = 3

    @property
    def silence(self) -> timedelta:
        return self.heartbeat * self.silent_after_heartbeats


@dataclass(slots=True)
class SeatMachine:
    """One seat: raw sensor readings in, a trustworthy state out.

    A seat is shown `free` only after the sensor has said empty for `off_delay` (a
    student fetching a book has not left), `occupied`/`held` after `on_delay` of
    presence, and `unknown` — never `free` — while the sensor is offline or silent.
    """

    timing: SeatTiming = field(default_factory=SeatTiming)
    state: SeatState = SeatState.UNKNOWN
    since: datetime | None = None
    raw: str | None = None
    raw_since: datetime | None = None
    last_heard: datetime | None = None
    online: bool = True
    boot: int = -1
    seq: int = -1

    def reading(self, boot: int, seq: int, presence: str, ts: datetime, now: datetime) -> bool:
        """Apply a sensor reading in (boot, seq) order; return True if the state changed."""
        if boot < self.boot or (boot == self.boot and seq <= self.seq):
            return False  # duplicate or overtaken
        self.boot, self.seq = boot, seq
        self.online = True
        self.last_heard = max(ts, self.last_heard) if self.last_heard else ts
        if presence != self.raw:
            self.raw, self.raw_since = presence, ts
        return self.tick(now)

    def status(self, online: bool, ts: datetime, now: datetime) -> bool:
        """Birth message or Last Will."""
        self.online = online
        if online:
            self.last_heard = max(ts, self.last_heard) if self.last_heard else ts
        return self.tick(now)

    def tick(self, now: datetime) -> bool:
        """Re-evaluate against the clock; return True if the state changed."""
        return self._set(self._target(now), now)

    def _target(self, now: datetime) -> SeatState:
        if (
            not self.online
            or self.last_heard is None
            or now - self.last_heard > self.timing.silence
            or self.raw is None
            or self.raw_since is None
        ):
            return SeatState.UNKNOWN
        target = _RAW_TARGET[self.raw]
        held_for = now - self.raw_since
        if target is SeatState.FREE:
            if self.state is SeatState.UNKNOWN:
                return SeatState.FREE  # nobody is known to be there; no grace to wait out
            return SeatState.FREE if held_for >= self.timing.off_delay else self.state
        if held_for >= self.timing.on_delay:
            return target
        # Not long enough yet: keep what we showed; a seat we knew nothing about shows
        # as occupied rather than free, since somebody is there.
        return SeatState.OCCUPIED if self.state is SeatState.UNKNOWN else self.state

    def _set(self, state: SeatState, now: datetime) -> bool:
        if state is self.state:
            return False
        self.state, self.since = state, now
        return True


def busyness(occupancy: int, capacity: int) -> str:
    """Bands a student reads at a glance."""
    if capacity <= 0:
        return "quiet"
    ratio = occupancy / capacity
    if ratio >= 1.0:
        return "full"
    if ratio > 0.8:
        return "very busy"
    if ratio > 0.5:
        return "busy"
    if ratio > 0.2:
        return "moderate"
    return "quiet"
