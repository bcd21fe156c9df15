"""The inventory's pure logic: sweeps, placement, misplaced, missing, reshelving, signals."""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stackpulse.kernel.callnumbers import sort_key
from stackpulse.kernel.catalog import CatalogItem
from stackpulse.kernel.layout import Layout
from stackpulse.services.inventory.logic import CheckpointError, Inventory
from stackpulse.services.inventory.model import (
    Change,
    CircAction,
    CircReport,
    Finding,
    InventorySettings,
    Read,
    SectionReport,
)

T0 = datetime(2026, 11, 24, 10, tzinfo=UTC)
SWEEP = timedelta(minutes=15)

# Floor 2 is listed first, so walking order must come from the floors, not the file.
LAYOUT = Layout.model_validate(
    {
        "site": "main",
        "name": "Test Library",
        "zones": [
            {"id": "f2", "name": "2F", "floor": 2, "capacity": 10},
            {"id": "f1", "name": "1F", "floor": 1, "capacity": 10},
        ],
        "shelves": [
            {
                "device": "rd-a",
                "zone": "f2",
                "sections": [
                    {"id": "A-1", "first": "QA100", "last": "QA100"},
                    {"id": "A-2", "first": "QA101", "last": "QA101"},
                    {"id": "A-3", "first": "QA102", "last": "QA102"},
                ],
            },
            {
                "device": "rd-b",
                "zone": "f1",
                "sections": [
                    {"id": "B-1", "first": "QA103", "last": "QA103"},
                    {"id": "B-2", "first": "QA104", "last": "QA104"},
                ],
            },
            {
                "device": "rd-c",
                "zone": "f1",
                "collection": "rare",
                "sections": [{"id": "C-1", "first": "QA100", "last": "QA110"}],
            },
        ],
    }
)
SECTIONS = {"rd-a": ("A-1", "A-2", "A-3"), "rd-b": ("B-1", "B-2"), "rd-c": ("C-1",)}
FIRSTS = {"A-1": "QA100", "A-2": "QA101", "A-3": "QA102", "B-1": "QA103", "B-2": "QA104"}


def make_catalog() -> dict[str, CatalogItem]:
    out: dict[str, CatalogItem] = {}
    for section, cls in FIRSTS.items():
        for k in range(4):
            cn = f"{cls} .B{k + 10}"
            homes = LAYOUT.sections_holding("main", cn)
            item = f"{section}-{k}"
            out[item] = CatalogItem(item, cn, f"Title {item}", "main", homes, sort_key(cn))
    out["rare-0"] = CatalogItem(
        "rare-0", "QA105 .R1", "Rare", "rare", ("C-1",), sort_key("QA105 .R1")
    )
    out["homeless"] = CatalogItem("homeless", "ZZ1 .A1", "Nowhere", "main", (), sort_key("ZZ1"))
    return out


CATALOG = make_catalog()


class Library:
    """A fake library: where each item truly is, and the reports its readers send."""

    def __init__(self) -> None:
        self.place: dict[str, str | None] = {
            i: (c.home_sections[0] if c.home_sections else None) for i, c in CATALOG.items()
        }
        self.sweep = dict.fromkeys(SECTIONS, 0)
        self.boot = dict.fromkeys(SECTIONS, 1)
        self.t = T0

    def reports(
        self,
        device: str,
        *,
        missed: Iterable[str] = (),
        cross: Iterable[tuple[str, str, float | None]] = (),
        parts: int = 1,
    ) -> list[SectionReport]:
        """One full sweep of `device`; `cross` adds (item, section, rssi) stray reads."""
        self.sweep[device] += 1
        skip, extra = set(missed), list(cross)
        out = []
        for n, section in enumerate(SECTIONS[device]):
            reads = [
                Read(i, -50.0) for i, w in self.place.items() if w == section and i not in skip
            ]
            reads += [Read(i, r) for i, s, r in extra if s == section]
            chunks = [reads[k::parts] for k in range(parts)]
            ts = self.t + timedelta(seconds=2 * n)
            for p, chunk in enumerate(chunks, 1):
                out.append(
                    SectionReport(
                        device,
                        self.boot[device],
                        self.sweep[device],
                        section,
                        p,
                        parts,
                        tuple(chunk),
                        ts,
                    )
                )
        return out

    def run(self, inv: Inventory, device: str = "rd-a", **kw: Any) -> list[Change]:
        out: list[Change] = []
        for r in self.reports(device, **kw):
            out += inv.apply_shelf(r)
        self.t += SWEEP
        return out

    def circ(self, inv: Inventory, item: str, action: CircAction) -> list[Change]:
        return inv.apply_circ(CircReport(item, action, self.t))


