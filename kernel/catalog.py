"""Catalog (protocol.md section 3): items, their call numbers and the sections holding them.

CSV here; MARC21 and MARCXML through kernel.marc, into the same Catalog.
"""

from __future__ import annotations

import csv
import gc
import re
from bisect import bisect_right
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TextIO

from stackpulse.kernel.callnumbers import CallNumberError, sort_key
from stackpulse.kernel.layout import Layout

REQUIRED = ("item", "call_number", "title", "collection")
# The identifier RFID tags carry (kernel.models.Ident): the item barcode.
ITEM_RE = re.compile(r"[A-Za-z0-9._:-]{1,64}")
MAX_ERRORS = 1000


class CatalogError(ValueError):
    """The catalog file cannot be used at all (unreadable, or required columns missing)."""


@dataclass(frozen=True, slots=True)
class CatalogItem:
    item: str
    call_number: str
    title: str
    collection: str
    home_sections: tuple[str, ...]  # sections that hold the call number; () if none does
    shelf_key: str = ""  # shelf-order key of call_number (kernel.callnumbers)


@dataclass(frozen=True, slots=True)
class RowError:
    """One bad catalog row: where it is, which field, and why."""

    path: str
    line: int  # CSV: the row's (last) line; MARC: the record number, from 1
    field: str  # CSV: the column; MARC: tag and subfield, e.g. 952$p
    message: str
    unit: str = "line"  # or "record"

    def __str__(self) -> str:
        if self.unit == "line":
            return f"{self.path}:{self.line}: {self.field}: {self.message}"
        return f"{self.path}: {self.unit} {self.line}: {self.field}: {self.message}"


class Catalog(Mapping[str, CatalogItem]):
    """Items by item id, with the rows that could not be used."""

    def __init__(
        self,
        items: dict[str, CatalogItem],
        errors: tuple[RowError, ...] = (),
        path: str = "",
        error_count: int | None = None,
    ) -> None:
        self._items = items
        self.errors = errors  # the first MAX_ERRORS problems, in file order
        self.error_count = len(errors) if error_count is None else error_count
        self.path = path

    def __getitem__(self, item: str) -> CatalogItem:
        return self._items[item]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    @cached_property
    def by_section(self) -> dict[str, tuple[CatalogItem, ...]]:
        """Items whose home is each section, in shelf order."""
        out: dict[str, list[CatalogItem]] = {}
        for it in self._items.values():
            for section in it.home_sections:
                out.setdefault(section, []).append(it)
        return {s: tuple(sorted(v, key=lambda i: i.shelf_key)) for s, v in out.items()}

    @cached_property
    def homeless(self) -> tuple[CatalogItem, ...]:
        """Items loaded although no section of their collection holds their call number."""
        return tuple(it for it in self._items.values() if not it.home_sections)

    def summary(self) -> str:
        name = Path(self.path).name or "catalog"
        text = f"{name}: {len(self)} items"
        if self.homeless:
            text += f" ({len(self.homeless)} with no home section)"
        if self.error_count:
            text += f"; {self.error_count} problem rows, first: {self.errors[0]}"
        return text


MARC_SUFFIXES = (".mrc", ".marc", ".xml")


def load_catalog(path: str | Path, layout: Layout) -> Catalog:
    """Read a catalog; bad rows are skipped and listed in `errors`, good rows load.

    CSV (protocol.md section 3) unless the name ends in `.mrc`/`.marc` (MARC21, ISO 2709)
    or `.xml` (MARCXML): those are read by kernel.marc, one item per 952 holdings field.
    A row whose call number no section holds still loads (its item exists and circulates)
    with no home sections, and is listed as an error too.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in MARC_SUFFIXES:
        from stackpulse.kernel.marc import read_marc  # pymarc is imported only for MARC files

        return read_marc(p, layout)
    try:
        with p.open(encoding="utf-8-sig", newline="") as f, no_gc():
            return _read(f, str(p), layout)
    except OSError as err:
        raise CatalogError(f"{p}: cannot read catalog: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise CatalogError(f"{p}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except csv.Error as err:
        raise CatalogError(f"{p}: not readable as CSV: {err}") from None


@contextmanager
def no_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while a bulk load allocates millions of objects.

    None of them form cycles, yet each collection would walk all of them again: with the
    collector running, building a million items takes about twice as long.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@dataclass(frozen=True, slots=True)
class Fields:
    """What the item, call number and collection are called in a source, for its errors."""

    item: str = "item"
    call_number: str = "call_number"
    collection: str = "collection"


CSV_FIELDS = Fields()


class _Shelving:
    """One collection's scheme and a lookup from a shelf key to the sections holding it."""

    __slots__ = ("ends", "fallback", "homes", "name", "scheme", "starts")

    def __init__(self, layout: Layout, name: str) -> None:
        # The layout's own string, so every item shares one object rather than its row's.
        self.name = next(c for c in layout.collections if c == name)
        self.scheme = layout.collections[name]
        index = layout.section_index(name)
        # The layout refuses overlapping sections, so one bisect finds the only holder;
        # a hand-built layout with overlaps takes the general lookup.
        self.fallback = index.holders_of_key if index.overlaps() else None
        self.starts = [r.first.key for r in index.ranges]
        self.ends = [r.last.end_key for r in index.ranges]
        self.homes = [(r.ident,) for r in index.ranges]  # shared, not one tuple per item


