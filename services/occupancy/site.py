"""One site's occupancy: zone counts, seat machines, closings; pure apart from `now`."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from stackpulse.kernel.contracts.events import Event
from stackpulse.kernel.contracts.occupancy import (
    DRIFT,
    FORECAST,
    SEAT,
    ZONE,
    Drift,
    Forecast,
    Seat,
    UsualHour,
    Zone,
)
from stackpulse.kernel.layout import Layout
from stackpulse.kernel.models import GateData, SeatData, StatusMessage
from stackpulse.kernel.schema import drift_point, typical_point, zone_point
from stackpulse.kernel.service import Message
from stackpulse.kernel.store.base import Point
from stackpulse.kernel.topics import Kind
from stackpulse.services.occupancy.forecast import Profile, forecast, hour_of_week
from stackpulse.services.occupancy.logic import (
    CheckpointError,
    SeatMachine,
    SeatState,
    SeatTiming,
    ZoneCounts,
    busyness,
    next_closing,
)

log = logging.getLogger("stackpulse.occupancy")

CHECKPOINT_VERSION = 1


class SiteOccupancy:
    """All derived occupancy state of one site; pure apart from the `now` it is given."""

    MAX_PENDING_POINTS = 10_000

    def __init__(
        self, layout: Layout, timing: SeatTiming, root: str, *, privacy_floor: int = 0
    ) -> None:
        self.layout = layout
        self.root = root
        self.privacy_floor = privacy_floor
        self._next_close: datetime | None = None
        self._look_after: datetime | None = None
        self.drift: list[tuple[datetime, dict[str, int]]] = []  # (closing, zone -> drift)
        self._pending: list[Point] = []
        self.zones = ZoneCounts(layout)
        self.seats = {s.device: SeatMachine(timing) for s in layout.seats}
        self._seat_of = {s.device: s for s in layout.seats}
        self._seats_in_zone: dict[str, list[str]] = {z.id: [] for z in layout.zones}
        for s in layout.seats:
            self._seats_in_zone.setdefault(s.zone, []).append(s.device)
        self.updated_at: dict[str, datetime] = {}
        self.profile: Profile = {}  # the forecaster's latest: what is usual per hour of week

    def apply(self, ev: Event, now: datetime) -> list[Message]:
        """One event (gate or seat data, a seat's status); the state messages it changes."""
        data = ev.data()
        if ev.kind is Kind.GATE and isinstance(data, GateData):
            zones = self.zones.apply_gate(ev.device, data.boot, data.seq, data.in_, data.out)
            return [self._zone_message(z, now) for z in sorted(zones)]
        if ev.kind is Kind.SEAT:
            machine = self.seats.get(ev.device)
            if machine is None:
                return []
            if isinstance(data, SeatData):
                changed = machine.reading(data.boot, data.seq, data.presence, ev.ts, now)
            elif isinstance(data, StatusMessage):
                changed = machine.status(data.online, ev.ts, now)
            else:
                return []
            return self._seat_changed(ev.device, now) if changed else []
        return []

    def tick(self, now: datetime) -> list[Message]:
        out: list[Message] = self._closings(now)
        for device, machine in self.seats.items():
            if machine.tick(now):
                out.extend(self._seat_changed(device, now))
        return last_per_topic(out)

    # -- checkpoint ---------------------------------------------------------------------

    def checkpoint(self, now: datetime) -> dict[str, Any]:
        """The counting and seat state as JSON-able data, to survive a restart (`restore`).

        Each gate's counter and each zone's unclamped sum, each seat's machine, and the
        closing the site waits for: a closing that passes while the service is down
        still resets the counts once it is back.
        """
        closes = (
            self._next_close if self._next_close is not None else next_closing(self.layout, now)
        )
        return {
            "version": CHECKPOINT_VERSION,
            "site": self.layout.site,
            "next_close": closes.isoformat() if closes is not None else None,
            **self.zones.checkpoint(),
            "seats": {d: m.checkpoint() for d, m in sorted(self.seats.items())},
        }

    def restore(self, data: object) -> bool:
        """Take up a `checkpoint`; False (and a log line) if unusable, the state untouched.

        A checkpoint of an older layout is fine: what the layout no longer has is
        ignored, what is new starts at zero (or `unknown`).
        """
        site = self.layout.site
        try:
            if not isinstance(data, dict):
                raise CheckpointError("not a JSON object")
            if data.get("version") != CHECKPOINT_VERSION:
                raise CheckpointError(f"version {str(data.get('version'))[:20]} is not supported")
            if data.get("site") != site:
                raise CheckpointError(f"it is of site {str(data.get('site'))[:40]!r}")
            closes = _checkpoint_time(data, "next_close")
            seats = data.get("seats", {})
            if not isinstance(seats, dict):
                raise CheckpointError("'seats' must be an object")
            machines = {}
            for device, state in seats.items():
                if device in self.seats:
                    machine = SeatMachine(self.seats[device].timing)
                    machine.restore(state)
                    machines[device] = machine
            ignored = self.zones.restore(data)
        except CheckpointError as err:
            log.warning("ignoring the occupancy checkpoint of %s: %s", site, err)
            return False
        self.seats.update(machines)
        if ignored:
            log.info("checkpoint of %s: not in the layout any more: %s", site, ", ".join(ignored))
        if closes is not None:
            self._next_close, self._look_after = closes, None
        return True

    # -- points for the store -----------------------------------------------------------

    def take_points(self) -> list[Point]:
        """Points made since the last call (the drift found at each closing)."""
        points, self._pending = self._pending, []
        return points

    def restore_points(self, points: list[Point]) -> None:
        """Put back points that could not be stored, ahead of newer ones (bounded)."""
        self._pending[:0] = points
        del self._pending[: -self.MAX_PENDING_POINTS]

    def zone_points(self, now: datetime) -> list[Point]:
        points = []
        for z in self.layout.zones:
            states = self._zone_seat_states(z.id)
            points.append(
                zone_point(
                    self.layout.site,
                    z.id,
                    z.floor,
                    occupancy=self.zones.count(z.id),
                    capacity=z.capacity,
                    seats_total=len(states),
                    seats_free=states.count(SeatState.FREE),
                    seats_occupied=states.count(SeatState.OCCUPIED),
                    seats_held=states.count(SeatState.HELD),
                    seats_unknown=states.count(SeatState.UNKNOWN),
                    ts=now,
                )
            )
            # Next to each snapshot, what is usual then: "today vs a typical <weekday>".
            usual = self.profile.get(z.id, {}).get(hour_of_week(now, self.layout.tz))
            if usual is not None:
                points.append(typical_point(self.layout.site, z.id, z.floor, typical=usual, ts=now))
        return points

    # -- what is published --------------------------------------------------------------

    def snapshot(self, now: datetime) -> list[Message]:
        """Everything, as retained messages: what a new reader needs."""
        out = [self._seat_message(d) for d in self.seats]
        out += [self._zone_message(z.id, now) for z in self.layout.zones]
        return out

    def forecast_messages(self, profile: Profile, now: datetime, hours: int) -> list[Message]:
        """Retained `_state/occupancy/forecast/{zone}`: typical occupancy of coming hours."""
        out: list[Message] = []
        for zone, coming in forecast(self.layout, profile, now, hours).items():
            body = Forecast(
                id=zone,
                hours=tuple(
                    UsualHour(at=u.at, occupancy=self._floored(u.occupancy), busyness=u.busyness)
                    for u in coming
                ),
            )
            topic = FORECAST.topic(self.root, self.layout.site, zone)
            out.append(Message(topic, body.dump(), retain=True))
        return out

    def _closings(self, now: datetime) -> list[Message]:
        """At each closing time everyone has left: reset the counts, record the drift."""
        if self._next_close is None:
            if self._look_after is not None and now < self._look_after:
                return []
            self._next_close = next_closing(self.layout, now)
            self._look_after = now + timedelta(days=1)  # an always-open site: look daily
        out: list[Message] = []
        while self._next_close is not None and now >= self._next_close:
            closed_at = self._next_close
            shown = self.zones.counts
            drift = self.zones.reset_net()
            self.drift.append((closed_at, drift))
            del self.drift[:-30]  # a month of closings is plenty to look back on
            for z in self.layout.zones:
                point = drift_point(
                    self.layout.site,
                    z.id,
                    z.floor,
                    drift=drift[z.id],
                    shown=shown[z.id],
                    ts=closed_at,
                )
                self._pending.append(point)
            del self._pending[: -self.MAX_PENDING_POINTS]
            if any(drift.values()):
                log.info("closing reset of %s at %s: drift %s", self.layout.site, closed_at, drift)
            out += [self._zone_message(z.id, now) for z in self.layout.zones]
            out += [
                self._drift_message(z.id, drift[z.id], shown[z.id], closed_at)
                for z in self.layout.zones
            ]
            self._next_close = next_closing(self.layout, closed_at)
        return out

    def _floored(self, n: int | None) -> int | None:
        return None if n is None or 0 < n < self.privacy_floor else n

    def _seat_changed(self, device: str, now: datetime) -> list[Message]:
        return [self._seat_message(device), self._zone_message(self._seat_of[device].zone, now)]

    def _zone_seat_states(self, zone: str) -> list[SeatState]:
        return [self.seats[d].state for d in self._seats_in_zone.get(zone, [])]

    def _zone_message(self, zone_id: str, now: datetime) -> Message:
        z = self.layout.zone(zone_id)
        states = self._zone_seat_states(zone_id)
        occupancy = self.zones.count(zone_id)
        self.updated_at[zone_id] = now
        few = 0 < occupancy < self.privacy_floor
        body = Zone(
            id=z.id,
            name=z.name,
            floor=z.floor,
            capacity=z.capacity,
            # Below the privacy floor the exact count is withheld, not rounded to zero:
            # zero would claim the room is empty, which is a different (false) fact.
            occupancy=None if few else occupancy,
            occupancy_band="few" if few else None,
            seats_total=len(states),
            seats_free=states.count(SeatState.FREE),
            busyness=busyness(occupancy, z.capacity),
            updated_at=now,
        )
        return Message(ZONE.topic(self.root, self.layout.site, z.id), body.dump(), retain=True)

    def _drift_message(self, zone: str, drift: int, shown: int, closed_at: datetime) -> Message:
        """Non-retained `_state/occupancy/drift/{zone}`: one closing's drift (for alerts)."""
        body = Drift(
            site=self.layout.site, zone=zone, drift=drift, shown=shown, closed_at=closed_at
        )
        return Message(DRIFT.topic(self.root, self.layout.site, zone), body.dump(), retain=False)

    def _seat_message(self, device: str) -> Message:
        seat = self._seat_of[device]
        machine = self.seats[device]
        body = Seat(
            id=seat.id,
            zone=seat.zone,
            state=machine.state.value,
            since=machine.since,
            held_since=machine.held_since,
            held_too_long=machine.held_too_long,
            features=tuple(seat.features),
            x=seat.x,
            y=seat.y,
        )
        return Message(SEAT.topic(self.root, self.layout.site, seat.id), body.dump(), retain=True)


def _checkpoint_time(data: dict[str, Any], key: str) -> datetime | None:
    value = data.get(key)
    if value is None:
        return None
    try:
        if not isinstance(value, str):
            raise ValueError
        ts = datetime.fromisoformat(value)
    except ValueError:
        raise CheckpointError(f"{key!r} is not an RFC 3339 time") from None
    if ts.tzinfo is None:
        raise CheckpointError(f"{key!r} has no UTC offset")
    return ts


def last_per_topic(messages: Iterable[Message]) -> list[Message]:
    """Retained state: only the newest message per topic matters (events all stay)."""
    newest: dict[str, Message] = {}
    events: list[Message] = []
    for m in messages:
        if m.retain:
            newest.pop(m.topic, None)
            newest[m.topic] = m
        else:
            events.append(m)
    return events + list(newest.values())


__all__ = ["SiteOccupancy", "last_per_topic"]
