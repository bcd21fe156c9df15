"""Wiring of the occupancy service: the only place it is built from real adapters."""

from __future__ import annotations

import asyncio

from stackpulse.kernel.context import Context
from stackpulse.kernel.runner import ServiceRunner, follow_state
from stackpulse.services.occupancy.routes import STATIC_DIR, pages, router
from stackpulse.services.occupancy.service import OccupancyService
from stackpulse.services.occupancy.settings import OccupancySettings
from stackpulse.services.occupancy.view import OccupancyView, subscriptions
from stackpulse.web.app import WebPart


async def start(ctx: Context, tg: asyncio.TaskGroup) -> ServiceRunner:
    """Run the occupancy service for the context's sites; returns its runner."""
    settings = ctx.component(OccupancySettings)
    service = OccupancyService(ctx.layouts, ctx.store, ctx.clock, settings, ctx.root)
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
    ctx.services["occupancy"] = runner
    tg.create_task(runner.run(), name="occupancy")
    return runner


def web_part(view: OccupancyView) -> WebPart:
    """The public routes, the student page and its assets, over `view`."""
    return WebPart(
        "occupancy",
        routers=(router, pages),
        objects={OccupancyView: view},
        static=(("/static/occupancy", STATIC_DIR),),
    )


def web(ctx: Context, tg: asyncio.TaskGroup) -> WebPart:
    """For the API process: the read model, fed from the retained state, and its routes."""
    view = OccupancyView(ctx.root)
    readiness = ctx.health.component("api: occupancy view")
    filters = subscriptions(ctx.root)
    tg.create_task(
        follow_state("occupancy view", ctx.broker, filters, view.apply, readiness),
        name="api-occupancy-view",
    )
    ctx.services["occupancy view"] = view
    ctx.health.streams["occupancy"] = lambda: view.subscribers
    return web_part(view)
