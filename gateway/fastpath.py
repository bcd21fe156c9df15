"""The gateway's hot path: common device data messages decoded in C (msgspec).

pydantic gives precise errors but costs tens of microseconds per message; this path costs
a few. It decides only what it is sure of: a well-formed `data` message of a device the
layout knows, accepted exactly as the protocol models (kernel.models) would accept it.
Everything else — malformed or oversized payloads, status messages, anything it cannot
check fully — returns None and goes through the checked path (gateway.decode), which gives
the precise reason. tests/test_gateway_fastpath.py checks with hypothesis that whatever
this path accepts, the checked path accepts with the same event, point and key.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from stackpulse.gateway.results import Accepted, SiteIndex, correct_clock
from stackpulse.kernel.models import MAX_PAYLOAD_BYTES, format_ts, parse_rfc3339
from stackpulse.kernel.schema import circ_point, gate_point, seat_point, shelf_point
from stackpulse.kernel.store.base import Point
from stackpulse.kernel.store.lineprotocol import encode_series
from stackpulse.kernel.topics import Channel, Kind

# The same bounds as kernel.models. `\Z`, not `$`: Python's `$` also matches before a
# final newline, which the protocol's identifier pattern does not allow.
_Count = Annotated[int, msgspec.Meta(ge=0, le=2**53)]
_Ident = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+\Z")]
_Part = Annotated[int, msgspec.Meta(ge=1, le=10_000)]


class _Gate(msgspec.Struct, frozen=True):
    ts: str
    boot: _Count
    seq: _Count
    in_: _Count = msgspec.field(name="in")
    out: _Count


class _Seat(msgspec.Struct, frozen=True):
    ts: str
    boot: _Count
    seq: _Count
    presence: Literal["person", "object", "empty"]
    battery: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] | None = None


class _Read(msgspec.Struct, frozen=True):
    id: _Ident
    rssi: Annotated[float, msgspec.Meta(ge=-200.0, le=50.0)] | None = None


class _Shelf(msgspec.Struct, frozen=True):
    ts: str
    boot: _Count
    seq: _Count
    sweep: _Count
    section: _Ident
    items: Annotated[list[_Read], msgspec.Meta(max_length=20_000)]
    part: _Part = 1
    parts: _Part = 1


class _Circ(msgspec.Struct, frozen=True):
    ts: str
    boot: _Count
    seq: _Count
    item: _Ident
    action: Literal["checkout", "checkin", "renew", "hold"]


_DECODERS: dict[Kind, msgspec.json.Decoder[Any]] = {
    Kind.GATE: msgspec.json.Decoder(_Gate),
    Kind.SEAT: msgspec.json.Decoder(_Seat),
    Kind.SHELF: msgspec.json.Decoder(_Shelf),
    Kind.CIRC: msgspec.json.Decoder(_Circ),
}
_KINDS = {k.value: k for k in Kind}
_encode = msgspec.json.Encoder().encode


def decode_fast(
    root: str,
    topic: str,
    raw: bytes,
    received: datetime,
    sites: Mapping[str, SiteIndex],
    received_text: str,
) -> Accepted | None:
    """Accept a common, valid data message; None means "take the checked path"."""
    if len(raw) > MAX_PAYLOAD_BYTES or not topic.startswith(root):
        return None
    parts = topic[len(root) + 1 :].split("/")
    if len(parts) != 4 or parts[3] != "data" or topic[len(root)] != "/":
        return None
    site, kind_text, device, _ = parts
    index = sites.get(site)
    if index is None:
        return None
    kind = index.devices.get(device)
    if kind is None or kind.value != kind_text:
        return None
    try:
        msg = _DECODERS[kind].decode(raw)
        device_ts = parse_rfc3339(msg.ts)
    except (msgspec.DecodeError, ValueError):
        return None
    ts, corrected = correct_clock(device_ts, received)
    # Most devices already send the canonical form; then formatting it again is a no-op.
    text = msg.ts
    if not (len(text) == 24 and text[23] == "Z" and text[19] == "." and text[10] == "T"):
        text = format_ts(device_ts)
    point: Point
    # The event's payload: what the protocol models dump, in their field order.
    payload: dict[str, Any] = {"ts": text, "boot": msg.boot, "seq": msg.seq}
    # The point's line protocol, written out directly: what encode_point would make of it
    # (the tests hold the two equal), without its per-field type dispatch. Identifiers
    # match [A-Za-z0-9._:-], so no string here needs escaping. Every kind's fields end
    # with the message's identity and the clock mark (kernel.schema).
    tail = f"boot={msg.boot}i,seq={msg.seq}i,clock_corrected={'true' if corrected else 'false'}"
    if kind is Kind.SEAT:
        seat, zone = index.seats[device]
        point = seat_point(site, device, seat, zone, msg, ts, corrected)
        fields = f'presence="{msg.presence}",person={int(msg.presence == "person")}i,{tail}'
        payload["presence"] = msg.presence
        if msg.battery is not None:
            fields += f",battery={msg.battery!r}"
            payload["battery"] = msg.battery
    elif kind is Kind.GATE:
        point = gate_point(site, device, msg, ts, corrected)
        fields = f"in_total={msg.in_}i,out_total={msg.out}i,{tail}"
        payload["in"] = msg.in_
        payload["out"] = msg.out
    elif kind is Kind.SHELF:
        if msg.part > msg.parts or msg.section not in index.sections.get(device, ()):
            return None
        point = shelf_point(site, device, msg, ts, corrected)
        fields = (
            f"sweep={msg.sweep}i,part={msg.part}i,parts={msg.parts}i,"
            f'item_count={len(msg.items)}i,items="{point.fields["items"]}",'
        )
        if "rssi" in point.fields:
            fields += f'rssi="{point.fields["rssi"]}",'
        fields += tail
        payload |= {
            "sweep": msg.sweep,
            "section": msg.section,
            "part": msg.part,
            "parts": msg.parts,
            "items": [
                {"id": r.id} if r.rssi is None else {"id": r.id, "rssi": r.rssi} for r in msg.items
            ],
        }
    else:
        point = circ_point(site, device, msg, ts, corrected)
        fields = f'item="{msg.item}",{tail}'
        payload["item"] = msg.item
        payload["action"] = msg.action
    body = _encode(
        {
            "site": site,
            "kind": kind_text,
            "device": device,
            "channel": "data",
            "ts": received_text if corrected else text,
            "received": received_text,
            "clock_corrected": corrected,
            "payload": payload,
        }
    )
    return Accepted(
        site=site,
        kind=kind,
        device=device,
        channel=Channel.DATA,
        ts=ts,
        received=received,
        point=point,
        key=(site, kind_text, device, msg.boot, msg.seq),
        body=body,
        line=f"{encode_series(point.measurement, point.tags)} {fields} {point.ts_ns}",
    )
