"""The time-series schema: which measurement, tags and fields each signal becomes.

Rules that keep every InfluxDB generation happy: a small fixed tag set per measurement
(no item or person ids as tags), never a tag and a field of the same name, and
timestamps fixed at capture so that a replay overwrites instead of doubling.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from stackpulse.kernel.models import StatusMessage
from stackpulse.kernel.store.base import Point

GATE = "gate"
SEAT = "seat"
SHELF = "shelf"
CIRC = "circ"
DEVICE_STATUS = "device_status"
ZONE_OCCUPANCY = "zone_occupancy"
ZONE_DRIFT = "zone_drift"
ZONE_TYPICAL = "zone_typical"
ALERT_TRANSITION = "alert_transition"
DEAD_LETTERS = "dead_letters"
FINDING_CLOSED = "finding_closed"
INVENTORY = "inventory"  # the inventory service's counts per site and minute
DEMAND_SIGNAL = "demand_signal"  # one demand signal (checkout, hold, use, ...) of a title
DEMAND_RANK = "demand_rank"  # the ranking's snapshot, RANK_SLOTS points

_NS_PER_MS = 1_000_000


# What a point is built from: the validated payload models (kernel.models) or the
# gateway's fast-path structs, which carry the same attributes.
class _Data(Protocol):
    @property
    def boot(self) -> int: ...
    @property
    def seq(self) -> int: ...


class GateLike(_Data, Protocol):
    @property
    def in_(self) -> int: ...
    @property
    def out(self) -> int: ...


class SeatLike(_Data, Protocol):
    @property
    def presence(self) -> str: ...
    @property
    def battery(self) -> float | None: ...


class _ReadLike(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def rssi(self) -> float | None: ...


class ShelfLike(_Data, Protocol):
    @property
    def sweep(self) -> int: ...
    @property
    def section(self) -> str: ...
    @property
    def part(self) -> int: ...
    @property
    def parts(self) -> int: ...
    @property
    def items(self) -> Sequence[_ReadLike]: ...


class CircLike(_Data, Protocol):
    @property
    def item(self) -> str: ...
    @property
    def action(self) -> str: ...


def to_ns(ts: datetime) -> int:
    """Nanoseconds since the epoch, exact (no float rounding)."""
    delta = ts - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def capture_ns(ts: datetime, seq: int) -> int:
    """The point's timestamp: the capture time to the millisecond, `seq` below it.

    Devices stamp to the millisecond; two messages of one device in the same millisecond
    would otherwise land on the same series and time, and InfluxDB keeps only the last.
    Putting `seq` in the unused sub-millisecond digits keeps them apart and keeps the
    timestamp a pure function of the message, so a replay overwrites itself.
    """
    return to_ns(ts) // _NS_PER_MS * _NS_PER_MS + seq % _NS_PER_MS


def gate_point(site: str, device: str, msg: GateLike, ts: datetime, corrected: bool) -> Point:
    return Point(
        GATE,
        {"site": site, "device": device},
        {
            "in_total": msg.in_,
            "out_total": msg.out,
            "boot": msg.boot,
            "seq": msg.seq,
            "clock_corrected": corrected,
        },
        capture_ns(ts, msg.seq),
    )


def seat_point(
    site: str, device: str, seat: str, zone: str, msg: SeatLike, ts: datetime, corrected: bool
) -> Point:
    fields: dict[str, float | int | str | bool] = {
        "presence": msg.presence,
        "person": int(msg.presence == "person"),
        "boot": msg.boot,
        "seq": msg.seq,
        "clock_corrected": corrected,
    }
    if msg.battery is not None:
        fields["battery"] = msg.battery
    return Point(
        SEAT,
        {"site": site, "device": device, "seat": seat, "zone": zone},
        fields,
        capture_ns(ts, msg.seq),
    )


def rssi_text(items: Sequence[_ReadLike]) -> str | None:
    """The reads' RSSI, comma-separated in item order ("" for none); None if no read has one.

    Kept so that a service catching up from the store sees the same strongest reads
    as it would have live.
    """
    if all(i.rssi is None for i in items):
        return None
    return ",".join("" if i.rssi is None else repr(float(i.rssi)) for i in items)


def shelf_point(site: str, device: str, msg: ShelfLike, ts: datetime, corrected: bool) -> Point:
    fields: dict[str, float | int | str | bool] = {
        "sweep": msg.sweep,
        "part": msg.part,
        "parts": msg.parts,
        "item_count": len(msg.items),
        "items": ",".join(i.id for i in msg.items),
    }
    if (rssi := rssi_text(msg.items)) is not None:
        fields["rssi"] = rssi
    fields |= {"boot": msg.boot, "seq": msg.seq, "clock_corrected": corrected}
    return Point(
        SHELF,
        {"site": site, "device": device, "section": msg.section},
        fields,
        capture_ns(ts, msg.seq),
    )


def circ_point(site: str, device: str, msg: CircLike, ts: datetime, corrected: bool) -> Point:
    return Point(
        CIRC,
        {"site": site, "device": device, "action": msg.action},
        {"item": msg.item, "boot": msg.boot, "seq": msg.seq, "clock_corrected": corrected},
        capture_ns(ts, msg.seq),
    )


def status_point(site: str, kind: str, device: str, msg: StatusMessage, ts: datetime) -> Point:
    fields: dict[str, float | int | str | bool] = {"online": msg.online}
    if msg.boot is not None:
        fields["boot"] = msg.boot
    if msg.fw is not None:
        fields["fw"] = msg.fw
    return Point(DEVICE_STATUS, {"site": site, "kind": kind, "device": device}, fields, to_ns(ts))


def zone_point(
    site: str,
    zone: str,
    floor: int,
    *,
    occupancy: int,
    capacity: int,
    seats_total: int,
    seats_free: int,
    seats_occupied: int,
    seats_held: int,
    seats_unknown: int,
    ts: datetime,
) -> Point:
    return Point(
        ZONE_OCCUPANCY,
        {"site": site, "zone": zone, "floor": str(floor)},
        {
            "occupancy": occupancy,
            "capacity": capacity,
            "seats_total": seats_total,
            "seats_free": seats_free,
            "seats_occupied": seats_occupied,
            "seats_held": seats_held,
            "seats_unknown": seats_unknown,
        },
        to_ns(ts),
    )


def drift_point(site: str, zone: str, floor: int, *, drift: int, shown: int, ts: datetime) -> Point:
    """A zone's count at its closing-time reset, when the building should be empty.

    `drift` is the signed running sum from the gates (positive: exits were missed),
    `shown` what the public count was (clamped at zero). One point per zone per closing.
    """
    return Point(
        ZONE_DRIFT,
        {"site": site, "zone": zone, "floor": str(floor)},
        {"drift": drift, "abs_drift": abs(drift), "shown": shown},
        to_ns(ts),
    )


def typical_point(site: str, zone: str, floor: int, *, typical: float, ts: datetime) -> Point:
    """What is usual in a zone at `ts`: the weekly profile's mean for that hour of the week.

    Written by the occupancy service's forecaster next to each zone_occupancy snapshot,
    so a dashboard draws "today" and "a typical <weekday>" on the same time axis.
    """
    return Point(
        ZONE_TYPICAL,
        {"site": site, "zone": zone, "floor": str(floor)},
        {"typical": float(typical)},
        to_ns(ts),
    )


def alert_point(
    site: str,
    rule: str,
    severity: str,
    kind: str,
    *,
    open_count: int,
    ts: datetime,
    seq: int = 0,
    seconds_to_ack: float | None = None,
    seconds_to_clear: float | None = None,
) -> Point:
    """One alert transition (`kind`: opened | acked | cleared | escalated | renotified).

    `open_count`: alerts of this site, rule and severity still active after it.
    `seconds_to_ack` (acked) and `seconds_to_clear` (cleared) count from the opening.
    `seq` (a counter of the writer's) keeps transitions of one millisecond apart.
    """
    fields: dict[str, float | int | str | bool] = {"open_count": open_count, "count": 1}
    if seconds_to_ack is not None:
        fields["seconds_to_ack"] = float(seconds_to_ack)
    if seconds_to_clear is not None:
        fields["seconds_to_clear"] = float(seconds_to_clear)
    return Point(
        ALERT_TRANSITION,
        {"site": site, "rule": rule, "severity": severity, "kind": kind},
        fields,
        capture_ns(ts, seq),
    )


def dead_letter_point(
    site: str | None, kind: str | None, reason: str, *, count: int, ts: datetime
) -> Point:
    """Messages dead-lettered for `reason` in the minute ending at `ts` (count > 0 only).

    `site`/`kind` are those parsed from the topic, `_unknown` when none parses.
    """
    return Point(
        DEAD_LETTERS,
        {"site": site or "_unknown", "kind": kind or "_unknown", "reason": reason},
        {"count": count},
        to_ns(ts),
    )


def finding_closed_point(
    site: str, finding: str, *, opened_at: datetime, closed_at: datetime, seq: int = 0
) -> Point:
    """An inventory finding (misplaced | missing | reshelving) closed: how long it was open."""
    return Point(
        FINDING_CLOSED,
        {"site": site, "finding": finding},
        {"seconds_open": (closed_at - opened_at).total_seconds(), "count": 1},
        capture_ns(closed_at, seq),
    )


_EPOCH = datetime.fromisoformat("1970-01-01T00:00:00+00:00")
