"""Gateway throughput and freshness against real Mosquitto and InfluxDB.

    python3 -m bench.gateway_throughput [--messages 60000] [--runs 3]

Per run, on the same broker and store: (a) a raw paho subscriber that only counts,
(b) the gateway end to end (a `stackpulse run gateway` process; done when InfluxDB
holds one point per unique message published), (c) raw 5,000-line batched writes of
the same points. Prints msgs/s for each, b/a, loss, and the medians over the runs; then
event freshness (device publish -> normalized event received, p50/p99) at 5,000 msg/s.
Publishers are separate processes (QoS 1).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import paho.mqtt.client as paho
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from stackpulse.gateway.decode import Accepted, decode, index_sites
from stackpulse.kernel.layout import Layout
from stackpulse.kernel.store.influx import InfluxStore
from stackpulse.kernel.store.lineprotocol import encode_point
from tests.support.procs import free_port, start_influxdb, start_mosquitto

GATES, SEATS, SHELVES = 20, 400, 40
LAYOUT = {
    "site": "main",
    "name": "Bench Library",
    "zones": [{"id": "f1", "name": "Floor 1", "floor": 1, "capacity": 1000}],
    "gates": [{"device": f"gate-{i}", "outer": "outside", "inner": "f1"} for i in range(GATES)],
    "seats": [{"id": f"s-{i}", "device": f"seat-{i:04d}", "zone": "f1"} for i in range(SEATS)],
    "shelves": [
        {
            "device": f"shelf-{i}",
            "zone": "f1",
            "sections": [{"id": f"S{i}", "first": f"QA{i + 1}", "last": f"QA{i + 1}"}],
        }
        for i in range(SHELVES)
    ],
}


def messages(root: str, n: int, boot: int, ts: str | None = None) -> list[tuple[str, bytes]]:
    """A mixed stream: 10% gate, 80% seat, 10% shelf; every (device, boot, seq) unique."""
    out: list[tuple[str, bytes]] = []
    when = ts or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    for i in range(n):
        r = i % 10
        seq = i
        if r == 0:
            d = f"gate-{i // 10 % GATES}"
            body = {"ts": when, "boot": boot, "seq": seq, "in": i, "out": i // 2}
            out.append((f"{root}/main/gate/{d}/data", json.dumps(body).encode()))
        elif r == 9:
            k = i // 10 % SHELVES
            items = [{"id": f"3123400{k:03d}{j:04d}", "rssi": -50.5} for j in range(5)]
            body = {
                "ts": when,
                "boot": boot,
                "seq": seq,
                "sweep": i,
                "section": f"S{k}",
                "part": 1,
                "parts": 1,
                "items": items,
            }
            out.append((f"{root}/main/shelf/shelf-{k}/data", json.dumps(body).encode()))
        else:
            d = f"seat-{i % SEATS:04d}"
            body = {
                "ts": when,
                "boot": boot,
                "seq": seq,
                "presence": ("person", "empty", "object")[i % 3],
                "battery": 0.5,
            }
            out.append((f"{root}/main/seat/{d}/data", json.dumps(body).encode()))
    return out


def _publish(port: int, root: str, n: int, boot: int, rate: float, started: Any) -> None:
    """Child process: publish the stream at QoS 1 (rate 0: as fast as possible).

    No network thread: publishing from the caller's thread writes straight to the socket,
    and `loop(0)` between messages reads the PUBACKs (paho's fastest publishing mode).
    """
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{uuid.uuid4().hex[:8]}")
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port)
    stream = [] if rate else messages(root, n, boot)
    infos = []
    started.value = time.time()
    t0 = time.monotonic()
    for i in range(n):
        if rate:
            now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
            topic, body = _one(root, i, boot, now)
        else:
            topic, body = stream[i]
        infos.append(c.publish(topic, body, qos=1))
        if i % 50 == 0:
            c.loop(0)
        if rate:
            while (delay := t0 + (i + 1) / rate - time.monotonic()) > 0:
                c.loop(min(delay, 0.01))
    deadline = time.monotonic() + 120
    while not all(x.is_published() for x in infos[-1000:]) and time.monotonic() < deadline:
        c.loop(0.01)
    c.disconnect()


def _one(root: str, i: int, boot: int, ts: str) -> tuple[str, bytes]:
    d = f"seat-{i % SEATS:04d}"
    body = {"ts": ts, "boot": boot, "seq": i, "presence": ("person", "empty")[i % 2]}
    return f"{root}/main/seat/{d}/data", json.dumps(body).encode()


def start_publisher(port: int, root: str, n: int, boot: int, rate: float = 0) -> tuple[Any, Any]:
    """A publisher process and a shared value: the wall time of its first publish."""
    ctx = mp.get_context("spawn")
    started = ctx.Value("d", 0.0)
    p = ctx.Process(target=_publish, args=(port, root, n, boot, rate, started))
    p.start()
    return p, started


def _wait_started(started: Any, timeout: float = 60) -> float:
    deadline = time.monotonic() + timeout
    while not started.value and time.monotonic() < deadline:
        time.sleep(0.005)
    return float(started.value)


CPU_US: dict[str, list[float]] = {"raw": [], "aiomqtt": [], "gateway": []}  # per message


def _cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def raw_paho(port: int, root: str, n: int, boot: int) -> float:
    """(a) msgs/s of a paho subscriber that only counts (and its CPU per message)."""
    got = 0
    first = last = 0.0

    def on_message(_c: object, _u: object, _m: object) -> None:
        nonlocal got, first, last
        got += 1
        last = time.monotonic()
        if got == 1:
            first = last

    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-raw-{uuid.uuid4().hex[:8]}")
    c.on_message = on_message
    c.connect("127.0.0.1", port)
    c.subscribe(f"{root}/#", qos=1)
    c.loop_start()
    time.sleep(0.5)
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    pub, started = start_publisher(port, root, n, boot)
    deadline = time.monotonic() + 120
    while got < n and time.monotonic() < deadline:
        time.sleep(0.01)
    done = time.time() - (time.monotonic() - last)
    end = resource.getrusage(resource.RUSAGE_SELF)  # this process only: not the publisher
    used = end.ru_utime + end.ru_stime - cpu.ru_utime - cpu.ru_stime
    CPU_US["raw"].append(used / max(got, 1) * 1e6)
    pub.join(30)
    c.disconnect()
    c.loop_stop()
    return got / (done - _wait_started(started)) if got else 0.0


async def raw_aiomqtt(port: int, root: str, n: int, boot: int) -> float:
    """(a') the same count with aiomqtt, the asyncio client: measured before choosing."""
    got = 0
    last = 0.0
    name = f"bench-aio-{uuid.uuid4().hex[:8]}"
    async with aiomqtt.Client("127.0.0.1", port, identifier=name) as c:
        await c.subscribe(f"{root}/#", qos=1)
        await asyncio.sleep(0.5)
        cpu = resource.getrusage(resource.RUSAGE_SELF)
        pub, started = start_publisher(port, root, n, boot)
        try:
            async with asyncio.timeout(120):
                async for _m in c.messages:
                    got += 1
                    last = time.monotonic()
                    if got >= n:
                        break
        except TimeoutError:
            pass
        end = resource.getrusage(resource.RUSAGE_SELF)
        used = end.ru_utime + end.ru_stime - cpu.ru_utime - cpu.ru_stime
        CPU_US["aiomqtt"].append(used / max(got, 1) * 1e6)
        done = time.time() - (time.monotonic() - last)
        start = await asyncio.to_thread(_wait_started, started)
        await asyncio.to_thread(pub.join, 30)
    return got / (done - start) if got else 0.0


async def _count(store: InfluxStore) -> int:
    total = 0
    for m, f in (("gate", "seq"), ("seat", "seq"), ("shelf", "seq")):
        rows = await store.raw_query(f'SELECT count("{f}") FROM "{m}"')
        total += int(rows[0]["count"]) if rows else 0
    return total


def start_gateway(
    broker: str,
    store_url: str,
    layout: Path,
    root: str,
    spool: Path,
    client_id: str,
    share: str = "",
    metrics_port: int = 0,
    extra_env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "STACKPULSE_ROOT": root,
        "STACKPULSE_GATEWAY_SPOOL": str(spool),
        "STACKPULSE_GATEWAY_CLIENT_ID": client_id,
        "STACKPULSE_GATEWAY_SHARE": share,
        "STACKPULSE_LOG_LEVEL": "WARNING",
        "STACKPULSE_GATEWAY_METRICS_PORT": str(metrics_port),
        **(extra_env or {}),
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stackpulse",
            "run",
            "gateway",
            "--broker",
            broker,
            "--store",
            store_url,
            "--layout",
            str(layout),
        ],
        env=env,
        stdin=subprocess.DEVNULL,
    )


async def gateway_e2e(
    mosq_port: int,
    influx_http: str,
    store_url: str,
    db: str,
    layout: Path,
    root: str,
    n: int,
    boot: int,
    work: Path,
    gateways: int = 1,
) -> tuple[float, int]:
    """(b) msgs/s from publish start until InfluxDB holds every point; returns (rate, points)."""
    store = InfluxStore(influx_http, db)
    await store.ensure_database()
    share = f"bench{uuid.uuid4().hex[:6]}" if gateways > 1 else ""
    ports = [free_port() for _ in range(gateways)]
    procs = [
        start_gateway(
            f"mqtt://127.0.0.1:{mosq_port}",
            store_url,
            layout,
            root,
            work / f"spool-{root.replace('/', '_')}-{g}",
            f"gw-{uuid.uuid4().hex[:8]}",
            share,
            ports[g],
        )
        for g in range(gateways)
    ]
    try:
        await asyncio.sleep(3.0)  # connected and subscribed
        cpu = sum(_cpu_seconds(p.pid) for p in procs)
        pub, started = start_publisher(mosq_port, root, n, boot)
        # Done when the gateways say the store took every point (their /metrics: cheap
        # to ask, unlike counting in InfluxDB while it is being written to); the count
        # in InfluxDB afterwards is what says nothing was lost.
        deadline = time.monotonic() + 180
        async with httpx.AsyncClient(timeout=5) as http:
            while time.monotonic() < deadline:
                if await _points_written(http, ports) >= n:
                    break
                await asyncio.sleep(0.1)
        elapsed = time.time() - await asyncio.to_thread(_wait_started, started)
        if gateways == 1:
            used = sum(_cpu_seconds(p.pid) for p in procs) - cpu
            CPU_US["gateway"].append(used / n * 1e6)
        await asyncio.to_thread(pub.join, 30)
        got, last = await _count(store), -1
        while (got != last or got < n) and time.monotonic() < deadline:
            await asyncio.sleep(1.0)  # until the count holds still
            last, got = got, await _count(store)
        PEAK_RSS_MB.append(max(_peak_rss_mb(p.pid) for p in procs))
        return n / elapsed, got
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(20)
        await store.close()


PEAK_RSS_MB: list[float] = []


async def _points_written(
    http: httpx.AsyncClient, ports: list[int], metric: str = "points_written_total"
) -> int:
    total = 0
    for port in ports:
        try:
            text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
        except httpx.HTTPError:
            continue  # not listening yet
        for line in text.splitlines():
            if line.startswith(f"stackpulse_gateway_{metric} "):
                total += int(float(line.split()[1]))
    return total


def _peak_rss_mb(pid: int) -> float:
    """The process's peak resident set size (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def raw_influx(influx_http: str, db: str, root: str, n: int, boot: int) -> float:
    """(c) msgs/s of 5,000-line batched writes of the same points."""
    sites = index_sites([Layout.model_validate(LAYOUT)])
    now = datetime.now(UTC)
    points = []
    for t, b in messages(root, n, boot):
        r = decode(root, t, b, now, sites)
        assert isinstance(r, Accepted)
        points.append(r.point)
    _ = encode_point
    store = InfluxStore(influx_http, db)
    await store.ensure_database()
    start = time.monotonic()
    for i in range(0, n, 5000):
        await store.write(points[i : i + 5000])
    elapsed = time.monotonic() - start
    await store.close()
    return n / elapsed


def _print_throughput(
    a_s: list[float], a2_s: list[float], b_s: list[float], c_s: list[float], b2_s: list[float]
) -> None:
    a, a2, b, c = (statistics.median(x) for x in (a_s, a2_s, b_s, c_s))
    print(
        f"median: (a) raw paho {a:.0f}  (a') raw aiomqtt {a2:.0f}  (b) gateway {b:.0f}"
        f"  (c) raw influx {c:.0f} msg/s  b/a {b / a:.2f}"
    )
    print(f"gateway peak RSS: max {max(PEAK_RSS_MB):.0f} MB over the runs")
    raw_us, aio_us, gw_us = (statistics.median(CPU_US[k]) for k in ("raw", "aiomqtt", "gateway"))
    print(
        f"median CPU per message: raw paho {raw_us:.0f} us, raw aiomqtt {aio_us:.0f} us, "
        f"gateway {gw_us:.0f} us (x{gw_us / raw_us:.2f} of paho; includes its store writes)"
    )
    if b2_s:
        print(
            f"median two gateways: {statistics.median(b2_s):.0f} msg/s "
            f"(x{statistics.median(b2_s) / b:.2f} of one)"
        )


async def flood(
    mosq_port: int, influx: Any, store_url: str, layout: Path, root: str, work: Path, n: int
) -> None:
    """Memory and loss while the store is down and the broker floods the gateway.

    InfluxDB is stopped; `n` messages are published as fast as possible; the spool is
    bounded at 8 MiB, so the gateway spools until the bound, then stops reading and the
    broker queues the rest (the deliberate back-pressure path). InfluxDB comes back; done
    when InfluxDB holds every point. Prints the gateway's peak RSS and the loss.
    """
    db = f"flood_{uuid.uuid4().hex[:8]}"
    store = InfluxStore(influx.http_url, db)
    await store.ensure_database()
    port = free_port()
    gw = start_gateway(
        f"mqtt://127.0.0.1:{mosq_port}",
        store_url.rsplit("/", 1)[0] + "/" + db,
        layout,
        root,
        work / f"spool-flood-{uuid.uuid4().hex[:6]}",
        f"gw-{uuid.uuid4().hex[:8]}",
        metrics_port=port,
        extra_env={"STACKPULSE_GATEWAY_SPOOL_MAX_BYTES": str(8 << 20)},
    )
    try:
        await asyncio.sleep(3.0)
        idle_mb = _rss_mb(gw.pid)
        await asyncio.to_thread(influx.stop)
        started = time.monotonic()
        pub, _ = start_publisher(mosq_port, root, n, 1)
        async with httpx.AsyncClient(timeout=5) as http:
            full = 0
            while pub.is_alive() or not full:
                full = await _points_written(http, [port], "spool_full_total")
                await asyncio.sleep(0.2)
                if time.monotonic() - started > 180:
                    break
            accepted = await _points_written(http, [port], "accepted_total")
            peak_down = _peak_rss_mb(gw.pid)
            await asyncio.to_thread(influx.start)
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                if await _points_written(http, [port]) >= n:
                    break
                await asyncio.sleep(0.2)
        got, last = await _count(store), -1
        while (got != last or got < n) and time.monotonic() < deadline:
            await asyncio.sleep(1.0)
            last, got = got, await _count(store)
        print(
            f"flood with the store down ({n} messages, spool bound 8 MiB): gateway RSS idle "
            f"{idle_mb:.0f} MB, peak while flooded {peak_down:.0f} MB, peak overall "
            f"{_peak_rss_mb(gw.pid):.0f} MB (goal < 200 MB); spool hit its bound: "
            f"{'yes' if full else 'no'}; accepted while down {accepted}; after the store came "
            f"back InfluxDB holds {got}/{n}, loss {n - got}"
        )
    finally:
        gw.send_signal(signal.SIGTERM)
        gw.wait(20)
        await store.close()


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * q))] if xs else float("nan")


async def freshness(
    mosq_port: int,
    influx_http: str,
    store_url: str,
    layout: Path,
    root: str,
    work: Path,
    rate: float,
    seconds: float,
) -> dict[str, list[float]]:
    """Latencies (ms) at `rate` msg/s, all from the device's publish (its ts).

    `event`: to the normalized event reaching a subscriber (the goal). `raw`: to the
    same device message reaching a plain paho subscriber in this process: the baseline
    the broker and this machine give anyone. `gateway`: to the gateway reading it.
    `inside`: from the gateway reading it to its event reaching the subscriber.
    """
    db = f"fresh_{uuid.uuid4().hex[:8]}"
    store = InfluxStore(influx_http, db)
    await store.ensure_database()
    await store.close()
    lat: dict[str, list[float]] = {"event": [], "raw": [], "gateway": [], "inside": []}
    # The instrument must not add latency: on arrival only the time and the message are
    # kept (one list append); parsing waits for the end of the run. Parsing 10,000
    # messages a second in the callback had this subscriber fall behind, which counted
    # against the raw baseline and the events alike.
    arrived: list[tuple[float, str, bytes | bytearray]] = []

    def on_message(_c: object, _u: object, m: paho.MQTTMessage) -> None:
        arrived.append((time.time(), m.topic, m.payload))

    def parse() -> None:
        for at, topic, payload in arrived:
            now = datetime.fromtimestamp(at, UTC)
            body = json.loads(payload)
            if "/_events/" not in topic:
                ts = datetime.fromisoformat(body["ts"])
                lat["raw"].append((now - ts).total_seconds() * 1000)
                continue
            for ev in body if isinstance(body, list) else [body]:  # a batch, or one event
                ts = datetime.fromisoformat(ev["payload"]["ts"])
                lat["event"].append((now - ts).total_seconds() * 1000)
                got = datetime.fromisoformat(ev["received"])
                lat["gateway"].append((got - ts).total_seconds() * 1000)
                lat["inside"].append((now - got).total_seconds() * 1000)

    sub = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-ev-{uuid.uuid4().hex[:8]}")
    sub.on_message = on_message
    sub.connect("127.0.0.1", mosq_port)
    sub.subscribe([(f"{root}/main/_events/#", 1), (f"{root}/main/seat/+/data", 1)])
    sub.loop_start()
    gw = start_gateway(
        f"mqtt://127.0.0.1:{mosq_port}",
        store_url.rsplit("/", 1)[0] + "/" + db,
        layout,
        root,
        work / f"spool-fresh-{uuid.uuid4().hex[:6]}",
        f"gw-{uuid.uuid4().hex[:8]}",
    )
    try:
        await asyncio.sleep(3.0)
        n = int(rate * seconds)
        pub, _ = start_publisher(mosq_port, root, n, 1, rate)
        await asyncio.to_thread(pub.join, seconds + 60)
        await asyncio.sleep(2.0)
    finally:
        gw.send_signal(signal.SIGTERM)
        gw.wait(20)
        sub.disconnect()
        sub.loop_stop()
    parse()
    return lat


def _print_freshness(runs: list[dict[str, list[float]]], rate: float) -> None:
    for name, label in (
        ("raw", "device publish -> raw paho subscriber (baseline)"),
        ("gateway", "device publish -> gateway reads it"),
        ("event", "device publish -> normalized event received"),
        ("inside", "gateway reads it -> its event received"),
    ):
        p50 = statistics.median(_pct(r[name], 0.5) for r in runs)
        p99 = statistics.median(_pct(r[name], 0.99) for r in runs)
        print(f"  {label:50s} p50 {p50:6.1f} ms  p99 {p99:6.1f} ms")
    added = statistics.median(_pct(r["event"], 0.99) - _pct(r["raw"], 0.99) for r in runs)
    count = statistics.median(len(r["event"]) for r in runs)
    print(
        f"freshness at {rate:.0f} msg/s (median of {len(runs)} runs, {count:.0f} events each): "
        f"the gateway adds {added:.1f} ms at p99 over the raw subscriber (goal: event p99 <= 50 ms)"
    )


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=60_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--fresh-seconds", type=float, default=10.0)
    ap.add_argument("--scale-out", action="store_true", help="also one gateway vs two ($share)")
    ap.add_argument("--fresh-runs", type=int, default=3)
    ap.add_argument(
        "--flood", type=int, default=100_000, help="messages for the store-down flood (0: skip)"
    )
    args = ap.parse_args()
    n = args.messages
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        mosq = start_mosquitto(work / "mosquitto")
        influx = start_influxdb(work / "influxdb")
        layout = work / "layout.yaml"
        layout.write_text(yaml.safe_dump(LAYOUT))
        store_base = f"influxdb://127.0.0.1:{influx.port}"
        http = f"http://127.0.0.1:{influx.port}"
        a_s, a2_s, b_s, c_s, b2_s = [], [], [], [], []
        try:
            for run in range(args.runs):
                a = raw_paho(mosq.port, f"bench/a{run}", n, 1)
                a2 = await raw_aiomqtt(mosq.port, f"bench/q{run}", n, 1)
                db = f"b{run}_{uuid.uuid4().hex[:6]}"
                b, got = await gateway_e2e(
                    mosq.port, http, f"{store_base}/{db}", db, layout, f"bench/b{run}", n, 1, work
                )
                c = await raw_influx(http, f"c{run}_{uuid.uuid4().hex[:6]}", f"bench/c{run}", n, 1)
                line = (
                    f"run {run + 1}: (a) raw paho {a:9.0f} msg/s  (a') raw aiomqtt {a2:9.0f} msg/s"
                    f"  (b) gateway e2e {b:9.0f} msg/s"
                    f"  (c) raw influx {c:9.0f} msg/s  b/a {b / a:.2f}  points {got}/{n}"
                    f" loss {n - got}"
                )
                a_s.append(a)
                a2_s.append(a2)
                b_s.append(b)
                c_s.append(c)
                if args.scale_out:
                    db2 = f"s{run}_{uuid.uuid4().hex[:6]}"
                    b2, got2 = await gateway_e2e(
                        mosq.port,
                        http,
                        f"{store_base}/{db2}",
                        db2,
                        layout,
                        f"bench/s{run}",
                        n,
                        1,
                        work,
                        gateways=2,
                    )
                    b2_s.append(b2)
                    line += f"  two gateways {b2:9.0f} msg/s points {got2}/{n}"
                print(line, flush=True)
            if args.runs:
                _print_throughput(a_s, a2_s, b_s, c_s, b2_s)
            fresh = [
                await freshness(
                    mosq.port,
                    http,
                    f"{store_base}/x",
                    layout,
                    f"bench/fresh{i}",
                    work,
                    5000,
                    args.fresh_seconds,
                )
                for i in range(args.fresh_runs)
            ]
            if fresh:
                _print_freshness(fresh, 5000)
            if args.flood:
                await flood(
                    mosq.port, influx, f"{store_base}/x", layout, "bench/flood", work, args.flood
                )
        finally:
            mosq.stop()
            influx.stop()


if __name__ == "__main__":
    asyncio.run(main())
