"""Builds real adapters from settings and runs the chosen components together.

What a component needs is imported when it starts: a gateway process does not load the
web framework, the state database or the password hasher (tens of MB, a second of start).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import aiomqtt
import uvicorn

from stackpulse.gateway.decode import index_sites
from stackpulse.gateway.service import Gateway, GatewaySettings
from stackpulse.kernel.aio import Backoff, raise_if_cancelling
from stackpulse.kernel.bus import BrokerAddress, BrokerUrlError, client, parse_broker_url
from stackpulse.kernel.catalog import Catalog, CatalogError, load_catalog
from stackpulse.kernel.clock import Clock, parse_clock
from stackpulse.kernel.layout import Layout, LayoutError, load_layout
from stackpulse.kernel.settings import Settings, SettingsError
from stackpulse.kernel.store.base import SeriesStore, StoreError, StoreRejected
from stackpulse.kernel.store.factory import open_store
from stackpulse.kernel.store.influx import InfluxStore

if TYPE_CHECKING:
    from fastapi import APIRouter

    from stackpulse.kernel.statedb import StateDB
    from stackpulse.services.alerts.service import AlertService, AlertServiceSettings
    from stackpulse.services.alerts.settings import AlertSettings
    from stackpulse.services.inventory.service import InventoryService, InventoryServiceSettings
    from stackpulse.services.inventory.view import InventoryView
    from stackpulse.services.occupancy.service import OccupancyService, OccupancySettings
    from stackpulse.services.occupancy.view import OccupancyView
    from stackpulse.web.auth import AuthService
    from stackpulse.web.ratelimit import RateLimit

log = logging.getLogger("stackpulse")

COMPONENTS = ("gateway", "occupancy", "inventory", "alerts", "api")
NEEDS_DB = ("api", "inventory", "alerts")


@dataclass
class Runtime:
    """Everything a set of components needs, checked before anything starts."""

    settings: Settings
    layouts: list[Layout]
    layout_files: list[Path]
    broker: BrokerAddress
    clock: Clock
    store: SeriesStore | None = None
    db: StateDB | None = None  # the state database, for the components in NEEDS_DB
    auth: AuthService | None = None  # logins and tokens, for the api
    rate_limit: RateLimit | None = None  # set with `auth`
    gateway: Gateway | None = None
    occupancy: OccupancyService | None = None
    view: OccupancyView | None = None
    inventory: InventoryService | None = None
    inventory_view: InventoryView | None = None
    inventory_settings: InventoryServiceSettings | None = None  # None: defaults, --root
    alerts: AlertService | None = None
    alert_settings: AlertSettings | None = None  # the rules' thresholds (api and alerts)
    alerts_service_settings: AlertServiceSettings | None = None  # None: from the environment
    started: asyncio.Event = field(default_factory=asyncio.Event)
    occupancy_settings: OccupancySettings | None = None  # None: the defaults
    gateway_settings: GatewaySettings = field(default_factory=GatewaySettings)
    catalogs: dict[str, Catalog] = field(default_factory=dict)  # loaded by prepare, by site


def load_layouts(
    settings: Settings, *, catalogs: dict[str, Catalog] | None = None
) -> tuple[list[Layout], list[Path]]:
    """The layouts of the settings, checked; with `catalogs`, their catalogs loaded into it."""
    paths = [Path(p) for p in settings.layout_paths()]
    if not paths:
        raise SettingsError("--layout", "no layout file given")
    layouts = []
    for p in paths:
        try:
            layouts.append(load_layout(p))
        except LayoutError as err:
            raise SettingsError("--layout", str(err)) from None
        for problem in layouts[-1].coverage_report():  # gaps: shelved nowhere, not fatal
            log.warning("layout %s: %s", p, problem)
    sites = [lay.site for lay in layouts]
    if len(set(sites)) != len(sites):
        raise SettingsError("--layout", f"two layouts describe the same site: {sites}")
    if catalogs is not None:
        for lay in layouts:
            if (catalog := check_catalog(lay)) is not None:
                catalogs[lay.site] = catalog
    return layouts, paths


def check_catalog(layout: Layout) -> Catalog | None:
    """An unreadable catalog stops the start; bad rows are reported and the rest loads."""
    if not layout.catalog:
        return None
    try:
        catalog = load_catalog(layout.catalog, layout)
    except CatalogError as err:
        raise SettingsError("--layout", f"catalog of site {layout.site!r}: {err}") from None
    if catalog.error_count:
        log.warning("%s", catalog.summary())
        for problem in catalog.errors[:5]:
            log.warning("  %s", problem)
    return catalog


def prepare(settings: Settings, components: Sequence[str] = ()) -> Runtime:
    """Check what can be checked without the network; raise SettingsError naming the setting.

    For `components` that need them it also opens the state database and the logins.
    """
    # Only the inventory reads a catalog (1,000,000 items: seconds and hundreds of MB):
    # others do not load it. An empty `components` checks everything.
    catalogs: dict[str, Catalog] | None = None
    if not components or "inventory" in components:
        catalogs = {}
    layouts, files = load_layouts(settings, catalogs=catalogs)
    try:
        broker = parse_broker_url(settings.broker)
    except BrokerUrlError as err:
        raise SettingsError("--broker", str(err)) from None
    try:
        clock = parse_clock(settings.clock)
    except ValueError as err:
        raise SettingsError("--clock", str(err)) from None
    settings.http_bind()
    from stackpulse.services.occupancy.service import OccupancySettings

    try:
        occupancy = OccupancySettings.from_env(os.environ, root=settings.root)
    except ValueError as err:
        raise SettingsError(None, str(err)) from None
    gateway = GatewaySettings.from_env(settings.root)
    rt = Runtime(
        settings,
        layouts,
        files,
        broker,
        clock,
        occupancy_settings=occupancy,
        gateway_settings=gateway,
        catalogs=catalogs or {},
    )
    if any(c in ("alerts", "api") for c in components):
        rt.alert_settings, rt.alerts_service_settings = alert_settings_for(settings)
    open_state(rt, components)
    return rt


def alert_settings_for(settings: Settings) -> tuple[AlertSettings, AlertServiceSettings]:
    """The rules' thresholds and the notification targets, from STACKPULSE_ALERT_*."""
    from stackpulse.services.alerts.notify import NotifySettings
    from stackpulse.services.alerts.service import DEFAULT_CLIENT_ID as DEFAULT_ALERTS_CLIENT_ID
    from stackpulse.services.alerts.service import AlertServiceSettings
    from stackpulse.services.alerts.settings import AlertSettings

    try:
        rules = AlertSettings.from_env(os.environ)
        notify = NotifySettings.from_env(os.environ)
    except ValueError as err:  # AlertSettingsError is one; the message names the variable
        raise SettingsError(None, str(err)) from None
    client_id = os.environ.get("STACKPULSE_ALERTS_CLIENT_ID") or DEFAULT_ALERTS_CLIENT_ID
    return rules, AlertServiceSettings(root=settings.root, client_id=client_id, notify=notify)


