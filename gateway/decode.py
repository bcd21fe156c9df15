"""Pure decoding of one raw device message: accept it as an event and a point, or reject it."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import datetime

from stackpulse.gateway.fastpath import decode_fast
from stackpulse.gateway.results import (
    MAX_AHEAD,
    MAX_BEHIND,
    Accepted,
    Rejected,
    SiteIndex,
    correct_clock,
    index_sites,
)
from stackpulse.kernel.contracts.events import DeadLetter, Event
from stackpulse.kernel.models import (
    MAX_PAYLOAD_BYTES,
    CircData,
    DevicePayload,
    GateData,
    PayloadError,
    SeatData,
    ShelfData,
    StatusMessage,
    format_ts,
    parse_payload,
)
from stackpulse.kernel.schema import circ_point, gate_point, seat_point, shelf_point, status_point
from stackpulse.kernel.store.base import Point
from stackpulse.kernel.topics import (
    Channel,
    Kind,
    TopicError,
    dead_letter_topic,
    parse_device_topic,
)

__all__ = [
    "MAX_AHEAD",
    "MAX_BEHIND",
    "Accepted",
    "Rejected",
    "SiteIndex",
    "correct_clock",
    "decode",
    "decode_checked",
    "index_sites",
    "is_system_output",
]

_DEAD_LETTER_KEEP = 4096  # bytes of an oversized payload kept for a person to look at


def is_system_output(root: str, topic: str) -> bool:
    """The system's own output (a site or kind level beginning with `_`): never device input."""
    if not topic.startswith(root + "/"):
        return False
    levels = topic[len(root) + 1 :].split("/", 2)
    return any(level.startswith("_") for level in levels[:2])


def decode(
    root: str,
    topic: str,
    raw: bytes,
    received: datetime,
    sites: Mapping[str, SiteIndex],
    received_text: str | None = None,
) -> Accepted | Rejected | None:
    """Validate one message against the protocol and the layouts. Never raises.

    Common valid data messages take the fast path (gateway.fastpath); the rest, and
    every message that is refused, the checked one. None: the topic is the system's own
    output (a dead letter, say), which is not read back — dead-lettering it would loop.
    `received_text` is `received` formatted, when the caller has it already.
    """
    try:
        fast = decode_fast(root, topic, raw, received, sites, received_text or format_ts(received))
    except Exception:  # the checked path below says what is wrong
        fast = None
    return fast if fast is not None else decode_checked(root, topic, raw, received, sites)


def decode_checked(
    root: str, topic: str, raw: bytes, received: datetime, sites: Mapping[str, SiteIndex]
) -> Accepted | Rejected | None:
    """decode() through the protocol models only: slower, and precise about errors."""
    if is_system_output(root, topic):
        return None
    try:
        return _decode(root, topic, raw, received, sites)
    except _Reject as r:
        return _rejected(root, topic, raw, received, r)
    except Exception as err:  # the contract is "never crash on input"; keep the evidence
        detail = f"{type(err).__name__}: {err}"[:300]
        return _rejected(root, topic, raw, received, _Reject("internal", detail))


