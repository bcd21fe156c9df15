"""The alert rules as one declarative table, and the engine that turns inputs into observations.

`RULES` is the one place to read them all: each rule's id, severity, subject, condition
and clear condition in words, the settings it reads, and a pure `check(fact, settings)`
that decides. `RuleEngine` keeps the little state the checks need (when each device was
last heard, since when a zone has been over capacity, ...) and reports an Observation
when a condition starts, ends, changes severity, or keeps holding (at most once per
`refresh_every`). Pure: time comes in with the inputs and with `tick(now)`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from stackpulse.kernel.layout import Layout
from stackpulse.services.alerts.model import (
    DeviceSeen,
    DriftSeen,
    FindingSeen,
    Input,
    Observation,
    SeatSeen,
    Severity,
    ZoneSeen,
)
from stackpulse.services.alerts.settings import AlertSettings

__all__ = ["RULES", "RULES_BY_ID", "Fact", "RuleEngine", "RuleSpec"]


@dataclass(frozen=True, slots=True)
class Fact:
    """What a rule's check reads about one subject at `now`; fields it does not use stay None."""

    now: datetime
    kind: str = ""  # device kind
    online: bool | None = None  # the device's last status (False: Last Will)
    last_seen: datetime | None = None  # when the device was last heard
    value: float | None = None  # battery level, occupancy / capacity, drift
    state: str | None = None  # seat state, finding state
    since: datetime | None = None  # seat state since, over capacity since, overdue since
    open: bool = False  # the condition held at the last report (hysteresis)


Check = Callable[[Fact, AlertSettings], Severity | None]
Subject = Literal["device", "zone", "seat", "item"]


@dataclass(frozen=True, slots=True)
class RuleSpec:
    id: str
    title: str
    severity: Severity  # the band it opens at (battery: warning or critical)
    subject: Subject
    source: str  # the input that feeds it
    condition: str
    clear: str
    thresholds: tuple[str, ...]  # AlertSettings fields it reads
    check: Check  # the severity while the condition holds, None when it does not


# -- the checks: pure functions of (fact, settings) -------------------------------------


def _offline(f: Fact, s: AlertSettings) -> Severity | None:
    return Severity.WARNING if f.online is False else None


def _silent(f: Fact, s: AlertSettings) -> Severity | None:
    limit = s.heartbeat.get(f.kind)
    if limit is None or f.online is False or f.last_seen is None:
        return None  # an offline device is the offline rule's, not this one's
    return Severity.WARNING if f.now - f.last_seen > limit else None


def _battery(f: Fact, s: AlertSettings) -> Severity | None:
    if f.value is None:
        return None
    if f.value <= s.battery_critical:
        return Severity.CRITICAL
    if f.value <= s.battery_warning:
        return Severity.WARNING
    if f.open and f.value <= s.battery_warning + s.battery_clear_margin:
        return Severity.WARNING
    return None


def _over_capacity(f: Fact, s: AlertSettings) -> Severity | None:
    if f.value is None:
        return None
    if f.open:
        return Severity.WARNING if f.value > s.capacity_clear else None
    held = f.since is not None and f.now - f.since >= s.capacity_holds
    return Severity.WARNING if f.value >= s.capacity_open and held else None


def _drift(f: Fact, s: AlertSettings) -> Severity | None:
    return Severity.WARNING if f.value is not None and abs(f.value) >= s.drift_threshold else None


def _seat_held(f: Fact, s: AlertSettings) -> Severity | None:
    held = f.state == "held" and f.since is not None and f.now - f.since >= s.seat_held_max
    return Severity.INFO if held else None


def _finding(severity: Severity) -> Check:
    def check(f: Fact, s: AlertSettings) -> Severity | None:
        return severity if f.state == "opened" else None

    return check


def _reshelving(f: Fact, s: AlertSettings) -> Severity | None:
    due = f.since is not None and f.now - f.since >= s.reshelving_max
    return Severity.INFO if f.state == "opened" and due else None


