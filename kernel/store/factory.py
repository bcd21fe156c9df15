"""Build the configured SeriesStore from its URL."""

from __future__ import annotations

from urllib.parse import urlsplit

from stackpulse.kernel.store.base import SeriesStore
from stackpulse.kernel.store.influx import InfluxStore
from stackpulse.kernel.store.sqlite import SqliteStore

__all__ = ["open_store"]

_ACCEPTED = (
    "influxdb://[user:password@]host:port/database[?token=...] (influxdb+https:// for TLS), "
    "sqlite:///absolute/path.db or sqlite:///:memory:"
)


def open_store(url: str) -> SeriesStore:
    """The store a ``--store``/``STACKPULSE_STORE`` URL names (not yet connected: ping() it)."""
    scheme = urlsplit(url).scheme
    try:
        if scheme in ("influxdb", "influxdb+http", "influxdb+https"):
            return InfluxStore.from_url(url)
        if scheme == "sqlite":
            return SqliteStore.from_url(url)
    except ValueError as e:
        raise ValueError(f"--store/STACKPULSE_STORE: {e}; accepted: {_ACCEPTED}") from None
    shown = scheme or "(none)"
    raise ValueError(
        f"--store/STACKPULSE_STORE: unsupported scheme {shown!r}; accepted: {_ACCEPTED}"
    )
