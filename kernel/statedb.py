"""The state database (users, checkpoints, alerts) over SQLAlchemy: SQLite or PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Engine,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    insert,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import (
    ArgumentError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.pool import StaticPool

# Every table of the state database; services add theirs here so one create_all makes all.
metadata = MetaData()

users = Table(
    "users",
    metadata,
    Column("username", String(64), primary_key=True),
    Column("password_hash", String(255), nullable=False),
    Column("role", String(16), nullable=False),
    Column("sites", Text, nullable=False),  # a JSON list of site ids
    Column("created_at", DateTime(timezone=True), nullable=False),
)

checkpoints = Table(
    "checkpoints",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("body", LargeBinary, nullable=False),
    Column("saved_at", DateTime(timezone=True), nullable=False),
)

# -- alerts (services/alerts/store.py reads and writes these)

# SQLite autoincrements only an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
_Serial = BigInteger().with_variant(Integer(), "sqlite")

alerts = Table(
    "alerts",
    metadata,
    Column("id", String(32), primary_key=True),  # uuid4 hex
    Column("rule", String(64), nullable=False),
    Column("site", String(32), nullable=False),
    Column("subject", String(200), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    Column("message", Text, nullable=False),
    Column("opened_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("last_seen_at", DateTime(timezone=True), nullable=False),
    Column("repeats", Integer, nullable=False),
    Column("acked_by", String(64)),
    Column("acked_at", DateTime(timezone=True)),
    Column("cleared_by", String(64)),
    Column("cleared_at", DateTime(timezone=True)),
    Column("escalations", Integer, nullable=False),
    Column("detail", Text, nullable=False),  # JSON object
    # When the next escalation or re-notification is due; NULL unless active and unacked.
    Column("next_notify_at", DateTime(timezone=True)),
    Index("alerts_site_state", "site", "state"),
    Index("alerts_due", "next_notify_at"),
)

# The open condition of each (rule, site, subject): its primary key is what makes "one
# active alert per key" a fact of the database rather than of one process's memory.
alert_keys = Table(
    "alert_keys",
    metadata,
    Column("rule", String(64), primary_key=True),
    Column("site", String(32), primary_key=True),
    Column("subject", String(200), primary_key=True),
    Column("alert_id", String(32), ForeignKey("alerts.id"), nullable=False),
    # True: the alert was cleared by hand while the condition still held; no new alert
    # opens for the key until the condition has been seen to end.
    Column("latched", Boolean, nullable=False),
)

alert_history = Table(
    "alert_history",
    metadata,
    Column("id", _Serial, primary_key=True, autoincrement=True),  # the live pages' cursor
    Column("alert_id", String(32), ForeignKey("alerts.id"), nullable=False),
    Column("site", String(32), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("by", String(64)),
    Column("before", String(16)),
    Column("after", String(16), nullable=False),
    Column("alert", Text, nullable=False),  # JSON of the alert after the transition
    Index("alert_history_alert", "alert_id", "id"),
    Index("alert_history_site", "site", "id"),
)

# Notifications waiting to be sent, written in the transaction that caused them.
outbox = Table(
    "outbox",
    metadata,
    Column("id", _Serial, primary_key=True, autoincrement=True),
    Column("channel", String(32), nullable=False),
    Column("target", String(1000), nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("alert_id", String(32)),
    Column("attempts", Integer, nullable=False),
    Column("next_at", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("delivered_at", DateTime(timezone=True)),
    Column("last_error", Text),
    Index("outbox_due", "delivered_at", "next_at"),
)

CONNECT_TIMEOUT_S = 5


class StateDBError(RuntimeError):
    """The state database cannot be used; the message is one line saying why."""


class UserExistsError(StateDBError):
    """A user of that name is already stored."""


@dataclass(frozen=True, slots=True)
class UserRecord:
    """A stored user: only the password's hash, never the password."""

    username: str
    password_hash: str
    role: str
    sites: tuple[str, ...]
    created_at: datetime


def engine_url(url: str) -> URL:
    """`sqlite:///absolute/path.db`, `sqlite:///:memory:` or `postgresql://...` for SQLAlchemy.

    Like the series store's URLs, and unlike SQLAlchemy's, `sqlite:///var/x.db` is the
    absolute path /var/x.db.
    """
    if url.startswith("sqlite:"):
        return _sqlite_url(url)
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StateDBError(
            f"{url!r} is not a database URL; use sqlite:///path.db or postgresql://user@host/db"
        ) from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend in ("postgresql", "postgres"):
        if driver not in ("", "psycopg"):
            raise StateDBError(f"unsupported PostgreSQL driver {driver!r}; leave it out")
        return parsed.set(drivername="postgresql+psycopg")
    raise StateDBError(
        f"unsupported database {backend!r} in {_safe(parsed)}; use sqlite:/// or postgresql://"
    )


def _sqlite_url(url: str) -> URL:
    path = unquote(url.removeprefix("sqlite:").removeprefix("//").split("?", 1)[0])
    if path in ("", "/", "/:memory:"):
        return URL.create("sqlite")
    if not path.startswith("/"):
        raise StateDBError(
            f"{url!r}: a SQLite database URL is sqlite:///absolute/path.db or sqlite:///:memory:"
        )
    return URL.create("sqlite", database="/" + path.lstrip("/"))


def _safe(url: URL) -> str:
    shown = url.render_as_string(hide_password=True)
    return shown.replace("postgresql+psycopg://", "postgresql://", 1)