RULES: tuple[RuleSpec, ...] = (
    RuleSpec(
        id="device_offline",
        title="Device offline",
        severity=Severity.WARNING,
        subject="device",
        source="status message (retained; the Last Will)",
        condition="the device's status says online=false (its Last Will, or a clean goodbye)",
        clear="a status online=true, or any data message from it",
        thresholds=(),
        check=_offline,
    ),
    RuleSpec(
        id="device_silent",
        title="Device silent",
        severity=Severity.WARNING,
        subject="device",
        source="any message of the device; the clock",
        condition="nothing heard from the device for longer than its kind's heartbeat "
        "(not while it is offline: that is the rule above)",
        clear="any message from the device",
        thresholds=("heartbeat",),
        check=_silent,
    ),
    RuleSpec(
        id="battery_low",
        title="Low battery",
        severity=Severity.WARNING,
        subject="device",
        source="seat data with a battery level",
        condition="battery <= battery_warning (warning) or <= battery_critical (critical)",
        clear="battery above battery_warning + battery_clear_margin",
        thresholds=("battery_warning", "battery_critical", "battery_clear_margin"),
        check=_battery,
    ),
    RuleSpec(
        id="zone_over_capacity",
        title="Zone over capacity",
        severity=Severity.WARNING,
        subject="zone",
        source="zone occupancy from the occupancy service; the clock",
        condition="occupancy / capacity >= capacity_open, and has stayed there for capacity_holds",
        clear="occupancy / capacity <= capacity_clear (hysteresis)",
        thresholds=("capacity_open", "capacity_clear", "capacity_holds"),
        check=_over_capacity,
    ),
    RuleSpec(
        id="counter_drift",
        title="Counter drift at closing",
        severity=Severity.WARNING,
        subject="zone",
        source="drift measured at closing by the occupancy service",
        condition="|people the gates say are still inside at closing| >= drift_threshold",
        clear="a later closing's drift below drift_threshold",
        thresholds=("drift_threshold",),
        check=_drift,
    ),
    RuleSpec(
        id="seat_held_too_long",
        title="Seat held too long",
        severity=Severity.INFO,
        subject="seat",
        source="seat states from the occupancy service; the clock",
        condition="the seat has been held (belongings, nobody there) for at least seat_held_max",
        clear="the seat is no longer held (free, occupied or unknown)",
        thresholds=("seat_held_max",),
        check=_seat_held,
    ),
    RuleSpec(
        id="item_misplaced",
        title="Item on the wrong shelf",
        severity=Severity.INFO,
        subject="item",
        source="the inventory's misplaced finding",
        condition="the inventory confirmed the item on a shelf outside its call-number range",
        clear="the finding closed (seen home, checked out, or gone from that shelf)",
        thresholds=(),
        check=_finding(Severity.INFO),
    ),
    RuleSpec(
        id="item_missing",
        title="Item missing",
        severity=Severity.WARNING,
        subject="item",
        source="the inventory's missing finding",
        condition="the inventory declared the item missing (unseen for some sweeps, not on loan)",
        clear="the finding closed (seen again or checked out)",
        thresholds=(),
        check=_finding(Severity.WARNING),
    ),
    RuleSpec(
        id="item_awaiting_reshelving",
        title="Item awaiting reshelving",
        severity=Severity.INFO,
        subject="item",
        source="the inventory's reshelving finding; the clock",
        condition="checked in and not seen on a shelf: the inventory's finding (opened at "
        "reshelve_within) has been overdue for reshelving_max more",
        clear="the finding closed (the item was seen on a shelf)",
        thresholds=("reshelving_max",),
        check=_reshelving,
    ),
)

RULES_BY_ID: dict[str, RuleSpec] = {r.id: r for r in RULES}
_FINDING_RULE = {
    "misplaced": "item_misplaced",
    "missing": "item_missing",
    "reshelving": "item_awaiting_reshelving",
}