def open_state(rt: Runtime, components: Sequence[str]) -> None:
    """Open what `components` need of the state database and logins, unless already open."""
    if rt.db is None and any(c in NEEDS_DB for c in components):
        rt.db = open_checked_db(rt.settings.db)
    if "api" in components and rt.auth is None:
        assert rt.db is not None
        try:
            rt.auth, rt.rate_limit = auth_for(rt.settings, rt.db)
        except SettingsError:
            rt.db.close()
            rt.db = None
            raise


def open_checked_db(url: str) -> StateDB:
    from stackpulse.kernel.statedb import StateDB, StateDBError

    try:
        return StateDB.open(url)
    except StateDBError as err:
        raise SettingsError("--db", str(err)) from None


def auth_for(settings: Settings, db: StateDB) -> tuple[AuthService, RateLimit]:
    """Logins over `db`; without STACKPULSE_SECRET only an API on loopback may start."""
    from stackpulse.kernel.auth import AuthError, TokenIssuer, resolve_secret
    from stackpulse.web.auth import AuthService
    from stackpulse.web.ratelimit import RateLimit

    host, _ = settings.http_bind()
    try:
        secret = resolve_secret(settings.secret.get_secret_value(), development=_loopback(host))
    except AuthError as err:
        raise SettingsError(None, str(err)) from None
    if settings.token_minutes <= 0:
        raise SettingsError(None, "STACKPULSE_TOKEN_MINUTES must be a positive number of minutes")
    try:
        limit = RateLimit(settings.rate_limit, settings.rate_burst)
    except ValueError as err:
        raise SettingsError(None, f"STACKPULSE_RATE_LIMIT/STACKPULSE_RATE_BURST: {err}") from None
    tokens = TokenIssuer(secret, timedelta(minutes=settings.token_minutes))
    return AuthService(db, tokens), limit


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
    open_state(rt, components)
    try:
        await _run_checked(rt, components)
    finally:
        if rt.db is not None:
            rt.db.close()


async def _run_checked(rt: Runtime, components: Sequence[str]) -> None:
    await check_broker(rt.broker)
    async with AsyncExitStack() as stack:
        # The api reads the store for the managers' reports.
        if any(c in components for c in ("gateway", "occupancy", "inventory", "alerts", "api")):
            rt.store = await open_checked_store(rt.settings.store)
            stack.push_async_callback(rt.store.close)
        async with asyncio.TaskGroup() as tg:
            _start(rt, components, tg)
            rt.started.set()


