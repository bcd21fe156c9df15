"""The gateway's pure decoder: every bad input is a dead letter with a reason, never a crash."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stackpulse.gateway.decode import Accepted, Rejected, decode, index_sites
from stackpulse.kernel.dedup import Deduplicator
from stackpulse.kernel.schema import capture_ns, to_ns
from tests.support.layouts import ONE_OF_EACH

ROOT = "lib/v1"
NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)

LAYOUT = ONE_OF_EACH
SITES = index_sites([LAYOUT])


def gate_msg(**over: object) -> bytes:
    body: dict[str, object] = {
        "ts": "2026-11-24T09:59:00.123Z",
        "boot": 3,
        "seq": 10,
        "in": 12,
        "out": 4,
    }
    body.update(over)
    return json.dumps(body).encode()


def run(topic: str, raw: bytes) -> Accepted | Rejected:
    return decode(ROOT, topic, raw, NOW, SITES)


def test_a_valid_gate_message_becomes_an_event_and_a_point() -> None:
    result = run("lib/v1/main/gate/gate-1/data", gate_msg())
    assert isinstance(result, Accepted)
    assert result.key == ("main", "gate", "gate-1", 3, 10)
    assert result.event.payload["in"] == 12 and result.event.payload["out"] == 4
    assert not result.event.clock_corrected
    assert result.point.measurement == "gate"
    assert result.point.fields["in_total"] == 12
    assert result.point.ts_ns == capture_ns(datetime(2026, 11, 24, 9, 59, 0, 123000, UTC), 10)


def test_seat_point_carries_seat_and_zone_from_the_layout() -> None:
    raw = b'{"ts":"2026-11-24T09:59:00Z","boot":1,"seq":2,"presence":"object","battery":0.5}'
    result = run("lib/v1/main/seat/seat-0001/data", raw)
    assert isinstance(result, Accepted)
    assert dict(result.point.tags) == {
        "site": "main",
        "device": "seat-0001",
        "seat": "f1-001",
        "zone": "f1",
    }
    assert result.point.fields["presence"] == "object"


def test_the_last_will_is_accepted_without_a_timestamp() -> None:
    result = run("lib/v1/main/seat/seat-0001/status", b'{"online": false}')
    assert isinstance(result, Accepted)
    assert result.key is None
    assert result.event.payload == {"online": False}
    assert result.point.ts_ns == to_ns(NOW)


BAD_INPUT = [
    ("unknown_device", "lib/v1/main/gate/gate-9/data", gate_msg()),
    ("unknown_site", "lib/v1/law/gate/gate-1/data", gate_msg()),
    ("wrong_kind", "lib/v1/main/seat/gate-1/data", gate_msg()),
    ("bad_topic", "lib/v1/main/gate/gate-1", gate_msg()),
    ("bad_topic", "lib/v1/main/door/gate-1/data", gate_msg()),
    ("bad_topic", "lib/v1/main/gate/gate-1/telemetry", gate_msg()),
    ("bad_topic", "lib/v1/MAIN/gate/gate-1/data", gate_msg()),
    ("bad_json", "lib/v1/main/gate/gate-1/data", b'{"ts": "2026-11-24T09:59:00Z", "boot"'),
    ("bad_json", "lib/v1/main/gate/gate-1/data", b"\xff\xfe not utf-8"),
    ("invalid", "lib/v1/main/gate/gate-1/data", gate_msg(**{"in": "12"})),
    ("invalid", "lib/v1/main/gate/gate-1/data", gate_msg(out=-1)),
    ("invalid", "lib/v1/main/gate/gate-1/data", gate_msg(boot=True)),
    ("invalid", "lib/v1/main/gate/gate-1/data", gate_msg(ts="yesterday")),
    ("invalid", "lib/v1/main/gate/gate-1/data", gate_msg(ts="2026-11-24T09:59:00")),
    ("invalid", "lib/v1/main/gate/gate-1/data", b"[1, 2, 3]"),
    (
        "invalid",
        "lib/v1/main/seat/seat-0001/data",
        b'{"ts":"2026-11-24T09:59:00Z","boot":1,"seq":2,"presence":"cat"}',
    ),
    (
        "invalid",
        "lib/v1/main/seat/seat-0001/data",
        b'{"ts":"2026-11-24T09:59:00Z","boot":1,"seq":2,"presence":"person","battery":1.5}',
    ),
    (
        "unknown_section",
        "lib/v1/main/shelf/shelf-1/data",
        b'{"ts":"2026-11-24T09:59:00Z","boot":1,"seq":2,"sweep":1,"section":"9F-Z99-9","items":[]}',
    ),
    (
        "invalid",
        "lib/v1/main/shelf/shelf-1/data",
        b'{"ts":"2026-11-24T09:59:00Z","boot":1,"seq":2,"sweep":1,"section":"1F-A01-1",'
        b'"part":3,"parts":2,"items":[]}',
    ),
    (
        "invalid",
        "lib/v1/main/circ/circ-1/data",
        b'{"ts":"2026-11-24T09:59:00Z","boot":1,"seq":2,"item":"3123","action":"steal"}',
    ),
    ("too_large", "lib/v1/main/gate/gate-1/data", b"{" + b" " * (1024 * 1024) + b"}"),
]


@pytest.mark.parametrize(("reason", "topic", "raw"), BAD_INPUT)
def test_bad_input_is_dead_lettered_with_its_reason(reason: str, topic: str, raw: bytes) -> None:
    result = run(topic, raw)
    assert isinstance(result, Rejected), result
    assert result.reason == reason, result.detail
    body = json.loads(result.body)
    assert body["reason"] == reason
    assert body["topic"] == topic
    assert body["size"] == len(raw)
    assert len(result.body) < 300 * 1024  # a 1 MB payload is not copied whole
    if reason not in ("unknown_site", "bad_topic"):
        assert result.dead_letter.startswith("lib/v1/main/_dead/")


@pytest.mark.parametrize(
    "topic",
    ["lib/v1/main/_dead/seat/seat-0001", "lib/v1/_dead/gate/x", "lib/v1/main/_events/seat/a/data"],
)
def test_the_systems_own_output_is_ignored_not_dead_lettered(topic: str) -> None:
    assert run(topic, b"{}") is None


def test_dead_letter_without_a_parsable_site_goes_under_the_root() -> None:
    result = run("lib/v1/Bad Site/gate/x/data", gate_msg())
    assert isinstance(result, Rejected)
    assert result.dead_letter.startswith("lib/v1/_dead/")


@pytest.mark.parametrize(
    ("offset", "corrected"),
    [
        (timedelta(minutes=4), False),
        (timedelta(minutes=6), True),
        (-timedelta(days=6), False),
        (-timedelta(days=8), True),
    ],
)
def test_a_bad_device_clock_is_replaced_by_receive_time(offset: timedelta, corrected: bool) -> None:
    ts = (NOW + offset).isoformat().replace("+00:00", "Z")
    result = run("lib/v1/main/gate/gate-1/data", gate_msg(ts=ts))
    assert isinstance(result, Accepted)
    assert result.event.clock_corrected is corrected
    assert result.point.fields["clock_corrected"] is corrected
    assert result.event.ts == (NOW if corrected else NOW + offset)


@settings(max_examples=300, deadline=None)
@given(topic=st.text(max_size=80), raw=st.binary(max_size=300))
def test_decode_never_raises_on_arbitrary_input(topic: str, raw: bytes) -> None:
    result = run(topic, raw)
    assert result is None or isinstance(result, Accepted | Rejected)


@settings(max_examples=200, deadline=None)
@given(
    body=st.dictionaries(
        st.sampled_from(["ts", "boot", "seq", "in", "out", "x"]),
        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=30)),
    )
)
def test_decode_never_raises_on_arbitrary_json(body: dict[str, object]) -> None:
    result = run("lib/v1/main/gate/gate-1/data", json.dumps(body).encode())
    assert result is None or isinstance(result, Accepted | Rejected)


def test_duplicates_are_recognised_per_device_boot_and_seq() -> None:
    dedup = Deduplicator()
    keys = [("main", "gate", "gate-1", 1, s) for s in (1, 2, 3, 2, 1, 4)]
    assert [dedup.is_duplicate(k) for k in keys] == [False, False, False, True, True, False]
    assert not dedup.is_duplicate(("main", "gate", "gate-1", 2, 1))  # reboot: seq restarts
    assert dedup.is_duplicate(("main", "gate", "gate-1", 2, 1))
    assert not dedup.is_duplicate(("main", "gate", "gate-2", 1, 1))  # another device


def test_a_huge_seq_jump_costs_nothing_and_forgets_nothing_it_should_know() -> None:
    # seq may be anything up to 2**53: shifting the window by the jump would allocate a
    # number of 2**53 bits (a device could take the gateway down with one message).
    dedup = Deduplicator()
    key = ("main", "seat", "seat-0001", 1)
    assert not dedup.is_duplicate((*key, 5))
    assert not dedup.is_duplicate((*key, 2**53))
    assert dedup.is_duplicate((*key, 2**53))
    assert not dedup.is_duplicate((*key, 2**53 - 1))  # inside the window, not seen yet
    assert not dedup.is_duplicate((*key, 5))  # far below the window: let through


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 300)), max_size=400), st.randoms())
def test_dedup_accepts_each_message_exactly_once(msgs: list[tuple[int, int]], rnd: object) -> None:
    stream = msgs + msgs  # every message twice, in a shuffled order
    rnd.shuffle(stream)  # type: ignore[attr-defined]
    dedup = Deduplicator()
    accepted = [m for m in stream if not dedup.is_duplicate(("main", "seat", "s", *m))]
    assert sorted(accepted) == sorted(set(msgs))


@pytest.mark.parametrize("kind", ["gate", "seat", "shelf"])
def test_events_built_without_revalidation_equal_validated_ones(kind: str) -> None:
    from stackpulse.kernel.contracts.events import Event

    path = Path(__file__).parent / "fuzz" / "corpus" / f"valid_{kind}"
    topic, _, payload = path.read_bytes().partition(b"\n")
    result = decode(ROOT, topic.decode(), payload, NOW, SITES)
    assert isinstance(result, Accepted)
    again = Event.model_validate_json(result.event.model_dump_json())
    assert again == result.event
    assert again.model_dump_json() == result.event.model_dump_json()
