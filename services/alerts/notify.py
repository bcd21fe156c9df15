"""Notifications: the outbox sender that fans alert transitions out to MQTT and webhooks.

The lifecycle writes every transition to the durable outbox (channel `transition`) in the
transaction that makes it. The `Sender` takes due entries in rounds, bounded in number:

- `transition`: fanned out into one entry per delivery, then marked delivered:
  `mqtt` `state:{alert id}` (the alert's current state, retained on its own topic),
  `mqtt` `event` (the transition, not retained, on the site's `_transitions` topic)
  and one `webhook` entry per configured URL.
- `mqtt`: published with QoS 1; retried with backoff while the broker is away.
- `webhook`: POSTed, signed; delivered on a 2xx answer, retried with backoff otherwise.

Every entry stays in the outbox until delivered, so nothing is lost across a restart;
delivery is at least once (a receiver drops repeats by the `X-StackPulse-Event` header).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import random
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol
from urllib.parse import urlsplit

import httpx

from stackpulse.kernel.clock import Clock
from stackpulse.kernel.contracts.alerts import (
    AlertBody,
    TransitionBody,
    alert_topic,
    alerts_subscription,
    transitions_topic,
)
from stackpulse.kernel.models import format_ts
from stackpulse.services.alerts.model import Alert, AlertState, Severity, Transition
from stackpulse.services.alerts.store import alert_from_json

log = logging.getLogger("stackpulse.alerts.notify")

TRANSITION = "transition"
MQTT = "mqtt"
WEBHOOK = "webhook"
STATE_TARGET = "state:"  # + alert id: publish the alert's current state, retained
EVENT_TARGET = "event"  # publish the entry's body on the site's transitions topic

SIGNATURE_HEADER = "X-StackPulse-Signature"
TIMESTAMP_HEADER = "X-StackPulse-Timestamp"
EVENT_HEADER = "X-StackPulse-Event"
USER_AGENT = "StackPulse-Alerts/1"

MIN_SECRET = 16


# -- what every channel says about an alert (MQTT, webhooks, HTTP, the console) ------


def alert_body(alert: Alert) -> AlertBody:
    """An alert as every channel says it (kernel.contracts.alerts.AlertBody)."""
    return AlertBody(
        id=alert.id,
        rule=alert.rule,
        severity=alert.severity,
        subject=alert.subject,
        state=alert.state,
        opened_at=alert.opened_at,
        acked_by=alert.acked_by,
        cleared_at=alert.cleared_at,
        site=alert.site,
        message=alert.message,
        active=alert.state.active,
        updated_at=alert.updated_at,
        last_seen_at=alert.last_seen_at,
        acked_at=alert.acked_at,
        cleared_by=alert.cleared_by,
        escalations=alert.escalations,
        repeats=alert.repeats,
        detail=alert.detail,
    )


def transition_body(t: Transition, event_id: str) -> TransitionBody:
    return TransitionBody(
        event_id=event_id, kind=t.kind, at=t.at, by=t.by, before=t.before, alert=alert_body(t.alert)
    )


def event_id(t: Transition, cursor: int | None = None) -> str:
    """A stable id of one transition (the same on every retry and after a restart).

    The transition's history id when known (`cursor`), else a digest of what it says.
    """
    if cursor is not None:
        return str(cursor)
    key = f"{t.alert.id}|{t.kind}|{format_ts(t.at)}|{t.by or ''}|{t.alert.escalations}"
    return "h" + hashlib.sha256(key.encode()).hexdigest()[:31]


def read_transition(body: bytes) -> tuple[Transition, int | None]:
    """A `transition` outbox entry (store.transition_json) and its history id."""
    data = json.loads(body)
    before = data.get("before")
    t = Transition(
        alert=alert_from_json(data["alert"]),
        kind=data["kind"],
        at=datetime.fromisoformat(data["at"]),
        by=data.get("by"),
        before=None if before is None else AlertState(before),
    )
    cursor = data.get("cursor")
    return t, cursor if isinstance(cursor, int) else None


# -- signing ---------------------------------------------------------------------------


def sign(secret: str, body: bytes) -> str:
    """`sha256=<hex HMAC-SHA256(secret, body)>`, the value of X-StackPulse-Signature."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(secret: str, body: bytes, signature: str) -> bool:
    """What a receiver does: recompute over the raw body and compare in constant time."""
    return hmac.compare_digest(sign(secret, body), signature)


