"""Builds real adapters from settings and runs the chosen components together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt
import uvicorn

from gateway.decode import index_sites
from gateway.service import Gateway, GatewaySettings
from kernel.aio import Backoff, raise_if_cancelling
from kernel.bus import BrokerAddress, BrokerUrlError, client, parse_broker_url
from kernel.catalog import CatalogError, load_catalog
from kernel.clock import Clock, parse_clock
from kernel.layout import Layout, LayoutError, load_layout
from kernel.settings import Settings, SettingsError
from kernel.store.base import SeriesStore, StoreError, StoreRejected
from kernel.store.factory import open_store
from kernel.store.influx import InfluxStore
from services.occupancy.service import OccupancyService, OccupancySettings
from services.occupancy.view import OccupancyView, run_view
from stackpulse.api import build_app

log = logging.getLogger("stackpulse")

COMPONENTS = ("gateway", "occupancy", "api")


@dataclass
class Runtime:
    """Everything a set of components needs, checked before anything starts."""

    settings: Settings
    layouts: list[Layout]
    layout_files: list[Path]
    broker: BrokerAddress
    clock: Clock
    store: SeriesStore | None = None
    gateway: Gateway | None = None
    occupancy: OccupancyService | None = None
    view: OccupancyView | None = None
    started: asyncio.Event = field(default_factory=asyncio.Event)
    occupancy_settings: OccupancySettings = field(default_factory=OccupancySettings)
    gateway_settings: GatewaySettings = field(default_factory=GatewaySettings)


def load_layouts(settings: Settings) -> tuple[list[Layout], list[Path]]:
    paths = [Path(p) for p in settings.layout_paths()]
    if not paths:
        raise SettingsError("--layout", "no layout file given")
    layouts = []
    for p in paths:
        try:
            layouts.append(load_layout(p))
        except LayoutError as err:
            raise SettingsError("--layout", str(err)) from None
    sites = [lay.site for lay in layouts]
    if len(set(sites)) != len(sites):
        raise SettingsError("--layout", f"two layouts describe the same site: {sites}")
    for lay in layouts:
        check_catalog(lay)
    return layouts, paths


def check_catalog(layout: Layout) -> None:
    """An unreadable catalog stops the start; bad rows are reported and the rest loads."""
    if not layout.catalog:
        return
    try:
        catalog = load_catalog(layout.catalog, layout)
    except CatalogError as err:
        raise SettingsError("--layout", f"catalog of site {layout.site!r}: {err}") from None
    if catalog.error_count:
        log.warning("%s", catalog.summary())
        for problem in catalog.errors[:5]:
            log.warning("  %s", problem)


def prepare(settings: Settings) -> Runtime:
    """Check what can be checked without the network; raise SettingsError naming the setting."""
    layouts, files = load_layouts(settings)
    try:
        broker = parse_broker_url(settings.broker)
    except BrokerUrlError as err:
        raise SettingsError("--broker", str(err)) from None
    try:
        clock = parse_clock(settings.clock)
    except ValueError as err:
        raise SettingsError("--clock", str(err)) from None
    settings.http_bind()
    try:
        occupancy = OccupancySettings.from_env(os.environ, root=settings.root)
    except ValueError as err:
        raise SettingsError(None, str(err)) from None
    gateway = GatewaySettings.from_env(settings.root)
    return Runtime(
        settings,
        layouts,
        files,
        broker,
        clock,
        occupancy_settings=occupancy,
        gateway_settings=gateway,
    )


async def check_broker(broker: BrokerAddress, timeout: float = 5.0) -> None:
    try:
        async with asyncio.timeout(timeout), client(broker, timeout=timeout):
            pass
    except (aiomqtt.MqttError, OSError, TimeoutError) as err:
        raise SettingsError(
            "--broker", f"cannot connect to {broker}: {err or 'timed out'}"
        ) from None


async def open_checked_store(url: str) -> SeriesStore:
    try:
        store = open_store(url)
    except ValueError as err:
        problem = str(err).removeprefix("--store/STACKPULSE_STORE: ")
        raise SettingsError("--store", problem) from None
    try:
        await store.ping()
        if isinstance(store, InfluxStore):
            await _ensure_database(store)
    except StoreError as err:
        await store.close()
        raise SettingsError("--store", str(err)) from None
    return store


async def _ensure_database(store: InfluxStore) -> None:
    try:
        await store.ensure_database()
    except StoreRejected as err:
        # InfluxDB 2.x/3.x make databases (buckets) their own way; a write will say if
        # it is missing.
        log.warning("could not create the database (%s); assuming it exists", err)


async def run_components(rt: Runtime, components: Sequence[str]) -> None:
    """Check the broker and the store, then run the named components until cancelled."""
    await check_broker(rt.broker)
    async with AsyncExitStack() as stack:
        if "gateway" in components or "occupancy" in components:
            rt.store = await open_checked_store(rt.settings.store)
            stack.push_async_callback(rt.store.close)
        async with asyncio.TaskGroup() as tg:
            _start(rt, components, tg)
            rt.started.set()


def _start(rt: Runtime, components: Sequence[str], tg: asyncio.TaskGroup) -> None:
    s = rt.settings
    if "gateway" in components:
        assert rt.store is not None
        rt.gateway = Gateway(index_sites(rt.layouts), rt.store, rt.clock, rt.gateway_settings)
        tg.create_task(rt.gateway.run(rt.broker), name="gateway")
    if "occupancy" in components:
        assert rt.store is not None
        rt.occupancy = OccupancyService(rt.layouts, rt.store, rt.clock, rt.occupancy_settings)
        tg.create_task(rt.occupancy.run(rt.broker), name="occupancy")
    if "api" in components:
        rt.view = OccupancyView(s.root)
        tg.create_task(_view_loop(rt.view, rt.broker, s.root), name="api-view")
        tg.create_task(_serve_http(rt, build_app(rt.view, rt.layouts)), name="api-http")


async def _view_loop(view: OccupancyView, broker: BrokerAddress, root: str) -> None:
    backoff = Backoff()
    while True:
        raise_if_cancelling()
        try:
            async with client(broker) as mqtt:
                backoff.reset()
                await run_view(view, mqtt, root)
        except aiomqtt.MqttError as err:
            log.warning("api view lost the broker: %s; reconnecting", err)
            await asyncio.sleep(backoff.next())


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the command stops every component at once."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _serve_http(rt: Runtime, app: object) -> None:
    host, port = rt.settings.http_bind()
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off")  # type: ignore[arg-type]
    server = _Server(config)
    try:
        await server.serve()
    except SystemExit:
        raise SettingsError("--http", f"cannot listen on {host}:{port} (in use?)") from None
