"""Alert notifications: the outbox sender against a real local HTTP receiver and database."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from stackpulse.kernel.clock import SystemClock
from stackpulse.kernel.statedb import StateDB
from stackpulse.services.alerts.entry import notify_settings
from stackpulse.services.alerts.lifecycle import AlertBook
from stackpulse.services.alerts.model import Observation, Severity
from stackpulse.services.alerts.notify import (
    EVENT_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    NotifySettings,
    Sender,
    alert_topic,
    retry_delay,
    sign,
    transitions_topic,
    verify,
)
from stackpulse.services.alerts.settings import AlertServiceSettings, AlertSettings
from stackpulse.services.alerts.store import AlertStore
from tests.support.browser import free_port
from tests.support.waiting import wait_until

SECRET = "a-webhook-secret-of-32-characters"
ROOT = "t/webhooks/lib/v1"


# -- a real HTTP receiver ----------------------------------------------------------------


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A threading http.server on loopback answering each POST with the next scripted status."""

    port: int = field(default_factory=free_port)
    statuses: list[int] = field(default_factory=list)  # then 200 for ever
    requests: list[Received] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/stackpulse"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                receiver.requests.append(Received(dict(self.headers.items()), body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)

    def bodies(self) -> list[dict[str, object]]:
        return [json.loads(r.body) for r in self.requests]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.start()
    try:
        yield r
    finally:
        r.stop()


def fast(*urls: str, **changes: float) -> NotifySettings:
    """Retries in tens of milliseconds, so a test sees several."""
    values: dict[str, float] = {
        "retry_first": 0.05,
        "retry_cap": 0.2,
        "rejected_first": 0.3,
        "rejected_cap": 0.6,
        "round_seconds": 0.05,
        "timeout": 2.0,
        **changes,
    }
    return NotifySettings(webhooks=urls, secret=SECRET, **values)  # type: ignore[arg-type]


@dataclass
class Published:
    messages: list[tuple[str, bytes, bool]] = field(default_factory=list)
    down: bool = False

    async def __call__(self, topic: str, body: bytes, retain: bool) -> None:
        if self.down:
            raise ConnectionError("broker away")
        self.messages.append((topic, body, retain))


@dataclass
class Notifier:
    db: StateDB
    book: AlertBook
    sender: Sender
    mqtt: Published


def notifier_over(db: StateDB, settings: NotifySettings) -> Notifier:
    store = AlertStore(db)
    book = AlertBook(store, AlertSettings())
    sender = Sender(store.outbox, root=ROOT, clock=SystemClock(), alerts=book, settings=settings)
    mqtt = Published()
    sender.connect(mqtt)
    return Notifier(db, book, sender, mqtt)


async def settled(n: Notifier) -> None:
    """Until every notification is delivered and recorded so."""
    await wait_until(lambda: n.book.store.outbox.pending() == 0)


@asynccontextmanager
async def running(n: Notifier) -> AsyncIterator[None]:
    async with httpx.AsyncClient() as http:
        task = asyncio.create_task(n.sender.run(http))
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def offline(at: datetime, device: str = "seat-0001", *, active: bool = True) -> Observation:
    return Observation(
        rule="device_offline",
        site="main",
        subject=device,
        active=active,
        at=at,
        severity=Severity.WARNING,
        message=f"{device} is offline",
    )


# -- pure parts --------------------------------------------------------------------------


def test_the_signature_is_an_hmac_sha256_of_the_raw_body() -> None:
    body = b'{"kind":"opened"}'
    signature = sign(SECRET, body)
    assert signature.startswith("sha256=") and len(signature) == 7 + 64
    assert verify(SECRET, body, signature)
    assert not verify(SECRET, body + b" ", signature)
    assert not verify("another secret of some length", body, signature)


def test_retries_back_off_with_jitter_and_refusals_wait_longer() -> None:
    s = NotifySettings()
    rng = random.Random(1)
    soon = [retry_delay(n, s, status=503, rng=rng) for n in range(12)]
    assert 0.5 <= soon[0] <= 1.0 and soon[3] > soon[0]
    assert max(soon) <= s.retry_cap
    assert all(retry_delay(0, s, status=st, rng=rng) <= 1.0 for st in (None, 408, 429, 500))
    refused = retry_delay(0, s, status=404, rng=rng)
    assert refused >= s.rejected_first / 2
    assert retry_delay(40, s, status=400, rng=rng) <= s.rejected_cap