# -- settings and retry policy ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NotifySettings:
    """Webhook targets and the retry policy (seconds are wall seconds)."""

    webhooks: tuple[str, ...] = ()
    secret: str = field(default="", repr=False)
    timeout: float = 10.0  # one POST, connect to last byte
    retry_first: float = 1.0  # the first retry after a failure; doubles per attempt
    retry_cap: float = 300.0  # at most this long between attempts
    rejected_first: float = 60.0  # after a 4xx other than 408/429: the receiver refuses
    rejected_cap: float = 3600.0
    batch: int = 100  # outbox entries taken per round
    concurrency: int = 8  # POSTs in flight at once
    round_seconds: float = 0.5  # between rounds when nothing wakes the sender

    def __post_init__(self) -> None:
        for url in self.webhooks:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"webhook URL {url[:80]!r} must be http:// or https://host/...")
        if self.webhooks and len(self.secret) < MIN_SECRET:
            raise ValueError(
                "STACKPULSE_ALERTS_WEBHOOK_SECRET must be set (at least "
                f"{MIN_SECRET} characters) when STACKPULSE_ALERTS_WEBHOOKS names a receiver"
            )
        numbers = (self.timeout, self.retry_first, self.retry_cap, self.rejected_first)
        if not all(0 < n < float("inf") for n in (*numbers, self.rejected_cap)):
            raise ValueError("webhook timeout and retry delays must be positive seconds")
        if self.batch < 1 or self.concurrency < 1 or self.round_seconds <= 0:
            raise ValueError("batch, concurrency and round_seconds must be positive")


def retryable_soon(status: int | None) -> bool:
    """A failure worth retrying at the normal pace: no answer, 408, 429 or 5xx."""
    return status is None or status in (408, 429) or status >= 500


def retry_delay(
    attempts: int, settings: NotifySettings, *, status: int | None, rng: random.Random
) -> float:
    """Wall seconds before the next attempt: jittered exponential backoff.

    `attempts` counts the failures so far (0 after the first). A receiver that refuses
    (another 4xx: a wrong URL or secret) is still retried, since an operator may fix it,
    but slowly: from `rejected_first` up to `rejected_cap`.
    """
    first, cap = (
        (settings.retry_first, settings.retry_cap)
        if retryable_soon(status)
        else (settings.rejected_first, settings.rejected_cap)
    )
    step: float = min(cap, first * 2.0 ** min(attempts, 30))
    return step * rng.uniform(0.5, 1.0)


# -- the sender ------------------------------------------------------------------------


class Entry(Protocol):
    """An outbox entry (services.alerts.store.OutboxEntry)."""

    @property
    def id(self) -> int: ...
    @property
    def channel(self) -> str: ...
    @property
    def target(self) -> str: ...
    @property
    def body(self) -> bytes: ...
    @property
    def attempts(self) -> int: ...


class OutboxPort(Protocol):
    """What the sender needs of services.alerts.store.Outbox (synchronous, thread-safe)."""

    def enqueue(
        self, channel: str, target: str, body: bytes, *, alert_id: str | None, at: datetime
    ) -> int: ...
    def due(self, now: datetime, limit: int = 100) -> Sequence[Entry]: ...
    def delivered(self, entry_id: int, at: datetime) -> None: ...
    def failed(self, entry_id: int, at: datetime, next_at: datetime, error: str) -> None: ...


class AlertLookup(Protocol):
    """What the sender reads of services.alerts.lifecycle.AlertBook (synchronous)."""

    def get(self, alert_id: str) -> Alert | None: ...
    def list(
        self,
        *,
        site: str | None = None,
        states: Collection[AlertState] | None = None,
        rule: str | None = None,
        severity: Severity | None = None,
        limit: int = 500,
    ) -> list[Alert]: ...


