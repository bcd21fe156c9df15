"""The `stackpulse` command as a user runs it: clear one-line errors, and a demo that comes up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from stackpulse.broker import free_port

ROOT = Path(__file__).resolve().parent.parent


def stackpulse(
    *args: str, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STACKPULSE_")} | (env or {})
    return subprocess.run(
        [sys.executable, "-m", "stackpulse", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["run", "gateway", "--broker", "ftp://host"], ["--broker", "mqtt://"]),
        (["run", "gateway", "--layout", "no/such/layout.yaml"], ["--layout", "layout.yaml"]),
        (["run", "gateway", "--http", "localhost"], ["--http", "HOST:PORT"]),
        (["run", "gateway", "--clock", "sim:yesterday"], ["--clock"]),
        (["run", "api", "--broker", "mqtt://127.0.0.1:1"], ["--broker", "cannot connect"]),
        (["run", "gateway", "--store", "postgres://x/y"], ["--store"]),
        (["simulate", "--speed", "0"], ["--speed"]),
        (
            ["run", "occupancy", "--env", "STACKPULSE_SEAT_ON_DELAY=soon"],
            ["STACKPULSE_SEAT_ON_DELAY"],
        ),
        (
            ["run", "gateway", "--env", "STACKPULSE_GATEWAY_SPOOL_MAX_BYTES=1GB"],
            ["STACKPULSE_GATEWAY_SPOOL_MAX_BYTES", "1GB"],
        ),
        (
            ["run", "gateway", "--env", "STACKPULSE_GATEWAY_EVENT_BATCH_WINDOW=0"],
            ["STACKPULSE_GATEWAY_EVENT_BATCH_WINDOW"],
        ),
        (["run", "gateway", "--log-format", "xml"], ["--log-format", "json"]),
    ],
)
def test_bad_settings_stop_the_command_with_one_clear_line(
    args: list[str], names: list[str], mosquitto: object
) -> None:
    env = {}
    if "--env" in args:
        i = args.index("--env")
        key, _, value = args[i + 1].partition("=")
        env[key] = value
        args = args[:i] + args[i + 2 :]
    if "--broker" not in args:
        args = [*args, "--broker", mosquitto.url]  # type: ignore[attr-defined]
    result = stackpulse(*args, env=env)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("stackpulse:")]
    assert len(lines) == 1, result.stderr
    for name in names:
        assert name in lines[0]


def test_json_logs_are_one_object_per_line(mosquitto: object) -> None:
    result = stackpulse(
        "run",
        "gateway",
        "--broker",
        mosquitto.url,  # type: ignore[attr-defined]
        "--store",
        f"influxdb://127.0.0.1:{free_port()}/x",
        "--log-format",
        "json",
        "--log-level",
        "DEBUG",
    )
    records = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert records, result.stderr
    assert all({"ts", "level", "logger", "message"} <= set(r) for r in records)
    # Every line is a record, but for the one-line error meant for the person at the console.
    others = [ln for ln in result.stderr.splitlines() if ln and not ln.startswith("{")]
    assert len(others) == 1 and others[0].startswith("stackpulse: --store"), result.stderr


def test_an_unreachable_store_is_named(mosquitto: object) -> None:
    result = stackpulse(
        "run",
        "gateway",
        "--broker",
        mosquitto.url,  # type: ignore[attr-defined]
        "--store",
        f"influxdb://127.0.0.1:{free_port()}/x",
    )
    assert result.returncode == 2
    assert "--store" in result.stderr and "unreachable" in result.stderr


def test_the_demo_is_usable_within_seconds_and_the_library_fills_up() -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STACKPULSE_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stackpulse",
            "demo",
            "--http",
            f"127.0.0.1:{port}",
            "--speed",
            "120",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        started = time.monotonic()
        zones = _poll_zones(port, lambda zs: len(zs) >= 8, limit=30)
        ready_after = time.monotonic() - started
        assert ready_after < 20, f"the demo took {ready_after:.1f}s to answer"
        # At 120x the first hour of the day passes in 30 s: people arrive and sit down.
        zones = _poll_zones(port, lambda zs: sum(z["occupancy"] or 0 for z in zs) >= 20, limit=60)
        assert any(z["seats_free"] < z["seats_total"] for z in zones)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as page:
            assert b"<html" in page.read().lower()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    out = proc.stdout.read() if proc.stdout else ""
    assert "Traceback" not in out, out[-3000:]


def _poll_zones(port: int, ok: object, limit: float) -> list[dict[str, object]]:
    deadline = time.monotonic() + limit
    last: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        try:
            url = f"http://127.0.0.1:{port}/api/v1/sites/main/zones"
            with urllib.request.urlopen(url, timeout=2) as r:
                last = json.loads(r.read())
            if ok(last):  # type: ignore[operator]
                return last
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"gave up after {limit}s; last answer: {last}")
