"""Inventory at scale: one full sweep of a generated 1,000,000-item collection.

    python3 -m bench.inventory_scale [--items 1000000] [--runs 3] [--part-size 500]

Generates a library (simulators.scale_library: LC and Dewey collections, sections tiling
them), writes and loads its layout and catalog (load time and the catalog's RSS printed
on their own), then builds the shelf `data` messages of two full sweeps (protocol.md
section 2: one message per section per sweep, parts of at most --part-size items; a few
reads missed, a few items misplaced, a few heard by two antennas). Per run, in the same
process: (a) the baseline, merely decoding every message of sweep 1 into SectionReports;
(b) the same decoding plus `Inventory.apply_shelf` for each and closing the sweeps, on
a fresh Inventory (sweep 1: every item found for the first time); (c) sweep 2 on that
same Inventory (the steady state). Times run from the first message to the last one
processed. Prints each run, the medians, b/a, items/s, and RSS at each stage against
the goal of 30 s and 1 GB.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import resource
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, NamedTuple

import msgspec

from stackpulse.kernel.catalog import Catalog, load_catalog
from stackpulse.kernel.layout import Layout, load_layout
from stackpulse.kernel.models import parse_rfc3339
from stackpulse.services.inventory.model import InventorySettings, Read, SectionReport
from stackpulse.simulators.scale_library import SEED, generate

GOAL_SECONDS = 30.0
GOAL_BYTES = 1 << 30
START = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)
SECTION_SECONDS = 2.0  # a reader spends this long on each of its sections
MISSED, MISPLACED, CROSS_READ = 0.01, 0.001, 0.005  # shares of the items on the shelves


class _Read(msgspec.Struct, frozen=True):
    id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    rssi: float | None = None


class _Shelf(msgspec.Struct, frozen=True):
    ts: str
    boot: int
    seq: int
    sweep: int
    section: str
    items: list[_Read]
    part: int = 1
    parts: int = 1


_decode = msgspec.json.Decoder(_Shelf).decode
_encode = msgspec.json.Encoder().encode

Message = tuple[str, bytes]  # (device from the topic, payload)


def decode(device: str, payload: bytes) -> SectionReport:
    """What the inventory service is handed for one shelf message."""
    m = _decode(payload)
    reads = tuple([Read(r.id, r.rssi) for r in m.items])
    ts = parse_rfc3339(m.ts)
    return SectionReport(device, m.boot, m.sweep, m.section, m.part, m.parts, reads, ts)


# -- memory -------------------------------------------------------------------------


def rss() -> int:
    """Resident set size now, in bytes (Linux /proc; the peak elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return peak_rss()
    return pages * os.sysconf("SC_PAGE_SIZE")


def peak_rss() -> int:
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib if sys.platform == "darwin" else kib * 1024


def mib(n: float) -> str:
    return f"{n / (1 << 20):,.0f} MiB"


# -- messages -----------------------------------------------------------------------


def shelf_contents(catalog: Catalog, layout: Layout, seed: int) -> dict[str, list[str]]:
    """Items on each section: at home, less a few misplaced into another section."""
    rng = random.Random(seed)
    on: dict[str, list[str]] = {sid: [] for sid in layout.sections_by_id}
    names = list(on)
    for item in catalog.values():
        if not item.home_sections:
            continue
        home = item.home_sections[0]
        on[rng.choice(names) if rng.random() < MISPLACED else home].append(item.item)
    return on


def sweep_messages(
    layout: Layout, contents: dict[str, list[str]], sweep: int, part_size: int, seed: int
) -> list[Message]:
    """Every message of one sweep of every reader, readers interleaved as they run at once."""
    rng = random.Random(seed * 1000 + sweep)
    start = START + timedelta(hours=sweep - 1)
    per_device: list[list[Message]] = []
    for shelf in layout.shelves:
        out: list[Message] = []
        ids = [x.id for x in shelf.sections]
        for k, sid in enumerate(ids):
            neighbour = ids[k + 1] if k + 1 < len(ids) else None
            reads: list[dict[str, Any]] = []
            for item in contents[sid]:
                if rng.random() < MISSED:
                    continue
                reads.append({"id": item, "rssi": round(rng.uniform(-70.0, -40.0), 1)})
            if neighbour is not None:  # a few of the neighbour's tags heard weakly
                for item in contents[neighbour]:
                    if rng.random() < CROSS_READ:
                        reads.append({"id": item, "rssi": -85.0})
            ts = (start + timedelta(seconds=k * SECTION_SECONDS)).isoformat()[:-6] + "Z"
            parts = max(1, -(-len(reads) // part_size))
            for p in range(parts):
                payload = {
                    "ts": ts,
                    "boot": 1,
                    "seq": (sweep - 1) * 100_000 + len(out),
                    "sweep": sweep,
                    "section": sid,
                    "part": p + 1,
                    "parts": parts,
                    "items": reads[p * part_size : (p + 1) * part_size],
                }
                out.append((shelf.device, _encode(payload)))
        per_device.append(out)
    merged: list[Message] = []
    for i in range(max(len(m) for m in per_device)):
        merged += [m[i] for m in per_device if i < len(m)]
    return merged


# -- measuring ----------------------------------------------------------------------


class Span(NamedTuple):
    """Wall and CPU seconds of one measurement: the machine may be shared, so both."""

    wall: float
    cpu: float

    def __str__(self) -> str:
        return f"{self.wall:.2f} s (cpu {self.cpu:.2f})"


class _Clock:
    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def span(self) -> Span:
        return Span(time.perf_counter() - self.wall, time.process_time() - self.cpu)


@dataclass
class Run:
    parse: Span
    sweep1: Span | None = None
    sweep2: Span | None = None
    changes: int = 0


def parse_only(messages: Sequence[Message]) -> Span:
    clock = _Clock()
    for device, payload in messages:
        decode(device, payload)
    return clock.span()


def process(inventory: Any, messages: Sequence[Message], close_at: datetime) -> tuple[Span, int]:
    """Decode and apply every message, then close what is still open; (time, changes)."""
    apply = inventory.apply_shelf
    changes = 0
    clock = _Clock()
    for device, payload in messages:
        changes += len(apply(decode(device, payload)))
    changes += len(inventory.tick(close_at))
    return clock.span(), changes


def inventory_factory() -> tuple[Callable[[Layout, Catalog], Any] | None, str]:
    try:
        from stackpulse.services.inventory.logic import Inventory
    except Exception as err:  # the logic is written alongside: say why, run the baseline
        return None, f"services.inventory.logic unavailable ({type(err).__name__}: {err})"
    settings = InventorySettings()
    return (lambda layout, catalog: Inventory(layout, catalog, settings)), ""


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--part-size", type=int, default=500)
    parser.add_argument("--items-per-section", type=int, default=200)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="gc.freeze() after loading (what a service may do once its catalog is in)",
    )
    args = parser.parse_args(argv)
    stages: list[tuple[str, int]] = [("start", rss())]

    clock = _Clock()
    library = generate(args.items, seed=args.seed, items_per_section=args.items_per_section)
    with tempfile.TemporaryDirectory(prefix="stackpulse-bench-") as tmp:
        layout_path, catalog_path = library.write(Path(tmp))
        generated = clock.span()
        layout = load_layout(layout_path)
        gc.collect()
        before = rss()
        clock = _Clock()
        catalog = load_catalog(catalog_path, layout)
        loaded = clock.span()
    gc.collect()
    catalog_rss = rss() - before
    stages.append(("catalog loaded", rss()))
    readers, sections = len(layout.shelves), len(layout.sections_by_id)
    print(
        f"library: {len(catalog):,} items, {sections:,} sections on {readers} readers, "
        f"{len(layout.collections)} collections (generated and written in {generated})"
    )
    print(
        f"catalog load: {loaded} ({len(catalog) / loaded.wall:,.0f} items/s), "
        f"{catalog.error_count} problem rows; catalog RSS {mib(catalog_rss)}"
    )

    contents = shelf_contents(catalog, layout, args.seed)
    sweeps = [sweep_messages(layout, contents, n, args.part_size, args.seed) for n in (1, 2)]
    del contents
    reads = sum(len(_decode(p).items) for _, p in sweeps[0])
    size = sum(len(p) for _, p in sweeps[0])
    gc.collect()
    stages.append(("messages built", rss()))
    print(f"sweep: {len(sweeps[0]):,} messages, {reads:,} reads, {mib(size)} of JSON")
    if args.gc_freeze:
        gc.freeze()

    factory, why = inventory_factory()
    if factory is None:
        print(f"(b) not measured: {why}")
    close = [START + timedelta(hours=n, minutes=59) for n in (0, 1)]
    runs: list[Run] = []
    for n in range(1, args.runs + 1):
        run = Run(parse_only(sweeps[0]))
        inventory = None
        if factory is not None:
            try:
                inventory = factory(layout, catalog)
                run.sweep1, c1 = process(inventory, sweeps[0], close[0])
                stages.append((f"run {n}: after sweep 1", rss()))
                run.sweep2, c2 = process(inventory, sweeps[1], close[1])
                run.changes = c1 + c2
                stages.append((f"run {n}: after sweep 2", rss()))
            except Exception:
                print(f"(b) failed in run {n}:")
                traceback.print_exc(limit=4)
                factory = None
        runs.append(run)
        print(_run_line(n, run))
        del inventory
        gc.collect()
    _summary(runs, reads, stages)


def _run_line(n: int, run: Run) -> str:
    text = f"run {n}: (a) parse {run.parse}"
    if run.sweep1 is not None and run.sweep2 is not None:
        text += (
            f", (b) sweep 1 {run.sweep1} {run.sweep1.wall / run.parse.wall:.1f}x,"
            f" (c) sweep 2 {run.sweep2} {run.sweep2.wall / run.parse.wall:.1f}x,"
            f" {run.changes:,} changes"
        )
    return text


def _median(spans: Sequence[Span]) -> Span:
    return Span(statistics.median(s.wall for s in spans), statistics.median(s.cpu for s in spans))


def _summary(runs: list[Run], reads: int, stages: list[tuple[str, int]]) -> None:
    parse = _median([r.parse for r in runs])
    print(f"\nmedian of {len(runs)} runs, {reads:,} reads per sweep (wall, cpu):")
    print(f"  {'(a) parse only':20} {parse!s:24} {reads / parse.wall:10,.0f} reads/s")
    done = [r for r in runs if r.sweep1 is not None and r.sweep2 is not None]
    worst = 0.0
    for label, spans in (
        ("(b) sweep 1, fresh", [r.sweep1 for r in done if r.sweep1 is not None]),
        ("(c) sweep 2, steady", [r.sweep2 for r in done if r.sweep2 is not None]),
    ):
        if not spans:
            break
        t = _median(spans)
        worst = max(worst, t.wall)
        ratio = f"{t.wall / parse.wall:.1f}x parse (cpu {t.cpu / parse.cpu:.1f}x)"
        print(f"  {label:20} {t!s:24} {reads / t.wall:10,.0f} reads/s  {ratio}")
    print("RSS by stage:")
    for label, value in stages:
        print(f"  {label:24} {mib(value)}")
    peak = peak_rss()
    print(f"peak RSS {mib(peak)}")
    if done:
        ok = worst < GOAL_SECONDS and peak < GOAL_BYTES
        verdict = "met" if ok else "NOT met"
        print(f"goal (< {GOAL_SECONDS:.0f} s per sweep, < {mib(GOAL_BYTES)} peak): {verdict}")


if __name__ == "__main__":
    main()
