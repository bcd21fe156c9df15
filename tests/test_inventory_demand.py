"""Demand over a window: titles, classes, scores, purchase suggestions, restarts, points."""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stackpulse.kernel.callnumbers import Scheme, sort_key
from stackpulse.kernel.catalog import CatalogItem
from stackpulse.services.inventory.demand import (
    BUCKET,
    DEMAND_RANK,
    DEMAND_SIGNAL,
    KINDS,
    WEIGHTS,
    Demand,
    base_call_number,
    call_class,
    rank_points,
)
from stackpulse.services.inventory.model import DemandRow, InventorySettings, Signal, SignalKind

T0 = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
SETTINGS = InventorySettings()  # 30 days; 2 holds or 5 uses per copy suggest buying
SCHEMES: dict[str, Scheme] = {"main": "lc", "kids": "dewey"}


def _item(item: str, cn: str, title: str, collection: str = "main") -> CatalogItem:
    key = sort_key(cn, SCHEMES[collection])
    return CatalogItem(item, cn, title, collection, ("S1",), key)


CATALOG = {
    it.item: it
    for it in [
        # One title, three copies (copy and volume parts do not split a title).
        _item("py1", "QA76.73 .P98 L8 2013 c. 1", "Learning Python /"),
        _item("py2", "QA76.73 .P98 L8 2013 c. 2", "Learning  python"),
        _item("py3", "QA76.73 .P98 L8 2013 v. 2", "Learning Python"),
        # Another edition is another title.
        _item("py9", "QA76.73 .P98 L8 2025", "Learning Python"),
        _item("sicp", "QA76.6 .A255 1996", "Structure and interpretation of computer programs"),
        _item("calc", "QA303 .S8 2012", "Calculus"),
        _item("ulys", "PR6019 .O9 U4 1992", "Ulysses"),
        _item("dino1", "567.9 .B3", "Dinosaurs", "kids"),
        _item("dino2", "567.9 .B3 c.2", "Dinosaurs", "kids"),
        _item("frogs", "597.8 .F7", "Frogs", "kids"),
        _item("math", "510 .K5", "Counting", "kids"),
        # Same call number and title in another collection: another title.
        _item("calc-k", "515 .S8", "Calculus", "kids"),
    ]
}


def _demand(catalog: dict[str, CatalogItem] | None = None, **kw: Any) -> Demand:
    return Demand(catalog or CATALOG, InventorySettings(**kw), SCHEMES)


def _sig(kind: SignalKind, item: str, at: datetime = T0) -> Signal:
    return Signal(kind, item, at)


def _add(demand: Demand, kind: SignalKind, item: str, n: int, at: datetime = T0) -> None:
    for i in range(n):
        assert demand.add(_sig(kind, item, at + i * timedelta(minutes=1)))


def _by_title(rows: list[DemandRow]) -> dict[str, DemandRow]:
    return {r.title: r for r in rows}


# -- keys and classes ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("cn", "scheme", "cls"),
    [
        ("QA76.73 .P98 2013", "lc", "QA76"),
        ("QA76.9 .D3", "lc", "QA76"),
        ("QA303 .S8 2012", "lc", "QA303"),
        ("PR6019 .O9 U4 1992", "lc", "PR6019"),
        ("B1 .A2", "lc", "B1"),
        ("QA", "lc", "QA"),
        ("510.5 .S6 v. 2", "dewey", "500"),
        ("567.9 .B3", "dewey", "500"),
        ("005.133 .V36", "dewey", "000"),
        ("999", "dewey", "900"),
    ],
)
def test_call_number_classes(cn: str, scheme: Scheme, cls: str) -> None:
    assert call_class(cn, scheme) == cls


def test_volume_and_copy_parts_leave_the_call_number() -> None:
    assert base_call_number("QA76.73 .P98 2013 c. 2") == "QA76.73 .P98 2013"
    assert base_call_number("QA76.73  .P98 2013 v.2 c.1") == "QA76.73 .P98 2013"
    assert base_call_number("567.9 .B3 c.2") == "567.9 .B3"
    assert base_call_number("QA76.73 .P98 2013") == "QA76.73 .P98 2013"


def test_copies_are_counted_from_the_catalog() -> None:
    demand = _demand()
    for item in ("py1", "py2", "py3", "py9", "dino2", "calc", "calc-k"):
        assert demand.add(_sig("checkout", item))
    rows = demand.ranked(T0)
    copies = sorted((r.title, r.call_class, r.copies) for r in rows)
    assert copies == [
        ("Calculus", "500", 1),
        ("Calculus", "QA303", 1),
        ("Dinosaurs", "500", 2),
        ("Learning Python", "QA76", 1),  # the 2025 edition
        ("Learning Python /", "QA76", 3),  # as the first copy in shelf order spells it
    ]
    (three,) = [r for r in rows if r.copies == 3]
    assert three.call_number == "QA76.73 .P98 L8 2013 c. 1"
    assert three.signals == {"use": 0, "checkout": 3, "checkin": 0, "renew": 0, "hold": 0}


