"""An embedded SeriesStore on SQLite with InfluxDB's semantics, for the demo and small sites."""

from __future__ import annotations

import asyncio
import itertools
import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import unquote

from stackpulse.kernel.store.base import (
    FieldValue,
    Point,
    Row,
    StoreError,
    StoreRejected,
    StoreUnavailable,
)
from stackpulse.kernel.store.influxql import SELECTORS, Agg, Query, make_row, sort_rows
from stackpulse.kernel.store.lineprotocol import encode_point

__all__ = ["SqliteStore"]

_T = TypeVar("_T")
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_MAX_BUCKETS = 1_000_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS points (
    measurement TEXT NOT NULL,
    tags_json TEXT NOT NULL,
    ts_ns INTEGER NOT NULL,
    fields_json TEXT NOT NULL,
    UNIQUE (measurement, tags_json, ts_ns)
);
CREATE TABLE IF NOT EXISTS series (
    measurement TEXT NOT NULL,
    tags_json TEXT NOT NULL,
    PRIMARY KEY (measurement, tags_json)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS field_types (
    measurement TEXT NOT NULL,
    field TEXT NOT NULL,
    type TEXT NOT NULL,
    PRIMARY KEY (measurement, field)
) WITHOUT ROWID;
"""
# InfluxDB overwrites a point with the same series and timestamp, field by field.
_UPSERT = """
INSERT INTO points (measurement, tags_json, ts_ns, fields_json) VALUES (?, ?, ?, ?)
ON CONFLICT (measurement, tags_json, ts_ns)
DO UPDATE SET fields_json = json_patch(points.fields_json, excluded.fields_json)
"""


_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True)


@lru_cache(maxsize=16384)
def _tags_json(tags: tuple[tuple[str, str], ...]) -> str:
    """One canonical text per tag set: the series key. Empty values mean no tag, as in InfluxDB."""
    return _JSON.encode({k: v for k, v in tags if v})


def _field_type(value: FieldValue) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    return "string"


@lru_cache(maxsize=4096)
def _stored_key(key: str) -> str:
    """A field key as kept in ``fields_json``: %-escaped so a JSON path ``$."key"`` can name it.

    SQLite's JSON paths have no escapes, and match a key's JSON text, not its value.
    """
    if not any(c in '"\\%' or c < " " for c in key):
        return key
    return "".join(f"%{ord(c):02X}" if c in '"\\%' or c < " " else c for c in key)


class _Fields:
    """SQL expressions reading fields out of ``fields_json``, each path a bound parameter."""

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}
        self._names: dict[str, str] = {}

    def _param(self, key: str) -> str:
        name = self._names.get(key)
        if name is None:
            name = self._names[key] = f"k{len(self._names)}"
            self.params[name] = f'$."{_stored_key(key)}"'
        return name

    def number(self, key: str) -> str:
        return f"json_extract(points.fields_json, :{self._param(key)})"

    def json(self, key: str) -> str:
        return f"(points.fields_json -> :{self._param(key)})"


class SqliteStore:
    """A SeriesStore in one SQLite file (WAL), driven from one dedicated worker thread."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        self._conn: sqlite3.Connection | None = None
        self._field_types: dict[tuple[str, str], str] = {}
        self._series: set[tuple[str, str]] = set()
        self._closed = False

    @classmethod
    def from_url(cls, url: str) -> SqliteStore:
        """``sqlite:///absolute/path.db`` or ``sqlite:///:memory:``."""
        if not url.startswith("sqlite://"):
            raise ValueError(f"a SQLite store URL starts with sqlite://, not {url.split(':')[0]!r}")
        path = unquote(url.removeprefix("sqlite://").split("?", 1)[0])
        if path == "/:memory:":
            return cls(":memory:")
        if not path.startswith("/") or path == "/":
            raise ValueError(
                "a SQLite store URL is sqlite:///absolute/path.db or sqlite:///:memory:"
            )
        return cls(path)

    def __repr__(self) -> str:
        return f"SqliteStore({self.path!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def ping(self) -> None:
        await self._run(lambda conn: conn.execute("SELECT 1").fetchone())

    async def ensure_database(self) -> None:
        await self.ping()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await asyncio.get_running_loop().run_in_executor(self._executor, self._disconnect)
        self._executor.shutdown(wait=False)

    async def write(self, points: Sequence[Point]) -> None:
        if points:
            batch = list(points)  # the caller may reuse its list while the worker writes
            await self._run(lambda conn: self._write(conn, batch))

    async def query(self, q: Query) -> list[Row]:
        if any(c.variable for c in q.where) or q.group_by_time == "auto":
            raise ValueError("Grafana variables and time(auto) only render for Grafana")
        return await self._run(lambda conn: self._query(conn, q))

    async def raw_query(self, influxql: str) -> list[dict[str, Any]]:
        raise NotImplementedError(
            "the SQLite store runs typed queries only; raw InfluxQL needs an InfluxDB store "
            "(--store/STACKPULSE_STORE influxdb://host:8086/db)"
        )

    async def _run(self, job: Callable[[sqlite3.Connection], _T]) -> _T:
        if self._closed:
            raise StoreError(f"the SQLite store at {self.path} is closed")
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, self._in_worker, job
        )

    def _in_worker(self, job: Callable[[sqlite3.Connection], _T]) -> _T:
        try:
            return job(self._connect())
        except sqlite3.OperationalError as e:
            raise StoreUnavailable(f"SQLite store at {self.path} is unavailable: {e}") from e
        except sqlite3.Error as e:
            raise StoreError(f"SQLite store at {self.path} failed: {e}") from e

    def _connect(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None)
        except (sqlite3.Error, OSError) as e:
            raise StoreUnavailable(f"SQLite store at {self.path} cannot be opened: {e}") from e
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=5000")
            conn.executescript(_SCHEMA)
            types = conn.execute("SELECT measurement, field, type FROM field_types").fetchall()
            series = conn.execute("SELECT measurement, tags_json FROM series").fetchall()
        except sqlite3.Error as e:
            conn.close()
            raise StoreUnavailable(f"SQLite store at {self.path} cannot be opened: {e}") from e
        self._field_types = {(m, f): t for m, f, t in types}
        self._series = set(series)
        self._conn = conn
        return conn

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _write(self, conn: sqlite3.Connection, points: Sequence[Point]) -> None:
        rows: list[tuple[str, str, int, str]] = []
        new_types: dict[tuple[str, str], str] = {}
        reasons: list[str] = []
        for p in points:
            reason = self._reject_reason(p, new_types)
            if reason:
                reasons.append(reason)
                continue
            tags = _tags_json(tuple(p.tags.items()))
            fields = {_stored_key(k): v for k, v in p.fields.items()}
            rows.append((p.measurement, tags, p.ts_ns, _JSON.encode(fields)))
        new_series = {(m, t) for m, t, _, _ in rows} - self._series
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(_UPSERT, rows)
            conn.executemany("INSERT OR IGNORE INTO series VALUES (?, ?)", new_series)
            conn.executemany(
                "INSERT OR IGNORE INTO field_types VALUES (?, ?, ?)",
                [(m, f, t) for (m, f), t in new_types.items()],
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self._series |= new_series
        self._field_types.update(new_types)
        if reasons:
            raise StoreRejected(
                f"{len(reasons)} of {len(points)} points not written: {'; '.join(reasons[:3])}",
                dropped=len(reasons),
            )

    def _reject_reason(self, p: Point, new_types: dict[tuple[str, str], str]) -> str | None:
        try:
            encode_point(p).encode()  # what InfluxDB would refuse, this store refuses too
        except ValueError as e:
            return str(e)
        fresh = []
        for field, value in p.fields.items():
            key = (p.measurement, field)
            kind = _field_type(value)
            known = self._field_types.get(key) or new_types.get(key)
            if known is None:
                fresh.append((key, kind))
            elif known != kind:
                return (
                    f"field type conflict: input field {field!r} on measurement "
                    f"{p.measurement!r} is type {kind}, already exists as type {known}"
                )
        new_types.update(fresh)
        return None

    def _groups(self, conn: sqlite3.Connection, q: Query) -> dict[str, tuple[str, ...]]:
        """Matching series' tags_json -> their group-by tag values."""
        found = conn.execute("SELECT tags_json FROM series WHERE measurement = ?", (q.measurement,))
        groups: dict[str, tuple[str, ...]] = {}
        for (tags_json,) in found:
            tags: dict[str, str] = json.loads(tags_json)
            if all(tags.get(c.key, "") == c.value for c in q.where):
                groups[tags_json] = tuple(tags.get(t, "") for t in q.group_by_tags)
        return groups

    def _query(self, conn: sqlite3.Connection, q: Query) -> list[Row]:
        groups = self._groups(conn, q)
        if not groups:
            return []
        interval = q.interval_ns
        lo = q.start_ns if q.start_ns is not None else _INT64_MIN
        hi = q.end_ns
        if hi is None:
            # InfluxDB ends GROUP BY time() queries without an end at now().
            hi = time.time_ns() + 1 if interval is not None else _INT64_MAX
        labels = {tags_json: json.dumps(group) for tags_json, group in groups.items()}
        fields = _Fields()
        params: dict[str, Any] = {
            "groups": json.dumps(list(labels.items())),
            "m": q.measurement,
            "lo": lo,
            "hi": hi,
            "iv": interval or 1,
        }
        by_label = {label: groups[tags_json] for tags_json, label in labels.items()}
        if q.is_raw:
            found = self._raw(conn, q, fields, params)
        else:
            found = self._aggregate(conn, q, fields, params, lo, hi)
        return sort_rows(
            q,
            [
                (ts, by_label[label], make_row(q, ts, values, by_label[label]))
                for label, ts, values in found
            ],
        )

    @staticmethod
    def _source(fields: _Fields, columns: str, keys: list[str]) -> str:
        present = " OR ".join(f"{fields.json(k)} IS NOT NULL" for k in keys)
        return (
            "WITH g(tags_json, grp) AS (SELECT value ->> 0, value ->> 1 FROM json_each(:groups)) "
            f"SELECT g.grp AS grp, points.ts_ns AS ts, {columns} "
            "FROM g CROSS JOIN points "
            "WHERE points.measurement = :m AND points.tags_json = g.tags_json "
            f"AND points.ts_ns >= :lo AND points.ts_ns < :hi AND ({present})"
        )

    def _raw(
        self, conn: sqlite3.Connection, q: Query, fields: _Fields, params: dict[str, Any]
    ) -> list[tuple[str, int, dict[str, Any]]]:
        keys = [a.field for a in q.fields]
        columns = ", ".join(f"{fields.json(k)} AS v{i}" for i, k in enumerate(keys))
        order = "DESC" if q.order_desc else "ASC"
        sql = (
            f"SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY grp ORDER BY ts {order}) "
            f"AS rn FROM ({self._source(fields, columns, keys)})) WHERE rn <= :limit"
        )
        params.update(fields.params, limit=q.limit or _INT64_MAX)
        out = []
        for grp, ts, *values, _ in conn.execute(sql, params):
            decoded = [None if v is None else json.loads(v) for v in values]
            out.append((grp, ts, {a.column: v for a, v in zip(q.fields, decoded, strict=True)}))
        return out

    def _aggregate(
        self,
        conn: sqlite3.Connection,
        q: Query,
        fields: _Fields,
        params: dict[str, Any],
        lo: int,
        hi: int,
    ) -> list[tuple[str, int, dict[str, Any]]]:
        keys = sorted({a.field for a in q.fields})
        idx = {k: i for i, k in enumerate(keys)}
        bucket = "ts - (((ts % :iv) + :iv) % :iv)" if q.interval_ns else "0"
        cols = [f"{fields.number(k)} AS n{i}, {fields.json(k)} AS j{i}" for i, k in enumerate(keys)]
        source = self._source(fields, ", ".join(cols), keys)
        windows = []
        selects = []
        for n, a in enumerate(q.fields):
            i = idx[a.field]
            part = f"PARTITION BY grp, bucket, j{i} IS NULL"
            if a.func in ("first", "last"):
                order = "ts" if a.func == "first" else "ts DESC"
                windows.append(f"first_value(j{i}) OVER ({part} ORDER BY {order}) AS w{n}")
                windows.append(f"first_value(ts) OVER ({part} ORDER BY {order}) AS t{n}")
                selects.append(f"max(CASE WHEN j{i} IS NOT NULL THEN w{n} END)")
            elif a.func in ("min", "max"):
                order = f"n{i} {'DESC' if a.func == 'max' else 'ASC'}, ts"
                windows.append(f"first_value(ts) OVER ({part} ORDER BY {order}) AS t{n}")
                selects.append(f"{a.func}(n{i})")
            else:
                windows.append(f"NULL AS t{n}")
                sql_func = _SQL_AGG[a.func or ""]
                selects.append(f"count(j{i})" if a.func == "count" else f"{sql_func}(n{i})")
            selects.append(f"max(CASE WHEN j{i} IS NOT NULL THEN t{n} END)")
            selects.append(f"count(j{i})")
        sql = (
            f"SELECT grp, bucket, {', '.join(selects)} FROM (SELECT *, {', '.join(windows)} "
            f"FROM (SELECT *, {bucket} AS bucket FROM ({source}))) GROUP BY grp, bucket"
        )
        params.update(fields.params)
        per_group: dict[str, dict[int, list[tuple[Any, Any, int]]]] = {}
        for grp, b, *flat in conn.execute(sql, params):
            cells = [
                (self._decode(a, flat[3 * n]), flat[3 * n + 1], flat[3 * n + 2])
                for n, a in enumerate(q.fields)
            ]
            per_group.setdefault(grp, {})[b] = cells
        if q.interval_ns is None:
            return self._single_rows(q, per_group)
        return self._bucket_rows(q, per_group, q.interval_ns, lo, hi)

    @staticmethod
    def _decode(a: Agg, value: Any) -> Any:
        if a.func in ("first", "last") and value is not None:
            return json.loads(value)
        return value

    @staticmethod
    def _single_rows(
        q: Query, per_group: dict[str, dict[int, list[tuple[Any, Any, int]]]]
    ) -> list[tuple[str, int, dict[str, Any]]]:
        # InfluxDB stamps a lone selector with its point's time, anything else with the start.
        lone_selector = len(q.fields) == 1 and q.fields[0].func in SELECTORS
        out = []
        for grp, buckets in per_group.items():
            cells = buckets[0]
            ts = cells[0][1] if lone_selector else (q.start_ns or 0)
            out.append((grp, ts, {a.column: c[0] for a, c in zip(q.fields, cells, strict=True)}))
        return out

    @staticmethod
    def _bucket_rows(
        q: Query,
        per_group: dict[str, dict[int, list[tuple[Any, Any, int]]]],
        interval: int,
        lo: int,
        hi: int,
    ) -> list[tuple[str, int, dict[str, Any]]]:
        if q.fill == "none":
            spans = {grp: sorted(b) for grp, b in per_group.items()}
        else:
            first = (
                lo - lo % interval
                if q.start_ns is not None
                else min(min(b) for b in per_group.values())
            )
            last = (hi - 1) - (hi - 1) % interval
            count = (last - first) // interval + 1
            if count > _MAX_BUCKETS:
                raise StoreRejected(
                    f"the query spans {count} time buckets per series: narrow its range "
                    "or widen GROUP BY time()"
                )
            span = list(range(first, last + 1, interval))
            spans = dict.fromkeys(per_group, span)
        out = []
        for grp, buckets in per_group.items():
            columns = [
                _fill(a, [(b, buckets[b][n] if b in buckets else None) for b in spans[grp]], q.fill)
                for n, a in enumerate(q.fields)
            ]
            rows = list(zip(spans[grp], *columns, strict=True))
            if q.order_desc:
                rows.reverse()
            for b, *values in rows[: q.limit]:
                out.append((grp, b, {a.column: v for a, v in zip(q.fields, values, strict=True)}))
        return out


_SQL_AGG = {"mean": "avg", "sum": "sum", "count": "count"}


def _fill(
    a: Agg, cells: list[tuple[int, tuple[Any, Any, int] | None]], fill: str | None
) -> list[Any]:
    """One column over every bucket, empty ones filled the way InfluxDB's fill() does."""
    values: list[Any] = [c[0] if c is not None and c[2] else None for _, c in cells]
    empty = [c is None or not c[2] for _, c in cells]
    if fill in (None, "null"):
        return [0 if e and a.func == "count" else v for v, e in zip(values, empty, strict=True)]
    if fill == "none":
        return values
    if fill == "previous":
        out: list[Any] = []
        for v, e in zip(values, empty, strict=True):
            out.append(out[-1] if e and out else v)
        return out
    if fill == "linear":
        return _linear([b for b, _ in cells], values, empty)
    constant = float(fill) if "." in fill else int(fill)
    return [constant if e else v for v, e in zip(values, empty, strict=True)]


def _linear(buckets: list[int], values: list[Any], empty: list[bool]) -> list[Any]:
    known = [i for i, e in enumerate(empty) if not e and isinstance(values[i], int | float)]
    out = list(values)
    for left, right in itertools.pairwise(known):
        span = buckets[right] - buckets[left]
        for i in range(left + 1, right):
            share = (buckets[i] - buckets[left]) / span
            value = values[left] + (values[right] - values[left]) * share
            # Integer columns stay integers, truncated as InfluxDB does.
            out[i] = int(value) if isinstance(values[left], int) else value
    return out
