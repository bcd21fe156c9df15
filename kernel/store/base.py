"""Points, rows, errors and the interface every time-series store implements."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, runtime_checkable

if TYPE_CHECKING:
    from stackpulse.kernel.store.influxql import Query

FieldValue: TypeAlias = float | int | str | bool
Row: TypeAlias = dict[str, Any]
"""A result row: ``time`` (aware UTC datetime), a key per selected column and group-by tag."""


@dataclass(frozen=True, slots=True)
class Point:
    """One point of one series: InfluxDB's data model, whatever the store."""

    measurement: str
    tags: Mapping[str, str]
    fields: Mapping[str, FieldValue]
    ts_ns: int


class StoreError(Exception):
    """A store operation failed; the message says which store and why."""


class StoreUnavailable(StoreError):
    """The store cannot be reached or is overloaded right now: retry later, data is intact."""


class StoreRejected(StoreError):
    """The store refused the points or the query as invalid: retrying the same input cannot help.

    ``dropped`` counts the points that were not written; the others in the same call were.
    """

    def __init__(self, message: str, *, dropped: int = 0) -> None:
        super().__init__(message)
        self.dropped = dropped


class SeriesStore(Protocol):
    """An async time-series store: InfluxDB in production, SQLite embedded."""

    async def write(self, points: Sequence[Point]) -> None:
        """Write points; same series and timestamp overwrites (merging fields)."""
        ...

    async def query(self, q: Query) -> list[Row]:
        """Run a typed query; rows ordered by time, then by group-by tag values."""
        ...

    async def raw_query(self, influxql: str) -> list[dict[str, Any]]:
        """Run InfluxQL as is (InfluxDB only)."""
        ...

    async def ping(self) -> None:
        """Raise StoreUnavailable, naming the store, unless it answers."""
        ...

    async def close(self) -> None:
        """Release connections; idempotent."""
        ...


@runtime_checkable
class LineStore(Protocol):
    """A store that also takes InfluxDB line protocol as it is."""

    async def write_lines(self, body: bytes, count: int) -> None:
        """Write `count` newline-separated lines; StoreRejected names what was refused."""
        ...