# -- scores and suggestions ---------------------------------------------------------


def test_score_is_weighted_signals_per_copy() -> None:
    assert dict(WEIGHTS) == {"hold": 3, "checkout": 2, "use": 1, "renew": 1, "checkin": 0}
    demand = _demand()
    for kind in KINDS:
        assert demand.add(_sig(kind, "dino1"))
    _add(demand, "use", "frogs", 2)
    rows = demand.ranked(T0 + timedelta(hours=1))
    assert [(r.title, r.score) for r in rows] == [("Dinosaurs", 3.5), ("Frogs", 2.0)]
    assert rows[0].signals == dict.fromkeys(KINDS, 1)


def test_ranking_breaks_ties_and_respects_the_limit() -> None:
    demand = _demand()
    _add(demand, "checkout", "calc", 1)  # 2 per copy, 1 signal
    _add(demand, "use", "ulys", 2)  # 2 per copy, 2 signals: first among equals
    _add(demand, "hold", "sicp", 1)  # 3 per copy
    assert [r.title for r in demand.ranked(T0 + BUCKET)] == [
        "Structure and interpretation of computer programs",
        "Ulysses",
        "Calculus",
    ]
    assert len(demand.ranked(T0 + BUCKET, limit=2)) == 2
    with pytest.raises(ValueError, match="limit"):
        demand.ranked(T0, limit=0)


def test_holds_per_copy_at_the_threshold_suggest_buying() -> None:
    demand = _demand()
    _add(demand, "hold", "py1", 5)  # 5 holds on 3 copies: 1.67 per copy, below 2
    row = _by_title(demand.ranked(T0 + BUCKET))["Learning Python /"]
    assert not row.suggest_purchase and row.reason is None
    _add(demand, "hold", "py3", 1, T0 + timedelta(minutes=30))  # 6 on 3: exactly 2
    row = _by_title(demand.ranked(T0 + BUCKET))["Learning Python /"]
    assert row.suggest_purchase
    assert row.reason == "6 holds on 3 copies (2 per copy, threshold 2)"


def test_in_library_use_suggests_buying_and_reasons_add_up() -> None:
    demand = _demand()
    _add(demand, "use", "dino1", 9)
    assert not demand.ranked(T0 + BUCKET)[0].suggest_purchase  # 4.5 uses per copy
    _add(demand, "use", "dino2", 1, T0 + timedelta(minutes=20))
    _add(demand, "hold", "dino2", 4, T0 + timedelta(minutes=21))
    (row,) = demand.ranked(T0 + BUCKET)
    assert row.suggest_purchase
    assert row.reason == (
        "4 holds on 2 copies (2 per copy, threshold 2); "
        "10 in-library uses on 2 copies (5 per copy, threshold 5)"
    )
    one = _demand(uses_per_copy=1.0)
    _add(one, "use", "calc", 1)
    assert one.ranked(T0)[0].reason == "1 in-library use on 1 copy (1 per copy, threshold 1)"


def test_unknown_items_and_kinds_count_nothing() -> None:
    demand = _demand()
    assert not demand.add(_sig("hold", "no-such-item"))
    assert demand.signal_point("main", _sig("hold", "no-such-item")) is None
    assert not demand.add(Signal("sneeze", "calc", T0))  # type: ignore[arg-type]
    assert demand.ranked(T0) == [] and demand.classes(T0) == []
    with pytest.raises(ValueError, match="time zone"):
        demand.add(_sig("hold", "calc", T0.replace(tzinfo=None)))


# -- classes ----------------------------------------------------------------------------


def test_classes_sum_titles_lc_and_dewey() -> None:
    demand = _demand()
    _add(demand, "hold", "py1", 2)  # QA76: 6
    _add(demand, "checkout", "sicp", 1)  # QA76: +2
    _add(demand, "use", "dino1", 3)  # 500: 3
    _add(demand, "checkout", "calc-k", 1)  # 500: +2
    _add(demand, "checkin", "frogs", 1)  # 500: +0, still a title with signals
    _add(demand, "renew", "ulys", 1)  # PR6019: 1
    got = {c.call_class: c for c in demand.classes(T0 + BUCKET)}
    assert [c.call_class for c in demand.classes(T0 + BUCKET)] == ["QA76", "500", "PR6019"]
    qa76, dewey, pr = got["QA76"], got["500"], got["PR6019"]
    assert (qa76.score, qa76.copies, qa76.titles, qa76.per_copy) == (8.0, 5, 2, 1.6)
    assert (dewey.score, dewey.copies, dewey.titles) == (5.0, 5, 3)
    assert dewey.signals == {"use": 3, "checkout": 1, "checkin": 1, "renew": 0, "hold": 0}
    assert (pr.score, pr.copies, pr.per_copy) == (1.0, 1, 1.0)


