"""InfluxStore against a real InfluxDB 1.x, plus its HTTP handling against scripted answers."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest

from stackpulse.kernel.store import (
    Agg,
    InfluxStore,
    Point,
    Query,
    SqliteStore,
    StoreError,
    StoreRejected,
    StoreUnavailable,
    open_store,
    parse_influx_url,
)
from tests.support.procs import InfluxProc

T0_NS = int(datetime(2026, 11, 24, 10, tzinfo=UTC).timestamp()) * 1_000_000_000


class Recording(httpx.AsyncBaseTransport):
    """Passes requests through to the real server and keeps them."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def scripted(answers: list[httpx.Response], seen: list[httpx.Request]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers.pop(0)

    return httpx.MockTransport(handle)


def fast(transport: httpx.AsyncBaseTransport, max_attempts: int = 4) -> InfluxStore:
    return InfluxStore(
        "http://influx.test:8086",
        "db",
        transport=transport,
        backoff=0.001,
        max_attempts=max_attempts,
    )


@pytest.mark.integration
async def test_writes_gzipped_batches_of_batch_lines(influx_db: str) -> None:
    transport = Recording()
    async with InfluxStore.from_url(influx_db, batch_lines=5000, transport=transport) as store:
        points = [
            Point(
                "gate", {"site": "main", "gate": f"g{i % 4}"}, {"in": i, "out": i // 2}, T0_NS + i
            )
            for i in range(12_000)
        ]
        await store.write(points)
        writes = [r for r in transport.requests if r.url.path == "/write"]
        assert len(writes) == 3
        for request in writes:
            assert request.headers["Content-Encoding"] == "gzip"
            assert request.url.params["precision"] == "ns"
            assert len(gzip.decompress(request.content).splitlines()) <= 5000
        rows = await store.query(Query("gate", (Agg("count", "in"), Agg("sum", "out"))))
        assert rows[0]["count"] == 12_000
        assert rows[0]["sum"] == sum(i // 2 for i in range(12_000))


@pytest.mark.integration
async def test_rejections_carry_influxdbs_message(influx_db: str) -> None:
    async with InfluxStore.from_url(influx_db) as store:
        await store.write([Point("m", {}, {"f": 1}, T0_NS)])
        with pytest.raises(StoreRejected, match='field type conflict: input field "f"') as caught:
            await store.write([Point("m", {}, {"f": "text"}, T0_NS + 1)])
        assert caught.value.dropped == 1
        with pytest.raises(StoreRejected, match="error parsing query"):
            await store.raw_query("SELEC nonsense")


@pytest.mark.integration
async def test_raw_query_and_ensure_database(influxdb: InfluxProc, influx_db: str) -> None:
    database = "ensure_" + influx_db.rsplit("_", 1)[1]
    async with InfluxStore.from_url(influxdb.store_url(database)) as store:
        with pytest.raises(StoreError, match="database not found"):
            await store.write([Point("m", {"t": "a"}, {"f": 1.5}, T0_NS)])
        await store.ensure_database()
        await store.ensure_database()
        await store.write([Point("m", {"t": "a"}, {"f": 1.5}, T0_NS)])
        rows = await store.raw_query('SELECT "f" FROM "m" GROUP BY "t"; SHOW MEASUREMENTS')
        assert rows == [{"t": "a", "time": T0_NS, "f": 1.5}, {"name": "m"}]
        await store.raw_query(f'DROP DATABASE "{database}"')


@pytest.mark.integration
async def test_a_stopped_server_is_unavailable_then_back(fresh_influxdb: InfluxProc) -> None:
    fresh_influxdb.influxql('CREATE DATABASE "d"')
    async with InfluxStore.from_url(
        fresh_influxdb.store_url("d"), max_attempts=2, backoff=0.05
    ) as store:
        await store.write([Point("m", {}, {"f": 1}, T0_NS)])
        fresh_influxdb.stop()
        with pytest.raises(StoreUnavailable) as caught:
            await store.write([Point("m", {}, {"f": 2}, T0_NS + 1)])
        message = str(caught.value)
        assert fresh_influxdb.http_url in message and "unreachable" in message
        assert "\n" not in message
        with pytest.raises(StoreUnavailable, match=fresh_influxdb.http_url):
            await store.ping()
        fresh_influxdb.start()
        await store.ping()
        await store.write([Point("m", {}, {"f": 2}, T0_NS + 1)])
        rows = await store.query(Query("m", (Agg("count", "f"),)))
        assert rows[0]["count"] == 2


async def test_transient_errors_are_retried_with_backoff() -> None:
    seen: list[httpx.Request] = []
    answers = [
        httpx.Response(503, json={"error": "busy"}),
        httpx.Response(500),
        httpx.Response(204),
    ]
    async with fast(scripted(answers, seen)) as store:
        await store.write([Point("m", {}, {"f": 1}, 1)])
    assert len(seen) == 3


async def test_retries_are_bounded() -> None:
    seen: list[httpx.Request] = []
    answers = [httpx.Response(503, json={"error": "busy"})] * 3
    async with fast(scripted(answers, seen), max_attempts=3) as store:
        with pytest.raises(StoreUnavailable, match=r"busy.*3 attempts"):
            await store.write([Point("m", {}, {"f": 1}, 1)])
    assert len(seen) == 3


@pytest.mark.parametrize(
    ("status", "error", "kind"),
    [(400, StoreRejected, "bad"), (401, StoreError, "credentials"), (404, StoreError, "database")],
)
async def test_client_errors_are_not_retried(
    status: int, error: type[Exception], kind: str
) -> None:
    seen: list[httpx.Request] = []
    async with fast(scripted([httpx.Response(status, json={"error": "bad"})], seen)) as store:
        with pytest.raises(error, match=kind) as caught:
            await store.write([Point("m", {}, {"f": 1}, 1)])
    assert not isinstance(caught.value, StoreUnavailable)
    assert len(seen) == 1


Check = Callable[[httpx.Request], bool]


@pytest.mark.parametrize(
    ("url", "check"),
    [
        (
            "influxdb://reader:s%40cret@influx.test:8086/db",
            lambda r: r.url.params["u"] == "reader" and r.url.params["p"] == "s@cret",
        ),
        (
            "influxdb+https://influx.test/db?token=abc",
            lambda r: r.headers["Authorization"] == "Token abc" and r.url.scheme == "https",
        ),
    ],
)
async def test_credentials_travel_as_v1_params_or_token(url: str, check: Check) -> None:
    seen: list[httpx.Request] = []
    results = {"results": [{"statement_id": 0}]}
    transport = scripted([httpx.Response(204), httpx.Response(200, json=results)], seen)
    async with InfluxStore.from_url(url, transport=transport) as store:
        await store.write([Point("m", {}, {"f": 1}, 1)])
        await store.query(Query("m", (Agg("mean", "f"),)))
    assert all(check(r) for r in seen)
    assert seen[1].method == "GET" and seen[1].url.params["epoch"] == "ns"
    assert "s@cret" not in repr(store)


def test_influx_urls() -> None:
    t = parse_influx_url("influxdb://u:p%2F@[::1]:9999/my%20db?token=")
    assert (t.http_url, t.database, t.username, t.password, t.token) == (
        "http://[::1]:9999",
        "my db",
        "u",
        "p/",
        None,
    )
    assert parse_influx_url("influxdb+https://h/db").http_url == "https://h:8086"
    for bad, why in [
        ("influxdb://h:8086", "one database"),
        ("influxdb://h/a/b", "one database"),
        ("influxdb:///db", "no host"),
        ("influxdb://h:x/db", "port"),
        ("influxdb://h/db?rp=x", "unknown parameters"),
        ("http://h/db", "starts with"),
    ]:
        with pytest.raises(ValueError, match=why):
            parse_influx_url(bad)


def test_open_store_by_scheme() -> None:
    assert isinstance(open_store("influxdb://127.0.0.1:8086/stackpulse"), InfluxStore)
    assert isinstance(open_store("sqlite:///:memory:"), SqliteStore)
    with pytest.raises(ValueError, match=r"--store/STACKPULSE_STORE.*'redis'.*influxdb://"):
        open_store("redis://localhost/0")
    with pytest.raises(ValueError, match=r"--store/STACKPULSE_STORE.*one database"):
        open_store("influxdb://localhost:8086")
    with pytest.raises(ValueError) as caught:
        open_store("influxdb://u:secret@h:8086")
    assert "secret" not in str(caught.value)
