"""The alert lifecycle on a real SQLite: open, refresh, auto-clear, ack, clear, escalation,
history and outbox; and a hypothesis state machine against a small reference model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)

from stackpulse.kernel.statedb import StateDB
from stackpulse.services.alerts.lifecycle import (
    ALLOWED,
    AlertBook,
    AlertNotFound,
    InvalidTransition,
    raise_severity,
)
from stackpulse.services.alerts.logic import RuleEngine
from stackpulse.services.alerts.model import AlertState, DeviceSeen, Observation, Severity
from stackpulse.services.alerts.settings import AlertSettings
from stackpulse.services.alerts.store import AlertStore
from tests.test_alert_rules import LAYOUT

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
SETTINGS = AlertSettings()


@pytest.fixture
def book(tmp_path: Path) -> Iterator[AlertBook]:
    with StateDB.open(f"sqlite://{tmp_path / 'state.db'}") as db:
        yield AlertBook(AlertStore(db), SETTINGS)


def obs(
    active: bool = True,
    at: datetime = T0,
    *,
    rule: str = "battery_low",
    subject: str = "seat-0001",
    site: str = "main",
    severity: Severity = Severity.WARNING,
    message: str = "Seat sensor seat-0001: battery at 20%",
) -> Observation:
    return Observation(rule, site, subject, active, at, severity, message, {"battery": 0.2})


def test_an_observation_opens_one_alert_with_history_and_a_queued_notification(
    book: AlertBook,
) -> None:
    [t] = book.apply(obs())
    alert = t.alert
    assert t.kind == "opened" and t.before is None and t.by is None and t.at == T0
    assert len(alert.id) == 32 and int(alert.id, 16) >= 0
    assert alert.state is AlertState.ACTIVE_UNACK and alert.severity is Severity.WARNING
    assert (alert.opened_at, alert.updated_at, alert.last_seen_at, alert.repeats) == (T0, T0, T0, 0)
    assert alert.detail == {"battery": 0.2}
    assert book.get(alert.id) == alert
    assert book.history(alert.id) == [t]
    [entry] = book.store.outbox.due(T0)
    assert entry.channel == "transition" and entry.target == "main" and entry.attempts == 0
    body = json.loads(entry.body)
    assert body["kind"] == "opened" and body["alert"]["id"] == alert.id
    assert body["cursor"] == book.last_cursor() and body["after"] == "active_unack"


def test_a_repeat_refreshes_the_open_alert_without_a_transition(book: AlertBook) -> None:
    [t] = book.apply(obs())
    assert book.apply(obs(at=T0 + MIN, message="battery at 19%")) == []
    assert book.apply(obs(at=T0 + 2 * MIN)) == []
    alert = book.get(t.alert.id)
    assert alert is not None
    assert alert.repeats == 2 and alert.last_seen_at == T0 + 2 * MIN
    assert alert.updated_at == T0 + 2 * MIN and alert.opened_at == T0
    assert len(book.list()) == 1 and len(book.history(alert.id)) == 1
    assert book.store.outbox.pending() == 1


def test_the_condition_ending_clears_automatically_then_staff_ack(book: AlertBook) -> None:
    [t] = book.apply(obs())
    [cleared] = book.apply(obs(active=False, at=T0 + 5 * MIN))
    assert cleared.kind == "cleared" and cleared.by is None
    assert cleared.before is AlertState.ACTIVE_UNACK
    assert cleared.alert.state is AlertState.CLEARED_UNACK
    assert cleared.alert.cleared_by is None and cleared.alert.cleared_at == T0 + 5 * MIN
    assert book.apply(obs(active=False, at=T0 + 6 * MIN)) == []  # nothing left to clear
    acked = book.ack(t.alert.id, "ana", T0 + 7 * MIN)
    assert acked.state is AlertState.CLEARED_ACK and acked.acked_by == "ana"
    assert [h.kind for h in book.history(t.alert.id)] == ["opened", "cleared", "acked"]
    [again] = book.apply(obs(at=T0 + 8 * MIN))  # a new occurrence: a new alert
    assert again.kind == "opened" and again.alert.id != t.alert.id


def test_ack_then_clear_records_who_and_when(book: AlertBook) -> None:
    [t] = book.apply(obs())
    acked = book.ack(t.alert.id, "ana", T0 + MIN)
    assert acked.state is AlertState.ACTIVE_ACK
    assert (acked.acked_by, acked.acked_at, acked.updated_at) == ("ana", T0 + MIN, T0 + MIN)
    assert book.ack(t.alert.id, "ben", T0 + 2 * MIN) == acked  # a no-op, no history
    cleared = book.clear(t.alert.id, "ben", T0 + 3 * MIN)
    assert cleared.state is AlertState.CLEARED_ACK
    assert (cleared.cleared_by, cleared.cleared_at, cleared.acked_by) == (
        "ben",
        T0 + 3 * MIN,
        "ana",
    )
    history = book.history(t.alert.id)
    assert [(h.kind, h.by, h.before) for h in history] == [
        ("opened", None, None),
        ("acked", "ana", AlertState.ACTIVE_UNACK),
        ("cleared", "ben", AlertState.ACTIVE_ACK),
    ]
    with pytest.raises(InvalidTransition, match="already cleared"):
        book.clear(t.alert.id, "ben", T0 + 4 * MIN)


def test_unknown_alerts_and_nameless_users_are_refused(book: AlertBook) -> None:
    with pytest.raises(AlertNotFound):
        book.ack("0" * 32, "ana", T0)
    with pytest.raises(AlertNotFound):
        book.clear("nope", "ana", T0)
    [t] = book.apply(obs())
    with pytest.raises(InvalidTransition):
        book.ack(t.alert.id, " ", T0)
    assert book.get("nope") is None and book.history("nope") == []


def test_a_manual_clear_while_the_condition_holds_stays_cleared_until_it_ends(
    book: AlertBook,
) -> None:
    [t] = book.apply(obs())
    cleared = book.clear(t.alert.id, "ana", T0 + MIN)
    assert cleared.state is AlertState.CLEARED_UNACK and cleared.cleared_by == "ana"
    assert book.apply(obs(at=T0 + 2 * MIN)) == []  # still true: no new alert
    assert book.get(t.alert.id) == cleared  # and the cleared one is left alone
    assert book.apply(obs(active=False, at=T0 + 3 * MIN)) == []  # ended: the latch goes
    [fresh] = book.apply(obs(at=T0 + 4 * MIN))
    assert fresh.kind == "opened" and fresh.alert.id != t.alert.id
    assert len(book.list(states=[AlertState.ACTIVE_UNACK])) == 1


def test_nobody_acking_escalates_once_then_renotifies(book: AlertBook) -> None:
    [t] = book.apply(obs(severity=Severity.INFO))
    assert book.tick(T0 + 14 * MIN) == []
    [esc] = book.tick(T0 + 15 * MIN)
    assert esc.kind == "escalated" and esc.by is None and esc.before is AlertState.ACTIVE_UNACK
    assert esc.alert.severity is Severity.WARNING and esc.alert.escalations == 1
    assert book.tick(T0 + 44 * MIN) == []
    [re1] = book.tick(T0 + 45 * MIN)
    assert re1.kind == "renotified" and re1.alert.severity is Severity.WARNING
    [re2] = book.tick(T0 + 5 * 60 * MIN)  # after a long outage: once, not ten times
    assert re2.kind == "renotified"
    assert book.tick(T0 + 5 * 60 * MIN + MIN) == []
    book.ack(t.alert.id, "ana", T0 + 6 * 60 * MIN)
    assert book.tick(T0 + 24 * 60 * MIN) == []
    kinds = [h.kind for h in book.history(t.alert.id)]
    assert kinds == ["opened", "escalated", "renotified", "renotified", "acked"]


def test_acked_or_cleared_alerts_do_not_escalate_and_critical_stays_critical(
    book: AlertBook,
) -> None:
    [a] = book.apply(obs(subject="a"))
    [b] = book.apply(obs(subject="b"))
    [c] = book.apply(obs(subject="c", severity=Severity.CRITICAL))
    book.ack(a.alert.id, "ana", T0 + MIN)
    book.apply(obs(subject="b", active=False, at=T0 + MIN))
    [esc] = book.tick(T0 + 20 * MIN)
    assert esc.alert.id == c.alert.id and esc.alert.severity is Severity.CRITICAL
    assert raise_severity(Severity.INFO) is Severity.WARNING
    assert b.alert.id != esc.alert.id


def test_a_worse_band_from_the_rule_raises_severity_at_once_and_never_lowers(
    book: AlertBook,
) -> None:
    [t] = book.apply(obs())
    [up] = book.apply(obs(at=T0 + MIN, severity=Severity.CRITICAL, message="battery at 8%"))
    assert up.kind == "escalated" and up.alert.severity is Severity.CRITICAL
    assert up.alert.message == "battery at 8%" and up.alert.escalations == 0
    assert book.apply(obs(at=T0 + 2 * MIN, severity=Severity.WARNING)) == []
    alert = book.get(t.alert.id)
    assert alert is not None and alert.severity is Severity.CRITICAL


def test_an_end_older_than_the_alert_does_not_clear_it(book: AlertBook) -> None:
    [t] = book.apply(obs(at=T0 + 10 * MIN))
    assert book.apply(obs(active=False, at=T0)) == []
    assert book.get(t.alert.id) == t.alert


def test_list_filters_and_transitions_since_follow_a_cursor(book: AlertBook) -> None:
    [a] = book.apply(obs(subject="a", site="main"))
    [b] = book.apply(obs(subject="b", site="law", at=T0 + MIN, rule="device_offline"))
    book.apply(obs(subject="c", site="main", at=T0 + 2 * MIN, severity=Severity.CRITICAL))
    book.ack(a.alert.id, "ana", T0 + 3 * MIN)
    assert [x.subject for x in book.list()] == ["c", "b", "a"]  # newest first
    assert [x.subject for x in book.list(site="main")] == ["c", "a"]
    assert [x.subject for x in book.list(states=[AlertState.ACTIVE_ACK])] == ["a"]
    assert [x.subject for x in book.list(rule="device_offline")] == ["b"]
    assert [x.subject for x in book.list(severity=Severity.CRITICAL)] == ["c"]
    assert [x.subject for x in book.list(limit=1)] == ["c"]
    assert book.list(states=[]) == []

    cursor, got = book.transitions_since(0)
    assert [(t.kind, t.alert.subject) for t in got] == [
        ("opened", "a"),
        ("opened", "b"),
        ("opened", "c"),
        ("acked", "a"),
    ]
    assert cursor == book.last_cursor()
    assert book.transitions_since(cursor) == (cursor, [])
    _, law = book.transitions_since(0, site="law")
    assert [t.alert.id for t in law] == [b.alert.id]
    first, page = book.transitions_since(0, limit=2)
    assert len(page) == 2 and book.transitions_since(first)[1][0].alert.subject == "c"


def test_the_outbox_retries_and_forgets_what_was_delivered(book: AlertBook) -> None:
    box = book.store.outbox
    n = box.enqueue("webhook", "https://example.org/hook", b"{}", alert_id=None, at=T0)
    [entry] = box.due(T0)
    assert (entry.id, entry.channel, entry.body, entry.created_at) == (n, "webhook", b"{}", T0)
    box.failed(n, T0, T0 + 5 * MIN, "HTTP 503\nmore")
    assert box.due(T0 + 4 * MIN) == []
    [retry] = box.due(T0 + 5 * MIN)
    assert retry.attempts == 1 and retry.next_at == T0 + 5 * MIN
    box.delivered(n, T0 + 6 * MIN)
    assert box.due(T0 + 60 * MIN) == [] and box.pending() == 0
    assert box.purge_delivered(T0 + 7 * MIN) == 1


# ---- the state machine -----------------------------------------------------------------

KEYS = [("battery_low", "s1"), ("battery_low", "s2"), ("device_offline", "s1")]
SEVERITIES = [Severity.INFO, Severity.WARNING, Severity.CRITICAL]


@dataclass
class RefAlert:
    key: tuple[str, str]
    state: AlertState
    severity: Severity
    escalations: int = 0
    due: datetime | None = None
    history: list[str] = field(default_factory=list)


class AlertModel(RuleBasedStateMachine):
    """AlertBook against a reference: one active alert per key, complete ordered history,
    only allowed edges, escalation timing."""

    alerts = Bundle("alerts")

    def __init__(self) -> None:
        super().__init__()
        self.db = StateDB.open("sqlite:///:memory:")
        self.book = AlertBook(AlertStore(self.db), SETTINGS)
        self.now = T0
        self.ref: dict[str, RefAlert] = {}
        self.keys: dict[tuple[str, str], tuple[str, bool]] = {}  # key -> (alert id, latched)
        self.transitions = 0

    def teardown(self) -> None:
        self.db.close()

    @initialize()
    def start(self) -> None:
        assert self.book.list() == []

    def _advance(self, minutes: int) -> None:
        self.now += timedelta(minutes=minutes)

    @rule(
        target=alerts,
        key=st.sampled_from(KEYS),
        active=st.booleans(),
        severity=st.sampled_from(SEVERITIES),
        minutes=st.integers(0, 20),
    )
    def observe(self, key: tuple[str, str], active: bool, severity: Severity, minutes: int) -> str:
        self._advance(minutes)
        o = Observation(key[0], "main", key[1], active, self.now, severity, "m", {})
        got = self.book.apply(o)
        self.transitions += len(got)
        held = self.keys.get(key)
        expected: list[str] = []
        if held is None:
            if active:
                assert len(got) == 1
                new = got[0].alert
                self.ref[new.id] = RefAlert(
                    key, AlertState.ACTIVE_UNACK, severity, due=self.now + SETTINGS.escalate_after
                )
                self.keys[key] = (new.id, False)
                expected = ["opened"]
        else:
            alert_id, latched = held
            a = self.ref[alert_id]
            if latched:
                if not active:
                    del self.keys[key]
            elif active:
                if severity.rank > a.severity.rank:
                    a.severity = severity
                    expected = ["escalated"]
            else:
                a.state = (
                    AlertState.CLEARED_ACK
                    if a.state is AlertState.ACTIVE_ACK
                    else AlertState.CLEARED_UNACK
                )
                a.due = None
                del self.keys[key]
                expected = ["cleared"]
        assert [t.kind for t in got] == expected
        for t in got:
            self.ref[t.alert.id].history.append(t.kind)
        return got[0].alert.id if got else (held[0] if held else "0" * 32)

    @rule(alert_id=alerts, minutes=st.integers(0, 20))
    def ack(self, alert_id: str, minutes: int) -> None:
        self._advance(minutes)
        before = len(self.book.history(alert_id))
        if alert_id not in self.ref:
            with pytest.raises(AlertNotFound):
                self.book.ack(alert_id, "ana", self.now)
            return
        a = self.ref[alert_id]
        changes = not a.state.acked
        got = self.book.ack(alert_id, "ana", self.now)
        if changes:
            a.state = AlertState.ACTIVE_ACK if a.state.active else AlertState.CLEARED_ACK
            a.due = None
            a.history.append("acked")
            self.transitions += 1
        assert got.state is a.state and got.acked_by == "ana"
        assert len(self.book.history(alert_id)) == before + changes

    @rule(alert_id=alerts, minutes=st.integers(0, 20))
    def clear(self, alert_id: str, minutes: int) -> None:
        self._advance(minutes)
        if alert_id not in self.ref:
            with pytest.raises(AlertNotFound):
                self.book.clear(alert_id, "ben", self.now)
            return
        a = self.ref[alert_id]
        if not a.state.active:
            with pytest.raises(InvalidTransition):
                self.book.clear(alert_id, "ben", self.now)
            return
        got = self.book.clear(alert_id, "ben", self.now)
        a.state = AlertState.CLEARED_ACK if a.state.acked else AlertState.CLEARED_UNACK
        a.due = None
        a.history.append("cleared")
        self.transitions += 1
        if self.keys.get(a.key, ("", False))[0] == alert_id:
            self.keys[a.key] = (alert_id, True)
        assert got.state is a.state and got.cleared_by == "ben"

    @rule(minutes=st.integers(0, 40))
    def tick(self, minutes: int) -> None:
        self._advance(minutes)
        got = self.book.tick(self.now)
        self.transitions += len(got)
        expected: list[tuple[str, str]] = []
        for alert_id in sorted(self.ref):
            a = self.ref[alert_id]
            if a.state is not AlertState.ACTIVE_UNACK or a.due is None or a.due > self.now:
                continue
            if a.escalations == 0:
                a.escalations = 1
                a.severity = raise_severity(a.severity)
                expected.append((alert_id, "escalated"))
            else:
                expected.append((alert_id, "renotified"))
            a.due = self.now + SETTINGS.renotify_every
            a.history.append(expected[-1][1])
        assert sorted((t.alert.id, t.kind) for t in got) == sorted(expected)

    @invariant()
    def matches_the_reference(self) -> None:
        stored = {a.id: a for a in self.book.list(limit=10_000)}
        assert set(stored) == set(self.ref)
        for alert_id, a in self.ref.items():
            got = stored[alert_id]
            assert (got.state, got.severity, got.escalations) == (
                a.state,
                a.severity,
                a.escalations,
            )

    @invariant()
    def one_active_alert_per_key(self) -> None:
        active = [(a.rule, a.subject) for a in self.book.list(limit=10_000) if a.state.active]
        assert len(active) == len(set(active))

    @invariant()
    def history_is_complete_ordered_and_on_allowed_edges(self) -> None:
        _, everything = self.book.transitions_since(0, limit=100_000)
        assert len(everything) == self.transitions == self.book.store.outbox.pending()
        by_alert: dict[str, list[str]] = {}
        last_state: dict[str, AlertState] = {}
        last_at: dict[str, datetime] = {}
        for t in everything:
            assert (t.before, t.alert.state) in ALLOWED
            assert t.before == last_state.get(t.alert.id)
            assert t.at >= last_at.get(t.alert.id, t.at)
            last_state[t.alert.id], last_at[t.alert.id] = t.alert.state, t.at
            by_alert.setdefault(t.alert.id, []).append(t.kind)
        for alert_id, a in self.ref.items():
            assert by_alert[alert_id] == a.history
            assert by_alert[alert_id][0] == "opened"


AlertModel.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestAlertModel = AlertModel.TestCase


def test_a_device_clock_behind_still_clears_what_silence_opened(book: AlertBook) -> None:
    """Silence opens on the service's clock; the device's next message carries its own,
    older time. The end must still clear the alert (it once stayed open for good while
    the device kept sending: the lifecycle ignores ends older than the alert)."""
    engine = RuleEngine([LAYOUT], SETTINGS)
    engine.tick(T0)
    engine.observe(DeviceSeen("main", "gate", "gate-main-1", T0))
    silent_at = T0 + 3 * MIN + timedelta(seconds=1)
    for o in engine.tick(silent_at):
        book.apply(o)
    (opened,) = book.list(rule="device_silent")
    assert opened.state is AlertState.ACTIVE_UNACK
    # The gate talks again; its clock (and the pipeline) is two minutes behind ours.
    for o in engine.observe(DeviceSeen("main", "gate", "gate-main-1", silent_at - 2 * MIN)):
        book.apply(o)
    after = book.get(opened.id)
    assert after is not None and after.state is AlertState.CLEARED_UNACK
    assert after.cleared_at is not None and after.cleared_at >= opened.opened_at