def opened(changes: list[Change], finding: Finding) -> list[str]:
    return [c.item for c in changes if c.finding is finding and c.state == "opened"]


def closed(changes: list[Change], finding: Finding) -> list[str]:
    return [c.item for c in changes if c.finding is finding and c.state == "closed"]


def section_of(inv: Inventory, item: str) -> str | None:
    where = inv.located(item)
    return None if where is None else where[0]


def fresh() -> tuple[Inventory, Library]:
    return Inventory(LAYOUT, CATALOG), Library()


# -- placement and misplaced --------------------------------------------------


def test_items_heard_at_home_are_located_and_nothing_is_raised() -> None:
    inv, lib = fresh()
    for _ in range(5):
        assert lib.run(inv) == []
    assert inv.misplaced() == [] and inv.missing() == [] and inv.tasks() == []
    where = inv.located("A-2-1")
    assert where is not None and where[0] == "A-2"
    assert where[1] == T0 + 4 * SWEEP + timedelta(seconds=2)  # its section's report, last sweep
    assert inv.located("B-1-0") is None  # rd-b never swept


def test_misplaced_is_confirmed_over_two_sweeps_and_closes_after_two_seen_home() -> None:
    inv, lib = fresh()
    lib.run(inv)
    lib.place["A-1-0"] = "A-3"
    first = lib.run(inv)
    assert first == [] and inv.misplaced() == []
    second = lib.run(inv)
    assert opened(second, Finding.MISPLACED) == ["A-1-0"]
    change = second[0]
    assert change.detail is not None and change.at == lib.t - SWEEP + timedelta(seconds=4)
    [m] = inv.misplaced()
    assert (m.item, m.seen_section, m.expected_sections) == ("A-1-0", "A-3", ("A-1",))
    assert m.since == T0 + SWEEP + timedelta(seconds=4)  # the first sweep it was away
    assert m.title == "Title A-1-0" and m.call_number == "QA100 .B10"
    [task] = inv.tasks()
    assert (task.from_section, task.to_section, task.floor, task.order) == ("A-3", "A-1", 2, (0, 2))
    assert lib.run(inv) == []  # still there: no new opening
    lib.place["A-1-0"] = "A-1"
    assert lib.run(inv) == []  # one sweep home: not yet, it could be a stray read
    assert section_of(inv, "A-1-0") == "A-3"  # still shown where it was confirmed
    back = lib.run(inv)
    assert closed(back, Finding.MISPLACED) == ["A-1-0"]
    assert inv.misplaced() == [] and inv.tasks() == []
    assert section_of(inv, "A-1-0") == "A-1"


def test_one_stray_read_at_home_neither_closes_nor_reopens_a_misplaced_finding() -> None:
    # The flap: the item stays on the wrong shelf A-2; one sweep misses it there while
    # its home's antenna (A-1, the neighbour) hears it stray. Closing on that one sweep
    # made the next sweep open the same finding again: staff saw one fact twice.
    inv, lib = fresh()
    lib.place["A-1-0"] = "A-2"
    changes = lib.run(inv) + lib.run(inv)
    assert opened(changes, Finding.MISPLACED) == ["A-1-0"]
    since = inv.misplaced()[0].since
    later: list[Change] = []
    for _ in range(3):
        later += lib.run(inv, missed=["A-1-0"], cross=[("A-1-0", "A-1", -70.0)])
        later += lib.run(inv)  # heard on the wrong shelf again: the run home starts over
    later += lib.run(inv, missed=["A-1-0"])  # unheard: no absence counts past one
    assert later == []
    [m] = inv.misplaced()
    assert (m.seen_section, m.since) == ("A-2", since)
    assert inv.missing() == [] and inv.take_signals() == []


def test_sweeps_that_miss_a_misplaced_item_do_not_break_its_run_home() -> None:
    inv, lib = fresh()
    lib.place["A-1-0"] = "A-3"
    lib.run(inv)
    lib.run(inv)
    lib.place["A-1-0"] = "A-1"
    assert lib.run(inv) == [] and lib.run(inv, missed=["A-1-0"]) == []
    assert closed(lib.run(inv), Finding.MISPLACED) == ["A-1-0"]