# -- the engine's state ----------------------------------------------------------------


@dataclass
class _Device:
    kind: str
    last_seen: datetime | None = None
    online: bool | None = None
    offline_at: datetime | None = None
    battery: float | None = None


@dataclass
class _Zone:
    ratio: float
    occupancy: int | None
    capacity: int
    at: datetime
    over_since: datetime | None = None


@dataclass
class _Pending:
    """An open reshelving finding, waiting for reshelving_max."""

    overdue_since: datetime
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Reported:
    active: bool
    severity: Severity | None
    at: datetime


Key = tuple[str, str, str]  # (rule, site, subject)


class RuleEngine:
    """Inputs and clock ticks -> observations for the AlertBook."""

    def __init__(self, layouts: Sequence[Layout], settings: AlertSettings) -> None:
        self.layouts = {layout.site: layout for layout in layouts}
        self.settings = settings
        self._tz = {site: _zone_info(layout.timezone) for site, layout in self.layouts.items()}
        self._devices: dict[tuple[str, str], _Device] = {}
        self._zones: dict[tuple[str, str], _Zone] = {}
        self._held: dict[tuple[str, str], datetime] = {}
        self._pending: dict[tuple[str, str], _Pending] = {}
        self._reported: dict[Key, _Reported] = {}
        self._started: datetime | None = None  # first tick: the baseline for never-heard devices
        self._clock: datetime | None = None  # the last tick's `now`

    # -- inputs

    def observe(self, item: Input) -> list[Observation]:
        """What one input starts, ends or refreshes.

        Stamped no earlier than the engine's clock: an input carries its source's time
        (a device clock, a sweep), which may run behind the receiver's, and an end
        stamped before the alert that ticks opened would be ignored by the lifecycle:
        the alert would stay open while the device talks.
        """
        if item.site not in self.layouts:
            return []
        out = self._observe(item)
        clock = self._clock
        if clock is None:
            return out
        return [o if o.at >= clock else dataclasses.replace(o, at=clock) for o in out]

    def _observe(self, item: Input) -> list[Observation]:
        if isinstance(item, DeviceSeen):
            return self._device_seen(item)
        if isinstance(item, ZoneSeen):
            return self._zone_seen(item)
        if isinstance(item, SeatSeen):
            return self._seat_seen(item)
        if isinstance(item, DriftSeen):
            return self._drift_seen(item)
        return self._finding_seen(item)

    def tick(self, now: datetime) -> list[Observation]:
        """Conditions that time alone starts: silence, holds-for, seats held, reshelving."""
        if self._started is None:
            self._started = now
        self._clock = now if self._clock is None else max(self._clock, now)
        out: list[Observation] = []
        for site, layout in self.layouts.items():
            for device, kind in layout.devices().items():
                out += self._silence(site, device, str(kind), now)
        for (site, zone), z in list(self._zones.items()):
            out += self._capacity(site, zone, z, now, from_tick=True)
        for (site, seat), since in list(self._held.items()):
            out += self._seat(site, seat, "held", since, now, from_tick=True)
        for (site, item), pending in list(self._pending.items()):
            out += self._reshelve(site, item, pending, now, from_tick=True)
        return out

    # -- devices

    def _device_seen(self, d: DeviceSeen) -> list[Observation]:
        kind = self.layouts[d.site].devices().get(d.device)
        if kind is None:
            return []
        state = self._devices.setdefault((d.site, d.device), _Device(str(kind)))
        # Silence is measured on the receiver's clock: a device clock running a little
        # behind must not look silent.
        heard = d.at if self._clock is None else max(d.at, self._clock)
        state.last_seen = heard if state.last_seen is None else max(state.last_seen, heard)
        if d.online is False:
            if state.online is not False:
                state.offline_at = d.at
            state.online = False
        else:  # a birth message, or data: it is there
            state.online, state.offline_at = True, None
        out = self._report_device(d.site, d.device, state, d.at)
        if d.battery is not None and math.isfinite(d.battery):
            state.battery = d.battery
            out += self._report_battery(d.site, d.device, state, d.at)
        return out

    def _report_device(
        self, site: str, device: str, st: _Device, at: datetime
    ) -> list[Observation]:
        fact = Fact(now=at, kind=st.kind, online=st.online, last_seen=st.last_seen)
        label = self._device_label(site, device, st.kind)
        offline_msg = (
            f"{label} went offline at {self._when(site, st.offline_at or at, at)} "
            "(its Last Will): check its power and network"
            if st.online is False
            else f"{label} is back online"
        )
        detail = {"device": device, "kind": st.kind}
        out = self._report("device_offline", site, device, fact, at, offline_msg, detail)
        silent_msg = f"{label} is heard from again"
        out += self._report("device_silent", site, device, fact, at, silent_msg, detail)
        return out

    def _report_battery(
        self, site: str, device: str, st: _Device, at: datetime
    ) -> list[Observation]:
        key = ("battery_low", site, device)
        fact = Fact(now=at, kind=st.kind, value=st.battery, open=self._is_open(key))
        level = st.battery if st.battery is not None else 0.0
        label = self._device_label(site, device, st.kind)
        s = self.settings
        verdict = RULES_BY_ID["battery_low"].check(fact, s)
        if verdict is Severity.CRITICAL:
            limit = f"critical at {s.battery_critical:.0%}"
            msg = f"{label}: battery at {level:.0%} ({limit}); replace it now"
        elif verdict is not None:
            msg = (
                f"{label}: battery at {level:.0%} (low at {s.battery_warning:.0%}); replace it soon"
            )
        else:
            msg = f"{label}: battery at {level:.0%}"
        detail = {"device": device, "kind": st.kind, "battery": level}
        return self._report("battery_low", site, device, fact, at, msg, detail)

    def _silence(self, site: str, device: str, kind: str, now: datetime) -> list[Observation]:
        st = self._devices.get((site, device))
        last = st.last_seen if st is not None else None
        online = st.online if st is not None else None
        fact = Fact(now=now, kind=kind, online=online, last_seen=last or self._started)
        limit = self.settings.heartbeat.get(kind)
        label = self._device_label(site, device, kind)
        if last is None:
            msg = f"{label} has not been heard from since the alerts service started"
        else:
            msg = f"{label} has sent nothing since {self._when(site, last, now)}"
        if limit is not None:
            msg += f" (expected at least every {_span(limit / 3)}): check its power and network"
        detail = {"device": device, "kind": kind, "last_seen": _iso(last)}
        return self._report("device_silent", site, device, fact, now, msg, detail, from_tick=True)

    # -- zones and seats

    def _zone_seen(self, z: ZoneSeen) -> list[Observation]:
        # A hidden count (privacy floor) is a small one: never over capacity.
        ratio = (z.occupancy or 0) / z.capacity if z.capacity > 0 else 0.0
        state = self._zones.get((z.site, z.zone))
        over_since = state.over_since if state is not None else None
        over_since = (over_since or z.at) if ratio >= self.settings.capacity_open else None
        state = _Zone(ratio, z.occupancy, z.capacity, z.at, over_since)
        self._zones[(z.site, z.zone)] = state
        return self._capacity(z.site, z.zone, state, z.at, from_tick=False)

    def _capacity(
        self, site: str, zone: str, z: _Zone, now: datetime, *, from_tick: bool
    ) -> list[Observation]:
        key = ("zone_over_capacity", site, zone)
        fact = Fact(now=now, value=z.ratio, since=z.over_since, open=self._is_open(key))
        name = self._zone_name(site, zone)
        count = "?" if z.occupancy is None else str(z.occupancy)
        if RULES_BY_ID["zone_over_capacity"].check(fact, self.settings) is not None:
            since = z.over_since or z.at
            msg = (
                f"{name} is over capacity: {count} people for {z.capacity} places "
                f"({z.ratio:.0%}) since {self._when(site, since, now)}; "
                "limit entry or open overflow space"
            )
        else:
            msg = f"{name}: {count} people for {z.capacity} places ({z.ratio:.0%})"
        detail = {"zone": zone, "occupancy": z.occupancy, "capacity": z.capacity}
        return self._report(
            "zone_over_capacity", site, zone, fact, now, msg, detail, from_tick=from_tick
        )

    def _drift_seen(self, d: DriftSeen) -> list[Observation]:
        fact = Fact(now=d.at, value=float(d.drift))
        name = self._zone_name(d.site, d.zone)
        gates = [g.device for g in self.layouts[d.site].gates if d.zone in (g.inner, g.outer)]
        which = f" (gates {', '.join(gates)})" if gates else ""
        direction = "still inside" if d.drift > 0 else "more out than in"
        msg = (
            f"Gate counts of {name} were off by {abs(d.drift)} at closing ({direction}; "
            f"alert at {self.settings.drift_threshold}): check the gate counters{which}"
        )
        detail = {"zone": d.zone, "drift": d.drift, "gates": gates}
        return self._report("counter_drift", d.site, d.zone, fact, d.at, msg, detail)

    def _seat_seen(self, s: SeatSeen) -> list[Observation]:
        if s.state == "held":
            self._held[(s.site, s.seat)] = s.since
        else:
            self._held.pop((s.site, s.seat), None)
        return self._seat(s.site, s.seat, s.state, s.since, s.at, from_tick=False)

    def _seat(
        self, site: str, seat: str, state: str, since: datetime, now: datetime, *, from_tick: bool
    ) -> list[Observation]:
        fact = Fact(now=now, state=state, since=since)
        known = self.layouts[site].seats_by_id.get(seat)
        where = f" in {self._zone_name(site, known.zone)}" if known is not None else ""
        if state == "held":
            msg = (
                f"Seat {seat}{where} has been held by belongings with nobody there since "
                f"{self._when(site, since, now)} ({_span(now - since)}; limit "
                f"{_span(self.settings.seat_held_max)}): check it and apply the seat policy"
            )
        else:
            msg = f"Seat {seat}{where} is {state}"
        detail = {"seat": seat, "state": state, "since": _iso(since)}
        return self._report(
            "seat_held_too_long", site, seat, fact, now, msg, detail, from_tick=from_tick
        )

    # -- inventory findings

    def _finding_seen(self, f: FindingSeen) -> list[Observation]:
        rule = _FINDING_RULE.get(f.finding)
        if rule is None:
            return []
        detail = dict(f.detail or {})
        if rule == "item_awaiting_reshelving":
            if f.state == "opened":
                overdue = _parse(detail.get("overdue_since")) or f.at
                pending = _Pending(overdue, detail)
                self._pending[(f.site, f.item)] = pending
                return self._reshelve(f.site, f.item, pending, f.at, from_tick=False)
            self._pending.pop((f.site, f.item), None)
        fact = Fact(now=f.at, state=f.state)
        msg = (
            self._finding_message(f.site, rule, f.item, detail, f.at)
            if f.state == "opened"
            else (f"Item {f.item}: the {f.finding} finding is closed")
        )
        return self._report(rule, f.site, f.item, fact, f.at, msg, {**detail, "item": f.item})

    def _reshelve(
        self, site: str, item: str, p: _Pending, now: datetime, *, from_tick: bool
    ) -> list[Observation]:
        fact = Fact(now=now, state="opened", since=p.overdue_since)
        msg = self._finding_message(site, "item_awaiting_reshelving", item, p.detail, now)
        detail = {**p.detail, "item": item}
        return self._report(
            "item_awaiting_reshelving", site, item, fact, now, msg, detail, from_tick=from_tick
        )

    def _finding_message(
        self, site: str, rule: str, item: str, d: dict[str, Any], now: datetime
    ) -> str:
        what = _item(item, d)
        if rule == "item_misplaced":
            seen = d.get("seen_section") or "an unknown shelf"
            home = _alternatives(d.get("expected_sections"))
            return f"{what} is on shelf {seen}; it belongs in {home}"
        if rule == "item_missing":
            last_section, last_at = d.get("last_seen_section"), _parse(d.get("last_seen_at"))
            if last_section and last_at:
                where = f"last seen on shelf {last_section} at {self._when(site, last_at, now)}"
            elif last_section:
                where = f"last seen on shelf {last_section}"
            else:
                where = "never seen on a shelf"
            return f"{what} is missing: {where}, not on loan; search for it"
        checked_in = _parse(d.get("checked_in_at"))
        when = f" at {self._when(site, checked_in, now)}" if checked_in else ""
        return f"{what} was checked in{when} and has not been seen on a shelf since; reshelve it"

    # -- reporting

    def _is_open(self, key: Key) -> bool:
        reported = self._reported.get(key)
        return reported is not None and reported.active

    def _report(
        self,
        rule: str,
        site: str,
        subject: str,
        fact: Fact,
        at: datetime,
        message: str,
        detail: dict[str, Any],
        *,
        from_tick: bool = False,
    ) -> list[Observation]:
        """The observation to send, if any: on a change, or a refresh of a standing condition.

        A subject first met with its condition not holding is reported once as ended
        (after a restart, the book may still hold an alert for it) — except from ticks,
        which meet every device in the layout.
        """
        spec = RULES_BY_ID[rule]
        key = (rule, site, subject)
        verdict = spec.check(fact, self.settings)
        active = verdict is not None
        before = self._reported.get(key)
        if before is None:
            if not active and from_tick:
                return []
        elif (
            before.active == active
            and before.severity == verdict
            and (not active or at - before.at < self.settings.refresh_every)
        ):
            return []  # no change, and no refresh due
        if active or spec.subject != "item":
            self._reported[key] = _Reported(active, verdict, at)
        else:
            self._reported.pop(key, None)  # items come and go: keep only open ones
        severity = verdict or spec.severity
        return [Observation(rule, site, subject, active, at, severity, message, detail)]

    # -- checkpoint

    def checkpoint(self) -> dict[str, Any]:
        """The engine's state as JSON-ready values (only conditions that hold are kept)."""
        return {
            "version": 1,
            "started": _iso(self._started),
            "clock": _iso(self._clock),
            "devices": [
                [site, device, d.kind, _iso(d.last_seen), d.online, _iso(d.offline_at), d.battery]
                for (site, device), d in sorted(self._devices.items())
            ],
            "zones": [
                [site, zone, z.ratio, z.occupancy, z.capacity, _iso(z.at), _iso(z.over_since)]
                for (site, zone), z in sorted(self._zones.items())
            ],
            "held": [
                [site, seat, _iso(since)] for (site, seat), since in sorted(self._held.items())
            ],
            "pending": [
                [site, item, _iso(p.overdue_since), p.detail]
                for (site, item), p in sorted(self._pending.items())
            ],
            "reported": [
                [rule, site, subject, r.severity.value if r.severity else None, _iso(r.at)]
                for (rule, site, subject), r in sorted(self._reported.items())
                if r.active
            ],
        }

    def restore(self, data: object) -> None:
        """Take back a `checkpoint()`; ValueError (nothing changed) if it is not one."""
        try:
            parsed = _Restored.parse(data)
        except (KeyError, TypeError, ValueError, IndexError) as err:
            raise ValueError(f"not an alert rules checkpoint: {err}") from None
        self._started, self._clock = parsed.started, parsed.clock
        self._devices, self._zones = parsed.devices, parsed.zones
        self._held, self._pending, self._reported = parsed.held, parsed.pending, parsed.reported

    # -- words staff read

    def _when(self, site: str, at: datetime, now: datetime) -> str:
        local = at.astimezone(self._tz.get(site, UTC))
        if abs(now - at) < timedelta(hours=20):
            return local.strftime("%H:%M")
        return local.strftime("%d %b %H:%M")

    def _zone_name(self, site: str, zone: str) -> str:
        found = self.layouts[site].zones_by_id.get(zone)
        return found.name if found is not None else zone

    def _device_label(self, site: str, device: str, kind: str) -> str:
        layout = self.layouts[site]
        if kind == "seat" and device in layout.seats_by_device:
            seat = layout.seats_by_device[device]
            return f"Seat sensor {device} (seat {seat.id}, {self._zone_name(site, seat.zone)})"
        if kind == "gate" and device in layout.gates_by_device:
            gate = layout.gates_by_device[device]
            outer, inner = self._zone_name(site, gate.outer), self._zone_name(site, gate.inner)
            return f"Gate counter {device} ({outer} → {inner})"
        if kind == "shelf" and device in layout.shelves_by_device:
            shelf = layout.shelves_by_device[device]
            return f"Shelf reader {device} ({self._zone_name(site, shelf.zone)})"
        desks = {d.device: d for d in layout.circulation}
        if device in desks:
            return f"Circulation point {device} ({self._zone_name(site, desks[device].zone)})"
        return f"Device {device}"


