"""The gateway through faults, against real processes: store outage, kill -9, broker
restart, two gateways sharing one subscription. Nothing accepted is lost or doubled."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as paho
import paho.mqtt.publish as paho_publish
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from stackpulse.gateway.decode import index_sites
from stackpulse.gateway.service import Gateway, GatewaySettings
from stackpulse.gateway.spool import LINES, POINTS, Spool, SpoolLocked, encode_frame
from stackpulse.kernel.bus import parse_broker_url
from stackpulse.kernel.clock import SystemClock
from stackpulse.kernel.layout import Layout
from stackpulse.kernel.models import format_ts
from stackpulse.kernel.store.base import Point, SeriesStore
from stackpulse.kernel.store.factory import open_store
from stackpulse.kernel.store.lineprotocol import encode_point
from tests.support.procs import InfluxProc, MosquittoProc, free_port

pytestmark = pytest.mark.integration

SEATS = 50
LAYOUT_DOC = {
    "site": "main",
    "name": "Test Library",
    "zones": [{"id": "f1", "name": "Floor 1", "floor": 1, "capacity": 100}],
    "seats": [{"id": f"f1-{i:03d}", "device": f"seat-{i:04d}", "zone": "f1"} for i in range(SEATS)],
}
SITES = index_sites([Layout.model_validate(LAYOUT_DOC)])


# An hour ago: well inside the clock window, so capture times are the devices' own.
BASE = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


def body(seq: int) -> bytes:
    # Distinct capture times: one point per message, so counts show loss and doubling.
    ts = format_ts(BASE + timedelta(milliseconds=seq))
    return json.dumps({"ts": ts, "boot": 1, "seq": seq, "presence": "person"}).encode()


def publish(port: int, root: str, seqs: range, rate: float = 0.0) -> None:
    """QoS 1, waits for every PUBACK (the messages are then the broker's)."""
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{root}-{seqs.start}")
    c.max_inflight_messages_set(200)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port)
    c.loop_start()
    infos = []
    for seq in seqs:
        topic = f"{root}/main/seat/seat-{seq % SEATS:04d}/data"
        infos.append(c.publish(topic, body(seq), qos=1))
        if rate:
            time.sleep(1 / rate)
    for info in infos:
        info.wait_for_publish(30)
    c.disconnect()
    c.loop_stop()


async def count(store: SeriesStore) -> int:
    rows = await store.raw_query('SELECT count("seq") FROM "seat"')
    return int(rows[0]["count"]) if rows else 0


async def wait_listening(port: int, root: str, store: SeriesStore, timeout: float = 30) -> None:
    """Until a gateway process has subscribed: before that the broker keeps nothing for
    it, and a fixed sleep lost the first messages whenever the machine was slow."""
    probe = json.dumps({"online": True, "ts": format_ts(datetime.now(UTC))}).encode()
    async with asyncio.timeout(timeout):
        while True:
            await asyncio.to_thread(
                paho_publish.single,
                f"{root}/main/seat/seat-0000/status",
                probe,
                qos=1,
                hostname="127.0.0.1",
                port=port,
            )
            rows = await store.raw_query('SELECT count("online") FROM "device_status"')
            if rows and int(rows[0]["count"]) > 0:
                return
            await asyncio.sleep(0.2)


async def wait_count(store: SeriesStore, want: int, timeout: float) -> int:
    got = -1
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got = await count(store)
        except Exception:  # the store may be down for a moment
            got = -1
        if got >= want:
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(1.0)  # anything doubled or late would show now
    return await count(store)


@pytest.fixture
async def store(influx_db: str) -> AsyncIterator[SeriesStore]:
    s = open_store(influx_db)
    yield s
    await s.close()


def settings(root: str, tmp: Path, name: str, **over: object) -> GatewaySettings:
    return GatewaySettings(
        root=root,
        client_id=f"gw-{name}-{root.split('/')[1]}",
        spool=str(tmp / f"spool-{name}"),
        flush_interval=0.1,
        batch_size=500,
        **over,  # type: ignore[arg-type]
    )


