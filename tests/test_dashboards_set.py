"""Issue 7, point 2: every panel of every dashboard returns data from a real InfluxDB.

Two sites live through a simulated Tuesday (and the occupancy of the Tuesday before).
Every point is made by the code that makes it in production — the gateway's decoder
(device points, dead letters), the occupancy service's site model (zone snapshots,
closing drift) and forecaster (the typical day), the inventory service's site model
(counts, closed findings) and demand aggregator — except the alert transitions, which
a small stand-in lifecycle writes through kernel.schema.alert_point until the alerts
service does. Then every query of every panel and variable runs with Grafana's macros
expanded; a panel with no rows, or only nulls, fails the test.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from stackpulse.dashboards.build import build_all
from stackpulse.dashboards.influx import expand_macros, panel_queries, variable_queries
from stackpulse.gateway.decode import decode
from stackpulse.gateway.results import Accepted, Rejected, index_sites
from stackpulse.kernel.layout import Layout
from stackpulse.kernel.schema import (
    alert_point,
    dead_letter_point,
    finding_closed_point,
    typical_point,
)
from stackpulse.kernel.store import Point, open_store
from stackpulse.kernel.store.base import SeriesStore
from stackpulse.kernel.topics import Channel, Kind
from stackpulse.services.inventory.model import Change, InventorySettings
from stackpulse.services.inventory.site import SiteInventory, inventory_point
from stackpulse.services.occupancy.forecast import history_query, hour_of_week, weekly_profile
from stackpulse.services.occupancy.logic import SeatTiming
from stackpulse.services.occupancy.site import SiteOccupancy
from stackpulse.simulators import Faults, SimConfig, messages
from stackpulse.simulators.synth import synthetic_layout
from tests.support.events import sim_event
from tests.test_demand_dashboard import _catalog
from tests.test_demand_dashboard import _simulated_day as _demand_day

ROOT = "lib/v1"
DAY = datetime(2026, 11, 24, tzinfo=UTC)  # a Tuesday
END = DAY + timedelta(days=1)
RECORD = timedelta(minutes=1)  # as the occupancy and inventory services record
MIN_INTERVAL = "5m"  # what Grafana's $__interval comes to for a day on a wide panel
CONFIG = SimConfig(faults=Faults(dead_battery_seat_p=0.2, missed_read_p=0.02))
_LEFT_MACRO = re.compile(r"\$\{?[A-Za-z_]|\[\[")
_TAGS = {"time", "site", "zone", "floor", "device", "kind", "reason", "rule", "severity"}
_TAGS |= {"finding", "section", "call_class", "rank"}
# Two sites of different shapes, so a query that ignores $site shows foreign series.
SITES = {
    "main": synthetic_layout(site="main", floors=2, rooms_per_floor=1, seats_per_room=8),
    "law": synthetic_layout(site="law", floors=1, rooms_per_floor=2, seats_per_room=6, shelves=1),
}
RULES = (("device_offline", "warning"), ("seat_hogging", "info"), ("zone_full", "critical"))


@dataclass
class SiteDay:
    layout: Layout
    points: list[Point] = field(default_factory=list)
    dead: Counter[str] = field(default_factory=Counter)  # reason -> dead letters
    fixed: Counter[str] = field(default_factory=Counter)  # finding -> closed
    open_alerts: dict[tuple[str, str], int] = field(default_factory=dict)


# -- the simulated days ---------------------------------------------------------------


def _bad_messages(layout: Layout, n: int) -> list[tuple[str, bytes]]:
    """What a gateway refuses: broken JSON from a known seat, a device nobody listed."""
    seat = layout.seats[n % len(layout.seats)].device
    if n % 3:
        return [(f"{ROOT}/{layout.site}/seat/{seat}/data", b'{"ts": "2026-11-24T1')]
    return [(f"{ROOT}/{layout.site}/gate/no-such-gate/data", b"{}")]


class _Day:
    """Feeds one site's simulated messages to the production code, minute by minute."""

    def __init__(self, layout: Layout, *, full: bool) -> None:
        self.out = SiteDay(layout)
        self.full = full
        self.site = layout.site
        self.occupancy = SiteOccupancy(layout, SeatTiming(), ROOT)
        catalog = _catalog(layout)
        self.catalog = list(catalog.values())
        self.inventory = SiteInventory(layout, catalog, InventorySettings())
        self.index = index_sites([layout])
        self.opened: dict[tuple[str, str], datetime] = {}
        self.minutes = 0

    def run(self, start: datetime, seed: int) -> SiteDay:
        record_at = start + RECORD
        for m in messages(
            self.out.layout, start, start + timedelta(days=1), seed,
            catalog=self.catalog, config=CONFIG, step=60,
        ):  # fmt: skip
            at = datetime.fromtimestamp(m.at, UTC)
            while at >= record_at:
                self._record(record_at)
                record_at += RECORD
            ev = sim_event(m, self.site)
            self.occupancy.apply(ev, at)
            if not self.full:
                continue
            result = decode(ROOT, m.topic(ROOT, self.site), m.encode(), at, self.index)
            assert isinstance(result, Accepted), result
            self.out.points.append(result.point)
            if m.channel is Channel.DATA and m.kind in (Kind.SHELF, Kind.CIRC):
                self._changes(self.inventory.apply(ev))
        while record_at <= start + timedelta(days=1):
            self._record(record_at)
            record_at += RECORD
        self.out.points += self.occupancy.take_points()  # the drift found at closing
        return self.out

    def _record(self, now: datetime) -> None:
        self.occupancy.tick(now)
        self.out.points += self.occupancy.zone_points(now)
        if not self.full:
            return
        self._changes(self.inventory.tick(now))
        self.out.points.append(inventory_point(self.site, self.inventory.counts(), now))
        self.minutes += 1
        if self.minutes % 20 == 0:  # a few bad messages, counted per minute as the gateway must
            per_minute: Counter[tuple[str | None, str | None, str]] = Counter()
            for topic, raw in _bad_messages(self.out.layout, self.minutes // 20):
                result = decode(ROOT, topic, raw, now, self.index)
                assert isinstance(result, Rejected), result
                per_minute[(result.site, result.kind, result.reason)] += 1
                self.out.dead[result.reason] += 1
            for (site, kind, reason), n in per_minute.items():
                self.out.points.append(dead_letter_point(site, kind, reason, count=n, ts=now))

    def _changes(self, changes: list[Change]) -> None:
        for c in changes:
            key = (c.finding.value, c.item)
            if c.state == "opened":
                self.opened[key] = c.at
            elif key in self.opened:
                seq = sum(self.out.fixed.values())
                self.out.points.append(
                    finding_closed_point(
                        self.site, key[0], opened_at=self.opened.pop(key), closed_at=c.at, seq=seq
                    )
                )
                self.out.fixed[key[0]] += 1


def _alerts(day: SiteDay, seed: int) -> None:
    """A stand-in for the alerts service: alerts open, are acked, then cleared."""
    rng = random.Random(seed)
    events: list[tuple[datetime, str, str, str, float | None]] = []
    for hour in range(24):
        for rule, severity in RULES:
            if rng.random() < 0.5:
                opened = DAY + timedelta(hours=hour, minutes=rng.uniform(0, 59))
                ack = rng.uniform(60, 1800)
                clear = ack + rng.uniform(300, 3600)
                events.append((opened, rule, severity, "opened", None))
                if opened + timedelta(seconds=ack) < END:
                    events.append((opened + timedelta(seconds=ack), rule, severity, "acked", ack))
                if opened + timedelta(seconds=clear) < END:
                    events.append(
                        (opened + timedelta(seconds=clear), rule, severity, "cleared", clear)
                    )
    open_now: Counter[tuple[str, str]] = Counter()
    for seq, (at, rule, severity, kind, seconds) in enumerate(sorted(events)):
        open_now[(rule, severity)] += {"opened": 1, "cleared": -1}.get(kind, 0)
        day.points.append(
            alert_point(
                day.layout.site, rule, severity, kind,
                open_count=open_now[(rule, severity)], ts=at, seq=seq,
                seconds_to_ack=seconds if kind == "acked" else None,
                seconds_to_clear=seconds if kind == "cleared" else None,
            )
        )  # fmt: skip
    day.open_alerts = dict(open_now)


async def _typical(store: SeriesStore, layout: Layout) -> list[Point]:
    """The forecaster's weekly profile of the week before, written next to each snapshot."""
    rows = await store.query(history_query(layout.site, DAY, weeks=1))
    profile = weekly_profile(rows, layout.tz)
    points = []
    at = DAY + RECORD
    while at <= END:
        how = hour_of_week(at, layout.tz)
        for z in layout.zones:
            if (typical := profile.get(z.id, {}).get(how)) is not None:
                points.append(typical_point(layout.site, z.id, z.floor, typical=typical, ts=at))
        at += RECORD
    return points


# -- running the panels' queries --------------------------------------------------------


_UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1)}


