"""The daily summary a library director takes to a meeting: what to query, how to fold it.

Pure apart from `read_daily`, which runs the queries on a SeriesStore. A *day* is the
site's local calendar day, midnight to midnight in its time zone (23 or 25 hours across
a DST change). Definitions:

- occupancy peak of a zone: the highest `zone_occupancy.occupancy` snapshot of the day,
  with the time of its first occurrence, and as a share of the zone's capacity;
- seat-hours: for each zone and each quarter hour of the day, the mean of the
  `seats_occupied` snapshots in it times 0.25 h, summed (a quarter with no snapshot counts
  0). With the occupancy service's one-minute snapshots that is the sum of
  `seats_occupied` x 1 minute, i.e. the area under the occupied-seats curve;
- alerts raised: `alert_transition` points of kind `opened` in the day, by severity;
- time to fix: `seconds_to_clear` (from opening to cleared, by hand or automatically) of
  the alerts cleared during the day, whenever they opened; the median and the longest;
- items reshelved: inventory findings closed in the day (`finding_closed`) of kind
  `misplaced` (put back home) plus `reshelving` (returned items seen back on a shelf);
  missing items found again are counted apart;
- top demand: the day's last `demand_rank` snapshot (the ranking `GET .../demand` served
  at the end of the day), empty slots left out.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from pydantic import BaseModel

from stackpulse.kernel.layout import Layout
from stackpulse.kernel.schema import ALERT_TRANSITION, DEMAND_RANK, FINDING_CLOSED, ZONE_OCCUPANCY
from stackpulse.kernel.store.base import Row, SeriesStore
from stackpulse.kernel.store.influxql import Agg, Query, TagEq

QUARTER = timedelta(minutes=15)  # every time zone offset in use is a multiple of it
SEVERITIES = ("critical", "warning", "info")
RESHELVED = ("misplaced", "reshelving")
DEMAND_FIELDS = ("title", "call_number", "copies", "score", "suggest", "reason")
TOP_DEMAND = 10


class ZonePeak(BaseModel):
    zone: str
    name: str
    floor: int
    capacity: int
    peak: int | None  # None: no snapshot that day
    peak_at: datetime | None
    peak_share: float | None  # peak / capacity


class AlertSummary(BaseModel):
    raised: int
    raised_by_severity: dict[str, int]
    cleared: int
    median_minutes_to_fix: float | None
    longest_minutes_to_fix: float | None


class ShelfSummary(BaseModel):
    items_reshelved: int
    misplaced_put_back: int
    returns_reshelved: int
    missing_found: int


class DemandLine(BaseModel):
    rank: int
    title: str
    call_number: str
    copies: int
    score: float
    suggest_purchase: bool
    reason: str


class DailyReport(BaseModel):
    site: str
    site_name: str
    date: date
    timezone: str
    start: datetime  # local midnight, as an aware instant
    end: datetime  # the next local midnight
    zones: list[ZonePeak]
    seat_hours: float
    seat_hours_by_zone: dict[str, float]
    alerts: AlertSummary
    shelves: ShelfSummary
    top_demand: list[DemandLine]


@dataclass(frozen=True, slots=True)
class DayQueries:
    """Every query the report needs, over one site and one local day."""

    peaks: Query
    seats: Query
    raised: Query
    cleared: Query
    closed: Query
    demand: Query


def day_window(layout: Layout, day: date) -> tuple[datetime, datetime]:
    """Local midnight to the next local midnight of `day` at the site."""
    start = datetime.combine(day, time.min, layout.tz)
    end = datetime.combine(day + timedelta(days=1), time.min, layout.tz)
    return start, end


def local_today(layout: Layout, now: datetime) -> date:
    return now.astimezone(layout.tz).date()


def day_queries(layout: Layout, day: date) -> DayQueries:
    start, end = day_window(layout, day)
    site = (TagEq("site", layout.site),)
    span: dict[str, Any] = {"start": start, "end": end}
    return DayQueries(
        peaks=Query(
            ZONE_OCCUPANCY, (Agg("max", "occupancy"),), site, group_by_tags=("zone",), **span
        ),
        seats=Query(
            ZONE_OCCUPANCY,
            (Agg("mean", "seats_occupied"),),
            site,
            group_by_time=QUARTER,
            group_by_tags=("zone",),
            fill="none",
            **span,
        ),
        raised=Query(
            ALERT_TRANSITION,
            (Agg("sum", "count", "raised"),),
            (*site, TagEq("kind", "opened")),
            group_by_tags=("severity",),
            **span,
        ),
        cleared=Query(
            ALERT_TRANSITION,
            (Agg(None, "seconds_to_clear"),),
            (*site, TagEq("kind", "cleared")),
            **span,
        ),
        closed=Query(
            FINDING_CLOSED,
            (Agg("sum", "count", "closed"),),
            site,
            group_by_tags=("finding",),
            **span,
        ),
        demand=Query(
            DEMAND_RANK,
            tuple(Agg("last", f, f) for f in DEMAND_FIELDS),
            site,
            group_by_tags=("rank",),
            **span,
        ),
    )


async def read_daily(store: SeriesStore, layout: Layout, day: date) -> DailyReport:
    """Run the day's queries (concurrently) and fold them; StoreError passes through."""
    q = day_queries(layout, day)
    peaks, seats, raised, cleared, closed, demand = await asyncio.gather(
        store.query(q.peaks),
        store.query(q.seats),
        store.query(q.raised),
        store.query(q.cleared),
        store.query(q.closed),
        store.query(q.demand),
    )
    return fold_daily(
        layout,
        day,
        peaks=peaks,
        seats=seats,
        raised=raised,
        cleared=cleared,
        closed=closed,
        demand=demand,
    )


