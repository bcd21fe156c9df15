"""The Demand dashboard: committed JSON, and every query run on a real InfluxDB holding a
simulated day of demand signals and the rankings the inventory service writes."""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models.dashboard import Dashboard

from stackpulse.dashboards.build import build_all
from stackpulse.dashboards.cli import GENERATED_DIR
from stackpulse.dashboards.demand import DEMAND_UID
from stackpulse.dashboards.influx import (
    expand_macros,
    panel_queries,
    variable_queries,
    variant_config,
)
from stackpulse.kernel.catalog import CatalogItem
from stackpulse.kernel.layout import Layout
from stackpulse.kernel.store import Point, open_store
from stackpulse.services.inventory.demand import DEMAND_RANK, DEMAND_SIGNAL, Demand, rank_points
from stackpulse.services.inventory.model import InventorySettings, Signal
from stackpulse.simulators import messages
from stackpulse.simulators.synth import synthetic_catalog, synthetic_layout

DAY_START = datetime(2026, 11, 24, tzinfo=UTC)
DAY_END = DAY_START + timedelta(days=1)
SLOTS = 10
_LEFT_MACRO = re.compile(r"\$\{?[A-Za-z_]|\[\[")
# Two sites with different shelves, so a query that ignores $site shows foreign classes.
SITES = {
    "main": synthetic_layout(site="main", floors=1, rooms_per_floor=1, shelves=2),
    "law": synthetic_layout(site="law", floors=1, rooms_per_floor=1, shelves=1),
}


def _board() -> dict[str, Any]:
    return dict(json.loads((GENERATED_DIR / "demand.json").read_text(encoding="utf-8")))


