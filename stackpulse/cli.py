"""The `stackpulse` command: the composition root, the one module that imports everything."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import secrets
import signal
import sys
import tempfile
from collections.abc import Coroutine, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from stackpulse.kernel.clock import ScaledClock
from stackpulse.kernel.layout import Layout
from stackpulse.kernel.settings import Settings, SettingsError
from stackpulse.runtime import COMPONENTS, Runtime, prepare, run_components
from stackpulse.users import add_demo_login, add_users_parser
from stackpulse.users import main as users_main

log = logging.getLogger("stackpulse")

SETTING_OPTIONS = (
    "layout",
    "broker",
    "store",
    "db",
    "http",
    "ops",
    "root",
    "clock",
    "log_level",
    "log_format",
)


def _add_settings(p: argparse.ArgumentParser, *names: str) -> None:
    helps = {
        "layout": "site layout YAML (comma-separated for several sites)",
        "broker": "MQTT broker URL, mqtt://[user:password@]host:port or mqtts://",
        "store": "time-series store URL, influxdb://host:8086/db or sqlite:///path.db",
        "db": "state database URL, sqlite:///path.db or postgresql://user@host/db",
        "http": "HOST:PORT for the HTTP API and pages",
        "ops": "HOST:PORT for /healthz, /readyz and /metrics of a process without the API",
        "root": "topic root (default lib/v1)",
        "clock": "'system', or sim:<RFC 3339 start>x<speed> for simulated time",
        "log_level": "DEBUG, INFO, WARNING or ERROR",
        "log_format": "text, or json (one object per line: ts, level, logger, message, ...)",
    }
    for name in names:
        p.add_argument("--" + name.replace("_", "-"), dest=name, help=helps[name])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stackpulse", description="Live occupancy, seats and shelves of a library."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="everything in one process on the embedded default")
    _add_settings(demo, "layout", "store", "db", "http", "log_level", "log_format")
    demo.add_argument("--speed", type=float, default=60.0, help="simulated seconds per second")
    demo.add_argument("--seed", type=int, default=1)

    run = sub.add_parser("run", help="run components against a real broker and store")
    run.add_argument("component", choices=[*COMPONENTS, "all"])
    _add_settings(run, *SETTING_OPTIONS)

    sim = sub.add_parser("simulate", help="publish a simulated library to a broker")
    _add_settings(sim, "layout", "broker", "root", "log_level", "log_format")
    sim.add_argument("--speed", type=float, default=1.0, help="simulated seconds per second")
    sim.add_argument("--seed", type=int, default=1)
    sim.add_argument("--start", help="simulated start time, RFC 3339 (default: now)")
    sim.add_argument("--duration", type=float, help="stop after this many wall seconds")
    dash = sub.add_parser("dashboards", help="build, check or push the Grafana dashboards")
    dash.add_argument("args", nargs=argparse.REMAINDER, help="build [--check] | push --grafana URL")
    add_users_parser(sub)
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    given = {k: v for k in SETTING_OPTIONS if (v := getattr(args, k, None)) is not None}
    return Settings(**given)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "users":
        return users_main(args)
    if args.command == "dashboards":
        from stackpulse.dashboards.cli import main as dashboards_main

        return dashboards_main(args.args)
    settings = settings_from(args)
    try:
        setup_logging(settings.log_level, settings.log_format)
        if args.command == "demo":
            return asyncio.run(_until_signalled(_demo(settings, args.speed, args.seed)))
        if args.command == "run":
            return asyncio.run(_until_signalled(_run(settings, args.component)))
        return asyncio.run(_until_signalled(_simulate(settings, args)))
    except SettingsError as err:
        print(f"stackpulse: {err}", file=sys.stderr)
        return 2
    except ExceptionGroup as group:  # raised by a component after the start, e.g. --http
        found = group.subgroup(SettingsError)
        if found is None:
            raise
        print(f"stackpulse: {_first(found)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def setup_logging(level: str, fmt: str) -> None:
    """Plain lines for people, or JSON lines (structured) for a log shipper."""
    if level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise SettingsError("--log-level", f"{level!r} is not DEBUG, INFO, WARNING or ERROR")
    handler = logging.StreamHandler()
    if fmt == "json":
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"asctime": "ts", "levelname": "level", "name": "logger"},
            )
        )
    elif fmt == "text":
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    else:
        raise SettingsError("--log-format", f"{fmt!r} is not text or json")
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


async def _until_signalled(work: Coroutine[Any, Any, int]) -> int:
    """Run until done, or until SIGINT/SIGTERM asks every component to stop."""
    task = asyncio.ensure_future(work)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        return await task
    except asyncio.CancelledError:
        log.info("stopped")
        return 0


def _first(group: BaseExceptionGroup[SettingsError]) -> BaseException:
    first = group.exceptions[0]
    return _first(first) if isinstance(first, BaseExceptionGroup) else first


async def _run(settings: Settings, component: str) -> int:
    components = COMPONENTS if component == "all" else (component,)
    rt = prepare(settings, components)
    await run_components(rt, components)
    return 0


def opening_time(layout: Layout, now: datetime) -> datetime:
    """A little before the site opens today (its own time zone), for a demo to start at."""
    local_day = now.astimezone(layout.tz).date()
    for offset in range(8):  # the next day it opens at all
        hours = layout.hours_for(local_day + timedelta(days=offset))
        if hours is not None:
            return hours[0].astimezone(UTC) - timedelta(minutes=10)
    return now


async def _demo(settings: Settings, speed: float, seed: int) -> int:

    with contextlib.ExitStack() as files:
        if "store" not in settings.model_fields_set:
            tmp = files.enter_context(tempfile.TemporaryDirectory(prefix="stackpulse-demo-"))
            settings.store = f"sqlite:///{Path(tmp) / 'series.db'}"
        throwaway_db = "db" not in settings.model_fields_set
        if throwaway_db:  # users and checkpoints of this run only, like the series
            tmp = files.enter_context(tempfile.TemporaryDirectory(prefix="stackpulse-demo-"))
            settings.db = f"sqlite://{Path(tmp) / 'state.db'}"
        from stackpulse.broker import embedded_broker  # amqtt: the demo's alone

        async with embedded_broker() as broker:
            settings.broker = f"mqtt://{broker.host}:{broker.port}"
            if not settings.secret.get_secret_value():  # tokens last as long as the demo
                settings.secret = SecretStr(secrets.token_urlsafe(32))
            rt = prepare(settings, COMPONENTS)
            login = add_demo_login(rt.db) if throwaway_db and rt.db else None
            layout = rt.layouts[0]
            start = opening_time(layout, datetime.now(UTC))
            rt.clock = ScaledClock(start, speed)
            host, port = settings.http_bind()
            async with asyncio.TaskGroup() as tg:
                tg.create_task(run_components(rt, COMPONENTS))
                await asyncio.wait_for(rt.started.wait(), timeout=30)
                print(
                    f"StackPulse demo: {layout.name}, simulated from {start:%Y-%m-%d %H:%M} UTC "
                    f"at {speed:g}x.\n  Student page: http://{host}:{port}/\n"
                    f"  Staff page:   http://{host}:{port}/staff/{layout.site}\n"
                    f"  Alerts:       http://{host}:{port}/console/{layout.site}\n"
                    f"  API:          http://{host}:{port}/docs\n"
                    f"  Broker:       {settings.broker}  (Ctrl-C to stop)",
                    flush=True,
                )
                if login:
                    print(f"  Staff login:  {login}", flush=True)
                for lay in rt.layouts:
                    tg.create_task(_simulate_one(rt, lay, seed))
    return 0


async def _simulate_one(
    rt: Runtime, layout: Layout, seed: int, duration: float | None = None
) -> None:
    from stackpulse.simulators.run import run_simulation

    catalog = Path(layout.catalog) if layout.catalog else None  # resolved by load_layout
    await run_simulation(
        layout,
        rt.broker,
        root=rt.settings.root,
        clock=rt.clock,
        seed=seed,
        catalog_path=catalog,
        duration=duration,
    )


async def _simulate(settings: Settings, args: argparse.Namespace) -> int:
    from stackpulse.runtime import check_broker

    rt = prepare(settings)
    try:
        start = datetime.fromisoformat(args.start) if args.start else datetime.now(UTC)
    except ValueError:
        raise SettingsError("--start", f"{args.start!r} is not an RFC 3339 time") from None
    if start.tzinfo is None:
        raise SettingsError("--start", "needs a UTC offset (Z)")
    if args.speed <= 0:
        raise SettingsError("--speed", "must be positive")
    rt.clock = ScaledClock(start, args.speed)
    await check_broker(rt.broker)
    # --duration is wall seconds; the simulator counts in its own (simulated) seconds.
    duration = args.duration * args.speed if args.duration else None
    async with asyncio.TaskGroup() as tg:
        for lay in rt.layouts:
            tg.create_task(_simulate_one(rt, lay, args.seed, duration))
    return 0


if __name__ == "__main__":
    sys.exit(main())
