"""The inventory service: shelf and circulation events in; retained item lists and changes out."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import aiomqtt
from pydantic import ValidationError

from stackpulse.kernel.aio import Backoff, raise_if_cancelling
from stackpulse.kernel.bus import BrokerAddress, client
from stackpulse.kernel.catalog import CatalogItem, load_catalog
from stackpulse.kernel.clock import Clock
from stackpulse.kernel.layout import Layout
from stackpulse.kernel.models import CircData, Event, ShelfData, decode_events, format_ts
from stackpulse.kernel.schema import finding_closed_point, to_ns
from stackpulse.kernel.store.base import Point, SeriesStore
from stackpulse.kernel.topics import Kind, state_topic
from stackpulse.services.inventory.demand_feed import RANK_EVERY, SiteDemand
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
    Signal,
    Task,
)

log = logging.getLogger("stackpulse.inventory")

SERVICE = "inventory"
LISTS = ("misplaced", "missing", "reshelving", "tasks")
INVENTORY_MEASUREMENT = "inventory"
CHECKPOINT_VERSION = 1
DEFAULT_CLIENT_ID = "stackpulse-inventory"

# (topic, JSON payload, retained): lists are retained state, changes are events.
Outgoing = tuple[str, bytes, bool]
SignalSink = Callable[[str, Sequence[Signal]], None]


def list_topic(root: str, site: str, name: str) -> str:
    """Retained `{root}/{site}/_state/inventory/list/{misplaced|missing|reshelving|tasks}`."""
    return state_topic(root, site, SERVICE, "list", name)


def change_topic(root: str, site: str, finding: str) -> str:
    """Non-retained `{root}/{site}/_state/inventory/change/{finding}`: one Change each."""
    return state_topic(root, site, SERVICE, "change", finding)


def event_filters(root: str, site: str) -> list[str]:
    """The shelf and circ data events of one site, batched (`_batch`) or one by one."""
    return [f"{root}/{site}/_events/{kind}/+/data" for kind in (Kind.SHELF, Kind.CIRC)]


def checkpoint_name(site: str) -> str:
    return f"{SERVICE}/{site}"


class CheckpointStore(Protocol):
    """Where checkpoints live (kernel.statedb.StateDB); synchronous, called in a thread."""

    def save_checkpoint(self, name: str, body: bytes) -> None: ...

    def load_checkpoint(self, name: str) -> bytes | None: ...


@dataclass(frozen=True, slots=True)
class InventoryServiceSettings:
    root: str = "lib/v1"
    client_id: str = DEFAULT_CLIENT_ID
    logic: InventorySettings = field(default_factory=InventorySettings)
    tick_seconds: float = 1.0  # wall seconds between ticks and coalesced list publishes
    record_every: timedelta = timedelta(minutes=1)  # clock time between stored counts
    checkpoint_every: float = 30.0  # wall seconds between checkpoints, when changed
    checkpoint_timeout: float = 60.0  # one save (1M items compress in a few seconds)
    max_list_items: int = 20_000  # longer lists publish their first items and the total

    def __post_init__(self) -> None:
        for name in ("tick_seconds", "checkpoint_every", "checkpoint_timeout"):
            value = getattr(self, name)
            if not 0 < value < float("inf"):
                raise ValueError(f"{name} must be a positive, finite number of seconds")
        if self.record_every <= timedelta(0) or self.max_list_items < 1:
            raise ValueError("record_every and max_list_items must be positive")

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, root: str = "lib/v1") -> InventoryServiceSettings:
        """Settings from the environment: STACKPULSE_INVENTORY_CLIENT_ID, the MQTT client id
        of the persistent session (one per process when sites are split over processes)."""
        client_id = env.get("STACKPULSE_INVENTORY_CLIENT_ID", "").strip()
        return cls(root=root, client_id=client_id or DEFAULT_CLIENT_ID)


def load_site_catalog(layout: Layout) -> Mapping[str, CatalogItem]:
    """The layout's catalog (bad rows skipped, as `prepare` reported them); {} if none."""
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


def change_body(site: str, change: Change) -> dict[str, Any]:
    """The JSON of one Change event, as published on `change_topic`."""
    return {
        "site": site,
        "finding": change.finding.value,
        "item": change.item,
        "state": change.state,
        "at": format_ts(change.at),
        "detail": None if change.detail is None else _as_json(change.detail),
    }


