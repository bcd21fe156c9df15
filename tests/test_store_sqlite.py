"""The SQLite store keeps InfluxDB's semantics: every contract test here runs on both."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from stackpulse.kernel.store import (
    Agg,
    FieldValue,
    InfluxStore,
    Point,
    Query,
    SeriesStore,
    SqliteStore,
    StoreError,
    StoreRejected,
    StoreUnavailable,
    TagEq,
    open_store,
)

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
S = 1_000_000_000


def ns(moment: datetime) -> int:
    return int((moment - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()) * S


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def occupancy(zone: str, minute: float, value: FieldValue, **tags: str) -> Point:
    return Point(
        "zone", {"site": "main", "zone": zone, **tags}, {"occupancy": value}, ns(at(minute))
    )


@pytest.fixture(params=["sqlite", "influxdb"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SeriesStore]:
    s: SeriesStore
    if request.param == "sqlite":
        s = SqliteStore(tmp_path / "series.db")
    else:
        s = InfluxStore.from_url(request.getfixturevalue("influx_db"))
    await s.ping()
    try:
        yield s
    finally:
        await s.close()


async def test_writes_12000_points_and_counts_them(store: SeriesStore) -> None:
    zones = ("a", "b", "c")
    points = [occupancy(zones[i % 3], i / 60, i) for i in range(12_000)]
    await store.write(points)
    total = await store.query(Query("zone", (Agg("count", "occupancy"),)))
    assert [r["count"] for r in total] == [12_000]
    per_zone = await store.query(
        Query("zone", (Agg("count", "occupancy", "n"),), group_by_tags=("zone",))
    )
    assert [(r["zone"], r["n"]) for r in per_zone] == [("a", 4000), ("b", 4000), ("c", 4000)]


async def test_same_series_and_timestamp_overwrites_merging_fields(store: SeriesStore) -> None:
    ts = ns(T0)
    await store.write([Point("seat", {"seat": "s1"}, {"state": "free", "battery": 0.5}, ts)])
    await store.write([Point("seat", {"seat": "s1"}, {"state": "occupied"}, ts)])
    await store.write([Point("seat", {"seat": "s2"}, {"state": "held"}, ts)])
    rows = await store.query(
        Query("seat", (Agg(None, "state"), Agg(None, "battery")), where=(TagEq("seat", "s1"),))
    )
    assert rows == [{"time": T0, "state": "occupied", "battery": 0.5}]


async def test_group_by_time_with_fills(store: SeriesStore) -> None:
    # Buckets of 10 minutes over 10:00-10:40: data in the 1st and 3rd, none in the 2nd and 4th.
    await store.write([occupancy("a", 1, 10), occupancy("a", 5, 20), occupancy("a", 25, 40)])
    base = Query(
        "zone",
        (Agg("mean", "occupancy", "mean"), Agg("count", "occupancy", "n")),
        start=at(0),
        end=at(40),
        group_by_time=timedelta(minutes=10),
    )

    async def run(fill: str | None) -> list[tuple[int, object, object]]:
        q = replace(base, fill=fill)
        return [
            (int((r["time"] - T0).total_seconds() // 60), r["mean"], r["n"])
            for r in await store.query(q)
        ]

    assert await run(None) == [(0, 15, 2), (10, None, 0), (20, 40, 1), (30, None, 0)]
    assert await run("null") == await run(None)
    assert await run("none") == [(0, 15, 2), (20, 40, 1)]
    assert await run("previous") == [(0, 15, 2), (10, 15, 2), (20, 40, 1), (30, 40, 1)]
    assert await run("-1") == [(0, 15, 2), (10, -1, -1), (20, 40, 1), (30, -1, -1)]
    linear = await run("linear")
    assert linear[:3] == [(0, 15, 2), (10, 27.5, 1), (20, 40, 1)]


async def test_group_by_tags_where_order_and_limit_per_series(store: SeriesStore) -> None:
    await store.write(
        [
            occupancy(z, m, v)
            for z, base in (("a", 0), ("b", 100))
            for m, v in ((0, base), (10, base + 1), (20, base + 2))
        ]
        + [occupancy("c", 0, 7, floor="2")]
    )
    q = Query(
        "zone",
        (Agg(None, "occupancy"),),
        where=(TagEq("site", "main"), TagEq("floor", "")),
        group_by_tags=("zone",),
        order_desc=True,
        limit=2,
    )
    rows = await store.query(q)
    assert [(r["time"], r["zone"], r["occupancy"]) for r in rows] == [
        (at(20), "a", 2),
        (at(20), "b", 102),
        (at(10), "a", 1),
        (at(10), "b", 101),
    ]
    floor2 = await store.query(
        Query("zone", (Agg("sum", "occupancy"),), where=(TagEq("floor", "2"),))
    )
    assert [r["sum"] for r in floor2] == [7]
    assert (
        await store.query(Query("zone", (Agg("sum", "occupancy"),), where=(TagEq("zone", "zz"),)))
        == []
    )
    assert await store.query(Query("nothing", (Agg("sum", "occupancy"),))) == []


async def test_selectors_keep_their_points_time_when_alone(store: SeriesStore) -> None:
    await store.write([occupancy("a", 0, 5), occupancy("a", 10, 9), occupancy("a", 20, 1)])
    for func, value, minute in (("max", 9, 10), ("min", 1, 20), ("first", 5, 0), ("last", 1, 20)):
        rows = await store.query(Query("zone", (Agg(func, "occupancy"),)))
        assert rows == [{"time": at(minute), func: value}], func
    both = await store.query(
        Query("zone", (Agg("max", "occupancy"), Agg("min", "occupancy")), start=at(5))
    )
    assert both == [{"time": at(5), "max": 9, "min": 1}]
    mean = await store.query(Query("zone", (Agg("mean", "occupancy"),)))
    assert mean == [{"time": datetime(1970, 1, 1, tzinfo=UTC), "mean": 5}]


async def test_raw_values_keep_their_types(store: SeriesStore) -> None:
    fields: dict[str, FieldValue] = {
        "f": 1.5,
        "i": -3,
        "b": True,
        "s": 'a "quoted" \\ string',
        "z": False,
    }
    await store.write([Point("kinds", {}, fields, ns(T0))])
    rows = await store.query(Query("kinds", tuple(Agg(None, k) for k in fields)))
    assert rows == [{"time": T0, **fields}]
    assert type(rows[0]["b"]) is bool
    assert type(rows[0]["i"]) is int
    last = await store.query(Query("kinds", (Agg("last", "b"), Agg("first", "s"))))
    assert (last[0]["last"], last[0]["first"]) == (True, fields["s"])


async def test_type_conflicts_are_rejected_and_the_rest_written(store: SeriesStore) -> None:
    await store.write([occupancy("a", 0, 1)])
    batch = [occupancy("a", 1, 2), occupancy("a", 2, "lots"), occupancy("a", 3, 4)]
    with pytest.raises(StoreRejected, match="type") as caught:
        await store.write(batch)
    assert caught.value.dropped == 1
    rows = await store.query(Query("zone", (Agg(None, "occupancy"),)))
    assert [r["occupancy"] for r in rows] == [1, 2, 4]


async def test_unencodable_points_are_rejected_and_the_rest_written(store: SeriesStore) -> None:
    batch = [occupancy("a", 0, 1.0), occupancy("a", 1, math.nan), Point("zone", {}, {}, ns(T0))]
    with pytest.raises(StoreRejected, match="not a finite number") as caught:
        await store.write(batch)
    assert caught.value.dropped == 2
    assert len(await store.query(Query("zone", (Agg(None, "occupancy"),)))) == 1
    await store.write([])


async def test_grafana_only_queries_do_not_run(store: SeriesStore) -> None:
    with pytest.raises(ValueError, match="Grafana"):
        await store.query(
            Query(
                "zone", (Agg("mean", "occupancy"),), where=(TagEq("site", "$site", variable=True),)
            )
        )


# SQLite only.


async def test_sqlite_keeps_points_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "series.db"
    async with SqliteStore(path) as first:
        await first.write([occupancy("a", 0, 1)])
    async with open_store(f"sqlite://{path}") as again:  # type: ignore[attr-defined]
        assert isinstance(again, SqliteStore)
        rows = await again.query(Query("zone", (Agg(None, "occupancy"),)))
        assert [r["occupancy"] for r in rows] == [1]
        with pytest.raises(StoreRejected, match="type conflict"):
            await again.write([occupancy("a", 1, "x")])


async def test_sqlite_in_memory_and_raw_influxql() -> None:
    store = SqliteStore.from_url("sqlite:///:memory:")
    await store.write([occupancy("a", 0, 1)])
    assert len(await store.query(Query("zone", (Agg(None, "occupancy"),)))) == 1
    with pytest.raises(NotImplementedError, match="InfluxDB"):
        await store.raw_query("SELECT * FROM zone")
    await store.close()
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.write([occupancy("a", 0, 1)])


async def test_sqlite_unopenable_path_is_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    store = SqliteStore(blocker / "series.db")
    with pytest.raises(StoreUnavailable, match=str(blocker)):
        await store.ping()
    await store.close()


def test_sqlite_urls() -> None:
    assert SqliteStore.from_url("sqlite:///var/lib/x/series.db").path == "/var/lib/x/series.db"
    assert SqliteStore.from_url("sqlite:///:memory:").path == ":memory:"
    for bad in ("sqlite://relative.db", "sqlite:///", "postgres://x"):
        with pytest.raises(ValueError, match="sqlite"):
            SqliteStore.from_url(bad)


async def test_sqlite_keys_that_json_paths_cannot_spell(tmp_path: Path) -> None:
    async with SqliteStore(tmp_path / "s.db") as store:
        key = 'we"ird\\key\tx'
        await store.write(
            [
                Point("m", {key: "v"}, {key: 2, "ok": 1}, ns(T0)),
                Point("m", {key: "v"}, {key: 4}, ns(at(1))),
            ]
        )
        rows = await store.query(
            Query(
                "m",
                (Agg("mean", key, "m"), Agg("last", key, "l")),
                where=(TagEq(key, "v"),),
                group_by_tags=(key,),
            )
        )
        assert rows == [{"time": datetime(1970, 1, 1, tzinfo=UTC), "m": 3, "l": 4, key: "v"}]
