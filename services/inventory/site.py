"""One site's inventory and its published form: pure apart from the `now` it is given."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from stackpulse.kernel.catalog import CatalogItem, load_catalog
from stackpulse.kernel.contracts.events import Event
from stackpulse.kernel.contracts.inventory import CHANGE, DOC_MODELS, LIST, FindingChange, ListName
from stackpulse.kernel.layout import Layout
from stackpulse.kernel.models import CircData, ShelfData, format_ts
from stackpulse.kernel.schema import INVENTORY, finding_closed_point, to_ns
from stackpulse.kernel.service import Message
from stackpulse.kernel.store.base import Point
from stackpulse.services.inventory.demand_feed import SiteDemand
from stackpulse.services.inventory.logic import CheckpointError, Inventory
from stackpulse.services.inventory.model import (
    AwaitingReshelving,
    Change,
    CircReport,
    InventorySettings,
    Misplaced,
    Missing,
    Read,
    SectionReport,
    Task,
)

log = logging.getLogger("stackpulse.inventory")

LISTS: tuple[ListName, ...] = ("misplaced", "missing", "reshelving", "tasks")
INVENTORY_MEASUREMENT = INVENTORY
CHECKPOINT_VERSION = 1


def list_topic(root: str, site: str, name: ListName) -> str:
    """Retained `{root}/{site}/_state/inventory/list/{misplaced|missing|reshelving|tasks}`."""
    return LIST[name].topic(root, site, name)


def change_topic(root: str, site: str, finding: str) -> str:
    """Non-retained `{root}/{site}/_state/inventory/change/{finding}`: one Change each."""
    return CHANGE.topic(root, site, finding)


def load_site_catalog(layout: Layout) -> Mapping[str, CatalogItem]:
    """The layout's catalog (bad rows skipped, as the start reported them); {} if none."""
    return load_catalog(layout.catalog, layout) if layout.catalog else {}