def _first_line(err: BaseException) -> str:
    # DBAPI errors carry the driver's message, the SQL and a help link; keep the reason.
    orig = getattr(err, "orig", None)
    text = str(orig if orig is not None else err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _make_engine(url: URL) -> Engine:
    if url.drivername == "sqlite":
        database = url.database or ""
        if database in ("", ":memory:"):
            # One shared connection, or every thread would see its own empty database.
            return create_engine(
                url, poolclass=StaticPool, connect_args={"check_same_thread": False}
            )
        parent = Path(database).parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise StateDBError(f"cannot create the folder {str(parent)!r}: {err}") from None
        engine = create_engine(url, connect_args={"timeout": 10, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(
        url, pool_pre_ping=True, connect_args={"connect_timeout": CONNECT_TIMEOUT_S}
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the one writer
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _create_tables(engine: Engine) -> None:
    try:
        metadata.create_all(engine)
    except (OperationalError, InterfaceError):
        raise  # cannot connect: no point in trying again
    except SQLAlchemyError:
        # Two processes starting together may both see a table missing; the loser retries.
        metadata.create_all(engine)


def _utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything stored here is UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class StateDB:
    """Synchronous access to the state database; async callers use asyncio.to_thread."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str) -> StateDB:
        """Connect, create missing tables; raise StateDBError with one line on any failure."""
        parsed = engine_url(url)
        try:
            engine = _make_engine(parsed)
        except (ArgumentError, ImportError) as err:
            raise StateDBError(f"cannot use {_safe(parsed)}: {_first_line(err)}") from None
        try:
            _create_tables(engine)
        except SQLAlchemyError as err:
            engine.dispose()
            raise StateDBError(f"cannot open {_safe(parsed)}: {_first_line(err)}") from None
        return cls(engine)

    @property
    def dialect(self) -> str:
        """`sqlite` or `postgresql`."""
        return self.engine.dialect.name

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> StateDB:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- checkpoints: a service's serialized state under a name it chooses

    def save_checkpoint(self, name: str, body: bytes, *, now: datetime | None = None) -> None:
        """Store `body` under `name`, replacing what was there, in one transaction."""
        values = {"name": name, "body": body, "saved_at": now or datetime.now(UTC)}
        stmt = self._upsert(checkpoints, values, key="name")
        with _errors("save checkpoint"), self.engine.begin() as conn:
            conn.execute(stmt)

    def load_checkpoint(self, name: str) -> bytes | None:
        """The body last saved under `name`, or None."""
        stmt = select(checkpoints.c.body).where(checkpoints.c.name == name)
        with _errors("load checkpoint"), self.engine.connect() as conn:
            body = conn.execute(stmt).scalar_one_or_none()
        return None if body is None else bytes(body)

    def checkpoint_saved_at(self, name: str) -> datetime | None:
        stmt = select(checkpoints.c.saved_at).where(checkpoints.c.name == name)
        with _errors("load checkpoint"), self.engine.connect() as conn:
            saved = conn.execute(stmt).scalar_one_or_none()
        return None if saved is None else _utc(saved)

    def _upsert(self, table: Table, values: dict[str, Any], *, key: str) -> Any:
        changes = {k: v for k, v in values.items() if k != key}
        if self.dialect == "postgresql":
            pg = postgresql.insert(table).values(values)
            return pg.on_conflict_do_update(index_elements=[key], set_=changes)
        lite = sqlite.insert(table).values(values)
        return lite.on_conflict_do_update(index_elements=[key], set_=changes)

    # -- users

    def add_user(
        self,
        username: str,
        password_hash: str,
        role: str,
        sites: Sequence[str] = (),
        *,
        replace: bool = False,
        now: datetime | None = None,
    ) -> UserRecord:
        """Store a user; UserExistsError unless `replace` when the name is taken."""
        record = UserRecord(
            username, password_hash, role, tuple(sites), _utc(now or datetime.now(UTC))
        )
        values = {
            "username": username,
            "password_hash": password_hash,
            "role": role,
            "sites": json.dumps(list(record.sites)),
            "created_at": record.created_at,
        }
        stmt = (
            self._upsert(users, values, key="username") if replace else insert(users).values(values)
        )
        try:
            with self.engine.begin() as conn:
                conn.execute(stmt)
        except IntegrityError:
            raise UserExistsError(f"user {username!r} already exists") from None
        except SQLAlchemyError as err:
            raise StateDBError(f"cannot add user {username!r}: {_first_line(err)}") from None
        return record

    def get_user(self, username: str) -> UserRecord | None:
        stmt = select(users).where(users.c.username == username)
        with _errors("read user"), self.engine.connect() as conn:
            row = conn.execute(stmt).mappings().one_or_none()
        return None if row is None else _user(row)

    def list_users(self) -> list[UserRecord]:
        stmt = select(users).order_by(users.c.username)
        with _errors("list users"), self.engine.connect() as conn:
            return [_user(row) for row in conn.execute(stmt).mappings()]

    def delete_user(self, username: str) -> bool:
        """Remove a user; False when there was none."""
        stmt = users.delete().where(users.c.username == username)
        with _errors("delete user"), self.engine.begin() as conn:
            return conn.execute(stmt).rowcount > 0


@contextmanager
def _errors(doing: str) -> Iterator[None]:
    """Turns SQLAlchemy's errors into one-line StateDBErrors."""
    try:
        yield
    except SQLAlchemyError as err:
        raise StateDBError(f"state database: cannot {doing}: {_first_line(err)}") from None


def _user(row: Any) -> UserRecord:
    return UserRecord(
        username=row["username"],
        password_hash=row["password_hash"],
        role=row["role"],
        sites=tuple(json.loads(row["sites"])),
        created_at=_utc(row["created_at"]),
    )
