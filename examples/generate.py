"""Write the sample library (examples/main): layout.yaml and catalog.csv, seeded and repeatable."""

from __future__ import annotations

import argparse
import csv
import io
import json
import random
import re
from collections.abc import Iterator
from pathlib import Path

from stackpulse.kernel.callnumbers import CallNumberRange, RangeIndex, parse, successor_key

SEED = 20261124
ITEMS = 6000
BARCODE_PREFIX = "31234"  # 14-digit barcodes: library prefix + 9-digit serial

ZONES = [  # id, name, floor, capacity
    ("f1-lobby", "1F Lobby & Circulation", 1, 150),
    ("f1-cafe", "1F Café", 1, 60),
    ("f1-reading", "1F Reading Room", 1, 160),
    ("f2-reading", "2F Reading Room", 2, 200),
    ("f2-group", "2F Group Study Rooms", 2, 90),
    ("f2-stacks", "2F Stacks (A–H)", 2, 60),
    ("f3-quiet", "3F Quiet Study", 3, 120),
    ("f3-stacks", "3F Stacks (J–P)", 3, 80),
    ("f4-stacks", "4F Stacks (Q–Z)", 4, 70),
    ("f4-carrels", "4F Research Carrels", 4, 30),
]

GATES = [  # device, outer, inner: "in" is outer -> inner
    ("gate-main-1", "outside", "f1-lobby"),
    ("gate-main-2", "outside", "f1-lobby"),
    ("gate-cafe-street", "outside", "f1-cafe"),
    ("gate-f1-cafe", "f1-lobby", "f1-cafe"),
    ("gate-f1-reading", "f1-lobby", "f1-reading"),
    ("gate-f2-stair", "f1-lobby", "f2-reading"),
    ("gate-f2-group", "f2-reading", "f2-group"),
    ("gate-f2-stacks", "f2-reading", "f2-stacks"),
    ("gate-f3-lift", "f1-lobby", "f3-quiet"),
    ("gate-f3-stacks", "f3-quiet", "f3-stacks"),
    ("gate-f4-lift", "f1-lobby", "f4-stacks"),
    ("gate-f4-carrels", "f4-stacks", "f4-carrels"),
]

DESKS = [
    ("circ-desk-1", "f1-lobby"),
    ("circ-kiosk-1", "f1-lobby"),
    ("circ-kiosk-2", "f3-quiet"),
    ("circ-ils", "f1-lobby"),  # bridge from the library system's own circulation
]

# The first label of each section in shelf order; each section ends just before the next.
FIRSTS = [
    "A", "B", "BL", "C", "D", "DS", "E", "F", "G", "GV", "H", "HB", "HD", "HF", "HM", "HQ",
    "J", "K", "KF", "L", "LB", "M", "N", "NA", "P", "PE", "PL", "PN", "PQ", "PR", "PR6000",
    "PS", "PS3500", "PT",
    "Q", "QA", "QA76", "QA76.76", "QA300", "QB", "QC", "QD", "QH", "QK", "R", "RC", "S",
    "T", "TA", "TK", "TK5100", "U", "Z",
]  # fmt: skip
LAST = "ZZ"
CONTROLLERS = [  # device, zone, floor, aisle, first label it starts at
    ("shelf-ctrl-2A", "f2-stacks", 2, "A", "A"),
    ("shelf-ctrl-2B", "f2-stacks", 2, "B", "E"),
    ("shelf-ctrl-3A", "f3-stacks", 3, "A", "J"),
    ("shelf-ctrl-3B", "f3-stacks", 3, "B", "N"),
    ("shelf-ctrl-3C", "f3-stacks", 3, "C", "PR"),
    ("shelf-ctrl-4A", "f4-stacks", 4, "A", "Q"),
    ("shelf-ctrl-4B", "f4-stacks", 4, "B", "QC"),
    ("shelf-ctrl-4C", "f4-stacks", 4, "C", "T"),
]

