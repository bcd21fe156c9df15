"""The alerts service's loop: derived signals and device health in; alerts and notices out.

The runner (`kernel.runner`) reads the bus over one persistent session and catches up
device events from the store; the rules (`site.py`, `logic.py`) turn what it hands over
into observations; a bounded queue takes them, one database round at a time, to the
lifecycle (`lifecycle.py`: alerts and transitions in the state database); the sender
(`notify.py`) delivers transitions from the durable outbox.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import httpx

from stackpulse.kernel.aio import Backoff, raise_if_cancelling
from stackpulse.kernel.clock import Clock
from stackpulse.kernel.contracts.events import Event
from stackpulse.kernel.layout import Layout
from stackpulse.kernel.schema import alert_point
from stackpulse.kernel.service import Bus, Message, ServiceBase
from stackpulse.kernel.statedb import StateDB
from stackpulse.kernel.store.base import Point, SeriesStore
from stackpulse.kernel.topics import Kind
from stackpulse.services.alerts.lifecycle import AlertBook
from stackpulse.services.alerts.model import AlertState, Observation, Transition
from stackpulse.services.alerts.notify import NotifySettings, Sender
from stackpulse.services.alerts.settings import AlertServiceSettings, AlertSettings
from stackpulse.services.alerts.site import SiteAlerts, device_inputs, state_filters, state_inputs
from stackpulse.services.alerts.store import AlertStore

log = logging.getLogger("stackpulse.alerts")

MAX_BATCH = 500  # observations handed to the lifecycle per database round
MAX_PENDING_POINTS = 10_000  # alert_transition points waiting for the store

Work = Observation | datetime  # an observation to apply, or a lifecycle tick at `now`


class AlertService(ServiceBase):
    """Rules, lifecycle and notifications for the sites of `layouts`, on one state database."""

    name = "alerts"
    kinds = frozenset(Kind)
    status = True

    def __init__(
        self,
        layouts: Iterable[Layout],
        clock: Clock,
        db: StateDB,
        settings: AlertServiceSettings,
        rules: AlertSettings,
        *,
        root: str,
        notify: NotifySettings | None = None,
        series: SeriesStore | None = None,
    ) -> None:
        self.settings = settings
        self.rules = rules
        self.root = root
        self.by_site = {lay.site: SiteAlerts(lay, rules) for lay in layouts}
        self.sites = tuple(self.by_site)
        self._clock = clock
        store = AlertStore(db)
        self.book = AlertBook(store, rules)
        self.outbox = store.outbox
        self.sender = Sender(
            self.outbox,
            root=root,
            clock=clock,
            alerts=self.book,
            settings=notify or NotifySettings(),
        )
        self._work: asyncio.Queue[Work] = asyncio.Queue(maxsize=settings.work_queue)
        self._applying = False  # a batch is with the database
        self._tick_waiting = False
        self.inputs_applied = 0
        self.transitions = 0
        # Every transition as a point for the Alerts dashboard (time to ack and clear).
        self._store = series
        self._points: list[Point] = []
        self._points_lock = threading.Lock()
        self.points_dropped = 0
        self.backlog = 0  # outbox entries not yet delivered, as last counted
        if series is not None:
            self.sender.on_transitions = self._record

    # -- the runner's hooks -------------------------------------------------------------

    def filters(self, root: str) -> list[str]:
        return [f for site in self.sites for f in state_filters(root, site)]

    async def on_events(
        self, events: Sequence[Event], now: datetime, bus: Bus, *, live: bool
    ) -> None:
        inputs = device_inputs(events)
        self.inputs_applied += len(inputs)
        for obs in self.by_site[events[0].site].observe(inputs):
            await self._put(obs)

    async def on_message(self, topic: str, payload: bytes, now: datetime, bus: Bus) -> None:
        site, inputs = state_inputs(self.root, topic, payload, now)
        if site not in self.by_site:
            return
        self.inputs_applied += len(inputs)
        for obs in self.by_site[site].observe(inputs):
            await self._put(obs)

    def checkpoint(self, site: str, now: datetime) -> dict[str, Any] | None:
        # Only a state whose every observation reached the database is saved: otherwise
        # the rules would wake up believing they had reported it.
        if not self._work.empty() or self._applying:
            return None
        return self.by_site[site].checkpoint()

    def restore(self, site: str, state: Any | None) -> None:
        if state is None:
            return
        try:
            self.by_site[site].restore(state)
        except ValueError as err:
            log.warning("ignoring the alert rules' checkpoint of %s: %s", site, err)

    # -- its own loops ------------------------------------------------------------------

    async def run(self, bus: Bus) -> None:
        async def publish(topic: str, body: bytes, retain: bool) -> None:
            await bus.publish(Message(topic, body, retain))

        self.sender.connect(publish)
        async with httpx.AsyncClient(follow_redirects=False) as http, asyncio.TaskGroup() as tg:
            tg.create_task(self._ticker(), name="alerts-tick")
            tg.create_task(self._lifecycle(), name="alerts-lifecycle")
            tg.create_task(self.sender.run(http), name="alerts-notify")
            tg.create_task(self._wake_on_connect(bus), name="alerts-wake")
            tg.create_task(self._count_backlog(), name="alerts-backlog")
            if self._store is not None:
                tg.create_task(self._recorder(self._store), name="alerts-record")

    async def _wake_on_connect(self, bus: Bus) -> None:
        """What waited for the broker goes as soon as it is back."""
        while True:
            raise_if_cancelling()
            await bus.connected.wait()
            self.sender.wake.set()
            while bus.connected.is_set():
                await asyncio.sleep(1)

    async def _count_backlog(self) -> None:
        """The outbox backlog for /metrics, counted off the event loop every few seconds."""
        while True:
            raise_if_cancelling()
            try:
                async with asyncio.timeout(self.settings.db_timeout.total_seconds()):
                    self.backlog = await asyncio.to_thread(self.outbox.pending)
            except Exception as err:  # the database is away; the lifecycle says so too
                log.debug("could not count the outbox: %s", err)
            await asyncio.sleep(5)

    async def _put(self, work: Work) -> None:
        # Back-pressure: a slow database slows the reading of the bus (and the broker
        # keeps the rest of the session), never drops an observation.
        while True:
            try:
                async with asyncio.timeout(60):
                    await self._work.put(work)
                    return
            except TimeoutError:
                log.warning("the alert lifecycle is %d observations behind", self._work.qsize())

    async def _ticker(self) -> None:
        while True:
            raise_if_cancelling()
            await asyncio.sleep(self.settings.tick.total_seconds())
            now = self._clock.now()
            for site in self.by_site.values():
                for obs in site.tick(now):
                    await self._put(obs)
            if not self._tick_waiting:  # one lifecycle tick in the queue is enough
                self._tick_waiting = True
                await self._put(now)

    async def _lifecycle(self) -> None:
        """The lifecycle, one database round at a time; a failing round is retried with
        backoff."""
        backoff = Backoff(first=1.0, cap=30.0)
        while True:
            raise_if_cancelling()
            pending = [await self._work.get()]
            while len(pending) < MAX_BATCH and not self._work.empty():
                pending.append(self._work.get_nowait())
            self._applying = True
            try:
                while pending:
                    try:
                        async with asyncio.timeout(self.settings.db_timeout.total_seconds()):
                            made = await asyncio.to_thread(self._apply, pending)
                    except Exception as err:  # the database is away: keep what is left, retry
                        log.error("alert lifecycle: %s; %d waiting", err, len(pending))
                        await asyncio.sleep(backoff.next())
                        continue
                    backoff.reset()
                    if made:
                        self.transitions += made
                        self.sender.wake.set()
            finally:
                self._applying = False

    def _apply(self, pending: list[Work]) -> int:
        """In a thread: apply `pending` in order, removing each once it is done."""
        made = 0
        while pending:
            work = pending[0]
            if isinstance(work, Observation):
                made += len(self.book.apply(work))
            else:
                self._tick_waiting = False
                made += len(self.book.tick(self._clock.now()))
            pending.pop(0)
        return made

    # -- the record of transitions, for the dashboards

    def _record(self, seen: list[tuple[Transition, int | None]]) -> None:
        """In the sender's thread: one alert_transition point per transition."""
        active = (AlertState.ACTIVE_UNACK, AlertState.ACTIVE_ACK)
        still_open: dict[tuple[str, str, str], int] = {}
        points = []
        for t, cursor in seen:
            a = t.alert
            key = (a.site, a.rule, a.severity.value)
            if key not in still_open:
                found = self.book.list(site=a.site, rule=a.rule, severity=a.severity, states=active)
                still_open[key] = len(found)
            since_open = (t.at - a.opened_at).total_seconds()
            points.append(
                alert_point(
                    a.site,
                    a.rule,
                    a.severity.value,
                    t.kind,
                    open_count=still_open[key],
                    ts=t.at,
                    seq=cursor or 0,  # a replayed transition overwrites itself
                    seconds_to_ack=since_open if t.kind == "acked" else None,
                    seconds_to_clear=since_open if t.kind == "cleared" else None,
                )
            )
        self._keep(points)

    def _keep(self, points: list[Point], *, first: bool = False) -> None:
        with self._points_lock:
            self._points = points + self._points if first else self._points + points
            over = len(self._points) - MAX_PENDING_POINTS
            if over > 0:
                del self._points[:over]
                self.points_dropped += over
                log.warning("the store is behind: dropped the %d oldest alert points", over)

    async def _recorder(self, store: SeriesStore) -> None:
        while True:
            raise_if_cancelling()
            await asyncio.sleep(self.settings.record_every.total_seconds())
            with self._points_lock:
                points, self._points = self._points, []
            if not points:
                continue
            try:
                async with asyncio.timeout(30):
                    await store.write(points)
            except Exception as err:  # kept for the next round
                log.warning("could not store %d alert transitions: %s", len(points), err)
                self._keep(points, first=True)


__all__ = ["AlertService"]