def _duration(text: str) -> timedelta:
    """Grafana's "15m", "1h", "7d"."""
    return int(text[:-1]) * _UNITS[text[-1]]


def _interval(panel: dict[str, Any]) -> str:
    own = panel.get("interval")
    return own if own and _duration(own) > _duration(MIN_INTERVAL) else MIN_INTERVAL


def _send(text: str, panel: dict[str, Any], site: str) -> str:
    """The query as Grafana sends it for `panel`, the day as range, every zone chosen."""
    start, end = DAY, END + timedelta(seconds=1)  # rankings are stamped at END
    if panel.get("timeFrom"):
        start = end - _duration(panel["timeFrom"])
    if panel.get("timeShift"):
        start, end = start - _duration(panel["timeShift"]), end - _duration(panel["timeShift"])
    zones = [z.id for z in SITES[site].zones]
    sent = expand_macros(
        text, start=start, end=end, interval=_interval(panel),
        variables={"site": site, "zone": zones},
    )  # fmt: skip
    assert not _LEFT_MACRO.search(sent), f"a macro was left: {sent}"
    return sent


def _values(rows: list[dict[str, Any]]) -> list[Any]:
    return [v for r in rows for k, v in r.items() if k not in _TAGS and v is not None]


@pytest.fixture(scope="module")
def days() -> dict[str, SiteDay]:
    out = {}
    for seed, (site, layout) in enumerate(SITES.items(), start=1):
        day = _Day(layout, full=True).run(DAY, seed)
        day.points += _Day(layout, full=False).run(DAY - timedelta(days=7), seed + 10).points
        day.points += _demand_day(layout, seed).points
        _alerts(day, seed)
        out[site] = day
    return out