def test_a_checkout_closes_a_misplaced_finding_at_once_even_midway_home() -> None:
    inv, lib = fresh()
    lib.place["A-1-0"] = "A-3"
    lib.run(inv)
    lib.run(inv)
    lib.place["A-1-0"] = "A-1"
    lib.run(inv)
    assert closed(lib.circ(inv, "A-1-0", "checkout"), Finding.MISPLACED) == ["A-1-0"]
    assert inv.misplaced() == []


def test_an_item_of_another_collection_is_misplaced_on_a_range_that_would_hold_its_number() -> None:
    inv, lib = fresh()
    lib.place["A-1-0"] = "C-1"  # C-1 spans QA100-QA110, but of the rare collection
    for _ in range(2):
        lib.run(inv, "rd-c")
    assert [m.seen_section for m in inv.misplaced()] == ["C-1"]


def test_sweeps_that_miss_the_item_do_not_break_the_run_away() -> None:
    inv, lib = fresh()
    lib.place["A-1-0"] = "A-2"
    lib.run(inv)
    lib.run(inv, missed=["A-1-0"])
    assert opened(lib.run(inv), Finding.MISPLACED) == ["A-1-0"]


def test_a_stray_cross_read_raises_nothing_even_when_the_home_read_was_missed() -> None:
    inv, lib = fresh()
    changes: list[Change] = []
    for _ in range(6):  # the neighbour hears it weaker, every sweep
        changes += lib.run(inv, cross=[("A-1-0", "A-2", -70.0)])
    changes += lib.run(inv, missed=["A-1-0"], cross=[("A-1-0", "A-2", -70.0)])
    changes += lib.run(inv, cross=[("A-1-0", "A-2", -70.0)])
    changes += lib.run(inv, missed=["A-1-0"], cross=[("A-1-0", "A-2", -70.0)])
    assert changes == [] and inv.misplaced() == []
    assert section_of(inv, "A-1-0") == "A-2"  # the last sweep could only place it there
    assert inv.take_signals() == []


def test_strongest_read_wins_and_ties_go_home_then_to_the_lowest_section() -> None:
    inv, lib = fresh()
    lib.place["A-2-0"] = None
    # Heard equally by A-3 and its home A-2, and by A-1 with no rssi at all.
    cross = [("A-2-0", "A-3", -60.0), ("A-2-0", "A-2", -60.0), ("A-2-0", "A-1", None)]
    lib.run(inv, cross=cross)
    assert inv.located("A-2-0") == ("A-2", T0 + timedelta(seconds=2))
    lib.place["A-1-0"] = None  # equal reads in two foreign sections: the lowest id
    lib.run(inv, cross=[("A-1-0", "A-3", -60.0), ("A-1-0", "A-2", -60.0)])
    assert section_of(inv, "A-1-0") == "A-2"
    lib.run(inv, cross=[("A-1-0", "A-3", None), ("A-1-0", "A-2", -90.0)])
    assert section_of(inv, "A-1-0") == "A-2"


# -- missing --------------------------------------------------------------------


def test_missing_after_three_full_sweeps_unseen_and_closed_when_seen_anywhere() -> None:
    inv, lib = fresh()
    lib.run(inv)
    lib.place["A-2-3"] = None
    assert lib.run(inv) == [] and lib.run(inv) == []
    third = lib.run(inv)
    assert opened(third, Finding.MISSING) == ["A-2-3"]
    [m] = inv.missing()
    assert (m.item, m.last_seen_section, m.last_seen_at) == ("A-2-3", "A-2", T0 + timedelta(0, 2))
    assert lib.run(inv) == []  # still missing: no second opening
    lib.place["A-2-3"] = "B-2"  # found on another reader
    back = lib.run(inv, "rd-b")
    assert closed(back, Finding.MISSING) == ["A-2-3"] and inv.missing() == []


def test_never_seen_items_go_missing_but_homeless_and_unswept_items_never_do() -> None:
    inv, lib = fresh()
    lib.place["A-3-0"] = None
    changes: list[Change] = []
    for _ in range(5):
        changes += lib.run(inv)
    assert opened(changes, Finding.MISSING) == ["A-3-0"]
    assert inv.missing()[0].last_seen_section is None
    assert "homeless" not in {m.item for m in inv.missing()}
    assert not any(m.item.startswith("B-") for m in inv.missing())  # rd-b never swept


