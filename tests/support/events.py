"""Normalized events as the gateway would republish them, for tests of the services."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from stackpulse.kernel.contracts.events import Event
from stackpulse.kernel.topics import Channel, Kind
from stackpulse.simulators import Message


def data_event(
    kind: Kind, device: str, payload: dict[str, Any], at: datetime, site: str = "main"
) -> Event:
    """A data message received at `at`, its device clock in agreement."""
    return Event(
        site=site,
        kind=kind,
        device=device,
        channel=Channel.DATA,
        ts=at,
        received=at,
        payload=payload,
    )


def sim_event(m: Message, site: str = "main") -> Event:
    """A simulator message, received at the moment the model emitted it."""
    at = datetime.fromtimestamp(m.at, UTC)
    return Event(
        site=site,
        kind=m.kind,
        device=m.device,
        channel=m.channel,
        ts=m.payload.get("ts") or at,
        received=at,
        payload=m.payload,
    )