def inventory_point(site: str, counts: Mapping[str, int], ts: datetime) -> Point:
    """`inventory,site=S misplaced=,missing=,reshelving=,tasks=`: counts for dashboards."""
    return Point(INVENTORY_MEASUREMENT, {"site": site}, dict(counts), to_ns(ts))


class SiteInventory:
    """One site's Inventory with its published form; pure apart from the `now` it is given."""

    def __init__(
        self,
        layout: Layout,
        catalog: Mapping[str, CatalogItem],
        settings: InventoryServiceSettings,
    ) -> None:
        self.layout = layout
        self.site = layout.site
        self.settings = settings
        self.inventory = Inventory(layout, catalog, settings.logic)
        self.demand = SiteDemand(layout, catalog, settings.logic, settings.root)
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

    def change_messages(self, changes: Iterable[Change]) -> list[Outgoing]:
        root = self.settings.root
        return [
            (
                change_topic(root, self.site, c.finding.value),
                json.dumps(change_body(self.site, c)).encode(),
                False,
            )
            for c in changes
        ]

    def lists(self) -> dict[str, list[dict[str, Any]]]:
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

    def list_messages(self, now: datetime) -> list[Outgoing]:
        """The lists that differ from those last published (all of them after `forget`)."""
        if not self.lists_dirty:
            return []
        self.lists_dirty = False
        out: list[Outgoing] = []
        cap = self.settings.max_list_items
        for name, items in self.lists().items():
            key = json.dumps(items[:cap])
            if self._published.get(name) == key and len(items) <= cap:
                continue
            self._published[name] = key
            body = {
                "site": self.site,
                "list": name,
                "updated_at": format_ts(now),
                "total": len(items),
                "items": items[:cap],
            }
            topic = list_topic(self.settings.root, self.site, name)
            out.append((topic, json.dumps(body).encode(), True))
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


def encode_checkpoint(data: dict[str, Any]) -> bytes:
    return zlib.compress(json.dumps(data, separators=(",", ":")).encode(), 6)


def decode_checkpoint(body: bytes) -> object:
    """What `encode_checkpoint` made; ValueError (naming why) for anything else."""
    try:
        return json.loads(zlib.decompress(body))
    except zlib.error as err:
        raise ValueError(f"not zlib data ({err})") from None
    except RecursionError:
        raise ValueError("nested too deeply") from None


