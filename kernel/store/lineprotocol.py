"""Point -> InfluxDB line protocol, escaped the way every InfluxDB generation parses it."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache

from stackpulse.kernel.store.base import FieldValue, Point

__all__ = ["encode_point", "encode_points", "encode_series"]

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1

_MEASUREMENT_ESCAPES = str.maketrans({",": r"\,", " ": r"\ "})
_KEY_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})
_STRING_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"'})

# A line ends at a newline, and InfluxQL reads NUL as the end of a query: names and tag
# values holding either could be written but never read back.
_FORBIDDEN = re.compile(r"[\n\r\x00]")
# InfluxDB's parser reads "\" + next character as one escaped pair and unescapes some of
# "\," "\=" "\ " '\"' (which, depends on the part): a backslash right before one of those,
# or at the end, cannot round-trip.
_BAD_BACKSLASH = re.compile(r'\\(?=[,= "]|\Z)')


def _check_name(kind: str, value: str) -> None:
    if not value:
        raise ValueError(f"{kind} must not be empty")
    if _FORBIDDEN.search(value):
        raise ValueError(f"{kind} {value!r} contains a line break or NUL")
    if "\\" in value and _BAD_BACKSLASH.search(value):
        raise ValueError(
            f"{kind} {value!r} has a backslash before a comma, '=', space, '\"' or its end, "
            "which line protocol cannot represent"
        )


def _check_start(kind: str, value: str) -> None:
    # InfluxDB skips tabs before a measurement and before the field set.
    if value.startswith("\t"):
        raise ValueError(f"{kind} {value!r} starts with a tab, which InfluxDB drops")


@lru_cache(maxsize=1024)
def _measurement(name: str) -> str:
    _check_name("measurement", name)
    _check_start("measurement", name)
    if name.startswith("#"):
        raise ValueError(
            f"measurement {name!r} starts with '#', which line protocol reads as a comment"
        )
    return name.translate(_MEASUREMENT_ESCAPES)


@lru_cache(maxsize=4096)
def _key(kind: str, key: str) -> str:
    _check_name(kind, key)
    if key == "time":
        raise ValueError(f"{kind} 'time' is reserved by InfluxDB")
    if kind == "field key":
        _check_start(kind, key)
    return key.translate(_KEY_ESCAPES)


@lru_cache(maxsize=16384)
def _tag_value(value: str) -> str:
    _check_name("tag value", value)
    return value.translate(_KEY_ESCAPES)


def _field_value(key: str, value: FieldValue) -> str:
    # bool first: it is a subclass of int.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise ValueError(f"field {key!r}: integer {value} does not fit in 64 bits")
        return f"{value}i"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"field {key!r}: {value} is not a finite number")
        return repr(value)
    if isinstance(value, str):
        return '"' + value.translate(_STRING_ESCAPES) + '"'
    raise ValueError(f"field {key!r}: unsupported type {type(value).__name__}")


def encode_point(point: Point) -> str:
    """One line (no trailing newline); ValueError names what cannot be encoded."""
    if not point.fields:
        raise ValueError(f"point of {point.measurement!r} has no fields")
    ts = point.ts_ns
    if isinstance(ts, bool) or not isinstance(ts, int) or not _INT64_MIN < ts < _INT64_MAX:
        raise ValueError(f"timestamp {ts!r} is not a 64-bit nanosecond time")
    return f"{encode_series(point.measurement, point.tags)} {_field_set(point.fields)} {ts}"


def encode_series(measurement: str, tags: Mapping[str, str]) -> str:
    """A point's measurement and tags as they begin its line (ValueError if impossible)."""
    return _series(measurement, tuple(tags.items()))


@lru_cache(maxsize=65536)
def _series(measurement: str, tags: tuple[tuple[str, str], ...]) -> str:
    """Measurement and sorted tags, escaped: the same few thousand series over and over."""
    parts = [_measurement(measurement)]
    for k, v in sorted(tags):
        if v:  # InfluxDB has no empty tag values: an empty one means "no such tag"
            parts.append(f",{_key('tag key', k)}={_tag_value(v)}")
    return "".join(parts)


def _field_set(fields: Mapping[str, FieldValue]) -> str:
    out = []
    for k, v in fields.items():
        t = type(v)
        if t is int and _INT64_MIN <= v <= _INT64_MAX:  # type: ignore[operator]
            out.append(f"{_key('field key', k)}={v}i")
        elif t is bool:
            out.append(f"{_key('field key', k)}={'true' if v else 'false'}")
        else:
            out.append(f"{_key('field key', k)}={_field_value(k, v)}")
    return ",".join(out)


def encode_points(points: Iterable[Point]) -> str:
    """Lines joined by newlines; ValueError on the first point that cannot be encoded."""
    return "\n".join(map(encode_point, points))
