"""The pure simulator: deterministic, protocol-exact, with a daily rhythm and a true state."""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stackpulse.kernel.layout import load_layout
from stackpulse.kernel.models import GateData, SeatData, ShelfData, StatusMessage, parse_payload
from stackpulse.kernel.topics import Channel, Kind, parse_device_topic
from stackpulse.simulators import Faults, LibraryModel, Message, SimConfig, generate, messages
from stackpulse.simulators.rhythm import Hours, target_fill
from stackpulse.simulators.run import load_catalog
from stackpulse.simulators.synth import synthetic_catalog, synthetic_layout

TZ = ZoneInfo("Asia/Shanghai")
LAYOUT = synthetic_layout()
CATALOG = synthetic_catalog(LAYOUT, per_section=30)


def local(day: int, hour: int, minute: int = 0) -> datetime:
    """A time on Tuesday 2026-11-(24 + day) in the site's zone (opens 07:30, closes 22:30)."""
    return datetime(2026, 11, 24 + day, hour, minute, tzinfo=TZ)


def day_stream(seed: int = 7, *, config: SimConfig | None = None) -> list[Message]:
    return list(messages(LAYOUT, local(0, 6), local(0, 23), seed, catalog=CATALOG, config=config))


@pytest.fixture(scope="module")
def day() -> list[Message]:
    return day_stream()


def key(m: Message) -> tuple[str, int, int]:
    return m.device, m.payload["boot"], m.payload.get("seq", -1)


def test_same_seed_same_stream_and_different_seed_differs() -> None:
    start, end = local(0, 11), local(0, 13)
    a = list(generate(LAYOUT, start, end, 1, catalog=CATALOG))
    b = list(generate(LAYOUT, start, end, 1, catalog=CATALOG))
    c = list(generate(LAYOUT, start, end, 2, catalog=CATALOG))
    assert len(a) > 1000
    assert a == b
    assert a != c


@settings(max_examples=8, deadline=None)
@given(cuts=st.lists(st.floats(min_value=0, max_value=1800), max_size=12))
def test_stream_does_not_depend_on_how_time_is_sliced(cuts: list[float]) -> None:
    start = local(0, 12)
    config = SimConfig(faults=Faults(duplicate_p=0.05, reboots_per_device_day=20))

    def run(offsets: list[float]) -> list[tuple[float, bytes]]:
        model = LibraryModel(LAYOUT, start=start, seed=3, catalog=CATALOG, config=config)
        out = []
        for off in [*sorted(offsets), 1800.0]:
            out += [(m.at, m.encode()) for m in model.advance(start + timedelta(seconds=off))]
        return out

    assert run(cuts) == run([])