def test_committed_demand_dashboard_is_what_the_code_builds() -> None:
    committed = (GENERATED_DIR / "demand.json").read_text(encoding="utf-8")
    assert committed == build_all()["demand.json"]
    board = json.loads(committed)
    assert board["uid"] == DEMAND_UID and "stackpulse" in board["tags"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["site"]["query"] == f'SHOW TAG VALUES FROM "{DEMAND_SIGNAL}" WITH KEY = "site"'
    queries = panel_queries(board)
    assert len(queries) == len(board["panels"]) == 3
    for title, _, text in queries:
        assert "$timeFilter" in text and re.search(r'"site" =~ /\^\$site\$/', text), title
        assert f'FROM "{DEMAND_SIGNAL}"' in text or f'FROM "{DEMAND_RANK}"' in text, title


def test_demand_json_loads_back_through_the_sdk_models() -> None:
    register_default_plugins()
    cogruntime.register_dataquery_variant(variant_config())
    board = _board()
    model = Dashboard.from_json(board)
    assert json.loads(json.dumps(model, cls=JSONEncoder)) == board


# -- a simulated day ------------------------------------------------------------------


@dataclass
class _Day:
    demand: Demand
    signals: list[Signal]
    points: list[Point]


def _catalog(layout: Layout) -> dict[str, CatalogItem]:
    """The synthetic catalog as pairs of copies: items 2k and 2k+1 are one title."""
    raw = synthetic_catalog(layout, per_section=6)
    out = {}
    for i, it in enumerate(raw):
        base = raw[i - i % 2].call_number
        out[it.item] = CatalogItem(
            it.item, f"{base} c. {i % 2 + 1}", f"Book {base}", "main", it.home_sections
        )
    return out


def _simulated_day(layout: Layout, seed: int) -> _Day:
    """Circulation from the simulators, in-library uses drawn at random, as the inventory
    service would record them: a point per signal and a ranking every hour."""
    catalog = _catalog(layout)
    signals = [
        Signal(m.payload["action"], m.payload["item"], datetime.fromisoformat(m.payload["ts"]))
        for m in messages(layout, DAY_START, DAY_END, seed, catalog=list(catalog.values()))
        if m.kind == "circ" and m.channel == "data"
    ]
    rng = random.Random(seed)
    items = sorted(catalog)
    hot = items[:4]  # a few titles readers keep taking off the shelf
    for _ in range(150):
        item = rng.choice(hot) if rng.random() < 0.5 else rng.choice(items)
        signals.append(Signal("use", item, DAY_START + timedelta(seconds=rng.uniform(0, 86_399))))
    signals.sort(key=lambda s: s.at)
    demand = Demand(catalog, InventorySettings(), layout.collections)
    points: list[Point] = []
    next_rank = DAY_START + timedelta(hours=1)
    for s in signals:
        while s.at >= next_rank:
            points += rank_points(layout.site, demand.ranked(next_rank, SLOTS), next_rank, SLOTS)
            next_rank += timedelta(hours=1)
        (point,) = demand.record(layout.site, [s])  # as the service's signal sink does
        points.append(point)
    points += rank_points(layout.site, demand.ranked(DAY_END, SLOTS), DAY_END, SLOTS)
    return _Day(demand, signals, points)


def _send(text: str, site: str) -> str:
    sent = expand_macros(
        text,
        start=DAY_START,
        end=DAY_END + timedelta(seconds=1),  # the closing ranking is stamped at DAY_END
        interval="1h",
        variables={"site": site},
    )
    assert not _LEFT_MACRO.search(sent), f"a macro was left: {sent}"
    return sent


@pytest.mark.integration
@pytest.mark.timeout(120)
async def test_every_demand_query_returns_the_days_demand_from_real_influxdb(
    influx_db: str,
) -> None:
    days = {site: _simulated_day(layout, seed) for seed, (site, layout) in enumerate(SITES.items())}
    for day in days.values():
        kinds = Counter(s.kind for s in day.signals)
        assert set(kinds) == {"use", "checkout", "checkin", "renew", "hold"}, kinds
        stamps = [(p.measurement, tuple(sorted(p.tags.items())), p.ts_ns) for p in day.points]
        assert len(stamps) == len(set(stamps)), "two signals would overwrite each other"
    board = _board()
    by_title = {p["title"]: p for p in board["panels"]}
    queries = {title: text for title, _, text in panel_queries(board)}

    store = open_store(influx_db)
    try:
        await store.ping()
        await store.write([p for day in days.values() for p in day.points])

        ((name, text),) = variable_queries(board)
        assert name == "site"
        assert sorted(r["value"] for r in await store.raw_query(text)) == sorted(SITES)

        for site, day in days.items():
            for title, text in queries.items():
                rows = await store.raw_query(_send(text, site))
                assert rows, f"{site}: panel {title!r} returned nothing"

            # The table shows the ranking the service served last, slot by slot.
            ranked = day.demand.ranked(DAY_END, SLOTS)
            assert ranked and any(r.suggest_purchase for r in ranked)
            rows = await store.raw_query(_send(queries["Top titles"], site))
            shown = [r for r in sorted(rows, key=lambda r: r["rank"]) if r["copies"] > 0]
            assert [(r["title"], r["score"], r["hold"]) for r in shown] == [
                (r.title, r.score, r.signals["hold"]) for r in ranked
            ]
            assert [r["suggest"] for r in shown] == [r.suggest_purchase for r in ranked]
            assert [r["reason"] for r in shown] == [r.reason or "" for r in ranked]

            # Per class: the same sums the aggregator gives for the day.
            rows = await store.raw_query(_send(queries["Demand per call-number class"], site))
            got = {r["call_class"]: (r["score"], r["signals"]) for r in rows}
            want = {
                c.call_class: (c.score, sum(c.signals.values()))
                for c in day.demand.classes(DAY_END)
            }
            assert got == want
            assert set(got) <= {f"QA{n}" for n in range(100, 100 + 5 * len(SITES[site].shelves))}

            # Per kind and hour: every signal in exactly one bar.
            text = queries["Signals by kind"]
            assert by_title["Signals by kind"]["interval"] == "1h"
            rows = await store.raw_query(_send(text, site))
            per_kind: Counter[str] = Counter()
            for r in rows:
                per_kind[r["kind"]] += r["sum"]
            assert per_kind == Counter(s.kind for s in day.signals)
            assert len(rows) >= 5 * 24
    finally:
        await store.close()
