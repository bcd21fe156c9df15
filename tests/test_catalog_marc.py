"""Catalog from MARC21 and MARCXML files built with pymarc: Koha-style 952 holdings."""

from __future__ import annotations

from pathlib import Path

import pytest
from pymarc import Field, Indicators, Leader, Record, Subfield, record_to_xml

from stackpulse.kernel.callnumbers import sort_key
from stackpulse.kernel.catalog import CatalogError, load_catalog
from stackpulse.kernel.layout import Layout

LAYOUT = Layout.model_validate(
    {
        "site": "test",
        "name": "Test Library",
        "zones": [{"id": "stacks", "name": "Stacks", "floor": 1, "capacity": 10}],
        "shelves": [
            {
                "device": "shelf-lc",
                "zone": "stacks",
                "collection": "main",
                "scheme": "lc",
                "sections": [
                    {"id": "LC-1", "first": "A", "last": "PZ"},
                    {"id": "LC-2", "first": "Q", "last": "ZZ"},
                ],
            },
            {
                "device": "shelf-dewey",
                "zone": "stacks",
                "collection": "juv",
                "scheme": "dewey",
                "sections": [
                    {"id": "DW-1", "first": "000", "last": "499"},
                    {"id": "DW-2", "first": "500", "last": "999"},
                ],
            },
        ],
    }
)


def copy(barcode: str | None, call_number: str | None, location: str | None) -> Field:
    subs = [Subfield("a", "MAIN"), Subfield("b", "MAIN")]
    for code, value in (("p", barcode), ("o", call_number), ("c", location)):
        if value is not None:
            subs.append(Subfield(code, value))
    return Field(tag="952", indicators=Indicators(" ", " "), subfields=subs)


def record(title: str, subtitle: str | None, *copies: Field) -> Record:
    subs = [Subfield("a", title)] + ([Subfield("b", subtitle)] if subtitle else [])
    fields = [
        Field(tag="001", data=f"bib-{title[:8]}"),
        Field(tag="245", indicators=Indicators("1", "0"), subfields=subs),
        *copies,
    ]
    rec = Record(fields=fields)
    rec.leader = Leader(rec.leader[:9] + "a" + rec.leader[10:])  # UTF-8
    return rec


GOOD = [
    record(
        "Programming Python :",
        "powerful object-oriented programming /",
        copy("31234000000001", "QA76.73 .P98 L88 2010", "main"),
        copy("31234000000002", "QA76.73 .P98 L88 2010 c.2", "main"),
    ),
    record("Das Kapital /", None, copy("31234000000003", "HB501 .M37 1990", "main")),
    record("Rocks and minerals.", None, copy("J-0004", "549.1 R63 2001", "juv")),
]


def write_marc(path: Path, records: list[Record | bytes]) -> Path:
    path.write_bytes(b"".join(r if isinstance(r, bytes) else r.as_marc() for r in records))
    return path


def test_good_records_load_one_item_per_952(tmp_path: Path) -> None:
    catalog = load_catalog(write_marc(tmp_path / "export.mrc", list(GOOD)), LAYOUT)
    assert catalog.errors == () and catalog.error_count == 0
    assert sorted(catalog) == ["31234000000001", "31234000000002", "31234000000003", "J-0004"]
    first = catalog["31234000000001"]
    assert first.title == "Programming Python : powerful object-oriented programming"
    assert first.call_number == "QA76.73 .P98 L88 2010"
    assert (first.collection, first.home_sections) == ("main", ("LC-2",))
    assert first.shelf_key == sort_key("QA76.73 .P98 L88 2010", "lc")
    assert catalog["31234000000002"].title == first.title
    assert catalog["31234000000003"].title == "Das Kapital"
    assert catalog["31234000000003"].home_sections == ("LC-1",)
    juv = catalog["J-0004"]
    assert (juv.title, juv.collection, juv.home_sections) == (
        "Rocks and minerals.",
        "juv",
        ("DW-2",),
    )
    assert juv.shelf_key == sort_key("549.1 R63 2001", "dewey")
    assert catalog.summary() == "export.mrc: 4 items"


def test_bad_holdings_are_reported_by_record_and_subfield(tmp_path: Path) -> None:
    records: list[Record | bytes] = [
        GOOD[0],
        record("Bad barcode", None, copy("3123 4000", "QA1 .A1", "main")),
        record("No call number", None, copy("31234000000010", None, "main")),
        record(
            "Two copies, one lost location",
            None,
            copy("31234000000011", "QB1 .A1", "main"),
            copy("31234000000012", "QB1 .A1 c.2", "rare-books"),
        ),
        record("Dewey in an LC collection", None, copy("31234000000013", "549.1 ROC", "main")),
        record("Repeated barcode", None, copy("31234000000001", "QA1 .A1", "main")),
        record("No holdings", None),
    ]
    path = write_marc(tmp_path / "export.marc", records)
    catalog = load_catalog(path, LAYOUT)
    assert sorted(catalog) == ["31234000000001", "31234000000002", "31234000000011"]
    got = [(e.line, e.field) for e in catalog.errors]
    assert got == [
        (2, "952$p"), (3, "952$o"), (4, "952#2$c"), (5, "952$o"), (6, "952$p"), (7, "952"),
    ]  # fmt: skip
    text = [str(e) for e in catalog.errors]
    assert text[0] == (
        f"{path}: record 2: 952$p: bad item id '3123 4000' (letters, digits, ._:- only)"
    )
    assert text[1].endswith("952$o: missing $o (call number)")
    assert "no shelves hold collection 'rare-books' (juv, main)" in text[2]
    assert "'549.1 ROC' is not an LC call number" in text[3]
    assert "duplicate item '31234000000001', first in record 1" in text[4]
    assert "no 952 holdings field" in text[5]
    assert catalog.summary().startswith("export.marc: 3 items; 6 problem rows, first: ")