# Real LC subclasses: letters, class-number span, weight in the collection, subject words.
SUBCLASSES: list[tuple[str, int, int, int, str]] = [
    ("AC", 1, 999, 1, "collected essays"), ("AE", 1, 90, 1, "encyclopedias"),
    ("AS", 2, 945, 1, "learned societies"), ("AZ", 20, 999, 1, "scholarship"),
    ("B", 1, 5802, 4, "philosophy"), ("BD", 10, 701, 2, "metaphysics"),
    ("BF", 1, 1999, 6, "psychology"), ("BJ", 1, 1725, 2, "ethics"),
    ("BL", 1, 2790, 2, "religion"), ("BQ", 1, 9800, 1, "buddhism"),
    ("BR", 1, 1725, 2, "christianity"), ("BX", 1, 9999, 1, "churches"),
    ("CB", 3, 482, 2, "civilization"), ("CC", 1, 960, 1, "archaeology"),
    ("CT", 21, 9999, 2, "biography"), ("D", 1, 2027, 4, "world history"),
    ("DA", 1, 995, 3, "british history"), ("DC", 1, 947, 2, "french history"),
    ("DD", 1, 905, 2, "german history"), ("DK", 1, 949, 2, "russian history"),
    ("DS", 1, 937, 6, "asian history"), ("DT", 1, 3415, 2, "african history"),
    ("E", 11, 909, 5, "american history"), ("F", 1, 3799, 4, "local history"),
    ("G", 1, 9980, 2, "geography"), ("GB", 3, 5030, 2, "physical geography"),
    ("GE", 1, 350, 3, "environmental science"), ("GN", 1, 890, 3, "anthropology"),
    ("GV", 1, 1860, 3, "sport"), ("H", 1, 99, 1, "social science"),
    ("HA", 1, 4737, 2, "statistics"), ("HB", 1, 3840, 6, "economics"),
    ("HC", 10, 1085, 4, "economic development"), ("HD", 28, 9999, 8, "management"),
    ("HF", 1, 6182, 6, "commerce"), ("HG", 1, 9999, 4, "finance"),
    ("HM", 1, 1281, 5, "sociology"), ("HN", 1, 995, 2, "social history"),
    ("HQ", 1, 2044, 6, "family studies"), ("HV", 1, 9960, 3, "social work"),
    ("J", 1, 981, 1, "government documents"), ("JA", 1, 92, 2, "political science"),
    ("JC", 11, 628, 3, "political theory"), ("JZ", 2, 6530, 3, "international relations"),
    ("K", 1, 7720, 3, "law"), ("KF", 1, 9827, 3, "american law"),
    ("L", 7, 991, 1, "education"), ("LB", 5, 3640, 5, "teaching"),
    ("LC", 8, 6691, 2, "educational policy"), ("M", 1, 5000, 2, "music scores"),
    ("ML", 1, 3930, 3, "music history"), ("MT", 1, 960, 1, "music theory"),
    ("N", 1, 9211, 2, "visual arts"), ("NA", 1, 9428, 3, "architecture"),
    ("NC", 1, 1940, 1, "drawing"), ("ND", 25, 3416, 2, "painting"),
    ("P", 1, 1091, 3, "linguistics"), ("PE", 1, 3729, 4, "english language"),
    ("PL", 1, 8844, 4, "east asian literature"), ("PN", 1, 6790, 5, "literary theory"),
    ("PQ", 1, 9999, 3, "romance literature"), ("PR", 1, 9680, 7, "english literature"),
    ("PS", 1, 3626, 8, "american literature"), ("PT", 1, 9999, 2, "german literature"),
    ("Q", 1, 390, 3, "science"), ("QA", 1, 939, 10, "mathematics"),
    ("QB", 1, 991, 2, "astronomy"), ("QC", 1, 999, 5, "physics"),
    ("QD", 1, 999, 4, "chemistry"), ("QE", 1, 996, 2, "geology"),
    ("QH", 1, 705, 5, "biology"), ("QK", 1, 989, 2, "botany"),
    ("QL", 1, 991, 2, "zoology"), ("QP", 1, 981, 3, "physiology"),
    ("R", 5, 920, 3, "medicine"), ("RA", 1, 1270, 3, "public health"),
    ("RC", 31, 1245, 4, "internal medicine"), ("RT", 1, 120, 2, "nursing"),
    ("S", 1, 972, 2, "agriculture"), ("SB", 1, 1110, 1, "horticulture"),
    ("T", 1, 995, 2, "technology"), ("TA", 1, 2040, 5, "engineering"),
    ("TD", 1, 1066, 2, "environmental engineering"), ("TJ", 1, 1570, 3, "mechanical engineering"),
    ("TK", 1, 9971, 7, "electrical engineering"), ("TL", 1, 4050, 2, "aeronautics"),
    ("TP", 1, 1185, 2, "chemical technology"), ("TX", 1, 1110, 1, "home economics"),
    ("U", 1, 900, 1, "military science"), ("V", 1, 995, 1, "naval science"),
    ("Z", 4, 8999, 3, "library science"), ("ZA", 3038, 5190, 2, "information resources"),
]  # fmt: skip
# Computing and American fiction are where a university library is densest.
HOTSPOTS = [("QA", 76, 76, 12, "computer science"), ("PS", 3500, 3626, 6, "american fiction")]