def test_a_catalog_file_read_by_the_kernel_stocks_the_shelves(tmp_path: Path) -> None:
    rows = ["item,call_number,title,collection"]
    rows += [f"{c.item},{c.call_number},Book {n},main" for n, c in enumerate(CATALOG[:40])]
    rows.append("39999999999999,ZZ9 .A1,Nowhere,main")  # no section holds it: never shelved
    (tmp_path / "catalog.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    catalog = load_catalog(tmp_path / "catalog.csv", LAYOUT)
    model = LibraryModel(LAYOUT, start=local(0, 3), seed=1, catalog=catalog)
    heard = {
        r["id"]: m.payload["section"]
        for m in model.advance(local(0, 3, 16))
        if m.kind is Kind.SHELF
        for r in m.payload["items"]
    }
    truth = model.truth().items
    assert len(truth) == 40 and "39999999999999" not in truth
    assert heard == {i: w for i, w in truth.items() if w not in ("loan", "reshelving")}
    assert all(
        w == next(c for c in CATALOG if c.item == i).home_sections[0] for i, w in heard.items()
    )


def test_the_example_library_runs_its_lunch_hour_cleanly() -> None:
    folder = Path(__file__).resolve().parent.parent / "examples" / "main"
    layout = load_layout(folder / "layout.yaml")
    catalog = load_catalog(folder / "catalog.csv", layout)
    start = datetime(2026, 11, 24, 11, 30, tzinfo=layout.tz)
    model = LibraryModel(layout, start=start, seed=2, catalog=catalog)
    n = 0
    for m in model.advance(start + timedelta(hours=1)):
        parse_payload(m.kind, m.channel, m.encode())
        n += 1
    truth = model.truth()
    assert n > 1000 and sum(truth.zones.values()) > 100
    assert all(truth.zones[z.id] <= z.capacity for z in layout.zones)
    assert set(truth.gates) == {g.device for g in layout.gates}


def test_every_payload_parses_under_the_protocol(day: list[Message]) -> None:
    kinds = set()
    for m in day:
        topic = parse_device_topic(m.topic("lib/v1", LAYOUT.site))
        assert (topic.kind, topic.device, topic.channel) == (m.kind, m.device, m.channel)
        parsed = parse_payload(m.kind, m.channel, m.encode())
        assert m.encode().decode().startswith('{"ts":"') and '"ts":"' in m.encode().decode()
        assert m.payload["ts"].endswith("Z")
        if m.channel is Channel.STATUS:
            assert isinstance(parsed, StatusMessage) and parsed.online and parsed.fw
            assert m.retain
        else:
            assert not m.retain
        kinds.add((m.kind, m.channel))
    assert {(k, Channel.DATA) for k in Kind} <= kinds
    assert all((k, Channel.STATUS) in kinds for k in Kind)


def test_gate_payload_is_exactly_the_protocol_shape(day: list[Message]) -> None:
    gate = next(m for m in day if m.kind is Kind.GATE and m.channel is Channel.DATA)
    assert list(json.loads(gate.encode())) == ["ts", "boot", "seq", "in", "out"]
    seat = next(m for m in day if m.kind is Kind.SEAT and m.channel is Channel.DATA)
    assert list(json.loads(seat.encode())) == ["ts", "boot", "seq", "presence", "battery"]


def test_nobody_before_opening_or_after_closing_and_lunch_beats_mid_morning() -> None:
    model = LibraryModel(LAYOUT, start=local(0, 5), seed=11, catalog=CATALOG)
    people: dict[datetime, int] = {}
    t = local(0, 5)
    while t <= local(1, 8):
        model.advance(t)
        people[t] = sum(model.truth().zones.values())
        t += timedelta(minutes=5)
    opened, closed = local(0, 7, 30), local(0, 22, 30)
    assert all(n == 0 for when, n in people.items() if when <= opened)
    assert all(n == 0 for when, n in people.items() if closed <= when <= local(1, 7, 30))
    mid_morning = max(people[local(0, 10, m)] for m in range(0, 30, 5))
    lunch = max(people[local(0, 13, m)] for m in range(0, 60, 5))
    assert lunch > mid_morning * 1.3
    assert lunch > 0.5 * sum(z.capacity for z in LAYOUT.zones) * SimConfig().peak_fill
    evening = max(people[local(0, 19, m)] for m in range(30, 60, 5))
    dinner = min(people[local(0, 18, m)] for m in range(0, 30, 5))
    assert evening > dinner


def test_weekend_hours_closed_days_and_late_nights() -> None:
    def hours(spec: dict[str, str]) -> Hours:
        return Hours(synthetic_layout(hours=spec, timezone="UTC"))

    week = hours({"mon-fri": "07:30-22:30", "sat": "09:00-21:00", "sun": "closed"})
    sat, sun = datetime(2026, 11, 28, tzinfo=UTC), datetime(2026, 11, 29, tzinfo=UTC)
    assert target_fill(week, sat.replace(hour=8, minute=59)) == 0
    assert target_fill(week, sat.replace(hour=13)) > 0
    assert target_fill(week, sat.replace(hour=13)) < target_fill(week, sat.replace(day=27, hour=13))
    assert all(target_fill(week, sun + timedelta(hours=h)) == 0 for h in range(24))
    late = hours({"mon-sun": "20:00-02:00"})
    assert target_fill(late, sat.replace(hour=23)) > 0
    assert target_fill(late, sun.replace(hour=0, minute=30)) > 0
    assert target_fill(late, sun.replace(hour=3)) == 0
    always = hours({"mon-sun": "00:00-24:00"})
    assert all(target_fill(always, sat + timedelta(minutes=m)) > 0.1 for m in range(0, 2880, 7))


def test_a_library_open_around_the_clock_never_empties_at_midnight() -> None:
    layout = synthetic_layout(hours={"mon-sun": "00:00-24:00"})
    model = LibraryModel(layout, start=local(0, 20), seed=6)
    lows = []
    t = local(0, 20)
    while t < local(1, 4):
        t += timedelta(minutes=10)
        model.advance(t)
        lows.append(sum(model.truth().zones.values()))
    assert min(lows[12:]) > 10


def test_zones_never_overfill_even_when_the_crowd_wants_more() -> None:
    small = synthetic_layout(room_capacity=6, lobby_capacity=4, seats_per_room=8)
    cfg = SimConfig(peak_fill=1.0, zone_max_fill=1.0, control_tau=60.0)
    model = LibraryModel(small, start=local(0, 12), seed=5, config=cfg)
    cap = {z.id: z.capacity for z in small.zones}
    t, peak = local(0, 12), 0
    while t < local(0, 14):
        t += timedelta(seconds=7)
        model.advance(t)
        truth = model.truth()
        assert all(0 <= truth.zones[z] <= cap[z] for z in cap), truth.zones
        peak = max(peak, sum(truth.zones.values()))
    assert peak >= 0.8 * sum(cap.values()) - cap["lobby"]
    assert model.truth().turned_away > 0


def test_truth_matches_gate_totals_and_what_the_gates_sent() -> None:
    cfg = SimConfig(faults=Faults(reboots_per_device_day=6))
    model = LibraryModel(LAYOUT, start=local(0, 7), seed=9, config=cfg)
    first_boots = {d: g.boot for d, g in model.truth().gates.items()}
    last: dict[tuple[str, int], tuple[int, int]] = {}
    t = local(0, 7)
    while t < local(0, 23):
        t += timedelta(minutes=10)
        for m in model.advance(t):
            if m.kind is Kind.GATE and m.channel is Channel.DATA:
                last[(m.device, m.payload["boot"])] = (m.payload["in"], m.payload["out"])
        truth = model.truth()
        for zone, n in truth.zones.items():
            assert truth.net_from_gates(zone) == n
    truth = model.truth()
    assert sum(g.total_in for g in truth.gates.values()) > 500
    for device, g in truth.gates.items():
        sent_in = sum(v[0] for (d, _), v in last.items() if d == device)
        sent_out = sum(v[1] for (d, _), v in last.items() if d == device)
        assert (sent_in, sent_out) == (g.total_in, g.total_out)
        assert (g.count_in, g.count_out) == last[(device, g.boot)]
    assert sum(g.boot - first_boots[d] for d, g in truth.gates.items()) >= 5


def test_seq_counts_from_zero_per_boot_and_gate_counters_never_drop_within_one() -> None:
    cfg = SimConfig(faults=Faults(reboots_per_device_day=8))
    stream = day_stream(config=cfg)
    seqs: dict[tuple[str, int], list[int]] = defaultdict(list)
    counts: dict[tuple[str, int], list[tuple[int, int]]] = defaultdict(list)
    boots: dict[str, list[int]] = defaultdict(list)
    reboots = 0
    for m in stream:
        boot = m.payload["boot"]
        if m.channel is Channel.STATUS:
            boots[m.device].append(boot)
            if m.reconnect:
                reboots += 1
                # The restart comes before any message of the new boot.
                assert (m.device, boot) not in seqs
            continue
        seqs[(m.device, boot)].append(m.payload["seq"])
        if m.kind is Kind.GATE:
            counts[(m.device, boot)].append((m.payload["in"], m.payload["out"]))
    assert reboots > 20
    for seq in seqs.values():
        assert seq == list(range(len(seq)))
    for series in counts.values():
        assert series[0] == (0, 0)  # every boot counts from zero
        assert all(a[0] <= b[0] and a[1] <= b[1] for a, b in itertools.pairwise(series))
    for b in boots.values():
        assert b == sorted(set(b)) and b == list(range(b[0], b[0] + len(b)))


def test_heartbeats_are_never_late(day: list[Message]) -> None:
    last: dict[str, float] = {}
    worst = {Kind.GATE: 0.0, Kind.SEAT: 0.0}
    for m in day:
        if m.channel is Channel.DATA and m.kind in worst:
            if m.device in last:
                worst[m.kind] = max(worst[m.kind], m.at - last[m.device])
            last[m.device] = m.at
    assert worst[Kind.GATE] <= 60.0 + 1e-6
    assert worst[Kind.SEAT] <= 300.0 + 1e-6
    assert {s.device for s in LAYOUT.seats} <= set(last)


def test_seats_show_people_objects_and_follow_the_truth() -> None:
    model = LibraryModel(LAYOUT, start=local(0, 7), seed=4)
    seat_of = {s.device: s.id for s in LAYOUT.seats}
    sent: dict[str, str] = {}
    seen: set[str] = set()
    t = local(0, 7)
    while t < local(0, 22):
        t += timedelta(minutes=3)
        for m in model.advance(t):
            if m.kind is Kind.SEAT and m.channel is Channel.DATA:
                data = parse_payload(m.kind, m.channel, m.encode())
                assert isinstance(data, SeatData) and data.battery is not None
                sent[seat_of[m.device]] = data.presence
                seen.add(data.presence)
        truth = model.truth()
        assert {s: truth.seats[s] for s in sent} == sent
    assert seen == {"person", "object", "empty"}
    occupied = sum(p == "person" for p in model.truth().seats.values())
    assert occupied > 0


def test_shelf_sweeps_report_home_items_in_parts_and_see_misplaced_books() -> None:
    cfg = SimConfig(max_items_per_part=12, sweep_interval=600.0)
    model = LibraryModel(LAYOUT, start=local(0, 3), seed=8, catalog=CATALOG, config=cfg)
    section_items: dict[str, set[str]] = defaultdict(set)
    parts: dict[tuple[str, int, str], list[tuple[int, int]]] = defaultdict(list)
    for m in model.advance(local(0, 3, 10)):
        data = parse_payload(m.kind, m.channel, m.encode())
        if isinstance(data, ShelfData):
            section_items[data.section] |= {r.id for r in data.items}
            parts[(m.device, data.sweep, data.section)].append((data.part, data.parts))
    truth = model.truth()
    sections = {s.id for sh in LAYOUT.shelves for s in sh.sections}
    assert set(section_items) == sections
    for section, items in section_items.items():
        assert items == {i for i, w in truth.items.items() if w == section}
        assert len(items) > 20
    assert all(p == [(k, 3) for k in (1, 2, 3)] for p in parts.values())
    # Every sweep reports every section once per part.
    assert len(parts) == len(sections)

    item = next(i for i, w in truth.items.items() if w == "S1-01")
    model.misplace(item, "S2-03")
    assert model.truth().misplaced == {item: "S2-03"}
    heard: dict[str, set[str]] = defaultdict(set)
    for m in model.advance(local(0, 3, 25)):
        data = parse_payload(m.kind, m.channel, m.encode())
        if isinstance(data, ShelfData):
            heard[data.section] |= {r.id for r in data.items}
    assert item in heard["S2-03"] and item not in heard["S1-01"]


def test_missed_reads_thin_out_sweeps_without_moving_books() -> None:
    cfg = SimConfig(faults=Faults(missed_read_p=0.3))
    plain = LibraryModel(LAYOUT, start=local(0, 3), seed=8, catalog=CATALOG)
    lossy = LibraryModel(LAYOUT, start=local(0, 3), seed=8, catalog=CATALOG, config=cfg)

    def reads(model: LibraryModel) -> int:
        return sum(
            len(m.payload["items"]) for m in model.advance(local(0, 3, 16)) if m.kind is Kind.SHELF
        )

    full, thin = reads(plain), reads(lossy)
    assert 0.6 * full < thin < 0.8 * full
    assert plain.truth().items == lossy.truth().items


def test_circulation_moves_books_off_and_back_onto_shelves() -> None:
    cfg = SimConfig(checkouts_per_person_hour=0.3, checkins_per_person_hour=0.3)
    model = LibraryModel(LAYOUT, start=local(0, 7), seed=12, catalog=CATALOG, config=cfg)
    actions: dict[str, int] = defaultdict(int)
    for m in model.advance(local(0, 20)):
        if m.kind is Kind.CIRC:
            actions[m.payload["action"]] += 1
            if m.payload["action"] == "checkout":
                assert m.payload["item"] in {c.item for c in CATALOG}
    assert actions["checkout"] > 20 and actions["checkin"] > 20
    places = set(model.truth().items.values())
    assert {"loan", "S1-01"} <= places


def test_duplicates_and_late_delivery_keep_the_same_underlying_messages() -> None:
    start, end = local(0, 12), local(0, 14)
    plain = list(messages(LAYOUT, start, end, 21, catalog=CATALOG))
    faults = Faults(duplicate_p=0.1, late_p=0.05, late_delay=(30.0, 300.0))
    noisy = list(messages(LAYOUT, start, end, 21, catalog=CATALOG, config=SimConfig(faults=faults)))
    assert len(noisy) > len(plain) * 1.05
    unique = {key(m): m.encode() for m in noisy}
    ends = end.timestamp() - 300  # late ones still in flight at the end are not delivered yet
    assert {key(m): m.encode() for m in plain if m.at < ends}.items() <= unique.items()
    dups = [k for k, n in _counts(noisy).items() if n > 1]
    assert dups and all(k[2] >= 0 for k in dups)
    ts = [
        GateData.model_validate_json(m.encode()).ts
        for m in noisy
        if m.kind is Kind.GATE and m.channel is Channel.DATA
    ]
    assert any(b < a for a, b in itertools.pairwise(ts))  # late ones arrive out of order


def _counts(stream: list[Message]) -> dict[tuple[str, int, int], int]:
    out: dict[tuple[str, int, int], int] = defaultdict(int)
    for m in stream:
        if m.channel is Channel.DATA:
            out[key(m)] += 1
    return out


def test_bad_device_clock_shifts_ts_only() -> None:
    model = LibraryModel(LAYOUT, start=local(0, 12), seed=1)
    model.set_clock_offset("gate-door-1", -3600)
    for m in model.advance(local(0, 12, 5)):
        if m.device == "gate-door-1" and m.channel is Channel.DATA:
            ts = datetime.fromisoformat(m.payload["ts"])
            assert abs(ts.timestamp() - (m.at - 3600)) < 0.002


def test_explicit_reboot_restarts_boot_seq_and_counters() -> None:
    model = LibraryModel(LAYOUT, start=local(0, 12), seed=2)
    model.advance(local(0, 12, 30))
    before = model.truth().gates["gate-door-1"]
    assert before.count_in > 0
    model.reboot("gate-door-1")
    out = model.advance(local(0, 12, 30))
    status, first = (m for m in out if m.device == "gate-door-1")
    assert status.reconnect and status.retain and status.payload["boot"] == before.boot + 1
    assert (first.payload["boot"], first.payload["seq"], first.payload["in"]) == (
        before.boot + 1,
        0,
        0,
    )
    after = model.truth().gates["gate-door-1"]
    assert after.total_in == before.total_in and after.count_in == 0
    with pytest.raises(KeyError, match="no device"):
        model.reboot("gate-nope")
