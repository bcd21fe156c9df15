"""Pure occupancy logic: gate counter deltas, zone counts, seat state machines."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, ClassVar

from stackpulse.kernel.layout import OUTSIDE, Layout


class CheckpointError(ValueError):
    """A counting checkpoint that cannot be restored; the message says what is wrong."""


def _int(data: dict[str, Any], key: str, where: str, minimum: int) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise CheckpointError(f"{where}: {key!r} must be an integer >= {minimum}")
    return value


@dataclass(slots=True)
class GateCounter:
    """Turns one gate's cumulative counters into deltas.

    The counters are cumulative since boot, so a lost message loses nobody (the next one
    carries the totals), and a repeat or an older message changes nothing. Each boot is
    tracked on its own (the newest `MAX_BOOTS`), so a message of the previous boot that
    arrives after the reboot's first ones still brings the crossings only it carries.
    """

    MAX_BOOTS: ClassVar[int] = 8

    boot: int = -1  # the newest (boot, seq) applied
    seq: int = -1
    in_total: int = 0  # the newest boot's totals
    out_total: int = 0
    boots: dict[int, tuple[int, int]] = field(default_factory=dict)  # boot -> max totals

    def update(self, boot: int, seq: int, in_total: int, out_total: int) -> tuple[int, int]:
        """Return (people in, people out) that this message adds to what was applied."""
        prev = self.boots.get(boot)
        if prev is None:
            if len(self.boots) >= self.MAX_BOOTS and boot < min(self.boots):
                return 0, 0  # from a boot too old to remember: it cannot be placed
            prev = (0, 0)  # a boot starts its counters at zero: everything is new
        # Within a boot the counters never decrease, so the largest totals seen are the
        # truth whatever the order; a smaller value is overtaken (or a device bug we
        # refuse to turn into negative people).
        d_in = max(0, in_total - prev[0])
        d_out = max(0, out_total - prev[1])
        self.boots[boot] = (prev[0] + d_in, prev[1] + d_out)
        while len(self.boots) > self.MAX_BOOTS:
            del self.boots[min(self.boots)]
        if (boot, seq) > (self.boot, self.seq):
            self.boot, self.seq = boot, seq
        self.in_total, self.out_total = self.boots.get(self.boot, (0, 0))
        return d_in, d_out

    def checkpoint(self) -> dict[str, Any]:
        """The counter as JSON-able data (`from_checkpoint` reads it back)."""
        return {
            "boot": self.boot,
            "seq": self.seq,
            "in": self.in_total,
            "out": self.out_total,
            "boots": [[b, i, o] for b, (i, o) in sorted(self.boots.items())],
        }

    @classmethod
    def from_checkpoint(cls, data: object, where: str = "gate") -> GateCounter:
        """Read `checkpoint()` back; raise CheckpointError on anything else."""
        if not isinstance(data, dict):
            raise CheckpointError(f"{where}: not an object")
        boot = _int(data, "boot", where, -1)
        seq = _int(data, "seq", where, -1)
        in_total = _int(data, "in", where, 0)
        out_total = _int(data, "out", where, 0)
        rows = data.get("boots")
        if not isinstance(rows, list):
            raise CheckpointError(f"{where}: 'boots' must be a list")
        boots: dict[int, tuple[int, int]] = {}
        for row in rows:
            if (
                not isinstance(row, list)
                or len(row) != 3
                or any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in row)
            ):
                raise CheckpointError(f"{where}: a boot must be [boot, in, out] of integers >= 0")
            if row[0] in boots:
                raise CheckpointError(f"{where}: boot {row[0]} is given twice")
            boots[row[0]] = (row[1], row[2])
        for old in sorted(boots)[: -cls.MAX_BOOTS]:  # as `update` would have kept them
            del boots[old]
        if boots.get(boot, (0, 0)) != (in_total, out_total):
            raise CheckpointError(f"{where}: 'in'/'out' differ from the totals of boot {boot}")
        return cls(boot=boot, seq=seq, in_total=in_total, out_total=out_total, boots=boots)


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

    def checkpoint(self) -> dict[str, Any]:
        """The counting state as JSON-able data: each zone's unclamped sum, each gate's counter.

        Restored into a fresh ZoneCounts (`restore`), the counts go on exactly as if they
        had never stopped: the gates' counters are cumulative, so their next messages
        carry every crossing since.
        """
        return {
            "net": dict(sorted(self.net.items())),
            "gates": {d: c.checkpoint() for d, c in sorted(self.gates.items())},
        }

    def restore(self, data: object) -> list[str]:
        """Replace the counting state with a `checkpoint()`; return what it had to ignore.

        The layout may have changed since: zones and gates it no longer has are ignored
        (and named in the result), new ones start at zero. Anything malformed raises
        CheckpointError and leaves the state as it was.
        """
        if not isinstance(data, dict):
            raise CheckpointError("the counts are not an object")
        net, gates = data.get("net"), data.get("gates")
        if not isinstance(net, dict) or not isinstance(gates, dict):
            raise CheckpointError("'net' and 'gates' must be objects")
        sums: dict[str, int] = {}
        for zone, value in net.items():
            if isinstance(value, bool) or not isinstance(value, int):
                raise CheckpointError(f"zone {str(zone)[:70]!r}: the sum must be an integer")
            sums[zone] = value
        counters = {
            str(d): GateCounter.from_checkpoint(c, f"gate {str(d)[:70]!r}")
            for d, c in gates.items()
        }
        ignored = [f"zone {z}" for z in sums if z not in self.net]
        ignored += [f"gate {d}" for d in counters if d not in self._ends]
        self.net = {z: sums.get(z, 0) for z in self.net}
        self.gates = {d: c for d, c in counters.items() if d in self._ends}
        return ignored

    def reset(self) -> dict[str, int]:
        """Closing time: everyone has left. Return what each zone still showed (drift)."""
        drift = self.counts
        for z in self.net:
            self.net[z] = 0
        return drift

    def reset_net(self) -> dict[str, int]:
        """Like `reset`, but return the signed, unclamped running sum of each zone.

        That sum is the counting error of the day: positive when exits were missed,
        negative when entries were; the clamped count would hide the latter.
        """
        drift = dict(self.net)
        for z in self.net:
            self.net[z] = 0
        return drift


def next_closing(layout: Layout, after: datetime) -> datetime | None:
    """The first closing time strictly after `after` when the building really empties.

    Closings come from the site's `hours` in its own time zone (so daylight saving and
    openings past midnight are right); a closing that runs straight into the next
    opening (a 24-hour library) empties nobody and is skipped. None if the site never
    closes within the coming week (always open, or no hours at all).
    """
    if after.tzinfo is None:
        raise ValueError("next_closing needs an aware datetime")
    first = after.astimezone(layout.tz).date() - timedelta(days=1)
    for offset in range(9):
        day = first + timedelta(days=offset)
        span = layout.hours_for(day)
        if span is None:
            continue
        closes = span[1]
        nxt = layout.hours_for(day + timedelta(days=1))
        if nxt is not None and nxt[0] <= closes:
            continue  # open on through: nobody has to leave
        if closes.astimezone(UTC) > after:
            return closes.astimezone(UTC)
    return None


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
    hog_after: timedelta = timedelta(minutes=30)  # held by a bag this long: flagged

    def __post_init__(self) -> None:
        for name in ("on_delay", "off_delay", "heartbeat", "hog_after"):
            if getattr(self, name) < timedelta(0):
                raise ValueError(f"seat timing {name} must not be negative")
        if self.silent_after_heartbeats < 1:
            raise ValueError("silent_after_heartbeats must be at least 1")

    @property
    def silence(self) -> timedelta:
        return self.heartbeat * self.silent_after_heartbeats


@dataclass(slots=True)
class SeatMachine:
    """One seat: raw sensor readings in, a trustworthy state out.

    A seat is shown `free` only after the sensor has said empty for `off_delay` (a
    student fetching a book has not left), `occupied`/`held` after `on_delay` of
    presence, and `unknown` — never `free` — while the sensor is offline or silent.
    A seat `held` (a bag, nobody there) for `hog_after` is flagged `held_too_long`.
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
    held_too_long: bool = False

    @property
    def held_since(self) -> datetime | None:
        """When the seat started being shown `held` (None unless it is held now)."""
        return self.since if self.state is SeatState.HELD else None

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
        """Re-evaluate against the clock; return True if the state or its hog flag changed."""
        changed = self._set(self._target(now), now)
        hogging = (
            self.state is SeatState.HELD
            and self.since is not None
            and now - self.since >= self.timing.hog_after
        )
        if hogging != self.held_too_long:
            self.held_too_long = hogging
            changed = True
        return changed

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

    def checkpoint(self) -> list[Any]:
        """The machine as JSON-able data (`restore` reads it back)."""
        return [
            self.state.value,
            _iso(self.since),
            self.raw,
            _iso(self.raw_since),
            _iso(self.last_heard),
            self.online,
            self.boot,
            self.seq,
            self.held_too_long,
        ]

    def restore(self, data: object) -> None:
        """Take up `checkpoint()`; CheckpointError (and no change) for anything else."""
        if not isinstance(data, list) or len(data) != 9:
            raise CheckpointError("a seat must be a list of 9 values")
        state, since, raw, raw_since, heard, online, boot, seq, hog = data
        if raw is not None and raw not in _RAW_TARGET:
            raise CheckpointError(f"seat presence {str(raw)[:20]!r} is not person, object or empty")
        if not (isinstance(online, bool) and isinstance(hog, bool)):
            raise CheckpointError("a seat's online and held_too_long must be true or false")
        if any(isinstance(v, bool) or not isinstance(v, int) or v < -1 for v in (boot, seq)):
            raise CheckpointError("a seat's boot and seq must be integers >= -1")
        try:
            parsed = SeatState(state)
        except ValueError:
            raise CheckpointError(f"seat state {str(state)[:20]!r} is unknown") from None
        times = [_from_iso(v) for v in (since, raw_since, heard)]
        self.state, self.raw, self.online = parsed, raw, online
        self.since, self.raw_since, self.last_heard = times
        self.boot, self.seq, self.held_too_long = boot, seq, hog


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _from_iso(value: object) -> datetime | None:
    if value is None:
        return None
    try:
        if not isinstance(value, str):
            raise ValueError
        ts = datetime.fromisoformat(value)
    except ValueError:
        raise CheckpointError(f"{str(value)[:40]!r} is not an ISO time") from None
    if ts.tzinfo is None:
        raise CheckpointError(f"{value[:40]!r} has no UTC offset")
    return ts


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