TITLE_FORMS = [
    "{A} {topic}", "An introduction to {topic}", "{topic}: {a} {n}", "The {n} of {topic}",
    "{A} {n} in {topic}", "Readings in {topic}", "{topic} since {year}", "Handbook of {topic}",
    "{A} perspectives on {topic}", "Essays on {topic} and {n}", "Foundations of {topic}",
    "{topic} in practice", "The {a} {n}: {topic} reconsidered", "Studies in {topic}",
]  # fmt: skip
ADJECTIVES = [
    "modern", "critical", "comparative", "global", "applied", "contemporary", "classical",
    "practical", "historical", "new", "advanced", "quantitative", "cultural", "theoretical",
]  # fmt: skip
NOUNS = [
    "methods", "theory", "practice", "history", "foundations", "problems", "debates",
    "frontiers", "principles", "systems", "traditions", "questions", "landscapes", "models",
]  # fmt: skip
CUTTER_LETTERS = "ABCDEFGHJKLMNPRSTWY"


def _predecessor(label: str) -> str:
    """The label a section ends at when the next one starts at `label`, without a gap."""
    m = re.fullmatch(r"([A-Z]+)(\d+(?:\.\d+)?)?", label)
    if m is None:
        raise ValueError(label)
    letters, number = m.groups()
    if number is not None:
        decimals = number.partition(".")[2]
        step = 10 ** len(decimals)
        value = round(float(number) * step) - 1
        prev = f"{value // step}.{value % step:0{len(decimals)}d}" if decimals else str(value)
        out = letters + prev
    elif len(letters) == 1:
        out = chr(ord(letters) - 1) + "Z"
    else:
        last = letters[-1]
        out = letters[:-1] if last == "A" else letters[:-1] + chr(ord(last) - 1)
    if successor_key(parse(out)) != parse(label).key:
        raise AssertionError(f"{out} does not end right before {label}")
    return out


def sections() -> Iterator[tuple[str, str, str, str, str]]:
    """(controller, zone, section id, first, last) in shelf order."""
    lasts = [_predecessor(f) for f in FIRSTS[1:]] + [LAST]
    starts = {c[4]: c for c in CONTROLLERS}
    ctrl = CONTROLLERS[0]
    bay = 0
    for first, last in zip(FIRSTS, lasts, strict=True):
        if first in starts:
            ctrl, bay = starts[first], 0
        bay += 1
        device, zone, floor, aisle, _ = ctrl
        yield device, zone, f"{floor}F-{aisle}{(bay + 1) // 2:02d}-{2 - bay % 2}", first, last


GRIDS = [("f1-reading", "f1-r", 12, 8), ("f2-reading", "f2-r", 12, 10), ("f3-quiet", "f3-q", 9, 8)]
RESERVED_WORDS = {"yes", "no", "on", "off", "null", "true", "false", "y", "n"}


def _grid_seats() -> Iterator[tuple[str, str, list[str], tuple[int, int] | None]]:
    for zone, prefix, cols, rows in GRIDS:
        for y in range(rows):
            for x in range(cols):
                # Power runs along every other pair of tables and the back row.
                feats = ["power"] if (x // 2) % 2 == 0 or y == rows - 1 else []
                if x == 0 or (zone == "f2-reading" and y == 0):
                    feats.append("window")
                if zone == "f3-quiet":
                    feats.append("quiet")
                yield zone, prefix, feats, (x, y)


def _other_seats() -> Iterator[tuple[str, str, list[str], tuple[int, int] | None]]:
    for i in range(1, 49):  # eight group rooms of six, two sockets each
        yield "f2-group", "f2-g", ["power"] if i % 6 in (1, 4) else [], None
    for i in range(1, 25):
        feats = ["window"] if i <= 8 else (["power"] if i % 3 == 0 else [])
        yield "f1-cafe", "f1-c", feats, None
    for i in range(1, 21):
        yield "f4-carrels", "f4-c", ["power", "quiet"] + (["window"] if i <= 10 else []), None


def seats() -> Iterator[dict[str, object]]:
    """Seats by zone; reading rooms and quiet study get positions on a seat-map grid."""
    numbers: dict[str, int] = {}
    for n, (zone, prefix, feats, xy) in enumerate([*_grid_seats(), *_other_seats()], start=1):
        numbers[prefix] = numbers.get(prefix, 0) + 1
        out: dict[str, object] = {
            "id": f"{prefix}-{numbers[prefix]:03d}",
            "device": f"seat-{n:04d}",
        }
        out |= {"zone": zone, "features": feats}
        if xy is not None:
            out |= {"x": xy[0], "y": xy[1]}
        yield out


def _scalar(value: object) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_scalar(v) for v in value) + "]"
    plain = isinstance(value, str) and re.fullmatch(r"[a-z][a-z0-9-]*|\d[A-Z][A-Z0-9-]*", value)
    if plain and value not in RESERVED_WORDS:
        return str(value)
    return json.dumps(value, ensure_ascii=False)