class InventoryService:
    """Runs SiteInventory for each layout against the bus, the clock, the store and the DB."""

    QUEUE_SIZE = 10_000
    MAX_INFLIGHT = 100  # QoS 1 publishes awaiting their PUBACK at once
    MAX_PENDING_POINTS = 100_000  # demand points awaiting the store; past it the oldest go

    def __init__(
        self,
        layouts: Iterable[Layout],
        catalogs: Mapping[str, Mapping[str, CatalogItem]],
        store: SeriesStore,
        clock: Clock,
        db: CheckpointStore | None = None,
        settings: InventoryServiceSettings | None = None,
    ) -> None:
        self.settings = settings or InventoryServiceSettings()
        self.sites = {
            lay.site: SiteInventory(lay, catalogs.get(lay.site, {}), self.settings)
            for lay in layouts
        }
        self._store = store
        self._clock = clock
        self._db = db
        self._out: asyncio.Queue[Outgoing] = asyncio.Queue(maxsize=self.QUEUE_SIZE)
        self._sinks: list[SignalSink] = []
        self._points: list[Point] = []  # demand_signal points not yet stored
        self.events_applied = 0
        self.events_refused = 0
        self.signals_dropped = 0  # taken from the logic with no sink to hand them to
        self.points_dropped = 0  # demand points dropped while the store was unreachable
        self.add_signal_sink(self._record_demand)
        self.ready = asyncio.Event()  # subscribed and publishing
        self.restored = asyncio.Event()  # checkpoints looked for (found or not)

    def add_signal_sink(self, sink: SignalSink) -> None:
        """Hand every demand Signal to `sink(site, signals)`, in order, on the event loop.

        Called right after the event that made the signals, so a sink must be quick and
        must not block. The service registers its own first: each site's Demand, whose
        points it stores and whose ranking it publishes.
        """
        self._sinks.append(sink)

    def apply(self, topic: str, raw: bytes) -> list[Outgoing]:
        """Apply one message of events (a batch or one); the change events it makes."""
        try:
            events = decode_events(raw)
        except ValidationError as err:
            self.events_refused += 1
            log.warning("ignoring a malformed event on %s: %s", topic, err.errors()[0]["msg"])
            return []
        out: list[Outgoing] = []
        for ev in events:
            site = self.sites.get(ev.site)
            if site is None or ev.kind not in (Kind.SHELF, Kind.CIRC):
                continue
            self.events_applied += 1
            out += site.change_messages(site.apply(ev))
            self._hand_signals(site)
            self._pending(site.take_closed_points())
        return out

    def _record_demand(self, site: str, signals: Sequence[Signal]) -> None:
        """The service's own sink: the site's Demand counts them; their points await the store."""
        self._pending(self.sites[site].demand.record(signals))

    def _pending(self, points: list[Point], *, first: bool = False) -> None:
        """Queue demand points for the store (`first`: back in front, a failed write)."""
        if first:
            self._points[:0] = points
        else:
            self._points += points
        over = len(self._points) - self.MAX_PENDING_POINTS
        if over > 0:
            del self._points[:over]
            self.points_dropped += over
            log.warning("the store is behind: dropped the %d oldest demand points", over)

    def _hand_signals(self, site: SiteInventory) -> None:
        signals = site.inventory.take_signals()
        if not signals:
            return
        if not self._sinks:
            self.signals_dropped += len(signals)
            return
        for sink in self._sinks:
            try:
                sink(site.site, signals)
            except Exception:
                log.exception("a demand signal sink failed; its signals are lost")

    async def run(self, broker: BrokerAddress) -> None:
        await self._restore()
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._ticker(), name="inventory-tick")
                tg.create_task(self._recorder(), name="inventory-record")
                tg.create_task(self._checkpointer(), name="inventory-checkpoint")
                tg.create_task(self._connection_loop(broker), name="inventory-mqtt")
        finally:
            await self._save_checkpoints(final=True)
            # Stopping: the last ranking, and the demand points still pending.
            now = self._clock.now()
            ranks = [p for s in self.sites.values() for p in s.demand.rank_points(now)]
            await self._write(ranks, within=10.0)  # a store that is down must not hold the stop

    async def _restore(self) -> None:
        """Take up each site's stored checkpoint before any event is subscribed to."""
        db = self._db
        if db is None:
            log.warning("no state database: the inventory starts from nothing on each restart")
        else:
            for site in self.sites.values():
                try:
                    async with asyncio.timeout(self.settings.checkpoint_timeout):
                        body = await asyncio.to_thread(
                            db.load_checkpoint, checkpoint_name(site.site)
                        )
                except Exception as err:
                    # Starting from nothing is safer than not starting: sweeps rebuild it.
                    log.error("could not load the inventory checkpoint of %s: %s", site.site, err)
                    continue
                if body is None:
                    log.info("no inventory checkpoint of %s: starting from nothing", site.site)
                    continue
                try:
                    data = await asyncio.to_thread(decode_checkpoint, body)
                except ValueError as err:  # UnicodeDecodeError and JSON errors included
                    log.warning("ignoring the inventory checkpoint of %s: %s", site.site, err)
                    continue
                site.restore(data)
        self.restored.set()

    async def _connection_loop(self, broker: BrokerAddress) -> None:
        backoff = Backoff()
        while True:
            raise_if_cancelling()
            try:
                # A persistent session: the broker keeps the events (a checkout above all)
                # that come while the service restarts, and hands them over when it is back.
                async with client(
                    broker, identifier=self.settings.client_id, clean_session=False
                ) as mqtt:
                    for site in self.sites.values():
                        for topic_filter in event_filters(self.settings.root, site.site):
                            await mqtt.subscribe(topic_filter, qos=1, timeout=10)
                        site.forget_published()
                    async with asyncio.TaskGroup() as tg:
                        tg.create_task(self._publisher(mqtt), name="inventory-publish")
                        self.ready.set()
                        backoff.reset()
                        async for message in mqtt.messages:
                            raise_if_cancelling()
                            payload = message.payload
                            raw = payload if isinstance(payload, bytes) else str(payload).encode()
                            for out in self.apply(message.topic.value, raw):
                                await self._enqueue(out)
            except* aiomqtt.MqttError as group:
                self.ready.clear()
                log.warning("broker %s: %s; reconnecting", broker, group.exceptions[0])
                await asyncio.sleep(backoff.next())

    async def _enqueue(self, out: Outgoing) -> None:
        async with asyncio.timeout(30):
            await self._out.put(out)

    async def _publisher(self, mqtt: aiomqtt.Client) -> None:
        # Up to MAX_INFLIGHT QoS 1 publishes on the wire at once, handed to the client in
        # queue order, so the newest retained list of a topic is still the one sent last.
        inflight = asyncio.Semaphore(self.MAX_INFLIGHT)

        async def publish(topic: str, body: bytes, retain: bool) -> None:
            try:
                await mqtt.publish(topic, body, qos=1, retain=retain, timeout=30)
            finally:
                inflight.release()

        async with asyncio.TaskGroup() as tg:
            while True:
                raise_if_cancelling()
                topic, body, retain = await self._out.get()
                async with asyncio.timeout(60):
                    await inflight.acquire()
                tg.create_task(publish(topic, body, retain))

    async def _ticker(self) -> None:
        """Tick the logic with the clock, then publish the lists that changed (coalesced)."""
        while True:
            raise_if_cancelling()
            await asyncio.sleep(self.settings.tick_seconds)
            now = self._clock.now()
            for site in self.sites.values():
                for out in site.change_messages(site.tick(now)):
                    await self._enqueue(out)
                self._pending(site.take_closed_points())
                if self.ready.is_set():
                    for out in site.list_messages(now) + site.demand.messages(now):
                        await self._enqueue(out)

    async def _recorder(self) -> None:
        """Store the demand points as they come (each tick), the counts once per
        `record_every` and the demand ranking once per RANK_EVERY of clock time (on their
        boundaries).

        It looks at the clock every tick rather than sleeping a clock interval, so a
        simulated clock that jumps or pauses records when its time says so.
        """
        every = self.settings.record_every
        now = self._clock.now()
        due, rank_due = _next_boundary(now, every), _next_boundary(now, RANK_EVERY)
        while True:
            raise_if_cancelling()
            await asyncio.sleep(self.settings.tick_seconds)
            now = self._clock.now()
            points: list[Point] = []
            if now >= due:
                due = _next_boundary(now, every)
                points += [inventory_point(s.site, s.counts(), now) for s in self.sites.values()]
            if now >= rank_due:
                rank_due = _next_boundary(now, RANK_EVERY)
                points += [p for s in self.sites.values() for p in s.demand.rank_points(now)]
            await self._write(points)

    async def _write(self, points: list[Point], within: float = 60.0) -> None:
        """Write `points` and the pending demand points; a failure keeps the demand points
        for the next try (a missed count or ranking is repaired by the next one)."""
        pending, self._points = self._points, []
        if not points and not pending:
            return
        try:
            async with asyncio.timeout(within):
                await self._store.write(pending + points)
        except Exception as err:
            self._pending(pending, first=True)
            log.warning("could not store the inventory counts and demand: %s", err)

    async def _checkpointer(self) -> None:
        await self.restored.wait()
        while True:
            raise_if_cancelling()
            await asyncio.sleep(self.settings.checkpoint_every)
            await self._save_checkpoints()

    async def _save_checkpoints(self, *, final: bool = False) -> None:
        """Save each site's changed state; a failure is logged and retried next time."""
        db = self._db
        if db is None or not self.restored.is_set():
            return  # never overwrite a checkpoint that was not taken up first
        for site in self.sites.values():
            if not site.checkpoint_dirty:
                continue
            data = site.checkpoint(self._clock.now())
            site.checkpoint_dirty = False
            try:
                async with asyncio.timeout(self.settings.checkpoint_timeout):
                    body = await asyncio.to_thread(encode_checkpoint, data)
                    await asyncio.to_thread(db.save_checkpoint, checkpoint_name(site.site), body)
            except Exception as err:
                site.checkpoint_dirty = True
                log.error("could not save the inventory checkpoint of %s: %s", site.site, err)
                continue
            if final:
                log.info("saved the inventory checkpoint of %s (%d bytes)", site.site, len(body))


__all__ = [
    "LISTS",
    "CheckpointStore",
    "InventoryService",
    "InventoryServiceSettings",
    "SiteInventory",
    "change_body",
    "change_topic",
    "checkpoint_name",
    "decode_checkpoint",
    "encode_checkpoint",
    "event_filters",
    "inventory_point",
    "list_topic",
    "load_site_catalog",
]