def test_a_section_with_a_lost_part_counts_no_absence() -> None:
    inv, lib = fresh()
    lib.run(inv)
    lib.place["A-1-1"] = None
    for _ in range(4):
        reports = lib.reports("rd-a", parts=2)
        lost = next(r for r in reports if r.section == "A-1" and r.part == 2)
        for r in reports:
            if r is not lost:
                assert inv.apply_shelf(r) == []
        lib.t += SWEEP
    inv.tick(lib.t + timedelta(hours=1))
    assert inv.missing() == []


def test_checked_out_items_are_never_missing_nor_misplaced() -> None:
    inv, lib = fresh()
    lib.run(inv)
    lib.place["A-1-2"] = "A-3"
    lib.run(inv)
    changes = lib.circ(inv, "A-1-2", "checkout")
    assert changes == []
    lib.place["A-1-2"] = None
    for _ in range(6):
        changes += lib.run(inv)
    assert changes == [] and inv.missing() == [] and inv.misplaced() == []


def test_a_checkout_closes_open_findings() -> None:
    inv, lib = fresh()
    lib.place["A-1-2"] = "A-3"
    lib.run(inv)
    lib.run(inv)
    lib.place["A-2-0"] = None
    for _ in range(3):
        lib.run(inv)
    assert [m.item for m in inv.misplaced()] == ["A-1-2"]
    assert [m.item for m in inv.missing()] == ["A-2-0"]
    assert closed(lib.circ(inv, "A-1-2", "checkout"), Finding.MISPLACED) == ["A-1-2"]
    assert closed(lib.circ(inv, "A-2-0", "renew"), Finding.MISSING) == ["A-2-0"]
    assert inv.misplaced() == [] and inv.missing() == [] and inv.tasks() == []


# -- sweeps: parts, duplicates, order, reboots, timeouts ------------------------------


def test_a_sweep_closes_only_when_every_part_of_every_section_is_in() -> None:
    inv, lib = fresh()
    lib.place["A-1-0"] = "A-2"
    lib.run(inv)
    reports = lib.reports("rd-a", parts=3)
    *early, last = reports
    for r in early:
        assert inv.apply_shelf(r) == []
        assert inv.apply_shelf(r) == []  # a repeat changes nothing
    assert opened(inv.apply_shelf(last), Finding.MISPLACED) == ["A-1-0"]
    assert all(inv.apply_shelf(r) == [] for r in reports)  # the sweep is closed


def test_a_later_sweep_or_a_new_boot_closes_the_open_one_and_late_reports_are_ignored() -> None:
    inv, lib = fresh()
    lib.place["A-1-0"] = "A-2"
    lib.run(inv)
    partial = lib.reports("rd-a")
    late = partial.pop()  # A-3 of sweep 2 comes late
    for r in partial:
        inv.apply_shelf(r)
    lib.t += SWEEP
    nxt = lib.reports("rd-a")
    assert opened(inv.apply_shelf(nxt[0]), Finding.MISPLACED) == ["A-1-0"]
    assert inv.apply_shelf(late) == []
    # Reboot mid-sweep: the rest of sweep 3 never comes; boot 2 starts from sweep 1.
    lib.boot["rd-a"], lib.sweep["rd-a"] = 2, 0
    lib.place["A-1-0"] = "A-1"
    lib.t += SWEEP
    changes: list[Change] = []
    for r in lib.reports("rd-a"):
        changes += inv.apply_shelf(r)
    changes += lib.run(inv)  # the second sweep home closes the finding
    assert closed(changes, Finding.MISPLACED) == ["A-1-0"]
    assert all(inv.apply_shelf(r) == [] for r in nxt)  # the old boot's sweep: closed
    assert inv.missing() == []  # the cut-short sweep counted no absence for


def test_a_reader_whose_boot_goes_backwards_starts_a_new_life_after_a_gap() -> None:
    inv, lib = fresh()
    lib.boot["rd-a"] = 7
    for _ in range(3):
        lib.run(inv)
    # The reader is replaced: the new one starts at boot 0, sweep 1, 15 minutes later.
    lib.boot["rd-a"], lib.sweep["rd-a"] = 0, 0
    lib.place["A-2-3"] = None
    opened_by_new: list[Change] = []
    for _ in range(3):
        opened_by_new += lib.run(inv)
    assert opened(opened_by_new, Finding.MISSING) == ["A-2-3"]  # its sweeps count
    assert [m.item for m in inv.missing()] == ["A-2-3"]
    lib.place["A-2-3"] = "A-2"
    assert closed(lib.run(inv), Finding.MISSING) == ["A-2-3"]
    assert inv.checkpoint()["closed"]["rd-a"] == [0, 4]
    # The new life survives a restart: its checkpoint keeps the time of the last sweep.
    again = Inventory(LAYOUT, CATALOG)
    again.restore(json.loads(json.dumps(inv.checkpoint())))
    assert lib.run(again) == [] and again.checkpoint()["closed"]["rd-a"] == [0, 5]


