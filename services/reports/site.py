"""One site's reporting calendar: its local days, which are over, which to archive. Pure."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from stackpulse.kernel.layout import Layout
from stackpulse.services.reports.logic import day_window, local_today

# Reports cover days in this range; outside it, a date is a mistake (422), not a query.
FIRST_DAY = date(2000, 1, 1)
LAST_DAY = date(2199, 12, 31)


class DayOutOfRange(ValueError):
    """A report day the system cannot have: before FIRST_DAY, after LAST_DAY or ahead."""


@dataclass(frozen=True, slots=True)
class SiteCalendar:
    layout: Layout
    archive_after: timedelta

    @property
    def site(self) -> str:
        return self.layout.site

    def today(self, now: datetime) -> date:
        return local_today(self.layout, now)

    def check(self, day: date, now: datetime) -> date:
        """`day` if a report of it can exist; DayOutOfRange (saying why) if not."""
        if not FIRST_DAY <= day <= LAST_DAY:
            raise DayOutOfRange(f"{day.isoformat()} is outside {FIRST_DAY}..{LAST_DAY}")
        if day > self.today(now) + timedelta(days=1):
            raise DayOutOfRange(f"{day.isoformat()} has not begun at {self.site}")
        return day

    def is_over(self, day: date, now: datetime) -> bool:
        """True once the day has ended at the site and `archive_after` has passed."""
        return now >= day_window(self.layout, day)[1] + self.archive_after

    def due(self, now: datetime, archived: Collection[date], back: int) -> list[date]:
        """The days of the last `back` that are over and not archived yet, oldest first."""
        today = self.today(now)
        days = [today - timedelta(days=n) for n in range(back, 0, -1)]
        return [d for d in days if d not in archived and self.is_over(d, now)]


def archive_name(site: str, day: date) -> str:
    """Where a day's report is kept in the state database."""
    return f"reports/{site}/{day.isoformat()}"


__all__ = ["FIRST_DAY", "LAST_DAY", "DayOutOfRange", "SiteCalendar", "archive_name"]
