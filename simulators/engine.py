"""A tiny discrete-event engine: timed callbacks in a heap, messages collected in order."""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable, Hashable, Iterator
from typing import Any, Generic, TypeVar

from stackpulse.simulators.devices import Message

H = TypeVar("H", bound=Hashable)


class Engine:
    """Runs callbacks `fn(t, *args)` in time order; ties run in the order scheduled.

    Everything random happens inside callbacks, in that order, so the stream does not
    depend on how finely the caller slices time with `run_until`.
    """

    def __init__(self, t0: float) -> None:
        self.now = t0
        self._heap: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._n = 0
        self._out: list[Message] = []

    def at(self, t: float, fn: Callable[..., None], *args: Any) -> None:
        self._n += 1
        heapq.heappush(self._heap, (max(t, self.now), self._n, fn, args))

    def emit(self, msg: Message) -> None:
        self._out.append(msg)

    def run_until(self, t: float) -> list[Message]:
        heap = self._heap
        while heap and heap[0][0] <= t:
            when, _, fn, args = heapq.heappop(heap)
            self.now = when
            fn(when, *args)
        self.now = max(self.now, t)
        out, self._out = self._out, []
        return out


def poisson(rng: random.Random, lam: float) -> int:
    """A Poisson draw; the normal approximation past 30 keeps big deficits cheap."""
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


class IndexedSet(Generic[H]):
    """A set with O(1) add, remove and uniform random choice, iterated in a stable order."""

    def __init__(self) -> None:
        self._items: list[H] = []
        self._pos: dict[H, int] = {}

    def add(self, x: H) -> None:
        if x not in self._pos:
            self._pos[x] = len(self._items)
            self._items.append(x)

    def discard(self, x: H) -> None:
        i = self._pos.pop(x, None)
        if i is None:
            return
        last = self._items.pop()
        if i < len(self._items):
            self._items[i] = last
            self._pos[last] = i

    def choice(self, rng: random.Random) -> H | None:
        return self._items[rng.randrange(len(self._items))] if self._items else None

    def sample(self, rng: random.Random, k: int) -> list[H]:
        """Up to `k` distinct members, drawn uniformly."""
        return rng.sample(self._items, min(k, len(self._items)))

    def __contains__(self, x: object) -> bool:
        return x in self._pos

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[H]:
        return iter(list(self._items))