def _flow(entry: dict[str, object]) -> str:
    return "{" + ", ".join(f"{k}: {_scalar(v)}" for k, v in entry.items()) + "}"


def layout_yaml() -> str:
    out = io.StringIO()
    w = out.write
    w("# Sample library written by examples/generate.py; edit that, then run it again.\n")
    w("site: main\nname: Main Library\ntimezone: Asia/Shanghai\n")
    w('hours: {mon-fri: "07:30-22:30", sat-sun: "09:00-21:00"}\n\nzones:\n')
    for zid, name, floor, cap in ZONES:
        w(f"  - {_flow({'id': zid, 'name': name, 'floor': floor, 'capacity': cap})}\n")
    w("\ngates:\n")
    for device, outer, inner in GATES:
        w(f"  - {_flow({'device': device, 'outer': outer, 'inner': inner})}\n")
    w("\nseats:\n")
    for s in seats():
        w(f"  - {_flow(s)}\n")
    w("\nshelves:\n")
    current = None
    for device, zone, sid, first, last in sections():
        if device != current:
            current = device
            w(f"  - device: {device}\n    zone: {zone}\n    collection: main\n")
            w("    scheme: lc\n    sections:\n")
        w(f"      - {_flow({'id': sid, 'first': first, 'last': last})}\n")
    w("\ncirculation:\n")
    for device, zone in DESKS:
        w(f"  - {_flow({'device': device, 'zone': zone})}\n")
    w("\ncatalog: catalog.csv\n")
    return out.getvalue()


def _call_number(rng: random.Random) -> tuple[str, str]:
    pool = SUBCLASSES + HOTSPOTS
    letters, lo, hi, _, topic = rng.choices(pool, weights=[s[3] for s in pool])[0]
    number = str(rng.randint(lo, hi))
    if rng.random() < 0.35 or (letters, lo) == ("QA", 76):
        number += "." + str(rng.randint(1, 99)).rstrip("0")
    cutter = rng.choice(CUTTER_LETTERS) + str(rng.randint(1, 999)).rstrip("0")
    text = f"{letters}{number} .{cutter}"
    if rng.random() < 0.12:
        text += f" {rng.choice(CUTTER_LETTERS)}{rng.randint(1, 99)}"
    text += f" {rng.randint(1950, 2025)}"
    if rng.random() < 0.04:
        text += f" v.{rng.randint(1, 6)}"
    elif rng.random() < 0.03:
        text += " c.2"
    return text, topic


def _title(rng: random.Random, topic: str) -> str:
    form = rng.choice(TITLE_FORMS)
    a, n = rng.choice(ADJECTIVES), rng.choice(NOUNS)
    title = form.format(A=a.capitalize(), a=a, n=n, topic=topic, year=rng.randint(1900, 2010))
    return title[0].upper() + title[1:]


def catalog_csv(seed: int = SEED, count: int = ITEMS) -> str:
    """Items whose call numbers each fall in exactly one section (checked with the kernel)."""
    index = RangeIndex(CallNumberRange(sid, parse(f), parse(la)) for *_, sid, f, la in sections())
    rng = random.Random(seed)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["item", "call_number", "title", "collection"])
    serials = rng.sample(range(10**8, 10**9), count)
    for serial in serials:
        while True:
            text, topic = _call_number(rng)
            if len(index.holders(parse(text))) == 1:
                break
        writer.writerow([f"{BARCODE_PREFIX}{serial}", text, _title(rng, topic), "main"])
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=str(Path(__file__).parent / "main"))
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--items", type=int, default=ITEMS)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "layout.yaml").write_text(layout_yaml(), encoding="utf-8")
    (out / "catalog.csv").write_text(catalog_csv(args.seed, args.items), encoding="utf-8")
    print(f"wrote {out / 'layout.yaml'} and {out / 'catalog.csv'}")


if __name__ == "__main__":
    main()
