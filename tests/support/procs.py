"""Real Mosquitto and InfluxDB processes on free loopback ports, as pytest fixtures."""

from __future__ import annotations

import contextlib
import ctypes
import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

__all__ = [
    "InfluxProc",
    "MosquittoProc",
    "fresh_influxdb",
    "fresh_mosquitto",
    "influx_db",
    "influxdb",
    "mosquitto",
    "mqtt_root",
    "start_influxdb",
    "start_mosquitto",
]

HOST = "127.0.0.1"
_PR_SET_PDEATHSIG = 1  # Linux prctl option
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
# Debian puts the broker in /usr/sbin, which is not on every user's PATH.
_SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
_INSTALL_HINT = "install Debian's mosquitto and influxdb packages (scripts/test does it)"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _binary(name: str, env_var: str) -> str:
    found = os.environ.get(env_var) or shutil.which(name, path=_SEARCH_PATH)
    if not found:
        pytest.fail(f"{name} not found (set {env_var} or {_INSTALL_HINT})", pytrace=False)
    return found


def _die_with_parent() -> None:
    """In the child before exec: end when pytest ends, even if pytest is killed outright."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


@dataclass
class _Proc:
    """A server process that can be stopped, killed and started again on the same ports."""

    name: str
    argv: list[str]
    workdir: Path
    host: str
    port: int
    ready: Callable[[], bool] = field(repr=False)
    _popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        return _tail(self.log_path, lines)

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start and wait until it serves; fail with its log tail if it does not."""
        if self.running:
            return
        env = {k: v for k, v in os.environ.items() if not k.startswith("INFLUXDB_")}
        with self.log_path.open("ab") as log:
            self._popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=env,
                # Its own session: a Ctrl-C reaches pytest, which then stops it in order.
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._popen.poll() is not None:
                self._popen = None
                pytest.fail(
                    f"{self.name} exited at start; its log ends:\n{self.log_tail()}", pytrace=False
                )
            if self.ready():
                return
            time.sleep(0.05)
        self.stop()
        pytest.fail(
            f"{self.name} did not serve on {self.host}:{self.port} within {timeout:.0f}s; "
            f"its log ends:\n{self.log_tail()}",
            pytrace=False,
        )

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Graceful stop (SIGTERM), killed if it lingers."""
        self._end(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """Crash it (SIGKILL): nothing gets saved."""
        self._end(signal.SIGKILL, STOP_TIMEOUT)

    def _end(self, sig: signal.Signals, timeout: float) -> None:
        popen, self._popen = self._popen, None
        if popen is None or popen.poll() is not None:
            return
        popen.send_signal(sig)
        try:
            popen.wait(timeout)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(timeout)

    def restart(self) -> None:
        self.stop()
        self.start()


def _tcp_ready(host: str, port: int) -> Callable[[], bool]:
    def ready() -> bool:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            return False

    return ready


def _http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 200 <= int(response.status) < 300
    except (OSError, urllib.error.URLError):
        return False


@dataclass
class MosquittoProc(_Proc):
    """``url`` is ``mqtt://127.0.0.1:PORT``."""

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"


@dataclass
class InfluxProc(_Proc):
    """``url`` is ``influxdb://127.0.0.1:PORT`` (add ``/database``); ``http_url`` its HTTP API."""

    @property
    def url(self) -> str:
        return f"influxdb://{self.host}:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def store_url(self, database: str) -> str:
        return f"{self.url}/{database}"

    def influxql(self, statement: str) -> str:
        """Run one statement over HTTP (POST), returning the raw JSON answer."""
        body = urllib.parse.urlencode({"q": statement}).encode()
        with urllib.request.urlopen(f"{self.http_url}/query", data=body, timeout=10) as response:
            return str(response.read().decode())


