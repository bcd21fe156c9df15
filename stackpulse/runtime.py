"""Builds real adapters from settings and starts the chosen components (composition root).

What a component needs is imported when it starts: a gateway process does not load the
web framework, the state database or the password hasher (tens of MB, a second of start).
Each component is wired by its own `entry.start(ctx, tg)`; this module only decides the
order: in one process the services' broker sessions exist before the gateway publishes,
and the API answers once they are started.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Iterator, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiomqtt
import uvicorn

from stackpulse.kernel.bus import BrokerAddress, BrokerUrlError, client, parse_broker_url
from stackpulse.kernel.catalog import Catalog, CatalogError, load_catalog
from stackpulse.kernel.clock import parse_clock
from stackpulse.kernel.context import Context
from stackpulse.kernel.layout import Layout, LayoutError, load_layout
from stackpulse.kernel.settings import ComponentSettings, Settings, SettingsError
from stackpulse.kernel.store.base import SeriesStore, StoreError, StoreRejected
from stackpulse.kernel.store.factory import open_store
from stackpulse.kernel.store.influx import InfluxStore

if TYPE_CHECKING:
    from stackpulse.kernel.statedb import StateDB
    from stackpulse.web.auth import AuthService
    from stackpulse.web.ratelimit import RateLimit

log = logging.getLogger("stackpulse")

COMPONENTS = ("gateway", "occupancy", "inventory", "alerts", "reports", "api")
SERVICES = ("occupancy", "inventory", "alerts", "reports")
NEEDS_DB = ("api", "occupancy", "inventory", "alerts", "reports")
SESSION_WAIT = 60.0  # seconds the gateway waits for the services' sessions in one process


@dataclass
class Runtime(Context):
    """The kernel's Context, plus what only the composition root holds: logins."""

    auth: AuthService | None = None
    rate_limit: RateLimit | None = None
    started: asyncio.Event = field(default_factory=asyncio.Event)


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


def component_settings(
    settings: Settings, components: Sequence[str]
) -> dict[type[ComponentSettings], ComponentSettings]:
    """Every setting class the components read, from STACKPULSE_* (SettingsError names one)."""
    kinds: list[type[ComponentSettings]] = []
    root: dict[type[ComponentSettings], dict[str, Any]] = {}
    if not components or "gateway" in components:
        from stackpulse.gateway.settings import GatewaySettings

        kinds.append(GatewaySettings)
        root[GatewaySettings] = {"root": settings.root}
    if not components or "occupancy" in components:
        from stackpulse.services.occupancy.settings import OccupancySettings

        kinds.append(OccupancySettings)
    if not components or "inventory" in components:
        from stackpulse.services.inventory.settings import InventoryServiceSettings

        kinds.append(InventoryServiceSettings)
    if not components or any(c in components for c in ("alerts", "api")):
        from stackpulse.services.alerts.settings import AlertServiceSettings, AlertSettings

        kinds += [AlertSettings, AlertServiceSettings]
    if not components or any(c in components for c in ("reports",)):
        from stackpulse.services.reports.settings import ReportsSettings

        kinds.append(ReportsSettings)
    if not components or "api" in components:
        from stackpulse.web.settings import ApiSettings

        kinds.append(ApiSettings)
    return {kind: kind.from_env(**root.get(kind, {})) for kind in kinds}


def prepare(settings: Settings, components: Sequence[str] = ()) -> Runtime:
    """Check what can be checked without the network; raise SettingsError naming the setting.

    For `components` that need them it also opens the state database and the logins.
    An empty `components` checks everything (and opens nothing).
    """
    # Only the inventory reads a catalog (1,000,000 items: seconds and hundreds of MB).
    catalogs: dict[str, Catalog] | None = None
    if not components or "inventory" in components:
        catalogs = {}
    layouts, _files = load_layouts(settings, catalogs=catalogs)
    try:
        broker = parse_broker_url(settings.broker)
    except BrokerUrlError as err:
        raise SettingsError("--broker", str(err)) from None
    try:
        clock = parse_clock(settings.clock)
    except ValueError as err:
        raise SettingsError("--clock", str(err)) from None
    settings.http_bind()
    settings.ops_bind()
    ctx = Runtime(settings, layouts, broker, clock, catalogs=catalogs or {})
    ctx.components.update(component_settings(settings, components))
    open_state(ctx, components)
    return ctx