ACTIVE_STATES = frozenset({AlertState.ACTIVE_UNACK, AlertState.ACTIVE_ACK})

Publish = Callable[[str, bytes, bool], Awaitable[None]]  # (topic, payload, retain)


class NotDelivered(Exception):
    """One delivery failed; `status` is the HTTP status when there was an answer."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.status = status


class Sender:
    """Takes due outbox entries in bounded rounds and delivers each to its channel.

    A round costs a few database calls whatever its size (the fan-outs in one, the alerts
    to publish in one, the outcomes in one), so a busy process is not slowed by one
    thread hop per notification.
    """

    def __init__(
        self,
        outbox: OutboxPort,
        *,
        root: str,
        clock: Clock,
        alerts: AlertLookup,
        settings: NotifySettings | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._outbox = outbox
        self._root = root
        self._clock = clock
        self._alerts = alerts  # the alerts as they are now (the lifecycle; database reads)
        self.settings = settings or NotifySettings()
        self._rng = rng or random.Random()
        self._publish: Publish | None = None
        self._target_wait: dict[str, datetime] = {}  # a webhook URL that failed: until when
        self._refused_logged: set[int] = set()
        self.delivered = 0
        self.failures = 0
        self.wake = asyncio.Event()  # set by whoever just added to the outbox
        # Called (in the sender's thread) with each round's transitions and their history
        # ids: every transition passes here once, whichever process made it.
        self.on_transitions: Callable[[list[tuple[Transition, int | None]]], None] | None = None

    def connect(self, publish: Publish | None) -> None:
        """The MQTT publisher to use (None while the broker is away)."""
        self._publish = publish

    async def run(self, http: httpx.AsyncClient) -> None:
        while True:
            try:
                handled = await self.round(http)
            except Exception as err:  # a database hiccup: the entries stay, next round
                log.warning("alert notifications: %s", err)
                handled = 0
            if handled >= self.settings.batch:
                await asyncio.sleep(0)  # more are due: go on at once
                continue
            try:
                async with asyncio.timeout(self.settings.round_seconds):
                    await self.wake.wait()
            except TimeoutError:
                pass
            self.wake.clear()

    async def round(self, http: httpx.AsyncClient) -> int:
        """Deliver what is due (at most `batch` entries); how many were taken."""
        now = self._clock.now()
        entries = await asyncio.to_thread(self._outbox.due, now, self.settings.batch)
        if not entries:
            return 0
        by_channel: dict[str, list[Entry]] = {TRANSITION: [], MQTT: [], WEBHOOK: []}
        outcomes: list[Outcome] = []
        for entry in entries:
            if entry.channel in by_channel:
                by_channel[entry.channel].append(entry)
            else:
                outcomes.append(
                    (entry, NotDelivered(f"unknown channel {entry.channel[:40]!r}", 400))
                )
        if by_channel[TRANSITION]:
            outcomes += await asyncio.to_thread(self._fan_out, by_channel[TRANSITION])
            self.wake.set()  # what they made is due now
        if by_channel[MQTT]:
            outcomes += await self._send_mqtt(by_channel[MQTT])
        if by_channel[WEBHOOK]:
            outcomes += await self._post_all(by_channel[WEBHOOK], http, now)
        await self._settle(outcomes)
        return len(entries)

    # -- channels

    def _fan_out(self, entries: Sequence[Entry]) -> list[Outcome]:
        """In a thread: one entry per delivery for each transition."""
        out: list[Outcome] = []
        seen: list[tuple[Transition, int | None]] = []
        at = self._clock.now()
        for entry in entries:
            try:
                t, cursor = read_transition(entry.body)
            except (ValueError, KeyError, TypeError, AssertionError) as err:
                out.append((entry, NotDelivered(f"not a transition: {err!r}", 400)))
                continue
            seen.append((t, cursor))
            body = transition_body(t, event_id(t, cursor)).model_dump_json().encode()
            jobs = [(MQTT, STATE_TARGET + t.alert.id, b""), (MQTT, EVENT_TARGET, body)]
            jobs += [(WEBHOOK, url, body) for url in self.settings.webhooks]
            for channel, target, payload in jobs:
                self._outbox.enqueue(channel, target, payload, alert_id=t.alert.id, at=at)
            out.append((entry, None))
        if seen and self.on_transitions is not None:
            try:
                self.on_transitions(seen)
            except Exception:  # a record of them is not worth a notification
                log.exception("recording alert transitions failed")
        return out

    async def _send_mqtt(self, entries: Sequence[Entry]) -> list[Outcome]:
        publish = self._publish
        if publish is None:
            away = NotDelivered("the broker is not connected")
            return [(e, away) for e in entries]
        ids = {e.target[len(STATE_TARGET) :] for e in entries if e.target.startswith(STATE_TARGET)}
        alerts = await asyncio.to_thread(self._resolve, ids)
        out: list[Outcome] = []
        retained: dict[str, tuple[int, Message]] = {}  # topic -> the entry that publishes it
        events: list[tuple[int, Message]] = []
        gone: list[Entry] = []
        sends: list[tuple[Entry, Message]] = []
        for entry in entries:
            try:
                message = self._mqtt_message(entry, alerts)
            except NotDelivered as err:
                out.append((entry, err))
                continue
            if message is None:
                gone.append(entry)  # the alert is gone from the database: nothing to say
                continue
            sends.append((entry, message))
            if message[2]:
                retained[message[0]] = (entry.id, message)  # once per topic per round
            else:
                events.append((entry.id, message))
        results: dict[int, NotDelivered | None] = {}

        async def send(key: int, topic: str, payload: bytes, retain: bool) -> None:
            try:
                async with asyncio.timeout(30):
                    await publish(topic, payload, retain)
                results[key] = None
            except Exception as err:  # aiomqtt.MqttError, a timeout: the broker went away
                results[key] = NotDelivered(f"MQTT publish: {err or type(err).__name__}")

        # Concurrent publishes (their QoS 1 acknowledgements overlap), handed to the client
        # in this order.
        async with asyncio.TaskGroup() as tg:
            for key, (topic, payload, retain) in [*retained.values(), *events]:
                tg.create_task(send(key, topic, payload, retain))
        for entry, (topic, _payload, retain) in sends:
            key = retained[topic][0] if retain else entry.id
            out.append((entry, results.get(key, NotDelivered("not published"))))
        out += [(entry, None) for entry in gone]
        return out

    def _resolve(self, ids: Iterable[str]) -> dict[str, Alert | None]:
        """In a thread: each alert as it is now; for one no longer active, the active alert
        of the same rule and subject if a newer one opened (the retained topic is theirs)."""
        out: dict[str, Alert | None] = {}
        for alert_id in ids:
            alert = self._alerts.get(alert_id)
            if alert is not None and not alert.state.active:
                newer = self._alerts.list(
                    site=alert.site, states=ACTIVE_STATES, rule=alert.rule, limit=10_000
                )
                alert = next((a for a in newer if a.subject == alert.subject), alert)
            out[alert_id] = alert
        return out

    def _mqtt_message(self, entry: Entry, alerts: dict[str, Alert | None]) -> Message | None:
        if entry.target.startswith(STATE_TARGET):
            alert = alerts.get(entry.target[len(STATE_TARGET) :])
            if alert is None:
                return None
            topic = alert_topic(self._root, alert.site, alert.rule, alert.subject)
            payload = alert_body(alert).model_dump_json().encode() if alert.state.active else b""
            return topic, payload, True
        if entry.target == EVENT_TARGET:
            try:
                site = json.loads(entry.body)["alert"]["site"]
            except (ValueError, KeyError, TypeError):
                raise NotDelivered("not a transition event", 400) from None
            return transitions_topic(self._root, str(site)), entry.body, False
        raise NotDelivered(f"unknown MQTT target {entry.target[:40]!r}", 400)

    async def _post_all(
        self, entries: Sequence[Entry], http: httpx.AsyncClient, now: datetime
    ) -> list[Outcome]:
        posts = asyncio.Semaphore(self.settings.concurrency)
        out: list[Outcome] = []

        async def post(entry: Entry) -> None:
            async with posts:
                try:
                    await self._post(entry, http)
                except NotDelivered as err:
                    out.append((entry, err))
                    return
                out.append((entry, None))

        async with asyncio.TaskGroup() as tg:
            for entry in entries:
                wait = self._target_wait.get(entry.target)
                if wait is not None and now < wait:
                    continue  # its receiver is down: one probe per backoff step, not all
                tg.create_task(post(entry))
        return out

    async def _post(self, entry: Entry, http: httpx.AsyncClient) -> None:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            SIGNATURE_HEADER: sign(self.settings.secret, entry.body),
            TIMESTAMP_HEADER: format_ts(self._clock.now()),
            EVENT_HEADER: _event_id_of(entry.body),
        }
        try:
            answer = await http.post(
                entry.target, content=entry.body, headers=headers, timeout=self.settings.timeout
            )
        except httpx.HTTPError as err:
            raise NotDelivered(f"{type(err).__name__}: {err}"[:200]) from None
        if not 200 <= answer.status_code < 300:
            raise NotDelivered(f"answered {answer.status_code}", answer.status_code)

    # -- outcomes

    async def _settle(self, outcomes: Sequence[Outcome]) -> None:
        """Record every outcome of the round in one database call."""
        now = self._clock.now()
        done: list[int] = []
        failed: list[tuple[int, datetime, str]] = []
        for entry, err in outcomes:
            if err is None:
                done.append(entry.id)
                self._target_wait.pop(entry.target, None)
                self._refused_logged.discard(entry.id)
                continue
            failed.append((entry.id, self._next_attempt(entry, err, now), str(err)[:500]))
        self.delivered += len(done)
        self.failures += len(failed)

        def record() -> None:
            for entry_id in done:
                self._outbox.delivered(entry_id, now)
            for entry_id, next_at, error in failed:
                self._outbox.failed(entry_id, now, next_at, error)

        if done or failed:
            await asyncio.to_thread(record)

    def _next_attempt(self, entry: Entry, err: NotDelivered, now: datetime) -> datetime:
        delay = retry_delay(entry.attempts, self.settings, status=err.status, rng=self._rng)
        next_at = now + timedelta(seconds=delay * self._clock.speed)  # wall -> clock seconds
        where = _where(entry)
        if entry.channel == WEBHOOK:
            self._target_wait[entry.target] = next_at
        if not retryable_soon(err.status):
            if entry.id not in self._refused_logged:  # a refusal is logged once per entry
                self._refused_logged.add(entry.id)
                log.error(
                    "%s refused alert notification %d: %s; retrying slowly", where, entry.id, err
                )
        elif entry.attempts == 0 or entry.attempts % 10 == 9:
            log.warning(
                "alert notification %d to %s failed (%d attempts): %s; next in %.0f s",
                entry.id,
                where,
                entry.attempts + 1,
                err,
                delay,
            )
        return next_at


Outcome = tuple[Entry, NotDelivered | None]  # None: delivered
Message = tuple[str, bytes, bool]  # (topic, payload, retained)


def _where(entry: Entry) -> str:
    if entry.channel == WEBHOOK:
        parts = urlsplit(entry.target)  # never log a URL's query: it may hold a token
        return f"{parts.scheme}://{parts.hostname}{parts.path}"
    return entry.channel


def _event_id_of(body: bytes) -> str:
    try:
        return str(json.loads(body)["event_id"])
    except (ValueError, KeyError, TypeError):
        return hashlib.sha256(body).hexdigest()[:32]


__all__ = [
    "EVENT_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "AlertBody",
    "NotifySettings",
    "Sender",
    "TransitionBody",
    "alert_topic",
    "alerts_subscription",
    "event_id",
    "retry_delay",
    "sign",
    "transitions_topic",
    "verify",
]
