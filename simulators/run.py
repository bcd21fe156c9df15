"""Run the simulated library against a broker, in step with a (usually scaled) clock."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from stackpulse.kernel.bus import BrokerAddress
from stackpulse.kernel.catalog import load_catalog as _load_catalog
from stackpulse.kernel.clock import Clock
from stackpulse.kernel.layout import Layout
from stackpulse.kernel.topics import Channel
from stackpulse.simulators.config import SimConfig
from stackpulse.simulators.model import LibraryModel, Truth
from stackpulse.simulators.publisher import Publisher
from stackpulse.simulators.stacks import CatalogEntry

TICK = 0.25  # wall seconds between two advances of the model


@dataclass
class SimulationReport:
    started: datetime  # simulated time
    ended: datetime
    generated: Counter[str] = field(default_factory=Counter)  # by kind; "status" for births
    published: Counter[str] = field(default_factory=Counter)  # acknowledged by the broker
    dropped: int = 0
    connects: int = 0
    truth: Truth | None = None


def load_catalog(path: Path, layout: Layout) -> Sequence[CatalogEntry]:
    """The site's catalog, each item placed on the layout's sections."""
    return tuple(_load_catalog(path, layout).values())


class Simulation:
    """The model plus its publisher; tests keep a handle to read the truth and cut links."""

    def __init__(
        self,
        layout: Layout,
        broker: BrokerAddress,
        *,
        root: str,
        clock: Clock,
        seed: int,
        catalog: Sequence[CatalogEntry] = (),
        config: SimConfig | None = None,
        client_prefix: str = "sim",
        tick: float = TICK,
    ) -> None:
        self.layout, self.broker, self.root, self.clock = layout, broker, root, clock
        self.model = LibraryModel(
            layout, start=clock.now(), seed=seed, catalog=catalog, config=config
        )
        self.client_prefix = client_prefix
        self.tick = tick
        self.publisher: Publisher | None = None
        self.ready = asyncio.Event()  # every device has made its first connection attempt

    def _pub(self) -> Publisher:
        if self.publisher is None:
            raise RuntimeError("the simulation is not running")
        return self.publisher

    def kill(self, device: str) -> None:
        """Cut a device's connection abruptly, so the broker publishes its Will."""
        self._pub().kill(device)

    def revive(self, device: str) -> None:
        self._pub().revive(device)

    async def run(
        self, *, stop: asyncio.Event | None = None, duration: float | None = None
    ) -> SimulationReport:
        """Publish until `stop` is set or `duration` seconds of clock time have passed."""
        stop = stop or asyncio.Event()
        model = self.model
        report = SimulationReport(started=model.now, ended=model.now)
        end = model.now + timedelta(seconds=duration) if duration is not None else None
        births = model.births()
        report.generated["status"] += len(births)
        async with Publisher.open(
            self.broker,
            births,
            root=self.root,
            site=self.layout.site,
            clock=self.clock,
            client_prefix=self.client_prefix,
        ) as pub:
            self.publisher = pub
            self.ready.set()
            while True:
                now = self.clock.now()
                if end is not None and now >= end:
                    now = end
                for msg in model.advance(now):
                    kind = str(msg.kind) if msg.channel is Channel.DATA else "status"
                    report.generated[kind] += 1
                    pub.submit(msg)
                if now == end or stop.is_set():
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.tick)
        self.publisher = None
        report.ended = model.now
        report.published = pub.stats.published
        report.dropped = pub.stats.dropped
        report.connects = pub.stats.connects
        report.truth = model.truth()
        return report


async def run_simulation(
    layout: Layout,
    broker: BrokerAddress,
    *,
    root: str,
    clock: Clock,
    seed: int,
    catalog_path: Path | None = None,
    stop: asyncio.Event | None = None,
    duration: float | None = None,
    config: SimConfig | None = None,
) -> SimulationReport:
    """`stackpulse simulate`: the site's devices on `broker`, at the clock's speed.

    `duration` is in seconds of clock time (simulated); without it, run until `stop`.
    Raises publisher.BrokerUnreachable when no device can connect.
    """
    catalog = load_catalog(catalog_path, layout) if catalog_path else ()
    sim = Simulation(
        layout, broker, root=root, clock=clock, seed=seed, catalog=catalog, config=config
    )
    return await sim.run(stop=stop, duration=duration)
