"""The one service runner: every service's broker session, catch-up, checkpoints and output.

A service is its pure per-site state plus a few hooks (`ServiceBase`); the runner does
the rest, the same way for every one of them:

- restore each site's checkpoint (state, and what it had applied per device) from the
  state database before anything is read;
- catch up from the time-series store, which holds every accepted device message, from
  the checkpoint on (a first start: from the service's own look-back), then connect with
  a persistent session, subscribe, and catch up the little gap again, so that nothing the
  gateway accepted is missed whatever the start order, and nothing is applied twice
  (`kernel.dedup.Applied`);
- decode `_events` against their contract, take the site from the topic, drop repeats,
  and hand the rest to the service; anything else it subscribed to goes to `take`;
- publish what the service returns through one bounded queue, up to `max_inflight` QoS 1
  publishes on the wire, retried after a reconnect;
- checkpoint every `checkpoint_every` and on stop; report readiness and metrics.

Nothing a message says can stop the loop: a message that breaks a contract, or a hook
that raises on it, is counted, logged at most once a minute per reason, and dropped.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import zlib
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import aiomqtt

from stackpulse.kernel.aio import Backoff, raise_if_cancelling
from stackpulse.kernel.bus import BrokerAddress, client
from stackpulse.kernel.catchup import stored_events
from stackpulse.kernel.clock import Clock
from stackpulse.kernel.contracts.base import ContractError
from stackpulse.kernel.contracts.events import Event, decode_events
from stackpulse.kernel.dedup import Applied
from stackpulse.kernel.health import Health, Readiness, ServiceMetrics
from stackpulse.kernel.models import format_ts
from stackpulse.kernel.service import Bus, CheckpointStore, Message, RunnerSettings, ServiceBase
from stackpulse.kernel.store.base import SeriesStore
from stackpulse.kernel.topics import DEFAULT_ROOT, Channel, parse_system_topic

CHECKPOINT_VERSION = 2
AHEAD = timedelta(minutes=5)  # device clocks up to this far ahead are kept (protocol §4)


class Throttle:
    """At most one log line per key per `period` seconds; counts what it held back."""

    def __init__(self, log: logging.Logger, period: float = 60.0, keys: int = 1000) -> None:
        self._log = log
        self._period = period
        self._keys = keys
        self._last: dict[str, tuple[float, int]] = {}

    def warning(self, key: str, text: str, *args: object) -> None:
        now = time.monotonic()
        last, held = self._last.get(key, (-1e18, 0))
        if now - last < self._period:
            self._last[key] = (last, held + 1)
            return
        if len(self._last) >= self._keys:
            self._last.clear()
        self._last[key] = (now, 0)
        suffix = f" ({held} more like it since)" if held else ""
        self._log.warning(text + suffix, *args)


class ServiceRunner:
    """Runs one service on the bus, the store and the state database (module docstring)."""

    def __init__(
        self,
        service: ServiceBase,
        *,
        broker: BrokerAddress,
        root: str,
        clock: Clock,
        settings: RunnerSettings,
        store: SeriesStore | None = None,
        checkpoints: CheckpointStore | None = None,
        health: Health | None = None,
    ) -> None:
        self.service = service
        self.broker = broker
        self.root = root
        self.clock = clock
        self.settings = settings
        self.store = store
        self.checkpoints = checkpoints
        self.log = logging.getLogger(f"stackpulse.{service.name}")
        self.throttle = Throttle(self.log)
        self.bus = Bus(service.name, clock, settings.queue_size)
        self.applied = Applied()
        self.metrics = ServiceMetrics(service.name, clock=clock.now)
        self.metrics.queue_depth = self.bus.queue.qsize
        health = health or Health()
        self.readiness: Readiness = health.component(service.name)
        health.services.append(self.metrics)
        self.subscribed = asyncio.Event()  # the session exists: the broker keeps our messages
        self.restored = asyncio.Event()  # checkpoints taken up and a first catch-up tried
        self.complete: dict[str, datetime] = {}  # site -> everything before it was applied
        self._saved: dict[str, str] = {}  # site -> the state last saved (without times)
        self._client_id = settings.client_id or f"stackpulse-{service.name}"

    # -- the whole life ---------------------------------------------------------------

    async def run(self) -> None:
        await self._restore()
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.service.run(self.bus), name=f"{self.service.name}-loops")
                tg.create_task(self._checkpointer(), name=f"{self.service.name}-checkpoint")
                tg.create_task(self._connection(), name=f"{self.service.name}-mqtt")
        finally:
            self.readiness.down("stopped")
            await self._stop()

    async def _stop(self) -> None:
        try:
            async with asyncio.timeout(self.settings.stop_timeout.total_seconds()):
                await self.service.stop(self.bus)
                await self._save_all(final=True)
        except Exception as err:  # stopping must finish
            self.log.warning("%s did not stop cleanly: %s", self.service.name, err or "timed out")

    # -- restore and catch up ---------------------------------------------------------

    def checkpoint_name(self, site: str) -> str:
        """`{service}/{site}`; a deployment on another topic root keeps its own beside it."""
        if self.root == DEFAULT_ROOT:
            return f"{self.service.name}/{site}"
        return f"{self.service.name}/{self.root}/{site}"

    async def _restore(self) -> None:
        now = self.clock.now()
        for site in self.service.sites:
            state, complete = await self._load(site)
            try:
                self.service.restore(site, state)
            except Exception:
                self.log.exception(
                    "could not restore %s of %s; starting empty", self.service.name, site
                )
                self.service.restore(site, None)
                complete = None
            if complete is None:
                first = self.service.first_start(site, now)
                complete = first if first is not None else now - self.settings.catchup_first
                complete = max(complete, now - self.settings.catchup_max)
            self.complete[site] = complete
        self.readiness.restored = False
        await self._catch_up_all(phase="start")
        self.restored.set()
        self.readiness.restored = True

    async def _load(self, site: str) -> tuple[Any | None, datetime | None]:
        """The site's saved state and where it was complete; (None, None) if none is usable."""
        db = self.checkpoints
        if db is None:
            return None, None
        name = self.checkpoint_name(site)
        try:
            async with asyncio.timeout(60):
                body = await asyncio.to_thread(db.load_checkpoint, name)
        except Exception as err:
            self.log.error("could not load the checkpoint %s: %s", name, err)
            return None, None
        if body is None:
            self.log.info("no checkpoint %s: starting from the store's recent past", name)
            return None, None
        try:
            data = await asyncio.to_thread(_decode, body)
            return self._unwrap(site, data)
        except (ValueError, TypeError, KeyError) as err:
            self.log.warning("ignoring the checkpoint %s: %s", name, err)
            return None, None

    def _unwrap(self, site: str, data: Any) -> tuple[Any | None, datetime | None]:
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        version = data.get("version")
        if version == 1:  # a service's own body from before the runner: no positions
            return data, _time(data.get("at"))
        if version != CHECKPOINT_VERSION:
            raise ValueError(f"version {str(version)[:20]} is not supported")
        if data.get("site") != site:
            raise ValueError(f"it is of site {str(data.get('site'))[:40]!r}")
        taken = self.applied.restore(site, data.get("applied"))
        self.log.info(
            "restored %s of %s as of %s (%d devices)",
            self.service.name,
            site,
            str(data.get("at"))[:40],
            taken,
        )
        return data.get("state"), _time(data.get("complete"))

    async def _catch_up_all(self, *, phase: str) -> None:
        if self.store is None or not (self.service.kinds or self.service.status):
            now = self.clock.now()
            for site in self.complete:
                self.complete[site] = now
            return
        for site in self.service.sites:
            await self._catch_up(site, phase)

    async def _catch_up(self, site: str, phase: str) -> None:
        assert self.store is not None
        s = self.settings
        now = self.clock.now()
        start = max(self.complete[site] - s.catchup_margin, now - s.catchup_max)
        end = now + AHEAD
        count = 0
        wall = time.monotonic()
        try:
            async for batch in stored_events(
                self.store,
                site,
                sorted(self.service.kinds),
                start,
                end,
                status=self.service.status,
                chunk=s.catchup_chunk,
                on_bad_row=lambda why: self.throttle.warning(
                    "bad row", "skipped a stored row: %s", why
                ),
            ):
                fresh = [ev for ev in batch if self._first_time(ev)]
                self.metrics.caught_up += len(batch)
                count += len(fresh)
                if fresh:
                    await self._apply(fresh, self.clock.now(), live=False)
                await asyncio.sleep(0)  # let the broker session breathe between chunks
        except Exception as err:  # the store is away: live events still flow
            self.readiness.problem = f"catch-up from the store failed: {err}"
            self.log.warning(
                "%s could not catch up %s from the store (%s); it will try again",
                self.service.name,
                site,
                err,
            )
            return
        self.metrics.catch_ups += 1
        self.complete[site] = min(now, self.clock.now())
        if count or phase == "start":
            self.log.info(
                "%s caught up %s (%s): %d events from %s in %.1f s",
                self.service.name,
                site,
                phase,
                count,
                format_ts(start),
                time.monotonic() - wall,
            )

    # -- the broker session -----------------------------------------------------------

    def _filters(self) -> list[str]:
        out: list[str] = []
        for site in self.service.sites:
            for kind in sorted(self.service.kinds):
                out.append(f"{self.root}/{site}/_events/{kind}/+/data")
            if self.service.status:
                out.append(f"{self.root}/{site}/_events/+/+/status")
        return out + self.service.filters(self.root)

    async def _connection(self) -> None:
        backoff = Backoff()
        since_lost: float | None = None
        while True:
            raise_if_cancelling()
            if since_lost is not None and time.monotonic() - since_lost > 30:
                await self._catch_up_all(phase="before reconnecting")
            try:
                async with client(
                    self.broker, identifier=self._client_id, clean_session=False
                ) as mqtt:
                    await self._session(mqtt, backoff)
            except* aiomqtt.MqttError as group:
                problem = str(group.exceptions[0])
                self.readiness.down(problem)
                self.bus.attach(None)
                if since_lost is None:
                    since_lost = time.monotonic()
                self.log.warning("broker %s: %s; reconnecting", self.broker, problem)
                await asyncio.sleep(backoff.next())
            else:
                since_lost = None

    async def _session(self, mqtt: aiomqtt.Client, backoff: Backoff) -> None:
        self.readiness.connected = True
        for topic_filter in self._filters():
            await mqtt.subscribe(topic_filter, qos=1, timeout=10)
        self.readiness.subscribed = True
        self.subscribed.set()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._publisher(mqtt), name=f"{self.service.name}-publish")
            # What was published before the subscription reached the store meanwhile.
            await asyncio.sleep(self.settings.catchup_settle.total_seconds())
            await self._catch_up_all(phase="after subscribing")
            await self.bus.send_all(self.service.connected(self.clock.now()))
            self.bus.attach(mqtt)
            self.readiness.problem = None
            backoff.reset()
            async for message in mqtt.messages:
                raise_if_cancelling()
                payload = message.payload
                raw = payload if isinstance(payload, bytes) else str(payload).encode()
                await self._dispatch(message.topic.value, raw)

    async def _publisher(self, mqtt: aiomqtt.Client) -> None:
        # QoS 1 publishes waited for one by one cap a service at one PUBACK round trip per
        # message: keep up to max_inflight on the wire, handed to the client in queue
        # order, so the newest retained state of a topic is still the one sent last.
        inflight = asyncio.Semaphore(self.settings.max_inflight)
        bus = self.bus

        async def publish(m: Message) -> None:
            try:
                await mqtt.publish(m.topic, m.payload, qos=1, retain=m.retain, timeout=30)
            except aiomqtt.MqttError:
                bus.retry.append(m)  # sent again after the reconnect
                raise
            finally:
                inflight.release()

        async with asyncio.TaskGroup() as tg:
            while bus.retry:
                await inflight.acquire()
                tg.create_task(publish(bus.retry.popleft()))
            while True:
                raise_if_cancelling()
                message = await bus.queue.get()
                async with asyncio.timeout(60):
                    await inflight.acquire()
                tg.create_task(publish(message))

    # -- messages ---------------------------------------------------------------------

    async def _dispatch(self, topic: str, raw: bytes) -> None:
        now = self.clock.now()
        parts = parse_system_topic(topic, self.root, "_events")
        if parts is None:
            try:
                await self.service.on_message(topic, raw, now, self.bus)
            except (ContractError, ValueError) as err:
                self.metrics.refused += 1
                self.throttle.warning(topic[:120], "ignoring a message on %s: %s", topic[:200], err)
            except Exception:
                self.metrics.refused += 1
                self.log.exception("%s failed on a message on %s", self.service.name, topic[:200])
            return
        site = parts[0]
        if not raw or site not in self.service.sites:
            return
        try:
            events = decode_events(raw)
        except ContractError as err:
            self.metrics.refused += 1
            self.throttle.warning(f"events {site}", "ignoring events on %s: %s", topic[:200], err)
            return
        fresh: list[Event] = []
        for ev in events:
            if ev.site != site:
                self.metrics.refused += 1
                self.throttle.warning(
                    f"site {site}", "ignoring an event of site %r on %s", ev.site[:40], topic[:200]
                )
                continue
            self.metrics.received += 1
            if self._first_time(ev):
                fresh.append(ev)
        if fresh:
            self.metrics.lag_seconds = max(0.0, (now - fresh[-1].received).total_seconds())
            await self._apply(fresh, now, live=True)

    def _first_time(self, ev: Event) -> bool:
        if ev.kind not in self.service.kinds and not (
            ev.channel is Channel.STATUS and self.service.status
        ):
            return False
        key = ev.key
        if key is None:
            return True  # status messages carry no (boot, seq); applying one twice is harmless
        if self.applied.first_time(key, ev.ts):
            return True
        self.metrics.duplicates += 1
        return False

    async def _apply(self, events: list[Event], now: datetime, *, live: bool) -> None:
        try:
            await self.service.on_events(events, now, self.bus, live=live)
        except Exception:
            self.metrics.refused += len(events)
            self.log.exception(
                "%s failed on %d events of %s; they are dropped",
                self.service.name,
                len(events),
                events[0].site,
            )
            return
        self.metrics.applied += len(events)

    # -- checkpoints ------------------------------------------------------------------

    async def _checkpointer(self) -> None:
        await self.restored.wait()
        while True:
            raise_if_cancelling()
            await asyncio.sleep(self.settings.checkpoint_every.total_seconds())
            if self.readiness.subscribed:
                # While subscribed, the session delivers everything the store gets: all
                # that is older than the settle time has reached us.
                done = self.clock.now() - self.settings.catchup_settle
                for site, at in self.complete.items():
                    self.complete[site] = max(at, done)
            await self._save_all()

    async def _save_all(self, *, final: bool = False) -> None:
        if self.checkpoints is None or not self.restored.is_set():
            return  # never overwrite a checkpoint that was not taken up first
        for site in self.service.sites:
            await self._save(site, final=final)

    async def _save(self, site: str, *, final: bool) -> None:
        assert self.checkpoints is not None
        now = self.clock.now()
        try:
            state = self.service.checkpoint(site, now)
        except Exception:
            self.log.exception("could not make the checkpoint of %s", site)
            return
        if state is None:
            return
        applied = self.applied.checkpoint(site)
        name = self.checkpoint_name(site)
        body = {
            "version": CHECKPOINT_VERSION,
            "service": self.service.name,
            "site": site,
            "at": format_ts(now),
            "complete": format_ts(self.complete.get(site, now)),
            "applied": applied,
            "state": state,
        }
        try:
            async with asyncio.timeout(120):
                encoded, key = await asyncio.to_thread(_encode, body)
                if key == self._saved.get(site) and not final:
                    return
                await asyncio.to_thread(self.checkpoints.save_checkpoint, name, encoded)
        except Exception as err:
            self.log.error("could not save the checkpoint %s: %s", name, err)
            return
        self._saved[site] = key
        self.metrics.checkpoints[site] = now
        if final:
            self.log.info("saved the checkpoint %s (%d bytes)", name, len(encoded))


