"""Duplicate detection by (site, kind, device, boot, seq) in a bounded sliding window.

Only a message known to have been seen is called a duplicate. One older than the window
remembers is let through: every consumer downstream is idempotent (store points are keyed
by capture time, services apply counters and states in (boot, seq) order), so a rare
repeat costs nothing while a wrongly dropped message would be lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

WINDOW = 4096  # seqs remembered below the highest one seen, per device and boot
BOOTS_KEPT = 4  # late stragglers from the last few boots are still recognised
_FULL = (1 << WINDOW) - 1


@dataclass(slots=True)
class _BootWindow:
    """Anti-replay window: the highest seq seen and a bitmask of the WINDOW below it."""

    top: int = -1
    mask: int = 0  # bit i set: seq (top - i) was seen

    def seen(self, seq: int) -> bool:
        """Record `seq`; True only if it was certainly seen before."""
        if seq > self.top:
            shift = seq - self.top
            if self.top < 0 or shift >= WINDOW:
                self.mask = 1
            else:
                self.mask = ((self.mask << shift) | 1) & _FULL
            self.top = seq
            return False
        offset = self.top - seq
        if offset >= WINDOW:
            return False  # too old to tell: let it through (see the module docstring)
        bit = 1 << offset
        if self.mask & bit:
            return True
        self.mask |= bit
        return False


@dataclass(slots=True)
class Deduplicator:
    """Remembers recent messages per device; memory is bounded by devices x BOOTS_KEPT."""

    _devices: dict[tuple[str, str, str], dict[int, _BootWindow]] = field(default_factory=dict)

    def is_duplicate(self, key: tuple[str, str, str, int, int]) -> bool:
        site, kind, device, boot, seq = key
        boots = self._devices.setdefault((site, kind, device), {})
        window = boots.get(boot)
        if window is None:
            if len(boots) >= BOOTS_KEPT and boot < min(boots):
                return False  # older than every boot we remember: let it through
            window = boots[boot] = _BootWindow()
            if len(boots) > BOOTS_KEPT:
                del boots[min(boots)]
        return window.seen(seq)

    def __len__(self) -> int:
        return len(self._devices)


Key = tuple[str, str, str, int, int]  # (site, kind, device, boot, seq)


@dataclass(frozen=True, slots=True)
class Floor:
    """What a checkpoint had applied of one device: its newest (boot, seq), and when."""

    boot: int
    seq: int
    ts: datetime

    def covers(self, boot: int, seq: int, ts: datetime) -> bool:
        """True if (boot, seq) at `ts` was part of the checkpointed state.

        Within the floor's boot: every seq up to it. An older boot: only a message from
        before the floor's time; a lower boot that speaks later is a new life of the
        device (replaced, or its boot counter reset), not an old message.
        """
        if boot == self.boot:
            return seq <= self.seq
        return boot < self.boot and ts <= self.ts


@dataclass(slots=True)
class Applied:
    """A consumer's own guard against repeats: a window of what it applied since it
    started, above the floors of what its checkpoint had already applied.

    The gateway's window is an optimisation; this one is what keeps a service's state
    right when the same event reaches it twice (a catch-up from the store overlapping
    its broker session, a redelivery after a restart).
    """

    window: Deduplicator = field(default_factory=Deduplicator)
    floors: dict[tuple[str, str, str], Floor] = field(default_factory=dict)
    tops: dict[tuple[str, str, str], Floor] = field(default_factory=dict)

    def first_time(self, key: Key, ts: datetime) -> bool:
        """Record the event; False if it was applied before (drop it)."""
        site, kind, device, boot, seq = key
        device_key = (site, kind, device)
        floor = self.floors.get(device_key)
        if floor is not None and floor.covers(boot, seq, ts):
            return False
        if self.window.is_duplicate(key):
            return False
        top = self.tops.get(device_key)
        if top is None or (boot, seq) > (top.boot, top.seq) or (boot < top.boot and ts > top.ts):
            self.tops[device_key] = Floor(boot, seq, ts)
        return True

    def checkpoint(self, site: str) -> list[list[object]]:
        """The newest (boot, seq, ts) applied per device of `site`, floors included."""
        merged = {k: v for k, v in self.floors.items() if k[0] == site}
        merged.update({k: v for k, v in self.tops.items() if k[0] == site})
        return [
            [kind, device, f.boot, f.seq, f.ts.isoformat()]
            for (_, kind, device), f in sorted(merged.items())
        ]

    def restore(self, site: str, rows: object) -> int:
        """Take up `checkpoint(site)` as floors; returns how many rows were usable."""
        if not isinstance(rows, list):
            return 0
        taken = 0
        for row in rows[:1_000_000]:
            try:
                kind, device, boot, seq, ts = row
                when = datetime.fromisoformat(ts)
                if (
                    not isinstance(kind, str)
                    or not isinstance(device, str)
                    or not (isinstance(boot, int) and isinstance(seq, int))
                    or boot < 0
                    or seq < 0
                    or when.tzinfo is None
                ):
                    continue
            except (TypeError, ValueError):
                continue
            self.floors[(site, kind, device)] = Floor(boot, seq, when)
            taken += 1
        return taken
