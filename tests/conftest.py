"""Fixtures every test can use; each group lives in tests/support and is imported here."""

import sys
from pathlib import Path

# The repository root, so `tests.support` imports the same way however pytest is started.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.support.postgres import postgres, postgres_url  # noqa: E402
from tests.support.procs import (  # noqa: E402
    fresh_influxdb,
    fresh_mosquitto,
    influx_db,
    influxdb,
    mosquitto,
    mqtt_root,
)

__all__ = [
    "fresh_influxdb",
    "fresh_mosquitto",
    "influx_db",
    "influxdb",
    "mosquitto",
    "mqtt_root",
    "postgres",
    "postgres_url",
]


import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _own_data_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each test its own default state database (XDG_DATA_HOME): nothing one test
    checkpoints there reaches another, and nothing reaches the user's own."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path_factory.mktemp("data-home")))
