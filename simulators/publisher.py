"""MQTT I/O for simulated devices: one connection each, so each has its own Last Will."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import socket
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field

import aiomqtt

from stackpulse.kernel import bus
from stackpulse.kernel.clock import Clock
from stackpulse.kernel.models import format_ts
from stackpulse.kernel.topics import Channel, device_topic
from stackpulse.simulators.devices import WILL_PAYLOAD, Message

log = logging.getLogger(__name__)

POLL = 0.2  # wall seconds between checks of the stop and kill flags
BACKOFF = (0.5, 10.0)  # wall seconds, first and longest wait between reconnects


class BrokerUnreachable(ConnectionError):
    """No simulated device could connect; the message names the broker and the error."""


@dataclass
class PublishStats:
    published: Counter[str] = field(default_factory=Counter)  # by kind, and "status"
    dropped: int = 0  # queue full: the device had to forget a message
    connects: int = 0
    failures: int = 0


class _Restart(Exception):
    """The device rebooted: drop the connection without a goodbye and connect again."""


class _Killed(Exception):
    """The connection was cut on purpose (a fault): stay down until revived."""


def _abort(client: aiomqtt.Client) -> None:
    """Cut the TCP connection without DISCONNECT, so the broker sends the Will.

    aiomqtt offers only the graceful exit, which suppresses the Will; shutting the
    socket down is what a power cut looks like from the broker's side.
    """
    sock = client._client.socket()
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _connected(client: aiomqtt.Client) -> bool:
    """Whether paho still holds the connection; aiomqtt only says so on the next call,
    and a device with nothing to send would never find out the broker went away."""
    return client._client.is_connected()


def _settle(client: aiomqtt.Client) -> None:
    """Take note of how a lost connection ended, which aiomqtt's exit leaves unread
    (asyncio would log "exception was never retrieved" for each device)."""
    fut = client._disconnected
    if fut.done() and not fut.cancelled():
        fut.exception()


async def _publish(client: aiomqtt.Client, topic: str, payload: bytes, retain: bool) -> None:
    """Publish at QoS 1; give up at once if the connection dies before the broker acks,
    rather than after aiomqtt's timeout (it does not fail pending publishes)."""
    task = asyncio.ensure_future(client.publish(topic, payload, qos=1, retain=retain))
    while True:
        done, _ = await asyncio.wait({task}, timeout=POLL)
        if done:
            return task.result()
        if not _connected(client):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await task
            raise aiomqtt.MqttError("connection lost while publishing")


class DeviceLink:
    """One device's connection: birth on connect, a bounded outbox, goodbye on stop."""

    def __init__(self, pub: Publisher, birth: Message, queue_size: int) -> None:
        self.pub = pub
        self.device = birth.device
        self.birth = birth
        self.status_topic = device_topic(pub.root, pub.site, birth.kind, birth.device, "status")
        self.queue: asyncio.Queue[Message] = asyncio.Queue(maxsize=queue_size)
        self.up = asyncio.Event()  # cleared while killed
        self.up.set()
        self.first_attempt: asyncio.Future[BaseException | None] = (
            asyncio.get_running_loop().create_future()
        )
        self.client: aiomqtt.Client | None = None
        self.backoff = BACKOFF[0]

    def submit(self, msg: Message) -> None:
        if msg.reconnect and not self.up.is_set():
            self.birth = msg  # restarted while cut off: it will say so when back
            return
        if not self.up.is_set():
            self.pub.stats.dropped += 1  # a dead device sends nothing
            return
        if self.queue.full():
            # The newest state is worth more than the oldest: gate totals are
            # cumulative and a seat's latest presence replaces the ones before.
            self.queue.get_nowait()
            self.pub.stats.dropped += 1
        self.queue.put_nowait(msg)

    def _attempted(self, err: BaseException | None) -> None:
        if not self.first_attempt.done():
            self.first_attempt.set_result(err)

    async def run(self) -> None:
        while not self.pub.closing:
            if not self.up.is_set():
                await self.pub.pause(POLL)
                continue
            try:
                await self._session()
                return
            except _Restart:
                continue
            except _Killed:
                with contextlib.suppress(asyncio.QueueEmpty):
                    while True:  # a dead device sends nothing; what it queued is lost
                        self.queue.get_nowait()
                        self.pub.stats.dropped += 1
            except (aiomqtt.MqttError, OSError) as err:
                self.pub.stats.failures += 1
                self._attempted(err)
                if self.pub.closing:
                    return
                log.debug("%s: %s; retrying in %.1fs", self.device, err, self.backoff)
                await self.pub.pause(random.uniform(self.backoff / 2, self.backoff))
                self.backoff = min(BACKOFF[1], self.backoff * 2)

    async def _session(self) -> None:
        pub = self.pub
        will = aiomqtt.Will(self.status_topic, WILL_PAYLOAD, qos=1, retain=True)
        client = bus.client(
            pub.broker,
            identifier=f"{pub.client_prefix}-{pub.site}-{self.device}",
            will=will,
            clean_session=True,
        )
        async with pub.connect_slots:
            await client.__aenter__()
        graceful = False
        try:
            self.client = client
            self.backoff = BACKOFF[0]
            birth = dict(self.birth.payload, ts=format_ts(pub.clock.now()))
            await _publish(client, self.status_topic, json.dumps(birth).encode(), retain=True)
            pub.stats.published["status"] += 1
            pub.stats.connects += 1  # counted once the broker holds the birth
            self._attempted(None)
            await self._pump(client)
            await self._goodbye(client)
            graceful = True
        finally:
            self.client = None
            if not graceful:
                _abort(client)
                # Let paho see the socket die first, or aiomqtt's exit tries to write
                # a DISCONNECT to a closed descriptor.
                for _ in range(50):
                    if not _connected(client):
                        break
                    await asyncio.sleep(0.01)
            _settle(client)
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                await asyncio.wait_for(client.__aexit__(None, None, None), POLL * 5)

    async def _pump(self, client: aiomqtt.Client) -> None:
        pub = self.pub
        loop = asyncio.get_running_loop()
        while not (pub.closing and self.queue.empty()):
            if pub.closing and loop.time() > pub.drain_deadline:
                pub.stats.dropped += self.queue.qsize()
                return
            if not self.up.is_set():
                raise _Killed
            try:
                msg = await asyncio.wait_for(self.queue.get(), POLL)
            except TimeoutError:
                if not _connected(client):
                    raise aiomqtt.MqttError("connection lost") from None
                continue
            if msg.reconnect:
                self.birth = msg
                raise _Restart
            topic = msg.topic(pub.root, pub.site)
            await _publish(client, topic, msg.encode(), msg.retain)
            pub.stats.published[str(msg.kind) if msg.channel is Channel.DATA else "status"] += 1

    async def _goodbye(self, client: aiomqtt.Client) -> None:
        # A graceful disconnect does not fire the Will, so say it ourselves.
        bye = {
            "online": False,
            "ts": format_ts(self.pub.clock.now()),
            "boot": self.birth.payload["boot"],
        }
        await _publish(client, self.status_topic, json.dumps(bye).encode(), retain=True)
        self.pub.stats.published["status"] += 1


