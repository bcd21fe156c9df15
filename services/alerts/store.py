"""Alerts, their history and the notification outbox in the state database (sync SQLAlchemy).

Every change happens inside `AlertStore.transact`: one transaction that reads the rows it
changes under a lock (PostgreSQL: SELECT ... FOR UPDATE; SQLite: BEGIN IMMEDIATE), and is
run again from the start when it loses a race (a unique key taken, a deadlock, a busy
database). Async callers use asyncio.to_thread.
"""

from __future__ import annotations

import builtins
import json
import logging
import random
import threading
import time
import weakref
from collections.abc import Callable, Collection, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, and_, func, insert, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from stackpulse.kernel.statedb import (
    StateDB,
    StateDBError,
    alert_history,
    alert_keys,
    alerts,
    outbox,
)
from stackpulse.services.alerts.model import Alert, AlertState, Severity, Transition

__all__ = [
    "AlertStore",
    "AlertTx",
    "KeyRow",
    "Outbox",
    "OutboxEntry",
    "Stored",
    "alert_from_json",
    "alert_json",
    "transition_json",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

ATTEMPTS = 12  # a transaction that loses this many races in a row is a real problem
TRANSITION_CHANNEL = "transition"
HISTORY_LOCK = 0x5354_4B50_414C_5254  # "STKPALRT": the key of a PostgreSQL advisory lock


# -- JSON forms (history snapshots, outbox bodies; the routes may use them too) -----------


def _ts(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse_ts(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(str(value)).astimezone(UTC)


def _utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything stored here is UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _utc_or_none(value: datetime | None) -> datetime | None:
    return None if value is None else _utc(value)


def alert_json(alert: Alert) -> dict[str, Any]:
    """The alert as JSON-ready values; times RFC 3339 UTC with microseconds."""
    return {
        "id": alert.id,
        "rule": alert.rule,
        "site": alert.site,
        "subject": alert.subject,
        "severity": alert.severity.value,
        "state": alert.state.value,
        "message": alert.message,
        "opened_at": _ts(alert.opened_at),
        "updated_at": _ts(alert.updated_at),
        "last_seen_at": _ts(alert.last_seen_at),
        "repeats": alert.repeats,
        "acked_by": alert.acked_by,
        "acked_at": _ts(alert.acked_at),
        "cleared_by": alert.cleared_by,
        "cleared_at": _ts(alert.cleared_at),
        "escalations": alert.escalations,
        "detail": alert.detail,
    }


def alert_from_json(data: dict[str, Any]) -> Alert:
    opened, updated, seen = (
        _parse_ts(data["opened_at"]),
        _parse_ts(data["updated_at"]),
        _parse_ts(data["last_seen_at"]),
    )
    assert opened is not None and updated is not None and seen is not None
    return Alert(
        id=data["id"],
        rule=data["rule"],
        site=data["site"],
        subject=data["subject"],
        severity=Severity(data["severity"]),
        state=AlertState(data["state"]),
        message=data["message"],
        opened_at=opened,
        updated_at=updated,
        last_seen_at=seen,
        repeats=int(data["repeats"]),
        acked_by=data.get("acked_by"),
        acked_at=_parse_ts(data.get("acked_at")),
        cleared_by=data.get("cleared_by"),
        cleared_at=_parse_ts(data.get("cleared_at")),
        escalations=int(data.get("escalations", 0)),
        detail=dict(data.get("detail") or {}),
    )


def transition_json(t: Transition, cursor: int | None = None) -> dict[str, Any]:
    """A transition as notified: `cursor` is its history row id (what live pages resume from)."""
    return {
        "cursor": cursor,
        "kind": t.kind,
        "at": _ts(t.at),
        "by": t.by,
        "before": None if t.before is None else t.before.value,
        "after": t.alert.state.value,
        "alert": alert_json(t.alert),
    }


# -- rows -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyRow:
    """The open condition of one (rule, site, subject)."""

    alert_id: str
    latched: bool  # cleared by hand while the condition held


@dataclass(frozen=True, slots=True)
class Stored:
    alert: Alert
    next_notify_at: datetime | None  # when escalation or re-notification is due


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    id: int
    channel: str
    target: str
    body: bytes
    attempts: int
    next_at: datetime
    created_at: datetime


def _alert_row(alert: Alert, next_notify_at: datetime | None) -> dict[str, Any]:
    return {
        "id": alert.id,
        "rule": alert.rule,
        "site": alert.site,
        "subject": alert.subject,
        "severity": alert.severity.value,
        "state": alert.state.value,
        "message": alert.message,
        "opened_at": _utc(alert.opened_at),
        "updated_at": _utc(alert.updated_at),
        "last_seen_at": _utc(alert.last_seen_at),
        "repeats": alert.repeats,
        "acked_by": alert.acked_by,
        "acked_at": _utc_or_none(alert.acked_at),
        "cleared_by": alert.cleared_by,
        "cleared_at": _utc_or_none(alert.cleared_at),
        "escalations": alert.escalations,
        "detail": json.dumps(alert.detail, sort_keys=True, default=str),
        "next_notify_at": _utc_or_none(next_notify_at),
    }


def _alert(row: Any) -> Alert:
    return Alert(
        id=row["id"],
        rule=row["rule"],
        site=row["site"],
        subject=row["subject"],
        severity=Severity(row["severity"]),
        state=AlertState(row["state"]),
        message=row["message"],
        opened_at=_utc(row["opened_at"]),
        updated_at=_utc(row["updated_at"]),
        last_seen_at=_utc(row["last_seen_at"]),
        repeats=row["repeats"],
        acked_by=row["acked_by"],
        acked_at=_utc_or_none(row["acked_at"]),
        cleared_by=row["cleared_by"],
        cleared_at=_utc_or_none(row["cleared_at"]),
        escalations=row["escalations"],
        detail=json.loads(row["detail"]),
    )


def _transition(row: Any) -> Transition:
    return Transition(
        alert=alert_from_json(json.loads(row["alert"])),
        kind=row["kind"],
        at=_utc(row["at"]),
        by=row["by"],
        before=None if row["before"] is None else AlertState(row["before"]),
    )


# -- one transaction ----------------------------------------------------------------------


class AlertTx:
    """The reads and writes of one transaction; made by `AlertStore.transact` only."""

    def __init__(self, conn: Connection, *, lock_rows: bool) -> None:
        self._conn = conn
        self._lock_rows = lock_rows
        self._history_locked = not lock_rows  # SQLite: BEGIN IMMEDIATE serializes already

    def key(self, rule: str, site: str, subject: str) -> KeyRow | None:
        stmt = select(alert_keys.c.alert_id, alert_keys.c.latched).where(
            alert_keys.c.rule == rule,
            alert_keys.c.site == site,
            alert_keys.c.subject == subject,
        )
        row = self._conn.execute(stmt).one_or_none()
        return None if row is None else KeyRow(row.alert_id, bool(row.latched))

    def lock(self, alert_id: str) -> Stored | None:
        """The alert's current row, locked until the transaction ends."""
        stmt = select(alerts).where(alerts.c.id == alert_id)
        if self._lock_rows:
            stmt = stmt.with_for_update()
        row = self._conn.execute(stmt).mappings().one_or_none()
        if row is None:
            return None
        return Stored(_alert(row), _utc_or_none(row["next_notify_at"]))

    def insert(self, alert: Alert, next_notify_at: datetime | None) -> None:
        self._conn.execute(insert(alerts).values(_alert_row(alert, next_notify_at)))

    def update(self, alert: Alert, next_notify_at: datetime | None) -> None:
        values = _alert_row(alert, next_notify_at)
        del values["id"]
        self._conn.execute(update(alerts).where(alerts.c.id == alert.id).values(values))

    def take_key(self, alert: Alert) -> None:
        """Claim (rule, site, subject) for `alert`; IntegrityError if another holds it."""
        values = {
            "rule": alert.rule,
            "site": alert.site,
            "subject": alert.subject,
            "alert_id": alert.id,
            "latched": False,
        }
        self._conn.execute(insert(alert_keys).values(values))

    def latch_key(self, alert: Alert) -> None:
        """Keep the key held by `alert` (if it is) after a manual clear."""
        self._conn.execute(
            update(alert_keys)
            .where(
                alert_keys.c.rule == alert.rule,
                alert_keys.c.site == alert.site,
                alert_keys.c.subject == alert.subject,
                alert_keys.c.alert_id == alert.id,
            )
            .values(latched=True)
        )

    def drop_key(self, rule: str, site: str, subject: str) -> None:
        self._conn.execute(
            alert_keys.delete().where(
                alert_keys.c.rule == rule,
                alert_keys.c.site == site,
                alert_keys.c.subject == subject,
            )
        )

    def record(self, t: Transition) -> int:
        """Append `t` to the history and the outbox; its history id (the cursor)."""
        if not self._history_locked:
            # History ids come from a sequence: without this, a transaction that drew a
            # lower id could commit after one with a higher id, and a live page that has
            # moved its cursor past the higher one would never see it. Transitions are
            # rare next to refreshes, so serializing them costs little.
            self._conn.execute(select(func.pg_advisory_xact_lock(HISTORY_LOCK)))
            self._history_locked = True
        snapshot = json.dumps(alert_json(t.alert), sort_keys=True, default=str)
        result = self._conn.execute(
            insert(alert_history)
            .values(
                alert_id=t.alert.id,
                site=t.alert.site,
                kind=t.kind,
                at=_utc(t.at),
                by=t.by,
                before=None if t.before is None else t.before.value,
                after=t.alert.state.value,
                alert=snapshot,
            )
            .returning(alert_history.c.id)
        )
        cursor = int(result.scalar_one())
        body = json.dumps(transition_json(t, cursor), default=str).encode()
        _enqueue(self._conn, TRANSITION_CHANNEL, t.alert.site, body, alert_id=t.alert.id, at=t.at)
        return cursor

    def due(self, now: datetime, limit: int) -> list[str]:
        """Ids of active unacked alerts whose escalation or re-notification is due."""
        stmt = (
            select(alerts.c.id)
            .where(
                alerts.c.next_notify_at <= _utc(now),
                alerts.c.state == AlertState.ACTIVE_UNACK.value,
            )
            .order_by(alerts.c.next_notify_at, alerts.c.id)
            .limit(limit)
        )
        return [str(i) for i in self._conn.execute(stmt).scalars()]


def _enqueue(
    conn: Connection, channel: str, target: str, body: bytes, *, alert_id: str | None, at: datetime
) -> int:
    result = conn.execute(
        insert(outbox)
        .values(
            channel=channel,
            target=target,
            body=body,
            alert_id=alert_id,
            attempts=0,
            next_at=_utc(at),
            created_at=_utc(at),
        )
        .returning(outbox.c.id)
    )
    return int(result.scalar_one())


_SHARED: weakref.WeakKeyDictionary[Engine, threading.RLock] = weakref.WeakKeyDictionary()
_SHARED_GUARD = threading.Lock()


def _one_at_a_time(engine: Engine) -> AbstractContextManager[object]:
    """In-memory SQLite is one connection shared by every thread: take turns on it, or one
    thread's statements would run inside another's transaction."""
    if not isinstance(engine.pool, StaticPool):
        return nullcontext()
    with _SHARED_GUARD:
        return _SHARED.setdefault(engine, threading.RLock())


def _retryable(err: SQLAlchemyError) -> bool:
    if isinstance(err, IntegrityError):
        return True  # another transaction took the same key first: run again, see its row
    if isinstance(err, DBAPIError):
        # PostgreSQL: serialization_failure, deadlock_detected, lock_not_available;
        # SQLite: the database is locked or busy past its timeout.
        code = getattr(err.orig, "sqlstate", None)
        if code in ("40001", "40P01", "55P03"):
            return True
        text = str(err.orig).lower()
        return "database is locked" in text or "database is busy" in text
    return False


class AlertStore:
    """Alerts in the state database; everything the AlertBook reads and writes."""

    def __init__(self, db: StateDB) -> None:
        self.db = db
        self.engine = db.engine
        self._sqlite = db.dialect == "sqlite"
        self.outbox = Outbox(db)

    @contextmanager
    def _begin(self) -> Iterator[Connection]:
        with _one_at_a_time(self.engine), self.engine.connect() as conn:
            if self._sqlite:
                # Take the write lock up front: two deferred transactions that both read
                # and then write would have one fail instead of waiting its turn.
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.rollback()
                raise
            conn.commit()

    def transact(self, fn: Callable[[AlertTx], T], *, doing: str) -> T:
        """Run `fn` in one transaction, again from the start if it loses a race."""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                with self._begin() as conn:
                    return fn(AlertTx(conn, lock_rows=not self._sqlite))
            except SQLAlchemyError as err:
                if attempt == ATTEMPTS or not _retryable(err):
                    raise StateDBError(f"alerts: cannot {doing}: {_first_line(err)}") from None
                log.debug("alerts: %s lost a race (%s); again", doing, type(err).__name__)
                time.sleep(random.uniform(0, 0.005 * attempt))  # jitter, not secrets
        raise AssertionError("unreachable")

    # -- reads (no lock; each is one consistent snapshot)

    def has_key(self, rule: str, site: str, subject: str) -> bool:
        """Whether (rule, site, subject) has an open (or latched) condition."""
        stmt = select(alert_keys.c.alert_id).where(
            alert_keys.c.rule == rule, alert_keys.c.site == site, alert_keys.c.subject == subject
        )
        with self._reading("read an alert key") as conn:
            return conn.execute(stmt).first() is not None

    def get(self, alert_id: str) -> Alert | None:
        stmt = select(alerts).where(alerts.c.id == alert_id)
        with self._reading("read an alert") as conn:
            row = conn.execute(stmt).mappings().one_or_none()
        return None if row is None else _alert(row)

    def list(
        self,
        *,
        site: str | None = None,
        states: Collection[AlertState] | None = None,
        rule: str | None = None,
        severity: Severity | None = None,
        limit: int = 500,
    ) -> list[Alert]:
        """Newest first."""
        conditions = []
        if site is not None:
            conditions.append(alerts.c.site == site)
        if states is not None:
            conditions.append(alerts.c.state.in_([s.value for s in states]))
        if rule is not None:
            conditions.append(alerts.c.rule == rule)
        if severity is not None:
            conditions.append(alerts.c.severity == severity.value)
        stmt = (
            select(alerts)
            .where(and_(True, *conditions))
            .order_by(alerts.c.opened_at.desc(), alerts.c.id)
            .limit(max(0, limit))
        )
        with self._reading("list alerts") as conn:
            return [_alert(row) for row in conn.execute(stmt).mappings()]

    def history(self, alert_id: str) -> builtins.list[Transition]:
        stmt = (
            select(alert_history)
            .where(alert_history.c.alert_id == alert_id)
            .order_by(alert_history.c.id)
        )
        with self._reading("read an alert's history") as conn:
            return [_transition(row) for row in conn.execute(stmt).mappings()]

    def transitions_since(
        self, cursor: int, *, site: str | None = None, limit: int = 500
    ) -> tuple[int, builtins.list[Transition]]:
        """Transitions with a history id above `cursor`, oldest first, and the new cursor."""
        stmt = select(alert_history).where(alert_history.c.id > cursor)
        if site is not None:
            stmt = stmt.where(alert_history.c.site == site)
        stmt = stmt.order_by(alert_history.c.id).limit(max(0, limit))
        with self._reading("read alert transitions") as conn:
            rows = list(conn.execute(stmt).mappings())
        last = int(rows[-1]["id"]) if rows else cursor
        return last, [_transition(row) for row in rows]

    def last_cursor(self) -> int:
        """The newest history id (0 when there is none): where a new live page starts."""
        stmt = select(alert_history.c.id).order_by(alert_history.c.id.desc()).limit(1)
        with self._reading("read alert transitions") as conn:
            found = conn.execute(stmt).scalar_one_or_none()
        return 0 if found is None else int(found)

    @contextmanager
    def _reading(self, doing: str) -> Iterator[Connection]:
        try:
            with _one_at_a_time(self.engine), self.engine.connect() as conn:
                yield conn
        except SQLAlchemyError as err:
            raise StateDBError(f"alerts: cannot {doing}: {_first_line(err)}") from None


class Outbox:
    """A durable queue of notifications in the state database, drained by one sender."""

    def __init__(self, db: StateDB) -> None:
        self.engine = db.engine

    def enqueue(
        self, channel: str, target: str, body: bytes, *, alert_id: str | None, at: datetime
    ) -> int:
        with self._writing("queue a notification") as conn:
            return _enqueue(conn, channel, target, body, alert_id=alert_id, at=at)

    def due(self, now: datetime, limit: int = 100) -> list[OutboxEntry]:
        """Undelivered entries whose time has come, oldest first."""
        stmt = (
            select(outbox)
            .where(outbox.c.delivered_at.is_(None), outbox.c.next_at <= _utc(now))
            .order_by(outbox.c.next_at, outbox.c.id)
            .limit(max(0, limit))
        )
        with self._writing("read the outbox") as conn:
            return [
                OutboxEntry(
                    id=int(row["id"]),
                    channel=row["channel"],
                    target=row["target"],
                    body=bytes(row["body"]),
                    attempts=row["attempts"],
                    next_at=_utc(row["next_at"]),
                    created_at=_utc(row["created_at"]),
                )
                for row in conn.execute(stmt).mappings()
            ]

    def delivered(self, entry_id: int, at: datetime) -> None:
        stmt = (
            update(outbox)
            .where(outbox.c.id == entry_id)
            .values(delivered_at=_utc(at), attempts=outbox.c.attempts + 1, last_error=None)
        )
        with self._writing("mark a notification delivered") as conn:
            conn.execute(stmt)

    def failed(self, entry_id: int, at: datetime, next_at: datetime, error: str) -> None:
        """One attempt failed at `at`; try again at `next_at`."""
        line = (error.strip().splitlines() or [""])[0][:1000]
        stmt = (
            update(outbox)
            .where(outbox.c.id == entry_id, outbox.c.delivered_at.is_(None))
            .values(next_at=_utc(next_at), attempts=outbox.c.attempts + 1, last_error=line)
        )
        with self._writing("record a failed notification") as conn:
            conn.execute(stmt)

    def pending(self) -> int:
        """How many entries wait for delivery (due or not)."""
        stmt = select(func.count()).select_from(outbox).where(outbox.c.delivered_at.is_(None))
        with self._writing("count the outbox") as conn:
            return int(conn.execute(stmt).scalar_one())

    def purge_delivered(self, before: datetime) -> int:
        """Forget entries delivered before `before`; how many."""
        stmt = outbox.delete().where(
            outbox.c.delivered_at.is_not(None), outbox.c.delivered_at < _utc(before)
        )
        with self._writing("purge the outbox") as conn:
            return int(conn.execute(stmt).rowcount)

    @contextmanager
    def _writing(self, doing: str) -> Iterator[Connection]:
        try:
            with _one_at_a_time(self.engine), self.engine.begin() as conn:
                yield conn
        except SQLAlchemyError as err:
            raise StateDBError(f"alerts outbox: cannot {doing}: {_first_line(err)}") from None


def _first_line(err: BaseException) -> str:
    orig = getattr(err, "orig", None)
    text = str(orig if orig is not None else err).strip()
    return text.splitlines()[0] if text else type(err).__name__
