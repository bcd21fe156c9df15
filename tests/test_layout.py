"""Layout files: the sample library, the helpers, and a clear error for each kind of mistake."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest
from pydantic import ValidationError

from stackpulse.kernel.callnumbers import parse, successor_key
from stackpulse.kernel.layout import OUTSIDE, Layout, LayoutError, load_layout

SAMPLE = Path(__file__).resolve().parent.parent / "examples" / "main" / "layout.yaml"

BASE = """\
site: test
name: Test Library
timezone: Europe/London
hours: {mon-fri: "08:00-22:00", sat: "10:00-18:00", sun: closed}
zones:
  - {id: lobby, name: Lobby, floor: 1, capacity: 100}
  - {id: reading, name: Reading Room, floor: 2, capacity: 50}
  - {id: stacks, name: Stacks, floor: 3, capacity: 30}
gates:
  - {device: gate-front, outer: outside, inner: lobby}
  - {device: gate-reading, outer: lobby, inner: reading}
seats:
  - {id: r-001, device: seat-0001, zone: reading, features: [power]}
  - {id: r-002, device: seat-0002, zone: reading, x: 1, y: 0}
shelves:
  - device: shelf-ctrl-1
    zone: stacks
    sections:
      - {id: S-01, first: "A", last: "PZ"}
      - {id: S-02, first: "Q", last: "QA76.75"}
      - {id: S-03, first: "QA76.76", last: "ZZ"}
circulation:
  - {device: circ-desk, zone: lobby}
