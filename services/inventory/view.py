"""Read model of the inventory service's retained lists and demand, with per-client feeds
for SSE."""

from __future__ import annotations

import asyncio
import logging
from types import TracebackType

import aiomqtt
from pydantic import StrictInt

from stackpulse.kernel.bus import follow
from stackpulse.kernel.contracts.base import Contract, ContractError
from stackpulse.kernel.contracts.inventory import (
    DEMAND_CLASSES,
    DEMAND_RANKED,
    LIST,
    LIST_NAMES,
    AnyDoc,
    ClassesDoc,
    DemandClass,
    DemandTitle,
    ListName,
    MisplacedDoc,
    MisplacedItem,
    MissingDoc,
    MissingItem,
    RankedDoc,
    ReshelvingDoc,
    ReshelvingItem,
    ReshelvingTask,
    TasksDoc,
)
from stackpulse.kernel.topics import DEFAULT_ROOT, SITE_RE, parse_system_topic, state_topic

log = logging.getLogger(__name__)

SERVICE = "inventory"
_BY_NAME: dict[str, ListName] = {name: name for name in LIST_NAMES}


class FloorTasks(Contract):
    """The tasks of one floor in walking order (`floor` null: a shelf with no floor)."""

    floor: StrictInt | None
    tasks: tuple[ReshelvingTask, ...]


def group_by_floor(tasks: tuple[ReshelvingTask, ...]) -> list[FloorTasks]:
    """Floors in ascending order (no floor last), each floor's tasks in walking order."""
    floors: dict[int | None, list[ReshelvingTask]] = {}
    for t in tasks:
        floors.setdefault(t.floor, []).append(t)
    order = sorted(floors, key=lambda f: (f is None, f or 0))
    return [
        FloorTasks(floor=f, tasks=tuple(sorted(floors[f], key=lambda t: (t.order, t.item))))
        for f in order
    ]


