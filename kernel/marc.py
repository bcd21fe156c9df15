"""Catalog from MARC21 (ISO 2709) or MARCXML with Koha-style holdings, via pymarc.

Each 952 field of a record is one item (copy): $p barcode (the item id tags carry),
$o call number, $c location (the collection name in the layout); the title is 245 $a
with $b, ISBD punctuation trimmed. Positions in errors are record numbers from 1.
"""

from __future__ import annotations

import xml.sax
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from pymarc import Field, Record
from pymarc.exceptions import PymarcException
from pymarc.marcxml import XmlHandler, parse_xml

from stackpulse.kernel.catalog import Catalog, CatalogBuilder, CatalogError, Fields, no_gc
from stackpulse.kernel.layout import Layout

END_OF_RECORD = b"\x1d"
_BLOCK = 1 << 20
_TRAILING = " /:;,="  # ISBD punctuation that separates 245 subfields


def read_marc(path: Path, layout: Layout) -> Catalog:
    """Load `.mrc`/`.marc` (binary) or `.xml` (MARCXML); a record that cannot be decoded
    is one error and the records around it still load."""
    build = CatalogBuilder(str(path), layout, unit="record")
    try:
        with no_gc():
            if path.suffix.lower() == ".xml":
                _load_xml(path, build)
            else:
                with path.open("rb") as f:
                    _load_binary(f, build)
    except OSError as err:
        raise CatalogError(f"{path}: cannot read catalog: {err.strerror or err}") from None
    return build.catalog()


def _load_binary(f: BinaryIO, build: CatalogBuilder) -> None:
    for number, chunk in enumerate(_chunks(f), start=1):
        try:
            record = Record(data=chunk, to_unicode=True, hide_utf8_warnings=True)
        except (PymarcException, ValueError, IndexError) as err:
            build.error(number, "record", f"not a readable MARC21 record: {_why(err)}")
            continue
        add_record(build, number, record)


def _why(err: Exception) -> str:
    if isinstance(err, UnicodeDecodeError):
        return f"bad {err.encoding} text at byte {err.start} of the record"
    if isinstance(err, ValueError):  # int() of a leader or directory entry
        return f"a number in its leader or directory is not a number ({err})"
    return str(err) or type(err).__name__


def _chunks(f: BinaryIO) -> Iterator[bytes]:
    """Records split at the record terminator rather than by the leader's length, so a
    record with a damaged length spoils itself only."""
    rest = b""
    while block := f.read(_BLOCK):
        pieces = (rest + block).split(END_OF_RECORD)
        rest = pieces.pop()
        for piece in pieces:
            # Some exports put a line break after each record; a leader starts with digits.
            if piece := piece.lstrip():
                yield piece + END_OF_RECORD
    if rest := rest.lstrip():
        yield rest  # no terminator: pymarc names what is wrong with it


def _load_xml(path: Path, build: CatalogBuilder) -> None:
    handler = _XmlRecords(build)
    try:
        parse_xml(str(path), handler)  # type: ignore[no-untyped-call]
    except xml.sax.SAXParseException as err:
        where = f"{path}:{err.getLineNumber()}:{err.getColumnNumber()}"
        raise CatalogError(f"{where}: not readable as MARCXML: {err.getMessage()}") from None


class _XmlRecords(XmlHandler):
    """pymarc's MARCXML handler, streaming each record into the catalog; a record that
    does not build (a leader of the wrong length, ...) is one error."""

    def __init__(self, build: CatalogBuilder) -> None:
        super().__init__(strict=False)  # type: ignore[no-untyped-call]
        self.build = build
        self.number = 0
        self.bad: str | None = None

    def startElementNS(self, name: tuple[str | None, str], qname: str | None, attrs: Any) -> None:
        if name[1] == "record":
            self.number, self.bad = self.number + 1, None
        try:
            super().startElementNS(name, qname, attrs)  # type: ignore[no-untyped-call]
        except (PymarcException, ValueError, KeyError) as err:
            self._spoil(err)

    def endElementNS(self, name: tuple[str | None, str], qname: str | None) -> None:
        if name[1] == "record" and self.bad is not None:
            self.build.error(self.number, "record", f"not a readable MARCXML record: {self.bad}")
            self._record, self._text = None, []
            return
        try:
            super().endElementNS(name, qname)  # type: ignore[no-untyped-call]
        except (PymarcException, ValueError, KeyError) as err:
            self._spoil(err)

    def process_record(self, record: Record) -> None:
        add_record(self.build, self.number, record)

    def _spoil(self, err: Exception) -> None:
        if self._record is None:
            raise CatalogError(f"not readable as MARCXML: {_why(err)}") from None
        self._text = []
        if self.bad is None:
            self.bad = _why(err)


def add_record(build: CatalogBuilder, number: int, record: Record) -> int:
    """Add the items of one record's 952 fields; returns how many loaded."""
    holdings = record.get_fields("952")
    if not holdings:
        build.error(number, "952", "no 952 holdings field: the record has no items")
        return 0
    title = _title(record)
    loaded = 0
    for n, field in enumerate(holdings, start=1):
        # "952$p" for a record's only copy, "952#2$p" for the second of several.
        tag = "952" if len(holdings) == 1 else f"952#{n}"
        values = _subfields(field)
        missing = [code for code in "poc" if not values.get(code)]
        if missing:
            names = {"p": "barcode", "o": "call number", "c": "location"}
            what = ", ".join(f"${c} ({names[c]})" for c in missing)
            build.error(number, f"{tag}${missing[0]}", f"missing {what}")
            continue
        fields = Fields(f"{tag}$p", f"{tag}$o", f"{tag}$c")
        item = build.add(number, values["p"], values["o"], title, values["c"], fields)
        loaded += item is not None
    return loaded


def _subfields(field: Field) -> dict[str, str]:
    """The first value of each subfield code, stripped."""
    out: dict[str, str] = {}
    for sub in field.subfields:
        out.setdefault(sub.code, sub.value.strip())
    return out


def _title(record: Record) -> str:
    field = record.get("245")
    if field is None:
        return ""
    parts = [v.strip().rstrip(_TRAILING).strip() for v in field.get_subfields("a", "b")]
    return " : ".join(p for p in parts if p)


__all__ = ["add_record", "read_marc"]
