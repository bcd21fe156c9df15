"""Alerts in real SQLite and real PostgreSQL: round trips, two books racing on one database,
a restart that refreshes instead of reopening, and the outbox."""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from stackpulse.kernel.statedb import StateDB
from stackpulse.services.alerts.lifecycle import ALLOWED, AlertBook, InvalidTransition
from stackpulse.services.alerts.logic import RuleEngine
from stackpulse.services.alerts.model import (
    AlertState,
    DeviceSeen,
    Observation,
    Severity,
    Transition,
)
from stackpulse.services.alerts.settings import AlertSettings
from stackpulse.services.alerts.store import AlertStore
from tests.support.layouts import ONE_OF_EACH

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
SETTINGS = AlertSettings()


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)],
)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{tmp_path / 'state.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def db(db_url: str) -> Iterator[StateDB]:
    with StateDB.open(db_url) as opened:
        yield opened


def book_of(db: StateDB) -> AlertBook:
    return AlertBook(AlertStore(db), SETTINGS)


def obs(active: bool = True, at: datetime = T0, subject: str = "gate-1") -> Observation:
    return Observation(
        "device_offline",
        "main",
        subject,
        active,
        at,
        Severity.WARNING,
        "Gate counter gate-1 (outside → Floor 1) went offline at 18:00 — ünïcode ✓",
        {"device": subject, "nested": {"list": [1, 2.5, None, "x"]}},
    )


def race(workers: int, fn: Callable[[int], Any]) -> list[Any]:
    """Run fn(i) in `workers` threads released together; their results; re-raise errors."""
    barrier = threading.Barrier(workers)
    results: list[Any] = [None] * workers
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[i] = fn(i)
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    if errors:
        raise errors[0]
    return results


def test_an_alert_round_trips_with_its_times_text_and_detail(db: StateDB) -> None:
    book = book_of(db)
    [t] = book.apply(obs())
    got = book.get(t.alert.id)
    assert got == t.alert
    assert got is not None and got.opened_at.tzinfo is not None
    assert book.history(t.alert.id) == [t]
    acked = book.ack(t.alert.id, "ana", T0 + timedelta(seconds=1, microseconds=250))
    assert book.get(t.alert.id) == acked
    assert book.list(site="main", states=[AlertState.ACTIVE_ACK]) == [acked]


def open_one(books: list[AlertBook], subject: str, i: int) -> list[Transition]:
    return books[i % 2].apply(obs(subject=subject, at=T0 + i * MIN))


def test_two_books_racing_to_open_the_same_alert_open_exactly_one(db_url: str) -> None:
    with StateDB.open(db_url) as first, StateDB.open(db_url) as second:
        books = [book_of(first), book_of(second)]
        for round_ in range(3):
            subject = f"gate-{round_}"
            results = race(8, functools.partial(open_one, books, subject))
            opened = [t for r in results for t in r]
            assert [t.kind for t in opened] == ["opened"]
            alerts = [a for a in books[1].list() if a.subject == subject]
            assert len(alerts) == 1 and alerts[0].repeats == 7
            assert len(books[1].history(alerts[0].id)) == 1
        assert len(books[0].list(states=[AlertState.ACTIVE_UNACK])) == 3


def test_acks_clears_and_observations_racing_leave_a_consistent_history(db_url: str) -> None:
    with StateDB.open(db_url) as first, StateDB.open(db_url) as second:
        service, api = book_of(first), book_of(second)
        [t] = service.apply(obs())
        alert_id = t.alert.id

        def act(i: int) -> object:
            at = T0 + (i + 1) * MIN
            if i % 3 == 0:
                return api.ack(alert_id, f"user{i}", at)
            if i % 3 == 1:
                try:
                    return api.clear(alert_id, f"user{i}", at)
                except InvalidTransition:
                    return None
            return service.apply(obs(active=i % 2 == 0, at=at))

        race(9, act)
        history = service.history(alert_id)
        assert history[0].kind == "opened"
        state: AlertState | None = None
        for h in history:
            assert (h.before, h.alert.state) in ALLOWED and h.before == state
            state = h.alert.state
        final = service.get(alert_id)
        assert final is not None and final.state is state
        assert [h.kind for h in history].count("cleared") == 1
        assert [h.kind for h in history].count("acked") == 1
        active = [a for a in service.list() if a.state.active]
        assert len(active) <= 1


def test_a_restarted_service_refreshes_the_open_alert_instead_of_opening_another(
    db_url: str,
) -> None:
    with StateDB.open(db_url) as db:
        [t] = book_of(db).apply(obs())
    with StateDB.open(db_url) as db:  # a new process: nothing in memory
        book = book_of(db)
        assert book.apply(obs(at=T0 + 5 * MIN)) == []
        [alert] = book.list()
        assert alert.id == t.alert.id and alert.repeats == 1
        assert alert.last_seen_at == T0 + 5 * MIN


def test_a_restart_of_rules_and_book_together_neither_loses_nor_doubles(db_url: str) -> None:
    """The service's whole path: a device goes offline, the service restarts (its rule
    state checkpointed in the same database, or lost), the device is still offline."""
    will = DeviceSeen("main", "gate", "gate-1", T0, online=False)
    with StateDB.open(db_url) as db:
        rules, book = RuleEngine([ONE_OF_EACH], SETTINGS), book_of(db)
        for o in rules.observe(will):
            book.apply(o)
        db.save_checkpoint("alerts/rules", json.dumps(rules.checkpoint()).encode())
    for keep_checkpoint in (True, False):
        with StateDB.open(db_url) as db:
            rules, book = RuleEngine([ONE_OF_EACH], SETTINGS), book_of(db)
            saved = db.load_checkpoint("alerts/rules")
            if keep_checkpoint and saved is not None:
                rules.restore(json.loads(saved))
            again = DeviceSeen("main", "gate", "gate-1", T0 + 2 * MIN, online=False)
            for o in rules.observe(again):
                assert book.apply(o) == []
            offline = book.list(rule="device_offline")
            assert len(offline) == 1 and offline[0].state is AlertState.ACTIVE_UNACK
    with StateDB.open(db_url) as db:  # back online after a checkpoint-less restart: cleared
        rules, book = RuleEngine([ONE_OF_EACH], SETTINGS), book_of(db)
        kinds = [
            t.kind
            for o in rules.observe(DeviceSeen("main", "gate", "gate-1", T0 + 3 * MIN))
            for t in book.apply(o)
        ]
        assert kinds == ["cleared"]
        assert book.list(states=[AlertState.ACTIVE_UNACK]) == []


def test_escalation_by_two_books_at_once_happens_once(db_url: str) -> None:
    with StateDB.open(db_url) as first, StateDB.open(db_url) as second:
        books = [book_of(first), book_of(second)]
        for i in range(5):
            books[0].apply(obs(subject=f"gate-{i}"))
        results = race(4, lambda i: books[i % 2].tick(T0 + 20 * MIN))
        escalated = sorted(t.alert.subject for r in results for t in r)
        assert escalated == [f"gate-{i}" for i in range(5)]
        assert all(a.escalations == 1 for a in books[1].list())


def test_every_transition_is_in_the_outbox_in_order(db: StateDB) -> None:
    book = book_of(db)
    [t] = book.apply(obs())
    book.ack(t.alert.id, "ana", T0 + MIN)
    book.apply(obs(active=False, at=T0 + 2 * MIN))
    entries = book.store.outbox.due(T0 + 10 * MIN)
    bodies = [json.loads(e.body) for e in entries]
    assert [b["kind"] for b in bodies] == ["opened", "acked", "cleared"]
    assert [b["after"] for b in bodies] == ["active_unack", "active_ack", "cleared_ack"]
    cursors = [b["cursor"] for b in bodies]
    assert cursors == sorted(cursors) and cursors[-1] == book.last_cursor()
    assert all(e.channel == "transition" and e.target == "main" for e in entries)
    book.store.outbox.failed(entries[0].id, T0, T0 + 20 * MIN, "refused")
    assert [e.id for e in book.store.outbox.due(T0 + 10 * MIN)] == [e.id for e in entries[1:]]
    for e in entries:
        book.store.outbox.delivered(e.id, T0 + 30 * MIN)
    assert book.store.outbox.pending() == 0
