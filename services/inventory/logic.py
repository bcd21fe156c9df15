"""Where each item is, and which are misplaced, missing or awaiting reshelving: pure logic.

Decisions are taken when a reader's sweep closes, never on a single report:

- A sweep of a device closes when every section of the device has all its parts, when a
  later sweep or a new boot of the device reports, or when `tick` finds it silent past
  `sweep_timeout` (device time). Reports of a closed (or skipped) sweep and repeated parts
  change nothing, so duplicates and reordering within a sweep do not matter.
- Each item heard goes to one section: the strongest rssi (none counts as weakest); a tie
  goes to its home section if among them, else the lowest section id.
- Each item has an expected place: where it was last placed, else its first home section.
  A sweep that heard every part of that section and not the item counts one absence. An
  item is missing after `missing_sweeps` absences in a row, misplaced after
  `confirm_sweeps` sweeps in a row placed away from home (sweeps that did not hear it do
  not break the run), and used in the library when it comes back after at least
  `use_absent_sweeps` absences with no checkout between.
- A misplaced finding closes the same way it opened: after `confirm_sweeps` sweeps in a
  row that heard the item at home (until then it stays placed where it was confirmed),
  or at once on a checkout, a checkin, or when the item is declared missing.
- A reader whose boot goes backwards (replaced, or its counter reset) starts a new life
  once it reports more than `sweep_timeout` of device time after its newest report:
  its earlier sweeps no longer rank its new ones; an older boot's stragglers stay out.
- Checked-out items are neither; a checked-in one is off the shelves (not missing) until a
  shelf hears it, and awaiting reshelving once `reshelve_within` has passed.
Items with no home section on any reader are never missing nor misplaced: nowhere would
be right for them (the catalog lists them as problem rows).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from stackpulse.kernel.catalog import CatalogItem
from stackpulse.kernel.layout import Layout
from stackpulse.services.inventory import details
from stackpulse.services.inventory.model import (
    AwaitingReshelving,
    Change,
    CircReport,
    Finding,
    InventorySettings,
    Misplaced,
    Missing,
    SectionReport,
    Signal,
    SignalKind,
    Task,
)
from stackpulse.services.inventory.state import (
    CheckpointError,
    State,
    decode,
    encode,
    from_epoch,
    to_epoch,
)
from stackpulse.services.inventory.sweeps import WEAKEST, OpenSweep, Sections

__all__ = ["CheckpointError", "Inventory"]

DEFAULT_SETTINGS = InventorySettings()
_CAP = 255  # run counters saturate here: small ints are shared objects in CPython


class Inventory:
    """One site's inventory: feed it shelf and circulation reports, read its findings."""

    def __init__(
        self,
        layout: Layout,
        catalog: Mapping[str, CatalogItem],
        settings: InventorySettings = DEFAULT_SETTINGS,
    ) -> None:
        self.layout = layout
        self.catalog = catalog
        self.settings = settings
        self.sections = Sections(layout)
        self._s = State()
        self._signal_cap = settings.signal_buffer
        self._timeout = settings.sweep_timeout.total_seconds()
        self._reshelve = settings.reshelve_within.total_seconds()
        self._residents: list[set[str]] = []
        # Every item with an entry in absent, away, loan, pending, overdue, missing or
        # misplaced (and maybe a few with none left): the rest take the cheap path.
        self._flagged: set[str] = set()
        self._rebuild_residents()

    # -- input ----------------------------------------------------------------

    def apply_shelf(self, report: SectionReport) -> list[Change]:
        """Fold one section report into its device's sweep; findings of any sweep it closed."""
        device, s = report.device, self._s
        sid = self.sections.sid.get(report.section)
        if sid is None or self.sections.device[sid] != device:
            return []  # the gateway checks this; a section of another reader is not ours
        key = (report.boot, report.sweep)
        changes: list[Change] = []
        op = s.open.get(device)
        if self._new_life(device, op, report):
            if op is not None:
                changes, op = self._close(device, op), None
            del s.closed[device]
            s.closed_ts.pop(device, None)
        if key <= s.closed.get(device, (-1, -1)):
            return changes
        if op is not None and key != op.key:
            if key < op.key:
                return changes  # a sweep overtaken by a later one: closed when that one began
            changes += self._close(device, op)
            op = None
        ts = to_epoch(report.ts)
        if op is None:
            op = s.open[device] = OpenSweep(report.boot, report.sweep, ts)
        if not op.add(sid, report.part, report.parts, ts, report.reads, self._tie):
            return changes
        if op.all_complete(self.sections.by_device[device]):
            changes += self._close(device, op)
        return changes

    def apply_circ(self, report: CircReport) -> list[Change]:
        """A circulation event: moves the item on or off loan, and is a demand signal."""
        item, action = report.item, report.action
        if item not in self.catalog:
            self._s.unknown += 1
            return []
        at = to_epoch(report.ts)
        self._signal(action, item, at)
        out: list[Change] = []
        if action in ("checkout", "renew"):
            if item not in self._s.loan:
                self._off_shelves(item, at, out)
                self._s.loan[item] = at
                self._flagged.add(item)
        elif action == "checkin":
            self._off_shelves(item, at, out)
            self._s.loan.pop(item, None)
            self._s.pending[item] = at
            self._flagged.add(item)
        return out

    def tick(self, now: datetime) -> list[Change]:
        """Close sweeps silent past `sweep_timeout`; open overdue reshelving findings."""
        t, s = to_epoch(now), self._s
        out: list[Change] = []
        for device in sorted(s.open):
            op = s.open[device]
            if t - op.last_ts > self._timeout:
                out += self._close(device, op)
        due = [i for i, t_in in s.pending.items() if t_in + self._reshelve <= t]
        for item in sorted(due):
            t_in = s.overdue[item] = s.pending.pop(item)
            detail = details.reshelving(self.catalog[item], t_in, self._reshelve)
            out.append(Change(Finding.RESHELVING, item, "opened", detail.overdue_since, detail))
        return out

    # -- output ---------------------------------------------------------------

    def take_signals(self) -> list[Signal]:
        """Demand signals since the last call, oldest first."""
        out = list(self._s.signals)
        self._s.signals.clear()
        return out

    @property
    def signals_dropped(self) -> int:
        """Signals dropped, oldest first, because nobody took them before the buffer filled."""
        return self._s.dropped

    @property
    def unknown_items(self) -> int:
        """Reads and circulation events of items the catalog does not know."""
        return self._s.unknown

    def misplaced(self) -> list[Misplaced]:
        s, cat, sec = self._s, self.catalog, self.sections
        return [details.misplaced(cat[i], s, sec) for i in sorted(s.misplaced)]

    def missing(self) -> list[Missing]:
        s, cat, sec = self._s, self.catalog, self.sections
        return [details.missing(cat[i], s, sec) for i in sorted(s.missing)]

    def awaiting_reshelving(self) -> list[AwaitingReshelving]:
        s, cat = self._s, self.catalog
        return [details.reshelving(cat[i], s.overdue[i], self._reshelve) for i in sorted(s.overdue)]

    def tasks(self) -> list[Task]:
        """Reshelving tasks, by floor (unknown last), then walking order along the shelves."""
        s, cat, sec = self._s, self.catalog, self.sections
        out = [details.task(cat[i], s, sec) for i in s.misplaced]
        out.sort(key=lambda t: (t.floor is None, t.floor or 0, t.order, t.item))
        return out

    def located(self, item: str) -> tuple[str, datetime] | None:
        sid = self._s.last_sid.get(item)
        if sid is None:
            return None
        return self.sections.names[sid], from_epoch(self._s.last_ts[item])

    def checkpoint(self) -> dict[str, Any]:
        """Everything needed to carry on after a restart, as JSON-safe columns."""
        return encode(self._s, self.sections)

    def restore(self, data: object) -> None:
        """Take up a `checkpoint`; on CheckpointError the current state is kept as it was."""
        try:
            state = decode(data, self.sections, self.catalog)
        except CheckpointError:
            raise
        except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as err:
            raise CheckpointError(f"malformed checkpoint: {err}") from None
        self._s = state
        self._rebuild_residents()

    # -- sweeps ---------------------------------------------------------------

    def _tie(self, item: str, sid: int, other: int) -> bool:
        """Equal rssi: the item's home section wins, else the lowest section id."""
        ci = self.catalog.get(item)
        names = self.sections.names
        if ci is not None:
            here, there = names[sid] in ci.home_sections, names[other] in ci.home_sections
            if here != there:
                return here
        return names[sid] < names[other]

    def _new_life(self, device: str, op: OpenSweep | None, report: SectionReport) -> bool:
        """A boot lower than the reader's last, `sweep_timeout` after its newest report.

        A replaced reader (or one whose boot counter was reset) starts again at a low boot;
        without this its sweeps would all sort before the last one and be ignored for
        good. A straggler of an earlier boot carries an old device time, so it stays out.
        """
        s = self._s
        last = s.closed.get(device)
        if last is None or report.boot >= max(last[0], op.boot if op else -1):
            return False
        newest = max(s.closed_ts.get(device, WEAKEST), op.last_ts if op else WEAKEST)
        return to_epoch(report.ts) - newest > self._timeout

    def _close(self, device: str, op: OpenSweep) -> list[Change]:
        s = self._s
        del s.open[device]
        s.closed[device] = op.key
        s.closed_ts[device] = op.last_ts
        out: list[Change] = []
        self._place_heard(op, out)
        swept = [sid for sid in self.sections.by_device[device] if op.complete(sid)]
        self._count_absent(op, swept, out)
        out.sort(key=lambda c: c.item)  # stable: each item's changes stay in causal order
        return out

    def _place_heard(self, op: OpenSweep, out: list[Change]) -> None:
        """Each item heard goes to its strongest section: follow it there."""
        section_ts, last_sid, last_ts = op.section_ts, self._s.last_sid, self._s.last_ts
        flagged, names, catalog = self._flagged, self.sections.names, self.catalog
        uses: list[tuple[str, float]] = []
        for item, sid in op.best_sid.items():
            # The common cases, kept cheap: heard where it was, or first heard at home.
            if item not in flagged:
                before = last_sid.get(item)
                if before == sid:
                    last_ts[item] = section_ts[sid]
                    continue
                if before is None:
                    ci = catalog.get(item)
                    if ci is not None and ci.home_sections and ci.home_sections[0] == names[sid]:
                        last_sid[item], last_ts[item] = sid, section_ts[sid]
                        continue
            self._follow(item, sid, section_ts[sid], op.last_ts, uses, out)
        for item, ts in sorted(uses):  # in item order, whatever the order of the reports
            self._signal("use", item, ts)

    def _follow(
        self,
        item: str,
        sid: int,
        ts: float,
        at: float,
        uses: list[tuple[str, float]],
        out: list[Change],
    ) -> None:
        """An item heard somewhere new, or with a state to update: the full rules."""
        s = self._s
        ci = self.catalog.get(item)
        if ci is None:
            s.unknown += 1
            return
        prev_ts = s.last_ts.get(item)
        if prev_ts is not None and ts < prev_ts:
            return  # older news than what another reader already told
        if item in s.misplaced and not self._back_home(item, ci, sid):
            return
        prev_sid = s.last_sid.get(item)
        s.last_sid[item], s.last_ts[item] = sid, ts
        if item in s.loan:
            return  # on loan until checked in, wherever it is heard
        checked_in = s.pending.get(item, s.overdue.get(item))
        if checked_in is not None:
            if ts < checked_in:
                return  # heard before the checkin: it is still to come back
            self._reshelved(item, at, out)
            expected: int | None = None
        else:
            expected = prev_sid if prev_sid is not None else self._home_sid(ci)
        if expected != sid:
            if expected is not None:
                self._residents[expected].discard(item)
            self._residents[sid].add(item)
        gone = s.absent.pop(item, 0)
        if gone >= self.settings.use_absent_sweeps and prev_sid is not None and checked_in is None:
            uses.append((item, ts))
        if item in s.missing:
            del s.missing[item]
            out.append(Change(Finding.MISSING, item, "closed", from_epoch(at)))
        if ci.home_sections:
            home = self.sections.names[sid] in ci.home_sections
            if not home or item in s.away or item in s.misplaced:
                self._judge_place(item, ci, home, ts, at, out)
        if not self._has_state(item):
            self._flagged.discard(item)

    def _back_home(self, item: str, ci: CatalogItem, sid: int) -> bool:
        """Whether a misplaced item heard in `sid` may be placed there.

        Heard at home, it is placed (and the finding closed) only on the `confirm_sweeps`th
        sweep in a row that heard it there: one sweep that missed it on the wrong shelf
        while the home antenna heard it stray must not close the finding, only for the
        next sweep to open it again. Until then it stays where it was confirmed.
        """
        s = self._s
        if self.sections.names[sid] not in ci.home_sections:
            s.home.pop(item, None)  # heard away again: the run home starts over
            return True
        run = s.home.get(item, 0) + 1
        if run >= self.settings.confirm_sweeps:
            s.home.pop(item, None)
            return True
        s.home[item] = run
        s.absent.pop(item, None)  # heard, so not absent, but not placed yet either
        return False

    def _judge_place(
        self, item: str, ci: CatalogItem, home: bool, ts: float, at: float, out: list[Change]
    ) -> None:
        s = self._s
        if home:
            if item in s.away:
                del s.away[item], s.away_since[item]
            if item in s.misplaced:
                del s.misplaced[item]
                out.append(Change(Finding.MISPLACED, item, "closed", from_epoch(at)))
            return
        if self._home_sid(ci) is None:
            return  # its home is on no reader here: nothing to compare with
        run = s.away.get(item, 0) + 1
        if run == 1:
            s.away_since[item] = ts
        s.away[item] = min(run, _CAP)
        self._flagged.add(item)
        if run >= self.settings.confirm_sweeps and item not in s.misplaced:
            s.misplaced[item] = at
            detail = details.misplaced(ci, s, self.sections)
            out.append(Change(Finding.MISPLACED, item, "opened", from_epoch(at), detail))

    def _count_absent(self, op: OpenSweep, swept: list[int], out: list[Change]) -> None:
        """Items expected in a fully swept section and not heard: one absence more."""
        s, heard, absent = self._s, op.best_sid, self._s.absent
        threshold, flagged = self.settings.missing_sweeps, self._flagged
        for sid in swept:
            for item in self._residents[sid].difference(heard):
                flagged.add(item)
                n = absent.get(item, 0) + 1
                absent[item] = min(n, _CAP)
                if n >= threshold and item not in s.missing:
                    self._declare_missing(item, op.last_ts, out)

    def _declare_missing(self, item: str, at: float, out: list[Change]) -> None:
        s = self._s
        if self._home_sid(self.catalog[item]) is None:
            return
        when = from_epoch(at)
        if item in s.misplaced:
            del s.misplaced[item]
            out.append(Change(Finding.MISPLACED, item, "closed", when))
        s.away.pop(item, None)
        s.away_since.pop(item, None)
        s.home.pop(item, None)
        s.missing[item] = at
        detail = details.missing(self.catalog[item], s, self.sections)
        out.append(Change(Finding.MISSING, item, "opened", when, detail))

    # -- circulation ----------------------------------------------------------

    def _off_shelves(self, item: str, at: float, out: list[Change]) -> None:
        """Taken to the desk (checkout or checkin): no longer expected on any shelf."""
        s, when = self._s, from_epoch(at)
        expected = self._expected(item)
        if expected is not None:
            self._residents[expected].discard(item)
        s.absent.pop(item, None)
        s.away.pop(item, None)
        s.away_since.pop(item, None)
        s.home.pop(item, None)
        s.pending.pop(item, None)
        for finding, open_ in (
            (Finding.MISPLACED, s.misplaced),
            (Finding.MISSING, s.missing),
            (Finding.RESHELVING, s.overdue),
        ):
            if open_.pop(item, None) is not None:
                out.append(Change(finding, item, "closed", when))

    def _reshelved(self, item: str, at: float, out: list[Change]) -> None:
        """A checked-in item heard back on a shelf."""
        s = self._s
        s.pending.pop(item, None)
        if s.overdue.pop(item, None) is not None:
            out.append(Change(Finding.RESHELVING, item, "closed", from_epoch(at)))

    # -- helpers --------------------------------------------------------------

    def _home_sid(self, ci: CatalogItem) -> int | None:
        return self.sections.first_home(ci.home_sections)

    def _has_state(self, item: str) -> bool:
        s = self._s
        return (
            item in s.absent
            or item in s.away
            or item in s.home
            or item in s.loan
            or item in s.pending
            or item in s.overdue
            or item in s.missing
            or item in s.misplaced
        )

    def _expected(self, item: str) -> int | None:
        """The section whose sweeps count the item's absences (None: off the shelves)."""
        s = self._s
        if item in s.loan or item in s.pending or item in s.overdue:
            return None
        sid = s.last_sid.get(item)
        if sid is not None:
            return sid
        ci = self.catalog.get(item)
        return None if ci is None else self._home_sid(ci)

    def _rebuild_residents(self) -> None:
        self._residents = [set() for _ in range(len(self.sections))]
        residents, s = self._residents, self._s
        off = s.loan.keys() | s.pending.keys() | s.overdue.keys()
        self._flagged = off | s.absent.keys() | s.away.keys() | s.missing.keys()
        self._flagged |= s.misplaced.keys()
        for item, sid in s.last_sid.items():
            if item not in off:
                residents[sid].add(item)
        first_home, last_sid, catalog = self.sections.first_home, s.last_sid, self.catalog
        for item in catalog:
            if item not in off and item not in last_sid:
                home = first_home(catalog[item].home_sections)
                if home is not None:
                    residents[home].add(item)

    def _signal(self, kind: SignalKind, item: str, at: float) -> None:
        signals = self._s.signals
        if len(signals) >= self._signal_cap:
            signals.popleft()
            self._s.dropped += 1
        signals.append(Signal(kind, item, from_epoch(at)))
