""" "Usually busy at this hour": typical occupancy by hour of the week, from stored history.

Pure apart from the store query the service runs: `history_query` says what to read,
`weekly_profile` folds the rows into hour-of-week means in the site's time zone, and
`forecast` reads the coming hours off that profile.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from stackpulse.kernel.layout import Layout
from stackpulse.kernel.schema import ZONE_OCCUPANCY
from stackpulse.kernel.store.base import Row
from stackpulse.kernel.store.influxql import Agg, Query, TagEq
from stackpulse.services.occupancy.logic import busyness

HOURS_PER_WEEK = 7 * 24
Profile = dict[str, dict[int, float]]  # zone -> hour of week (Monday 00h = 0) -> mean


def history_query(site: str, now: datetime, weeks: int) -> Query:
    """Hourly mean occupancy per zone over the last `weeks` whole weeks."""
    end = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return Query(
        ZONE_OCCUPANCY,
        (Agg("mean", "occupancy"),),
        where=(TagEq("site", site),),
        start=end - timedelta(weeks=weeks),
        end=end,
        group_by_time=timedelta(hours=1),
        group_by_tags=("zone",),
    )


def hour_of_week(at: datetime, tz: ZoneInfo) -> int:
    local = at.astimezone(tz)
    return local.weekday() * 24 + local.hour


def weekly_profile(rows: Iterable[Row], tz: ZoneInfo) -> Profile:
    """Mean of the hourly means that fall on each local hour of the week (gaps skipped).

    Hourly buckets are cut in UTC; in a time zone with a fractional offset a bucket
    straddles two local hours and is filed under the one it starts in.
    """
    sums: dict[str, dict[int, list[float]]] = {}
    for row in rows:
        value = row.get("mean")
        if value is None:
            continue
        acc = sums.setdefault(str(row["zone"]), {})
        n = acc.setdefault(hour_of_week(row["time"], tz), [0.0, 0.0])
        n[0] += float(value)
        n[1] += 1
    return {zone: {h: s / n for h, (s, n) in hours.items()} for zone, hours in sums.items()}


@dataclass(frozen=True, slots=True)
class Usually:
    """What a zone is typically like in one coming hour."""

    at: datetime  # the start of the hour (UTC)
    occupancy: int | None  # None: no history for that hour
    busyness: str | None


def forecast(
    layout: Layout, profile: Mapping[str, Mapping[int, float]], now: datetime, hours: int = 4
) -> dict[str, list[Usually]]:
    """Per zone, the typical occupancy of this hour and the `hours - 1` after it."""
    start = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    out: dict[str, list[Usually]] = {}
    for z in layout.zones:
        typical = profile.get(z.id, {})
        coming = []
        for i in range(hours):
            at = start + timedelta(hours=i)
            mean = typical.get(hour_of_week(at, layout.tz))
            n = None if mean is None else round(mean)
            coming.append(Usually(at, n, None if n is None else busyness(n, z.capacity)))
        out[z.id] = coming
    return out
