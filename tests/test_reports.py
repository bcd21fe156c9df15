"""Issue 7, point 5: the daily report, its figures checked against a simulated day in a real
InfluxDB; the CSV reads back to the same figures; the printable page in chromium."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from playwright.async_api import Page

from stackpulse.kernel.auth import TokenIssuer, hash_password
from stackpulse.kernel.layout import Layout
from stackpulse.kernel.schema import ALERT_TRANSITION, FINDING_CLOSED, ZONE_OCCUPANCY
from stackpulse.kernel.statedb import StateDB
from stackpulse.kernel.store import Point, open_store
from stackpulse.kernel.store.base import SeriesStore
from stackpulse.services.inventory.demand import DEMAND_RANK
from stackpulse.services.occupancy.view import OccupancyView
from stackpulse.services.reports.logic import DailyReport, day_window, fold_daily, read_daily
from stackpulse.services.reports.render import parse_csv, to_csv
from stackpulse.simulators.synth import synthetic_layout
from stackpulse.web.auth import AuthService
from tests.support.app import app_for
from tests.support.browser import ARTIFACTS, CHROMIUM_ARGS, serve_app
from tests.test_dashboards_set import DAY, SiteDay, _alerts, _Day
from tests.test_demand_dashboard import _simulated_day as _demand_day

PASSWORD = "correct horse battery"
# The library's local day (Asia/Shanghai, UTC+8) starts at 16:00 UTC the day before, so
# the simulated UTC day fills its last two thirds and its alerts after 16:00 UTC fall out.
REPORT_DAY = date(2026, 11, 24)
LAYOUT = synthetic_layout(site="main", floors=2, rooms_per_floor=1, seats_per_room=8)


# -- the figures, computed straight from the points written -----------------------------


def _in(points: Iterable[Point], measurement: str, layout: Layout) -> list[Point]:
    start, end = day_window(layout, REPORT_DAY)
    lo, hi = _ns(start), _ns(end)
    return [p for p in points if p.measurement == measurement and lo <= p.ts_ns < hi]


def _ns(at: datetime) -> int:
    return (at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000


@dataclass
class Expected:
    peaks: dict[str, int]
    peak_times: dict[str, set[datetime]]
    seat_hours: dict[str, float]
    area: dict[str, float]  # sum of one-minute snapshots / 60: the step-function integral
    raised: Counter[str]
    minutes_to_fix: list[float]
    reshelved: int
    misplaced: int
    found: int
    demand: list[tuple[int, str, int, float]]


def expected(points: list[Point], layout: Layout) -> Expected:
    zones = _in(points, ZONE_OCCUPANCY, layout)
    peaks: dict[str, int] = {}
    for p in zones:
        peaks[p.tags["zone"]] = max(peaks.get(p.tags["zone"], 0), int(p.fields["occupancy"]))
    times = defaultdict(set)
    for p in zones:
        if p.fields["occupancy"] == peaks[p.tags["zone"]]:
            times[p.tags["zone"]].add(datetime.fromtimestamp(p.ts_ns / 1e9, UTC))
    quarter_ns = 15 * 60 * 10**9
    quarters: dict[tuple[str, int], list[int]] = defaultdict(list)
    for p in zones:
        quarters[(p.tags["zone"], p.ts_ns // quarter_ns)].append(int(p.fields["seats_occupied"]))
    hours: dict[str, float] = defaultdict(float)
    for (zone, _), values in quarters.items():
        hours[zone] += statistics.fmean(values) * 0.25
    area: dict[str, float] = defaultdict(float)
    for p in zones:
        area[p.tags["zone"]] += int(p.fields["seats_occupied"]) / 60
    alerts = _in(points, ALERT_TRANSITION, layout)
    raised = Counter(p.tags["severity"] for p in alerts if p.tags["kind"] == "opened")
    fix = [float(p.fields["seconds_to_clear"]) / 60 for p in alerts if p.tags["kind"] == "cleared"]
    closed = Counter(p.tags["finding"] for p in _in(points, FINDING_CLOSED, layout))
    ranks = _in(points, DEMAND_RANK, layout)
    last = max(p.ts_ns for p in ranks)
    demand = sorted(
        (
            int(p.tags["rank"]),
            str(p.fields["title"]),
            int(p.fields["copies"]),
            float(p.fields["score"]),
        )
        for p in ranks
        if p.ts_ns == last and p.fields["copies"]
    )[:10]
    return Expected(
        peaks, dict(times), dict(hours), dict(area), raised, fix,
        closed["misplaced"] + closed["reshelving"], closed["misplaced"], closed["missing"], demand,
    )  # fmt: skip


@pytest.fixture(scope="module")
def day() -> SiteDay:
    out = _Day(LAYOUT, full=True).run(DAY, seed=3)
    out.points += _demand_day(LAYOUT, 3).points
    _alerts(out, 3)
    return out


@pytest.fixture
async def store(influx_db: str, day: SiteDay) -> AsyncIterator[SeriesStore]:
    s = open_store(influx_db)
    try:
        await s.ping()
        await s.write(day.points)
        yield s
    finally:
        await s.close()


def check(report: DailyReport, want: Expected) -> None:
    for z in report.zones:
        assert z.peak == want.peaks[z.zone], z.zone
        assert z.peak_at in want.peak_times[z.zone], z.zone
        assert z.peak_share == round(z.peak / z.capacity, 3)
    for zone, hours in want.seat_hours.items():
        assert report.seat_hours_by_zone[zone] == pytest.approx(hours, abs=0.006), zone
        # Quarter means times a quarter: the area under the one-minute snapshots, to within
        # the first quarter's missing snapshot.
        assert report.seat_hours_by_zone[zone] == pytest.approx(want.area[zone], abs=0.2), zone
    assert report.seat_hours == pytest.approx(sum(want.seat_hours.values()), abs=0.02)
    assert report.seat_hours > 10
    a = report.alerts
    assert a.raised == sum(want.raised.values()) > 0
    assert {k: v for k, v in a.raised_by_severity.items() if v} == dict(want.raised)
    assert a.cleared == len(want.minutes_to_fix) > 0
    assert a.median_minutes_to_fix == round(statistics.median(want.minutes_to_fix), 1)
    assert a.longest_minutes_to_fix == round(max(want.minutes_to_fix), 1)
    s = report.shelves
    assert (s.items_reshelved, s.misplaced_put_back, s.missing_found) == (
        want.reshelved,
        want.misplaced,
        want.found,
    )
    assert s.items_reshelved > 0
    got = [(d.rank, d.title, d.copies) for d in report.top_demand]
    assert got == [w[:3] for w in want.demand] and len(got) >= 3
    for line, (*_, score) in zip(report.top_demand, want.demand, strict=True):
        assert line.score == pytest.approx(score)


# -- the tests --------------------------------------------------------------------------


def test_an_empty_day_has_no_figures_and_no_errors() -> None:
    report = fold_daily(
        LAYOUT, REPORT_DAY, peaks=[], seats=[], raised=[], cleared=[], closed=[], demand=[]
    )
    assert all(z.peak is None and z.peak_at is None for z in report.zones)
    assert report.seat_hours == 0 and report.alerts.median_minutes_to_fix is None
    assert report.top_demand == [] and report.shelves.items_reshelved == 0
    start, end = day_window(LAYOUT, REPORT_DAY)
    assert (start.utcoffset(), end - start) == (timedelta(hours=8), timedelta(days=1))
    figures = parse_csv(to_csv(report))
    assert figures[("alerts", "all", "median_minutes_to_fix")] == ""


def test_a_day_across_a_dst_change_has_its_real_length() -> None:
    berlin = synthetic_layout(site="b", timezone="Europe/Berlin")
    start, end = day_window(berlin, date(2026, 10, 25))
    # Instants, not wall times: the clocks went back an hour that night.
    assert end.astimezone(UTC) - start.astimezone(UTC) == timedelta(hours=25)


def test_csv_cells_never_run_as_spreadsheet_formulas() -> None:
    report = fold_daily(
        LAYOUT, REPORT_DAY, peaks=[], seats=[], raised=[], cleared=[], closed=[],
        demand=[{"rank": "01", "title": "=HYPERLINK(\"x\")", "call_number": "-QA1",
                 "copies": 1, "score": 2.0, "suggest": False, "reason": ""}],
    )  # fmt: skip
    text = to_csv(report)
    assert "'=HYPERLINK" in text and "'-QA1" in text
    figures = parse_csv(text)
    assert figures[("demand", "1", "title")] == '=HYPERLINK("x")'


@pytest.mark.integration
@pytest.mark.timeout(300)
async def test_daily_report_says_what_the_day_held(store: SeriesStore, day: SiteDay) -> None:
    want = expected(day.points, LAYOUT)
    report = await read_daily(store, LAYOUT, REPORT_DAY)
    check(report, want)

    # The CSV reads back to the same figures.
    figures = parse_csv(to_csv(report))
    for z in report.zones:
        assert figures[("occupancy", z.zone, "peak")] == str(want.peaks[z.zone])
        assert z.peak_at is not None
        peak_at = datetime.fromisoformat(figures[("occupancy", z.zone, "peak_at")])
        assert peak_at == z.peak_at and peak_at.utcoffset() == timedelta(hours=8)
        hours = float(figures[("seats", z.zone, "seat_hours")])
        assert hours == pytest.approx(want.seat_hours[z.zone], abs=0.006)
    assert float(figures[("seats", "all", "seat_hours")]) == pytest.approx(report.seat_hours)
    assert int(figures[("alerts", "all", "raised")]) == sum(want.raised.values())
    for severity, n in want.raised.items():
        assert int(figures[("alerts", severity, "raised")]) == n
    median = float(figures[("alerts", "all", "median_minutes_to_fix")])
    assert median == round(statistics.median(want.minutes_to_fix), 1)
    assert int(figures[("shelves", "all", "items_reshelved")]) == want.reshelved
    for rank, title, copies, score in want.demand:
        assert figures[("demand", str(rank), "title")] == title
        assert int(figures[("demand", str(rank), "copies")]) == copies
        assert float(figures[("demand", str(rank), "score")]) == pytest.approx(score, rel=1e-5)

    # Another day holds nothing of this one.
    other = await read_daily(store, LAYOUT, REPORT_DAY + timedelta(days=2))
    assert other.seat_hours == 0 and other.alerts.raised == 0 and other.top_demand == []


def _app(store: SeriesStore) -> tuple[Any, AuthService]:
    db = StateDB.open("sqlite://")
    for username, role, sites in (
        ("mia", "manager", ["main"]),
        ("sam", "staff", ["main"]),
    ):
        db.add_user(username, hash_password(PASSWORD), role, sites)
    auth = AuthService(db, TokenIssuer("r" * 40))
    app = app_for([LAYOUT], OccupancyView("lib/v1"), auth=auth, store=store)
    return app, auth


async def _token(http: httpx.AsyncClient, username: str) -> dict[str, str]:
    answer = await http.post(
        "/api/v1/auth/token", data={"username": username, "password": PASSWORD}
    )
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


@pytest.mark.integration
@pytest.mark.timeout(300)
async def test_report_routes_are_for_managers_and_carry_the_same_figures(
    store: SeriesStore, day: SiteDay
) -> None:
    app, auth = _app(store)
    want = expected(day.points, LAYOUT)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            mia, sam = [await _token(http, u) for u in ("mia", "sam")]
            base = "/api/v1/sites/main/reports/daily"
            for suffix in ("", ".csv", ".html"):
                url = f"{base}{suffix}?date={REPORT_DAY}"
                assert (await http.get(url)).status_code == 401
                assert (await http.get(url, headers=sam)).status_code == 403
            answer = await http.get(f"{base}?date={REPORT_DAY}", headers=mia)
            assert answer.status_code == 200
            check(DailyReport.model_validate(answer.json()), want)

            answer = await http.get(f"{base}.csv?date={REPORT_DAY}", headers=mia)
            assert answer.headers["content-type"].startswith("text/csv")
            assert answer.headers["content-disposition"] == (
                'attachment; filename="stackpulse-main-2026-11-24.csv"'
            )
            figures = parse_csv(answer.text)
            assert int(figures[("alerts", "all", "raised")]) == sum(want.raised.values())

            bad = await http.get(f"{base}?date=2026-13-01", headers=mia)
            assert bad.status_code == 422
            nope = await http.get("/api/v1/sites/nope/reports/daily", headers=mia)
            assert nope.status_code == 404
    finally:
        auth.db.close()


@pytest.mark.integration
@pytest.mark.browser
@pytest.mark.timeout(300)
async def test_printable_report_renders_and_print_hides_the_navigation(
    store: SeriesStore, day: SiteDay
) -> None:
    import shutil

    from playwright.async_api import async_playwright

    executable = shutil.which("chromium")
    if executable is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    app, auth = _app(store)
    want = expected(day.points, LAYOUT)
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        async with serve_app(app) as base, async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=executable, args=CHROMIUM_ARGS, headless=True
            )
            try:
                page: Page = await browser.new_page(viewport={"width": 1366, "height": 900})
                page.set_default_timeout(15_000)
                await page.goto(f"{base}/manager/main/report?date={REPORT_DAY}")
                await page.locator("form#login").wait_for()
                await page.fill("#username", "mia")
                await page.fill("#password", PASSWORD)
                await page.click("form#login button[type=submit]")
                await page.locator("#report[data-date='2026-11-24']").wait_for()
                assert await page.locator("#r-alerts").inner_text() == str(
                    sum(want.raised.values())
                )
                assert await page.locator("#r-reshelved").inner_text() == str(want.reshelved)
                first = LAYOUT.zones[0].id
                row = page.locator(f"tr[data-zone='{first}'] td").nth(1)
                assert await row.inner_text() == str(want.peaks[first])
                assert await page.locator(".report-nav").is_visible()
                await page.screenshot(path=ARTIFACTS / "manager-report-1366.png", full_page=True)

                await page.emulate_media(media="print")
                assert await page.locator(".report-nav").is_hidden()
                assert await page.locator("#report").is_visible()
                await page.screenshot(path=ARTIFACTS / "manager-report-print.png", full_page=True)
                pdf = await page.pdf(format="A4")
                assert pdf.startswith(b"%PDF")

                # The CSV button downloads the same figures.
                await page.emulate_media(media="screen")
                async with page.expect_download() as info:
                    await page.click("#download")
                download = await info.value
                assert download.suggested_filename == "stackpulse-main-2026-11-24.csv"
                text = (await download.path()).read_text(encoding="utf-8")
                assert int(parse_csv(text)[("shelves", "all", "items_reshelved")]) == (
                    want.reshelved
                )

                # The server-rendered document prints without its navigation too.
                token = await page.evaluate("sessionStorage.getItem('stackpulse.token')")
                doc = await browser.new_page(viewport={"width": 820, "height": 1180})
                await doc.set_extra_http_headers({"Authorization": f"Bearer {token}"})
                await doc.goto(f"{base}/api/v1/sites/main/reports/daily.html?date={REPORT_DAY}")
                assert await doc.locator(".report-nav").is_visible()
                assert await doc.locator("#r-reshelved").inner_text() == str(want.reshelved)
                await doc.emulate_media(media="print")
                assert await doc.locator(".report-nav").is_hidden()
            finally:
                await browser.close()
    finally:
        auth.db.close()