def _start(rt: Runtime, components: Sequence[str], tg: asyncio.TaskGroup) -> None:
    starters = {
        "gateway": _start_gateway,
        "occupancy": _start_occupancy,
        "inventory": _start_inventory,
        "alerts": _start_alerts,
        "api": _start_api,
    }
    for name in COMPONENTS:
        if name in components:
            starters[name](rt, tg)


def _start_gateway(rt: Runtime, tg: asyncio.TaskGroup) -> None:
    assert rt.store is not None
    rt.gateway = Gateway(index_sites(rt.layouts), rt.store, rt.clock, rt.gateway_settings)
    tg.create_task(rt.gateway.run(rt.broker), name="gateway")


def _start_occupancy(rt: Runtime, tg: asyncio.TaskGroup) -> None:
    from stackpulse.services.occupancy.service import OccupancyService

    assert rt.store is not None
    rt.occupancy = OccupancyService(rt.layouts, rt.store, rt.clock, rt.occupancy_settings)
    tg.create_task(rt.occupancy.run(rt.broker), name="occupancy")


def _start_inventory(rt: Runtime, tg: asyncio.TaskGroup) -> None:
    from stackpulse.services.inventory.service import (
        InventoryService,
        InventoryServiceSettings,
        load_site_catalog,
    )

    assert rt.store is not None
    catalogs = {lay.site: rt.catalogs.get(lay.site) or load_site_catalog(lay) for lay in rt.layouts}
    root = rt.settings.root
    cfg = rt.inventory_settings or InventoryServiceSettings.from_env(os.environ, root=root)
    rt.inventory = InventoryService(rt.layouts, catalogs, rt.store, rt.clock, rt.db, cfg)
    tg.create_task(rt.inventory.run(rt.broker), name="inventory")


def _start_alerts(rt: Runtime, tg: asyncio.TaskGroup) -> None:
    from stackpulse.services.alerts.service import AlertService, AlertServiceSettings

    assert rt.db is not None
    cfg = rt.alerts_service_settings or AlertServiceSettings(root=rt.settings.root)
    rt.alerts = AlertService(rt.layouts, rt.clock, rt.db, cfg, rt.alert_settings, series=rt.store)
    tg.create_task(rt.alerts.run(rt.broker), name="alerts")


def _start_api(rt: Runtime, tg: asyncio.TaskGroup) -> None:
    from stackpulse.services.inventory.view import InventoryView
    from stackpulse.services.inventory.view import run_view as follow_inventory
    from stackpulse.services.occupancy.view import OccupancyView
    from stackpulse.services.occupancy.view import run_view as follow_occupancy
    from stackpulse.web.app import build_app

    root = rt.settings.root
    rt.view = occupancy = OccupancyView(root)
    rt.inventory_view = inventory = InventoryView(root)
    tg.create_task(
        _follow("api view", lambda m: follow_occupancy(occupancy, m, root), rt.broker),
        name="api-view",
    )
    tg.create_task(
        _follow("api inventory view", lambda m: follow_inventory(inventory, m, root), rt.broker),
        name="api-inventory-view",
    )
    app = build_app(
        occupancy,
        rt.layouts,
        routers=_alert_routers(rt),
        inventory=inventory,
        auth=rt.auth,
        rate_limit=rt.rate_limit,
        store=rt.store,
        clock=rt.clock.now,
    )
    tg.create_task(_serve_http(rt, app), name="api-http")


def _alert_routers(rt: Runtime) -> list[APIRouter]:
    """The alert routes (over the state database the alerts service shares) and console."""
    from stackpulse.services.alerts.lifecycle import AlertBook
    from stackpulse.services.alerts.routes import alerts_router, console_router
    from stackpulse.services.alerts.settings import AlertSettings
    from stackpulse.services.alerts.store import AlertStore

    if rt.db is None:
        return []
    book = AlertBook(AlertStore(rt.db), rt.alert_settings or AlertSettings())
    return [alerts_router(book, rt.layouts, clock=rt.clock.now), console_router(rt.layouts)]


async def _follow(
    what: str, follow: Callable[[aiomqtt.Client], Awaitable[None]], broker: BrokerAddress
) -> None:
    """Run `follow` on a connection to the broker, again after each loss, with backoff."""
    backoff = Backoff()
    while True:
        raise_if_cancelling()
        try:
            async with client(broker) as mqtt:
                backoff.reset()
                await follow(mqtt)
        except aiomqtt.MqttError as err:
            log.warning("%s lost the broker: %s; reconnecting", what, err)
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
