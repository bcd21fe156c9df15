"""A real PostgreSQL (Debian's package) on a free loopback port, as pytest fixtures."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from tests.support.procs import HOST, _die_with_parent, _tail, free_port

__all__ = ["PostgresProc", "postgres", "postgres_url", "start_postgres"]

START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
SUPERUSER = "stackpulse"
_INSTALL_HINT = "install Debian's postgresql package (scripts/test does it)"


def postgres_bin(name: str) -> str:
    """`initdb` or `postgres`: on PATH, else Debian's /usr/lib/postgresql/<newest>/bin."""
    found = os.environ.get(f"STACKPULSE_TEST_{name.upper()}") or shutil.which(name)
    if found:
        return found
    candidates = list(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if not candidates:
        pytest.fail(f"PostgreSQL's {name} not found ({_INSTALL_HINT})", pytrace=False)
    return str(max(candidates, key=lambda p: _version_key(p.parent.parent.name)))


def _version_key(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".") if part.isdigit())


def _run_as() -> tuple[int, int] | None:
    """PostgreSQL refuses to run as root: then it runs as `postgres` (Debian's) or `nobody`."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(name)
            return entry.pw_uid, entry.pw_gid
    pytest.fail("running as root with neither a postgres nor a nobody user", pytrace=False)


@dataclass
class PostgresProc:
    """A PostgreSQL server with its data, socket and log in `workdir`."""

    workdir: Path
    port: int
    host: str = HOST
    _popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def log_path(self) -> Path:
        return self.workdir / "postgres.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{database}"

    def conninfo(self, database: str = "postgres") -> str:
        return f"host={self.host} port={self.port} user={SUPERUSER} dbname={database}"

    def execute(self, statement: str) -> None:
        """One statement outside a transaction (CREATE/DROP DATABASE need that)."""
        with psycopg.connect(self.conninfo(), autocommit=True, connect_timeout=5) as conn:
            conn.execute(statement.encode())

    def start(self, owner: tuple[int, int] | None, timeout: float = START_TIMEOUT) -> None:
        argv = [
            postgres_bin("postgres"),
            "-D",
            str(self.workdir / "data"),
            "-h",
            self.host,
            "-p",
            str(self.port),
            "-k",
            str(self.workdir),
            # A test database need not survive a power cut.
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ]
        with self.log_path.open("ab") as log:
            self._popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
                preexec_fn=_die_with_parent,
                user=owner[0] if owner else None,
                group=owner[1] if owner else None,
                extra_groups=[] if owner else None,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._popen.poll() is not None:
                self._popen = None
                pytest.fail(f"postgres exited at start:\n{_tail(self.log_path)}", pytrace=False)
            if self._accepting():
                return
            time.sleep(0.1)
        self.stop()
        pytest.fail(
            f"postgres did not accept connections on {self.host}:{self.port} within "
            f"{timeout:.0f}s:\n{_tail(self.log_path)}",
            pytrace=False,
        )

    def _accepting(self) -> bool:
        try:
            with psycopg.connect(self.conninfo(), connect_timeout=1):
                return True
        except psycopg.OperationalError:
            return False

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Fast shutdown (SIGINT: end sessions, checkpoint), killed if it lingers."""
        popen, self._popen = self._popen, None
        if popen is None or popen.poll() is not None:
            return
        popen.send_signal(signal.SIGINT)
        try:
            popen.wait(timeout)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(timeout)


def start_postgres() -> PostgresProc:
    """initdb into a new folder and start a server on a free loopback port."""
    owner = _run_as()
    # Not under pytest's tmp dir: that is private to the user running pytest.
    workdir = Path(tempfile.mkdtemp(prefix="stackpulse-pg-"))
    (workdir / "data").mkdir()
    if owner:
        for path in (workdir, workdir / "data"):
            os.chown(path, *owner)
    initdb = [
        postgres_bin("initdb"),
        "-D",
        str(workdir / "data"),
        "-U",
        SUPERUSER,
        "--auth=trust",
        "--encoding=UTF8",
        "--no-locale",
        "--no-sync",
    ]
    try:
        subprocess.run(
            initdb,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=True,
            timeout=120,
            user=owner[0] if owner else None,
            group=owner[1] if owner else None,
            extra_groups=[] if owner else None,
        )
    except subprocess.CalledProcessError as err:
        shutil.rmtree(workdir, ignore_errors=True)
        output = (err.stdout + err.stderr).decode(errors="replace")[-2000:]
        pytest.fail(f"initdb failed:\n{output}", pytrace=False)
    proc = PostgresProc(workdir, free_port())
    proc.start(owner)
    return proc


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresProc]:
    """One PostgreSQL for the session, started on first use; tests keep apart by database."""
    proc = start_postgres()
    try:
        yield proc
    finally:
        proc.stop()
        shutil.rmtree(proc.workdir, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres: PostgresProc) -> Iterator[str]:
    """A new, empty database of this test's own: ``postgresql://stackpulse@127.0.0.1:PORT/t_xx``."""
    database = f"t_{uuid.uuid4().hex[:12]}"
    postgres.execute(f'CREATE DATABASE "{database}"')
    try:
        yield postgres.url(database)
    finally:
        with contextlib.suppress(psycopg.Error):
            postgres.execute(f'DROP DATABASE "{database}" WITH (FORCE)')
