"""The gateway: raw device topics in; events, dead letters and store points out.

Hot path (one paho network thread, no asyncio hop per message): decode, deduplicate,
append the point to the disk spool, publish the normalized event, and only then
acknowledge the device message (paho `manual_ack`). A killed gateway therefore loses
nothing it acknowledged, and the broker redelivers what it did not (persistent session,
fixed client id, QoS 1). Store batching runs apart (gateway.writer) and never delays
events. When the spool reaches its size bound the batch is held unacknowledged, so the
broker stops at its in-flight window and queues for us (deliberate back-pressure) while
the connection stays alive; the metric and log say so.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from stackpulse.gateway.decode import Accepted, SiteIndex, decode
from stackpulse.gateway.metrics import GatewayMetrics
from stackpulse.gateway.mqttio import FastClient
from stackpulse.gateway.settings import GatewaySettings
from stackpulse.gateway.spool import LINES, POINTS, Spool, SpoolLocked
from stackpulse.gateway.writer import SpoolWriter
from stackpulse.kernel.bus import BrokerAddress
from stackpulse.kernel.clock import Clock
from stackpulse.kernel.dedup import Deduplicator
from stackpulse.kernel.models import format_ts
from stackpulse.kernel.schema import dead_letter_point
from stackpulse.kernel.store.base import LineStore, Point, SeriesStore
from stackpulse.kernel.topics import (
    Channel,
    Kind,
    device_subscriptions,
    event_batch_topic,
    event_topic,
)

log = logging.getLogger("stackpulse.gateway")


class _LogLimiter:
    """Log a rejected message once per device and minute, as protocol.md section 4 asks."""

    def __init__(self, period: float = 60.0, max_keys: int = 10_000) -> None:
        self._period = period
        self._max_keys = max_keys
        self._last: dict[tuple[str | None, str | None, str], float] = {}

    def allow(self, key: tuple[str | None, str | None, str]) -> bool:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self._period:
            return False
        if len(self._last) >= self._max_keys:
            self._last.clear()  # bounded: forgetting only means one more log line
        self._last[key] = now
        return True


@dataclass(slots=True)
class _Batch:
    """Accepted data messages that go out together (guarded by Gateway._lock)."""

    points: list[Point] = field(default_factory=list)
    lines: list[str | None] = field(default_factory=list)  # each point's line, if made
    # (site, kind) -> event bodies, and the device messages (mids) they acknowledge
    events: dict[tuple[str, str], list[bytes]] = field(default_factory=dict)
    acks: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    since: float = 0.0  # monotonic time of its first message
    connection: int = 0  # the connection its mids belong to
    # status events (topic, body, mid): published retained once the batch is spooled
    statuses: list[tuple[str, bytes, int | None]] = field(default_factory=list)


class Gateway:
    """Validates, deduplicates and routes device messages; never crashes on input."""

    def __init__(
        self,
        sites: Mapping[str, SiteIndex],
        store: SeriesStore,
        clock: Clock,
        settings: GatewaySettings | None = None,
    ) -> None:
        self.settings = s = settings or GatewaySettings()
        self.metrics = GatewayMetrics()
        self._sites = sites
        self._clock = clock
        self._dedup = Deduplicator()
        self._spool = _open_spool(s, store)
        self._writer = SpoolWriter(
            store, self._spool, self.metrics, flush_interval=s.flush_interval
        )
        self._limiter = _LogLimiter()
        self._stopping = threading.Event()
        self._up = False
        # The batch being gathered; its lock is taken before any of paho's, never after.
        self._lock = threading.Lock()
        self._batch = _Batch()
        # Our publish mid -> the device message mids acknowledged when the broker has it.
        # Its own lock: paho calls on_publish holding its message lock, so this one must
        # never be held while calling into paho.
        self._ack_lock = threading.Lock()
        self._ack_after: dict[int, list[int]] = {}
        self._early: set[int] = set()  # PUBACKs that came before their mid was noted
        self._connection = 0  # counts connections: mids are only valid within one
        self._spool_full_since: float | None = None  # the spool is full since then
        # Dead letters of the current minute per (site, kind, reason), stored per minute.
        self._dead: Counter[tuple[str | None, str | None, str]] = Counter()
        self._dead_minute = datetime.min
        self._received_ms: datetime | None = None
        self._received_text = ""
        self.metrics.spool_bytes = lambda: self._spool.bytes
        self.metrics.spool_segments = lambda: self._spool.sealed_segments
        self.metrics.connected = lambda: self._up
        self.connected = asyncio.Event()

    async def run(self, broker: BrokerAddress) -> None:
        """Run until cancelled; the MQTT side reconnects by itself with backoff."""
        # What is alive now (layouts, models, imports) lives as long as the process: keep
        # it out of the cyclic collector, whose full passes over it paused the hot path
        # for tens of milliseconds.
        gc.freeze()
        loop = asyncio.get_running_loop()
        if self.settings.metrics_port:
            from prometheus_client import start_http_server

            start_http_server(self.settings.metrics_port, registry=self.metrics.registry())
        mqtt = self._make_client(loop)
        done: asyncio.Future[None] = loop.create_future()

        def network() -> None:
            err: BaseException | None = None
            try:
                mqtt.connect_async(
                    broker.host, broker.port, self.settings.keepalive, **self._connect_kw()
                )
                # The loop turns at least every half batch window, and sends a batch
                # that has waited the window (on_tick): no second thread, no lock traffic.
                mqtt.loop_forever(
                    timeout=self.settings.batch_window / 2, retry_first_connection=True
                )
            except BaseException as e:  # reported to the awaiting task
                err = e
            loop.call_soon_threadsafe(_settle, done, err)

        thread = threading.Thread(target=network, name="gateway-mqtt", daemon=True)
        self._stopping.clear()
        thread.start()
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._writer.run(), name="gateway-writer")
                tg.create_task(_watch(done), name="gateway-mqtt")
        finally:
            self._stopping.set()
            with self._lock:
                self._flush_locked(mqtt)
            mqtt.disconnect()
            await asyncio.to_thread(thread.join, 10.0)
            self._spool.close()
            self.connected.clear()

    def _connect_kw(self) -> dict[str, Any]:
        if not self.settings.share_group:
            return {}
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 7 * 24 * 3600  # the session outlives a crash
        props.ReceiveMaximum = 1000
        return {"clean_start": False, "properties": props}

    def _make_client(self, loop: asyncio.AbstractEventLoop) -> FastClient:
        s = self.settings
        v5 = bool(s.share_group)
        mqtt = FastClient(
            CallbackAPIVersion.VERSION2,
            client_id=s.client_id,
            clean_session=None if v5 else False,
            protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
            manual_ack=True,
        )
        # 0: no in-flight cap. With one, paho rescans every queued publish on each PUBACK
        # (most of its cost here); the queue bound below still holds.
        mqtt.max_inflight_messages_set(0)
        mqtt.max_queued_messages_set(s.max_queued_publishes)
        mqtt.reconnect_delay_set(min_delay=1, max_delay=30)
        mqtt.suppress_exceptions = True
        subs = device_subscriptions(s.root)
        if v5:
            subs = [f"$share/{s.share_group}/{t}" for t in subs]

        def on_connect(_c: paho.Client, _u: object, _f: object, rc: Any, _p: object) -> None:
            if rc.is_failure:
                log.warning("broker refused the connection: %s", rc)
                return
            with self._lock:
                # A batch gathered on the last connection goes to the spool before any
                # redelivered message is read (and acknowledged as a duplicate); its
                # mids meant the old connection, so they are not acknowledged. Held for a
                # full spool, it must still be spooled first: a redelivered copy would be
                # acknowledged as a duplicate while its point was only in memory.
                if self._batch.points:
                    self._wait_for_spool_room()
                self._flush_locked(mqtt)
                self._connection += 1
            mqtt.subscribe([(t, 1) for t in subs])
            self._up = True
            log.info("gateway connected as %s", s.client_id)

        def on_disconnect(_c: paho.Client, _u: object, _f: object, rc: Any, _p: object) -> None:
            # Message ids belong to one connection: the broker delivers every message we
            # did not acknowledge again, and paho resends our unacknowledged publishes.
            with self._ack_lock:
                self._ack_after.clear()
                self._early.clear()
            self._up = False
            loop.call_soon_threadsafe(self.connected.clear)
            if not self._stopping.is_set():
                log.warning("lost the broker (%s); reconnecting with backoff", rc)

        def on_fast_message(topic: str, raw: bytes, mid: int | None) -> None:
            try:
                with self._lock:
                    self._handle(mqtt, topic, raw, mid)
            except Exception:
                # Not acknowledged: the broker keeps it and delivers it again after the
                # next reconnect; while this repeats, unacknowledged messages fill the
                # broker's in-flight window and it stops sending (back-pressure).
                log.exception("could not handle a message on %s", topic[:200])

        def on_message(_c: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
            # What paho decodes itself: QoS 2 and MQTT 5 topic aliases.
            raw = msg.payload if isinstance(msg.payload, bytes) else bytes(msg.payload)
            on_fast_message(msg.topic, raw, msg.mid if msg.qos else None)

        def on_publish(_c: paho.Client, _u: object, mid: int, _rc: Any, _p: object) -> None:
            with self._ack_lock:
                device_mids = self._ack_after.pop(mid, None)
                if device_mids is None:
                    self._early.add(mid)
                    return
            _ack(mqtt, device_mids)

        def on_subscribe(_c: paho.Client, _u: object, _mid: int, _rc: Any, _p: object) -> None:
            # Connected means subscribed: from the SUBACK on, the broker routes every
            # device message to us (or keeps it for our session).
            loop.call_soon_threadsafe(self.connected.set)

        mqtt.on_connect = on_connect
        mqtt.on_subscribe = on_subscribe
        mqtt.on_publish = on_publish
        mqtt.on_disconnect = on_disconnect
        mqtt.on_message = on_message
        mqtt.on_fast_message = on_fast_message
        mqtt.on_tick = lambda: self._flush_due(mqtt)
        return mqtt

    def _handle(self, mqtt: FastClient, topic: str, raw: bytes, mid: int | None) -> None:
        """Route one message (batch lock held); acknowledge it when it is safe to."""
        m = self.metrics
        m.received += 1
        now = self._clock.now()
        # Every event carries its receive time as text; at thousands of messages a second
        # many share a millisecond, so format it once per millisecond.
        ms = now.replace(microsecond=now.microsecond - now.microsecond % 1000)
        if ms != self._received_ms:
            self._received_ms, self._received_text = ms, format_ts(ms)
        result = decode(self.settings.root, topic, raw, now, self._sites, self._received_text)
        if result is None:
            m.ignored += 1
            _ack(mqtt, [mid])
            return
        if not isinstance(result, Accepted):
            m.dead_lettered[result.reason] += 1
            self._count_dead_letter(result.site, result.kind, result.reason, now)
            if self._limiter.allow((result.site, result.device, result.reason)):
                log.warning("dead letter (%s) on %s: %s", result.reason, topic[:200], result.detail)
            self._publish(mqtt, result.dead_letter, result.body, [mid], retain=False)
            return
        if result.key is not None and self._dedup.is_duplicate(result.key):
            m.duplicates += 1
            _ack(mqtt, [mid])
            return
        m.lag_seconds = (result.received - result.ts).total_seconds()
        self._add_point(result.point, result.line)
        b = self._batch
        if result.channel is Channel.STATUS:
            # Rare: its point is spooled with the batch at once, and its event goes out on
            # its own, retained, so a service that starts later still learns which devices
            # are offline.
            topic = event_topic(
                self.settings.root, result.site, result.kind, result.device, "status"
            )
            b.statuses.append((topic, result.body, mid))
            self._flush_locked(mqtt)
            return
        where = (result.site, result.kind.value)
        bodies = b.events.get(where)
        if bodies is None:
            bodies = b.events[where] = []
            b.acks[where] = []
        bodies.append(result.body)
        if mid is not None:
            b.acks[where].append(mid)
        if len(b.points) >= self.settings.batch_max:
            self._flush_locked(mqtt)

    def _count_dead_letter(
        self, site: str | None, kind: str | None, reason: str, now: datetime
    ) -> None:
        """Count it for the store's per-minute dead_letters (batch lock held).

        Only known sites and kinds become tags: a topic is the sender's to choose, and
        tag values from it would grow the series without bound.
        """
        self._store_dead_letters(now)
        site = site if site in self._sites else None
        kind = kind if kind in _KINDS else None
        self._dead[(site, kind, reason)] += 1

    def _store_dead_letters(self, now: datetime) -> None:
        minute = now.replace(second=0, microsecond=0)
        if minute == self._dead_minute:
            return
        if self._dead:
            end = self._dead_minute + timedelta(minutes=1)
            for (site, kind, reason), n in self._dead.items():
                self._add_point(dead_letter_point(site, kind, reason, count=n, ts=end))
            self._dead.clear()
        self._dead_minute = minute

    def _add_point(self, point: Point, line: str | None = None) -> None:
        """Into the batch (batch lock held); the first point starts its window."""
        b = self._batch
        if not b.points:
            b.since = time.monotonic()
            b.connection = self._connection
        b.points.append(point)
        b.lines.append(line)

    def _flush_due(self, mqtt: FastClient) -> None:
        """Send a batch that has waited `batch_window`, even if no more messages come."""
        if self._dead:
            with self._lock:
                self._store_dead_letters(self._clock.now())
        b = self._batch
        if b.points and time.monotonic() - b.since >= self.settings.batch_window:
            with self._lock:
                self._flush_locked(mqtt)

    def _flush_locked(self, mqtt: FastClient) -> None:
        """Spool the batch's points (one write), then publish its events, one per kind.

        With the spool full the batch is held (the flusher retries): the network thread
        keeps serving the connection (keepalive) while the broker, getting no
        acknowledgements, stops at its in-flight window and queues the rest.
        """
        b = self._batch
        if not b.points:
            return
        if self._spool.full:
            self._note_spool_full()
            if len(b.points) < self.settings.held_max or self._stopping.is_set():
                return
            self._wait_for_spool_room()  # QoS 0 floods: stop reading until there is room
        self._spool_full_since = None
        refused = self._spool.refused
        self._spool.append_many(b.points, b.lines)  # raises: nothing acknowledged, redelivered
        self.metrics.points_rejected += self._spool.refused - refused
        self._batch = _Batch()
        self.metrics.accepted += len(b.points)
        root = self.settings.root
        stale = b.connection != self._connection
        for (site, kind), bodies in b.events.items():
            body = b"[" + b",".join(bodies) + b"]"
            self._publish(
                mqtt,
                event_batch_topic(root, site, kind),
                body,
                [] if stale else b.acks[(site, kind)],
                retain=False,
                events=len(bodies),
            )
        for topic, body, mid in b.statuses:
            self._publish(mqtt, topic, body, [] if stale else [mid], retain=True)

    def _note_spool_full(self) -> None:
        if self._spool_full_since is not None:
            return
        self._spool_full_since = time.monotonic()
        self.metrics.spool_full += 1
        log.error(
            "spool full (%d bytes, bound %d): holding the current batch unacknowledged, so "
            "the broker queues for us until the store catches up",
            self._spool.bytes,
            self._spool.max_bytes,
        )

    def _wait_for_spool_room(self) -> None:
        while self._spool.full and not self._stopping.is_set():
            time.sleep(0.1)

    def _publish(
        self,
        mqtt: FastClient,
        topic: str,
        body: bytes,
        device_mids: list[int | None] | list[int],
        *,
        retain: bool,
        events: int = 1,
    ) -> None:
        """Publish at QoS 1; acknowledge `device_mids` once the broker has it."""
        mids = [m for m in device_mids if m is not None]
        info = mqtt.publish(topic, body, qos=1, retain=retain)
        if info.rc == paho.MQTT_ERR_QUEUE_SIZE:
            # paho's bounded queue is full (the broker is gone for long): the points are
            # spooled; the events are dropped, and counted.
            self.metrics.events_dropped += events
            _ack(mqtt, mids)
            return
        self.metrics.events_published += events
        with self._ack_lock:
            if info.mid not in self._early:
                self._ack_after[info.mid] = mids
                return
            self._early.discard(info.mid)
        _ack(mqtt, mids)


_KINDS = frozenset(k.value for k in Kind)


def _ack(mqtt: FastClient, mids: Sequence[int | None]) -> None:
    """Acknowledge device messages (QoS 1; None stands for a QoS 0 one: nothing to do)."""
    mqtt.ack_many([mid for mid in mids if mid is not None])


def _open_spool(s: GatewaySettings, store: object) -> Spool:
    # InfluxDB takes line protocol: spooled as such, a segment is sent as it lies on disk.
    codec = LINES if isinstance(store, LineStore) else POINTS
    try:
        return Spool(
            s.spool_path(store),
            segment_points=s.batch_size,
            max_bytes=s.max_spool_bytes,
            codec=codec,
        )
    except SpoolLocked:
        if s.spool_dir:
            raise  # an explicit spool directory is never shared: say so and stop
        # The default directory (per client id) is taken: another gateway on this machine
        # runs with the same client id. Spool privately rather than share; nothing that
        # lands here is lost while this process runs, but a crash leaves it unreplayed.
        private = tempfile.mkdtemp(prefix="stackpulse-spool-")
        log.warning(
            "spool %s is in use; using %s (set a spool directory)", s.spool_path(store), private
        )
        return Spool(private, segment_points=s.batch_size, max_bytes=s.max_spool_bytes, codec=codec)


def _settle(fut: asyncio.Future[None], err: BaseException | None) -> None:
    if fut.done():
        return
    if err is None:
        fut.set_result(None)
    else:
        fut.set_exception(err)


async def _watch(done: asyncio.Future[None]) -> None:
    await asyncio.shield(done)
    raise RuntimeError("the gateway's MQTT thread ended")
