"""Accuracy of misplaced and missing against the simulator's ground truth, with noisy reads.

The simulated library reshelves returned books wrongly, has patrons put books back in the
wrong place and books disappear (the removal fault), while its readers miss 5% of tags per
sweep and hear 2% of the neighbouring sections' tags, weaker. Every simulated message goes
through the protocol decoder into the logic, as the service would feed it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from stackpulse.kernel.catalog import CatalogItem
from stackpulse.kernel.models import CircData, ShelfData, parse_payload
from stackpulse.kernel.topics import Channel, Kind
from stackpulse.services.inventory.logic import Inventory
from stackpulse.services.inventory.model import (
    Change,
    CircReport,
    Finding,
    InventorySettings,
    Read,
    SectionReport,
)
from stackpulse.simulators import Faults, LibraryModel, Message, SimConfig
from stackpulse.simulators.stacks import REMOVED
from stackpulse.simulators.synth import synthetic_catalog, synthetic_layout

LAYOUT = synthetic_layout(
    floors=1, rooms_per_floor=2, seats_per_room=10, shelves=4, sections_per_shelf=10
)
START = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)
SWEEP = 900.0  # SimConfig.sweep_interval


def catalog() -> dict[str, CatalogItem]:
    out = {}
    for n, s in enumerate(synthetic_catalog(LAYOUT, per_section=40)):
        out[s.item] = CatalogItem(s.item, s.call_number, f"Book {n}", "main", s.home_sections)
    return out


def decode(m: Message) -> SectionReport | CircReport | None:
    """A simulator message as the gateway would hand it to the inventory service."""
    if m.channel is not Channel.DATA or m.kind not in (Kind.SHELF, Kind.CIRC):
        return None
    data = parse_payload(m.kind, m.channel, m.encode())
    if isinstance(data, ShelfData):
        reads = tuple(Read(r.id, r.rssi) for r in data.items)
        return SectionReport(
            m.device, data.boot, data.sweep, data.section, data.part, data.parts, reads, data.ts
        )
    assert isinstance(data, CircData)
    return CircReport(data.item, data.action, data.ts)


@dataclass
class Score:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    opened: int = 0  # findings the logic opened over the run
    opened_true: int = 0  # ... of which the truth agreed at the time
    # Findings opened again for an item still in the very place it was in when its
    # previous finding closed: one fact told twice (the close was wrong).
    reopened: int = 0
    closed_at: dict[str, str] = field(default_factory=dict)  # item -> true place at close
    examples: list[str] = field(default_factory=list)

    def add(self, said: set[str], truth: set[str], where: str) -> None:
        self.tp += len(said & truth)
        self.fp += len(said - truth)
        self.fn += len(truth - said)
        for item in sorted(said ^ truth)[:2]:
            if len(self.examples) < 6:
                self.examples.append(f"{where} {item} said={item in said}")

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def per_alert(self) -> float:
        """Of the findings opened, the share that were true when opened."""
        return self.opened_true / self.opened if self.opened else 1.0


@dataclass
class Run:
    misplaced: Score
    missing: Score
    uses: int  # "use" signals: the simulator has no in-library use, so all are false
    item_sweeps: int  # items x sweeps of their reader, to scale `uses` by


def evaluate(days: float = 3.0, seed: int = 11, settings: InventorySettings | None = None) -> Run:
    """Precision and recall of misplaced and missing, compared at sweep boundaries.

    Every `SWEEP` seconds (one reader pass) the logic's confirmed findings are compared
    with the truth: an item truly on a section that is not its home is misplaced, an
    item truly removed is missing. Confirmation takes time, so an item whose true place
    changed within the last confirmation window -- (`confirm_sweeps` + 1) passes for
    misplaced, (`missing_sweeps` + 1) for missing, plus a minute for the sweep itself --
    is left out on both sides: neither a hit nor a miss. So is an item whose true place
    is "loan" or "reshelving" only in that it counts as neither misplaced nor missing.
    Counts are item-checks (items x comparison times); `opened` counts findings opened.
    """
    settings = settings or InventorySettings()
    faults = Faults(
        missed_read_p=0.05, cross_read_p=0.02, misplace_p=0.2, removals_per_item_day=0.01
    )
    config = SimConfig(
        faults=faults,
        initial_loan_p=0.0,  # loans from before the start are unknowable: start with none
        checkouts_per_person_hour=0.4,
        checkins_per_person_hour=0.4,
    )
    items = catalog()
    model = LibraryModel(
        LAYOUT, start=START, seed=seed, catalog=list(items.values()), config=config
    )
    inventory = Inventory(LAYOUT, items, settings)
    rng = random.Random(seed)
    sections = [s.id for sh in LAYOUT.shelves for s in sh.sections]
    windows = {
        "misplaced": (settings.confirm_sweeps + 1) * SWEEP + 60,
        "missing": (settings.missing_sweeps + 1) * SWEEP + 60,
    }
    changed: dict[str, float] = {}
    where = dict(model.truth().items)
    scores = {"misplaced": Score(), "missing": Score()}
    uses = 0
    t, step, next_check = START, timedelta(seconds=60), START + timedelta(seconds=SWEEP)
    end = START + timedelta(days=days)
    while t < end:
        t += step
        if rng.random() < 1 / 60:  # a patron puts a book back on the wrong shelf
            places = model.truth().items
            shelved = [i for i, w in places.items() if w in sections]
            model.misplace(rng.choice(shelved), rng.choice(sections))
        for m in model.advance(t):
            report = decode(m)
            if isinstance(report, SectionReport):
                changes = inventory.apply_shelf(report)
            elif isinstance(report, CircReport):
                changes = inventory.apply_circ(report)
            else:
                continue
            _tally(changes, model, scores)
        _tally(inventory.tick(t), model, scores)
        now = t.timestamp()
        truth = model.truth()
        for item, w in truth.items.items():
            if where.get(item) != w:
                changed[item] = now
        where = dict(truth.items)
        if t < next_check:
            continue
        next_check += timedelta(seconds=SWEEP)
        uses += sum(s.kind == "use" for s in inventory.take_signals())
        fresh = {k: {i for i, c in changed.items() if now - c < w} for k, w in windows.items()}
        said = {
            "misplaced": {m.item for m in inventory.misplaced()},
            "missing": {m.item for m in inventory.missing()},
        }
        true = {
            "misplaced": set(truth.misplaced),
            "missing": {i for i, w in truth.items.items() if w == REMOVED},
        }
        for kind, score in scores.items():
            score.add(said[kind] - fresh[kind], true[kind] - fresh[kind], t.isoformat())
    item_sweeps = int(len(items) * days * 86400 / SWEEP)
    return Run(scores["misplaced"], scores["missing"], uses, item_sweeps)


def _tally(changes: list[Change], model: LibraryModel, scores: dict[str, Score]) -> None:
    """Count the findings opened, whether the truth agreed at that moment, and reopenings."""
    mine = [c for c in changes if c.finding.value in scores]
    if not mine:
        return
    truth = model.truth()
    for c in mine:
        score, place = scores[c.finding.value], truth.items.get(c.item, "")
        if c.state == "closed":
            score.closed_at[c.item] = place
            continue
        score.opened += 1
        score.reopened += score.closed_at.pop(c.item, None) == place
        if c.finding is Finding.MISSING:
            score.opened_true += place == REMOVED
        else:
            score.opened_true += c.item in truth.misplaced


def report(run: Run, label: str = "") -> None:
    for name, s in (("misplaced", run.misplaced), ("missing", run.missing)):
        print(
            f"\n{label}{name}: precision {s.precision:.4f} recall {s.recall:.4f} "
            f"(tp {s.tp}, fp {s.fp}, fn {s.fn} item-checks); "
            f"{s.opened} opened, {s.opened_true} of them true when opened "
            f"(per-alert precision {s.per_alert:.3f}), {s.reopened} reopened"
        )
    print(f"{label}false 'use' signals: {run.uses} in {run.item_sweeps} item-sweeps")


def test_misplaced_and_missing_match_the_truth_despite_missed_and_cross_reads() -> None:
    run = evaluate()
    report(run)
    assert run.misplaced.tp > 10_000 and run.missing.tp > 3_000  # enough to measure
    assert run.misplaced.precision >= 0.99 and run.misplaced.recall >= 0.99
    assert run.missing.precision >= 0.99 and run.missing.recall >= 0.99
    # Per alert: what staff are sent. Closing on one sweep home reopened 30 of 349 (a
    # stray home read while the wrong shelf missed it); closing takes confirm_sweeps now.
    assert run.misplaced.opened > 300 and run.misplaced.per_alert >= 0.99
    assert run.misplaced.reopened <= 3
    # Missing at the 3 sweeps: about half the alerts are a 5% missed read three
    # times over for one of 1,600 items (each clears the next sweep). Kept, and printed;
    # the README gives the figures for 4 and 5 sweeps (test below).
    assert run.missing.per_alert >= 0.4 and run.missing.reopened <= 3
    # Two absences in a row before a "use": about p² = 0.25% of item-sweeps, not p = 5%.
    assert run.uses < 0.005 * run.item_sweeps


def test_the_removal_fault_takes_books_off_the_shelves_for_good_and_is_off_by_default() -> None:
    items = list(catalog().values())
    end = START + timedelta(hours=6)

    def run(faults: Faults) -> tuple[list[bytes], dict[str, str], set[str]]:
        model = LibraryModel(
            LAYOUT, start=START, seed=3, catalog=items, config=SimConfig(faults=faults)
        )
        sent = [m.encode() for m in model.advance(end)]
        heard = {  # one more pass of every reader
            r["id"]
            for m in model.advance(end + timedelta(seconds=SWEEP))
            if m.kind is Kind.SHELF
            for r in m.payload["items"]
        }
        return sent, model.truth().items, heard

    _, plain, _ = run(Faults())
    assert REMOVED not in plain.values()
    lossy = run(Faults(removals_per_item_day=0.05))
    assert lossy == run(Faults(removals_per_item_day=0.05))  # seeded: the same every time
    _, truth, heard = lossy
    gone = {i for i, w in truth.items() if w == REMOVED}
    assert 5 <= len(gone) <= 50  # 1600 items x 0.05 a day x 6 h: 20 expected
    assert len(heard) > 1000 and not heard & gone


@pytest.mark.parametrize("sweeps", [4, 5])
def test_more_missing_sweeps_cut_false_missing_alerts(sweeps: int) -> None:
    """The figures behind the README's advice: 4-5 sweeps for fewer false missing alerts."""
    run = evaluate(settings=InventorySettings(missing_sweeps=sweeps))
    report(run, f"missing_sweeps={sweeps}: ")
    assert run.missing.precision >= 0.99 and run.missing.recall >= 0.99
    assert run.missing.per_alert >= (0.8 if sweeps == 4 else 0.9)
