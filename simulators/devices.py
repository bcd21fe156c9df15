"""Simulated device state (boot, seq, counters) and the protocol messages devices send."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from stackpulse.kernel.models import format_ts
from stackpulse.kernel.topics import Channel, Kind, device_topic

FIRMWARE = {Kind.GATE: "2.3.1", Kind.SEAT: "1.4.2", Kind.SHELF: "5.0.7", Kind.CIRC: "3.1.0"}
WILL_PAYLOAD = b'{"online":false}'


def ts_of(t: float) -> str:
    """Epoch seconds (simulated) as the protocol's RFC 3339 UTC string."""
    return format_ts(datetime.fromtimestamp(t, UTC))


@dataclass(frozen=True, slots=True)
class Message:
    """One MQTT publication a device makes at simulated time `at` (epoch seconds).

    `payload` carries the device's own `ts`, which a bad clock makes differ from `at`, and
    `at` moves when a message is delivered late. `reconnect` marks a birth after a
    restart: the device's old connection dies abruptly before it.
    """

    at: float
    kind: Kind
    device: str
    channel: Channel
    payload: dict[str, Any]
    retain: bool = False
    reconnect: bool = False

    def topic(self, root: str, site: str) -> str:
        return device_topic(root, site, self.kind, self.device, self.channel)

    def encode(self) -> bytes:
        return json.dumps(self.payload, separators=(",", ":")).encode()


@dataclass
class Device:
    """What every device keeps: its boot number, message sequence and clock."""

    kind: Kind
    device: str
    boot: int = 1
    fw: str = ""
    seq: int = 0
    clock_offset: float = 0.0  # seconds the device clock is ahead of true time
    last_sent: float = float("-inf")
    sent: int = 0  # data messages since the start of the simulation, all boots

    def __post_init__(self) -> None:
        self.fw = self.fw or FIRMWARE[self.kind]

    def data(self, t: float, fields: dict[str, Any]) -> Message:
        """A data message observed at `t`; consumes one `seq`."""
        payload = {"ts": ts_of(t + self.clock_offset), "boot": self.boot, "seq": self.seq}
        payload.update(fields)
        self.seq += 1
        self.sent += 1
        self.last_sent = t
        return Message(t, self.kind, self.device, Channel.DATA, payload)

    def birth(self, t: float, *, reconnect: bool = False) -> Message:
        payload = {
            "ts": ts_of(t + self.clock_offset),
            "online": True,
            "boot": self.boot,
            "fw": self.fw,
        }
        return Message(t, self.kind, self.device, Channel.STATUS, payload, True, reconnect)

    def reboot(self, t: float) -> Message:
        """Restart: a new boot, `seq` and the counters start again; returns the birth."""
        self.boot += 1
        self.seq = 0
        self.reset_counters()
        return self.birth(t, reconnect=True)

    def reset_counters(self) -> None:
        """What a restart forgets, beyond `seq`; kinds with counters override it."""


@dataclass
class GateDevice(Device):
    outer: str = ""
    inner: str = ""
    count_in: int = 0  # since boot, as sent
    count_out: int = 0
    total_in: int = 0  # since the simulation started, across boots: the ground truth
    total_out: int = 0
    flush_pending: bool = False
    miss_in_p: float = 0.0  # a fault: this share of crossings goes uncounted
    miss_out_p: float = 0.0
    miss_rng: random.Random | None = None
    missed_in: int = 0  # crossings the device did not count (in the totals all the same)
    missed_out: int = 0
    sent_in: int = 0  # the counters as last sent
    sent_out: int = 0
    lost_in: int = 0  # counted but never sent: a restart came first
    lost_out: int = 0

    def cross(self, inward: bool) -> None:
        miss_p = self.miss_in_p if inward else self.miss_out_p
        missed = bool(miss_p and self.miss_rng and self.miss_rng.random() < miss_p)
        if inward:
            self.total_in += 1
            if missed:
                self.missed_in += 1
            else:
                self.count_in += 1
        else:
            self.total_out += 1
            if missed:
                self.missed_out += 1
            else:
                self.count_out += 1

    def report(self, t: float) -> Message:
        self.sent_in, self.sent_out = self.count_in, self.count_out
        return self.data(t, {"in": self.count_in, "out": self.count_out})

    def reset_counters(self) -> None:
        self.lost_in += self.count_in - self.sent_in
        self.lost_out += self.count_out - self.sent_out
        self.count_in = self.count_out = self.sent_in = self.sent_out = 0


@dataclass
class SeatDevice(Device):
    seat: str = ""
    zone: str = ""
    presence: str = "empty"
    battery: float = 1.0
    drain_per_message: float = 2e-6
    fault: str | None = None  # None | "flapping" | "dead" | "unscrewed"
    flap: bool = False

    @property
    def reading(self) -> str:
        """What the sensor says, which a fault makes differ from `presence` (the truth)."""
        if self.fault == "unscrewed":
            return "empty"
        if self.fault == "flapping":
            return "person" if self.flap else "empty"
        return self.presence

    @property
    def silent(self) -> bool:
        return self.fault == "dead"

    def report(self, t: float) -> Message:
        self.battery = max(0.0, self.battery - self.drain_per_message)
        return self.data(t, {"presence": self.reading, "battery": round(self.battery, 3)})


@dataclass
class ShelfDevice(Device):
    zone: str = ""
    sections: tuple[str, ...] = ()
    sweep: int = 0

    def reset_counters(self) -> None:
        self.sweep = 0


@dataclass
class CircDevice(Device):
    zone: str = ""


@dataclass
class Fleet:
    """All devices of one site, by id, in layout order."""

    gates: dict[str, GateDevice] = field(default_factory=dict)
    seats: dict[str, SeatDevice] = field(default_factory=dict)  # by device id
    shelves: dict[str, ShelfDevice] = field(default_factory=dict)
    desks: dict[str, CircDevice] = field(default_factory=dict)

    index: dict[str, Device] = field(default_factory=dict)

    def add(self, dev: Device) -> None:
        if dev.device in self.index:
            raise ValueError(f"device {dev.device!r} appears twice in the layout")
        self.index[dev.device] = dev
        if isinstance(dev, GateDevice):
            self.gates[dev.device] = dev
        elif isinstance(dev, SeatDevice):
            self.seats[dev.device] = dev
        elif isinstance(dev, ShelfDevice):
            self.shelves[dev.device] = dev
        elif isinstance(dev, CircDevice):
            self.desks[dev.device] = dev

    def all(self) -> list[Device]:
        """In layout order: gates, seats, shelves, desks."""
        return [
            *self.gates.values(),
            *self.seats.values(),
            *self.shelves.values(),
            *self.desks.values(),
        ]

    def get(self, device: str) -> Device:
        try:
            return self.index[device]
        except KeyError:
            raise KeyError(f"no device {device!r} in the layout") from None
