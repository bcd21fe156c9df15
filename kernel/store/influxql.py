"""A small typed InfluxQL query model, rendered for InfluxDB or for Grafana panels."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from stackpulse.kernel.store.base import Row

__all__ = [
    "AGG_FUNCS",
    "FILLS",
    "SELECTORS",
    "Agg",
    "Query",
    "TagEq",
    "duration_ns",
    "make_row",
    "ns_to_datetime",
    "quote_ident",
    "quote_string",
    "render",
    "sort_rows",
]

AGG_FUNCS: Final = frozenset({"mean", "max", "min", "last", "first", "sum", "count"})
SELECTORS: Final = frozenset({"max", "min", "last", "first"})
"""Aggregates that pick one point, so a lone one without GROUP BY time() keeps its time."""
FILLS: Final = frozenset({"null", "none", "previous", "linear"})

_UNIT_NS: Final = {
    "ns": 1,
    "u": 1_000,
    "µ": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
    "d": 86400 * 1_000_000_000,
    "w": 7 * 86400 * 1_000_000_000,
}
_DURATION = re.compile(r"(?:\d+(?:ns|u|µ|ms|s|m|h|d|w))+")
_DURATION_PART = re.compile(r"(\d+)(ns|u|µ|ms|s|m|h|d|w)")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_VARIABLE = re.compile(
    r"\$\{?[A-Za-z_][A-Za-z0-9_]*(?::[A-Za-z]+)?\}?|\[\[[A-Za-z_][A-Za-z0-9_]*\]\]"
)
_IDENT_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n"})
_STRING_ESCAPES = str.maketrans({"\\": "\\\\", "'": "\\'", "\n": "\\n"})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _no_nul(text: str) -> None:
    if "\x00" in text:
        raise ValueError(f"{text!r}: InfluxQL cannot hold a NUL character")


def quote_ident(name: str) -> str:
    """An InfluxQL identifier in double quotes."""
    _no_nul(name)
    return '"' + name.translate(_IDENT_ESCAPES) + '"'


def quote_string(value: str) -> str:
    """An InfluxQL string literal in single quotes."""
    _no_nul(value)
    return "'" + value.translate(_STRING_ESCAPES) + "'"


def duration_ns(value: timedelta | str) -> int:
    """Nanoseconds in a timedelta or an InfluxQL duration literal such as ``5m`` or ``1h30m``."""
    if isinstance(value, timedelta):
        return (value // timedelta(microseconds=1)) * 1_000
    if not _DURATION.fullmatch(value):
        raise ValueError(f"{value!r} is not an InfluxQL duration such as 10s, 5m, 1h, 1d")
    return sum(int(n) * _UNIT_NS[unit] for n, unit in _DURATION_PART.findall(value))


def _duration_literal(ns: int) -> str:
    for unit in ("w", "d", "h", "m", "s", "ms", "u"):
        if ns % _UNIT_NS[unit] == 0:
            return f"{ns // _UNIT_NS[unit]}{unit}"
    return f"{ns}ns"


def _to_ns(moment: datetime) -> int:
    delta = moment - _EPOCH
    return (delta // timedelta(microseconds=1)) * 1_000


@dataclass(frozen=True, slots=True)
class Agg:
    """One selected column: ``func(field)``, or the raw field when ``func`` is None."""

    func: str | None
    field: str
    alias: str | None = None

    def __post_init__(self) -> None:
        if self.func is not None and self.func not in AGG_FUNCS:
            raise ValueError(f"aggregate {self.func!r} is not one of {sorted(AGG_FUNCS)}")
        if not self.field:
            raise ValueError("a selected field needs a name")

    @property
    def column(self) -> str:
        """The result column's name, as InfluxDB names it."""
        return self.alias or self.func or self.field


@dataclass(frozen=True, slots=True)
class TagEq:
    """``tag = 'value'``; ``variable=True`` makes the value a Grafana variable like ``$site``."""

    key: str
    value: str
    variable: bool = False

    def __post_init__(self) -> None:
        if self.variable and not _VARIABLE.fullmatch(self.value):
            raise ValueError(f"{self.value!r} is not a Grafana variable such as $site")


