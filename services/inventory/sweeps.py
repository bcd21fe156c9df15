"""Shelf sections interned as ints, and one reader's sweep assembled from its section reports."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from stackpulse.kernel.layout import Layout
from stackpulse.services.inventory.model import Read

# rssi is optional: a read without one is weaker than any read with one.
WEAKEST = float("-inf")


class Sections:
    """Every shelf section of a layout by a small int id (`sid`), in layout (walking) order."""

    def __init__(self, layout: Layout) -> None:
        self.names: list[str] = []
        self.device: list[str] = []
        self.floor: list[int | None] = []
        self.order: list[tuple[int, int]] = []  # (shelf index, section index on the shelf)
        self.by_device: dict[str, tuple[int, ...]] = {}
        for i, shelf in enumerate(layout.shelves):
            zone = layout.zones_by_id.get(shelf.zone)
            sids = []
            for j, section in enumerate(shelf.sections):
                sids.append(len(self.names))
                self.names.append(section.id)
                self.device.append(shelf.device)
                self.floor.append(zone.floor if zone else None)
                self.order.append((i, j))
            self.by_device[shelf.device] = tuple(sids)
        self.sid: dict[str, int] = {name: n for n, name in enumerate(self.names)}

    def __len__(self) -> int:
        return len(self.names)

    def first_home(self, homes: Iterable[str]) -> int | None:
        """The sid of the first of `homes` that is a section here (None: no reader holds it)."""
        for name in homes:
            sid = self.sid.get(name)
            if sid is not None:
                return sid
        return None


# Decides a tie between two equally strong reads: True when the first sid should win.
TieBreak = Callable[[str, int, int], bool]


@dataclass(slots=True)
class OpenSweep:
    """What one reader has reported so far in one sweep (`boot`, `sweep`).

    Reads are folded as they come into the strongest per item, by a total order (rssi,
    then home section, then lowest section id), so the result does not depend on the
    order of reports or on repeats of them.
    """

    boot: int
    sweep: int
    last_ts: float  # device time of the newest report of the sweep
    parts: dict[int, int] = field(default_factory=dict)  # sid -> parts announced
    got: dict[int, set[int]] = field(default_factory=dict)  # sid -> parts received
    section_ts: dict[int, float] = field(default_factory=dict)  # sid -> newest report ts
    best_sid: dict[str, int] = field(default_factory=dict)  # item -> strongest section
    best_rssi: dict[str, float] = field(default_factory=dict)  # item -> its rssi

    @property
    def key(self) -> tuple[int, int]:
        return (self.boot, self.sweep)

    def add(
        self, sid: int, part: int, parts: int, ts: float, reads: Iterable[Read], tie: TieBreak
    ) -> bool:
        """Fold one section report in; False if this part was already received."""
        got = self.got.setdefault(sid, set())
        if part in got:
            return False
        got.add(part)
        if parts > self.parts.get(sid, 0):
            self.parts[sid] = parts
        if ts > self.section_ts.get(sid, WEAKEST):
            self.section_ts[sid] = ts
        if ts > self.last_ts:
            self.last_ts = ts
        best_sid, best_rssi = self.best_sid, self.best_rssi
        for read in reads:
            item, rssi = read.item, read.rssi
            if rssi is None:
                rssi = WEAKEST
            old = best_rssi.get(item)
            if old is None or rssi > old:
                best_sid[item] = sid
                best_rssi[item] = rssi
            elif rssi == old:
                other = best_sid[item]
                if other != sid and tie(item, sid, other):
                    best_sid[item] = sid
        return True

    def complete(self, sid: int) -> bool:
        """Whether every part of the section arrived in this sweep."""
        parts = self.parts.get(sid)
        return parts is not None and len(self.got[sid]) >= parts

    def all_complete(self, sids: Iterable[int]) -> bool:
        return all(self.complete(sid) for sid in sids)