def test_a_lower_boot_within_the_timeout_is_a_straggler_not_a_new_life() -> None:
    inv, lib = fresh()
    lib.boot["rd-a"] = 3
    lib.run(inv)
    lib.run(inv)
    last = inv.checkpoint()["closed"]["rd-a"]
    straggler = SectionReport("rd-a", 2, 40, "A-1", 1, 1, (), lib.t - SWEEP)
    assert inv.apply_shelf(straggler) == []
    late = SectionReport("rd-a", 2, 41, "A-1", 1, 1, (), lib.t - SWEEP + timedelta(minutes=9))
    assert inv.apply_shelf(late) == []
    assert inv.checkpoint()["closed"]["rd-a"] == last and inv.checkpoint()["open"] == {}


def test_tick_closes_a_sweep_silent_past_the_timeout() -> None:
    inv, lib = fresh()
    lib.place["A-1-0"] = "A-3"
    lib.run(inv)
    reports = lib.reports("rd-a")
    for r in reports[:-1]:
        inv.apply_shelf(r)
    last_ts = reports[-2].ts
    assert inv.tick(last_ts + timedelta(minutes=10)) == []  # not past it yet
    assert inv.misplaced() == []
    assert inv.tick(last_ts + timedelta(minutes=10, seconds=1)) == []  # A-3 part never came
    reports2 = lib.reports("rd-a")
    for r in reports2[:-1]:
        inv.apply_shelf(r)
    assert inv.tick(reports2[-2].ts + timedelta(minutes=11)) == []
    assert inv.apply_shelf(reports[-1]) == []  # closed by the timeout: ignored
    # Only sweep 1 placed it away: sweeps 2 and 3 never heard all of A-3.
    assert inv.misplaced() == [] and inv.missing() == []


def test_reports_of_unknown_sections_or_of_another_reader_are_ignored() -> None:
    inv, lib = fresh()
    r = lib.reports("rd-a")[0]
    other = SectionReport("rd-b", 1, 1, "A-1", 1, 1, r.reads, r.ts)
    unknown = SectionReport("rd-a", 1, 1, "Z-9", 1, 1, r.reads, r.ts)
    assert inv.apply_shelf(other) == [] and inv.apply_shelf(unknown) == []
    assert inv.located(r.reads[0].item) is None


def test_reads_of_items_the_catalog_does_not_know_are_counted_and_ignored() -> None:
    inv, lib = fresh()
    lib.run(inv, cross=[("stranger", "A-1", -40.0)])
    assert inv.located("stranger") is None and inv.unknown_items == 1


# -- circulation, reshelving and signals ----------------------------------------------


def test_a_checkin_not_reshelved_in_time_awaits_reshelving_until_heard() -> None:
    inv, lib = fresh()
    lib.run(inv)
    lib.circ(inv, "A-1-3", "checkout")
    lib.place["A-1-3"] = None
    lib.run(inv)
    checked_in = lib.t
    lib.circ(inv, "A-1-3", "checkin")
    for _ in range(6):
        lib.run(inv)
    assert inv.missing() == []  # on the cart, not missing
    assert inv.tick(checked_in + timedelta(hours=2) - timedelta(seconds=1)) == []
    [change] = inv.tick(checked_in + timedelta(hours=2, minutes=7))
    assert (change.finding, change.item, change.state) == (Finding.RESHELVING, "A-1-3", "opened")
    assert change.at == checked_in + timedelta(hours=2)  # when it fell due, not when ticked
    [a] = inv.awaiting_reshelving()
    assert (a.checked_in_at, a.overdue_since) == (checked_in, checked_in + timedelta(hours=2))
    assert inv.tick(checked_in + timedelta(hours=3)) == []
    lib.place["A-1-3"] = "A-2"  # reshelved, wrongly: closes this, then misplaced
    assert closed(lib.run(inv), Finding.RESHELVING) == ["A-1-3"]
    assert opened(lib.run(inv), Finding.MISPLACED) == ["A-1-3"]
    assert inv.awaiting_reshelving() == []
    kinds = [s.kind for s in inv.take_signals()]
    assert kinds == ["checkout", "checkin"]  # back from loan is no in-library use


