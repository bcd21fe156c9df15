"""Books: where each item is, RFID shelf sweeps that report it, and circulation desks."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Protocol

from stackpulse.kernel.layout import Layout
from stackpulse.simulators.config import SimConfig
from stackpulse.simulators.devices import CircDevice, ShelfDevice
from stackpulse.simulators.engine import Engine, IndexedSet, poisson

LOAN = "loan"
RESHELVING = "reshelving"
REMOVED = "removed"


class CatalogEntry(Protocol):
    """What the simulator needs of a catalog record (kernel.catalog.CatalogItem fits)."""

    @property
    def item(self) -> str: ...

    @property
    def home_sections(self) -> Sequence[str]: ...


class Stacks:
    """Every catalogued item's true place: a section id, on loan, or on a reshelving cart."""

    def __init__(
        self,
        engine: Engine,
        rng: random.Random,
        cfg: SimConfig,
        layout: Layout,
        catalog: Sequence[CatalogEntry],
        shelves: dict[str, ShelfDevice],
        desks: dict[str, CircDevice],
    ) -> None:
        self.engine, self.rng, self.cfg = engine, rng, cfg
        self.shelves, self.desks = shelves, desks
        self.sections = [s.id for sh in layout.shelves for s in sh.sections]
        self.device_of = {s.id: sh.device for sh in layout.shelves for s in sh.sections}
        self.shelved: dict[str, IndexedSet[str]] = {s: IndexedSet() for s in self.sections}
        self.homes: dict[str, tuple[str, ...]] = {}
        self.where: dict[str, str] = {}
        self.on_shelf: IndexedSet[str] = IndexedSet()
        self.on_loan: IndexedSet[str] = IndexedSet()
        self.all_items: list[str] = []
        for entry in catalog:
            homes = tuple(s for s in entry.home_sections if s in self.shelved)
            if not homes or entry.item in self.homes:
                continue  # no shelf here holds it, or a repeated record
            self.homes[entry.item] = homes
            self.all_items.append(entry.item)
            if rng.random() < cfg.initial_loan_p:
                self._move(entry.item, LOAN)
            else:
                self._move(entry.item, homes[0])
        rate = cfg.faults.removals_per_item_day * len(self.all_items) / 86400
        if rate > 0:
            # Its own stream, seeded from the stacks' state without drawing from it: with
            # removals on, the day is the same as without up to the first removal.
            self.removal_rng = random.Random(f"{rng.getstate()[1][:8]}:removals")
            self.engine.at(engine.now + self.removal_rng.expovariate(rate), self._remove, rate)

    def _move(self, item: str, to: str) -> None:
        before = self.where.get(item)
        if before in self.shelved:
            self.shelved[before].discard(item)
            self.on_shelf.discard(item)
        elif before == LOAN:
            self.on_loan.discard(item)
        self.where[item] = to
        if to in self.shelved:
            self.shelved[to].add(item)
            self.on_shelf.add(item)
        elif to == LOAN:
            self.on_loan.add(item)

    def misplace(self, item: str, section: str) -> None:
        """Put an item on a shelf section, right or wrong (a fault hook for tests)."""
        if section not in self.shelved:
            raise KeyError(f"no section {section!r} in the layout")
        self._move(item, section)

    def _remove(self, t: float, rate: float) -> None:
        item = self.on_shelf.choice(self.removal_rng)
        if item is not None:
            self._move(item, REMOVED)
        self.engine.at(t + self.removal_rng.expovariate(rate), self._remove, rate)

    def misplaced(self) -> dict[str, str]:
        return {i: w for i, w in self.where.items() if w in self.shelved and w not in self.homes[i]}

    # -- RFID sweeps ----------------------------------------------------------

    def sweep(self, t: float, device: str) -> None:
        """One full pass of a reader over its sections, a few seconds apart."""
        shelf = self.shelves[device]
        shelf.sweep += 1
        for i, section in enumerate(shelf.sections):
            when = t + i * self.cfg.section_gap
            self.engine.at(when, self._read, device, shelf.boot, shelf.sweep, section)
        self.engine.at(t + self.cfg.sweep_interval, self.sweep, device)

    def _read(self, t: float, device: str, boot: int, sweep: int, section: str) -> None:
        shelf = self.shelves[device]
        if shelf.boot != boot:
            return  # the reader restarted mid-sweep
        rng, faults = self.rng, self.cfg.faults
        lo, hi = self.cfg.rssi
        reads = [
            {"id": i, "rssi": round(rng.uniform(lo, hi), 1)}
            for i in sorted(self.shelved[section])
            if not faults.missed_read_p or rng.random() >= faults.missed_read_p
        ]
        if faults.cross_read_p:
            reads.extend(self._cross_reads(shelf, section))
        size = self.cfg.max_items_per_part
        chunks = [reads[k : k + size] for k in range(0, len(reads), size)] or [[]]
        for n, chunk in enumerate(chunks, 1):
            fields = {"sweep": sweep, "section": section, "part": n, "parts": len(chunks)}
            fields["items"] = chunk
            self.engine.emit(shelf.data(t, fields))

    def _cross_reads(self, shelf: ShelfDevice, section: str) -> list[dict[str, object]]:
        """Tags on the neighbouring sections, heard weaker than by their own antenna."""
        idx, out = shelf.sections.index(section), []
        lo, _ = self.cfg.rssi
        for j in (idx - 1, idx + 1):
            if 0 <= j < len(shelf.sections):
                for i in sorted(self.shelved[shelf.sections[j]]):
                    if self.rng.random() < self.cfg.faults.cross_read_p:
                        out.append({"id": i, "rssi": round(lo - self.rng.uniform(3, 15), 1)})
        return out

    # -- circulation ----------------------------------------------------------

    def control(self, t: float, people: int) -> None:
        """Plan the next interval's desk traffic, in proportion to the people inside."""
        if not self.desks or not self.all_items or people <= 0:
            return
        cfg, rng = self.cfg, self.rng
        hours = people * cfg.control_interval / 3600
        rates = (
            (self._checkout, cfg.checkouts_per_person_hour),
            (self._checkin, cfg.checkins_per_person_hour),
            (self._renew, cfg.renews_per_person_hour),
            (self._hold, cfg.holds_per_person_hour),
        )
        desks = list(self.desks)
        for fn, rate in rates:
            for _ in range(poisson(rng, hours * rate)):
                when = t + rng.uniform(0, cfg.control_interval)
                self.engine.at(when, fn, rng.choice(desks))

    def _emit(self, t: float, desk: str, item: str, action: str) -> None:
        self.engine.emit(self.desks[desk].data(t, {"item": item, "action": action}))

    def _checkout(self, t: float, desk: str) -> None:
        item = self.on_shelf.choice(self.rng)
        if item is not None:
            self._move(item, LOAN)
            self._emit(t, desk, item, "checkout")

    def _checkin(self, t: float, desk: str) -> None:
        item = self.on_loan.choice(self.rng)
        if item is not None:
            self._move(item, RESHELVING)
            self._emit(t, desk, item, "checkin")
            self.engine.at(t + self.rng.uniform(*self.cfg.reshelve_delay), self._reshelve, item)

    def _renew(self, t: float, desk: str) -> None:
        item = self.on_loan.choice(self.rng)
        if item is not None:
            self._emit(t, desk, item, "renew")

    def _hold(self, t: float, desk: str) -> None:
        if self.all_items:
            self._emit(t, desk, self.rng.choice(self.all_items), "hold")

    def _reshelve(self, t: float, item: str) -> None:
        if self.where.get(item) != RESHELVING:
            return
        home = self.homes[item][0]
        if self.rng.random() < self.cfg.faults.misplace_p:
            # A near miss: the next section along on the same reader, or anywhere.
            sections = self.shelves[self.device_of[home]].sections
            idx = sections.index(home)
            near = [*sections[max(0, idx - 1) : idx], *sections[idx + 1 : idx + 2]]
            home = self.rng.choice(near or self.sections)
        self._move(item, home)