class Publisher:
    """All devices of one site on one event loop; use `Publisher.open(...)`."""

    def __init__(
        self,
        broker: bus.BrokerAddress,
        *,
        root: str,
        site: str,
        clock: Clock,
        connect_concurrency: int = 32,
        client_prefix: str = "sim",
    ) -> None:
        self.broker, self.root, self.site, self.clock = broker, root, site, clock
        self.client_prefix = client_prefix
        self.connect_slots = asyncio.Semaphore(connect_concurrency)
        self.links: dict[str, DeviceLink] = {}
        self.stats = PublishStats()
        self.drain_deadline = float("inf")
        self._closing = asyncio.Event()

    @property
    def closing(self) -> bool:
        return self._closing.is_set()

    def close(self, drain_timeout: float) -> None:
        """Stop: each device sends what it has queued (for at most `drain_timeout`
        seconds), publishes `online: false` retained and disconnects gracefully."""
        self.drain_deadline = asyncio.get_running_loop().time() + drain_timeout
        self._closing.set()

    async def pause(self, seconds: float) -> None:
        """Sleep, but wake up at once when closing."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls,
        broker: bus.BrokerAddress,
        births: Iterable[Message],
        *,
        root: str,
        site: str,
        clock: Clock,
        queue_size: int = 1000,
        connect_timeout: float = 30.0,
        drain_timeout: float = 10.0,
        connect_concurrency: int = 32,
        client_prefix: str = "sim",
    ) -> AsyncIterator[Publisher]:
        """Connect every device (births published), yield, then say goodbye and close."""
        pub = cls(
            broker,
            root=root,
            site=site,
            clock=clock,
            connect_concurrency=connect_concurrency,
            client_prefix=client_prefix,
        )
        async with asyncio.TaskGroup() as tg:
            for birth in births:
                link = pub.links[birth.device] = DeviceLink(pub, birth, queue_size)
                tg.create_task(link.run(), name=f"sim-{birth.device}")
            try:
                failure = await pub._started(connect_timeout)
                if failure is None:
                    yield pub
            finally:
                pub.close(drain_timeout)
        if failure is not None:
            raise failure  # outside the task group, so it is not wrapped in a group

    async def _started(self, within: float) -> BrokerUnreachable | None:
        firsts = [link.first_attempt for link in self.links.values()]
        if not firsts:
            return None
        done, _ = await asyncio.wait(firsts, timeout=within)
        errors = [f.result() for f in done if f.result() is not None]
        if not done:
            return BrokerUnreachable(f"broker {self.broker}: no connection within {within:g}s")
        if len(errors) == len(firsts):
            return BrokerUnreachable(f"broker {self.broker}: cannot connect: {errors[0]}")
        if len(done) < len(firsts) or errors:
            log.warning(
                "%d of %d simulated devices are not connected yet; they keep trying",
                len(firsts) - len(done) + len(errors),
                len(firsts),
            )
        return None

    def submit(self, msg: Message) -> None:
        """Queue a message on its device's connection; never blocks."""
        self.links[msg.device].submit(msg)

    def kill(self, device: str) -> None:
        """Cut a device's connection abruptly (its Will fires); it stays down until revived."""
        link = self.links[device]
        link.up.clear()
        if link.client is not None:
            _abort(link.client)

    def revive(self, device: str) -> None:
        """Let a killed device connect again; it publishes a fresh birth."""
        self.links[device].up.set()

    def connected(self) -> int:
        return sum(1 for link in self.links.values() if link.client is not None)

    def backlog(self) -> int:
        return sum(link.queue.qsize() for link in self.links.values())
