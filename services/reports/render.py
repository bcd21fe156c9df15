"""The daily report as a CSV download and as a printable HTML page (pure text rendering).

The CSV is long-form — one figure per row, `site,date,section,subject,metric,value` —
so a spreadsheet pivots it and `parse_csv` reads the same figures back.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from html import escape

from stackpulse.services.reports.logic import DailyReport, DemandLine

CSV_COLUMNS = ("site", "date", "section", "subject", "metric", "value")
Figure = tuple[str, str, str, str]  # section, subject, metric, value


def figures(report: DailyReport) -> Iterator[Figure]:
    """Every figure of the report, in reading order."""
    for z in report.zones:
        yield "occupancy", z.zone, "capacity", str(z.capacity)
        yield "occupancy", z.zone, "peak", "" if z.peak is None else str(z.peak)
        tz = report.start.tzinfo
        when = "" if z.peak_at is None else z.peak_at.astimezone(tz).isoformat(timespec="seconds")
        yield "occupancy", z.zone, "peak_at", when
    yield "seats", "all", "seat_hours", f"{report.seat_hours:.2f}"
    for zone, hours in report.seat_hours_by_zone.items():
        yield "seats", zone, "seat_hours", f"{hours:.2f}"
    a = report.alerts
    yield "alerts", "all", "raised", str(a.raised)
    for severity, n in a.raised_by_severity.items():
        yield "alerts", severity, "raised", str(n)
    yield "alerts", "all", "cleared", str(a.cleared)
    for metric, value in (
        ("median_minutes_to_fix", a.median_minutes_to_fix),
        ("longest_minutes_to_fix", a.longest_minutes_to_fix),
    ):
        yield "alerts", "all", metric, "" if value is None else f"{value:.1f}"
    s = report.shelves
    yield "shelves", "all", "items_reshelved", str(s.items_reshelved)
    yield "shelves", "misplaced", "put_back", str(s.misplaced_put_back)
    yield "shelves", "returns", "reshelved", str(s.returns_reshelved)
    yield "shelves", "missing", "found", str(s.missing_found)
    for d in report.top_demand:
        rank = str(d.rank)
        yield "demand", rank, "title", d.title
        yield "demand", rank, "call_number", d.call_number
        yield "demand", rank, "copies", str(d.copies)
        yield "demand", rank, "score", f"{d.score:g}"
        yield "demand", rank, "suggest_purchase", "yes" if d.suggest_purchase else "no"


def to_csv(report: DailyReport) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    day = report.date.isoformat()
    for section, subject, metric, value in figures(report):
        writer.writerow((report.site, day, section, subject, metric, _safe_cell(value)))
    return out.getvalue()


def parse_csv(text: str) -> dict[tuple[str, str, str], str]:
    """(section, subject, metric) -> value, from `to_csv`'s text."""
    rows = csv.DictReader(io.StringIO(text))
    return {(r["section"], r["subject"], r["metric"]): _unsafe_cell(r["value"]) for r in rows}


def _safe_cell(value: str) -> str:
    # A title starting with = + - @ would run as a formula in a spreadsheet (CSV injection).
    return "'" + value if value[:1] in ("=", "+", "-", "@") and not _number(value) else value


