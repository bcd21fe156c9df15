"""InfluxDB over its v1-compatible HTTP API: line protocol on /write, InfluxQL on /query."""

from __future__ import annotations

import asyncio
import gzip as gzip_lib
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, unquote, urlsplit

import httpx

from stackpulse.kernel.store.base import Point, Row, StoreError, StoreRejected, StoreUnavailable
from stackpulse.kernel.store.influxql import Query, make_row, quote_ident, render, sort_rows
from stackpulse.kernel.store.lineprotocol import encode_point

__all__ = ["InfluxStore", "InfluxTarget", "parse_influx_url"]

_SCHEMES = {"influxdb": "http", "influxdb+http": "http", "influxdb+https": "https"}
_DEFAULT_PORT = 8086
_DROPPED = re.compile(r"dropped=(\d+)")
_READ_ONLY = re.compile(r"\s*(SELECT|SHOW)\b", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class InfluxTarget:
    """Where and as whom to reach InfluxDB, parsed from a store URL."""

    http_url: str
    database: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)


def parse_influx_url(url: str) -> InfluxTarget:
    """``influxdb[+https]://[user:pass@]host[:port]/database[?token=...]``."""
    parts = urlsplit(url)
    scheme = _SCHEMES.get(parts.scheme)
    if scheme is None:
        raise ValueError(
            f"an InfluxDB URL starts with one of {sorted(_SCHEMES)}, not {parts.scheme!r}"
        )
    try:
        port = parts.port or _DEFAULT_PORT
    except ValueError:
        raise ValueError("the InfluxDB URL has an invalid port") from None
    host = parts.hostname
    if not host:
        raise ValueError("the InfluxDB URL has no host, e.g. influxdb://127.0.0.1:8086/stackpulse")
    database = unquote(parts.path.lstrip("/"))
    if not database or "/" in database:
        raise ValueError(
            "the InfluxDB URL must name one database as its path, e.g. influxdb://host:8086/stackpulse"
        )
    params = parse_qs(parts.query, keep_blank_values=True)
    unknown = set(params) - {"token"}
    if unknown:
        raise ValueError(f"the InfluxDB URL has unknown parameters {sorted(unknown)}; only ?token=")
    token = params["token"][-1] if "token" in params else None
    netloc_host = f"[{host}]" if ":" in host else host
    return InfluxTarget(
        http_url=f"{scheme}://{netloc_host}:{port}",
        database=database,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        token=token or None,
    )


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    text = response.headers.get("X-Influxdb-Error") or response.text[:300]
    return " ".join(text.split()) or response.reason_phrase


