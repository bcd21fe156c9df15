"""The alerts component's settings: the rules' thresholds (STACKPULSE_ALERT_*), shared by
the alerts service and the API, and the service's own (STACKPULSE_ALERTS_*)."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Annotated, Any, Self

from pydantic import AliasChoices, BeforeValidator, Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from stackpulse.kernel.durations import Duration, PositiveDuration
from stackpulse.kernel.service import RunnerSettings
from stackpulse.kernel.settings import ComponentSettings, SettingsError

KINDS = ("gate", "seat", "shelf", "circ")
MIN_SECRET = 16

# Kept for callers that catch it by this name: a bad alert setting is a SettingsError.
AlertSettingsError = SettingsError


def _fraction(value: object) -> object:
    """0.25 or `25%`."""
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text[:-1]) / 100 if text.endswith("%") else float(text)
        except ValueError:
            raise ValueError("not a number (0.25 or 25%)") from None
        if not math.isfinite(number):
            raise ValueError("not a finite number")
        return number
    return value


def _whole(value: object) -> object:
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            raise ValueError("not a whole number") from None
    if isinstance(value, float) and not value.is_integer():
        raise ValueError("not a whole number")
    return value


Fraction = Annotated[float, BeforeValidator(_fraction), Field(allow_inf_nan=False)]
Whole = Annotated[int, BeforeValidator(_whole)]


class AlertSettings(ComponentSettings):
    """The rules' thresholds and the lifecycle's timers. A heartbeat of 0 (`off`) means a
    device kind is never called silent."""

    model_config = SettingsConfigDict(env_prefix="STACKPULSE_ALERT_", populate_by_name=True)

    # Three missed heartbeats make a device silent. Circulation points have no heartbeat
    # in the protocol (they speak only when something is checked in or out), so by
    # default only their Last Will says they are gone.
    heartbeat_gate: Duration = Field(timedelta(minutes=3), description="a gate silent this long")
    heartbeat_seat: Duration = Field(timedelta(minutes=15), description="a seat silent this long")
    heartbeat_shelf: Duration = Field(
        timedelta(minutes=45), description="a shelf reader silent this long (sweeps ~15 min)"
    )
    heartbeat_circ: Duration = Field(timedelta(0), description="a circulation point (0: off)")
    battery_warning: Fraction = Field(0.25, description="battery at or below: warning")
    battery_critical: Fraction = Field(0.10, description="battery at or below: critical")
    battery_clear_margin: Fraction = Field(
        0.05, description="a low battery clears only above warning + this"
    )
    capacity_open: Fraction = Field(1.0, description="occupancy/capacity at which a zone is over")
    capacity_clear: Fraction = Field(0.9, description="... and at or below which it clears")
    capacity_holds: Duration = Field(
        timedelta(minutes=5), description="over capacity this long before the alert opens"
    )
    drift_threshold: Whole = Field(10, description="|people left inside at closing| at least")
    seat_held_max: Duration = Field(
        timedelta(minutes=30), description="a seat held by belongings longer than this"
    )
    reshelving_max: Duration = Field(
        timedelta(hours=1), description="extra wait after 'awaiting reshelving' (0: at once)"
    )
    escalate_after: Duration = Field(
        timedelta(minutes=15), description="nobody acked: raise the severity, notify again"
    )
    renotify_every: Duration = Field(
        timedelta(minutes=30), description="after escalating, notify again this often"
    )
    refresh_every: Duration = Field(
        timedelta(minutes=1), description="a condition that holds is re-reported this often"
    )

    @model_validator(mode="before")
    @classmethod
    def _heartbeat_map(cls, data: Any) -> Any:
        """`heartbeat={"circ": 2h}`: the whole table, as the `heartbeat` property gives it
        (a kind not named is never silent)."""
        if isinstance(data, dict) and isinstance(data.get("heartbeat"), dict):
            data = dict(data)
            table = data.pop("heartbeat")
            for kind in KINDS:
                data[f"heartbeat_{kind}"] = table.get(kind, timedelta(0))
            unknown = set(table) - set(KINDS)
            if unknown:
                raise ValueError(f"heartbeat: unknown device kind {sorted(unknown)[0]!r}")
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        problem = _problem(self)
        if problem:
            # "field why": ComponentSettings.from_env names the field's variable.
            raise ValueError(f"{problem[0]} {problem[1]}")
        return self

    @property
    def heartbeat(self) -> dict[str, timedelta]:
        """Per device kind, silence longer than this is `silent`; kinds switched off absent."""
        out = {k: getattr(self, f"heartbeat_{k}") for k in KINDS}
        return {k: v for k, v in out.items() if v > timedelta(0)}


def _problem(s: AlertSettings) -> tuple[str, str] | None:
    """(the field at fault, why) or None."""
    if not 0 < s.battery_warning < 1:
        return "battery_warning", "must be between 0 and 1"
    if not 0 < s.battery_critical < s.battery_warning:
        return "battery_critical", (
            f"{s.battery_critical} must be above 0 and below battery_warning ({s.battery_warning})"
        )
    if not 0 <= s.battery_clear_margin < 1:
        return "battery_clear_margin", "must be at least 0 and below 1"
    if s.capacity_open <= 0:
        return "capacity_open", "must be above 0"
    if not 0 < s.capacity_clear <= s.capacity_open:
        return "capacity_clear", (
            f"{s.capacity_clear} must be above 0 and at most capacity_open ({s.capacity_open})"
        )
    if s.drift_threshold < 1:
        return "drift_threshold", "must be at least 1"
    for name in ("escalate_after", "renotify_every", "refresh_every"):
        if getattr(s, name) <= timedelta(0):
            return name, "must be a positive duration"
    return None


def _alert(name: str) -> AliasChoices:
    """A notification variable: STACKPULSE_ALERTS_*, or the STACKPULSE_ALERT_* it was."""
    return AliasChoices(f"STACKPULSE_ALERTS_{name}", f"STACKPULSE_ALERT_{name}")


class AlertServiceSettings(RunnerSettings):
    """The alerts service's loop and its notification channels."""

    model_config = SettingsConfigDict(env_prefix="STACKPULSE_ALERTS_", populate_by_name=True)

    client_id: str = Field(
        "stackpulse-alerts", description="MQTT client id of the persistent session"
    )
    tick: PositiveDuration = Field(
        timedelta(seconds=1), description="between rule and lifecycle ticks"
    )
    db_timeout: PositiveDuration = Field(timedelta(seconds=30), description="one database round")
    work_queue: int = Field(10_000, ge=1, le=1_000_000, description="observations waiting")
    record_every: PositiveDuration = Field(
        timedelta(seconds=5), description="between writes of transitions"
    )
    webhooks: str = Field(
        "", validation_alias=_alert("WEBHOOKS"), description="webhook URLs, comma-separated"
    )
    webhook_secret: SecretStr = Field(
        SecretStr(""),
        validation_alias=_alert("WEBHOOK_SECRET"),
        description="HMAC key of the webhooks (required with webhooks)",
    )
    webhook_timeout: Duration = Field(
        timedelta(seconds=10), validation_alias=_alert("WEBHOOK_TIMEOUT"), description="one POST"
    )

    @property
    def webhook_urls(self) -> tuple[str, ...]:
        return tuple(u.strip() for u in self.webhooks.split(",") if u.strip())


__all__ = [
    "KINDS",
    "MIN_SECRET",
    "AlertServiceSettings",
    "AlertSettings",
    "AlertSettingsError",
]