def _item(item: str, d: dict[str, Any]) -> str:
    parts = [str(p) for p in (d.get("call_number"), d.get("title")) if p]
    return f"Item {item} ({', '.join(parts)})" if parts else f"Item {item}"


def _alternatives(sections: object) -> str:
    if isinstance(sections, str):
        return sections
    names = [str(s) for s in sections] if isinstance(sections, Iterable) else []
    if not names:
        return "its home section (unknown here)"
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def _span(value: timedelta) -> str:
    minutes = round(value.total_seconds() / 60)
    if minutes < 1:
        return f"{max(0, round(value.total_seconds()))} s"
    if minutes < 120:
        return f"{minutes} min"
    hours, rest = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {rest} min" if rest else f"{hours} h"
    return f"{hours // 24} days"


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _need(value: object) -> datetime:
    parsed = _parse(value)
    if parsed is None:
        raise ValueError(f"{value!r} is not a timestamp")
    return parsed


def _zone_info(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError):
        return ZoneInfo("UTC")


@dataclass
class _Restored:
    started: datetime | None
    clock: datetime | None
    devices: dict[tuple[str, str], _Device]
    zones: dict[tuple[str, str], _Zone]
    held: dict[tuple[str, str], datetime]
    pending: dict[tuple[str, str], _Pending]
    reported: dict[Key, _Reported]

    @classmethod
    def parse(cls, data: object) -> _Restored:
        if not isinstance(data, dict) or data.get("version") != 1:
            raise ValueError("expected a dict with version 1")
        devices = {
            (str(site), str(device)): _Device(
                str(kind),
                _parse(last),
                None if online is None else bool(online),
                _parse(offline_at),
                None if battery is None else float(battery),
            )
            for site, device, kind, last, online, offline_at, battery in data["devices"]
        }
        zones = {
            (str(site), str(zone)): _Zone(
                float(ratio),
                None if occupancy is None else int(occupancy),
                int(capacity),
                _need(at),
                _parse(over_since),
            )
            for site, zone, ratio, occupancy, capacity, at, over_since in data["zones"]
        }
        held = {(str(site), str(seat)): _need(since) for site, seat, since in data["held"]}
        pending = {
            (str(site), str(item)): _Pending(_need(overdue), dict(detail or {}))
            for site, item, overdue, detail in data["pending"]
        }
        reported = {
            (str(rule), str(site), str(subject)): _Reported(
                True, None if severity is None else Severity(severity), _need(at)
            )
            for rule, site, subject, severity, at in data["reported"]
            if rule in RULES_BY_ID
        }
        return cls(
            _parse(data.get("started")),
            _parse(data.get("clock")),
            devices,
            zones,
            held,
            pending,
            reported,
        )