async def follow_state(
    name: str,
    broker: BrokerAddress,
    filters: Sequence[str],
    apply: Callable[[str, bytes | str], object],
    readiness: Readiness,
) -> None:
    """Feed a read model (`apply(topic, payload)`) from retained state, again after each
    loss of the broker, with backoff. The broker replays every retained message on
    subscribe, so a reconnect makes the read model whole; no session is kept."""
    log = logging.getLogger(f"stackpulse.{name}")
    backoff = Backoff()
    while True:
        raise_if_cancelling()
        try:
            async with client(broker) as mqtt:
                readiness.connected = True
                for topic_filter in filters:
                    await mqtt.subscribe(topic_filter, qos=1, timeout=10)
                readiness.subscribed = readiness.restored = True
                readiness.problem = None
                backoff.reset()
                async for message in mqtt.messages:
                    payload = message.payload
                    if isinstance(payload, bytes | bytearray | str):
                        try:
                            apply(
                                message.topic.value,
                                bytes(payload) if isinstance(payload, bytearray) else payload,
                            )
                        except Exception:  # a read model must outlive any one message
                            log.exception(
                                "%s failed on a message on %s", name, message.topic.value[:200]
                            )
        except aiomqtt.MqttError as err:
            readiness.down(str(err))
            log.warning("%s lost the broker: %s; reconnecting", name, err)
            await asyncio.sleep(backoff.next())


def _encode(body: dict[str, Any]) -> tuple[bytes, str]:
    """The stored form (zlib JSON), and a digest of what it says but for its times
    (unchanged: no need to save). The big part is serialized once."""
    inner = json.dumps(
        {"applied": body["applied"], "state": body["state"]}, separators=(",", ":"), default=str
    )
    head = {k: v for k, v in body.items() if k not in ("applied", "state")}
    text = json.dumps(head, separators=(",", ":"))[:-1] + ("," if head else "") + inner[1:]
    return zlib.compress(text.encode(), 6), hashlib.sha256(inner.encode()).hexdigest()


def _decode(body: bytes) -> Any:
    try:
        return json.loads(zlib.decompress(body))
    except zlib.error:
        return json.loads(body)  # an uncompressed checkpoint (older releases)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        ts = datetime.fromisoformat(value)
    except ValueError:
        return None
    return ts if ts.tzinfo is not None else None


__all__ = ["ServiceRunner", "Throttle", "follow_state"]
