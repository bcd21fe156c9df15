"""The alert lifecycle: observations, acks and clears -> alerts and transitions, in the database.

States follow ThingsBoard's alarm model; acknowledging and clearing are separate:

    ACTIVE_UNACK --ack--> ACTIVE_ACK
        |                     |
      clear                 clear        (by a user, or automatically when the condition ends)
        v                     v
    CLEARED_UNACK --ack--> CLEARED_ACK

- One active alert per (rule, site, subject), enforced by the `alert_keys` primary key:
  a repeat refreshes the open alert (last_seen_at, repeats), never opens a second.
- Auto-clear (an observation with active=False) leaves cleared_by None.
- A manual clear while the condition still holds latches the key: the alert stays
  cleared and no new alert opens until the condition has been seen to end and hold
  again (a staff member who clears "low battery" does not want it back a minute later
  from the same reading; a new occurrence is a new alert).
- Nobody acks an active alert within `escalate_after`: it is escalated once (severity up
  one band, notified again), then re-notified every `renotify_every` while still
  active and unacked. A rule reporting a higher severity for an open alert raises it
  at once (an "escalated" transition by the system; `escalations` counts only the
  escalations for want of an ack). Severity never goes down while the alert is open.

There is no authority in memory: every call is one transaction that reads the current
rows, so the alerts service and the API process may share one database.
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Collection
from dataclasses import replace
from datetime import datetime

from stackpulse.services.alerts.model import (
    Alert,
    AlertState,
    Observation,
    Severity,
    Transition,
    TransitionKind,
)
from stackpulse.services.alerts.settings import AlertSettings
from stackpulse.services.alerts.store import AlertStore, AlertTx

__all__ = ["ALLOWED", "AlertBook", "AlertNotFound", "InvalidTransition", "raise_severity"]

# Every edge a transition may take: (before, after); "opened" has before None.
ALLOWED: frozenset[tuple[AlertState | None, AlertState]] = frozenset(
    {
        (None, AlertState.ACTIVE_UNACK),
        (AlertState.ACTIVE_UNACK, AlertState.ACTIVE_ACK),
        (AlertState.ACTIVE_UNACK, AlertState.CLEARED_UNACK),
        (AlertState.ACTIVE_ACK, AlertState.CLEARED_ACK),
        (AlertState.CLEARED_UNACK, AlertState.CLEARED_ACK),
        # escalated / renotified keep the state
        (AlertState.ACTIVE_UNACK, AlertState.ACTIVE_UNACK),
        (AlertState.ACTIVE_ACK, AlertState.ACTIVE_ACK),
    }
)

_ACKED = {
    AlertState.ACTIVE_UNACK: AlertState.ACTIVE_ACK,
    AlertState.CLEARED_UNACK: AlertState.CLEARED_ACK,
}
_CLEARED = {
    AlertState.ACTIVE_UNACK: AlertState.CLEARED_UNACK,
    AlertState.ACTIVE_ACK: AlertState.CLEARED_ACK,
}
_UP = {Severity.INFO: Severity.WARNING, Severity.WARNING: Severity.CRITICAL}
DUE_BATCH = 200  # escalations handled per tick at most; the rest wait for the next


class AlertNotFound(LookupError):
    """No alert has that id."""


class InvalidTransition(ValueError):
    """The alert cannot take that step from its state (e.g. clearing a cleared alert)."""


def raise_severity(severity: Severity) -> Severity:
    """One band up; critical stays critical."""
    return _UP.get(severity, severity)


def _worse(a: Severity, b: Severity) -> Severity:
    return a if a.rank >= b.rank else b


class AlertBook:
    """The alerts of every site: apply observations, ack, clear, escalate; read them back."""

    def __init__(self, store: AlertStore, settings: AlertSettings) -> None:
        self.store = store
        self.settings = settings

    # -- changes: each one transaction

    def apply(self, obs: Observation) -> list[Transition]:
        """Open, refresh or auto-clear the alert of (obs.rule, obs.site, obs.subject)."""
        if not obs.active and not self.store.has_key(obs.rule, obs.site, obs.subject):
            # Nothing open: skip the write transaction (restarted rules report every
            # subject's first "all well" once). A key taken meanwhile is simply newer.
            return []
        return self.store.transact(lambda tx: self._apply(tx, obs), doing="apply an observation")

    def ack(self, alert_id: str, who: str, at: datetime) -> Alert:
        """Acknowledge; acking an acked alert changes nothing and returns it."""
        _check_who(who)
        return self.store.transact(lambda tx: self._ack(tx, alert_id, who, at), doing="ack")

    def clear(self, alert_id: str, who: str, at: datetime) -> Alert:
        """Clear by hand; InvalidTransition if it is cleared already."""
        _check_who(who)
        return self.store.transact(lambda tx: self._clear(tx, alert_id, who, at), doing="clear")

    def tick(self, now: datetime) -> list[Transition]:
        """Escalate or re-notify the active unacked alerts whose time has come."""
        return self.store.transact(lambda tx: self._tick(tx, now), doing="escalate alerts")

    # -- reads

    def get(self, alert_id: str) -> Alert | None:
        return self.store.get(alert_id)

    def list(
        self,
        *,
        site: str | None = None,
        states: Collection[AlertState] | None = None,
        rule: str | None = None,
        severity: Severity | None = None,
        limit: int = 500,
    ) -> list[Alert]:
        return self.store.list(site=site, states=states, rule=rule, severity=severity, limit=limit)

    def history(self, alert_id: str) -> builtins.list[Transition]:
        return self.store.history(alert_id)

    def transitions_since(
        self, cursor: int, *, site: str | None = None, limit: int = 500
    ) -> tuple[int, builtins.list[Transition]]:
        return self.store.transitions_since(cursor, site=site, limit=limit)

    def last_cursor(self) -> int:
        """The newest history id (0 when none): where a live page starts following."""
        return self.store.last_cursor()

    # -- inside a transaction

    def _apply(self, tx: AlertTx, obs: Observation) -> builtins.list[Transition]:
        key = tx.key(obs.rule, obs.site, obs.subject)
        if key is None:
            return self._open(tx, obs) if obs.active else []
        stored = tx.lock(key.alert_id)
        again = tx.key(obs.rule, obs.site, obs.subject)  # as of now that we hold the lock
        if again != key:
            return self._apply(tx, obs)
        if stored is None:  # cannot happen with the foreign key; heal rather than fail
            tx.drop_key(obs.rule, obs.site, obs.subject)
            return self._open(tx, obs) if obs.active else []
        alert = stored.alert
        if key.latched or not alert.state.active:
            if not obs.active:
                tx.drop_key(obs.rule, obs.site, obs.subject)  # ended: a new one may open
            return []
        if obs.active:
            return self._refresh(tx, alert, stored.next_notify_at, obs)
        if obs.at < alert.opened_at:
            return []  # an end older than the alert itself says nothing about it
        cleared = replace(
            alert,
            state=_CLEARED[alert.state],
            cleared_by=None,
            cleared_at=obs.at,
            updated_at=obs.at,
        )
        tx.update(cleared, None)
        tx.drop_key(obs.rule, obs.site, obs.subject)
        return [_record(tx, cleared, "cleared", obs.at, None, alert.state)]

    def _open(self, tx: AlertTx, obs: Observation) -> builtins.list[Transition]:
        alert = Alert(
            id=uuid.uuid4().hex,
            rule=obs.rule,
            site=obs.site,
            subject=obs.subject,
            severity=obs.severity,
            state=AlertState.ACTIVE_UNACK,
            message=obs.message,
            opened_at=obs.at,
            updated_at=obs.at,
            last_seen_at=obs.at,
            repeats=0,
            detail=dict(obs.detail),
        )
        tx.insert(alert, obs.at + self.settings.escalate_after)
        tx.take_key(alert)  # loses to a concurrent opener: the whole call runs again
        return [_record(tx, alert, "opened", obs.at, None, None)]

    def _refresh(
        self, tx: AlertTx, alert: Alert, due: datetime | None, obs: Observation
    ) -> builtins.list[Transition]:
        severity = _worse(alert.severity, obs.severity)
        refreshed = replace(
            alert,
            severity=severity,
            message=obs.message,
            detail=dict(obs.detail),
            last_seen_at=max(alert.last_seen_at, obs.at),
            updated_at=max(alert.updated_at, obs.at),
            repeats=alert.repeats + 1,
        )
        tx.update(refreshed, due)
        if severity == alert.severity:
            return []  # a repeat: no transition, no notification
        return [_record(tx, refreshed, "escalated", obs.at, None, alert.state)]

    def _ack(self, tx: AlertTx, alert_id: str, who: str, at: datetime) -> Alert:
        stored = tx.lock(alert_id)
        if stored is None:
            raise AlertNotFound(f"no alert {alert_id!r}")
        alert = stored.alert
        if alert.state.acked:
            return alert
        acked = replace(alert, state=_ACKED[alert.state], acked_by=who, acked_at=at, updated_at=at)
        tx.update(acked, None)
        _record(tx, acked, "acked", at, who, alert.state)
        return acked

    def _clear(self, tx: AlertTx, alert_id: str, who: str, at: datetime) -> Alert:
        stored = tx.lock(alert_id)
        if stored is None:
            raise AlertNotFound(f"no alert {alert_id!r}")
        alert = stored.alert
        if not alert.state.active:
            by = alert.cleared_by or "automatically"
            raise InvalidTransition(f"alert {alert_id} is already cleared ({by})")
        cleared = replace(
            alert, state=_CLEARED[alert.state], cleared_by=who, cleared_at=at, updated_at=at
        )
        tx.update(cleared, None)
        tx.latch_key(cleared)
        _record(tx, cleared, "cleared", at, who, alert.state)
        return cleared

    def _tick(self, tx: AlertTx, now: datetime) -> builtins.list[Transition]:
        # Lock every due alert first (in id order), then write: the history lock taken by
        # the first record is never held while waiting for an alert's row.
        due = []
        for alert_id in sorted(tx.due(now, DUE_BATCH)):
            stored = tx.lock(alert_id)
            if stored is None or stored.next_notify_at is None or stored.next_notify_at > now:
                continue
            if stored.alert.state is AlertState.ACTIVE_UNACK:
                due.append(stored.alert)
        out: builtins.list[Transition] = []
        following = now + self.settings.renotify_every
        for alert in due:
            if alert.escalations == 0:
                escalated = replace(
                    alert, severity=raise_severity(alert.severity), escalations=1, updated_at=now
                )
                tx.update(escalated, following)
                out.append(_record(tx, escalated, "escalated", now, None, alert.state))
            else:
                renotified = replace(alert, updated_at=now)
                tx.update(renotified, following)
                out.append(_record(tx, renotified, "renotified", now, None, alert.state))
        return out


def _record(
    tx: AlertTx,
    alert: Alert,
    kind: TransitionKind,
    at: datetime,
    by: str | None,
    before: AlertState | None,
) -> Transition:
    transition = Transition(alert=alert, kind=kind, at=at, by=by, before=before)
    tx.record(transition)
    return transition


def _check_who(who: str) -> None:
    if not who or not who.strip():
        raise InvalidTransition("who must name the user")
