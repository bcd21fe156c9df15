"""Call numbers: parsing, shelf order, and the protocol's shelf-label rule."""

from __future__ import annotations

import pycallnumber
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pycallnumber.units import LC

from stackpulse.kernel.callnumbers import (
    CallNumber,
    CallNumberError,
    CallNumberRange,
    RangeIndex,
    parse,
    section_holds,
    sort_key,
    successor_key,
)

# --- the protocol's examples ----------------------------------------------------------


@pytest.mark.parametrize(
    ("cn", "held"),
    [
        ("QA76.75", True),
        ("QA76.75 .K3 2001", True),
        ("QA76.75.K3", True),
        ("QA76.75 .Z99 2025 v.3", True),
        ("QA76.76", False),
        ("QA76.751", False),
        ("QA76.8", False),
        ("QA77", False),
        ("QB1 .A1", False),
    ],
)
def test_a_section_ending_at_qa76_75_holds_what_begins_with_it(cn: str, held: bool) -> None:
    assert section_holds("QA1", "QA76.75", cn) is held


@pytest.mark.parametrize(
    ("cn", "held"),
    [
        ("QA76.73 .P98", True),  # `first` itself
        ("QA76.73 .P98 2005", True),
        ("QA76.73 .P985", True),
        ("QA76.73 .P99", True),
        ("QA76.8 .K3", True),
        ("QA76.9 .D3", True),  # `last` itself
        ("QA76.9 .D3 A5 2001", True),  # begins with `last` part by part
        ("QA76.9 .D3 2001 c.2", True),
        ("QA76.73 .P97", False),
        ("QA76.73 .P9", False),  # .P9 files before .P98
        ("QA76.9 .D31", False),  # .D31 is not .D3 part by part
        ("QA76.9 .D4", False),
        ("QA76.91 .A1", False),
    ],
)
def test_the_protocol_example_section(cn: str, held: bool) -> None:
    assert section_holds("QA76.73 .P98", "QA76.9 .D3", cn) is held


# --- shelf order -----------------------------------------------------------------------

SHELF_ORDER = [
    "A1 .B2",
    "B",
    "B1 .A1",
    "BF1 .A1",
    "Q",
    "Q1 .A1",
    "Q390 .A1",
    "QA",
    "QA1 .A1",
    "QA76 .K3",
    "QA76.5 .A1",
    "QA76.7 .A1",
    "QA76.73 .P9",
    "QA76.73 .P98",
    "QA76.73 .P98 1999",
    "QA76.73 .P98 2005",
    "QA76.73 .P98 2005 v.2",
    "QA76.73 .P98 2005 v.10",
    "QA76.73 .P98 S65",  # numbers (a date) file before letters (a second cutter)
    "QA76.73 .P985",
    "QA76.73 .P99",
    "QA76.73 .Q1",
    "QA76.8 .A1",
    "QA77 .A1",
    "QA300 .A1",
    "QB",
    "QB1 .A1",
    "Z",
    "ZA3038 .A1",
]


def test_lc_shelf_order_classes_cutters_as_decimals_years_and_volumes() -> None:
    parsed = [parse(s) for s in SHELF_ORDER]
    assert sorted(parsed) == parsed
    assert [sort_key(s) for s in SHELF_ORDER] == sorted(sort_key(s) for s in SHELF_ORDER)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("QA76.70 .K30", "QA76.7 .K3"),  # decimals: trailing zeros change nothing
        ("qa 76.73 .p98", "QA76.73.P98"),  # case and spacing
        ("QA76.73 .P98 .S65", "QA76.73 .P98 S65"),  # period before a second cutter
        ("QA76.73   .P98\t2005", "QA76.73 .P98 2005"),
    ],
)
def test_equivalent_spellings_are_one_call_number(a: str, b: str) -> None:
    assert parse(a) == parse(b)
    assert hash(parse(a)) == hash(parse(b))
    assert parse(a).key == parse(b).key


def test_dewey_order_and_the_same_shelf_label_rule() -> None:
    order = ["005 A1", "005.1 P98", "005.133 P98", "005.133 P985", "005.2 B3", "813.54 K56b 1990"]
    parsed = [parse(s, "dewey") for s in order]
    assert sorted(parsed) == parsed
    assert section_holds("005", "005.133", "005.133 P98 2001", scheme="dewey")
    assert not section_holds("005", "005.133", "005.1331 A1", scheme="dewey")
    assert not section_holds("005", "005.133", "005.134 A1", scheme="dewey")


