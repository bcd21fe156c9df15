"""A service on the kernel's runner, as its entry.start wires it, for tests."""

from __future__ import annotations

import asyncio

from stackpulse.kernel.bus import BrokerAddress
from stackpulse.kernel.clock import Clock
from stackpulse.kernel.runner import ServiceRunner
from stackpulse.kernel.service import CheckpointStore, RunnerSettings, ServiceBase
from stackpulse.kernel.store.base import SeriesStore
from tests.support.waiting import wait_until


async def start_runner(
    service: ServiceBase,
    broker: BrokerAddress,
    root: str,
    clock: Clock,
    settings: RunnerSettings,
    *,
    store: SeriesStore | None = None,
    db: CheckpointStore | None = None,
    ready: bool = True,
) -> tuple[ServiceRunner, asyncio.Task[None]]:
    """Start `service` on a runner; with `ready`, wait until it is ready."""
    runner = ServiceRunner(
        service,
        broker=broker,
        root=root,
        clock=clock,
        settings=settings,
        store=store,
        checkpoints=db,
    )
    task = asyncio.create_task(runner.run(), name=f"test-{service.name}")
    if ready:
        await wait_until(lambda: runner.readiness.ready or task.done(), 30)
        if task.done():
            task.result()
    return runner, task


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
