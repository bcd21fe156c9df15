"""What the manager page draws beside its live tiles: today vs typical per floor, device health.

Pure apart from the `read_*` functions, which run the queries on a SeriesStore.
A floor's occupancy at a quarter hour is the sum over its zones of each zone's mean
`zone_occupancy.occupancy` in that quarter; its typical value the same sum over
`zone_typical.typical` (the forecaster's weekly profile, written next to each snapshot).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import date, datetime, timedelta

from pydantic import BaseModel

from stackpulse.kernel.layout import Layout
from stackpulse.kernel.schema import DEVICE_STATUS, ZONE_OCCUPANCY, ZONE_TYPICAL
from stackpulse.kernel.store.base import Row, SeriesStore
from stackpulse.kernel.store.influxql import Agg, Query, TagEq
from stackpulse.services.reports.logic import QUARTER, day_window

STATUS_LOOKBACK = timedelta(days=30)  # a device silent longer than this counts as unheard


class FloorPoint(BaseModel):
    at: datetime
    occupancy: float | None
    typical: float | None


class FloorSeries(BaseModel):
    floor: int
    capacity: int
    points: list[FloorPoint]


class KindHealth(BaseModel):
    kind: str
    total: int  # devices of this kind in the layout
    online: int
    offline: int
    unheard: int  # no status in the lookback


def floor_queries(layout: Layout, day: date) -> tuple[Query, Query]:
    start, end = day_window(layout, day)
    site = (TagEq("site", layout.site),)

    def per_zone(measurement: str, field: str) -> Query:
        return Query(
            measurement,
            (Agg("mean", field, "value"),),
            site,
            start=start,
            end=end,
            group_by_time=QUARTER,
            group_by_tags=("zone",),
            fill="none",
        )

    return per_zone(ZONE_OCCUPANCY, "occupancy"), per_zone(ZONE_TYPICAL, "typical")


def fold_floors(layout: Layout, today: Iterable[Row], typical: Iterable[Row]) -> list[FloorSeries]:
    floor_of = {z.id: z.floor for z in layout.zones}
    sums: dict[int, dict[datetime, list[float | None]]] = {}
    for column, rows in enumerate((today, typical)):
        for r in rows:
            floor = floor_of.get(str(r["zone"]))
            if floor is None or r.get("value") is None:
                continue
            cell = sums.setdefault(floor, {}).setdefault(r["time"], [None, None])
            cell[column] = (cell[column] or 0.0) + float(r["value"])
    out = []
    for floor in sorted(set(floor_of.values())):
        capacity = sum(z.capacity for z in layout.zones if z.floor == floor)
        cells = sums.get(floor, {})
        points = [
            FloorPoint(
                at=at,
                occupancy=None if v[0] is None else round(v[0], 1),
                typical=None if v[1] is None else round(v[1], 1),
            )
            for at, v in sorted(cells.items())
        ]
        out.append(FloorSeries(floor=floor, capacity=capacity, points=points))
    return out


async def read_floors(store: SeriesStore, layout: Layout, day: date) -> list[FloorSeries]:
    today_q, typical_q = floor_queries(layout, day)
    today, typical = await asyncio.gather(store.query(today_q), store.query(typical_q))
    return fold_floors(layout, today, typical)


def status_query(layout: Layout, now: datetime) -> Query:
    return Query(
        DEVICE_STATUS,
        (Agg("last", "online", "online"),),
        (TagEq("site", layout.site),),
        start=now - STATUS_LOOKBACK,
        end=now + timedelta(minutes=5),  # a device clock a little ahead still counts
        group_by_tags=("kind", "device"),
    )


def fold_health(layout: Layout, rows: Iterable[Row]) -> list[KindHealth]:
    known = layout.devices()
    last = {str(r["device"]): bool(r["online"]) for r in rows if r.get("online") is not None}
    out = []
    for kind in sorted({str(k) for k in known.values()}):
        devices = [d for d, k in known.items() if str(k) == kind]
        online = sum(1 for d in devices if last.get(d) is True)
        offline = sum(1 for d in devices if last.get(d) is False)
        out.append(
            KindHealth(
                kind=kind,
                total=len(devices),
                online=online,
                offline=offline,
                unheard=len(devices) - online - offline,
            )
        )
    return out


async def read_health(store: SeriesStore, layout: Layout, now: datetime) -> list[KindHealth]:
    return fold_health(layout, await store.query(status_query(layout, now)))


__all__ = [
    "FloorPoint",
    "FloorSeries",
    "KindHealth",
    "floor_queries",
    "fold_floors",
    "fold_health",
    "read_floors",
    "read_health",
    "status_query",
]