def from_env(env: dict[str, str]) -> NotifySettings:
    return notify_settings(AlertServiceSettings.from_env(env))


def test_webhook_settings_from_the_environment() -> None:
    env = {"STACKPULSE_ALERT_WEBHOOKS": "https://a.example/h, http://b.example/x"}
    with pytest.raises(ValueError, match="STACKPULSE_ALERTS_WEBHOOK_SECRET"):
        from_env(env)
    s = from_env({**env, "STACKPULSE_ALERT_WEBHOOK_SECRET": SECRET})
    assert s.webhooks == ("https://a.example/h", "http://b.example/x")
    assert SECRET not in repr(s) and SECRET not in repr(AlertServiceSettings.from_env(env))
    with pytest.raises(ValueError, match="http"):
        from_env({"STACKPULSE_ALERTS_WEBHOOKS": "ftp://x/y"})
    with pytest.raises(ValueError, match="STACKPULSE_ALERT_WEBHOOK_TIMEOUT='soon'"):
        from_env({"STACKPULSE_ALERT_WEBHOOK_TIMEOUT": "soon"})
    assert from_env({}).webhooks == ()


def test_alert_topics_keep_to_one_level_per_part() -> None:
    assert alert_topic("lib/v1", "main", "device_offline", "seat-1") == (
        "lib/v1/main/_alerts/device_offline/seat-1"
    )
    assert alert_topic("lib/v1", "main", "r", "a/b+#") == "lib/v1/main/_alerts/r/a_b__"
    assert transitions_topic("lib/v1", "main") == "lib/v1/main/_alerts/_transitions"


# -- against a real receiver and a real database -------------------------------------------


def check_signed(r: Received) -> dict[str, object]:
    """What a receiver does with one delivery: verify, then read."""
    assert r.headers["Content-Type"] == "application/json"
    assert verify(SECRET, r.body, r.headers[SIGNATURE_HEADER])
    sent_at = datetime.fromisoformat(r.headers[TIMESTAMP_HEADER])
    assert abs(datetime.now(UTC) - sent_at) < timedelta(minutes=1)
    body: dict[str, object] = json.loads(r.body)
    assert r.headers[EVENT_HEADER] == body["event_id"]
    return body


async def test_a_transition_goes_to_mqtt_and_to_every_webhook_signed(
    receiver: Receiver,
) -> None:
    other = Receiver()
    other.start()
    try:
        n = notifier_over(StateDB.open("sqlite://"), fast(receiver.url, other.url))
        async with running(n):
            now = datetime.now(UTC)
            [opened] = await asyncio.to_thread(n.book.apply, offline(now))
            n.sender.wake.set()
            await wait_until(lambda: len(receiver.requests) == 1 and len(other.requests) == 1)
            body = check_signed(receiver.requests[0])
            assert body["kind"] == "opened" and body["by"] is None
            alert = body["alert"]
            assert isinstance(alert, dict)
            assert alert["id"] == opened.alert.id and alert["state"] == "active_unack"
            assert {
                "id",
                "rule",
                "severity",
                "subject",
                "state",
                "opened_at",
                "acked_by",
                "cleared_at",
            } <= set(alert)
            assert other.requests[0].body == receiver.requests[0].body  # one body, every URL

            await wait_until(lambda: len(n.mqtt.messages) == 2)
            retained = [(t, json.loads(b)) for t, b, keep in n.mqtt.messages if keep]
            events = [(t, json.loads(b)) for t, b, keep in n.mqtt.messages if not keep]
            assert retained == [
                (alert_topic(ROOT, "main", "device_offline", "seat-0001"), retained[0][1])
            ]
            assert retained[0][1]["state"] == "active_unack"
            assert events == [(transitions_topic(ROOT, "main"), body)]

            # Acked by a user: notified too, with who did it; the retained state follows.
            await asyncio.to_thread(n.book.ack, opened.alert.id, "ana", datetime.now(UTC))
            n.sender.wake.set()
            await wait_until(lambda: len(receiver.requests) == 2)
            acked = check_signed(receiver.requests[1])
            assert acked["kind"] == "acked" and acked["by"] == "ana"
            assert acked["event_id"] != body["event_id"]
            await wait_until(lambda: len(n.mqtt.messages) == 4)
            state = [json.loads(b) for _t, b, keep in n.mqtt.messages if keep][-1]
            assert state["state"] == "active_ack" and state["acked_by"] == "ana"

            # Cleared when the condition ends: the retained alert is removed (empty payload).
            await asyncio.to_thread(n.book.apply, offline(datetime.now(UTC), active=False))
            n.sender.wake.set()
            await wait_until(lambda: len(n.mqtt.messages) == 6)
            assert [b for _t, b, keep in n.mqtt.messages if keep][-1] == b""
            await settled(n)
        assert n.sender.failures == 0
        assert await asyncio.to_thread(n.book.store.outbox.pending) == 0
    finally:
        other.stop()


