"""Line protocol encoding: exact lines, refusals, and nasty names round-tripping real stores."""

from __future__ import annotations

import asyncio
import math
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from stackpulse.kernel.store import (
    Agg,
    FieldValue,
    InfluxStore,
    Point,
    Query,
    SeriesStore,
    SqliteStore,
    TagEq,
    encode_point,
    encode_points,
)
from stackpulse.kernel.store.influxql import ns_to_datetime, quote_ident, quote_string


def test_encodes_types_sorted_tags_and_timestamp() -> None:
    p = Point(
        "zone",
        {"zone": "f1", "site": "main", "empty": ""},
        {"occ": 12, "ratio": 0.5, "ok": True, "off": False, "note": "hi", "big": 1e16},
        1_700_000_000_000_000_001,
    )
    assert encode_point(p) == (
        'zone,site=main,zone=f1 occ=12i,ratio=0.5,ok=true,off=false,note="hi",big=1e+16 '
        "1700000000000000001"
    )


def test_escapes_each_part_by_its_own_rules() -> None:
    p = Point("a b,c=d", {"k ,=": "v ,=\\x"}, {"f ,=": 'say "hi" \\ bye'}, 5)
    assert encode_point(p) == r'a\ b\,c=d,k\ \,\==v\ \,\=\x f\ \,\=="say \"hi\" \\ bye" 5'
    assert encode_points([p, p]).count("\n") == 1


@pytest.mark.parametrize(
    ("point", "why"),
    [
        (Point("m", {}, {"f": math.nan}, 1), "finite"),
        (Point("m", {}, {"f": math.inf}, 1), "finite"),
        (Point("m", {}, {}, 1), "no fields"),
        (Point("", {}, {"f": 1}, 1), "empty"),
        (Point("m", {"": "v"}, {"f": 1}, 1), "empty"),
        (Point("m", {}, {"": 1}, 1), "empty"),
        (Point("m", {"t": "a\nb"}, {"f": 1}, 1), "line break"),
        (Point("m", {"t": "end\\"}, {"f": 1}, 1), "backslash"),
        (Point("m\\ x", {}, {"f": 1}, 1), "backslash"),
        (Point("#m", {}, {"f": 1}, 1), "comment"),
        (Point("m", {}, {"time": 1}, 1), "reserved"),
        (Point("m", {}, {"f": 2**63}, 1), "64 bits"),
        (Point("m", {}, {"f": None}, 1), "unsupported"),  # type: ignore[dict-item]
        (Point("m", {}, {"f": 1}, 2**63), "timestamp"),
    ],
)
def test_refuses_what_cannot_round_trip(point: Point, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        encode_point(point)


# Names made of the characters that need escaping, plus ordinary and non-ASCII ones.
_nasty = st.text(
    alphabet=st.sampled_from(list(" ,=\"'\\=#\t\x00\x7f/$*{}()[]^.|aZ9_é中😀")),
    min_size=1,
    max_size=12,
)


def _encodable(p: Point) -> bool:
    try:
        encode_point(p)
    except ValueError:
        return False
    return True


@st.composite
def nasty_points(draw: st.DrawFn) -> Point:
    tag_keys = draw(st.lists(_nasty, max_size=3, unique=True))
    field_keys = draw(
        st.lists(_nasty.filter(lambda k: k not in tag_keys), min_size=1, max_size=3, unique=True)
    )
    values = st.one_of(
        st.text(max_size=20),
        st.integers(min_value=-(2**63), max_value=2**63 - 1),
        st.floats(allow_nan=False, allow_infinity=False),
        st.booleans(),
    )
    point = Point(
        draw(_nasty),
        {k: draw(_nasty) for k in tag_keys},
        {k: draw(values) for k in field_keys},
        draw(st.integers(min_value=0, max_value=2**62)),
    )
    assume(_encodable(point))
    return point


def _alone(point: Point) -> Point:
    """The point in a measurement of its own, so examples sharing a database cannot clash."""
    measurement = f"m{uuid.uuid4().hex[:12]}_{point.measurement}"
    return Point(measurement, point.tags, point.fields, point.ts_ns)


async def _round_trip(store: SeriesStore, point: Point) -> None:
    await store.write([point])
    where = tuple(TagEq(k, v) for k, v in point.tags.items())
    selected = tuple(Agg(None, k, f"c{i}") for i, k in enumerate(point.fields))
    rows = await store.query(Query(point.measurement, selected, where=where))
    assert len(rows) == 1
    assert rows[0]["time"] == ns_to_datetime(point.ts_ns)
    got = [rows[0][f"c{i}"] for i in range(len(point.fields))]
    assert [_same(g, w) for g, w in zip(got, point.fields.values(), strict=True)] == [True] * len(
        got
    )


def _same(got: FieldValue, want: FieldValue) -> bool:
    """Equal and of the same type, except that InfluxDB's JSON writes 5.0 as 5."""
    if isinstance(want, float) and isinstance(got, int) and not isinstance(got, bool):
        return float(got) == want
    return type(got) is type(want) and got == want


PROPERTY = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.mark.integration
@PROPERTY
@given(point=nasty_points())
def test_nasty_points_round_trip_through_influxdb(influx_db: str, point: Point) -> None:
    point = _alone(point)

    async def run() -> None:
        async with InfluxStore.from_url(influx_db) as store:
            await _round_trip(store, point)
            # SELECT * names every tag and field column exactly as written.
            (row,) = await store.raw_query(f"SELECT * FROM {quote_ident(point.measurement)}")
            assert {k: row[k] for k in point.tags} == dict(point.tags)
            assert all(_same(row[k], v) for k, v in point.fields.items())
            for key, value in point.tags.items():
                literal = quote_string(value)
                found = await store.raw_query(
                    f"SELECT count(*) FROM {quote_ident(point.measurement)} "
                    f"WHERE {quote_ident(key)} = {literal}"
                )
                assert len(found) == 1, (key, literal)

    asyncio.run(run())


@PROPERTY
@given(point=nasty_points())
def test_nasty_points_round_trip_through_sqlite(tmp_path: Path, point: Point) -> None:
    point = _alone(point)

    async def run() -> None:
        async with SqliteStore(tmp_path / "nasty.db") as store:
            await _round_trip(store, point)

    asyncio.run(run())
