"""The occupancy service's settings: STACKPULSE_OCCUPANCY_* (durations as `90s`, `10m`)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from stackpulse.kernel.durations import Duration, PositiveDuration
from stackpulse.kernel.service import RunnerSettings
from stackpulse.services.occupancy.logic import SeatTiming

PRIVACY_FLOOR = 5  # the recommended floor: a count of 1-4 in a small room can single out


def _env(name: str, *old: str) -> AliasChoices:
    """The variable, and the names it had before the settings were declared."""
    return AliasChoices(f"STACKPULSE_OCCUPANCY_{name}", *old)


class OccupancySettings(RunnerSettings):
    """Seat timing, privacy, and how often state is recorded, forecast and checkpointed."""

    model_config = SettingsConfigDict(env_prefix="STACKPULSE_OCCUPANCY_", populate_by_name=True)

    client_id: str = Field("stackpulse-occupancy", description="MQTT client id of the session")
    seat_on_delay: Duration = Field(
        timedelta(seconds=60),
        validation_alias=_env("SEAT_ON_DELAY", "STACKPULSE_SEAT_ON_DELAY"),
        description="presence this long before a seat shows occupied or held",
    )
    seat_off_delay: Duration = Field(
        timedelta(minutes=10),
        validation_alias=_env("SEAT_OFF_DELAY", "STACKPULSE_SEAT_OFF_DELAY"),
        description="empty this long before a seat shows free again",
    )
    seat_heartbeat: Duration = Field(
        timedelta(seconds=300),
        validation_alias=_env("SEAT_HEARTBEAT", "STACKPULSE_SEAT_HEARTBEAT"),
        description="a seat sensor's heartbeat period",
    )
    seat_silent_heartbeats: int = Field(
        3,
        ge=1,
        le=100,
        validation_alias=_env("SEAT_SILENT_HEARTBEATS", "STACKPULSE_SEAT_SILENT_HEARTBEATS"),
        description="heartbeats missed before a seat shows unknown",
    )
    seat_hog_after: Duration = Field(
        timedelta(minutes=30),
        validation_alias=_env("SEAT_HOG_AFTER", "STACKPULSE_SEAT_HOG_AFTER"),
        description="held by belongings this long: flagged held_too_long",
    )
    privacy_floor: int = Field(
        PRIVACY_FLOOR,
        ge=0,
        le=1000,
        validation_alias=_env("PRIVACY_FLOOR", "STACKPULSE_PRIVACY_FLOOR"),
        description="fewer people than this (but some) are published as 'few'",
    )
    tick: PositiveDuration = Field(
        timedelta(milliseconds=500), description="wall time between ticks"
    )
    record_every: PositiveDuration = Field(
        timedelta(minutes=1), description="clock time between stored zone snapshots"
    )
    forecast_every: PositiveDuration = Field(
        timedelta(minutes=15), description="clock time between forecasts"
    )
    forecast_weeks: int = Field(4, ge=1, le=52, description="weeks of history a forecast reads")
    forecast_hours: int = Field(4, ge=1, le=24, description="hours ahead a forecast covers")
    catchup_first: Duration = Field(
        timedelta(hours=24),
        description="with no checkpoint: read the store back to the last closing, at most this",
    )

    @property
    def timing(self) -> SeatTiming:
        return SeatTiming(
            on_delay=self.seat_on_delay,
            off_delay=self.seat_off_delay,
            heartbeat=self.seat_heartbeat,
            silent_after_heartbeats=self.seat_silent_heartbeats,
            hog_after=self.seat_hog_after,
        )


__all__ = ["PRIVACY_FLOOR", "OccupancySettings"]
