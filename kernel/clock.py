"""Clocks: the one place that reads the time, so logic can take `now` as an argument."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Wall or simulated time; `sleep` takes seconds of this clock's time."""

    def now(self) -> datetime: ...

    async def sleep(self, seconds: float) -> None: ...

    @property
    def speed(self) -> float: ...


class SystemClock:
    """Real time."""

    speed = 1.0

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


@dataclass
class ScaledClock:
    """Simulated time running `speed` times faster than the wall, from `start`.

    Components that share one ScaledClock agree on the time; the demo and the tests give
    the simulator, gateway and services the same instance.
    """

    start: datetime
    speed: float = 1.0
    _wall0: float = field(default_factory=time.monotonic)
    _paused_at: datetime | None = None

    def __post_init__(self) -> None:
        if self.speed <= 0:
            raise ValueError("clock speed must be positive")
        if self.start.tzinfo is None:
            raise ValueError("clock start must be timezone-aware")

    def now(self) -> datetime:
        if self._paused_at is not None:
            return self._paused_at
        return self.start + timedelta(seconds=(time.monotonic() - self._wall0) * self.speed)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.speed)

    def pause(self) -> None:
        """Stop time (a demo on hold, a test taking a consistent look)."""
        self._paused_at = self.now()

    def resume(self) -> None:
        """Go on from where time was paused."""
        if self._paused_at is not None:
            self.start, self._wall0, self._paused_at = self._paused_at, time.monotonic(), None

    def advance(self, seconds: float) -> None:
        """Jump forward (paused or not)."""
        if self._paused_at is not None:
            self._paused_at += timedelta(seconds=seconds)
        else:
            self.start += timedelta(seconds=seconds)


def parse_clock(spec: str) -> Clock:
    """`system`, or `sim:<RFC 3339 start>[x<speed>]`, e.g. `sim:2026-11-24T06:00:00Zx60`."""
    if spec == "system":
        return SystemClock()
    if spec.startswith("sim:"):
        body = spec[4:]
        start_s, _, speed_s = body.partition("x")
        try:
            start = datetime.fromisoformat(start_s)
            speed = float(speed_s) if speed_s else 1.0
        except ValueError:
            raise ValueError(
                f"clock {spec!r}: expected sim:<RFC 3339 start>x<speed>, "
                "e.g. sim:2026-11-24T06:00:00Zx60"
            ) from None
        if start.tzinfo is None:
            raise ValueError(f"clock {spec!r}: the start needs a UTC offset (Z)")
        return ScaledClock(start, speed)
    raise ValueError(f"clock {spec!r}: expected 'system' or 'sim:<start>x<speed>'")
