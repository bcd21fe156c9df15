"""Wiring of the inventory service: the only place it is built from real adapters."""

from __future__ import annotations

import asyncio

from stackpulse.kernel.context import Context
from stackpulse.kernel.runner import ServiceRunner, follow_state
from stackpulse.services.inventory.routes import STATIC_DIR, demand_router, pages, router
from stackpulse.services.inventory.service import InventoryService
from stackpulse.services.inventory.settings import InventoryServiceSettings
from stackpulse.services.inventory.site import load_site_catalog
from stackpulse.services.inventory.view import InventoryView, subscriptions
from stackpulse.web.app import WebPart


async def start(ctx: Context, tg: asyncio.TaskGroup) -> ServiceRunner:
    """Run the inventory service for the context's sites, each with its catalog."""
    settings = ctx.component(InventoryServiceSettings)
    catalogs = {
        lay.site: ctx.catalogs.get(lay.site) or load_site_catalog(lay) for lay in ctx.layouts
    }
    service = InventoryService(ctx.layouts, catalogs, ctx.store, ctx.clock, settings, ctx.root)
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
    ctx.services["inventory"] = runner
    tg.create_task(runner.run(), name="inventory")
    return runner


def web_part(view: InventoryView) -> WebPart:
    """The staff lists, the managers' demand, the staff page and its assets, over `view`."""
    return WebPart(
        "inventory",
        routers=(router, demand_router, pages),
        objects={InventoryView: view},
        static=(("/static/inventory", STATIC_DIR),),
    )


def web(ctx: Context, tg: asyncio.TaskGroup) -> WebPart:
    """For the API process: the read model, fed from the retained lists, and its routes."""
    view = InventoryView(ctx.root)
    readiness = ctx.health.component("api: inventory view")
    tg.create_task(
        follow_state("inventory view", ctx.broker, subscriptions(ctx.root), view.apply, readiness),
        name="api-inventory-view",
    )
    ctx.services["inventory view"] = view
    ctx.health.streams["inventory"] = lambda: view.subscribers
    return web_part(view)
