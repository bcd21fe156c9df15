"""The records the inventory shows of its findings, built from the catalog and its state."""

from __future__ import annotations

from stackpulse.kernel.catalog import CatalogItem
from stackpulse.services.inventory.model import AwaitingReshelving, Misplaced, Missing, Task
from stackpulse.services.inventory.state import State, from_epoch
from stackpulse.services.inventory.sweeps import Sections


def misplaced(ci: CatalogItem, s: State, sections: Sections) -> Misplaced:
    item = ci.item
    return Misplaced(
        item,
        ci.call_number,
        ci.title,
        sections.names[s.last_sid[item]],
        ci.home_sections,
        from_epoch(s.away_since.get(item, s.misplaced[item])),
    )


def missing(ci: CatalogItem, s: State, sections: Sections) -> Missing:
    sid, seen = s.last_sid.get(ci.item), s.last_ts.get(ci.item)
    return Missing(
        ci.item,
        ci.call_number,
        ci.title,
        None if sid is None else sections.names[sid],
        None if seen is None else from_epoch(seen),
        from_epoch(s.missing[ci.item]),
    )


def reshelving(ci: CatalogItem, checked_in: float, within: float) -> AwaitingReshelving:
    return AwaitingReshelving(
        ci.item,
        ci.call_number,
        ci.title,
        from_epoch(checked_in),
        from_epoch(checked_in + within),
    )


def task(ci: CatalogItem, s: State, sections: Sections) -> Task:
    """Move the item from where it was seen to the first of its home sections."""
    sid = s.last_sid[ci.item]
    home = sections.first_home(ci.home_sections)
    return Task(
        ci.item,
        ci.call_number,
        ci.title,
        sections.names[sid],
        sections.names[home] if home is not None else ci.home_sections[0],
        sections.floor[sid],
        from_epoch(s.misplaced[ci.item]),
        sections.order[sid],
    )
