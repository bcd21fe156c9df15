"""Durations in settings: one convention everywhere, `90`, `90s`, `250ms`, `5m`, `2h`, `1d`."""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, PlainSerializer

_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?", re.IGNORECASE)
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?\s*(?:ms|s|m|h|d|w)?\s*)+", re.IGNORECASE)
_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
OFF = ("off", "none", "never")


def parse_duration(value: object) -> timedelta:
    """A duration: a timedelta, seconds as a number, or text such as `1h30m`, `250ms`, `15m`.

    A bare number is seconds. `off` (or `none`, `never`) is zero, which settings read as
    "disabled" where they say so. ValueError names the accepted forms.
    """
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or text like 90s, 5m, 2h, 1d")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise ValueError("a duration must be a finite number of seconds >= 0")
        return timedelta(seconds=value)
    if not isinstance(value, str):
        raise ValueError("a duration is a number of seconds or text like 90s, 5m, 2h, 1d")
    text = value.strip()
    if text.lower() in OFF:
        return timedelta(0)
    if not text or len(text) > 40 or not _WHOLE.fullmatch(text):
        raise ValueError(
            f"{value[:40]!r} is not a duration; use seconds or a number with ms, s, m, h, d "
            "or w (90, 250ms, 5m, 1h30m)"
        )
    seconds = sum(float(n) * _SECONDS[(unit or "s").lower()] for n, unit in _PART.findall(text))
    if not math.isfinite(seconds) or seconds > 10 * 365 * 86400:
        raise ValueError(f"{value[:40]!r} is longer than ten years")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The shortest text `parse_duration` reads back exactly: `15m`, `250ms`, `1h30m`."""
    ms = round(value.total_seconds() * 1000)
    if ms == 0:
        return "0s"
    out = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        n, ms = divmod(ms, size)
        if n:
            out.append(f"{n}{unit}")
    if ms:
        out.append(f"{ms}ms")
    return "".join(out)


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
]
"""A timedelta field read the house's way (`parse_duration`) and shown as `15m`."""


def seconds_of(value: object) -> float:
    return parse_duration(value).total_seconds()


Seconds = Annotated[float, BeforeValidator(seconds_of)]
"""A duration held as float seconds (for loops that sleep), read the same way as Duration."""


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be a positive duration")
    return value


PositiveDuration = Annotated[Duration, AfterValidator(_positive)]
"""A Duration that must be above zero (a period between ticks, a timeout)."""