def test_a_read_from_before_the_checkin_does_not_count_as_reshelved() -> None:
    inv, lib = fresh()
    lib.circ(inv, "A-1-3", "checkout")
    reports = lib.reports("rd-a")
    lib.t = reports[-1].ts + timedelta(seconds=30)
    lib.circ(inv, "A-1-3", "checkin")  # the sweep heard it before this
    for r in reports:
        inv.apply_shelf(r)
    [change] = inv.tick(lib.t + timedelta(hours=2))
    assert change.finding is Finding.RESHELVING


def test_an_item_gone_two_sweeps_and_back_is_one_in_library_use() -> None:
    inv, lib = fresh()
    lib.run(inv)
    inv.take_signals()
    lib.run(inv, missed=["A-1-0"])
    lib.run(inv)  # one sweep away: a missed read, not a use
    assert inv.take_signals() == []
    lib.run(inv, missed=["A-1-0"])
    lib.run(inv, missed=["A-1-0"])
    lib.run(inv)
    [sig] = inv.take_signals()
    assert (sig.kind, sig.item, sig.at) == ("use", "A-1-0", lib.t - SWEEP)
    lib.run(inv)
    assert inv.take_signals() == []  # one use, not one per sweep
    lib.circ(inv, "A-1-0", "checkout")
    lib.run(inv, missed=["A-1-0"])
    lib.run(inv, missed=["A-1-0"])
    lib.circ(inv, "A-1-0", "checkin")
    lib.run(inv)
    assert [s.kind for s in inv.take_signals()] == ["checkout", "checkin"]


def test_circulation_signals_and_a_bounded_signal_buffer() -> None:
    inv = Inventory(LAYOUT, CATALOG, InventorySettings(signal_buffer=3))
    lib = Library()
    for action in ("hold", "checkout", "renew", "checkin", "hold"):
        lib.circ(inv, "B-1-0", action)
        lib.t += timedelta(minutes=1)
    lib.circ(inv, "not-in-catalog", "hold")
    assert [s.kind for s in inv.take_signals()] == ["renew", "checkin", "hold"]
    assert inv.signals_dropped == 2 and inv.take_signals() == []


def test_tasks_go_by_floor_then_along_the_shelves() -> None:
    inv, lib = fresh()
    moves = {"A-1-0": "A-3", "A-2-0": "A-1", "B-1-0": "B-2", "B-2-0": "B-1", "A-3-0": "A-2"}
    lib.place.update(moves)
    for _ in range(2):
        for device in ("rd-a", "rd-b"):
            lib.run(inv, device)
    order = [(t.item, t.from_section, t.floor) for t in inv.tasks()]
    assert order == [
        ("B-2-0", "B-1", 1),
        ("B-1-0", "B-2", 1),
        ("A-2-0", "A-1", 2),
        ("A-3-0", "A-2", 2),
        ("A-1-0", "A-3", 2),
    ]
    assert {t.to_section for t in inv.tasks()} == {"A-1", "A-2", "A-3", "B-1", "B-2"}


# -- checkpoints --------------------------------------------------------------------


def story(lib: Library) -> list[tuple[str, Any]]:
    """A day of events touching every rule, as ("shelf", report) / ("circ", report)."""
    rng = random.Random(5)
    steps: list[tuple[str, Any]] = []
    for n in range(14):
        if n == 2:
            lib.place["A-1-0"] = "A-3"
        if n == 4:
            lib.place["B-1-1"] = None
        if n == 6:
            steps.append(("circ", CircReport("A-2-2", "checkout", lib.t)))
            lib.place["A-2-2"] = None
        if n == 8:
            steps.append(("circ", CircReport("A-2-2", "checkin", lib.t)))
        if n == 11:
            lib.place["A-2-2"] = "A-2"
        for device in ("rd-a", "rd-b"):
            missed = [i for i in lib.place if rng.random() < 0.1]
            cross = [("A-2-1", "A-3", -75.0)] if rng.random() < 0.5 else []
            reports = lib.reports(device, missed=missed, cross=cross, parts=2)
            rng.shuffle(reports)
            steps += [("shelf", r) for r in reports]
        lib.t += SWEEP
    return steps


