"""The state database on real SQLite and real PostgreSQL: checkpoints, users, bad URLs."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from stackpulse.broker import free_port
from stackpulse.kernel.statedb import StateDB, StateDBError, UserExistsError

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)],
)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{tmp_path / 'deep' / 'folder' / 'state.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def db(db_url: str) -> Iterator[StateDB]:
    with StateDB.open(db_url) as opened:
        yield opened


# ---- checkpoints -----------------------------------------------------------------------


def test_a_checkpoint_is_saved_replaced_and_loaded(db: StateDB) -> None:
    assert db.load_checkpoint("inventory/main") is None
    first = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    db.save_checkpoint("inventory/main", b"\x00one\xff", now=first)
    assert db.load_checkpoint("inventory/main") == b"\x00one\xff"
    assert db.checkpoint_saved_at("inventory/main") == first
    db.save_checkpoint("inventory/main", b"two", now=first + timedelta(minutes=5))
    assert db.load_checkpoint("inventory/main") == b"two"
    assert db.checkpoint_saved_at("inventory/main") == first + timedelta(minutes=5)
    assert db.load_checkpoint("inventory/law") is None


def test_a_large_checkpoint_survives_reopening(db_url: str) -> None:
    body = os.urandom(4 * 1024 * 1024)
    with StateDB.open(db_url) as db:
        db.save_checkpoint("big", body)
    with StateDB.open(db_url) as db:  # tables already there: opened, not recreated
        assert db.load_checkpoint("big") == body


def test_concurrent_saves_of_one_name_leave_one_whole_body(db: StateDB) -> None:
    errors: list[BaseException] = []
    bodies = [bytes([i]) * 1000 for i in range(8)]

    def save(body: bytes) -> None:
        try:
            for _ in range(15):
                db.save_checkpoint("shared", body)
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=save, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert db.load_checkpoint("shared") in bodies


# ---- users -----------------------------------------------------------------------------


def test_users_are_added_read_listed_replaced_and_removed(db: StateDB) -> None:
    at = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
    stored = db.add_user("ana", "$argon2id$fake", "staff", ["main", "law"], now=at)
    db.add_user("boss", "$argon2id$other", "manager")
    got = db.get_user("ana")
    assert got == stored
    assert got is not None and got.sites == ("main", "law") and got.created_at == at
    assert db.get_user("nobody") is None
    with pytest.raises(UserExistsError, match="'ana' already exists"):
        db.add_user("ana", "x", "admin")
    db.add_user("ana", "$argon2id$new", "staff", ["law"], replace=True)
    again = db.get_user("ana")
    assert again is not None and again.password_hash == "$argon2id$new" and again.sites == ("law",)
    assert [u.username for u in db.list_users()] == ["ana", "boss"]
    assert db.delete_user("boss") and not db.delete_user("boss")
    assert [u.username for u in db.list_users()] == ["ana"]


# ---- bad URLs: one clear line ----------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mysql://u@h/db", "unsupported database 'mysql'"),
        ("not a url", "not a database URL"),
        ("sqlite:relative.db", "sqlite:///absolute/path.db"),
        ("postgresql+asyncpg://u@h/db", "unsupported PostgreSQL driver"),
    ],
)
def test_a_bad_url_is_one_line_naming_the_problem(url: str, expected: str) -> None:
    with pytest.raises(StateDBError) as caught:
        StateDB.open(url)
    message = str(caught.value)
    assert expected in message and "\n" not in message


def test_an_unreachable_server_is_one_line_without_the_password() -> None:
    url = f"postgresql://ana:hunter2@127.0.0.1:{free_port()}/state"
    started = time.monotonic()
    with pytest.raises(StateDBError) as caught:
        StateDB.open(url)
    message = str(caught.value)
    assert time.monotonic() - started < 15
    assert "\n" not in message and "hunter2" not in message
    assert message.startswith("cannot open postgresql://ana:***@127.0.0.1:")


def test_an_unwritable_sqlite_path_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StateDBError) as caught:
        StateDB.open(f"sqlite://{blocker / 'state.db'}")
    assert "\n" not in str(caught.value)


@pytest.mark.integration
def test_a_wrong_database_name_is_one_line(postgres: object) -> None:
    url = postgres.url("no_such_db")  # type: ignore[attr-defined]
    with pytest.raises(StateDBError, match='database "no_such_db" does not exist') as caught:
        StateDB.open(url)
    assert "\n" not in str(caught.value)


def test_the_command_stops_at_start_on_a_bad_db() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STACKPULSE_")}
    result = subprocess.run(
        [sys.executable, "-m", "stackpulse", "run", "api", "--db", "mysql://u@h/db"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("stackpulse:")]
    assert len(lines) == 1 and lines[0].startswith("stackpulse: --db (STACKPULSE_DB): ")
