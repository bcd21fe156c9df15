"""`_state/occupancy/...`: zones, seats, forecasts and closing-time drift.

Producer: the occupancy service. Consumers: the API's read model (zones, seats,
forecasts: the student page and SSE), the alerts service (zones, seats, drift), the
reservations service (seats), the managers' page.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StrictBool, StrictInt, StrictStr

from stackpulse.kernel.contracts.base import Contract, StateTopic
from stackpulse.kernel.models import Timestamp

SERVICE = "occupancy"
MAX_PEOPLE = 1_000_000  # no zone holds more; anything above is not a count

Busyness = Literal["quiet", "moderate", "busy", "very busy", "full"]
SeatStateName = Literal["free", "occupied", "held", "unknown"]
Id = Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
Count = Annotated[StrictInt, Field(ge=0, le=MAX_PEOPLE)]
Name = Annotated[StrictStr, Field(max_length=200)]
Coordinate = Annotated[float, Field(ge=-1e6, le=1e6, allow_inf_nan=False)]


class Zone(Contract):
    """One zone, retained on `_state/occupancy/zone/{id}`."""

    id: Id
    name: Name
    floor: Annotated[StrictInt, Field(ge=-100, le=1000)]
    capacity: Count
    # None when fewer people than the privacy floor are in: small numbers are not
    # published exactly; `occupancy_band` then says "few".
    occupancy: Count | None
    seats_total: Count
    seats_free: Count
    busyness: Busyness
    updated_at: Timestamp
    occupancy_band: Literal["few"] | None = None


class Seat(Contract):
    """One seat, retained on `_state/occupancy/seat/{id}`."""

    id: Id
    zone: Id
    state: SeatStateName
    # None while a seat has never reported: it is `unknown` with no start to name.
    since: Timestamp | None = None
    features: tuple[Annotated[StrictStr, Field(max_length=40)], ...] = Field((), max_length=32)
    x: Coordinate | None = None
    y: Coordinate | None = None
    held_since: Timestamp | None = None  # a bag on the seat since then
    held_too_long: StrictBool = False  # held past the hogging limit


class UsualHour(Contract):
    """One coming hour as it usually is: the mean of the same hour of past weeks."""

    at: Timestamp
    occupancy: Count | None = None  # None: no history, or under the privacy floor
    busyness: Busyness | None = None


class Forecast(Contract):
    """Retained `_state/occupancy/forecast/{zone}`: this hour and the next, as usual."""

    id: Id
    hours: tuple[UsualHour, ...] = Field((), max_length=48)


class Drift(Contract):
    """`_state/occupancy/drift/{zone}`, not retained: one closing's counting error.

    `drift` is the signed sum the gates left in the zone when it should be empty
    (positive: exits were missed); `shown` is what the public count said.
    """

    zone: Id
    drift: Annotated[StrictInt, Field(ge=-MAX_PEOPLE, le=MAX_PEOPLE)]
    shown: Count
    closed_at: Timestamp
    site: StrictStr | None = None  # informative only: the topic's site is the truth


ZONE = StateTopic(SERVICE, "zone", Zone)
SEAT = StateTopic(SERVICE, "seat", Seat)
FORECAST = StateTopic(SERVICE, "forecast", Forecast)
DRIFT = StateTopic(SERVICE, "drift", Drift, retained=False)

__all__ = [
    "DRIFT",
    "FORECAST",
    "SEAT",
    "ZONE",
    "Busyness",
    "Drift",
    "Forecast",
    "Seat",
    "SeatStateName",
    "UsualHour",
    "Zone",
]
