"""``stackpulse dashboards build [--check] | push``: write, check or upload the dashboards."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from grafana_client.api import GrafanaApi
from grafana_client.client import (
    GrafanaException,
    GrafanaTimeoutError,
    GrafanaUnauthorizedError,
)

from stackpulse.dashboards.build import build_all
from stackpulse.dashboards.push import Destination, push, push_payload

__all__ = ["GENERATED_DIR", "check", "main", "push_payload", "write"]

GENERATED_DIR: Final = Path(__file__).resolve().parent / "generated"
DEFAULT_FOLDER_UID: Final = "stackpulse"
DEFAULT_FOLDER_TITLE: Final = "StackPulse"
_REBUILD_HINT: Final = "run `python3 -m stackpulse.dashboards.cli build` and commit the result"


def write(out_dir: Path, built: Mapping[str, str]) -> list[str]:
    """Write every dashboard whose file differs; the names written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in built.items():
        path = out_dir / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            written.append(name)
    return written


def check(out_dir: Path, built: Mapping[str, str]) -> list[str]:
    """What differs between ``out_dir`` and what the code builds: one line per problem."""
    problems = []
    for name, text in built.items():
        path = out_dir / name
        if not path.exists():
            problems.append(f"{path} is missing")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"{path} differs from what dashboards/build.py builds")
    if out_dir.is_dir():
        for stale in sorted(p for p in out_dir.glob("*.json") if p.name not in built):
            problems.append(f"{stale} is no longer built by dashboards/build.py")
    return problems


def _influx_from_store(store: str | None) -> tuple[str | None, str | None]:
    """`influxdb://host:port/db` (STACKPULSE_STORE) -> (http://host:port, db)."""
    if not store or not store.startswith(("influxdb://", "influxdbs://")):
        return None, None
    parts = urlsplit(store)
    scheme = "https" if parts.scheme == "influxdbs" else "http"
    return f"{scheme}://{parts.netloc.rpartition('@')[2]}", parts.path.strip("/") or None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stackpulse dashboards", description="StackPulse Grafana dashboards as code."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="write the dashboard JSON files")
    build.add_argument("--out", type=Path, default=GENERATED_DIR, help="output folder")
    build.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if the files are stale"
    )
    env = os.environ
    store_url, store_db = _influx_from_store(env.get("STACKPULSE_STORE"))
    push_p = sub.add_parser(
        "push", help="create or update data source, folder and dashboards in a running Grafana"
    )
    push_p.add_argument(
        "--grafana",
        "--url",
        dest="url",
        default=env.get("STACKPULSE_GRAFANA_URL"),
        help="Grafana's URL, e.g. http://127.0.0.1:3000 (env STACKPULSE_GRAFANA_URL)",
    )
    push_p.add_argument(
        "--token",
        default=env.get("STACKPULSE_GRAFANA_TOKEN"),
        help="service account token (env STACKPULSE_GRAFANA_TOKEN; prefer it: argv is public)",
    )
    push_p.add_argument(
        "--influx-url",
        default=env.get("STACKPULSE_INFLUX_URL") or store_url,
        help="InfluxDB's HTTP API as Grafana reaches it, e.g. http://influxdb:8086"
        " (env STACKPULSE_INFLUX_URL; default: host of STACKPULSE_STORE)",
    )
    push_p.add_argument(
        "--influx-db",
        default=env.get("STACKPULSE_INFLUX_DB") or store_db or "stackpulse",
        help="the database (env STACKPULSE_INFLUX_DB; default: that of STACKPULSE_STORE)",
    )
    push_p.add_argument(
        "--folder-uid", default=DEFAULT_FOLDER_UID, help="'' for the General folder"
    )
    push_p.add_argument("--folder-title", default=DEFAULT_FOLDER_TITLE)
    push_p.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    return parser


def _http_url(url: str | None) -> bool:
    parts = urlsplit(url or "")
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _usage_error(args: argparse.Namespace) -> str | None:
    if not _http_url(args.url):
        return f"--grafana/STACKPULSE_GRAFANA_URL: need Grafana's http(s) URL, got {args.url!r}"
    if not args.token and not urlsplit(args.url).username:
        return "--token/STACKPULSE_GRAFANA_TOKEN: need a Grafana service account token"
    if not _http_url(args.influx_url):
        return (
            "--influx-url/STACKPULSE_INFLUX_URL: need InfluxDB's http(s) URL as Grafana"
            f" reaches it, got {args.influx_url!r}"
        )
    return None


def _run_push(args: argparse.Namespace) -> int:
    problem = _usage_error(args)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    url = args.url.rstrip("/")
    where = f"Grafana at {urlsplit(url).scheme}://{urlsplit(url).netloc.rpartition('@')[2]}"
    dest = Destination(args.influx_url, args.influx_db, args.folder_uid or None, args.folder_title)
    try:
        api = GrafanaApi.from_url(url, credential=args.token or None, timeout=args.timeout)
        outcomes = push(api, build_all(), dest)
    except GrafanaTimeoutError:
        print(f"{where} is unreachable: no answer within {args.timeout:g} s", file=sys.stderr)
        return 1
    except GrafanaException as e:
        if isinstance(e, GrafanaUnauthorizedError) or e.status_code in (401, 403):
            print(
                f"{where} refused the token ({e.status_code}): check --token/"
                "STACKPULSE_GRAFANA_TOKEN (a service account token with the Admin role)",
                file=sys.stderr,
            )
            return 2
        print(
            f"{where} refused the push ({e.status_code}): {_one_line(e.message)}", file=sys.stderr
        )
        return 1
    except ValueError as e:  # an answer that is not JSON: not Grafana's API at that URL
        print(
            f"{where} does not answer like Grafana's HTTP API: {_one_line(str(e))}", file=sys.stderr
        )
        return 1
    except OSError as e:  # requests' connection errors are OSErrors
        print(f"{where} is unreachable: {type(e).__name__}", file=sys.stderr)
        return 1
    for outcome in outcomes:
        print(outcome)
    changed = sum(o.action != "unchanged" for o in outcomes)
    print(f"{changed} change(s) pushed to {where}" if changed else f"{where} was up to date")
    return 0


def _one_line(text: object) -> str:
    return " ".join(str(text).split())[:300]


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "push":
        return _run_push(args)
    built = build_all()
    if args.check:
        problems = check(args.out, built)
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print(_REBUILD_HINT, file=sys.stderr)
            return 1
        print(f"{len(built)} dashboard(s) up to date in {args.out}")
        return 0
    written = write(args.out, built)
    print(f"wrote {', '.join(written)}" if written else f"{len(built)} dashboard(s) unchanged")
    return 0


if __name__ == "__main__":
    sys.exit(main())