@dataclass(frozen=True, slots=True)
class Query:
    """SELECT over one measurement; the same object runs on InfluxDB, SQLite and in Grafana."""

    measurement: str
    fields: tuple[Agg, ...]
    where: tuple[TagEq, ...] = ()
    start: datetime | None = None
    end: datetime | None = None
    group_by_time: timedelta | str | None = None
    group_by_tags: tuple[str, ...] = ()
    fill: str | None = None
    order_desc: bool = False
    limit: int | None = None

    def __post_init__(self) -> None:
        if not self.measurement:
            raise ValueError("a query needs a measurement")
        if not self.fields:
            raise ValueError("a query needs at least one field")
        for moment in (self.start, self.end):
            if moment is not None and moment.utcoffset() is None:
                raise ValueError(f"query time {moment.isoformat()} has no time zone")
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise ValueError("query start must be before its end")
        raw = [a.func is None for a in self.fields]
        if any(raw) and not all(raw):
            raise ValueError("a query selects either raw fields or aggregates, not both")
        if self.is_raw and (self.group_by_time is not None or self.fill is not None):
            raise ValueError("GROUP BY time() and fill() need aggregates")
        if self.interval_ns is not None and self.interval_ns <= 0:
            raise ValueError("GROUP BY time() needs a positive interval")
        if self.fill is not None:
            if self.group_by_time is None:
                raise ValueError("fill() needs GROUP BY time()")
            if self.fill not in FILLS and not _NUMBER.fullmatch(self.fill):
                raise ValueError(f"fill {self.fill!r} is not one of {sorted(FILLS)} or a number")
        if self.limit is not None and self.limit <= 0:
            raise ValueError("limit must be positive")
        names = [a.column for a in self.fields]
        clashes = {n for n in names if names.count(n) > 1} | (
            set(names) & (set(self.group_by_tags) | {"time"})
        )
        if clashes or len(set(self.group_by_tags)) != len(self.group_by_tags):
            raise ValueError(
                f"columns {sorted(clashes) or list(self.group_by_tags)} are not unique: "
                "give aliases or drop repeated tags"
            )

    @property
    def is_raw(self) -> bool:
        return self.fields[0].func is None

    @property
    def interval_ns(self) -> int | None:
        """The GROUP BY time() interval, None when not grouped by time (or left to Grafana)."""
        if self.group_by_time is None or self.group_by_time == "auto":
            return None
        return duration_ns(self.group_by_time)

    @property
    def start_ns(self) -> int | None:
        return None if self.start is None else _to_ns(self.start)

    @property
    def end_ns(self) -> int | None:
        return None if self.end is None else _to_ns(self.end)


def _select(agg: Agg) -> str:
    expr = quote_ident(agg.field) if agg.func is None else f"{agg.func}({quote_ident(agg.field)})"
    return expr if agg.alias is None else f"{expr} AS {quote_ident(agg.alias)}"


def _condition(cond: TagEq) -> str:
    if cond.variable:
        return f"{quote_ident(cond.key)} =~ /^{cond.value}$/"
    return f"{quote_ident(cond.key)} = {quote_string(cond.value)}"


def _time_literal(moment: datetime) -> str:
    return quote_string(moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))


def render(q: Query, *, grafana: bool = False) -> str:
    """InfluxQL text for ``q``; for Grafana the time range is ``$timeFilter``."""
    conditions = [_condition(c) for c in q.where]
    if grafana:
        conditions.append("$timeFilter")
    else:
        if any(c.variable for c in q.where):
            raise ValueError("Grafana variables only render with grafana=True")
        if q.start is not None:
            conditions.append(f"time >= {_time_literal(q.start)}")
        if q.end is not None:
            conditions.append(f"time < {_time_literal(q.end)}")
    text = f"SELECT {', '.join(map(_select, q.fields))} FROM {quote_ident(q.measurement)}"
    if conditions:
        text += " WHERE " + " AND ".join(conditions)
    groups = [quote_ident(t) for t in q.group_by_tags]
    if q.group_by_time == "auto":
        if not grafana:
            raise ValueError("GROUP BY time(auto) only renders with grafana=True")
        groups.insert(0, "time($__interval)")
    elif q.group_by_time is not None:
        groups.insert(0, f"time({_duration_literal(duration_ns(q.group_by_time))})")
    if groups:
        text += " GROUP BY " + ", ".join(groups)
    if q.fill is not None:
        text += f" fill({q.fill})"
    if q.order_desc:
        text += " ORDER BY time DESC"
    if q.limit is not None:
        text += f" LIMIT {q.limit}"
    return text


def ns_to_datetime(ns: int) -> datetime:
    """An aware UTC datetime (to the microsecond) from epoch nanoseconds."""
    return _EPOCH + timedelta(microseconds=ns // 1_000)


def make_row(q: Query, ts_ns: int, values: dict[str, Any], group: tuple[str, ...]) -> Row:
    row: Row = {"time": ns_to_datetime(ts_ns)}
    row.update(values)
    row.update(zip(q.group_by_tags, group, strict=True))
    return row


def sort_rows(q: Query, rows: list[tuple[int, tuple[str, ...], Row]]) -> list[Row]:
    """Rows by time (descending if asked), then by group-by tag values: the same on every store."""
    rows.sort(key=lambda r: r[1])
    rows.sort(key=lambda r: r[0], reverse=q.order_desc)
    return [r[2] for r in rows]