async def start(gw: Gateway, url: str) -> asyncio.Task[None]:
    task = asyncio.create_task(gw.run(parse_broker_url(url)))
    async with asyncio.timeout(15):
        await gw.connected.wait()
    return task


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_spool_survives_a_crash_in_order_and_knows_its_bound(tmp_path: Path) -> None:
    points = [Point("seat", {"site": "main"}, {"seq": i, "ok": True}, i) for i in range(7)]
    bound = 6 * len(encode_frame(points[:1], POINTS)[0]) + 1
    spool = Spool(tmp_path, segment_points=3, max_bytes=bound)
    for p in points[:6]:
        spool.append(p)
    assert not spool.full
    spool.append(points[6])
    assert spool.full and spool.sealed_segments == 2
    with pytest.raises(SpoolLocked):
        Spool(tmp_path)  # one process per spool directory
    spool.close()
    # A crash mid-record: the tail of the open segment is cut short.
    open_file = sorted(tmp_path.glob("*" + POINTS))[-1]
    open_file.write_bytes(open_file.read_bytes() + b"\x00\x00\x01\x00partial")
    again = Spool(tmp_path, segment_points=3, max_bytes=bound)
    replayed: list[Point] = []
    while (seg := again.oldest()) is not None:
        replayed.extend(seg.points)
        again.done(seg.n)
    assert replayed == points
    assert again.bytes == 0 and not again.full


def test_line_protocol_spool_sends_segments_as_they_lie(tmp_path: Path) -> None:
    points = [Point("seat", {"site": "main"}, {"seq": i, "ok": True}, i) for i in range(5)]
    spool = Spool(tmp_path, segment_points=4, codec=LINES)
    spool.append_many(points[:2])
    spool.append_many(points[2:])  # a segment may run a batch over its size
    spool.append(Point("seat", {"site": "main"}, {"seq": 9}, 2**70))  # cannot be stored
    assert spool.refused == 1 and spool.sealed_segments == 1
    spool.close()
    path = sorted(tmp_path.glob("*" + LINES))[-1]
    path.write_bytes(path.read_bytes() + b"\x00\x00\x10\x00seat,site=main seq=1")  # torn
    again = Spool(tmp_path, codec=LINES)
    seg = again.oldest()
    assert seg is not None and seg.count == 5 and not seg.points
    assert seg.lines == "\n".join(encode_point(p) for p in points).encode()
    again.done(seg.n)
    assert again.oldest() is None and again.bytes == 0


async def test_store_outage_spools_then_replays_in_full(
    fresh_influxdb: InfluxProc, mosquitto: MosquittoProc, mqtt_root: str, tmp_path: Path
) -> None:
    s = open_store(fresh_influxdb.store_url("outage"))
    await s.ensure_database()  # type: ignore[attr-defined]
    gw = Gateway(SITES, s, SystemClock(), settings(mqtt_root, tmp_path, "outage"))
    task = await start(gw, mosquitto.url)
    try:
        port = mosquitto.port
        await asyncio.to_thread(publish, port, mqtt_root, range(500))
        assert await wait_count(s, 500, 20) == 500
        fresh_influxdb.stop()
        await asyncio.to_thread(publish, port, mqtt_root, range(500, 1500))
        async with asyncio.timeout(20):
            while gw.metrics.accepted < 1500:
                await asyncio.sleep(0.1)
        await asyncio.sleep(2.0)
        assert gw.metrics.write_errors > 0
        assert gw.metrics.spool_bytes() > 0  # held on disk while the store is down
        fresh_influxdb.start()
        assert await wait_count(s, 1500, 60) == 1500
        assert gw.metrics.spool_bytes() == 0
    finally:
        await stop(task)
        await s.close()


async def test_full_spool_holds_the_batch_and_keeps_the_connection(
    fresh_influxdb: InfluxProc, mosquitto: MosquittoProc, mqtt_root: str, tmp_path: Path
) -> None:
    """Store down and spool full for several keepalive periods: the gateway stays
    connected (its network thread still answers pings) while the broker queues, and
    everything lands once the store is back."""
    s = open_store(fresh_influxdb.store_url("full"))
    await s.ensure_database()  # type: ignore[attr-defined]
    cfg = settings(mqtt_root, tmp_path, "full", keepalive=2, spool_max_bytes=20_000)
    gw = Gateway(SITES, s, SystemClock(), cfg)
    task = await start(gw, mosquitto.url)
    drops = 0

    async def watch() -> None:
        nonlocal drops
        while True:
            await asyncio.sleep(0.05)
            if not gw.connected.is_set():
                drops += 1
                await gw.connected.wait()

    watcher = asyncio.create_task(watch())
    try:
        fresh_influxdb.stop()
        await asyncio.to_thread(publish, mosquitto.port, mqtt_root, range(1500))
        async with asyncio.timeout(20):
            while not gw.metrics.spool_full:
                await asyncio.sleep(0.1)
        await asyncio.sleep(7.0)  # over 3 keepalive periods with the spool full
        assert drops == 0
        assert gw.metrics.accepted < 1500  # it really held back
        fresh_influxdb.start()
        assert await wait_count(s, 1500, 60) == 1500
        assert drops == 0
    finally:
        watcher.cancel()
        await stop(task)
        await s.close()