def open_state(ctx: Runtime, components: Sequence[str]) -> None:
    """Open what `components` need of the state database and logins, unless already open."""
    if ctx.db is None and any(c in NEEDS_DB for c in components):
        ctx.db = open_checked_db(ctx.settings.db)
    if "api" in components and ctx.auth is None:
        assert ctx.db is not None
        try:
            ctx.auth, ctx.rate_limit = auth_for(ctx.settings, ctx.db)
        except SettingsError:
            ctx.db.close()
            ctx.db = None
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


async def run_components(ctx: Runtime, components: Sequence[str]) -> None:
    """Check the broker and the store, then run the named components until cancelled."""
    open_state(ctx, components)
    try:
        await check_broker(ctx.broker)
        async with AsyncExitStack() as stack:
            ctx.store = await open_checked_store(ctx.settings.store)
            stack.push_async_callback(ctx.store.close)
            async with asyncio.TaskGroup() as tg:
                await _start(ctx, components, tg)
                ctx.started.set()
    finally:
        if ctx.db is not None:
            ctx.db.close()


async def _start(ctx: Runtime, components: Sequence[str], tg: asyncio.TaskGroup) -> None:
    runners = []
    for name in SERVICES:
        if name in components:
            entry = _entry(name)
            runners.append(await entry.start(ctx, tg))
    if "gateway" in components:
        # The services' persistent sessions first: from then on the broker keeps for them
        # every event the gateway publishes (and what it publishes earlier, they read
        # back from the store).
        waits = [r.subscribed.wait() for r in runners if hasattr(r, "subscribed")]
        if waits:
            try:
                async with asyncio.timeout(SESSION_WAIT):
                    await asyncio.gather(*waits)
            except TimeoutError:
                log.warning(
                    "the services had no broker session within %.0f s; starting the gateway "
                    "anyway (they will catch up from the store)",
                    SESSION_WAIT,
                )
        from stackpulse.gateway import entry as gateway_entry

        gateway = await gateway_entry.start(ctx, tg)
        if "api" in components:
            # Devices told "the system is up" by the API are heard from their first message.
            try:
                async with asyncio.timeout(SESSION_WAIT):
                    await gateway.connected.wait()
            except TimeoutError:
                log.warning("the gateway has no broker session yet; starting the API anyway")
    if "api" in components:
        tg.create_task(_serve_api(ctx, tg), name="api-http")
    elif ctx.settings.ops:
        tg.create_task(_serve_ops(ctx), name="ops-http")


def _entry(name: str) -> Any:
    import importlib

    return importlib.import_module(f"stackpulse.services.{name}.entry")


async def _serve_api(ctx: Runtime, tg: asyncio.TaskGroup) -> None:
    from stackpulse.web.app import build_app
    from stackpulse.web.settings import ApiSettings

    parts = [_entry(name).web(ctx, tg) for name in SERVICES]
    app = build_app(
        ctx.layouts,
        parts,
        settings=ctx.component(ApiSettings),
        auth=ctx.auth,
        rate_limit=ctx.rate_limit,
        store=ctx.store,
        clock=ctx.clock.now,
        health=ctx.health,
    )
    ctx.services["app"] = app
    host, port = ctx.settings.http_bind()
    await _serve(app, host, port, "--http")


async def _serve_ops(ctx: Context) -> None:
    from stackpulse.web.ops import ops_app

    bind = ctx.settings.ops_bind()
    assert bind is not None
    await _serve(ops_app(ctx.health), bind[0], bind[1], "--ops")


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the command stops every component at once."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _serve(app: object, host: str, port: int, option: str) -> None:
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off")  # type: ignore[arg-type]
    server = _Server(config)
    try:
        await server.serve()
    except SystemExit:
        raise SettingsError(option, f"cannot listen on {host}:{port} (in use?)") from None