class InfluxStore:
    """A SeriesStore on InfluxDB 1.x, or 2.x/3.x through their v1 compatibility API."""

    def __init__(
        self,
        url: str,
        database: str,
        *,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        batch_lines: int = 5000,
        gzip: bool = True,
        timeout: float = 10.0,
        max_attempts: int = 4,
        backoff: float = 0.25,
        backoff_max: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if urlsplit(url).scheme not in ("http", "https"):
            raise ValueError(f"InfluxStore needs an http(s):// URL, not {url!r}")
        if batch_lines <= 0 or max_attempts <= 0 or timeout <= 0:
            raise ValueError("batch_lines, max_attempts and timeout must be positive")
        self.url = url.rstrip("/")
        self.database = database
        self._batch_lines = batch_lines
        self._gzip = gzip
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._backoff_max = backoff_max
        self._auth_params: dict[str, str] = {}
        headers = {"User-Agent": "stackpulse"}
        if token:
            headers["Authorization"] = f"Token {token}"
        elif username is not None:
            self._auth_params = {"u": username, "p": password or ""}
        self._client = httpx.AsyncClient(
            base_url=self.url, headers=headers, timeout=timeout, transport=transport
        )
        self._closed = False

    @classmethod
    def from_url(cls, url: str, **options: Any) -> InfluxStore:
        """Build from ``influxdb://...`` (see parse_influx_url); options go to the constructor."""
        t = parse_influx_url(url)
        return cls(
            t.http_url,
            t.database,
            username=t.username,
            password=t.password,
            token=t.token,
            **options,
        )

    def __repr__(self) -> str:
        return f"InfluxStore({self.url!r}, {self.database!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._client.aclose()

    async def ping(self) -> None:
        self._check_open()
        try:
            response = await self._client.get("/ping")
        except httpx.TransportError as e:
            raise StoreUnavailable(f"InfluxDB at {self.url} is unreachable: {_describe(e)}") from e
        if not response.is_success:
            raise StoreUnavailable(
                f"InfluxDB at {self.url} answered /ping with {response.status_code}: "
                f"{_error_text(response)}"
            )

    async def ensure_database(self) -> None:
        """CREATE DATABASE (idempotent on 1.x; 2.x/3.x create buckets their own way)."""
        await self._statements(f"CREATE DATABASE {quote_ident(self.database)}", with_db=False)

    async def write(self, points: Sequence[Point]) -> None:
        self._check_open()
        lines: list[str] = []
        reasons: list[str] = []
        for point in points:
            try:
                lines.append(encode_point(point))
            except ValueError as e:
                reasons.append(str(e))
        dropped = len(reasons)
        for i in range(0, len(lines), self._batch_lines):
            batch = lines[i : i + self._batch_lines]
            try:
                await self._write_batch("\n".join(batch))
            except StoreRejected as e:
                dropped += e.dropped or len(batch)
                reasons.append(str(e))
        if dropped:
            raise StoreRejected(
                f"{dropped} of {len(points)} points not written: {'; '.join(reasons[:3])}",
                dropped=dropped,
            )

    async def write_lines(self, body: bytes, count: int) -> None:
        """Write line protocol as it is (newline-separated, encoded by kernel.store.lineprotocol).

        For a writer that keeps points as line protocol already (the gateway's spool):
        nothing is decoded or encoded again. `count` is the number of lines, to say how
        many were refused.
        """
        self._check_open()
        try:
            await self._write_batch(body)
        except StoreRejected as e:
            raise StoreRejected(
                f"{e.dropped or count} of {count} points not written: {e}",
                dropped=e.dropped or count,
            ) from None

    async def query(self, q: Query) -> list[Row]:
        self._check_open()
        results = await self._statements(render(q))
        rows: list[tuple[int, tuple[str, ...], Row]] = []
        for result in results:
            for series in result.get("series", ()):
                tags = series.get("tags") or {}
                group = tuple(str(tags.get(t, "")) for t in q.group_by_tags)
                columns = series["columns"][1:]
                for ts, *values in series["values"]:
                    rows.append(
                        (ts, group, make_row(q, ts, dict(zip(columns, values, strict=True)), group))
                    )
        return sort_rows(q, rows)

    async def raw_query(self, influxql: str) -> list[dict[str, Any]]:
        """Rows of every statement's series: the series' tags plus its columns (time in ns)."""
        self._check_open()
        rows: list[dict[str, Any]] = []
        for result in await self._statements(influxql):
            for series in result.get("series", ()):
                tags = series.get("tags") or {}
                for values in series.get("values") or ():
                    rows.append({**tags, **dict(zip(series["columns"], values, strict=True))})
        return rows

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"the store for InfluxDB at {self.url} is closed")

    async def _write_batch(self, text: str | bytes) -> None:
        body = text.encode() if isinstance(text, str) else text
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if self._gzip:
            # Level 1: half the CPU of level 5 for 4% more bytes (5,000 lines: 3.4 vs
            # 6.4 ms, 44 vs 42 kB); the writer shares its process with the gateway.
            body = gzip_lib.compress(body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        params = {"db": self.database, "precision": "ns", **self._auth_params}
        response = await self._send("POST", "/write", params=params, content=body, headers=headers)
        if response.is_success:
            return
        message = _error_text(response)
        if response.status_code == 404:
            raise StoreError(
                f"InfluxDB at {self.url} has no database {self.database!r} ({message}): "
                "create it or fix --store/STACKPULSE_STORE"
            )
        if response.status_code in (400, 413, 422):
            match = _DROPPED.search(message)
            raise StoreRejected(
                f"InfluxDB rejected points: {message}",
                dropped=int(match.group(1)) if match else 0,
            )
        raise StoreError(f"InfluxDB at {self.url} answered {response.status_code}: {message}")

    async def _statements(self, text: str, *, with_db: bool = True) -> list[dict[str, Any]]:
        params = {"q": text, "epoch": "ns", **self._auth_params}
        if with_db:
            params["db"] = self.database
        if _READ_ONLY.match(text):
            response = await self._send("GET", "/query", params=params)
        else:
            response = await self._send("POST", "/query", data=params)
        if response.status_code == 400:
            raise StoreRejected(f"InfluxDB rejected the query: {_error_text(response)}")
        if not response.is_success:
            raise StoreError(
                f"InfluxDB at {self.url} answered {response.status_code}: {_error_text(response)}"
            )
        try:
            results: list[dict[str, Any]] = response.json()["results"]
        except (ValueError, KeyError, TypeError) as e:
            raise StoreError(f"InfluxDB at {self.url} answered a query with no results") from e
        for result in results:
            if "error" in result:
                error = str(result["error"])
                if error.startswith("database not found"):
                    raise StoreError(
                        f"InfluxDB at {self.url}: {error}; "
                        "create it or fix --store/STACKPULSE_STORE"
                    )
                raise StoreRejected(f"InfluxDB rejected the query: {error}")
        return results

    async def _send(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        data: dict[str, str] | None = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """One request, retried with jittered exponential backoff while InfluxDB is unavailable."""
        problem = ""
        for attempt in range(self._max_attempts):
            if attempt:
                ceiling = min(self._backoff_max, self._backoff * 2 ** (attempt - 1))
                await asyncio.sleep(random.uniform(ceiling / 2, ceiling))
            try:
                response = await self._client.request(
                    method, path, params=params, data=data, content=content, headers=headers
                )
            except httpx.TransportError as e:
                problem = f"unreachable ({_describe(e)})"
                continue
            if response.status_code >= 500 or response.status_code == 429:
                problem = f"unavailable (answered {response.status_code}: {_error_text(response)})"
                continue
            if response.status_code in (401, 403):
                raise StoreError(
                    f"InfluxDB at {self.url} refused the credentials ({_error_text(response)}): "
                    "fix user:password@ or ?token= in --store/STACKPULSE_STORE"
                )
            return response
        raise StoreUnavailable(
            f"InfluxDB at {self.url} is {problem} after {self._max_attempts} attempts"
        )


def _describe(error: httpx.TransportError) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
