"""Catalog CSV (protocol.md section 3): items, their call numbers and the sections holding them."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TextIO

from kernel.callnumbers import CallNumberError, sort_key
from kernel.layout import Layout

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
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.field}: {self.message}"


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


def load_catalog(path: str | Path, layout: Layout) -> Catalog:
    """Read a catalog; bad rows are skipped and listed in `errors`, good rows load.

    A row whose call number no section holds still loads (its item exists and circulates)
    with no home sections, and is listed as an error too.
    """
    p = Path(path)
    try:
        with p.open(encoding="utf-8-sig", newline="") as f:
            return _read(f, str(p), layout)
    except OSError as err:
        raise CatalogError(f"{p}: cannot read catalog: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise CatalogError(f"{p}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except csv.Error as err:
        raise CatalogError(f"{p}: not readable as CSV: {err}") from None


class _Rows:
    """Collects row errors, keeping the first MAX_ERRORS and counting the rest."""

    def __init__(self, path: str) -> None:
        self.path, self.errors, self.count = path, list[RowError](), 0

    def error(self, line: int, field: str, message: str) -> None:
        self.count += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(RowError(self.path, line, field, message))


def _read(f: TextIO, path: str, layout: Layout) -> Catalog:
    reader = csv.reader(f)
    header = [h.strip().lower() for h in next(reader, [])]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        found = ", ".join(header) or "nothing"
        raise CatalogError(f"{path}:1: header lacks {', '.join(missing)} (found: {found})")
    at_item, at_cn, at_title, at_coll = (header.index(name) for name in REQUIRED)
    width = max(at_item, at_cn, at_title, at_coll) + 1
    rows = _Rows(path)
    items: dict[str, CatalogItem] = {}
    first_line: dict[str, int] = {}
    for record in reader:
        line = reader.line_num  # the record's last line: quoted fields may span lines
        if len(record) < width:
            if any(field.strip() for field in record):
                rows.error(line, "row", f"{len(record)} fields, the header has {len(header)}")
            continue
        item = record[at_item].strip()
        collection = record[at_coll].strip()
        if not ITEM_RE.fullmatch(item):
            rows.error(line, "item", f"bad item id {item!r:.70} (letters, digits, ._:- only)")
            continue
        if item in first_line:
            rows.error(line, "item", f"duplicate item {item!r}, first on line {first_line[item]}")
            continue
        scheme = layout.collections.get(collection)
        if scheme is None:
            known = ", ".join(sorted(layout.collections)) or "none"
            rows.error(line, "collection", f"no shelves hold collection {collection!r} ({known})")
            continue
        call_number = " ".join(record[at_cn].split())
        try:
            key = sort_key(call_number, scheme)
        except CallNumberError as err:
            rows.error(line, "call_number", str(err))
            continue
        homes = layout.section_index(collection).holders_of_key(key)
        if not homes:
            why = f"{call_number!r} is in no section of collection {collection!r}"
            rows.error(line, "call_number", why)
        first_line[item] = line
        title = record[at_title].strip()
        items[item] = CatalogItem(item, call_number, title, collection, homes, key)
    return Catalog(items, tuple(rows.errors), path, rows.count)