def test_schemes_do_not_mix() -> None:
    with pytest.raises(TypeError, match="lc against dewey"):
        _ = parse("QA76 .K3") < parse("005 K3", "dewey")
    with pytest.raises(TypeError, match="one scheme"):
        section_holds(parse("QA1"), parse("QA9"), parse("005 K3", "dewey"))


@pytest.mark.parametrize(
    ("text", "scheme", "expected"),
    [
        ("", "lc", "empty call number"),
        ("   ", "lc", "empty call number"),
        ("123", "lc", "'123' is not an LC call number"),
        ("QA76.75 .K3 ~~ !!", "lc", "is not an LC call number (expected e.g. 'QA76.73 .P98 2005')"),
        ("QA", "dewey", "'QA' is not a Dewey call number"),
        ("QA76", "udc", "unknown call number scheme 'udc'"),
    ],
)
def test_unparseable_call_numbers_say_why(text: str, scheme: str, expected: str) -> None:
    with pytest.raises(CallNumberError) as err:
        parse(text, scheme)  # type: ignore[arg-type]
    assert expected in str(err.value)


def test_forms_outside_the_fast_path_still_parse_through_pycallnumber() -> None:
    cn = parse("QA76.75 .K3 2001 suppl.")
    assert cn.text == "QA76.75 .K3 2001 suppl."
    assert parse("QA76.75 .K3 2001") < cn < parse("QA76.75 .K3 2002")
    assert section_holds("QA1", "QA76.75 .K3", cn)


def test_cached_and_uncached_parses_agree() -> None:
    assert parse("PS3545 .I345 Z5 1990", cached=False) == parse("PS3545 .I345 Z5 1990")


# --- successor labels, gaps and overlaps ---------------------------------------------


@pytest.mark.parametrize(
    ("label", "following"),
    [
        ("QA76.75", "QA76.76"),
        ("QA76.99", "QA77"),
        ("QA75", "QA76"),
        ("QA76.9 .D3", "QA76.9 .D4"),
        ("QA76.9 .D99", "QA76.9 .E"),
        ("QA76.9 .D3 2001", "QA76.9 .D3 2002"),
        ("BK", "BL"),
        ("AZ", "B"),
        ("B", "BA"),
        ("PZ", "Q"),
        ("QA9999", "QB"),
    ],
)
def test_successor_is_the_next_label_at_the_written_precision(label: str, following: str) -> None:
    nxt = successor_key(parse(label))
    expected = parse(following).key if following != "QA76.9 .E" else "qa!0076.9!e"
    assert nxt == expected


def ranges(*spec: tuple[str, str, str]) -> RangeIndex:
    return RangeIndex(CallNumberRange(i, parse(f), parse(la)) for i, f, la in spec)


def test_gaps_and_overlaps_between_sections() -> None:
    tiled = ranges(("a", "A", "QA76.75"), ("b", "QA76.76", "QB"), ("c", "QC", "ZZ"))
    assert tiled.overlaps() == [] and tiled.gaps() == []
    gap = ranges(("a", "A", "QA76.75"), ("b", "QA76.8", "ZZ"))
    assert gap.gaps() == [("a", "b")] and gap.overlaps() == []
    over = ranges(("a", "A", "QA76.75"), ("b", "QA76.75 .K3", "ZZ"))
    assert over.overlaps() == [("a", "b")] and over.gaps() == []
    assert over.holders(parse("QA76.75 .K4")) == ("a", "b")
    assert over.holders(parse("QA76.7 .A1")) == ("a",)


def test_a_section_whose_first_sorts_after_its_last_is_empty() -> None:
    assert CallNumberRange("x", parse("QB1"), parse("QA9")).empty
    # first past `last` itself, yet inside what `last` holds: not empty
    assert not CallNumberRange("x", parse("QA76.75 .K3"), parse("QA76.75")).empty


# --- properties ------------------------------------------------------------------------

letters = st.text("ABCDEFGHJKLMNPQRSTUVZ", min_size=1, max_size=3)
# Digits not ending in 0: pycallnumber keeps trailing zeros, which we normalize away.
fraction = st.integers(1, 9999).map(str).filter(lambda s: not s.endswith("0"))
class_number = st.builds(
    lambda i, d: f"{i}.{d}" if d else str(i),
    st.integers(1, 9999),
    st.one_of(st.none(), fraction),
)
cutter = st.builds(lambda a, n: a + n, st.sampled_from("ABCDEFGHKLMPRSTZ"), fraction)