def test_classes_without_a_shelf_key_come_from_the_scheme_or_a_guess() -> None:
    catalog = {
        "a": CatalogItem("a", "598.2 .P4", "Birds", "kids", ()),  # Dewey by the layout
        "b": CatalogItem("b", "QA76.9 .D3", "Databases", "annex", ()),  # guessed LC
        "c": CatalogItem("c", "742 .K5", "Drawing", "annex", ()),  # guessed Dewey
        "d": CatalogItem("d", "not a call number", "Junk", "main", ()),
    }
    demand = _demand(catalog)
    for item in catalog:
        assert demand.add(_sig("use", item))
    assert sorted(c.call_class for c in demand.classes(T0)) == ["500", "700", "?", "QA76"]
    full = _demand()
    for it in CATALOG.values():  # the shelf-key shortcut agrees with parsing
        point = full.signal_point("main", _sig("use", it.item))
        assert point is not None
        assert point.tags["call_class"] == call_class(it.call_number, SCHEMES[it.collection])


# -- the window -----------------------------------------------------------------------


def test_signals_leave_the_window_by_the_hour() -> None:
    demand = _demand(demand_window=timedelta(days=30))
    _add(demand, "hold", "calc", 1)  # in the 09:00 bucket
    assert demand.ranked(T0 + timedelta(days=30))[0].signals["hold"] == 1  # 09:30: still in
    assert demand.ranked(T0 + timedelta(days=30, minutes=29))  # 09:59: still in the bucket
    assert demand.ranked(T0 + timedelta(days=30, minutes=31)) == []  # 10:01: gone
    assert not demand.add(_sig("hold", "calc", T0))  # too late to count
    assert demand.checkpoint()["buckets"] == []


def test_ranked_at_an_earlier_now_leaves_out_later_signals() -> None:
    demand = _demand()
    _add(demand, "hold", "calc", 1, T0)
    _add(demand, "hold", "calc", 1, T0 + timedelta(hours=5))
    assert demand.ranked(T0 + BUCKET)[0].signals["hold"] == 1
    assert demand.ranked(T0 + timedelta(hours=5))[0].signals["hold"] == 2


_ITEMS = sorted(CATALOG)
_signals = st.lists(
    st.builds(
        Signal,
        st.sampled_from(KINDS),
        st.sampled_from([*_ITEMS, "unknown"]),
        st.integers(0, 60 * 24 * 12).map(lambda m: T0 + timedelta(minutes=m)),
    ),
    max_size=60,
)
_WINDOW = timedelta(days=5)


@settings(max_examples=150, deadline=None)
@given(_signals, st.randoms(use_true_random=False), st.integers(0, 60 * 24 * 8))
def test_add_order_does_not_change_the_result(
    signals: list[Signal], rnd: random.Random, extra: int
) -> None:
    now = max([T0, *(s.at for s in signals)]) + timedelta(minutes=extra)
    shuffled = list(signals)
    rnd.shuffle(shuffled)
    a, b = _demand(demand_window=_WINDOW), _demand(demand_window=_WINDOW)
    for s in signals:
        a.add(s)
    for s in shuffled:
        b.add(s)
    assert a.ranked(now, limit=100) == b.ranked(now, limit=100)
    assert a.classes(now) == b.classes(now)
    assert a.checkpoint() == b.checkpoint()


@settings(max_examples=150, deadline=None)
@given(_signals, st.integers(0, 60 * 24 * 8))
def test_window_holds_exactly_the_hours_it_reaches(signals: list[Signal], extra: int) -> None:
    now = max([T0, *(s.at for s in signals)]) + timedelta(minutes=extra)
    horizon_hour = now.replace(minute=0, second=0, microsecond=0)
    oldest = horizon_hour - _WINDOW
    demand = _demand(demand_window=_WINDOW)
    for s in signals:
        demand.add(s)
    rows = demand.ranked(now, limit=100)
    want = Counter((s.item, s.kind) for s in signals if s.item in CATALOG and s.at >= oldest)
    assert sum(sum(r.signals.values()) for r in rows) == sum(want.values())
    assert sum(r.signals["hold"] for r in rows) == sum(
        n for (_, kind), n in want.items() if kind == "hold"
    )
    buckets = demand.checkpoint()["buckets"]
    assert len(buckets) <= _WINDOW // BUCKET + 1  # bounded memory
    assert all(datetime.fromisoformat(b["start"]) >= oldest for b in buckets)


