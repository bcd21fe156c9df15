"""Wiring of the gateway: the only place it is built from real adapters."""

from __future__ import annotations

import asyncio

from stackpulse.gateway.decode import index_sites
from stackpulse.gateway.metrics import GatewayCollector
from stackpulse.gateway.service import Gateway
from stackpulse.gateway.settings import GatewaySettings
from stackpulse.kernel.aio import raise_if_cancelling
from stackpulse.kernel.context import Context


async def start(ctx: Context, tg: asyncio.TaskGroup) -> Gateway:
    """Run the gateway for the context's sites into its store."""
    settings = ctx.component(GatewaySettings)
    gateway = Gateway(index_sites(ctx.layouts), ctx.need_store(), ctx.clock, settings)
    ctx.health.add(GatewayCollector(gateway.metrics))
    readiness = ctx.health.component("gateway")
    readiness.restored = True  # the spool is open: what it holds is replayed into the store

    async def watch() -> None:
        # The gateway's own connection state, as readiness (its session subscribes on
        # every connect before it reads a message).
        while True:
            raise_if_cancelling()
            await gateway.connected.wait()
            readiness.connected = readiness.subscribed = True
            readiness.problem = None
            while gateway.connected.is_set():
                await asyncio.sleep(0.5)
            readiness.down("lost the broker")

    ctx.services["gateway"] = gateway
    tg.create_task(gateway.run(ctx.broker), name="gateway")
    tg.create_task(watch(), name="gateway-readiness")
    return gateway
