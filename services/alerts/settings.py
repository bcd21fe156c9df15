"""The alert rules' thresholds and the lifecycle's timers, with STACKPULSE_ALERT_* variables."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from typing import Any

# Three missed heartbeats make a device silent. Circulation points have no heartbeat in
# the protocol (they speak only when something is checked in or out), so by default only
# their Last Will says they are gone; STACKPULSE_ALERT_HEARTBEAT_CIRC turns a check on.
DEFAULT_HEARTBEAT: dict[str, timedelta] = {
    "gate": timedelta(seconds=60 * 3),
    "seat": timedelta(seconds=300 * 3),
    "shelf": timedelta(minutes=15 * 3),  # a reader sweeps every 15 minutes or so
}
KINDS = ("gate", "seat", "shelf", "circ")
PREFIX = "STACKPULSE_ALERT_"


class AlertSettingsError(ValueError):
    """A setting that cannot work; one line naming the variable (or field) and why."""


@dataclass(frozen=True, slots=True)
class AlertSettings:
    # Per device kind: nothing heard for longer than this is "silent"; a kind not listed
    # is never called silent.
    heartbeat: dict[str, timedelta] = field(default_factory=lambda: dict(DEFAULT_HEARTBEAT))
    # Battery bands (fraction 0..1): at or below warning, at or below critical. A low
    # battery clears only above warning + margin, so a reading that jitters around the
    # band edge does not open and clear an alert all day.
    battery_warning: float = 0.25
    battery_critical: float = 0.10
    battery_clear_margin: float = 0.05
    # Over capacity: opens at occupancy/capacity >= capacity_open once that has held for
    # capacity_holds; clears at or below capacity_clear (hysteresis).
    capacity_open: float = 1.0
    capacity_clear: float = 0.9
    capacity_holds: timedelta = timedelta(minutes=5)
    # Counter drift at closing: |people the gates say are still inside| >= this.
    drift_threshold: int = 10
    # A seat held by belongings, nobody there, for longer than this.
    seat_held_max: timedelta = timedelta(minutes=30)
    # Extra wait after the inventory's "awaiting reshelving" finding (which itself opens
    # reshelve_within after check-in) before staff are alerted; 0 alerts at once.
    reshelving_max: timedelta = timedelta(hours=1)
    # Nobody acked an active alert for this long: raise its severity one band, re-notify.
    escalate_after: timedelta = timedelta(minutes=15)
    # After escalating, re-notify this often while it stays active and unacked.
    renotify_every: timedelta = timedelta(minutes=30)
    # A condition that keeps holding is re-reported (refreshing last_seen_at) at most
    # this often; changes of state or severity are reported at once.
    refresh_every: timedelta = timedelta(minutes=1)

    def __post_init__(self) -> None:
        problem = _problem(self)
        if problem:
            name, why = problem
            raise AlertSettingsError(f"{name} {why}")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AlertSettings:
        """Defaults overridden by STACKPULSE_ALERT_<FIELD> (and _HEARTBEAT_<KIND>) variables.

        Durations are seconds or a number with s, m, h or d (`90`, `90s`, `5m`, `2h`).
        """
        base = cls()
        changes: dict[str, Any] = {}
        heartbeat = dict(base.heartbeat)
        for kind in KINDS:
            name = f"{PREFIX}HEARTBEAT_{kind.upper()}"
            if name in env:
                value = _duration(name, env[name])
                if value <= timedelta(0):
                    heartbeat.pop(kind, None)  # 0 or "off": never silent
                else:
                    heartbeat[kind] = value
        changes["heartbeat"] = heartbeat
        for f in fields(cls):
            name = PREFIX + f.name.upper()
            if f.name == "heartbeat" or name not in env:
                continue
            raw = env[name]
            default = getattr(base, f.name)
            if isinstance(default, timedelta):
                changes[f.name] = _duration(name, raw)
            elif isinstance(default, int):
                changes[f.name] = _integer(name, raw)
            else:
                changes[f.name] = _fraction(name, raw)
        problem = _problem(_unchecked(base, changes))
        if problem:
            name, why = problem
            variable = PREFIX + name.upper()
            shown = f"={env[variable]!r}" if variable in env else ""
            raise AlertSettingsError(f"{variable}{shown}: {why}")
        return replace(base, **changes)


def _unchecked(base: AlertSettings, changes: Mapping[str, Any]) -> AlertSettings:
    """`base` with `changes`, not validated (so the error can name the variable)."""
    out = object.__new__(AlertSettings)
    for f in fields(AlertSettings):
        object.__setattr__(out, f.name, changes.get(f.name, getattr(base, f.name)))
    return out


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
    for name in ("capacity_holds", "seat_held_max", "reshelving_max"):
        if getattr(s, name) < timedelta(0):
            return name, "must not be negative"
    for name in ("escalate_after", "renotify_every", "refresh_every"):
        if getattr(s, name) <= timedelta(0):
            return name, "must be a positive duration"
    for kind, value in s.heartbeat.items():
        if kind not in KINDS:
            return "heartbeat", f"unknown device kind {kind!r} (one of {', '.join(KINDS)})"
        if value <= timedelta(0):
            return f"heartbeat_{kind}", "must be a positive duration"
    return None


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(name: str, raw: str) -> timedelta:
    if raw.strip().lower() in ("off", "none"):
        return timedelta(0)
    match = _DURATION.match(raw.lower())
    if not match:
        raise AlertSettingsError(
            f"{name}={raw!r}: not a duration; use seconds or a number with s, m, h or d (5m)"
        )
    return timedelta(seconds=float(match[1]) * _UNIT[match[2]])


def _integer(name: str, raw: str) -> int:
    try:
        return int(raw.strip())
    except ValueError:
        raise AlertSettingsError(f"{name}={raw!r}: not a whole number") from None


def _fraction(name: str, raw: str) -> float:
    text = raw.strip()
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise AlertSettingsError(f"{name}={raw!r}: not a number (0.25 or 25%)") from None
    if not math.isfinite(value):
        raise AlertSettingsError(f"{name}={raw!r}: not a finite number")
    return value
