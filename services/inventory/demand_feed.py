"""One site's demand as the inventory service keeps it: fed by signals, stored, published.

The service hands every demand Signal to `SiteDemand.record`, which counts it and returns
its `demand_signal` point for the store; `rank_points` is the `demand_rank` snapshot the
service stores every `RANK_EVERY` of clock time and on stop; `messages` is the retained
ranking and class list the API serves (`{root}/{site}/_state/inventory/demand/...`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from stackpulse.kernel.catalog import CatalogItem
from stackpulse.kernel.contracts.inventory import (
    DEMAND_CLASSES,
    DEMAND_LISTS,
    DEMAND_RANKED,
    ClassesDoc,
    DemandList,
    RankedDoc,
)
from stackpulse.kernel.layout import Layout
from stackpulse.kernel.service import Message
from stackpulse.kernel.store.base import Point
from stackpulse.services.inventory.demand import Demand, rank_points
from stackpulse.services.inventory.model import ClassDemand, DemandRow, InventorySettings, Signal

log = logging.getLogger("stackpulse.inventory")

SERVICE = "inventory"
RANK_SLOTS = 20  # demand_rank points per snapshot: the dashboard's top titles
PUBLISHED_ROWS = 100  # titles in the retained ranking: GET .../demand?limit= up to this
RANK_EVERY = timedelta(minutes=10)  # clock time between demand_rank snapshots


def demand_topic(root: str, site: str, name: DemandList) -> str:
    """Retained `{root}/{site}/_state/inventory/demand/{ranked|classes}`."""
    return (DEMAND_RANKED if name == "ranked" else DEMAND_CLASSES).topic(root, site, name)


def row_body(r: DemandRow) -> dict[str, Any]:
    return {
        "title": r.title,
        "call_number": r.call_number,
        "call_class": r.call_class,
        "copies": r.copies,
        "score": r.score,
        "signals": r.signals,
        "suggest_purchase": r.suggest_purchase,
        "reason": r.reason,
    }


def class_body(c: ClassDemand) -> dict[str, Any]:
    return {
        "call_class": c.call_class,
        "copies": c.copies,
        "titles": c.titles,
        "score": c.score,
        "per_copy": c.per_copy,
        "signals": c.signals,
    }


class SiteDemand:
    """A site's `Demand` with its store points and published form; `now` is an argument."""

    def __init__(
        self,
        layout: Layout,
        catalog: Mapping[str, CatalogItem],
        settings: InventorySettings,
        root: str,
    ) -> None:
        self.site = layout.site
        self.root = root
        self.demand = Demand(catalog, settings, layout.collections)
        self.dirty = True  # publish the ranking again at the next chance
        self._refresh: datetime | None = None  # publish by then even unchanged: the window slides

    def record(self, signals: Iterable[Signal]) -> list[Point]:
        """Count the signals; their `demand_signal` points to store."""
        points = self.demand.record(self.site, signals)
        self.dirty = True
        return points

    def rank_points(self, now: datetime) -> list[Point]:
        """The `demand_rank` snapshot at `now`: RANK_SLOTS points, empty slots included."""
        return rank_points(self.site, self.demand.ranked(now, RANK_SLOTS), now, RANK_SLOTS)

    def messages(self, now: datetime) -> list[Message]:
        """The retained ranking and classes, when new signals came or the window moved on."""
        if not self.dirty and self._refresh is not None and now < self._refresh:
            return []
        self.dirty, self._refresh = False, now + RANK_EVERY
        ranked = RankedDoc.model_validate(
            {
                "site": self.site,
                "updated_at": now,
                "items": [row_body(r) for r in self.demand.ranked(now, PUBLISHED_ROWS)],
            }
        )
        classes = ClassesDoc.model_validate(
            {
                "site": self.site,
                "updated_at": now,
                "items": [class_body(c) for c in self.demand.classes(now)],
            }
        )
        return [
            Message(demand_topic(self.root, self.site, "ranked"), ranked.dump(), retain=True),
            Message(demand_topic(self.root, self.site, "classes"), classes.dump(), retain=True),
        ]

    def checkpoint(self) -> dict[str, Any]:
        return self.demand.checkpoint()

    def restore(self, data: object) -> None:
        """Take up a `checkpoint`; a bad one is logged and demand starts from nothing."""
        self.dirty = True
        if not isinstance(data, dict):
            log.warning("ignoring the demand checkpoint of %s: not a JSON object", self.site)
            return
        try:
            self.demand.restore(data)
        except ValueError as err:
            log.warning("ignoring the demand checkpoint of %s: %s", self.site, err)


__all__ = [
    "DEMAND_LISTS",
    "PUBLISHED_ROWS",
    "RANK_EVERY",
    "RANK_SLOTS",
    "DemandList",
    "SiteDemand",
    "class_body",
    "demand_topic",
    "row_body",
]
