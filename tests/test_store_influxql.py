"""The typed InfluxQL builder: exact text, Grafana's form, refusals, and a real parser's verdict."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from stackpulse.kernel.store import Agg, InfluxStore, Query, TagEq, render
from stackpulse.kernel.store.influxql import duration_ns, quote_ident, quote_string

START = datetime(2026, 11, 24, 10, tzinfo=UTC)

OCCUPANCY = Query(
    "zone",
    (Agg("mean", "occupancy", "occupancy"), Agg("max", "occupancy", "peak")),
    where=(TagEq("site", "main"),),
    start=START,
    end=START + timedelta(hours=1),
    group_by_time=timedelta(minutes=5),
    group_by_tags=("zone",),
    fill="null",
    order_desc=True,
    limit=10,
)


def test_renders_every_clause() -> None:
    assert render(OCCUPANCY) == (
        'SELECT mean("occupancy") AS "occupancy", max("occupancy") AS "peak" FROM "zone" '
        "WHERE \"site\" = 'main' AND time >= '2026-11-24T10:00:00.000000Z' "
        "AND time < '2026-11-24T11:00:00.000000Z' "
        'GROUP BY time(5m), "zone" fill(null) ORDER BY time DESC LIMIT 10'
    )


def test_renders_for_grafana() -> None:
    q = Query(
        "zone",
        (Agg("mean", "occupancy"),),
        where=(TagEq("site", "$site", variable=True), TagEq("kind", "it's")),
        start=START,
        group_by_time="auto",
        fill="none",
    )
    assert render(q, grafana=True) == (
        'SELECT mean("occupancy") FROM "zone" WHERE "site" =~ /^$site$/ AND "kind" = \'it\\\'s\' '
        "AND $timeFilter GROUP BY time($__interval) fill(none)"
    )
    with pytest.raises(ValueError, match="grafana=True"):
        render(q)


def test_quoting() -> None:
    assert quote_ident('we"ird\\name') == '"we\\"ird\\\\name"'
    assert quote_string("it's a \\ path") == "'it\\'s a \\\\ path'"
    with pytest.raises(ValueError, match="NUL"):
        quote_string("a\x00")


def test_durations() -> None:
    assert duration_ns("1h30m") == 5400 * 10**9
    assert duration_ns(timedelta(milliseconds=1500)) == 1_500_000_000
    assert "time(90s)" in render(
        Query("m", (Agg("count", "f"),), group_by_time=timedelta(seconds=90))
    )
    assert "time(1w)" in render(Query("m", (Agg("count", "f"),), group_by_time="7d"))


@pytest.mark.parametrize(
    ("build", "why"),
    [
        (lambda: Query("m", ()), "at least one field"),
        (lambda: Query("m", (Agg("median", "f"),)), "not one of"),
        (lambda: Query("m", (Agg(None, "f"), Agg("max", "g"))), "not both"),
        (lambda: Query("m", (Agg(None, "f"),), group_by_time="5m"), "need aggregates"),
        (lambda: Query("m", (Agg("max", "f"),), fill="null"), "needs GROUP BY"),
        (lambda: Query("m", (Agg("max", "f"),), group_by_time="5x"), "not an InfluxQL duration"),
        (lambda: Query("m", (Agg("max", "f"),), group_by_time="0s"), "positive"),
        (lambda: Query("m", (Agg("max", "f"),), group_by_time="5m", fill="zero"), "fill"),
        (lambda: Query("m", (Agg("max", "f"), Agg("max", "g"))), "aliases"),
        (lambda: Query("m", (Agg("max", "f", "zone"),), group_by_tags=("zone",)), "not unique"),
        (lambda: Query("m", (Agg("max", "f"),), start=datetime(2026, 1, 1)), "time zone"),
        (lambda: Query("m", (Agg("max", "f"),), start=START, end=START), "before"),
        (lambda: Query("m", (Agg("max", "f"),), limit=0), "positive"),
        (lambda: TagEq("site", "main", variable=True), "Grafana variable"),
    ],
)
def test_refuses_what_influxdb_would(build: object, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        build()  # type: ignore[operator]


def test_other_time_zones_render_in_utc() -> None:
    q = Query(
        "m",
        (Agg("max", "f"),),
        start=datetime(2026, 11, 24, 18, tzinfo=timezone(timedelta(hours=8))),
    )
    assert "time >= '2026-11-24T10:00:00.000000Z'" in render(q)


@pytest.mark.integration
async def test_every_form_parses_on_influxdb(influx_db: str) -> None:
    forms = [
        OCCUPANCY,
        Query("m", (Agg(None, "a b"), Agg(None, 'q"uote')), where=(TagEq("t,=", "v'\\x"),)),
        Query(
            "m",
            (Agg("count", "f"), Agg("sum", "g"), Agg("first", "h", "h")),
            group_by_time="1h30m",
            fill="-2.5",
        ),
        Query("m", (Agg("last", "f"),), fill="linear", group_by_time="1d", start=START),
        Query(
            "m",
            (Agg("min", "f"),),
            fill="previous",
            group_by_time="10s",
            start=START,
            end=START + timedelta(minutes=1),
        ),
    ]
    async with InfluxStore.from_url(influx_db) as store:
        for q in forms:
            assert await store.raw_query(render(q)) == [], render(q)