def _as_json(entry: Misplaced | Missing | AwaitingReshelving | Task) -> dict[str, Any]:
    """A finding or task as published: its fields, times RFC 3339 UTC, tuples as lists."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(entry):
        value = getattr(entry, f.name)
        if isinstance(value, datetime):
            value = format_ts(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def change_body(site: str, change: Change) -> FindingChange:
    """One Change as published on `change_topic` (kernel.contracts.inventory)."""
    return FindingChange.model_validate(
        {
            "site": site,
            "finding": change.finding.value,
            "item": change.item,
            "state": change.state,
            "at": change.at,
            "detail": None if change.detail is None else _as_json(change.detail),
        }
    )


def inventory_point(site: str, counts: Mapping[str, int], ts: datetime) -> Point:
    """`inventory,site=S misplaced=,missing=,reshelving=,tasks=`: counts for dashboards."""
    return Point(INVENTORY_MEASUREMENT, {"site": site}, dict(counts), to_ns(ts))


class SiteInventory:
    """One site's Inventory with its published form; pure apart from the `now` it is given."""

    def __init__(
        self,
        layout: Layout,
        catalog: Mapping[str, CatalogItem],
        settings: InventorySettings,
        *,
        root: str = "lib/v1",
        max_list_items: int = 20_000,
    ) -> None:
        self.layout = layout
        self.site = layout.site
        self.root = root
        self.max_list_items = max_list_items
        self.inventory = Inventory(layout, catalog, settings)
        self.demand = SiteDemand(layout, catalog, settings, root)
        self.lists_dirty = True  # the lists may differ from what was last published
        self.checkpoint_dirty = False  # the state changed since the last checkpoint
        self._published: dict[str, str] = {}  # list name -> the items last published
        # Open findings' start (the detail's since / overdue_since), for time-to-fix points.
        self._opened: dict[tuple[str, str], datetime] = {}
        self._closed: list[Point] = []
        self._closed_seq = 0

    def _follow(self, changes: list[Change]) -> list[Change]:
        """Note when findings open; a closed one becomes a finding_closed point."""
        for c in changes:
            key = (c.finding.value, c.item)
            if c.state == "opened":
                self._opened[key] = c.at if c.detail is None else _began(c.detail)
            elif (opened := self._opened.pop(key, None)) is not None:
                self._closed_seq += 1
                self._closed.append(
                    finding_closed_point(
                        self.site,
                        c.finding.value,
                        opened_at=opened,
                        closed_at=c.at,
                        seq=self._closed_seq,
                    )
                )
        return changes

    def take_closed_points(self) -> list[Point]:
        out, self._closed = self._closed, []
        return out

    def apply(self, ev: Event) -> list[Change]:
        """Feed one event (shelf or circ data); the findings it opened or closed."""
        try:
            data = ev.data()
        except ValidationError as err:
            log.warning("ignoring a %s event of %s: %s", ev.kind, ev.device, err.errors()[0]["msg"])
            return []
        if isinstance(data, ShelfData):
            reads = tuple(Read(r.id, r.rssi) for r in data.items)
            report = SectionReport(
                ev.device, data.boot, data.sweep, data.section, data.part, data.parts, reads, ev.ts
            )
            changes = self.inventory.apply_shelf(report)
        elif isinstance(data, CircData):
            changes = self.inventory.apply_circ(CircReport(data.item, data.action, ev.ts))
        else:
            return []
        self.checkpoint_dirty = True
        self.lists_dirty = self.lists_dirty or bool(changes)
        return self._follow(changes)

    def tick(self, now: datetime) -> list[Change]:
        changes = self.inventory.tick(now)
        if changes:
            self.checkpoint_dirty = self.lists_dirty = True
        return self._follow(changes)

    def change_messages(self, changes: Iterable[Change]) -> list[Message]:
        return [
            Message(
                change_topic(self.root, self.site, c.finding.value),
                change_body(self.site, c).dump(),
            )
            for c in changes
        ]

    def lists(self) -> dict[ListName, list[dict[str, Any]]]:
        """The four lists in their published order and form."""
        misplaced = sorted(self.inventory.misplaced(), key=lambda m: (m.since, m.item))
        missing = sorted(self.inventory.missing(), key=lambda m: (m.since, m.item))
        reshelving = sorted(
            self.inventory.awaiting_reshelving(), key=lambda a: (a.checked_in_at, a.item)
        )
        tasks = sorted(self.inventory.tasks(), key=_walking_order)
        return {
            "misplaced": [_as_json(m) for m in misplaced],
            "missing": [_as_json(m) for m in missing],
            "reshelving": [_as_json(a) for a in reshelving],
            "tasks": [_as_json(t) for t in tasks],
        }

    def list_messages(self, now: datetime) -> list[Message]:
        """The lists that differ from those last published (all of them after `forget`)."""
        if not self.lists_dirty:
            return []
        self.lists_dirty = False
        out: list[Message] = []
        cap = self.max_list_items
        for name, items in self.lists().items():
            kept = items[:cap]
            body = DOC_MODELS[name].model_validate(
                {"site": self.site, "updated_at": now, "total": len(items), "items": kept}
            )
            key = body.model_dump_json(include={"items"})
            if self._published.get(name) == key and len(items) <= cap:
                continue
            self._published[name] = key
            out.append(Message(list_topic(self.root, self.site, name), body.dump(), retain=True))
        return out

    def forget_published(self) -> None:
        """Publish every list again (a broker that lost its retained messages)."""
        self._published.clear()
        self.lists_dirty = self.demand.dirty = True

    def counts(self) -> dict[str, int]:
        inv = self.inventory
        return {
            "misplaced": len(inv.misplaced()),
            "missing": len(inv.missing()),
            "reshelving": len(inv.awaiting_reshelving()),
            "tasks": len(inv.tasks()),
        }

    def checkpoint(self, now: datetime) -> dict[str, Any]:
        return {
            "version": CHECKPOINT_VERSION,
            "site": self.site,
            "at": format_ts(now),
            "inventory": self.inventory.checkpoint(),
            "demand": self.demand.checkpoint(),
        }

    def restore(self, data: object) -> bool:
        """Take up a `checkpoint` (decoded); False and a log line if it is unusable."""
        try:
            if not isinstance(data, dict):
                raise CheckpointError("not a JSON object")
            if data.get("version") != CHECKPOINT_VERSION:
                raise CheckpointError(f"version {str(data.get('version'))[:20]} is not supported")
            if data.get("site") != self.site:
                raise CheckpointError(f"it is of site {str(data.get('site'))[:40]!r}")
            self.inventory.restore(data.get("inventory"))
        except ValueError as err:  # CheckpointError is one
            log.warning("ignoring the inventory checkpoint of %s: %s", self.site, err)
            return False
        if "demand" in data:  # checkpoints from before demand was kept have none
            self.demand.restore(data["demand"])
        inv = self.inventory
        self._opened = {}
        for finding, found in (
            ("misplaced", inv.misplaced()),
            ("missing", inv.missing()),
            ("reshelving", inv.awaiting_reshelving()),
        ):
            for f in found:
                self._opened[(finding, f.item)] = _began(f)
        self.lists_dirty = True
        log.info("restored the inventory of %s from %s", self.site, str(data.get("at"))[:40])
        return True


def _began(finding: Misplaced | Missing | AwaitingReshelving) -> datetime:
    """When a finding began, as its detail tells (reshelving: when it became overdue)."""
    if isinstance(finding, AwaitingReshelving):
        return finding.overdue_since
    return finding.since


def _walking_order(t: Task) -> tuple[bool, int, tuple[int, int], str]:
    return (t.floor is None, t.floor or 0, t.order, t.item)


def _next_boundary(now: datetime, every: timedelta) -> datetime:
    """The first multiple of `every` since the epoch after `now`."""
    epoch = datetime(1970, 1, 1, tzinfo=now.tzinfo)
    return epoch + every * ((now - epoch) // every + 1)


__all__ = [
    "INVENTORY_MEASUREMENT",
    "LISTS",
    "SiteInventory",
    "change_body",
    "change_topic",
    "inventory_point",
    "list_topic",
    "load_site_catalog",
]
