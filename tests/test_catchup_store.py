"""What the gateway stores reads back as the events it published (kernel.catchup)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stackpulse.gateway.decode import Accepted, decode, index_sites
from stackpulse.kernel.catchup import stored_events
from stackpulse.kernel.contracts.events import Event
from stackpulse.kernel.layout import Layout
from stackpulse.kernel.store import open_store
from stackpulse.kernel.store.base import SeriesStore
from stackpulse.kernel.topics import Kind
from tests.test_catchup import LAYOUT_DOC, SITE

LAYOUT = Layout.model_validate({k: v for k, v in LAYOUT_DOC.items() if k != "catalog"})
SITES = index_sites([LAYOUT])
ROOT = "lib/v1"
T0 = datetime(2026, 11, 24, 18, tzinfo=UTC)
KINDS = [Kind.GATE, Kind.SEAT, Kind.SHELF, Kind.CIRC]


def accept(
    kind: str, device: str, body: dict[str, Any], at: datetime, channel: str = "data"
) -> Accepted:
    topic = f"{ROOT}/{SITE}/{kind}/{device}/{channel}"
    result = decode(ROOT, topic, json.dumps(body).encode(), at, SITES)
    assert isinstance(result, Accepted), result
    return result


def messages(n: int) -> list[Accepted]:
    out = []
    for i in range(n):
        at = T0 + timedelta(seconds=7 * i, milliseconds=123)
        ts = at.isoformat().replace("+00:00", "Z")
        out.append(
            accept("gate", "gt-east", {"ts": ts, "boot": 2, "seq": i, "in": 3 * i, "out": i}, at)
        )
        seat = {"ts": ts, "boot": 1, "seq": i, "presence": ["person", "object", "empty"][i % 3]}
        if i % 2:
            seat["battery"] = 0.5
        out.append(accept("seat", f"occ-{i % 6 + 1}", seat, at))
        reads = [{"id": f"R-{k}", "rssi": -40.5 - k} for k in range(i % 3)] + [{"id": "NO-RSSI"}]
        shelf = {"ts": ts, "boot": 1, "seq": i, "sweep": i, "section": "H-01", "items": reads}
        out.append(accept("shelf", "rfid-1", shelf, at))
    out.append(accept("seat", "occ-1", {"online": False}, T0 + timedelta(minutes=9), "status"))
    return out


async def round_trip(
    store: SeriesStore, accepted: list[Accepted]
) -> tuple[list[Event], list[Event]]:
    await store.write([a.point for a in accepted])
    back: list[Event] = []
    async for batch in stored_events(
        store,
        SITE,
        KINDS,
        T0 - timedelta(minutes=1),
        T0 + timedelta(hours=1),
        chunk=timedelta(minutes=3),
    ):
        back += batch
    sent = [a.event for a in accepted]
    return sent, back


def same(a: Event, b: Event) -> bool:
    return (a.kind, a.device, a.channel, a.ts, a.payload, a.clock_corrected) == (
        b.kind,
        b.device,
        b.channel,
        b.ts,
        b.payload,
        b.clock_corrected,
    )


async def check(store: SeriesStore) -> None:
    sent, back = await round_trip(store, messages(40))
    assert len(back) == len(sent)
    unmatched = [e for e in sent if not any(same(e, b) for b in back)]
    assert unmatched == []
    assert [e.ts for e in back] == sorted(e.ts for e in back)  # oldest first, across kinds


async def test_sqlite_store_gives_back_every_event(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'series.db'}")
    try:
        await check(store)
    finally:
        await store.close()


@pytest.mark.integration
async def test_influxdb_gives_back_every_event(influx_db: str) -> None:
    store = open_store(influx_db)
    try:
        await check(store)
    finally:
        await store.close()


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["R-1", "R-2", "X.9", "a-b_c"]), st.none() | st.floats(-120, 0)),
        max_size=6,
    )
)
def test_shelf_reads_and_their_rssi_survive_the_point(
    reads: list[tuple[str, float | None]],
) -> None:
    from stackpulse.kernel.catchup import _payload

    items = [{"id": i} if r is None else {"id": i, "rssi": r} for i, r in reads]
    body = {
        "ts": "2026-11-24T18:00:00.000Z",
        "boot": 1,
        "seq": 1,
        "sweep": 1,
        "section": "H-02",
        "items": items,
    }
    point = accept("shelf", "rfid-1", body, T0).point
    row: dict[str, Any] = {"time": T0, "device": "rfid-1", **point.tags, **point.fields}
    payload = _payload(Kind.SHELF, row)
    assert payload["items"] == [
        {"id": i} if r is None else {"id": i, "rssi": float(repr(float(r)))} for i, r in reads
    ]