async def test_broker_restart_reconnects_and_resumes(
    fresh_mosquitto: MosquittoProc, store: SeriesStore, mqtt_root: str, tmp_path: Path
) -> None:
    gw = Gateway(SITES, store, SystemClock(), settings(mqtt_root, tmp_path, "restart"))
    task = await start(gw, fresh_mosquitto.url)
    try:
        await asyncio.to_thread(publish, fresh_mosquitto.port, mqtt_root, range(300))
        assert await wait_count(store, 300, 20) == 300
        fresh_mosquitto.restart()
        async with asyncio.timeout(30):
            while gw.connected.is_set():
                await asyncio.sleep(0.05)
            await gw.connected.wait()
        await asyncio.to_thread(publish, fresh_mosquitto.port, mqtt_root, range(300, 600))
        assert await wait_count(store, 600, 20) == 600
    finally:
        await stop(task)


async def test_two_gateways_share_the_load_nothing_lost_or_doubled(
    mosquitto: MosquittoProc, store: SeriesStore, mqtt_root: str, tmp_path: Path
) -> None:
    group = "g" + mqtt_root.split("/")[1]
    metrics_port = free_port()
    a = Gateway(
        SITES,
        store,
        SystemClock(),
        settings(mqtt_root, tmp_path, "a", share=group, metrics_port=metrics_port),
    )
    b = Gateway(SITES, store, SystemClock(), settings(mqtt_root, tmp_path, "b", share=group))
    ta, tb = await start(a, mosquitto.url), await start(b, mosquitto.url)
    try:
        await asyncio.to_thread(publish, mosquitto.port, mqtt_root, range(2000))
        assert await wait_count(store, 2000, 30) == 2000
        assert a.metrics.accepted > 200 and b.metrics.accepted > 200
        assert a.metrics.accepted + b.metrics.accepted == 2000
        assert a.metrics.duplicates == b.metrics.duplicates == 0
        text = await asyncio.to_thread(_get, f"http://127.0.0.1:{metrics_port}/metrics")
        assert f"stackpulse_gateway_accepted_total {float(a.metrics.accepted)}" in text
        assert "stackpulse_gateway_batch_write_seconds_bucket" in text
    finally:
        await stop(ta)
        await stop(tb)


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:
        return str(r.read().decode())


@pytest.fixture
def layout_file(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "layout.yaml"
    path.write_text(yaml.safe_dump(LAYOUT_DOC))
    yield path


def _gateway_proc(
    broker: str, store_url: str, layout: Path, root: str, spool: Path
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "STACKPULSE_ROOT": root,
        "STACKPULSE_GATEWAY_SPOOL": str(spool),
        "STACKPULSE_GATEWAY_CLIENT_ID": "gw-kill-" + root.split("/")[1],
    }
    argv = [sys.executable, "-m", "stackpulse", "run", "gateway"]
    argv += ["--broker", broker, "--store", store_url, "--layout", str(layout)]
    return subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL)


async def test_kill_9_mid_stream_loses_nothing_accepted(
    fresh_mosquitto: MosquittoProc,
    influx_db: str,
    store: SeriesStore,
    mqtt_root: str,
    tmp_path: Path,
    layout_file: Path,
) -> None:
    spool = tmp_path / "spool-kill"
    gw = _gateway_proc(fresh_mosquitto.url, influx_db, layout_file, mqtt_root, spool)
    try:
        await wait_listening(fresh_mosquitto.port, mqtt_root, store)  # its session exists now
        n = 4000
        pub = threading.Thread(
            target=publish, args=(fresh_mosquitto.port, mqtt_root, range(n), 2000.0)
        )
        pub.start()
        async with asyncio.timeout(20):
            while await count(store) < 300:
                await asyncio.sleep(0.05)
        gw.send_signal(signal.SIGKILL)
        gw.wait(10)
        killed_at = await count(store)
        assert killed_at < n  # it really died mid-stream
        gw = _gateway_proc(fresh_mosquitto.url, influx_db, layout_file, mqtt_root, spool)
        await asyncio.to_thread(pub.join, 30)
        assert await wait_count(store, n, 40) == n
    finally:
        gw.send_signal(signal.SIGTERM)
        gw.wait(15)
