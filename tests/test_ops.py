"""Every process says whether it lives, whether it is ready, and what it counts.

`stackpulse run occupancy --ops HOST:PORT` (a process without the API) against a real
Mosquitto of the test's own: /healthz at once, /readyz 200 once connected, subscribed and
restored, 503 with the reason when the broker goes away, and /metrics in the Prometheus
text format (parsed by prometheus_client's own parser) with the runner's counters.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.procs import MosquittoProc, free_port
from tests.test_catchup import write_site

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
ROOT = Path(__file__).resolve().parent.parent


def wait_for(url: str, status: int, seconds: float = 30.0) -> httpx.Response:
    deadline = time.monotonic() + seconds
    last: httpx.Response | None = None
    while time.monotonic() < deadline:
        try:
            last = httpx.get(url, timeout=2)
            if last.status_code == status:
                return last
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer {status}: {last and last.text}")


def test_a_process_without_the_api_serves_health_readiness_and_metrics(
    fresh_mosquitto: MosquittoProc, tmp_path: Path
) -> None:
    layout = write_site(tmp_path / "site")
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "stackpulse",
        "run",
        "occupancy",
        "--layout",
        str(layout),
        "--broker",
        fresh_mosquitto.url,
        "--store",
        f"sqlite:///{tmp_path / 'series.db'}",
        "--db",
        f"sqlite:///{tmp_path / 'state.db'}",
        "--ops",
        f"127.0.0.1:{port}",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("STACKPULSE_")}
    log = (tmp_path / "occupancy.log").open("wb")
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        assert wait_for(base + "/healthz", 200).json() == {"status": "ok"}
        ready = wait_for(base + "/readyz", 200).json()
        assert ready == {"ready": True, "components": {"occupancy": "ready"}}
        text = httpx.get(base + "/metrics", timeout=5).text
        families = {f.name: f for f in text_string_to_metric_families(text)}
        names = [f.name for f in text_string_to_metric_families(text)]
        assert len(names) == len(set(names))  # one family per name, all components in it
        for name in (
            "stackpulse_events_applied",
            "stackpulse_events_received",
            "stackpulse_event_lag_seconds",
            "stackpulse_publish_queue",
            "stackpulse_component_ready",
        ):
            assert name in families, sorted(families)
        ready_samples = {
            s.labels["component"]: s.value for s in families["stackpulse_component_ready"].samples
        }
        assert ready_samples == {"occupancy": 1.0}

        fresh_mosquitto.stop()  # the broker goes away: not ready, and why
        not_ready = wait_for(base + "/readyz", 503).json()
        assert not_ready["ready"] is False
        assert "not connected" in not_ready["components"]["occupancy"]
        assert httpx.get(base + "/healthz", timeout=2).status_code == 200  # alive all the same
        fresh_mosquitto.start()
        wait_for(base + "/readyz", 200, seconds=60)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    output = (tmp_path / "occupancy.log").read_text(errors="replace")
    assert proc.returncode == 0, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