def fold_daily(
    layout: Layout,
    day: date,
    *,
    peaks: Iterable[Row],
    seats: Iterable[Row],
    raised: Iterable[Row],
    cleared: Iterable[Row],
    closed: Iterable[Row],
    demand: Iterable[Row],
) -> DailyReport:
    """The report from the rows of `day_queries` (in any order)."""
    start, end = day_window(layout, day)
    by_zone = seat_hours_by_zone(seats)
    return DailyReport(
        site=layout.site,
        site_name=layout.name,
        date=day,
        timezone=layout.timezone,
        start=start,
        end=end,
        zones=zone_peaks(layout, peaks),
        seat_hours=round(sum(by_zone.values()), 2),
        seat_hours_by_zone={z.id: round(by_zone.get(z.id, 0.0), 2) for z in layout.zones},
        alerts=alert_summary(raised, cleared),
        shelves=shelf_summary(closed),
        top_demand=top_demand(demand),
    )


def zone_peaks(layout: Layout, rows: Iterable[Row]) -> list[ZonePeak]:
    found = {str(r["zone"]): r for r in rows if r.get("max") is not None}
    out = []
    for z in layout.zones:
        row = found.get(z.id)
        peak = None if row is None else int(row["max"])
        out.append(
            ZonePeak(
                zone=z.id,
                name=z.name,
                floor=z.floor,
                capacity=z.capacity,
                peak=peak,
                peak_at=None if row is None else row["time"],
                peak_share=None if peak is None else round(peak / z.capacity, 3),
            )
        )
    return out


def seat_hours_by_zone(rows: Iterable[Row]) -> dict[str, float]:
    hours_per_bucket = QUARTER / timedelta(hours=1)
    out: dict[str, float] = {}
    for r in rows:
        mean = r.get("mean")
        if mean is not None:
            zone = str(r["zone"])
            out[zone] = out.get(zone, 0.0) + float(mean) * hours_per_bucket
    return out


def alert_summary(raised: Iterable[Row], cleared: Iterable[Row]) -> AlertSummary:
    by_severity = dict.fromkeys(SEVERITIES, 0)
    for r in raised:
        by_severity[str(r["severity"])] = by_severity.get(str(r["severity"]), 0) + int(
            r.get("raised") or 0
        )
    minutes = [float(r["seconds_to_clear"]) / 60 for r in cleared if r.get("seconds_to_clear")]
    return AlertSummary(
        raised=sum(by_severity.values()),
        raised_by_severity=by_severity,
        cleared=len(minutes),
        median_minutes_to_fix=round(statistics.median(minutes), 1) if minutes else None,
        longest_minutes_to_fix=round(max(minutes), 1) if minutes else None,
    )


def shelf_summary(rows: Iterable[Row]) -> ShelfSummary:
    closed: Mapping[str, int] = {str(r["finding"]): int(r.get("closed") or 0) for r in rows}
    return ShelfSummary(
        items_reshelved=sum(closed.get(f, 0) for f in RESHELVED),
        misplaced_put_back=closed.get("misplaced", 0),
        returns_reshelved=closed.get("reshelving", 0),
        missing_found=closed.get("missing", 0),
    )


def top_demand(rows: Iterable[Row], limit: int = TOP_DEMAND) -> list[DemandLine]:
    lines = []
    for r in rows:
        if not r.get("title") or not r.get("copies"):
            continue  # an empty slot: the ranking was shorter than its slots
        lines.append(
            DemandLine(
                rank=int(r["rank"]),
                title=str(r["title"]),
                call_number=str(r.get("call_number") or ""),
                copies=int(r["copies"]),
                score=float(r.get("score") or 0.0),
                suggest_purchase=bool(r.get("suggest")),
                reason=str(r.get("reason") or ""),
            )
        )
    lines.sort(key=lambda line: line.rank)
    return lines[:limit]


__all__ = [
    "AlertSummary",
    "DailyReport",
    "DayQueries",
    "DemandLine",
    "ShelfSummary",
    "ZonePeak",
    "day_queries",
    "day_window",
    "fold_daily",
    "local_today",
    "read_daily",
]