def feed(inv: Inventory, step: tuple[str, Any]) -> list[Change]:
    kind, report = step
    out = inv.apply_shelf(report) if kind == "shelf" else inv.apply_circ(report)
    return out + inv.tick(report.ts)


def snapshot(inv: Inventory) -> tuple[Any, ...]:
    return (
        inv.misplaced(),
        inv.missing(),
        inv.awaiting_reshelving(),
        inv.tasks(),
        {i: inv.located(i) for i in CATALOG},
    )


@pytest.mark.parametrize("cut", [5, 61, 97, 150])
def test_a_restored_checkpoint_carries_on_exactly_like_the_uninterrupted_run(cut: int) -> None:
    steps = story(Library())
    whole = Inventory(LAYOUT, CATALOG)
    all_changes = [c for s in steps for c in feed(whole, s)]
    assert opened(all_changes, Finding.MISPLACED) and opened(all_changes, Finding.MISSING)
    first = Inventory(LAYOUT, CATALOG)
    before = [c for s in steps[:cut] for c in feed(first, s)]
    saved = json.loads(json.dumps(first.checkpoint(), allow_nan=False))
    second = Inventory(LAYOUT, CATALOG)
    second.restore(saved)
    after = [c for s in steps[cut:] for c in feed(second, s)]
    assert before + after == all_changes
    assert snapshot(second) == snapshot(whole)
    # Untaken signals travel in the checkpoint: none lost across a restart.
    assert second.take_signals() == whole.take_signals()


def test_replaying_after_a_restore_opens_nothing_already_open() -> None:
    steps = story(Library())
    cut = 97
    whole = Inventory(LAYOUT, CATALOG)
    all_changes = [c for s in steps for c in feed(whole, s)]
    first = Inventory(LAYOUT, CATALOG)
    before = [c for s in steps[:cut] for c in feed(first, s)]
    assert first.misplaced() and first.missing()
    again = Inventory(LAYOUT, CATALOG)
    again.restore(json.loads(json.dumps(first.checkpoint())))
    # The broker redelivers shelf reports from well before the checkpoint.
    replay = [s for s in steps[cut - 40 : cut] if s[0] == "shelf"] + steps[cut:]
    after = [c for s in replay for c in feed(again, s)]
    assert before + after == all_changes
    open_at_cut = {m.item for m in first.misplaced()} | {m.item for m in first.missing()}
    assert not {c.item for c in after if c.state == "opened"} & open_at_cut
    assert snapshot(again) == snapshot(whole)


def test_checkpoint_is_versioned_and_compact() -> None:
    inv = Inventory(LAYOUT, CATALOG)
    for s in story(Library()):
        feed(inv, s)
    data = inv.checkpoint()
    assert data["format"] == "stackpulse.inventory" and data["version"] == 1
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    assert len(text) < 120 * len(CATALOG)
    assert len(data["times"]) < 40  # items heard in one report share one time entry


GARBAGE: list[tuple[Any, str]] = [
    (None, "JSON object"),
    ([1, 2], "JSON object"),
    ({"format": "other"}, "not an inventory checkpoint"),
    ({"format": "stackpulse.inventory", "version": 99}, "version"),
]


@pytest.mark.parametrize(("data", "why"), GARBAGE)
def test_garbage_is_refused_with_a_reason(data: Any, why: str) -> None:
    with pytest.raises(CheckpointError, match=why):
        Inventory(LAYOUT, CATALOG).restore(data)


