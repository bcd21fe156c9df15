"""Catalog CSV: the sample catalog, per-row errors, and what makes a file unusable."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from examples.generate import catalog_csv, layout_yaml
from stackpulse.kernel.callnumbers import parse, section_holds
from stackpulse.kernel.catalog import Catalog, CatalogError, CatalogItem, load_catalog
from stackpulse.kernel.layout import Layout, Section, Shelf, Zone, load_layout
from stackpulse.simulators.scale_library import generate

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "main"


@pytest.fixture(scope="module")
def sample() -> tuple[Layout, Catalog]:
    layout = load_layout(EXAMPLES / "layout.yaml")
    assert layout.catalog is not None
    return layout, load_catalog(layout.catalog, layout)


def test_the_sample_catalog_loads_cleanly(sample: tuple[Layout, Catalog]) -> None:
    _, catalog = sample
    assert len(catalog) >= 5000
    assert catalog.errors == () and catalog.error_count == 0
    assert catalog.summary() == f"catalog.csv: {len(catalog)} items"
    for item in catalog.values():
        assert re.fullmatch(r"31234\d{9}", item.item)
        assert item.collection == "main"
        assert len(item.title) > 5
    assert len({i.title for i in catalog.values()}) > 1000


def test_every_sample_item_is_held_by_exactly_one_section(sample: tuple[Layout, Catalog]) -> None:
    layout, catalog = sample
    sections = [(x.id, x.first, x.last) for s in layout.shelves for x in s.sections]
    for item in catalog.values():
        holders = tuple(i for i, f, la in sections if section_holds(f, la, item.call_number))
        assert holders == item.home_sections and len(holders) == 1, item


def test_every_sample_section_has_books_in_shelf_order(sample: tuple[Layout, Catalog]) -> None:
    layout, catalog = sample
    for section in layout.sections_by_id:
        books = catalog.by_section[section]
        assert len(books) >= 10, section
        keys = [parse(b.call_number).key for b in books]
        assert keys == sorted(keys) == [b.shelf_key for b in books]


def test_the_sample_files_are_what_the_generator_writes() -> None:
    assert (EXAMPLES / "layout.yaml").read_text(encoding="utf-8") == layout_yaml()
    assert (EXAMPLES / "catalog.csv").read_text(encoding="utf-8") == catalog_csv()


def test_the_generator_is_seeded() -> None:
    assert catalog_csv(seed=1, count=50) == catalog_csv(seed=1, count=50)
    assert catalog_csv(seed=1, count=50) != catalog_csv(seed=2, count=50)


BAD = """\
item,call_number,title,collection,notes
31234000000001,QA76.73 .P98 2005,Good book,main,
31234 000000002,QA76.73 .P98 2005,Bad id,main,
31234000000001,QB1 .A1,Duplicate id,main,
31234000000003,QA76.75 .K3 ~~,Bad call number,main,
31234000000004,QA76.751 .A1,Between two sections,main,
31234000000005,QA1 .A1,Unknown collection,rare-books,
31234000000006,QA1 .A1
31234000000007,PS3545 .I345 Z5 1990,"A title
over two lines",main,
31234000000008,Z1 .A1,Good too,main,extra
"""


def test_bad_rows_are_reported_and_good_rows_load(tmp_path: Path) -> None:
    layout = load_layout(EXAMPLES / "layout.yaml")
    path = tmp_path / "catalog.csv"
    path.write_text(BAD, encoding="utf-8")
    catalog = load_catalog(path, layout)
    assert sorted(catalog) == [
        "31234000000001", "31234000000004", "31234000000007", "31234000000008"
    ]  # fmt: skip
    assert catalog["31234000000001"].title == "Good book"
    assert catalog["31234000000007"].title == "A title\nover two lines"
    # Held by no section: the item still exists (it circulates), with no home.
    assert catalog["31234000000004"].home_sections == ()
    assert catalog.homeless == (catalog["31234000000004"],)
    got = [(e.line, e.field) for e in catalog.errors]
    assert got == [
        (3, "item"), (4, "item"), (5, "call_number"), (6, "call_number"), (7, "collection"),
        (8, "row"),
    ]  # fmt: skip
    text = [str(e) for e in catalog.errors]
    assert text[0].startswith(f"{path}:3: item: bad item id '31234 000000002'")
    assert "duplicate item '31234000000001', first on line 2" in text[1]
    assert "'QA76.75 .K3 ~~' is not an LC call number" in text[2]
    assert "'QA76.751 .A1' is in no section of collection 'main'" in text[3]
    assert "no shelves hold collection 'rare-books' (main)" in text[4]
    assert "2 fields, the header has 5" in text[5]
    assert catalog.error_count == 6
    assert catalog.summary().startswith("catalog.csv: 4 items (1 with no home section); 6 problem")


def test_columns_may_come_in_any_order_with_a_byte_order_mark(tmp_path: Path) -> None:
    layout = load_layout(EXAMPLES / "layout.yaml")
    path = tmp_path / "c.csv"
    path.write_text(
        "\ufeffTitle,Collection,Item,Call_Number\nSome book,main,X-1,QA76.73 .P98\n", "utf-8"
    )
    catalog = load_catalog(path, layout)
    assert catalog["X-1"] == CatalogItem(
        "X-1",
        "QA76.73 .P98",
        "Some book",
        "main",
        layout.sections_holding("main", "QA76.73 .P98"),
        parse("QA76.73 .P98").key,
    )


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("item,title,collection\nX,Y,main\n", r"c\.csv:1: header lacks call_number \(found: "),
        ("", r"c\.csv:1: header lacks item, call_number, title, collection \(found: nothing\)"),
    ],
)
def test_a_header_without_required_columns_is_refused(
    tmp_path: Path, content: str, says: str
) -> None:
    path = tmp_path / "c.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(CatalogError, match=says):
        load_catalog(path, load_layout(EXAMPLES / "layout.yaml"))


def test_an_unreadable_file_is_refused(tmp_path: Path) -> None:
    layout = load_layout(EXAMPLES / "layout.yaml")
    with pytest.raises(CatalogError, match=r"nope\.csv: cannot read catalog"):
        load_catalog(tmp_path / "nope.csv", layout)
    binary = tmp_path / "bin.csv"
    binary.write_bytes(b"item,call_number,title,collection\n\xff\xfe\x00,1,2,3\n")
    with pytest.raises(CatalogError, match=r"bin\.csv: not UTF-8 text"):
        load_catalog(binary, layout)


def test_an_overlapping_hand_built_layout_gives_every_holder(tmp_path: Path) -> None:
    # Layout checks refuse overlaps; a layout built without them still loads every holder.
    shelf = Shelf(
        device="s",
        zone="z",
        sections=(
            Section(id="A", first="QA", last="QA99"),
            Section(id="B", first="QA50", last="QB"),
        ),
    )
    zone = Zone(id="z", name="Z", floor=1, capacity=1)
    layout = Layout.model_construct(site="x", name="X", zones=(zone,), shelves=(shelf,))
    path = tmp_path / "c.csv"
    path.write_text("item,call_number,title,collection\n1,QA60 .A1,T,main\n2,QA1,T,main\n")
    catalog = load_catalog(path, layout)
    assert catalog["1"].home_sections == ("A", "B")
    assert catalog["2"].home_sections == ("A",)


def test_gaps_between_sections_are_reported_for_the_log() -> None:
    shelves = [
        {
            "device": "s",
            "zone": "z",
            "sections": [
                {"id": "A", "first": "QA", "last": "QA75"},
                {"id": "B", "first": "QA77", "last": "QB"},
            ],
        }
    ]
    zones = [{"id": "z", "name": "Z", "floor": 1, "capacity": 1}]
    layout = Layout.model_validate({"site": "x", "name": "X", "zones": zones, "shelves": shelves})
    assert layout.coverage_report() == [
        "collection 'main': no section holds call numbers after 'QA75' (end of A)"
        " and before 'QA77' (start of B)"
    ]
    assert load_layout(EXAMPLES / "layout.yaml").coverage_report() == []


def test_a_generated_library_tiles_its_collections_and_homes_every_item(tmp_path: Path) -> None:
    library = generate(3000, seed=7, floors=2, readers_per_floor=3, items_per_section=50)
    layout = library.layout()
    assert set(layout.collections) == {"main", "dewey"}
    assert layout.coverage_report() == []
    assert len(layout.shelves) >= 6 and len(layout.sections_by_id) == 60
    for shelf in layout.shelves:  # one collection per reader
        assert {library_section.collection for library_section in library.sections
                if library_section.device == shelf.device} == {shelf.collection}  # fmt: skip
    layout_path, catalog_path = library.write(tmp_path)
    assert load_layout(layout_path).sections_by_id.keys() == layout.sections_by_id.keys()
    catalog = load_catalog(catalog_path, layout)
    assert len(catalog) == 3000 and catalog.error_count == 0
    expected = {item: (section,) for item, *_, section in library.rows()}
    assert {i: it.home_sections for i, it in catalog.items()} == expected
    assert {len(v) for v in catalog.by_section.values()} == {50}
    again = generate(3000, seed=7, floors=2, readers_per_floor=3, items_per_section=50)
    assert list(again.rows()) == list(library.rows())
    assert list(generate(3000, seed=8, floors=2, readers_per_floor=3).rows()) != list(
        library.rows()
    )