class CatalogBuilder:
    """Checks and adds items one at a time, keeping the first MAX_ERRORS problems.

    Shared by the CSV reader here and the MARC reader (kernel.marc); `unit` names what
    the positions count: lines of a CSV file, records of a MARC file.
    """

    def __init__(self, path: str, layout: Layout, unit: str = "line") -> None:
        self.path, self.unit = path, unit
        self.errors: list[RowError] = []
        self.count = 0
        self.items: dict[str, CatalogItem] = {}
        self._first: dict[str, int] = {}
        self._layout = layout
        self._shelving: dict[str, _Shelving] = {}
        self._known = ", ".join(sorted(layout.collections)) or "none"

    def error(self, line: int, field: str, message: str) -> None:
        self.count += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(RowError(self.path, line, field, message, self.unit))

    def add(
        self,
        line: int,
        item: str,
        call_number: str,
        title: str,
        collection: str,
        fields: Fields = CSV_FIELDS,
    ) -> CatalogItem | None:
        """Check one item and add it; None (and an error) when it cannot be loaded."""
        # Barcodes are almost always plain digits or letters: skip the regex for those.
        if not (item.isalnum() and item.isascii() and len(item) <= 64) and not ITEM_RE.fullmatch(
            item
        ):
            self.error(line, fields.item, f"bad item id {item!r:.70} (letters, digits, ._:- only)")
            return None
        first = self._first.get(item)
        if first is not None:
            self.error(line, fields.item, f"duplicate item {item!r}, first {self._on(first)}")
            return None
        shelving = self._shelving.get(collection) or self._collection(collection)
        if shelving is None:
            why = f"no shelves hold collection {collection!r} ({self._known})"
            self.error(line, fields.collection, why)
            return None
        call_number = " ".join(call_number.split())
        try:
            key = sort_key(call_number, shelving.scheme)
        except CallNumberError as err:
            self.error(line, fields.call_number, str(err))
            return None
        homes = self._homes(shelving, key)
        if not homes:
            why = f"{call_number!r} is in no section of collection {collection!r}"
            self.error(line, fields.call_number, why)
        self._first[item] = line
        found = CatalogItem(item, call_number, title, shelving.name, homes, key)
        self.items[item] = found
        return found

    def catalog(self) -> Catalog:
        return Catalog(self.items, tuple(self.errors), self.path, self.count)

    def _on(self, line: int) -> str:
        return f"on line {line}" if self.unit == "line" else f"in {self.unit} {line}"

    def _collection(self, name: str) -> _Shelving | None:
        if name not in self._layout.collections:
            return None
        shelving = self._shelving[name] = _Shelving(self._layout, name)
        return shelving

    @staticmethod
    def _homes(shelving: _Shelving, key: str) -> tuple[str, ...]:
        if shelving.fallback is not None:
            return shelving.fallback(key)
        i = bisect_right(shelving.starts, key) - 1
        return shelving.homes[i] if i >= 0 and key < shelving.ends[i] else ()


def _read(f: TextIO, path: str, layout: Layout) -> Catalog:
    reader = csv.reader(f)
    header = [h.strip().lower() for h in next(reader, [])]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        found = ", ".join(header) or "nothing"
        raise CatalogError(f"{path}:1: header lacks {', '.join(missing)} (found: {found})")
    at_item, at_cn, at_title, at_coll = (header.index(name) for name in REQUIRED)
    width = max(at_item, at_cn, at_title, at_coll) + 1
    build = CatalogBuilder(path, layout)
    add = build.add
    for record in reader:
        line = reader.line_num  # the record's last line: quoted fields may span lines
        if len(record) < width:
            if any(field.strip() for field in record):
                build.error(line, "row", f"{len(record)} fields, the header has {len(header)}")
            continue
        add(
            line,
            record[at_item].strip(),
            record[at_cn],
            record[at_title].strip(),
            record[at_coll].strip(),
        )
    return build.catalog()