@pytest.mark.integration
@pytest.mark.timeout(300)
async def test_every_panel_of_every_dashboard_returns_data(
    influx_db: str, days: dict[str, SiteDay]
) -> None:
    boards = {name: json.loads(text) for name, text in build_all().items()}
    assert {b["uid"] for b in boards.values()} >= {
        f"stackpulse-{n}" for n in ("occupancy", "seats", "inventory", "demand", "alerts")
    } | {"stackpulse-devices"}
    store = open_store(influx_db)
    try:
        await store.ping()
        for day in days.values():
            await store.write(day.points)
        for day in days.values():
            await store.write(await _typical(store, day.layout))

        failures: list[str] = []
        ran = 0
        for name, board in boards.items():
            panels = {p["title"]: p for p in board["panels"]}
            for var, text in variable_queries(board):
                for site, layout in SITES.items():
                    sent = expand_macros(
                        text, start=DAY, end=END, interval="1m", variables={"site": site}
                    )
                    got = sorted(r["value"] for r in await store.raw_query(sent))
                    want = sorted(SITES) if var == "site" else sorted(z.id for z in layout.zones)
                    if got != want:
                        failures.append(f"{name} variable {var} ({site}): {got} != {want}")
            for title, ref_id, text in panel_queries(board):
                for site in SITES:
                    sent = _send(text, panels[title], site)
                    rows = await store.raw_query(sent)
                    ran += 1
                    if not _values(rows):
                        failures.append(f"{name} / {title!r} {ref_id} ({site}): no data: {sent}")
        assert not failures, "\n".join(failures)
        assert ran >= 2 * 35
    finally:
        await store.close()


def _queries(name: str) -> tuple[dict[str, dict[str, Any]], dict[tuple[str, str], str]]:
    board = json.loads(build_all()[name])
    panels = {p["title"]: p for p in board["panels"]}
    return panels, {(t, ref): q for t, ref, q in panel_queries(board)}


@pytest.mark.integration
@pytest.mark.timeout(300)
async def test_panels_show_what_the_day_held(influx_db: str, days: dict[str, SiteDay]) -> None:
    """A few panels checked against the simulation's own numbers, not only "some rows"."""
    store = open_store(influx_db)
    try:
        for day in days.values():
            await store.write(day.points)

        async def rows(name: str, title: str, site: str, ref: str = "A") -> list[dict[str, Any]]:
            panels, queries = _queries(name)
            return await store.raw_query(_send(queries[(title, ref)], panels[title], site))

        for site, day in days.items():
            layout = day.layout
            # Seats: every seat is in exactly one state.
            (now,) = await rows("seats.json", "Seats now", site)
            assert sum(now[s] for s in ("free", "occupied", "held", "unknown")) == len(layout.seats)
            # Devices: never more seat sensors heard than there are; dead letters all counted.
            heard = await rows("devices.json", "Devices heard", site, "B")
            assert 0 < max(r["seat"] for r in heard) <= len(layout.seats)
            dead = await rows("devices.json", "Dead letters in the time range", site)
            got = Counter[str]()
            for r in dead:
                got[r["reason"]] += r["messages"]
            assert got == day.dead and set(got) == {"bad_json", "unknown_device"}
            # Inventory: every closed finding in the table, once.
            fixed = await rows("inventory.json", "Fixed in the time range", site)
            assert {r["finding"]: r["fixed"] for r in fixed} == dict(day.fixed)
            assert day.fixed["reshelving"] > 0
            # Alerts: what is open at the end of the day, per rule and severity.
            open_now = await rows("alerts.json", "Open now", site)
            assert {(r["rule"], r["severity"]): r["open"] for r in open_now} == day.open_alerts
            # Occupancy per floor: the floors of the layout, nobody counted twice.
            floors = await rows("occupancy.json", "Occupancy per floor", site)
            assert {r["floor"] for r in floors} == {str(z.floor) for z in layout.zones}
            capacity = sum(z.capacity for z in layout.zones)
            assert 0 < max(r["occupancy"] or 0 for r in floors) <= capacity
    finally:
        await store.close()
