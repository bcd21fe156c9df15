"""The building as a graph of zones joined by gates, and the routes people take in it."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from stackpulse.kernel.layout import OUTSIDE, Layout


@dataclass(frozen=True, slots=True)
class Hop:
    """One doorway passage: from a zone to a neighbour, through one of these gates."""

    src: str
    dst: str
    gates: tuple[str, ...]


class Building:
    """Shortest routes from outside to every zone, following the layout's gates."""

    def __init__(self, layout: Layout) -> None:
        self.capacity = {z.id: z.capacity for z in layout.zones}
        known = {OUTSIDE, *self.capacity}
        links: dict[str, dict[str, list[str]]] = {z: {} for z in known}
        for g in layout.gates:
            # A gate naming an unknown zone leads nowhere anyone can go.
            if g.outer in known and g.inner in known and g.outer != g.inner:
                links[g.outer].setdefault(g.inner, []).append(g.device)
                links[g.inner].setdefault(g.outer, []).append(g.device)
        self.inward: dict[str, tuple[Hop, ...]] = {OUTSIDE: ()}
        queue = deque([OUTSIDE])
        while queue:
            here = queue.popleft()
            for there, gates in links[here].items():
                if there not in self.inward:
                    self.inward[there] = (*self.inward[here], Hop(here, there, tuple(gates)))
                    queue.append(there)
        # Layout order, so destinations are drawn the same way on every run.
        self.reachable = tuple(z.id for z in layout.zones if z.id in self.inward)

    def outward(self, zone: str) -> tuple[Hop, ...]:
        return tuple(Hop(h.dst, h.src, h.gates) for h in reversed(self.inward[zone]))

    def total_capacity(self) -> int:
        return sum(self.capacity[z] for z in self.reachable)
