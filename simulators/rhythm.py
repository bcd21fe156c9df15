"""The daily rhythm of a library: how full the building wants to be, by its opening hours."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from stackpulse.kernel.layout import Layout

# (local hour, fraction of the day's peak) for a weekday: a slow morning, a lunch peak,
# a dinner dip and an evening bump of students who stay until late.
WEEKDAY_CURVE: tuple[tuple[float, float], ...] = (
    (0.0, 0.20),
    (8.0, 0.25),
    (10.0, 0.50),
    (11.0, 0.62),
    (12.5, 0.95),
    (13.5, 1.00),
    (15.0, 0.78),
    (17.0, 0.62),
    (18.0, 0.52),
    (19.5, 0.80),
    (21.0, 0.70),
    (22.0, 0.45),
    (24.0, 0.20),
)
WEEKEND_FACTOR = 0.7
RAMP_UP = timedelta(minutes=45)
# The building is emptied before the doors close: no one arrives in the last half hour,
# and the closing announcement sends everyone home in the last quarter.
LAST_ENTRY = timedelta(minutes=30)
CLOSING_CALL = timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class Window:
    """One opening, as aware datetimes; `seamless_*` when it runs on into the next one
    (a 24-hour library closes for nobody at midnight)."""

    opens: datetime
    closes: datetime
    seamless_start: bool = False
    seamless_end: bool = False

    @property
    def last_entry(self) -> datetime | None:
        return None if self.seamless_end else self.closes - LAST_ENTRY

    @property
    def closing_call(self) -> datetime | None:
        return None if self.seamless_end else self.closes - CLOSING_CALL

    def __contains__(self, t: datetime) -> bool:
        return self.opens <= t < self.closes


class Hours:
    """A site's opening hours (kernel.layout reads them), as windows in time."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.tz: ZoneInfo = layout.tz

    def _span(self, day: date) -> tuple[datetime, datetime] | None:
        return self.layout.hours_for(day)

    def window(self, day: date) -> Window | None:
        """The opening that starts on local `day`, or None when closed."""
        span = self._span(day)
        if span is None:
            return None
        before = self._span(day - timedelta(days=1))
        after = self._span(day + timedelta(days=1))
        return Window(
            span[0],
            span[1],
            seamless_start=before is not None and before[1] >= span[0],
            seamless_end=after is not None and after[0] <= span[1],
        )

    def window_at(self, t: datetime) -> Window | None:
        """The opening containing `t` (it may have started the local day before)."""
        local = t.astimezone(self.tz).date()
        for day in (local, local - timedelta(days=1)):
            w = self.window(day)
            if w is not None and t in w:
                return w
        return None

    def next_midnight(self, t: datetime) -> datetime:
        local = t.astimezone(self.tz)
        return datetime.combine(local.date() + timedelta(days=1), time(0), tzinfo=self.tz)


def _curve(hour: float) -> float:
    for (h0, v0), (h1, v1) in itertools.pairwise(WEEKDAY_CURVE):
        if h0 <= hour <= h1:
            return v0 + (v1 - v0) * (hour - h0) / (h1 - h0)
    return WEEKDAY_CURVE[-1][1]


def target_fill(hours: Hours, t: datetime) -> float:
    """Fraction (0..1) of the day's peak crowd that wants to be inside at `t`."""
    w = hours.window_at(t)
    if w is None:
        return 0.0
    local = t.astimezone(hours.tz)
    hour = local.hour + local.minute / 60 + local.second / 3600
    level = _curve(hour) * (WEEKEND_FACTOR if local.weekday() >= 5 else 1.0)
    ramp = 1.0 if w.seamless_start else min(1.0, (t - w.opens) / RAMP_UP)
    if w.closing_call is None:
        return level * ramp
    if t >= w.closing_call:
        return 0.0
    wind_down = min(1.0, (w.closing_call - t) / (RAMP_UP - CLOSING_CALL))
    return max(0.0, level * ramp * wind_down)