def _set(data: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for key in parents:
        data = data[key]
    data[last] = value(data[last]) if callable(value) else value


DAMAGE: list[tuple[str, Any, str]] = [
    ("located.sid", "x", "located.sid"),
    ("located.t", lambda col: [10**6] * len(col), "past the table"),
    ("located.id", [], "differ in length"),
    ("times", [float("nan")], "times"),
    ("absent", [], "absent"),
    ("signals.kind", lambda col: ["teleport"] * len(col), "unknown kind"),
    ("closed", {"rd-a": [1]}, "boot, sweep"),
    ("closed_t", {"rd-a": "x"}, "closed_t"),
    ("home", {"id": ["A-1-0"], "n": []}, "differ in length"),
    ("open", {"rd-a": {"boot": 1}}, "sweep"),
    ("dropped", True, "dropped"),
]


@pytest.mark.parametrize(("path", "value", "why"), DAMAGE)
def test_a_damaged_checkpoint_is_refused_and_the_state_kept(
    path: str, value: Any, why: str
) -> None:
    inv = Inventory(LAYOUT, CATALOG)
    for s in story(Library()):
        feed(inv, s)
    data = json.loads(json.dumps(inv.checkpoint()))
    assert data["located"]["id"] and data["signals"]["kind"]
    _set(data, path, value)
    before = snapshot(inv)
    with pytest.raises(CheckpointError, match=why):
        inv.restore(data)
    assert snapshot(inv) == before


def test_a_checkpoint_from_before_the_home_run_and_reader_times_is_taken_up() -> None:
    inv, lib = fresh()
    lib.place["A-1-0"] = "A-3"
    lib.run(inv)
    lib.run(inv)
    lib.place["A-1-0"] = "A-1"
    lib.run(inv)  # one sweep home: a run of 1 in the checkpoint
    data = json.loads(json.dumps(inv.checkpoint()))
    assert data["home"] == {"id": ["A-1-0"], "n": [1]} and "rd-a" in data["closed_t"]
    del data["home"], data["closed_t"]  # as version 1 wrote it before them
    older = Inventory(LAYOUT, CATALOG)
    older.restore(data)
    assert [m.item for m in older.misplaced()] == ["A-1-0"]
    assert lib.run(older) == []  # the run home starts again: one more sweep
    assert closed(lib.run(older), Finding.MISPLACED) == ["A-1-0"]


# -- properties ---------------------------------------------------------------------


def scenario_reports(seed: int) -> list[list[SectionReport]]:
    """Six sweeps of rd-a with moves, missed and cross reads: a list of reports per sweep."""
    rng = random.Random(seed)
    lib = Library()
    sweeps = []
    items = sorted(i for i in CATALOG if i.startswith("A-"))
    for _ in range(6):
        for item in rng.sample(items, 2):
            lib.place[item] = rng.choice(["A-1", "A-2", "A-3", None])
        missed = [i for i in items if rng.random() < 0.1]
        cross = [(i, rng.choice(SECTIONS["rd-a"]), -80.0) for i in rng.sample(items, 2)]
        sweeps.append(lib.reports("rd-a", missed=missed, cross=cross, parts=rng.randint(1, 3)))
        lib.t += SWEEP
    return sweeps


def outcome(inv: Inventory, sweeps: list[list[SectionReport]]) -> tuple[Any, ...]:
    changes = [c for reports in sweeps for r in reports for c in inv.apply_shelf(r)]
    return (changes, snapshot(inv), inv.take_signals())


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), shuffle_seed=st.integers(0, 10_000), data=st.data())
def test_shuffling_and_repeating_reports_within_a_sweep_changes_nothing(
    seed: int, shuffle_seed: int, data: st.DataObject
) -> None:
    sweeps = scenario_reports(seed)
    plain = outcome(Inventory(LAYOUT, CATALOG), sweeps)
    rng = random.Random(shuffle_seed)
    noisy = []
    for reports in sweeps:
        extra = data.draw(st.lists(st.sampled_from(reports), max_size=4))
        mixed = [*reports, *extra]
        rng.shuffle(mixed)
        # The sweep must close on its last new part, as the plain order does.
        noisy.append(mixed)
    assert outcome(Inventory(LAYOUT, CATALOG), noisy) == plain


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    rssi=st.lists(st.sampled_from([None, -60.0, -61.0]), min_size=3, max_size=3),
)
def test_placement_does_not_depend_on_which_antenna_reports_first(
    seed: int, rssi: list[float | None]
) -> None:
    reads = dict(zip(SECTIONS["rd-a"], rssi, strict=True))
    orders = list(SECTIONS["rd-a"])
    random.Random(seed).shuffle(orders)
    results = set()
    for order in (list(SECTIONS["rd-a"]), orders):
        inv = Inventory(LAYOUT, CATALOG)
        for n, section in enumerate(order):
            reads_here = (Read("A-2-0", reads[section]),)
            ts = T0 + timedelta(seconds=n)
            inv.apply_shelf(SectionReport("rd-a", 1, 1, section, 1, 1, reads_here, ts))
        results.add(section_of(inv, "A-2-0"))
    assert len(results) == 1
    best = max(r for r in rssi if r is not None) if any(r is not None for r in rssi) else None
    tied = [s for s, r in reads.items() if r == best]
    assert results == {"A-2" if "A-2" in tied else min(tied)}