def start_mosquitto(workdir: Path) -> MosquittoProc:
    """A Mosquitto 2.x broker on a free loopback port, configured in ``workdir``."""
    binary = _binary("mosquitto", "STACKPULSE_TEST_MOSQUITTO")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    (workdir / "data").mkdir(exist_ok=True)
    config = workdir / "mosquitto.conf"
    config.write_text(
        f"""# written by tests/support/procs.py
listener {port} {HOST}
allow_anonymous true
# As root the broker drops to user "mosquitto", which could not write here.
user {getpass.getuser()}
persistence true
persistence_location {workdir / "data"}/
autosave_interval 60
max_queued_messages 100000
max_inflight_messages 100
set_tcp_nodelay true
log_dest stderr
log_type error
log_type warning
log_timestamp_format %Y-%m-%dT%H:%M:%S
"""
    )
    proc = MosquittoProc(
        name="mosquitto",
        argv=[binary, "-c", str(config)],
        workdir=workdir,
        host=HOST,
        port=port,
        ready=_tcp_ready(HOST, port),
    )
    proc.start()
    return proc


def start_influxdb(workdir: Path) -> InfluxProc:
    """An InfluxDB 1.x server on free loopback ports, its data in ``workdir``."""
    binary = _binary("influxd", "STACKPULSE_TEST_INFLUXD")
    workdir.mkdir(parents=True, exist_ok=True)
    port, rpc_port = free_port(), free_port()
    config = workdir / "influxdb.conf"
    config.write_text(
        f"""# written by tests/support/procs.py
# Upstream spells it reporting-disabled, Debian's build reporting-enabled: say both.
reporting-disabled = true
reporting-enabled = false
bind-address = "{HOST}:{rpc_port}"

[meta]
  dir = "{workdir / "meta"}"
  logging-enabled = false

[data]
  dir = "{workdir / "data"}"
  wal-dir = "{workdir / "wal"}"
  wal-fsync-delay = "0s"
  query-log-enabled = false
  index-version = "inmem"

[monitor]
  store-enabled = false

[subscriber]
  enabled = false

[continuous_queries]
  log-enabled = false

[http]
  enabled = true
  bind-address = "{HOST}:{port}"
  log-enabled = false
  pprof-enabled = false
  max-body-size = 0

[logging]
  level = "warn"
  suppress-logo = true
"""
    )
    proc = InfluxProc(
        name="influxd",
        argv=[binary, "run", "-config", str(config)],
        workdir=workdir,
        host=HOST,
        port=port,
        ready=lambda: _http_ok(f"http://{HOST}:{port}/ping"),
    )
    proc.start()
    return proc


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoProc]:
    """One broker for the whole session; tests keep apart by ``mqtt_root``."""
    proc = start_mosquitto(tmp_path_factory.mktemp("mosquitto"))
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def influxdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxProc]:
    """One InfluxDB for the whole session; tests keep apart by ``influx_db``."""
    proc = start_influxdb(tmp_path_factory.mktemp("influxdb"))
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def fresh_mosquitto(tmp_path: Path) -> Iterator[MosquittoProc]:
    """A broker of this test's own, free to stop, kill and restart."""
    proc = start_mosquitto(tmp_path / "mosquitto")
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def fresh_influxdb(tmp_path: Path) -> Iterator[InfluxProc]:
    """An InfluxDB of this test's own, free to stop, kill and restart."""
    proc = start_influxdb(tmp_path / "influxdb")
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def influx_db(influxdb: InfluxProc) -> Iterator[str]:
    """A new, empty database for this test: its store URL ``influxdb://127.0.0.1:PORT/test_xxx``."""
    influxdb.start()  # a previous test may have stopped the shared server
    database = f"test_{uuid.uuid4().hex[:8]}"
    influxdb.influxql(f'CREATE DATABASE "{database}"')
    try:
        yield influxdb.store_url(database)
    finally:
        with contextlib.suppress(OSError):
            influxdb.start()
            influxdb.influxql(f'DROP DATABASE "{database}"')


@pytest.fixture
def mqtt_root() -> str:
    """A topic root of this test's own, e.g. ``t/1a2b3c4d/lib/v1``."""
    return f"t/{uuid.uuid4().hex[:8]}/lib/v1"
