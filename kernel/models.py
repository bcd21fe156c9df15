"""Typed device payloads (protocol.md section 2) and the normalized event."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)

from stackpulse.kernel.topics import Channel, Kind

MAX_PAYLOAD_BYTES = 256 * 1024


def parse_rfc3339(value: object) -> datetime:
    """A device timestamp: RFC 3339 with an offset, returned in UTC; ValueError if not."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        if not 10 <= len(value) <= 40 or "T" not in value.upper():
            raise ValueError("must be an RFC 3339 timestamp like 2026-11-24T10:42:00Z")
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError("must be an RFC 3339 timestamp like 2026-11-24T10:42:00Z") from None
    else:
        raise ValueError("must be an RFC 3339 timestamp string")
    if parsed.tzinfo is None:
        raise ValueError("must carry a UTC offset (Z)")
    return parsed.astimezone(UTC)


def format_ts(value: datetime) -> str:
    """RFC 3339, UTC, millisecond precision, `Z` suffix."""
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.isoformat(timespec="milliseconds")[:-6] + "Z"


Timestamp = Annotated[
    datetime,
    BeforeValidator(parse_rfc3339),
    PlainSerializer(format_ts, return_type=str),
]
Count = Annotated[StrictInt, Field(ge=0, le=2**53)]
Ident = Annotated[StrictStr, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]


class _Payload(BaseModel):
    # Devices may send more fields than we know; we keep to what the protocol names.
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class DataMessage(_Payload):
    ts: Timestamp
    boot: Count
    seq: Count


class GateData(DataMessage):
    in_: Count = Field(alias="in")
    out: Count


class SeatData(DataMessage):
    presence: Literal["person", "object", "empty"]
    battery: Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)] | None = None


class ShelfRead(_Payload):
    id: Ident
    rssi: Annotated[float, Field(ge=-200.0, le=50.0, allow_inf_nan=False)] | None = None


class ShelfData(DataMessage):
    sweep: Count
    section: Ident
    part: Annotated[StrictInt, Field(ge=1, le=10_000)] = 1
    parts: Annotated[StrictInt, Field(ge=1, le=10_000)] = 1
    items: Annotated[list[ShelfRead], Field(max_length=20_000)]

    @model_validator(mode="after")
    def _part_within_parts(self) -> ShelfData:
        if self.part > self.parts:
            raise ValueError(f"part {self.part} is greater than parts {self.parts}")
        return self


class CircData(DataMessage):
    item: Ident
    action: Literal["checkout", "checkin", "renew", "hold"]


class StatusMessage(_Payload):
    """Birth message and Last Will; the Will carries only `online: false`."""

    online: StrictBool
    ts: Timestamp | None = None
    boot: Count | None = None
    fw: Annotated[StrictStr, Field(max_length=64)] | None = None


DeviceData = GateData | SeatData | ShelfData | CircData
DevicePayload = DeviceData | StatusMessage

DATA_MODELS: dict[Kind, type[DataMessage]] = {
    Kind.GATE: GateData,
    Kind.SEAT: SeatData,
    Kind.SHELF: ShelfData,
    Kind.CIRC: CircData,
}


class PayloadError(ValueError):
    """A payload that is not applied; `reason` is short and stable (a metric label)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _describe(err: ValidationError) -> str:
    parts = []
    for e in err.errors(include_url=False)[:3]:
        loc = ".".join(str(x) for x in e["loc"]) or "payload"
        parts.append(f"{loc}: {e['msg']}")
    return "; ".join(parts)


def parse_payload(kind: Kind, channel: Channel, raw: bytes) -> DevicePayload:
    """Decode and validate one payload; raise PayloadError with a clear reason."""
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise PayloadError("too_large", f"payload of {len(raw)} bytes is over 256 KiB")
    model: type[_Payload] = StatusMessage if channel is Channel.STATUS else DATA_MODELS[kind]
    try:
        parsed: DevicePayload = model.model_validate_json(raw)  # type: ignore[assignment]
    except ValidationError as err:
        first = err.errors(include_url=False)[0]["type"] if err.errors() else ""
        reason = "bad_json" if first in ("json_invalid", "json_type") else "invalid"
        raise PayloadError(reason, _describe(err)) from None
    return parsed
