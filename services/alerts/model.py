"""What the alerts service knows and says: inputs, observations, alerts and transitions.

The contract between the rules (`rules.py`: inputs -> observations), the lifecycle and
its store (`lifecycle.py`, `store.py`: observations -> alerts and transitions), and the
service, notifications and routes (`service.py`, `notify.py`, `routes.py`).
Times are aware UTC; nothing here reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from stackpulse.kernel.contracts.alerts import AlertState, Severity

__all__ = ["AlertState", "Severity"]


# -- inputs: what the service reads off the bus, already decoded -------------------


@dataclass(frozen=True, slots=True)
class DeviceSeen:
    """A device message passed by the gateway (data or status)."""

    site: str
    kind: str  # gate | seat | shelf | circ
    device: str
    at: datetime
    online: bool | None = None  # status messages only (False: Last Will / offline)
    battery: float | None = None  # seat data, 0..1


@dataclass(frozen=True, slots=True)
class ZoneSeen:
    """A zone's occupancy as the occupancy service publishes it."""

    site: str
    zone: str
    occupancy: int | None  # None when the privacy floor hides a small count
    capacity: int
    at: datetime


@dataclass(frozen=True, slots=True)
class SeatSeen:
    site: str
    seat: str
    state: str  # free | occupied | held | unknown
    since: datetime
    at: datetime


@dataclass(frozen=True, slots=True)
class DriftSeen:
    """Counter drift measured at closing: people the gates say are still inside."""

    site: str
    zone: str
    drift: int
    at: datetime


@dataclass(frozen=True, slots=True)
class FindingSeen:
    """An inventory finding opened or closed (misplaced | missing | reshelving)."""

    site: str
    finding: str
    item: str
    state: Literal["opened", "closed"]
    at: datetime
    detail: dict[str, Any] = field(default_factory=dict)


Input = DeviceSeen | ZoneSeen | SeatSeen | DriftSeen | FindingSeen


# -- rules -> lifecycle ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Observation:
    """Whether a rule's condition holds for one subject, as of `at`.

    `active=True` opens the alert of (rule, site, subject) or refreshes the open one;
    `active=False` clears it automatically (the condition ended).
    """

    rule: str
    site: str
    subject: str  # e.g. a device id, a zone id, a seat id, an item id
    active: bool
    at: datetime
    severity: Severity
    message: str  # what staff read, e.g. "item X is on shelf 3F-A07-2, it belongs in 3F-B02-1"
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Alert:
    id: str  # opaque and unguessable (uuid4 hex), never a counter
    rule: str
    site: str
    subject: str
    severity: Severity
    state: AlertState
    message: str
    opened_at: datetime
    updated_at: datetime  # last transition or refresh
    last_seen_at: datetime  # last observation that the condition holds
    repeats: int  # observations that refreshed it after it opened
    acked_by: str | None = None
    acked_at: datetime | None = None
    cleared_by: str | None = None  # None when cleared automatically
    cleared_at: datetime | None = None
    escalations: int = 0
    detail: dict[str, Any] = field(default_factory=dict)


TransitionKind = Literal["opened", "acked", "cleared", "escalated", "renotified"]


@dataclass(frozen=True, slots=True)
class Transition:
    """One entry of an alert's history; every one is kept and every one is notified."""

    alert: Alert  # the alert after the transition
    kind: TransitionKind
    at: datetime
    by: str | None  # the user, or None for the system
    before: AlertState | None  # None for "opened"
