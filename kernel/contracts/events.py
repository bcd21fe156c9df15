"""`_events` and `_dead`: what the gateway publishes for the services, and what it refuses.

Producer: the gateway (`gateway.decode` builds an Event per accepted device message; its
fast path writes the same JSON, kept honest by a property test). Consumers: every service
(occupancy, inventory, alerts, reservations), through the kernel's service runner, which
also rebuilds Events from the store when it catches up (`kernel.catchup`).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, StrictBool, StrictInt, StrictStr, TypeAdapter, ValidationError

from stackpulse.kernel.contracts.base import Contract, ContractError, describe
from stackpulse.kernel.models import DATA_MODELS, DevicePayload, StatusMessage, Timestamp
from stackpulse.kernel.topics import (
    EVENT_BATCH,
    Channel,
    Kind,
    event_batch_topic,
    event_subscription,
    event_topic,
)

MAX_EVENTS_BYTES = 8 * 1024 * 1024  # a batch of 16 shelf sweeps of 20,000 reads is ~6 MB

SiteId = Annotated[StrictStr, Field(pattern=r"^[a-z0-9-]{1,32}$")]
DeviceId = Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")]


class Event(Contract):
    """One accepted device message, normalized: what a service applies."""

    site: SiteId
    kind: Kind
    device: DeviceId
    channel: Channel
    ts: Timestamp  # device time, or receive time when the device clock was off
    received: Timestamp
    clock_corrected: StrictBool = False
    payload: dict[str, Any]

    def data(self) -> DevicePayload:
        """The payload as its typed protocol message (pydantic ValidationError if not)."""
        if self.channel is Channel.STATUS:
            return StatusMessage.model_validate(self.payload)
        return DATA_MODELS[self.kind].model_validate(self.payload)  # type: ignore[return-value]

    @property
    def key(self) -> tuple[str, str, str, int, int] | None:
        """(site, kind, device, boot, seq): what identifies a data message; None for status."""
        boot, seq = self.payload.get("boot"), self.payload.get("seq")
        if self.channel is Channel.STATUS or not isinstance(boot, int) or not isinstance(seq, int):
            return None
        return (self.site, self.kind.value, self.device, boot, seq)


_EVENT_LIST = TypeAdapter(list[Event])


def decode_events(raw: bytes | str) -> list[Event]:
    """The events of one message on `_events`: a batch (JSON array) or a single event.

    Raises ContractError (a ValueError) when the message is not made of valid events.
    """
    if len(raw) > MAX_EVENTS_BYTES:
        raise ContractError(f"events: {len(raw)} bytes is over {MAX_EVENTS_BYTES}")
    text = raw.lstrip()
    try:
        if text[:1] in (b"[", "["):
            return _EVENT_LIST.validate_json(raw)
        return [Event.model_validate_json(raw)]
    except ValidationError as err:
        raise ContractError(f"events: {describe(err)}") from None


def encode_events(events: list[Event]) -> bytes:
    """A batch as the gateway publishes it (a JSON array of events)."""
    return _EVENT_LIST.dump_json(events)


class DeadLetter(Contract):
    """`{root}/{site}/_dead/{kind}/{device}`: a device message that was not applied, and why."""

    reason: StrictStr  # short and stable: bad_json, invalid, unknown_device, too_large, ...
    detail: StrictStr
    topic: Annotated[StrictStr, Field(max_length=512)]
    received: Timestamp
    size: Annotated[StrictInt, Field(ge=0)]
    payload: StrictStr | None = None  # the payload as text (UTF-8), possibly truncated
    payload_base64: StrictStr | None = None  # or as base64 when it is not UTF-8
    truncated: StrictBool = False


__all__ = [
    "EVENT_BATCH",
    "DeadLetter",
    "Event",
    "decode_events",
    "encode_events",
    "event_batch_topic",
    "event_subscription",
    "event_topic",
]
