"""The gateway against real Mosquitto and InfluxDB: bad input dead-lettered, nothing lost."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiomqtt
import pytest

from stackpulse.gateway.decode import index_sites
from stackpulse.gateway.service import Gateway, GatewaySettings
from stackpulse.kernel.bus import client, parse_broker_url
from stackpulse.kernel.clock import SystemClock
from stackpulse.kernel.contracts.events import decode_events
from stackpulse.kernel.layout import Layout
from stackpulse.kernel.models import format_ts
from stackpulse.kernel.store.base import SeriesStore
from stackpulse.kernel.store.factory import open_store

pytestmark = pytest.mark.integration

LAYOUT = Layout.model_validate(
    {
        "site": "main",
        "name": "Test Library",
        "zones": [{"id": "f1", "name": "Floor 1", "floor": 1, "capacity": 100}],
        "gates": [{"device": "gate-1", "outer": "outside", "inner": "f1"}],
        "seats": [
            {"id": f"f1-{i:03d}", "device": f"seat-{i:04d}", "zone": "f1"} for i in range(1, 21)
        ],
    }
)


@pytest.fixture
async def store(influx_db: str) -> AsyncIterator[SeriesStore]:
    s = open_store(influx_db)
    await s.ping()
    yield s
    await s.close()


async def _count(store: SeriesStore, measurement: str) -> int:
    rows = await store.raw_query(f'SELECT count("seq") FROM "{measurement}"')
    return int(rows[0]["count"]) if rows else 0


async def _wait_for_count(store: SeriesStore, measurement: str, want: int, timeout: float) -> int:
    got = -1
    async with asyncio.timeout(timeout):
        while (got := await _count(store, measurement)) < want:
            await asyncio.sleep(0.2)
    return got


def seat_body(seq: int, presence: str = "person", ts: datetime | None = None) -> bytes:
    when = format_ts(ts or datetime.now(UTC))
    return json.dumps({"ts": when, "boot": 1, "seq": seq, "presence": presence}).encode()


class ShiftedClock(SystemClock):
    """The system clock, moved on by hand (to cross a minute boundary at once)."""

    def __init__(self) -> None:
        super().__init__()
        self.shift = timedelta(0)

    def now(self) -> datetime:
        return super().now() + self.shift


async def test_gateway_accepts_dedups_and_dead_letters(
    mosquitto: object, mqtt_root: str, store: SeriesStore, tmp_path: Path
) -> None:
    broker = parse_broker_url(mosquitto.url)  # type: ignore[attr-defined]
    clock = ShiftedClock()
    gw = Gateway(
        index_sites([LAYOUT]),
        store,
        clock,
        GatewaySettings(
            root=mqtt_root,
            client_id=f"gw-{mqtt_root}",
            flush_interval=0.1,
            spool=str(tmp_path / "spool"),
        ),
    )
    runner = asyncio.create_task(gw.run(broker))
    try:
        await asyncio.wait_for(gw.connected.wait(), timeout=10)
        async with client(broker) as watcher:
            await watcher.subscribe(f"{mqtt_root}/main/_dead/#", qos=1)
            await watcher.subscribe(f"{mqtt_root}/_dead/#", qos=1)
            await watcher.subscribe(f"{mqtt_root}/main/_events/#", qos=1)
            bad = {
                f"{mqtt_root}/main/seat/seat-9999/data": (seat_body(1), "unknown_device"),
                f"{mqtt_root}/main/seat/seat-0001": (seat_body(1), "bad_topic"),
                f"{mqtt_root}/main/seat/seat-0002/data": (b"{not json", "bad_json"),
                f"{mqtt_root}/main/gate/gate-1/data": (
                    b'{"ts":"2026-11-24T10:00:00Z","boot":1,"seq":1,"in":-3,"out":0}',
                    "invalid",
                ),
                f"{mqtt_root}/main/seat/seat-0003/data": (b"x" * (1024 * 1024), "too_large"),
                f"{mqtt_root}/main/seat/seat-0004/data": (b'{"presence": 7}', "invalid"),
            }
            async with client(broker) as pub:
                valid = 0
                for seq in range(50):
                    # Interleave: a valid message from each of 20 seats, a duplicate, a bad one.
                    for i in range(1, 21):
                        topic = f"{mqtt_root}/main/seat/seat-{i:04d}/data"
                        await pub.publish(topic, seat_body(seq), qos=1)
                        valid += 1
                    await pub.publish(
                        f"{mqtt_root}/main/seat/seat-0001/data", seat_body(seq), qos=1
                    )
                    if seq < len(bad):
                        topic, (body, _) = list(bad.items())[seq]
                        await pub.publish(topic, body, qos=1)
                # A device clock a day ahead is accepted and marked.
                ahead = datetime.now(UTC) + timedelta(days=1)
                await pub.publish(
                    f"{mqtt_root}/main/seat/seat-0005/data", seat_body(999, ts=ahead), qos=1
                )
                valid += 1

            dead: dict[str, str] = {}
            events = 0
            corrected = 0
            async with asyncio.timeout(20):
                async for m in watcher.messages:
                    if "/_dead/" in m.topic.value:
                        body = json.loads(m.payload)  # type: ignore[arg-type]
                        dead[body["topic"]] = body["reason"]
                    else:
                        batch = decode_events(m.payload)  # type: ignore[arg-type]
                        events += len(batch)
                        corrected += sum(ev.clock_corrected for ev in batch)
                    if len(dead) == len(bad) and events == valid:
                        break
        assert dead == {t: reason for t, (_, reason) in bad.items()}
        assert events == valid
        assert corrected == 1
        assert await _wait_for_count(store, "seat", valid, timeout=20) == valid
        await asyncio.sleep(0.5)
        assert await _count(store, "seat") == valid  # the duplicates were not written
        assert gw.metrics.duplicates == 50
        assert sum(gw.metrics.dead_lettered.values()) == len(bad)
        # Per minute, the store gets the dead letters counted by site, kind and reason.
        clock.shift = timedelta(minutes=1)
        want = {("main", "seat", "unknown_device"): 1, ("main", "seat", "bad_topic"): 1}
        want |= {("main", "seat", "bad_json"): 1, ("main", "seat", "too_large"): 1}
        want |= {("main", "gate", "invalid"): 1, ("main", "seat", "invalid"): 1}
        got: dict[tuple[str, str, str], int] = {}
        q = 'SELECT sum("count") FROM "dead_letters" GROUP BY "site", "kind", "reason"'
        async with asyncio.timeout(20):
            while got != want:
                await asyncio.sleep(0.2)
                rows = await store.raw_query(q)
                got = {(r["site"], r["kind"], r["reason"]): int(r["sum"]) for r in rows}
    finally:
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner


async def test_status_events_are_retained_for_late_services(
    mosquitto: object, mqtt_root: str, store: SeriesStore, tmp_path: Path
) -> None:
    broker = parse_broker_url(mosquitto.url)  # type: ignore[attr-defined]
    gw = Gateway(
        index_sites([LAYOUT]),
        store,
        SystemClock(),
        GatewaySettings(
            root=mqtt_root, client_id=f"gw2-{mqtt_root}", spool=str(tmp_path / "spool")
        ),
    )
    runner = asyncio.create_task(gw.run(broker))
    try:
        await asyncio.wait_for(gw.connected.wait(), timeout=10)
        async with client(broker) as pub:
            await pub.publish(
                f"{mqtt_root}/main/seat/seat-0007/status", b'{"online": false}', qos=1, retain=True
            )
        await asyncio.sleep(1.0)
        async with client(broker) as late:
            await late.subscribe(f"{mqtt_root}/main/_events/seat/seat-0007/status", qos=1)
            async with asyncio.timeout(10):
                m = await anext(aiter(late.messages))
        assert m.retain
        assert json.loads(m.payload)["payload"] == {"online": False}  # type: ignore[arg-type]
    finally:
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner


_ = aiomqtt