@st.composite
def lc_parts(draw: st.DrawFn) -> list[str]:
    """An LC call number as its written parts: letters, number, cutters, year, volume."""
    parts = [draw(letters), draw(class_number), "." + draw(cutter)]
    parts += [draw(cutter) for _ in range(draw(st.integers(0, 2)))]
    if draw(st.booleans()):
        parts.append(str(draw(st.integers(1900, 2030))))
    if draw(st.booleans()):
        parts.append(f"v.{draw(st.integers(1, 40))}")
    return parts


def join(parts: list[str]) -> str:
    return parts[0] + parts[1] + "".join(" " + p for p in parts[2:])


lc_call_numbers = lc_parts().map(join)


@settings(max_examples=150, deadline=None)
@given(lc_call_numbers, lc_call_numbers)
def test_order_agrees_with_pycallnumber(a: str, b: str) -> None:
    ours = (parse(a).key > parse(b).key) - (parse(a).key < parse(b).key)
    ka = pycallnumber.callnumber(a, unittypes=[LC]).for_sort()
    kb = pycallnumber.callnumber(b, unittypes=[LC]).for_sort()
    assert ours == (ka > kb) - (ka < kb)


@settings(max_examples=300)
@given(lc_parts(), st.data())
def test_last_holds_every_call_number_that_begins_with_it(
    parts: list[str], data: st.DataObject
) -> None:
    cut = data.draw(st.integers(1, len(parts)))
    label = parts[0] if cut == 1 else join(parts[:cut])
    cn = parse(join(parts))
    assert cn.begins_with(parse(label))
    assert section_holds("A", label, cn)


@settings(max_examples=300)
@given(letters, st.integers(1, 9999), fraction, st.sampled_from("123456789"), cutter)
def test_a_longer_class_number_is_not_held_by_a_shorter_label(
    cls: str, integer: int, decimals: str, extra: str, cut: str
) -> None:
    assume(len(decimals) < 4)
    label = f"{cls}{integer}.{decimals}"
    assert not section_holds("A", label, f"{label}{extra} .{cut}")


@settings(max_examples=200)
@given(lc_call_numbers, lc_call_numbers, lc_call_numbers)
def test_holds_is_first_at_most_cn_and_cn_at_most_last_or_beginning_with_it(
    a: str, b: str, c: str
) -> None:
    first, last, cn = [*sorted([parse(a), parse(b)]), parse(c)]
    expected = first <= cn and (cn <= last or cn.begins_with(last))
    assert section_holds(first, last, cn) is expected


@settings(max_examples=200)
@given(lc_call_numbers, lc_call_numbers, lc_call_numbers)
def test_order_is_total_and_transitive(a: str, b: str, c: str) -> None:
    x, y, z = parse(a), parse(b), parse(c)
    assert (x < y) + (x == y) + (x > y) == 1
    if x <= y and y <= z:
        assert x <= z


@settings(max_examples=100)
@given(
    st.lists(st.tuples(lc_call_numbers, lc_call_numbers), min_size=1, max_size=8),
    st.lists(lc_call_numbers, min_size=1, max_size=10),
)
def test_index_lookups_match_a_brute_force_scan(
    bounds: list[tuple[str, str]], probes: list[str]
) -> None:
    rs = [
        CallNumberRange(f"s{i}", *sorted([parse(a), parse(b)])) for i, (a, b) in enumerate(bounds)
    ]
    index = RangeIndex(rs)
    for probe in probes:
        cn = parse(probe)
        brute = {r.ident for r in rs if section_holds(r.first, r.last, cn)}
        assert set(index.holders(cn)) == brute
    overlapping = {
        frozenset((r.ident, s.ident))
        for i, r in enumerate(rs)
        for s in rs[i + 1 :]
        if r.first.key < s.last.end_key and s.first.key < r.last.end_key
    }
    assert {frozenset(p) for p in index.overlaps()} == overlapping


def test_call_numbers_are_values() -> None:
    cn = parse("QA76.73 .P98 2005")
    assert isinstance(cn, CallNumber)
    assert str(cn) == "QA76.73 .P98 2005"
    assert cn.kinds == ("letters", "class", "cutter", "edition")
    with pytest.raises(AttributeError):
        cn.text = "x"  # type: ignore[misc]
