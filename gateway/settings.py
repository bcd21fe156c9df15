"""The gateway's settings: STACKPULSE_GATEWAY_* (durations as `250ms`, `5ms`, `30s`)."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from stackpulse.kernel.durations import Seconds
from stackpulse.kernel.settings import ComponentSettings
from stackpulse.kernel.topics import DEFAULT_ROOT


class GatewaySettings(ComponentSettings):
    """Store batching, the spool, event batches and the broker session of the gateway."""

    model_config = SettingsConfigDict(env_prefix="STACKPULSE_GATEWAY_", populate_by_name=True)

    root: str = Field(DEFAULT_ROOT, description="topic root (from --root)")
    client_id: str = Field("stackpulse-gateway", description="MQTT client id of the session")
    batch_size: int = Field(
        5000, ge=1, le=100_000, description="points per store write (one spool segment)"
    )
    flush_interval: Seconds = Field(
        0.25, gt=0, le=60, description="a partial batch is written to the store after this"
    )
    spool: str = Field("", description="spool directory (default: one in the temp dir)")
    spool_max_bytes: int = Field(
        1 << 30, ge=4096, le=1 << 50, description="the spool's size bound on disk"
    )
    # MQTT 5 shared subscription group ($share/<group>/...): several gateways split the load.
    share: str = Field("", description="MQTT 5 shared subscription group (scale-out)")
    # Data events go out in batches: after `batch_window` or `batch_max` messages,
    # whichever comes first. Device messages are acknowledged only when their batch is
    # spooled and published, so batch_max must stay below the broker's in-flight window
    # for us (Mosquitto's max_inflight_messages, 20 by default).
    event_batch_window: Seconds = Field(
        0.005, gt=0, le=60, description="events wait at most this long to go out in a batch"
    )
    event_batch_max: int = Field(16, ge=1, le=10_000, description="events per batch at most")
    max_queued_publishes: int = Field(
        100_000, ge=1, le=10_000_000, description="publishes queued in the client at most"
    )
    # While the spool is full the batch is held in memory and nothing is acknowledged, so
    # the broker stops sending at its in-flight window; QoS 0 messages are not bounded by
    # that window: past this many held points the reader waits for room instead.
    held_max: int = Field(10_000, ge=1, le=10_000_000, description="points held, spool full")
    keepalive: int = Field(30, ge=1, le=3600, description="MQTT keepalive, seconds")
    metrics_port: int = Field(0, ge=0, le=65535, description="own /metrics port (0: none)")

    # The names the gateway's code reads.
    @property
    def spool_dir(self) -> str:
        return self.spool

    @property
    def max_spool_bytes(self) -> int:
        return self.spool_max_bytes

    @property
    def share_group(self) -> str:
        return self.share

    @property
    def batch_window(self) -> float:
        return self.event_batch_window

    @property
    def batch_max(self) -> int:
        return self.event_batch_max

    def spool_path(self, store: object = None) -> str:
        """The spool directory: as set, or one per client id and store in the temp dir."""
        if self.spool:
            return self.spool
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in self.client_id)
        # Points spooled for one store must never be replayed into another.
        which = hashlib.sha256(repr(store).encode()).hexdigest()[:12]
        return str(Path(tempfile.gettempdir()) / f"stackpulse-spool-{safe}-{which}")


__all__ = ["GatewaySettings"]
