"""Duplicate detection by (site, kind, device, boot, seq) in a bounded sliding window.

Only a message known to have been seen is called a duplicate. One older than the window
remembers is let through: every consumer downstream is idempotent (store points are keyed
by capture time, services apply counters and states in (boot, seq) order), so a rare
repeat costs nothing while a wrongly dropped message would be lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
