"""What the inventory service knows and says: its settings, findings, tasks and signals.

This module is the contract between the pure logic (`logic.py`, `demand.py`), the
service loop (`service.py`) and the HTTP routes (`routes.py`). Times are aware UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal


@dataclass(frozen=True, slots=True)
class InventorySettings:
    # Misplaced: seen away from home in this many of the item's sweeps in a row, so a
    # stray read by the neighbouring section's antenna is not an alarm.
    confirm_sweeps: int = 2
    # Missing: unseen in this many sweeps of its home sections, and not on loan.
    missing_sweeps: int = 3
    # A checked-in item not seen on any shelf within this time is awaiting reshelving.
    reshelve_within: timedelta = timedelta(hours=2)
    # A reader's sweep with parts still outstanding is closed after this much device time
    # has passed since its last message (a lost part must not hold the sweep open forever).
    sweep_timeout: timedelta = timedelta(minutes=10)
    # Demand: signals counted over this window; suggestions past these thresholds.
    demand_window: timedelta = timedelta(days=30)
    holds_per_copy: float = 2.0  # holds / copies at or above this suggests buying
    uses_per_copy: float = 5.0  # in-library uses / copies at or above this suggests buying
    # In-library use: an item placed on a shelf, then unheard in at least this many fully
    # swept passes of its section in a row, then heard again with no checkout between.
    # One pass is not enough: with a 5% missed-read rate, 1 would make a false "use" of
    # one item in twenty every sweep; 2 makes it p² (0.25%), 3 makes it p³.
    use_absent_sweeps: int = 2
    # Untaken demand signals kept at most; past it the oldest are dropped and counted.
    signal_buffer: int = 100_000

    def __post_init__(self) -> None:
        if self.confirm_sweeps < 1 or self.missing_sweeps < 1 or self.use_absent_sweeps < 1:
            raise ValueError(
                "confirm_sweeps, missing_sweeps and use_absent_sweeps must be at least 1"
            )
        if self.signal_buffer < 1:
            raise ValueError("signal_buffer must be at least 1")
        for name in ("reshelve_within", "sweep_timeout", "demand_window"):
            if getattr(self, name) <= timedelta(0):
                raise ValueError(f"{name} must be a positive duration")
        if self.holds_per_copy <= 0 or self.uses_per_copy <= 0:
            raise ValueError("holds_per_copy and uses_per_copy must be positive")


@dataclass(frozen=True, slots=True)
class Read:
    """One tag heard by a section's antenna in one sweep."""

    item: str
    rssi: float | None = None


@dataclass(frozen=True, slots=True)
class SectionReport:
    """One shelf `data` message (protocol.md section 2), already validated by the gateway."""

    device: str
    boot: int
    sweep: int
    section: str
    part: int
    parts: int
    reads: tuple[Read, ...]
    ts: datetime


CircAction = Literal["checkout", "checkin", "renew", "hold"]


@dataclass(frozen=True, slots=True)
class CircReport:
    item: str
    action: CircAction
    ts: datetime


@dataclass(frozen=True, slots=True)
class Misplaced:
    item: str
    call_number: str
    title: str
    seen_section: str
    expected_sections: tuple[str, ...]
    since: datetime  # first sweep of the confirmed run away from home


@dataclass(frozen=True, slots=True)
class Missing:
    item: str
    call_number: str
    title: str
    last_seen_section: str | None
    last_seen_at: datetime | None
    since: datetime  # when it was declared missing


@dataclass(frozen=True, slots=True)
class AwaitingReshelving:
    item: str
    call_number: str
    title: str
    checked_in_at: datetime
    overdue_since: datetime  # checked_in_at + reshelve_within


@dataclass(frozen=True, slots=True)
class Task:
    """A reshelving task: move ITEM from SECTION to SECTION."""

    item: str
    call_number: str
    title: str
    from_section: str
    to_section: str  # the first of the item's home sections
    floor: int | None  # floor of the zone of the shelf holding `from_section`
    opened_at: datetime
    # Walking order within a floor: (shelf index in the layout, section index on it).
    order: tuple[int, int]


class Finding(StrEnum):
    MISPLACED = "misplaced"
    MISSING = "missing"
    RESHELVING = "reshelving"  # awaiting reshelving too long


@dataclass(frozen=True, slots=True)
class Change:
    """A finding opened or closed: what the alerts service and the staff page follow."""

    finding: Finding
    item: str
    state: Literal["opened", "closed"]
    at: datetime
    detail: Misplaced | Missing | AwaitingReshelving | None = None  # set when opened


SignalKind = Literal["use", "checkout", "checkin", "renew", "hold"]


@dataclass(frozen=True, slots=True)
class Signal:
    """One demand signal: an in-library use (off its shelf and back with no checkout),
    or a circulation action."""

    kind: SignalKind
    item: str
    at: datetime


@dataclass(frozen=True, slots=True)
class DemandRow:
    """One title's demand over the window (`GET .../demand`, ranked by score)."""

    title: str
    call_number: str  # of the first copy
    call_class: str  # LC class letters + integer part, or Dewey hundreds, e.g. "QA76", "500"
    copies: int
    score: float
    signals: dict[str, int]  # counts per SignalKind in the window
    suggest_purchase: bool
    reason: str | None  # why buying is suggested, e.g. "6 holds on 2 copies"


@dataclass(frozen=True, slots=True)
class ClassDemand:
    """One call-number class's demand over the window (see DemandRow.call_class)."""

    call_class: str
    copies: int  # catalog items in the class
    titles: int  # titles of the class with at least one signal in the window
    score: float  # weighted signals in the window (services/inventory/demand.py WEIGHTS)
    per_copy: float  # score / copies: pressure on the class's stock
    signals: dict[str, int]  # counts per SignalKind in the window