catalog: catalog.csv
"""


def write(tmp_path: Path, text: str, name: str = "layout.yaml") -> Path:
    (tmp_path / "catalog.csv").write_text("item,call_number,title,collection\n")
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def line_of(text: str, marker: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if marker in line)


def test_the_base_layout_loads(tmp_path: Path) -> None:
    layout = load_layout(write(tmp_path, BASE))
    assert layout.site == "test"
    assert layout.catalog == str(tmp_path / "catalog.csv")
    assert layout.coverage("main") == ([], [])


# Each case: text to replace, its replacement, a marker on the line the error must name,
# and what the message must say (the entry and the reason).
CASES = [
    ("name: Test Library", "name: Test Library\ncolour: blue", "colour: blue",
     ["field colour", "unknown field 'colour'"]),
    ("zone: reading, features", "zone: reading, colour: red, features", "r-001",
     ["seats[0] (id r-001), field colour", "unknown field 'colour'"]),
    ("floor: 2", "floor: second", "Reading Room",
     ["zones[1] (id reading), field floor", "valid integer", "'second'"]),
    ("capacity: 30}", "capacity: -3}", "Stacks",
     ["zones[2] (id stacks), field capacity", "greater than 0"]),
    ("outer: outside, inner: lobby}", "outer: outside}", "gate-front",
     ["gates[0] (device gate-front), field inner", "missing field 'inner'"]),
    ("seat-0001, zone: reading", "seat-0001, zone: attic", "r-001",
     ["seats[0] (id r-001), field zone", "unknown zone 'attic'", "lobby, reading, stacks"]),
    ("inner: reading}", "inner: reeding}", "gate-reading",
     ["gates[1] (device gate-reading), field inner", "unknown zone 'reeding'"]),
    ("    zone: stacks", "    zone: basement", "zone: basement",
     ["shelves[0] (device shelf-ctrl-1), field zone", "unknown zone 'basement'"]),
    ("{device: circ-desk, zone: lobby}", "{device: circ-desk, zone: foyer}", "circ-desk",
     ["circulation[0] (device circ-desk), field zone", "unknown zone 'foyer'"]),
    ("device: seat-0002", "device: gate-front", "r-002",
     ["seats[1] (id r-002), field device", "device id 'gate-front' is already used by gates[0]"]),
    ("device: circ-desk", "device: shelf-ctrl-1", "zone: lobby}\ncatalog",
     ["circulation[0] (device shelf-ctrl-1), field device", "already used by shelves[0]"]),
    ("capacity: 30}", "capacity: 30}\n  - {id: stacks, name: Annex, floor: 4, capacity: 9}",
     "Annex", ["zones[3] (id stacks), field id", "zone id 'stacks' is already used by zones[2]"]),
    ("id: r-002", "id: r-001", "seat-0002",
     ["seats[1] (id r-001), field id", "seat id 'r-001' is already used by seats[0]"]),
    ("id: S-03", "id: S-01", "QA76.76",
     ["shelves[0].sections[2] (id S-01), field id", "section id 'S-01' is already used"]),
    ("outer: lobby, inner: reading", "outer: reading, inner: reading", "gate-reading",
     ["gates[1] (device gate-reading)", "outer and inner are both 'reading'"]),
    ('first: "Q", last: "QA76.75"', 'first: "QB", last: "QA76.75"', "S-02",
     ["shelves[0].sections[1] (id S-02)", "first 'QB' sorts after last 'QA76.75'"]),
    ('last: "QA76.75"', 'last: "QA 76 .75"', "S-02",
     ["shelves[0].sections[1] (id S-02), field last", "'QA 76 .75' is not an LC call number"]),
    ('first: "QA76.76"', 'first: "QA76.7"', "S-03",
     ["shelves[0].sections[2] (id S-03)", "overlaps shelves[0].sections[1] (id S-02)"]),
    ("timezone: Europe/London", "timezone: Europe/Londn", "timezone",
     ["field timezone", "unknown timezone 'Europe/Londn'"]),
    ('sat: "10:00-18:00"', 'sat: "10am-6pm"', "hours",
     ["field hours.sat", "bad opening hours '10am-6pm' (use HH:MM-HH:MM or closed)"]),
    ('sat: "10:00-18:00"', 'sat: "10:00-25:00"', "hours",
     ["field hours.sat", "bad time in opening hours '10:00-25:00'"]),
    ("sun: closed", "sunday: closed", "hours",
     ["field hours.sunday", "bad day key 'sunday' (use e.g. mon, mon-fri, sat-sun)"]),
    ("sun: closed", "fri: closed", "hours", ["field hours.fri", "fri is also given by 'mon-fri'"]),
    ("catalog: catalog.csv", "catalog: missing.csv", "catalog:",
     ["field catalog", "catalog file", "missing.csv' does not exist"]),
    ("x: 1, y: 0", "x: 1", "r-002", ["seats[1] (id r-002)", "give both x and y, or neither"]),
    ("site: test", "site: Test Site", "site:", ["field site", "should match pattern"]),
    ("name: Test Library", "name: Test Library\nname: Other", "name: Other",
     ["field name", "key 'name' is given more than once"]),
    ("capacity: 30}", "capacity: 30}\n  - {id: outside, name: Street, floor: 0, capacity: 9}",
     "Street", ["zones[3] (id outside), field id", "'outside' is implicit"]),
    ("    zone: stacks\n", "    zone: stacks\n    scheme: udc\n", "scheme: udc",
     ["shelves[0] (device shelf-ctrl-1), field scheme", "'lc' or 'dewey'"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("old", "new", "marker", "says"), CASES, ids=[c[3][-1][:40] for c in CASES]
)
def test_each_mistake_names_file_line_entry_and_reason(
    tmp_path: Path, old: str, new: str, marker: str, says: list[str]
) -> None:
    assert old in BASE
    text = BASE.replace(old, new, 1)
    path = write(tmp_path, text)
    with pytest.raises(LayoutError) as err:
        load_layout(path)
    message = str(err.value)
    assert message.startswith(f"{path}:{line_of(text, marker.splitlines()[0])}: "), message
    for fragment in says:
        assert fragment in message
    assert len(err.value.problems) == 1, err.value.problems


def test_yaml_syntax_errors_name_line_and_column(tmp_path: Path) -> None:
    text = BASE.replace("{id: r-002, device", "{id: r-002 device: [", 1)
    path = write(tmp_path, text)
    with pytest.raises(LayoutError, match=rf"^{re.escape(str(path))}:14:\d+: YAML syntax error: "):
        load_layout(path)


@pytest.mark.parametrize(
    ("text", "says"),
    [("", ":1: a layout is a YAML mapping"), ("- just\n- a list\n", ":1: a layout is a YAML")],
)
def test_a_layout_must_be_a_mapping(tmp_path: Path, text: str, says: str) -> None:
    with pytest.raises(LayoutError, match=re.escape(says)):
        load_layout(write(tmp_path, text))


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(LayoutError, match=r"nope\.yaml: cannot read layout: No such file"):
        load_layout(tmp_path / "nope.yaml")


def test_every_problem_is_listed_in_line_order(tmp_path: Path) -> None:
    text = (
        BASE.replace("Europe/London", "Nowhere/City")
        .replace("zone: attic", "")
        .replace("id: r-002", "id: r-001")
        .replace("inner: reading}", "inner: reading2}")
        .replace('last: "PZ"', 'last: "P Z"')
    )
    path = write(tmp_path, text)
    with pytest.raises(LayoutError) as err:
        load_layout(path)
    lines = [int(p.split(":")[1]) for p in err.value.problems]
    assert lines == sorted(lines) and len(lines) == 4
    assert str(err.value).endswith("(and 1 more)")


def test_gaps_are_listed_but_allowed(tmp_path: Path) -> None:
    layout = load_layout(write(tmp_path, BASE.replace('first: "QA76.76"', 'first: "QA77"')))
    assert layout.coverage("main") == ([], [("S-02", "S-03")])


def test_validating_a_mapping_directly_checks_the_same_rules() -> None:
    with pytest.raises(ValidationError, match=r"seats\.0\.zone: unknown zone 'attic'"):
        Layout.model_validate(
            {
                "site": "x",
                "name": "X",
                "zones": [{"id": "a", "name": "A", "floor": 1, "capacity": 1}],
                "seats": [{"id": "s", "device": "seat-1", "zone": "attic"}],
            }
        )


# --- helpers -----------------------------------------------------------------------------


def test_lookups(tmp_path: Path) -> None:
    layout = load_layout(write(tmp_path, BASE))
    assert layout.zones_by_id["reading"].capacity == 50
    assert layout.zone("stacks").floor == 3
    assert layout.seats_by_device["seat-0002"].id == "r-002"
    assert layout.seats_by_id["r-001"].features == ("power",)
    assert layout.sections_by_id["S-02"].last == "QA76.75"
    assert layout.shelf_of_section["S-02"].device == "shelf-ctrl-1"
    assert layout.gates_by_device["gate-reading"].outer == "lobby"
    assert layout.collections == {"main": "lc"}
    assert layout.sections_holding("main", "QA76.75 .K3 2001") == ("S-02",)
    assert layout.sections_holding("main", parse("QA76.76 .A1")) == ("S-03",)
    # Between a section ending at QA76.75 and one starting at QA76.76: no home.
    assert layout.sections_holding("main", parse("QA76.751 .A1")) == ()
    assert layout.sections_holding("rare-books", "QA1 .A1") == ()
    assert set(layout.devices()) == {
        "gate-front", "gate-reading", "seat-0001", "seat-0002", "shelf-ctrl-1", "circ-desk"
    }  # fmt: skip


def test_opening_hours_in_the_site_timezone(tmp_path: Path) -> None:
    layout = load_layout(write(tmp_path, BASE))
    tue = layout.hours_for(date(2026, 11, 24))
    assert tue is not None
    assert [t.isoformat() for t in tue] == [
        "2026-11-24T08:00:00+00:00",
        "2026-11-24T22:00:00+00:00",
    ]
    sat = layout.hours_for(date(2026, 6, 27))  # British Summer Time
    assert sat is not None
    assert [t.isoformat() for t in sat] == [
        "2026-06-27T10:00:00+01:00",
        "2026-06-27T18:00:00+01:00",
    ]
    assert layout.hours_for(date(2026, 11, 29)) is None  # Sunday
    assert layout.is_open(datetime(2026, 11, 24, 8, 0, tzinfo=UTC))
    assert not layout.is_open(datetime(2026, 11, 24, 7, 59, tzinfo=UTC))
    assert not layout.is_open(datetime(2026, 11, 24, 22, 0, tzinfo=UTC))
    assert not layout.is_open(datetime(2026, 11, 29, 12, 0, tzinfo=UTC))
    with pytest.raises(ValueError, match="aware"):
        layout.is_open(datetime(2026, 11, 24, 12, 0))


def test_opening_past_midnight_and_across_a_clock_change(tmp_path: Path) -> None:
    text = BASE.replace('hours: {mon-fri: "08:00-22:00", sat: "10:00-18:00", sun: closed}',
                        'hours: {mon-sun: "08:00-02:00"}')  # fmt: skip
    layout = load_layout(write(tmp_path, text))
    span = layout.hours_for(date(2026, 3, 28))  # clocks go forward early on Sunday 29 March
    assert span is not None
    # 18 hours on the wall clock, one of them skipped (aware datetimes sharing a tzinfo
    # subtract as wall times, hence UTC)
    assert span[1].astimezone(UTC) - span[0].astimezone(UTC) == timedelta(hours=17)
    assert layout.is_open(datetime(2026, 3, 29, 0, 30, tzinfo=UTC))  # Saturday's opening
    assert not layout.is_open(datetime(2026, 3, 29, 2, 30, tzinfo=UTC))


def test_no_hours_means_always_open(tmp_path: Path) -> None:
    layout = load_layout(write(tmp_path, BASE.replace(BASE.splitlines()[3] + "\n", "")))
    assert layout.is_open(datetime(2026, 11, 29, 3, 0, tzinfo=UTC))
    span = layout.hours_for(date(2026, 11, 29))
    assert span is not None and span[1] - span[0] == timedelta(days=1)


def test_unreachable_zones(tmp_path: Path) -> None:
    layout = load_layout(write(tmp_path, BASE))
    assert layout.unreachable_zones() == ("stacks",)


# --- the sample library --------------------------------------------------------------------


def test_the_sample_library_is_a_plausible_university_library() -> None:
    layout = load_layout(SAMPLE)
    assert layout.site == "main"
    assert layout.hours == {"mon-fri": "07:30-22:30", "sat-sun": "09:00-21:00"}
    assert len({z.floor for z in layout.zones}) >= 3
    assert len(layout.zones) >= 8
    assert len(layout.seats) >= 300
    assert len(layout.gates) >= 4
    assert any(g.outer != OUTSIDE for g in layout.gates), "no internal doors"
    assert layout.unreachable_zones() == ()
    sections = [x for s in layout.shelves for x in s.sections]
    assert len(sections) >= 40 and len(layout.shelves) >= 3
    assert len(layout.circulation) >= 2
    assert layout.catalog is not None and Path(layout.catalog).is_file()
    assert all(re.fullmatch(r"seat-\d{4}", s.device) for s in layout.seats)
    assert all(g.device.startswith("gate-") for g in layout.gates)
    assert all(s.device.startswith("shelf-ctrl-") for s in layout.shelves)
    assert all(d.device.startswith("circ-") for d in layout.circulation)
    mapped = [s for s in layout.seats if s.x is not None]
    assert 0 < len(mapped) < len(layout.seats)
    features = [f for s in layout.seats for f in s.features]
    for feature in ("power", "window", "quiet"):
        assert 0.05 < features.count(feature) / len(layout.seats) < 0.8, feature
    for zone in layout.zones:
        seated = sum(1 for s in layout.seats if s.zone == zone.id)
        assert seated <= zone.capacity, zone.id


def test_the_sample_sections_tile_the_collection_from_a_to_z() -> None:
    layout = load_layout(SAMPLE)
    assert layout.coverage("main") == ([], [])
    ranges = layout.section_index("main").ranges
    assert ranges[0].first == parse("A") and ranges[-1].last == parse("ZZ")
    for before, after in pairwise(ranges):
        # Each section starts at the very next label after the one before ends.
        assert successor_key(before.last) == after.first.key, (before.ident, after.ident)
    for probe in ("QA76.73 .P98 2005", "PS3545 .I345 Z5 1990", "A1 .A1", "ZA4450 .B3"):
        assert len(layout.sections_holding("main", probe)) == 1, probe
