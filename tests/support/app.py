"""The HTTP app as the API process builds it (each service's `entry.web_part`), over
read models and books the test made."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from fastapi import APIRouter, FastAPI

from stackpulse.kernel.health import Health
from stackpulse.kernel.layout import Layout
from stackpulse.kernel.store.base import SeriesStore
from stackpulse.services.alerts import entry as alerts_entry
from stackpulse.services.alerts.lifecycle import AlertBook
from stackpulse.services.inventory import entry as inventory_entry
from stackpulse.services.inventory.view import InventoryView
from stackpulse.services.occupancy import entry as occupancy_entry
from stackpulse.services.occupancy.view import OccupancyView
from stackpulse.services.reports import entry as reports_entry
from stackpulse.services.reports.service import ReportArchive
from stackpulse.web.app import WebPart, build_app
from stackpulse.web.auth import AuthService
from stackpulse.web.ratelimit import RateLimit
from stackpulse.web.settings import ApiSettings


def app_for(
    layouts: Sequence[Layout],
    occupancy: OccupancyView | None = None,
    *,
    inventory: InventoryView | None = None,
    alerts: AlertBook | None = None,
    archive: ReportArchive | None = None,
    auth: AuthService | None = None,
    rate_limit: RateLimit | None = None,
    store: SeriesStore | None = None,
    clock: Callable[[], datetime] | None = None,
    health: Health | None = None,
    ping_seconds: float = 15.0,
    poll_seconds: float = 1.0,
    routers: Sequence[APIRouter] = (),
) -> FastAPI:
    parts = [occupancy_entry.web_part(occupancy or OccupancyView())]
    if inventory is not None:
        parts.append(inventory_entry.web_part(inventory))
    if alerts is not None:
        parts.append(alerts_entry.web_part(alerts))
    parts.append(reports_entry.web_part(archive))
    if routers:
        parts.append(WebPart("test", routers=routers))
    settings = ApiSettings(
        ping=timedelta(seconds=ping_seconds), alerts_poll=timedelta(seconds=poll_seconds)
    )
    return build_app(
        layouts,
        parts,
        settings=settings,
        auth=auth,
        rate_limit=rate_limit,
        store=store,
        clock=clock,
        health=health,
    )