class _Reject(Exception):
    def __init__(
        self,
        reason: str,
        detail: str,
        site: str | None = None,
        kind: str | None = None,
        device: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail
        self.site, self.kind, self.device = site, kind, device


def _decode(
    root: str, topic: str, raw: bytes, received: datetime, sites: Mapping[str, SiteIndex]
) -> Accepted:
    try:
        t = parse_device_topic(topic, root)
    except TopicError as err:
        site, kind, device = _best_effort_levels(root, topic)
        raise _Reject("bad_topic", str(err), site, kind, device) from None
    where = (t.site, t.kind.value, t.device)
    index = sites.get(t.site)
    if index is None:
        raise _Reject("unknown_site", f"site {t.site!r} is not in any layout", *where)
    known = index.devices.get(t.device)
    if known is None:
        raise _Reject("unknown_device", f"device {t.device!r} is not in the layout", *where)
    if known is not t.kind:
        raise _Reject("wrong_kind", f"device {t.device!r} is a {known}, not a {t.kind}", *where)
    try:
        msg = parse_payload(t.kind, t.channel, raw)
    except PayloadError as err:
        raise _Reject(err.reason, err.detail, *where) from None
    if isinstance(msg, StatusMessage):
        ts = msg.ts or received
        ts, corrected = correct_clock(ts, received)
        point = status_point(t.site, t.kind.value, t.device, msg, ts)
        event = _event(t.site, t.kind, t.device, t.channel, ts, received, corrected, msg)
        return _accepted(event, point, None)
    if isinstance(msg, ShelfData) and msg.section not in index.sections.get(t.device, ()):
        raise _Reject(
            "unknown_section", f"section {msg.section!r} is not read by {t.device!r}", *where
        )
    ts, corrected = correct_clock(msg.ts, received)
    point = _point(t.site, t.device, msg, ts, corrected, index)
    event = _event(t.site, t.kind, t.device, t.channel, ts, received, corrected, msg)
    return _accepted(event, point, (t.site, t.kind.value, t.device, msg.boot, msg.seq))


def _accepted(event: Event, point: Point, key: tuple[str, str, str, int, int] | None) -> Accepted:
    return Accepted(
        site=event.site,
        kind=event.kind,
        device=event.device,
        channel=event.channel,
        ts=event.ts,
        received=event.received,
        point=point,
        key=key,
        body=event.model_dump_json().encode(),
    )


def _point(
    site: str,
    device: str,
    msg: DevicePayload,
    ts: datetime,
    corrected: bool,
    index: SiteIndex,
) -> Point:
    if isinstance(msg, GateData):
        return gate_point(site, device, msg, ts, corrected)
    if isinstance(msg, SeatData):
        seat, zone = index.seats[device]
        return seat_point(site, device, seat, zone, msg, ts, corrected)
    if isinstance(msg, ShelfData):
        return shelf_point(site, device, msg, ts, corrected)
    if isinstance(msg, CircData):
        return circ_point(site, device, msg, ts, corrected)
    raise AssertionError(f"no point for {type(msg).__name__}")


def _event(
    site: str,
    kind: Kind,
    device: str,
    channel: Channel,
    ts: datetime,
    received: datetime,
    corrected: bool,
    msg: DevicePayload,
) -> Event:
    # Every part is validated already: build without validating again.
    return Event.model_construct(
        site=site,
        kind=kind,
        device=device,
        channel=channel,
        ts=ts,
        received=received,
        clock_corrected=corrected,
        payload=msg.model_dump(mode="json", by_alias=True, exclude_none=True),
    )


def _best_effort_levels(root: str, topic: str) -> tuple[str | None, str | None, str | None]:
    rest = topic[len(root) + 1 :] if topic.startswith(root + "/") else ""
    parts = rest.split("/") if rest else []
    parts += [None] * 3  # type: ignore[list-item]
    return parts[0], parts[1], parts[2]


def _rejected(root: str, topic: str, raw: bytes, received: datetime, r: _Reject) -> Rejected:
    site = r.site if r.site and not r.site.startswith("_") else None
    kept = raw[:_DEAD_LETTER_KEEP] if len(raw) > MAX_PAYLOAD_BYTES else raw
    try:
        text, binary = kept.decode("utf-8"), None
    except UnicodeDecodeError:
        text, binary = None, base64.b64encode(kept).decode("ascii")
    letter = DeadLetter(
        reason=r.reason,
        detail=r.detail,
        topic=topic[:512],
        received=received,
        size=len(raw),
        payload=text,
        payload_base64=binary,
        truncated=len(kept) < len(raw),
    )
    return Rejected(
        reason=r.reason,
        detail=r.detail,
        topic=topic,
        site=site,
        kind=r.kind,
        device=r.device,
        dead_letter=dead_letter_topic(root, site, r.kind, r.device),
        body=letter.model_dump_json(exclude_none=True, exclude_defaults=False).encode(),
    )
