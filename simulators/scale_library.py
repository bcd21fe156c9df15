"""Big generated libraries for benchmarks and demos: a layout whose sections tile LC and
Dewey collections with no gaps or overlaps, and a catalog spread evenly over them.

Seeded and deterministic. Call numbers are built from the section they belong to, so
every item has exactly one home section and no call number needs checking on the way.
"""

from __future__ import annotations

import argparse
import csv
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stackpulse.kernel.callnumbers import parse, successor_key
from stackpulse.kernel.layout import Layout

SEED = 20261129
BARCODE_PREFIX = "39"  # 14-digit barcodes: prefix + 12-digit serial
_SERIALS = 10**12
_STEP = 736_819_151_369  # coprime with _SERIALS: serials look scattered, never repeat
_LC_WIDTH = 9999  # LC class numbers run 1..9999 within a class-letter group
_DEWEY_CLASSES = 1000
_CUTTERS = "ABCDEFGHJKLMNPRSTWY"
_WORDS = (
    "modern", "critical", "applied", "global", "practical", "historical", "quantitative",
    "methods", "theory", "history", "foundations", "systems", "principles", "studies",
)  # fmt: skip
_SUBJECTS = (
    "mathematics", "physics", "economics", "law", "music", "chemistry", "linguistics",
    "engineering", "sociology", "medicine", "architecture", "philosophy", "statistics",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class GenSection:
    """One generated section: its call-number range and what it holds."""

    id: str
    device: str
    collection: str
    scheme: str
    first: str
    last: str
    letters: str  # LC class letters ("" for Dewey)
    lo: int  # lowest class number the section's items get
    hi: int  # highest (inclusive)


@dataclass(frozen=True, slots=True)
class Library:
    """A generated library: sections in shelf order per collection, and the item count."""

    site: str
    floors: int
    readers_per_floor: int
    sections: tuple[GenSection, ...]
    items: int
    seed: int

    def layout_data(self) -> dict[str, Any]:
        """The layout as the mapping a layout YAML file holds (protocol.md section 3)."""
        zones: list[dict[str, Any]] = [
            {"id": "f1-lobby", "name": "1F Lobby", "floor": 1, "capacity": 500}
        ]
        gates = [{"device": "gate-main", "outer": "outside", "inner": "f1-lobby"}]
        for f in range(1, self.floors + 1):
            zones.append(
                {"id": f"f{f}-stacks", "name": f"{f}F Stacks", "floor": f, "capacity": 200}
            )
            gates.append(
                {"device": f"gate-f{f}-stacks", "outer": "f1-lobby", "inner": f"f{f}-stacks"}
            )
        shelves: dict[str, dict[str, Any]] = {}
        for s in self.sections:
            shelf = shelves.get(s.device)
            if shelf is None:
                floor = int(s.device.split("-")[1][1:])
                shelf = shelves[s.device] = {
                    "device": s.device,
                    "zone": f"f{floor}-stacks",
                    "collection": s.collection,
                    "scheme": s.scheme,
                    "sections": [],
                }
            shelf["sections"].append({"id": s.id, "first": s.first, "last": s.last})
        return {
            "site": self.site,
            "name": f"Generated library ({self.items} items)",
            "timezone": "UTC",
            "zones": zones,
            "gates": gates,
            "shelves": list(shelves.values()),
        }

    def layout(self) -> Layout:
        return Layout.model_validate(self.layout_data())

    def rows(self) -> Iterator[tuple[str, str, str, str, str]]:
        """(item, call_number, title, collection, section) for every item, in shelf order."""
        rng = random.Random(self.seed)
        per, extra = divmod(self.items, len(self.sections))
        serial = self.seed % _SERIALS
        for n, s in enumerate(self.sections):
            for _ in range(per + (n < extra)):
                serial = (serial + _STEP) % _SERIALS
                cn = _call_number(rng, s)
                yield f"{BARCODE_PREFIX}{serial:012d}", cn, _title(rng), s.collection, s.id

    def write(self, folder: Path) -> tuple[Path, Path]:
        """Write layout.yaml and catalog.csv into `folder`; returns both paths."""
        import yaml

        folder.mkdir(parents=True, exist_ok=True)
        data = self.layout_data() | {"catalog": "catalog.csv"}
        layout_path = folder / "layout.yaml"
        header = "# Written by simulators/scale_library.py; generate again rather than edit.\n"
        text = yaml.dump(
            data, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), sort_keys=False
        )
        layout_path.write_text(header + text, encoding="utf-8")
        catalog_path = folder / "catalog.csv"
        with catalog_path.open("w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(["item", "call_number", "title", "collection"])
            writer.writerows(row[:4] for row in self.rows())
        return layout_path, catalog_path


def generate(
    items: int = 1_000_000,
    *,
    seed: int = SEED,
    floors: int = 4,
    readers_per_floor: int = 25,
    items_per_section: int = 200,
    dewey_share: float = 0.1,
    site: str = "big",
) -> Library:
    """A library of `items` items on sections of about `items_per_section` each.

    Sections are spread over floors x readers_per_floor shelf readers in shelf order; a
    `dewey_share` of the sections form a Dewey collection `dewey`, the rest the LC `main`.
    """
    if items < 1 or floors < 1 or readers_per_floor < 1 or items_per_section < 1:
        raise ValueError("items, floors, readers_per_floor and items_per_section must be >= 1")
    if not 0.0 <= dewey_share < 1.0:
        raise ValueError("dewey_share must be in [0, 1)")
    readers = floors * readers_per_floor
    count = max(-(-items // items_per_section), readers)
    dewey = min(int(count * dewey_share), _DEWEY_CLASSES // 2)
    ranges = [*_lc_ranges(count - dewey), *_dewey_ranges(dewey)]
    per_reader = -(-len(ranges) // readers)
    sections = []
    r, on_reader = -1, per_reader
    for n, (collection, scheme, letters, first, last, lo, hi) in enumerate(ranges):
        # A reader's shelf holds one collection: the Dewey sections start a reader of their own.
        if on_reader == per_reader or collection != ranges[n - 1][0]:
            r, on_reader = r + 1, 0
        on_reader += 1
        floor = min(r // readers_per_floor + 1, floors)
        reader = r - (floor - 1) * readers_per_floor + 1
        device = f"shelf-f{floor}-r{reader:03d}"
        sid = f"{floor}F-R{reader:03d}-{on_reader:03d}"
        sections.append(GenSection(sid, device, collection, scheme, first, last, letters, lo, hi))
    return Library(site, floors, readers_per_floor, tuple(sections), items, seed)


_Range = tuple[str, str, str, str, str, int, int]


def _lc_ranges(count: int) -> Iterator[_Range]:
    """`count` LC sections from class QA on: each letter group split into equal spans.

    The first section of a group starts at the bare letters and the last ends at 9999, so
    consecutive sections and groups meet exactly (kernel.callnumbers.successor_key).
    """
    groups = max(1, -(-count // 1000))
    letters = "QA"
    left = count
    for g in range(groups):
        n = left // (groups - g)
        left -= n
        span = _LC_WIDTH // n
        for k in range(n):
            lo, hi = k * span + 1, (_LC_WIDTH if k == n - 1 else (k + 1) * span)
            first = letters if k == 0 else f"{letters}{lo}"
            yield "main", "lc", letters, first, f"{letters}{hi}", lo, hi
        nxt = successor_key(parse(letters))
        if nxt is None:
            raise ValueError("too many sections for the LC classes after QA")
        letters = nxt.upper()


def _dewey_ranges(count: int) -> Iterator[_Range]:
    if count == 0:
        return
    span = _DEWEY_CLASSES // count
    for k in range(count):
        lo, hi = k * span, (_DEWEY_CLASSES - 1 if k == count - 1 else (k + 1) * span - 1)
        yield "dewey", "dewey", "", f"{lo:03d}", f"{hi:03d}", lo, hi


def _call_number(rng: random.Random, s: GenSection) -> str:
    # One draw of random bits split into the parts: a million of these in a few seconds.
    r = rng.getrandbits(64)
    n = s.lo + r % (s.hi - s.lo + 1)
    r //= 10_000
    cutter = f"{_CUTTERS[r % len(_CUTTERS)]}{r // 32 % 99 + 1}"
    year = 1950 + r // 4096 % 76
    fraction = r // 1_000_000 % 1000 + 1
    # Decimals only below the top class number: `last` = QA120 does not hold QA120.5.
    if s.scheme == "dewey":
        number = f"{n:03d}.{fraction}" if n < s.hi else f"{n:03d}"
        return f"{number} {cutter} {year}"
    number = f"{n}.{fraction % 9 + 1}" if n < s.hi and fraction % 10 < 3 else str(n)
    return f"{s.letters}{number} .{cutter} {year}"


_TITLES = [f"{a.capitalize()} {b} of {c}" for a in _WORDS for b in _WORDS for c in _SUBJECTS]


def _title(rng: random.Random) -> str:
    return _TITLES[rng.getrandbits(32) % len(_TITLES)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path, help="folder for layout.yaml and catalog.csv")
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--floors", type=int, default=4)
    parser.add_argument("--readers-per-floor", type=int, default=25)
    parser.add_argument("--items-per-section", type=int, default=200)
    args = parser.parse_args()
    library = generate(
        args.items,
        seed=args.seed,
        floors=args.floors,
        readers_per_floor=args.readers_per_floor,
        items_per_section=args.items_per_section,
    )
    layout, catalog = library.write(args.out)
    print(f"wrote {layout} ({len(library.sections)} sections) and {catalog} ({args.items} items)")


if __name__ == "__main__":
    main()
