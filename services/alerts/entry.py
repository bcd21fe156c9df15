"""Wiring of the alerts service: the only place it is built from real adapters."""

from __future__ import annotations

import asyncio

from stackpulse.kernel.context import Context
from stackpulse.kernel.health import Gauge
from stackpulse.kernel.runner import ServiceRunner
from stackpulse.kernel.settings import SettingsError
from stackpulse.services.alerts.lifecycle import AlertBook
from stackpulse.services.alerts.notify import NotifySettings
from stackpulse.services.alerts.routes import STATIC_DIR, pages, router
from stackpulse.services.alerts.service import AlertService
from stackpulse.services.alerts.settings import AlertServiceSettings, AlertSettings
from stackpulse.services.alerts.store import AlertStore
from stackpulse.services.alerts.view import AlertsView
from stackpulse.web.app import WebPart
from stackpulse.web.settings import ApiSettings


def notify_settings(s: AlertServiceSettings) -> NotifySettings:
    """The sender's channels from the service's settings; SettingsError names what is wrong."""
    try:
        return NotifySettings(
            webhooks=s.webhook_urls,
            secret=s.webhook_secret.get_secret_value(),
            timeout=s.webhook_timeout.total_seconds(),
        )
    except ValueError as err:
        raise SettingsError(None, str(err)) from None


async def start(ctx: Context, tg: asyncio.TaskGroup) -> ServiceRunner:
    """Run the alerts service for the context's sites over the state database."""
    settings = ctx.component(AlertServiceSettings)
    service = AlertService(
        ctx.layouts,
        ctx.clock,
        ctx.need_db(),
        settings,
        ctx.component(AlertSettings),
        root=ctx.root,
        notify=notify_settings(settings),
        series=ctx.store,
    )
    runner = ServiceRunner(
        service,
        broker=ctx.broker,
        root=ctx.root,
        clock=ctx.clock,
        settings=settings,
        store=ctx.store,
        checkpoints=ctx.db,
        health=ctx.health,
    )
    ctx.health.add(
        Gauge(
            "stackpulse_outbox_backlog",
            "Alert notifications waiting in the outbox",
            ["component"],
            lambda: [(["alerts"], float(service.backlog))],
        )
    )
    ctx.services["alerts"] = runner
    tg.create_task(runner.run(), name="alerts")
    return runner


def web_part(book: AlertBook, settings: ApiSettings | None = None) -> WebPart:
    """The staff's alert routes and the console, over `book` (the state database)."""
    timeout = (settings or ApiSettings()).db_timeout
    return WebPart(
        "alerts",
        routers=(router, pages),
        objects={AlertsView: AlertsView(book, timeout=timeout)},
        static=(("/static/alerts", STATIC_DIR),),
    )


def web(ctx: Context, tg: asyncio.TaskGroup) -> WebPart:
    """For the API process: the alerts in the state database the alerts service shares."""
    book = AlertBook(AlertStore(ctx.need_db()), ctx.component(AlertSettings))
    part = web_part(book, ctx.component(ApiSettings))
    view = part.objects[AlertsView]
    assert isinstance(view, AlertsView)
    ctx.health.streams["alerts"] = lambda: view.streams
    return part