class ListFeed:
    """The lists of one site as they change, for one consumer.

    It holds at most the newest document of each list: a slow consumer skips the
    versions it had no time for and never makes the feed grow. Iterate it for
    `(name, document)`; use it as an async context manager so it always leaves the view.
    """

    def __init__(self, view: InventoryView, site: str) -> None:
        self._view = view
        self.site = site
        self._pending: dict[ListName, AnyDoc] = {}
        self._wake = asyncio.Event()
        self.closed = False

    def offer(self, name: ListName, doc: AnyDoc) -> None:
        self._pending[name] = doc
        self._wake.set()

    def close(self) -> None:
        self.closed = True
        self._view._unsubscribe(self)
        self._wake.set()

    def __aiter__(self) -> ListFeed:
        return self

    async def __anext__(self) -> tuple[ListName, AnyDoc]:
        while not self._pending:
            if self.closed:
                raise StopAsyncIteration
            self._wake.clear()
            await self._wake.wait()
        if self.closed:
            raise StopAsyncIteration
        name = next(iter(self._pending))
        return name, self._pending.pop(name)

    async def __aenter__(self) -> ListFeed:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class InventoryView:
    """Per site, the newest published document of each list; one event loop only."""

    def __init__(self, root: str = DEFAULT_ROOT) -> None:
        self.root = root
        self._docs: dict[tuple[str, ListName], AnyDoc] = {}
        self._demand: dict[tuple[str, str], RankedDoc | ClassesDoc] = {}
        self._feeds: set[ListFeed] = set()

    def apply(self, topic: str, payload: bytes | str) -> ListName | None:
        """Take one retained list (or demand) message; the list's name if it changed, else
        None (always None for demand, which has no feeds).

        An empty payload clears the list. Anything that does not parse is logged and
        ignored: a bad message must not stop the view.
        """
        raw = payload.encode() if isinstance(payload, str) else payload
        parts = parse_system_topic(topic, self.root, "_state")
        if parts is not None and len(parts) == 4 and parts[1:3] == [SERVICE, "demand"]:
            self._apply_demand(topic, parts[0], parts[3], raw)
            return None
        if parts is None or len(parts) != 4 or parts[1:3] != [SERVICE, "list"]:
            return None  # changes, other services' state: not part of this read model
        site, key = parts[0], _BY_NAME.get(parts[3])
        if key is None or not SITE_RE.fullmatch(site):
            return None
        if not raw:
            self._docs.pop((site, key), None)
            return None
        try:
            doc: AnyDoc = LIST[key].load(raw)
        except ContractError as err:
            log.warning("ignored inventory list on %s: %s", topic[:200], err)
            return None
        if doc.site is not None and doc.site != site:  # the topic's site is the truth
            log.warning("ignored inventory list on %s: it says site %r", topic, doc.site[:40])
            return None
        old = self._docs.get((site, key))
        if old is not None and old.items == doc.items and old.total == doc.total:
            self._docs[(site, key)] = doc
            return None  # republished unchanged (a reconnect): nothing to tell the clients
        self._docs[(site, key)] = doc
        for feed in list(self._feeds):
            if feed.site == site:
                feed.offer(key, doc)
        return key

    def _apply_demand(self, topic: str, site: str, name: str, raw: bytes) -> None:
        """The retained demand ranking or classes of a site (managers' read model)."""
        if name not in ("ranked", "classes") or not SITE_RE.fullmatch(site):
            return
        if not raw:
            self._demand.pop((site, name), None)
            return
        try:
            doc: RankedDoc | ClassesDoc = (
                DEMAND_RANKED.load(raw) if name == "ranked" else DEMAND_CLASSES.load(raw)
            )
        except ContractError as err:
            log.warning("ignored demand on %s: %s", topic[:200], err)
            return
        if doc.site is not None and doc.site != site:
            log.warning("ignored demand on %s: it says site %r", topic, doc.site[:40])
            return
        self._demand[(site, name)] = doc

    def ranked(self, site: str, limit: int | None = None) -> list[DemandTitle]:
        """Titles in most demand, highest score first (empty until the service published)."""
        doc = self._demand.get((site, "ranked"))
        items = list(doc.items) if isinstance(doc, RankedDoc) else []
        return items if limit is None else items[:limit]

    def classes(self, site: str) -> list[DemandClass]:
        doc = self._demand.get((site, "classes"))
        return list(doc.items) if isinstance(doc, ClassesDoc) else []

    def doc(self, site: str, name: ListName) -> AnyDoc | None:
        return self._docs.get((site, name))

    def misplaced(self, site: str) -> list[MisplacedItem]:
        doc = self._docs.get((site, "misplaced"))
        return list(doc.items) if isinstance(doc, MisplacedDoc) else []

    def missing(self, site: str) -> list[MissingItem]:
        doc = self._docs.get((site, "missing"))
        return list(doc.items) if isinstance(doc, MissingDoc) else []

    def reshelving(self, site: str) -> list[ReshelvingItem]:
        doc = self._docs.get((site, "reshelving"))
        return list(doc.items) if isinstance(doc, ReshelvingDoc) else []

    def tasks(self, site: str) -> list[FloorTasks]:
        doc = self._docs.get((site, "tasks"))
        return group_by_floor(doc.items) if isinstance(doc, TasksDoc) else []

    def subscribe(self, site: str) -> ListFeed:
        feed = ListFeed(self, site)
        self._feeds.add(feed)
        return feed

    @property
    def subscribers(self) -> int:
        return len(self._feeds)

    def _unsubscribe(self, feed: ListFeed) -> None:
        self._feeds.discard(feed)


def subscriptions(root: str = DEFAULT_ROOT) -> list[str]:
    """The topic filters of the inventory lists and demand, and nothing of other services."""
    return [
        state_topic(root, "+", SERVICE, "list", "+"),
        state_topic(root, "+", SERVICE, "demand", "+"),
    ]


async def run_view(view: InventoryView, client: aiomqtt.Client, root: str = DEFAULT_ROOT) -> None:
    """Feed `view` from a connected client until the connection ends (then MqttError)."""
    await follow(client, subscriptions(root), view.apply)


__all__ = [
    "LIST_NAMES",
    "DemandClass",
    "DemandTitle",
    "FloorTasks",
    "InventoryView",
    "ListFeed",
    "MisplacedItem",
    "MissingItem",
    "ReshelvingItem",
    "ReshelvingTask",
    "group_by_floor",
    "run_view",
    "subscriptions",
]
