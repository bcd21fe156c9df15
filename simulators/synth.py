"""Synthetic sites and catalogs of any size, for tests and benchmarks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stackpulse.kernel.layout import OUTSIDE, Layout


@dataclass(frozen=True, slots=True)
class SyntheticItem:
    """A catalog record with just what the simulator reads (see stacks.CatalogEntry)."""

    item: str
    call_number: str
    home_sections: tuple[str, ...]


def synthetic_layout(
    *,
    site: str = "main",
    floors: int = 2,
    rooms_per_floor: int = 2,
    seats_per_room: int = 20,
    room_capacity: int = 40,
    lobby_capacity: int = 60,
    doors: int = 2,
    shelves: int = 2,
    sections_per_shelf: int = 5,
    desks: int = 1,
    timezone: str = "Asia/Shanghai",
    hours: dict[str, str] | None = None,
) -> Layout:
    """outside -> lobby (`doors` gates) -> one landing per floor -> its rooms."""
    zones: list[dict[str, Any]] = [
        {"id": "lobby", "name": "Lobby", "floor": 1, "capacity": lobby_capacity}
    ]
    gates = [
        {"device": f"gate-door-{d + 1}", "outer": OUTSIDE, "inner": "lobby"} for d in range(doors)
    ]
    seats: list[dict[str, Any]] = []
    for f in range(1, floors + 1):
        landing = f"f{f}-landing"
        zones.append({"id": landing, "name": f"{f}F landing", "floor": f, "capacity": 30})
        gates.append({"device": f"gate-f{f}", "outer": "lobby", "inner": landing})
        for r in range(1, rooms_per_floor + 1):
            room = f"f{f}-room{r}"
            zones.append(
                {"id": room, "name": f"{f}F room {r}", "floor": f, "capacity": room_capacity}
            )
            gates.append({"device": f"gate-f{f}-r{r}", "outer": landing, "inner": room})
            for s in range(seats_per_room):
                seats.append(
                    {"id": f"{room}-{s:03d}", "device": f"seat-{f}{r}{s:03d}", "zone": room}
                )
    shelf_list = [
        {
            "device": f"shelf-ctrl-{k + 1}",
            "zone": "f1-room1" if floors and rooms_per_floor else "lobby",
            "sections": [
                {"id": f"S{k + 1}-{j + 1:02d}", "first": f"QA{n}", "last": f"QA{n}"}
                for j in range(sections_per_shelf)
                for n in [100 + k * sections_per_shelf + j]
            ],
        }
        for k in range(shelves)
    ]
    return Layout.model_validate(
        {
            "site": site,
            "name": "Synthetic Library",
            "timezone": timezone,
            "hours": hours or {"mon-fri": "07:30-22:30", "sat-sun": "09:00-21:00"},
            "zones": zones,
            "gates": gates,
            "seats": seats,
            "shelves": shelf_list,
            "circulation": [
                {"device": f"circ-desk-{d + 1}", "zone": "lobby"} for d in range(desks)
            ],
        }
    )


def synthetic_catalog(layout: Layout, per_section: int = 20) -> list[SyntheticItem]:
    """`per_section` items on every section, placed by the layout's own call-number rule."""
    out: list[SyntheticItem] = []
    for shelf in layout.shelves:
        for section in shelf.sections:
            for i in range(per_section):
                call_number = f"{section.first} .B{i + 10}"
                homes = layout.sections_holding(shelf.collection, call_number)
                out.append(SyntheticItem(f"3123400{len(out):07d}", call_number, homes))
    return out