# -- restarts ---------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(_signals, _signals)
def test_checkpoint_round_trip_then_same_future(before: list[Signal], after: list[Signal]) -> None:
    a = _demand(demand_window=_WINDOW)
    for s in before:
        a.add(s)
    b = _demand(demand_window=_WINDOW)
    b.restore(json.loads(json.dumps(a.checkpoint())))
    assert b.checkpoint() == a.checkpoint()
    for s in after:
        assert a.add(s) == b.add(s)
    now = max([T0, *(s.at for s in before + after)])
    assert a.ranked(now, limit=100) == b.ranked(now, limit=100)
    assert a.classes(now) == b.classes(now)


def test_restore_into_a_new_catalog_and_a_shorter_window() -> None:
    a = _demand()
    _add(a, "hold", "calc", 2, T0)
    _add(a, "hold", "ulys", 1, T0 + timedelta(days=10))
    smaller = {k: v for k, v in CATALOG.items() if k != "ulys"}
    b = _demand(smaller)
    b.restore(a.checkpoint())
    assert [r.title for r in b.ranked(T0 + timedelta(days=10))] == ["Calculus"]
    short = _demand(demand_window=timedelta(days=2))
    short.restore(a.checkpoint())
    assert [r.title for r in short.ranked(T0 + timedelta(days=10))] == ["Ulysses"]


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"version": 99}, "version 99"),
        ({"bucket_seconds": 60}, "bucket_seconds"),
        ({"kinds": ["use", "cough"]}, "cough"),
        ({"buckets": [{"start": "yesterday", "titles": []}]}, "yesterday"),
        ({"buckets": [{"start": T0.isoformat(), "titles": [["a", "b", "c", [1]]]}]}, "kinds"),
        ({"horizon": 5}, "horizon|fromisoformat|str"),
        ({"horizon": "2026-11-02T09:00:00"}, "time zone"),
    ],
)
def test_a_bad_checkpoint_is_refused_with_a_reason(change: dict[str, object], words: str) -> None:
    data = _demand().checkpoint() | change
    demand = _demand()
    _add(demand, "hold", "calc", 1)
    with pytest.raises(ValueError, match=f"demand checkpoint unusable: .*({words})"):
        demand.restore(data)
    assert demand.ranked(T0)[0].title == "Calculus"  # the state before is kept


# -- points -----------------------------------------------------------------------------


def test_signal_points_keep_ids_and_titles_out_of_the_tags() -> None:
    demand = _demand()
    at = T0 + timedelta(milliseconds=250)
    p = demand.signal_point("main", _sig("use", "dino2", at))
    assert p is not None
    assert p.measurement == DEMAND_SIGNAL
    assert dict(p.tags) == {"site": "main", "kind": "use", "call_class": "500"}
    assert dict(p.fields) == {
        "item": "dino2",
        "title": "Dinosaurs",
        "call_number": "567.9 .B3 c.2",
        "collection": "kids",
        "count": 1,
        "weight": 1,
    }
    assert not set(p.tags) & set(p.fields)
    second = int(T0.timestamp()) * 1_000_000_000
    assert second <= p.ts_ns < second + 1_000_000_000
    again = demand.signal_point("main", _sig("use", "dino2", at))
    other = demand.signal_point("main", _sig("use", "dino1", at))
    assert again == p  # a replay overwrites itself
    assert other is not None and other.ts_ns != p.ts_ns  # one sweep, two points


def test_record_counts_and_returns_the_points_to_store() -> None:
    demand = _demand()
    signals = [_sig("hold", "calc"), _sig("hold", "nope"), _sig("use", "calc", T0 + BUCKET)]
    points = demand.record("main", signals)
    assert [p.tags["kind"] for p in points] == ["hold", "use"]
    assert demand.ranked(T0 + BUCKET)[0].signals["hold"] == 1
    old = demand.record("main", [_sig("checkout", "calc", T0 - timedelta(days=40))])
    assert len(old) == 1 and demand.ranked(T0 + BUCKET)[0].signals["checkout"] == 0


def test_rank_points_fill_every_slot() -> None:
    demand = _demand()
    _add(demand, "hold", "calc", 2)
    _add(demand, "use", "dino1", 1)
    rows = demand.ranked(T0 + BUCKET)
    points = rank_points("main", rows, T0 + BUCKET, slots=3)
    assert [p.tags for p in points] == [{"site": "main", "rank": f"0{i}"} for i in (1, 2, 3)]
    assert {p.measurement for p in points} == {DEMAND_RANK}
    assert len({p.ts_ns for p in points}) == 1
    first, _, empty = (dict(p.fields) for p in points)
    assert first["title"] == "Calculus" and first["score"] == 6.0 and first["hold"] == 2
    assert first["suggest"] is True and str(first["reason"]).startswith("2 holds on 1 copy")
    assert empty["copies"] == 0 and empty["title"] == ""
    assert set(first) == set(empty)
    with pytest.raises(ValueError, match="fit"):
        rank_points("main", rows, T0, slots=1)
