"""The reports service's settings: STACKPULSE_REPORTS_* (durations as `1h`, `1m`)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from stackpulse.kernel.durations import Duration, PositiveDuration
from stackpulse.kernel.settings import ComponentSettings


class ReportsSettings(ComponentSettings):
    """When each site's day is archived, and how long the store may take to answer."""

    model_config = SettingsConfigDict(env_prefix="STACKPULSE_REPORTS_", populate_by_name=True)

    archive_after: Duration = Field(
        timedelta(hours=1),
        description="after a site's local midnight, wait this long, then archive its day",
    )
    check_every: PositiveDuration = Field(
        timedelta(minutes=1), description="wall time between looks"
    )
    archive_days: int = Field(
        7, ge=1, le=366, description="days back a (re)started service archives when missing"
    )


__all__ = ["ReportsSettings"]