def test_a_corrupt_record_is_one_error_and_its_neighbours_load(tmp_path: Path) -> None:
    damaged = bytearray(GOOD[1].as_marc())
    damaged[12:17] = b"9x9x9"  # base address of data: not a number
    truncated = GOOD[2].as_marc()[:-40] + b"\x1d"  # shorter than its leader says
    bad_utf8 = GOOD[1].as_marc().replace(b"Kapital", b"Kapit\xffl")  # same length
    records: list[Record | bytes] = [GOOD[0], bytes(damaged), truncated, bad_utf8, GOOD[1]]
    catalog = load_catalog(write_marc(tmp_path / "mixed.mrc", records), LAYOUT)
    assert sorted(catalog) == ["31234000000001", "31234000000002", "31234000000003"]
    got = [(e.line, e.field) for e in catalog.errors]
    assert got == [(2, "record"), (3, "record"), (4, "record")]
    text = [str(e).partition("not a readable MARC21 record: ")[2] for e in catalog.errors]
    assert text[0].startswith("a number in its leader or directory is not a number")
    assert text[1] == "Record length in leader is greater than the length of data"
    assert text[2].startswith("bad utf-8 text at byte")


def test_line_breaks_between_records_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "lines.mrc"
    path.write_bytes(b"\n".join(r.as_marc() for r in GOOD) + b"\r\n")
    catalog = load_catalog(path, LAYOUT)
    assert catalog.error_count == 0 and len(catalog) == 4


def test_a_record_cut_short_at_the_end_of_the_file_is_one_error(tmp_path: Path) -> None:
    path = write_marc(tmp_path / "cut.mrc", [GOOD[0], GOOD[1].as_marc()[:-30]])
    catalog = load_catalog(path, LAYOUT)
    assert sorted(catalog) == ["31234000000001", "31234000000002"]
    assert [(e.line, e.field) for e in catalog.errors] == [(2, "record")]


def test_marc8_records_are_decoded(tmp_path: Path) -> None:
    rec = record("Plain ASCII title /", None, copy("M8-1", "QA76 .A1", "main"))
    rec.leader = Leader(rec.leader[:9] + " " + rec.leader[10:])  # MARC-8, not UTF-8
    catalog = load_catalog(write_marc(tmp_path / "m8.mrc", [rec]), LAYOUT)
    assert catalog["M8-1"].title == "Plain ASCII title"


def test_marcxml_loads_the_same_items(tmp_path: Path) -> None:
    body = b"".join(record_to_xml(r, namespace=True) for r in GOOD)  # type: ignore[no-untyped-call]
    path = tmp_path / "export.xml"
    path.write_bytes(
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<collection xmlns="http://www.loc.gov/MARC21/slim">' + body + b"</collection>"
    )
    catalog = load_catalog(path, LAYOUT)
    binary = load_catalog(write_marc(tmp_path / "export.mrc", list(GOOD)), LAYOUT)
    assert catalog.error_count == 0
    assert dict(catalog) == dict(binary)


def test_a_marcxml_record_that_does_not_build_is_one_error(tmp_path: Path) -> None:
    good = [record_to_xml(r, namespace=True) for r in GOOD]  # type: ignore[no-untyped-call]
    bad = (  # a leader of the wrong length
        b"<record><leader>short</leader>"
        b'<datafield tag="952" ind1=" " ind2=" "><subfield code="p">X-9</subfield></datafield>'
        b"</record>"
    )
    path = tmp_path / "mixed.xml"
    path.write_bytes(
        b'<collection xmlns="http://www.loc.gov/MARC21/slim">'
        + good[0] + bad + good[2] + b"</collection>"
    )  # fmt: skip
    catalog = load_catalog(path, LAYOUT)
    assert sorted(catalog) == ["31234000000001", "31234000000002", "J-0004"]
    assert [(e.line, e.field) for e in catalog.errors] == [(2, "record")]
    assert "not a readable MARCXML record" in str(catalog.errors[0])


def test_broken_xml_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.xml"
    path.write_text('<?xml version="1.0"?>\n<collection>\n<record>\n</collection>\n', "utf-8")
    with pytest.raises(CatalogError, match=r"broken\.xml:4:\d+: not readable as MARCXML"):
        load_catalog(path, LAYOUT)


def test_a_missing_marc_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match=r"nope\.mrc: cannot read catalog"):
        load_catalog(tmp_path / "nope.mrc", LAYOUT)
