"""The fast path accepts nothing the protocol models refuse, and yields the same results."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from stackpulse.gateway.decode import Accepted, SiteIndex, decode, decode_checked, index_sites
from stackpulse.gateway.fastpath import decode_fast
from stackpulse.kernel.models import format_ts
from stackpulse.kernel.store.lineprotocol import encode_point
from tests.support.layouts import ONE_OF_EACH

ROOT = "lib/v1"
NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
SITES = index_sites([ONE_OF_EACH])
TOPICS = {
    "gate": f"{ROOT}/main/gate/gate-1/data",
    "seat": f"{ROOT}/main/seat/seat-0001/data",
    "shelf": f"{ROOT}/main/shelf/shelf-1/data",
    "circ": f"{ROOT}/main/circ/circ-1/data",
}


def fast(topic: str, raw: bytes) -> Accepted | None:
    return decode_fast(ROOT, topic, raw, NOW, SITES, format_ts(NOW))


def assert_same(topic: str, raw: bytes) -> bool:
    return assert_same_at(topic, raw, NOW, SITES)


def assert_same_at(topic: str, raw: bytes, now: datetime, sites: Mapping[str, SiteIndex]) -> bool:
    """If the fast path accepts, the checked path accepts with identical results."""
    got = decode_fast(ROOT, topic, raw, now, sites, format_ts(now))
    if got is None:
        return False
    want = decode_checked(ROOT, topic, raw, now, sites)
    assert isinstance(want, Accepted), (raw, want)
    assert got.point == want.point
    assert got.key == want.key
    assert (got.site, got.kind, got.device, got.channel) == (
        want.site,
        want.kind,
        want.device,
        want.channel,
    )
    assert (got.ts, got.received) == (want.ts, want.received)
    assert json.loads(got.body) == json.loads(want.body)
    assert got.line == encode_point(want.point)  # what the spool writes for InfluxDB
    assert got.event == want.event
    return True


# Values that are valid, at a bound, just past it, or of the wrong type.
counts = st.one_of(
    st.integers(min_value=-2, max_value=3),
    st.sampled_from([2**53, 2**53 + 1, 2**64]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.text(max_size=3),
    st.none(),
)
stamps = st.one_of(
    st.sampled_from(
        [
            "2026-11-24T09:59:00.123Z",
            "2026-11-24T09:59:00Z",
            "2026-11-24T10:59:00+01:00",
            "2026-11-24T09:59:00",  # no offset: refused
            "2026-11-24 09:59:00Z",
            "2026-11-24T09:59:00.123456789Z",
            "2026-11-24T10:20:00Z",  # ahead by more than 5 min: corrected
            "2026-11-01T00:00:00Z",  # behind by more than 7 days: corrected
            "2026-11-24t09:59:00z",
            "2026-11-24T09:59:00.123Z\n",
            "2026-11-24T09:59:60.123Z",
            "2026-11-24T09:59:00.1a3Z",
            "2026-11-24T09:59:00,123Z",
            "2026-11-24T09:59:00.12３Z",
        ]
    ),
    st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()),
    st.text(max_size=30),
    st.integers(),
)
idents = st.one_of(
    st.sampled_from(["31234000123456", "1F-A01-1", "x", "a" * 64, "a" * 65, "", "ab\n", "a b"]),
    st.text(max_size=70),
    st.integers(),
)
ratios = st.one_of(
    st.floats(min_value=-0.5, max_value=1.5),
    st.sampled_from([0, 1, -0.0, 1.0000001, 1.2, "0.5", True]),
    st.none(),
)
rssis = st.one_of(
    st.floats(min_value=-250, max_value=60),
    st.sampled_from([-200, 50, -200.1, 50.5, "x"]),
    st.none(),
)
parts = st.one_of(st.integers(min_value=-1, max_value=3), st.sampled_from([10_000, 10_001, 1.0]))


def maybe(d: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """Each field present or absent; an extra unknown field now and then."""
    return st.fixed_dictionaries({}, optional={**d, "extra": st.text(max_size=5), "in_": counts})


bodies: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "gate": maybe({"ts": stamps, "boot": counts, "seq": counts, "in": counts, "out": counts}),
    "seat": maybe(
        {
            "ts": stamps,
            "boot": counts,
            "seq": counts,
            "presence": st.sampled_from(["person", "object", "empty", "Person", 1]),
            "battery": ratios,
        }
    ),
    "shelf": maybe(
        {
            "ts": stamps,
            "boot": counts,
            "seq": counts,
            "sweep": counts,
            "section": st.sampled_from(["1F-A01-1", "1F-A01-2", ""]),
            "part": parts,
            "parts": parts,
            "items": st.lists(
                st.fixed_dictionaries({"id": st.just("31234000123456")}, optional={"rssi": rssis})
                | maybe({"id": idents, "rssi": rssis})
                | st.integers(),
                max_size=4,
            ),
        }
    ),
    "circ": maybe(
        {
            "ts": stamps,
            "boot": counts,
            "seq": counts,
            "item": idents,
            "action": st.sampled_from(["checkout", "checkin", "renew", "hold", "steal"]),
        }
    ),
}


def valid(kind: str) -> dict[str, Any]:
    base: dict[str, Any] = {"ts": "2026-11-24T09:59:00.123Z", "boot": 3, "seq": 10}
    extra: dict[str, dict[str, Any]] = {
        "gate": {"in": 12, "out": 4},
        "seat": {"presence": "person", "battery": 0.82},
        "shelf": {"sweep": 1, "section": "1F-A01-1", "items": [{"id": "31234000123456"}]},
        "circ": {"item": "31234000123456", "action": "checkout"},
    }
    return base | extra[kind]


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(sorted(bodies)), data=st.data())
def test_fast_path_agrees_with_the_protocol_models(kind: str, data: st.DataObject) -> None:
    # A valid message with some fields replaced by wild values and some dropped: most
    # draws stay close enough to valid that the fast path has to decide.
    body = valid(kind) | data.draw(bodies[kind])
    for name in data.draw(st.lists(st.sampled_from(sorted(body)), max_size=1)):
        body.pop(name, None)
    assert_same(TOPICS[kind], json.dumps(body).encode())


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(sorted(bodies)), data=st.data())
def test_fast_path_agrees_on_wild_messages(kind: str, data: st.DataObject) -> None:
    assert_same(TOPICS[kind], json.dumps(data.draw(bodies[kind])).encode())


@settings(max_examples=300)
@given(kind=st.sampled_from(sorted(bodies)), field=st.sampled_from(["boot", "seq", "ts"]), v=counts)
def test_one_bad_field_in_a_valid_message(kind: str, field: str, v: object) -> None:
    body = valid(kind) | {field: v}
    assert_same(TOPICS[kind], json.dumps(body).encode())


@given(raw=st.binary(max_size=200), kind=st.sampled_from(sorted(TOPICS)))
@example(raw=b'{"ts":"2026-11-24T09:59:00Z","boot":1,"seq":1,"in":1,"out":1} x', kind="gate")
@example(raw=b"\xef\xbb\xbf{}", kind="gate")
def test_arbitrary_bytes_never_raise_and_never_disagree(raw: bytes, kind: str) -> None:
    assert_same(TOPICS[kind], raw)


def test_the_common_messages_take_the_fast_path() -> None:
    # Without this the agreement tests could pass with a fast path that accepts nothing.
    for kind in TOPICS:
        assert assert_same(TOPICS[kind], json.dumps(valid(kind)).encode()), kind


def test_simulated_library_traffic_takes_the_fast_path() -> None:
    from stackpulse.kernel.layout import load_layout
    from stackpulse.simulators.model import generate

    layout = load_layout("examples/main/layout.yaml")
    sites = index_sites([layout])
    start = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    data = taken = 0
    for topic, raw, _retain in generate(layout, start, start + timedelta(hours=2), seed=3):
        if topic.endswith("/status"):
            continue
        data += 1
        received = datetime.fromisoformat(json.loads(raw)["ts"])
        got = decode_fast(ROOT, topic, raw, received, sites, format_ts(received))
        if got is not None:
            taken += 1
            assert assert_same_at(topic, raw, received, sites)
    assert data > 1000
    assert taken / data > 0.99, (taken, data)


def test_identifier_with_a_trailing_newline_is_refused() -> None:
    body = valid("circ") | {"item": "31234000123456\n"}
    raw = json.dumps(body).encode()
    assert fast(TOPICS["circ"], raw) is None
    assert not isinstance(decode(ROOT, TOPICS["circ"], raw, NOW, SITES), Accepted)


def test_duplicate_keys_agree() -> None:
    raw = b'{"ts":"2026-11-24T09:59:00Z","boot":1,"seq":1,"seq":2,"in":1,"out":1}'
    assert_same(TOPICS["gate"], raw)


def test_status_and_unknown_devices_take_the_checked_path() -> None:
    status = f"{ROOT}/main/gate/gate-1/status"
    assert fast(status, b'{"online": true}') is None
    assert fast(f"{ROOT}/main/gate/gate-9/data", json.dumps(valid("gate")).encode()) is None
    assert fast(f"{ROOT}/main/seat/gate-1/data", json.dumps(valid("gate")).encode()) is None
    assert fast(f"{ROOT}/_events/gate/gate-1/data", json.dumps(valid("gate")).encode()) is None


READ = {"id": "31234000123456"}
EDGES: list[tuple[str, dict[str, Any], bool]] = [
    # (kind, fields over a valid message, accepted by the protocol models)
    ("gate", {"boot": 2**53}, True),
    ("gate", {"boot": 2**53 + 1}, False),
    ("gate", {"seq": -1}, False),
    ("gate", {"in": 1.0}, False),
    ("gate", {"out": True}, False),
    ("seat", {"battery": 0}, True),
    ("seat", {"battery": 1}, True),
    ("seat", {"battery": 1.0000001}, False),
    ("seat", {"battery": -0.0000001}, False),
    ("seat", {"battery": None}, True),
    ("seat", {"presence": "Person"}, False),
    ("shelf", {"items": [READ | {"rssi": 50}]}, True),
    ("shelf", {"items": [READ | {"rssi": 50.5}]}, False),
    ("shelf", {"items": [READ | {"rssi": -200}]}, True),
    ("shelf", {"items": [READ | {"rssi": -200.5}]}, False),
    ("shelf", {"items": [{"id": "a" * 64}]}, True),
    ("shelf", {"items": [{"id": "a" * 65}]}, False),
    ("shelf", {"items": [{"id": ""}]}, False),
    ("shelf", {"items": [{"id": "a b"}]}, False),
    ("shelf", {"items": [{"id": "1"}] * 20_000}, True),
    ("shelf", {"items": [{"id": "1"}] * 20_001}, False),
    ("shelf", {"part": 2, "parts": 2}, True),
    ("shelf", {"part": 3, "parts": 2}, False),
    ("shelf", {"part": 0}, False),
    ("shelf", {"parts": 10_000, "part": 10_000}, True),
    ("shelf", {"parts": 10_001}, False),
    ("shelf", {"section": "1F-A01-2"}, False),  # not read by this reader
    ("circ", {"action": "steal"}, False),
    ("circ", {"item": "a:b.c-d_e"}, True),
    ("gate", {"ts": "2026-11-24T09:59:00"}, False),
    ("gate", {"ts": "2026-11-24T10:59:00+01:00"}, True),
    ("gate", {"ts": "2026-11-24T10:20:00Z"}, True),  # corrected, still accepted
]


@pytest.mark.parametrize(("kind", "over", "ok"), EDGES)
def test_bounds_agree(kind: str, over: dict[str, Any], ok: bool) -> None:
    raw = json.dumps(valid(kind) | over, separators=(",", ":")).encode()
    assert isinstance(decode_checked(ROOT, TOPICS[kind], raw, NOW, SITES), Accepted) is ok
    assert assert_same(TOPICS[kind], raw) is ok