async def test_a_receiver_answering_500_gets_it_again_until_it_answers_2xx(
    receiver: Receiver,
) -> None:
    receiver.statuses = [500, 503, 200]
    n = notifier_over(StateDB.open("sqlite://"), fast(receiver.url))
    async with running(n):
        await asyncio.to_thread(n.book.apply, offline(datetime.now(UTC)))
        n.sender.wake.set()
        await wait_until(lambda: len(receiver.requests) == 3)
        await settled(n)  # the fan-out, two MQTT messages, the webhook
        await asyncio.sleep(0.3)
    assert len(receiver.requests) == 3  # delivered once answered 200, never again
    bodies = [r.body for r in receiver.requests]
    assert bodies[0] == bodies[1] == bodies[2]
    assert all(
        verify(SECRET, b, r.headers[SIGNATURE_HEADER])
        for b, r in zip(bodies, receiver.requests, strict=True)
    )
    assert n.sender.failures == 2
    assert await asyncio.to_thread(n.book.store.outbox.pending) == 0


async def test_a_refusing_receiver_is_retried_slowly_and_logged_once(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.statuses = [404, 404, 404]
    settings = fast(receiver.url, rejected_first=0.4, rejected_cap=0.4)
    n = notifier_over(StateDB.open("sqlite://"), settings)
    caplog.set_level(logging.WARNING, "stackpulse.alerts.notify")
    async with running(n):
        await asyncio.to_thread(n.book.apply, offline(datetime.now(UTC)))
        n.sender.wake.set()
        await wait_until(lambda: len(receiver.requests) == 1)
        await asyncio.sleep(0.15)
        assert len(receiver.requests) == 1  # not at the pace of a 5xx (50 ms)
        await wait_until(lambda: len(receiver.requests) == 4, seconds=5)
        await settled(n)
    refusals = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 1
    assert "/hooks/stackpulse" in refusals[0].getMessage()
    assert await asyncio.to_thread(n.book.store.outbox.pending) == 0


async def test_notifications_waiting_for_a_receiver_survive_a_restart(tmp_path: Path) -> None:
    """The receiver is down; the sender stops; both come back: it still gets every alert."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    receiver = Receiver()  # not started: connections are refused
    db = StateDB.open(url)
    n = notifier_over(db, fast(receiver.url))
    async with running(n):
        for device in ("seat-0001", "seat-0002"):
            await asyncio.to_thread(n.book.apply, offline(datetime.now(UTC), device))
        n.sender.wake.set()
        # Everything but the two webhooks is delivered; they failed and wait.
        await wait_until(lambda: n.sender.failures >= 2 and n.book.store.outbox.pending() == 2)
    db.close()

    receiver.start()
    try:
        again = notifier_over(StateDB.open(url), fast(receiver.url))
        async with running(again):
            await wait_until(lambda: len(receiver.requests) == 2)
            await settled(again)
        subjects = sorted(check_signed(r)["alert"]["subject"] for r in receiver.requests)  # type: ignore[index]
        assert subjects == ["seat-0001", "seat-0002"]
        assert await asyncio.to_thread(again.book.store.outbox.pending) == 0
        again.db.close()
    finally:
        receiver.stop()


async def test_mqtt_notifications_wait_for_the_broker_without_holding_up_webhooks(
    receiver: Receiver,
) -> None:
    n = notifier_over(StateDB.open("sqlite://"), fast(receiver.url))
    n.mqtt.down = True
    async with running(n):
        await asyncio.to_thread(n.book.apply, offline(datetime.now(UTC)))
        n.sender.wake.set()
        await wait_until(lambda: len(receiver.requests) == 1)
        assert n.mqtt.messages == []
        n.mqtt.down = False
        await wait_until(lambda: len(n.mqtt.messages) == 2)
        await settled(n)
    assert await asyncio.to_thread(n.book.store.outbox.pending) == 0