def _unsafe_cell(value: str) -> str:
    return value[1:] if value[:2] in ("'=", "'+", "'-", "'@") else value


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _minutes(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 90:
        return f"{value:.0f} min"
    return f"{value / 60:.1f} h"


# Report table columns: (heading, numeric: right-aligned).
ZONE_COLUMNS = (
    ("Zone", False), ("Floor", False), ("Peak", True), ("Capacity", True),
    ("Peak share", True), ("At", False), ("Seat-hours", True),
)  # fmt: skip
DEMAND_COLUMNS = (
    ("#", True), ("Title", False), ("Call number", False), ("Copies", True),
    ("Score", True), ("Suggestion", False),
)  # fmt: skip


def _head(columns: tuple[tuple[str, bool], ...]) -> str:
    cells = "".join(
        f'<th scope="col"{" class=num" if num else ""}>{escape(name)}</th>' for name, num in columns
    )
    return f"<thead><tr>{cells}</tr></thead>"


def _demand_row(d: DemandLine) -> str:
    suggestion = f"Buy: {escape(d.reason)}" if d.suggest_purchase else ""
    return (
        f"<tr><td class=num>{d.rank}</td><td>{escape(d.title)}</td>"
        f"<td>{escape(d.call_number)}</td><td class=num>{d.copies}</td>"
        f"<td class=num>{d.score:g}</td><td>{suggestion}</td></tr>"
    )


def html_fragment(report: DailyReport) -> str:
    """The report's `<article>`, for the manager page to place and print."""
    tz = report.start.tzinfo
    rows = []
    for z in report.zones:
        share = "—" if z.peak_share is None else f"{z.peak_share:.0%}"
        at = "—" if z.peak_at is None else z.peak_at.astimezone(tz).strftime("%H:%M")
        hours = report.seat_hours_by_zone.get(z.zone, 0.0)
        rows.append(
            f'<tr data-zone="{escape(z.zone)}"><th scope="row">{escape(z.name)}</th>'
            f"<td>{z.floor}</td><td class=num>{'—' if z.peak is None else z.peak}</td>"
            f"<td class=num>{z.capacity}</td><td class=num>{share}</td><td>{at}</td>"
            f"<td class=num>{hours:.1f}</td></tr>"
        )
    a, s = report.alerts, report.shelves
    severities = ", ".join(f"{n} {escape(k)}" for k, n in a.raised_by_severity.items())
    demand = "".join(_demand_row(d) for d in report.top_demand) or (
        '<tr><td colspan="6" class="empty">No demand recorded this day.</td></tr>'
    )
    day = report.date.strftime("%A %d %B %Y")
    return f"""<article id="report" class="report" data-date="{report.date.isoformat()}">
<header><p class="eyebrow">Daily summary</p>
<h1>{escape(report.site_name)} — {day}</h1>
<p class="hint">Local day in {escape(report.timezone)}.</p></header>
<dl class="figures">
<div><dt>Seat-hours used</dt><dd id="r-seat-hours">{report.seat_hours:.1f}</dd></div>
<div><dt>Alerts raised</dt><dd id="r-alerts">{a.raised}</dd><dd class="hint">{severities}</dd></div>
<div><dt>Median time to fix</dt><dd id="r-fix">{_minutes(a.median_minutes_to_fix)}</dd>
<dd class="hint">{a.cleared} cleared · longest {_minutes(a.longest_minutes_to_fix)}</dd></div>
<div><dt>Items reshelved</dt><dd id="r-reshelved">{s.items_reshelved}</dd>
<dd class="hint">{s.misplaced_put_back} misplaced put back · {s.returns_reshelved} returns ·
{s.missing_found} missing found</dd></div>
</dl>
<h2>Occupancy by zone</h2>
<table class="zones">{_head(ZONE_COLUMNS)}<tbody>{"".join(rows)}</tbody></table>
<h2>Top demand</h2>
<table class="demand">{_head(DEMAND_COLUMNS)}<tbody>{demand}</tbody></table>
<p class="hint definitions">Seat-hours: occupied seats summed over the day's quarter hours.
Time to fix: from an alert's opening to its clearing, for the alerts cleared this day.
Items reshelved: misplaced items seen back home and returned items seen back on a shelf.</p>
</article>"""


def html_document(report: DailyReport, stylesheet: str) -> str:
    """A complete printable page: the fragment, a navigation bar print media hides."""
    title = f"{escape(report.site_name)} daily summary {report.date.isoformat()}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title><link rel="stylesheet" href="{escape(stylesheet)}"></head>
<body class="report-page"><nav class="report-nav no-print">
<a href="/manager/{escape(report.site)}">Manager view</a>
<button type="button" onclick="window.print()">Print</button></nav>
<main>{html_fragment(report)}</main></body></html>"""


__all__ = ["CSV_COLUMNS", "figures", "html_document", "html_fragment", "parse_csv", "to_csv"]
