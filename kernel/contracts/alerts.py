"""`_alerts/...`: alerts as they are now (retained) and every transition (not retained).

Producer: the alerts service (from its durable outbox). Consumers: outside subscribers
(building systems, staff tools); the same bodies go to webhooks and the HTTP API.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import Field, StrictBool, StrictInt, StrictStr

from stackpulse.kernel.contracts.base import Contract
from stackpulse.kernel.models import Timestamp

TRANSITIONS_LEVEL = "_transitions"
MAX_MESSAGE = 2000  # characters of an alert's message; longer input is cut, not stored


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


class AlertState(StrEnum):
    """ThingsBoard's model: acknowledging and clearing are separate."""

    ACTIVE_UNACK = "active_unack"
    ACTIVE_ACK = "active_ack"
    CLEARED_UNACK = "cleared_unack"
    CLEARED_ACK = "cleared_ack"

    @property
    def active(self) -> bool:
        return self in (AlertState.ACTIVE_UNACK, AlertState.ACTIVE_ACK)

    @property
    def acked(self) -> bool:
        return self in (AlertState.ACTIVE_ACK, AlertState.CLEARED_ACK)


class AlertBody(Contract):
    """An alert as published and served; protocol.md section 5 names the first fields."""

    id: StrictStr
    rule: StrictStr
    severity: Severity
    subject: StrictStr
    state: AlertState
    opened_at: Timestamp
    acked_by: StrictStr | None
    cleared_at: Timestamp | None
    site: StrictStr
    message: Annotated[StrictStr, Field(max_length=MAX_MESSAGE)]
    active: StrictBool
    updated_at: Timestamp
    last_seen_at: Timestamp
    acked_at: Timestamp | None
    cleared_by: StrictStr | None
    escalations: Annotated[StrictInt, Field(ge=0)]
    repeats: Annotated[StrictInt, Field(ge=0)]
    detail: dict[str, Any]


class TransitionBody(Contract):
    """One transition: the MQTT event, the webhook body and the console's stream event."""

    event_id: StrictStr  # the same for every delivery of this transition: drop repeats by it
    kind: StrictStr  # opened | acked | cleared | escalated | renotified
    at: Timestamp
    by: StrictStr | None
    before: AlertState | None
    alert: AlertBody


def _level(text: str) -> str:
    """One MQTT topic level: no separators or wildcards, never empty."""
    cleaned = "".join("_" if c in "/+#\x00" else c for c in text)
    return cleaned or "_"


def alert_topic(root: str, site: str, rule: str, subject: str) -> str:
    """Retained `{root}/{site}/_alerts/{rule}/{subject}`: the current alert, while active.

    An empty retained payload replaces it when the alert is cleared: "nothing active".
    """
    return f"{root}/{site}/_alerts/{_level(rule)}/{_level(subject)}"


def transitions_topic(root: str, site: str) -> str:
    """Non-retained `{root}/{site}/_alerts/_transitions`: every transition, as it happens."""
    return f"{root}/{site}/_alerts/{TRANSITIONS_LEVEL}"


def alerts_subscription(root: str, site: str = "+") -> str:
    return f"{root}/{site}/_alerts/#"


__all__ = [
    "AlertBody",
    "AlertState",
    "Severity",
    "TransitionBody",
    "alert_topic",
    "alerts_subscription",
    "transitions_topic",
]
