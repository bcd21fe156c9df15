"""Faults that transform the message stream: duplicated and late deliveries."""

from __future__ import annotations

import dataclasses
import heapq
import random
from collections.abc import Iterable

from stackpulse.kernel.topics import Channel
from stackpulse.simulators.config import Faults
from stackpulse.simulators.devices import Message


class StreamFaults:
    """Applied to the model's output in order, so a seed still fixes the whole stream.

    Late and duplicated copies wait here until their delivery time; what is released is
    in delivery (`at`) order. Birth and Will messages are never touched: the broker's
    retained status is about the connection, not the device's data path.
    """

    def __init__(self, faults: Faults, rng: random.Random) -> None:
        self.faults = faults
        self.rng = rng
        self._held: list[tuple[float, int, Message]] = []
        self._n = 0

    @property
    def active(self) -> bool:
        return bool(self.faults.duplicate_p or self.faults.late_p or self._held)

    def held(self) -> int:
        return len(self._held)

    def _hold(self, msg: Message) -> None:
        self._n += 1
        heapq.heappush(self._held, (msg.at, self._n, msg))

    def apply(self, msgs: Iterable[Message], until: float) -> list[Message]:
        f, rng = self.faults, self.rng
        for msg in msgs:
            if msg.channel is Channel.DATA and f.late_p and rng.random() < f.late_p:
                msg = dataclasses.replace(msg, at=msg.at + rng.uniform(*f.late_delay))
            self._hold(msg)
            if msg.channel is Channel.DATA and f.duplicate_p and rng.random() < f.duplicate_p:
                again = msg.at + rng.uniform(0, f.duplicate_delay_max)
                self._hold(dataclasses.replace(msg, at=again))
        out: list[Message] = []
        while self._held and self._held[0][0] <= until:
            out.append(heapq.heappop(self._held)[2])
        return out
