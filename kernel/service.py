"""What a service is to the runner: its hooks (ServiceBase), its output (Message), the bus
it publishes on (Bus), and the settings every service's runner reads (RunnerSettings)."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple, Protocol

import aiomqtt
from pydantic import Field

from stackpulse.kernel.clock import Clock
from stackpulse.kernel.contracts.events import Event
from stackpulse.kernel.durations import Duration, PositiveDuration
from stackpulse.kernel.settings import ComponentSettings
from stackpulse.kernel.topics import Kind


class Message(NamedTuple):
    """One message a service publishes (QoS 1)."""

    topic: str
    payload: bytes
    retain: bool = False


class CheckpointStore(Protocol):
    """Where checkpoints live (kernel.statedb.StateDB); synchronous, called in a thread."""

    def save_checkpoint(self, name: str, body: bytes) -> None: ...

    def load_checkpoint(self, name: str) -> bytes | None: ...


class RunnerSettings(ComponentSettings):
    """What every service's settings carry for its runner (STACKPULSE_<SERVICE>_...)."""

    client_id: str = Field("", description="MQTT client id of the persistent session")
    checkpoint_every: PositiveDuration = Field(
        timedelta(seconds=10), description="how often the state is checkpointed, when changed"
    )
    catchup_first: Duration = Field(
        timedelta(hours=1), description="with no checkpoint: how far back to read the store"
    )
    catchup_max: Duration = Field(
        timedelta(hours=24), description="never read the store further back than this"
    )
    catchup_margin: Duration = Field(
        timedelta(minutes=5), description="overlap read again before the checkpoint"
    )
    catchup_settle: Duration = Field(
        timedelta(seconds=2), description="after subscribing, wait this for the store to catch up"
    )
    catchup_chunk: PositiveDuration = Field(
        timedelta(minutes=10), description="the store is read this much time at a time"
    )
    queue_size: int = Field(10_000, ge=10, le=1_000_000, description="messages waiting to go out")
    max_inflight: int = Field(100, ge=1, le=10_000, description="QoS 1 publishes on the wire")
    stop_timeout: PositiveDuration = Field(
        timedelta(seconds=10), description="the last checkpoint and writes on stop, at most"
    )


class Bus:
    """What a service's own loops use to publish: bounded, waiting, never raising on a full
    queue (back-pressure; a warning every 30 s), plus direct publishes for those that must
    know a message reached the broker (the alerts' outbox)."""

    def __init__(self, name: str, clock: Clock, size: int) -> None:
        self.name = name
        self.clock = clock
        self.queue: asyncio.Queue[Message] = asyncio.Queue(maxsize=size)
        self.connected = asyncio.Event()
        self.retry: deque[Message] = deque(maxlen=size)  # lost with a connection: sent again
        self._mqtt: aiomqtt.Client | None = None
        self._log = logging.getLogger(f"stackpulse.{name}")

    def now(self) -> datetime:
        return self.clock.now()

    async def send(self, message: Message) -> None:
        while True:
            try:
                async with asyncio.timeout(30):
                    await self.queue.put(message)
                    return
            except TimeoutError:
                self._log.warning(
                    "%s: %d messages waiting for the broker", self.name, self.queue.qsize()
                )

    async def send_all(self, messages: Iterable[Message]) -> None:
        for m in messages:
            await self.send(m)

    async def publish(self, message: Message, timeout: float = 30.0) -> None:
        """Publish now and wait for the broker's PUBACK; aiomqtt.MqttError when offline."""
        mqtt = self._mqtt
        if mqtt is None:
            raise aiomqtt.MqttError("not connected to the broker")
        await mqtt.publish(
            message.topic, message.payload, qos=1, retain=message.retain, timeout=timeout
        )

    def attach(self, mqtt: aiomqtt.Client | None) -> None:
        self._mqtt = mqtt
        if mqtt is None:
            self.connected.clear()
        else:
            self.connected.set()


class ServiceBase:
    """The hooks a service gives the runner; each default does nothing.

    `apply` and `take` are called on the event loop for every message: they must be
    quick, pure apart from the `now` they are given, and return what to publish.
    """

    name: str = "service"
    sites: Collection[str] = ()
    kinds: frozenset[Kind] = frozenset()  # device kinds whose data events it applies
    status: bool = False  # whether it applies status events (birth, Last Will)

    def filters(self, root: str) -> list[str]:
        """Topics besides its events (other services' state, say): handed to `take`."""
        return []

    def apply(self, events: Sequence[Event], now: datetime, *, live: bool) -> Iterable[Message]:
        """New events of one site, in order; `live` False when read back from the store
        (then each event's own time is its `now`)."""
        return ()

    def take(self, topic: str, payload: bytes, now: datetime) -> Iterable[Message]:
        """A message of `filters`; ContractError (or ValueError) refuses it."""
        return ()

    async def on_events(
        self, events: Sequence[Event], now: datetime, bus: Bus, *, live: bool
    ) -> None:
        """What the runner calls: `apply`, then publish. A service that hands its work to
        a bounded queue of its own (with back-pressure) overrides this instead."""
        await bus.send_all(self.apply(events, now, live=live))

    async def on_message(self, topic: str, payload: bytes, now: datetime, bus: Bus) -> None:
        """What the runner calls for a message of `filters`: `take`, then publish."""
        await bus.send_all(self.take(topic, payload, now))

    def connected(self, now: datetime) -> Iterable[Message]:
        """On each (re)connection: the retained state a new reader needs."""
        return ()

    def checkpoint(self, site: str, now: datetime) -> Any | None:
        """The site's state as JSON-able data; None: nothing to save now."""
        return None

    def restore(self, site: str, state: Any | None) -> None:
        """Take up `checkpoint(site)` (None: nothing was saved, or it was unusable)."""

    def first_start(self, site: str, now: datetime) -> datetime | None:
        """With no checkpoint: where to catch up from (None: the settings' catchup_first)."""
        return None

    async def run(self, bus: Bus) -> None:
        """The service's own loops (ticks, records) until cancelled."""
        await asyncio.Event().wait()

    async def stop(self, bus: Bus) -> None:
        """After `run`: last writes, bounded by the runner's stop_timeout."""


__all__ = ["Bus", "CheckpointStore", "Message", "RunnerSettings", "ServiceBase"]
