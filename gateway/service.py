"""The gateway loop: raw device topics in; events, dead letters and store points out."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass

import aiomqtt

from gateway.decode import Accepted, SiteIndex, decode
from gateway.dedup import Deduplicator
from gateway.metrics import GatewayMetrics
from gateway.writer import BatchWriter
from kernel.aio import raise_if_cancelling
from kernel.bus import BrokerAddress, client
from kernel.clock import Clock
from kernel.store.base import SeriesStore
from kernel.topics import Channel, device_subscriptions, event_topic

log = logging.getLogger("stackpulse.gateway")


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    root: str = "lib/v1"
    client_id: str = "stackpulse-gateway"
    batch_size: int = 5000
    flush_interval: float = 0.5
    max_queued_points: int = 50_000
    max_inflight_publishes: int = 1000


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


class Gateway:
    """Validates, deduplicates and routes device messages; never crashes on input."""

    def __init__(
        self,
        sites: Mapping[str, SiteIndex],
        store: SeriesStore,
        clock: Clock,
        settings: GatewaySettings | None = None,
    ) -> None:
        self.settings = settings or GatewaySettings()
        self.metrics = GatewayMetrics()
        self._sites = sites
        self._clock = clock
        self._dedup = Deduplicator()
        self._writer = BatchWriter(
            store,
            self.metrics,
            batch_size=self.settings.batch_size,
            flush_interval=self.settings.flush_interval,
            max_queued=self.settings.max_queued_points,
        )
        self._limiter = _LogLimiter()
        self._inflight = asyncio.Semaphore(self.settings.max_inflight_publishes)
        self._pending: set[asyncio.Task[None]] = set()
        self.connected = asyncio.Event()

    async def run(self, broker: BrokerAddress) -> None:
        """Run until cancelled: reconnect with jittered backoff, keep writing meanwhile."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._writer.run(), name="gateway-writer")
            tg.create_task(self._connection_loop(broker), name="gateway-mqtt")

    async def _connection_loop(self, broker: BrokerAddress) -> None:
        delay = 0.5
        while True:
            raise_if_cancelling()
            try:
                async with client(
                    broker,
                    identifier=self.settings.client_id,
                    clean_session=False,
                    max_inflight=self.settings.max_inflight_publishes,
                ) as mqtt:
                    for sub in device_subscriptions(self.settings.root):
                        await mqtt.subscribe(sub, qos=1, timeout=10)
                    self.connected.set()
                    log.info("gateway connected to %s", broker)
                    delay = 0.5
                    try:
                        async for message in mqtt.messages:
                            raise_if_cancelling()
                            await self.handle(mqtt, message.topic.value, _payload_bytes(message))
                    finally:
                        await self._abandon_pending()
            except aiomqtt.MqttError as err:
                self.connected.clear()
                log.warning("broker %s: %s; reconnecting in ~%.1fs", broker, err, delay)
                await asyncio.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, 30.0)

    async def handle(self, mqtt: aiomqtt.Client, topic: str, raw: bytes) -> None:
        self.metrics.received += 1
        result = decode(self.settings.root, topic, raw, self._clock.now(), self._sites)
        if result is None:
            self.metrics.ignored += 1
            return
        if not isinstance(result, Accepted):
            self.metrics.dead_lettered[result.reason] += 1
            if self._limiter.allow((result.site, result.device, result.reason)):
                log.warning("dead letter (%s) on %s: %s", result.reason, topic[:200], result.detail)
            await self._publish(mqtt, result.dead_letter, result.body, retain=False)
            return
        if result.key is not None and self._dedup.is_duplicate(result.key):
            self.metrics.duplicates += 1
            return
        self.metrics.accepted += 1
        ev = result.event
        await self._writer.put(result.point)
        await self._publish(
            mqtt,
            event_topic(self.settings.root, ev.site, ev.kind, ev.device, ev.channel),
            ev.model_dump_json().encode(),
            # The last status of each device stays retained so a service that starts
            # later still learns which devices are offline.
            retain=ev.channel is Channel.STATUS,
        )

    async def _abandon_pending(self) -> None:
        """The connection is gone: publishes still waiting for their PUBACK never will."""
        if not self._pending:
            return
        log.warning(
            "%d event publishes were in flight when the connection ended", len(self._pending)
        )
        for task in list(self._pending):
            task.cancel()
        await asyncio.wait(list(self._pending), timeout=5)

    async def _publish(
        self, mqtt: aiomqtt.Client, topic: str, body: bytes, *, retain: bool
    ) -> None:
        # Publishing without awaiting each PUBACK keeps the receive loop moving; tasks
        # start in creation order, so per-device order is kept. The semaphore bounds them.
        async with asyncio.timeout(30):
            await self._inflight.acquire()
        task = asyncio.create_task(self._publish_one(mqtt, topic, body, retain))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _publish_one(
        self, mqtt: aiomqtt.Client, topic: str, body: bytes, retain: bool
    ) -> None:
        try:
            await mqtt.publish(topic, body, qos=1, retain=retain, timeout=30)
        except aiomqtt.MqttError as err:
            log.warning("could not publish to %s: %s", topic, err)
        finally:
            self._inflight.release()


def _payload_bytes(message: aiomqtt.Message) -> bytes:
    p = message.payload
    if isinstance(p, bytes | bytearray):
        return bytes(p)
    if isinstance(p, str):
        return p.encode()
    return b"" if p is None else str(p).encode()
