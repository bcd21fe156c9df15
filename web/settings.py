"""The API's settings: STACKPULSE_API_* (durations as `15s`, `1m`)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from stackpulse.kernel.durations import PositiveDuration
from stackpulse.kernel.settings import ComponentSettings


class ApiSettings(ComponentSettings):
    """Streams, timeouts, and the read models' broker sessions of the API process."""

    model_config = SettingsConfigDict(env_prefix="STACKPULSE_API_", populate_by_name=True)

    client_id: str = Field("", description="MQTT client id of the read models (random if empty)")
    ping: PositiveDuration = Field(
        timedelta(seconds=15), description="SSE keep-alive comment period"
    )
    send_timeout: PositiveDuration = Field(
        timedelta(seconds=30), description="an SSE client that takes no data this long is dropped"
    )
    db_timeout: PositiveDuration = Field(
        timedelta(seconds=30), description="one state database request"
    )
    store_timeout: PositiveDuration = Field(
        timedelta(seconds=30), description="one time-series store request (reports)"
    )
    alerts_poll: PositiveDuration = Field(
        timedelta(seconds=1), description="how often the alert stream looks for transitions"
    )


__all__ = ["ApiSettings"]
