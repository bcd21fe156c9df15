"""``python3 -m dashboards.cli build [--check] | push``: write, check or upload the dashboards."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from grafana_client.api import GrafanaApi
from grafana_client.client import GrafanaClientError, GrafanaException

from dashboards.build import build_all

__all__ = ["GENERATED_DIR", "check", "main", "push", "push_payload", "write"]

GENERATED_DIR: Final = Path(__file__).resolve().parent / "generated"
DEFAULT_FOLDER_UID: Final = "stackpulse"
DEFAULT_FOLDER_TITLE: Final = "StackPulse"
_REBUILD_HINT: Final = "run `python3 -m dashboards.cli build` and commit the result"


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


def push_payload(dashboard_json: Mapping[str, Any], folder_uid: str | None) -> dict[str, Any]:
    """The body of ``POST /api/dashboards/db``: overwrite whatever has the same uid."""
    payload: dict[str, Any] = {
        "dashboard": dict(dashboard_json),
        "overwrite": True,
        "message": "pushed by dashboards/cli.py",
    }
    if folder_uid:
        payload["folderUid"] = folder_uid
    return payload


def push(
    url: str,
    token: str | None,
    built: Mapping[str, str],
    *,
    folder_uid: str | None = DEFAULT_FOLDER_UID,
    folder_title: str = DEFAULT_FOLDER_TITLE,
    timeout: float = 10.0,
) -> list[str]:
    """Create the folder if needed and upload every dashboard; one line per dashboard."""
    api = GrafanaApi.from_url(url, credential=token, timeout=timeout)
    if folder_uid:
        try:
            api.folder.get_folder(folder_uid)
        except GrafanaClientError as e:
            if e.status_code != 404:
                raise
            api.folder.create_folder(folder_title, uid=folder_uid)
    lines = []
    for name, text in built.items():
        result = api.dashboard.update_dashboard(push_payload(json.loads(text), folder_uid))
        answer = result if isinstance(result, dict) else {}
        lines.append(f"{name}: {answer.get('status', 'ok')} {answer.get('url', '')}".rstrip())
    return lines


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python3 -m dashboards.cli", description="StackPulse Grafana dashboards as code."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="write the dashboard JSON files")
    build.add_argument("--out", type=Path, default=GENERATED_DIR, help="output folder")
    build.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if the files are stale"
    )
    push = sub.add_parser("push", help="upload the dashboards through Grafana's HTTP API")
    push.add_argument(
        "--url",
        default=os.environ.get("STACKPULSE_GRAFANA_URL"),
        help="Grafana's URL, e.g. http://127.0.0.1:3000 (env STACKPULSE_GRAFANA_URL)",
    )
    push.add_argument(
        "--token",
        default=os.environ.get("STACKPULSE_GRAFANA_TOKEN"),
        help="service account token (env STACKPULSE_GRAFANA_TOKEN; prefer it: argv is public)",
    )
    push.add_argument("--folder-uid", default=DEFAULT_FOLDER_UID, help="'' for the General folder")
    push.add_argument("--folder-title", default=DEFAULT_FOLDER_TITLE)
    push.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    return parser


def _run_push(args: argparse.Namespace) -> int:
    url = args.url
    if not url or urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
        print(
            f"--url/STACKPULSE_GRAFANA_URL: need Grafana's http(s) URL, got {url!r}",
            file=sys.stderr,
        )
        return 2
    try:
        lines = push(
            url,
            args.token or None,
            build_all(),
            folder_uid=args.folder_uid or None,
            folder_title=args.folder_title,
            timeout=args.timeout,
        )
    except GrafanaException as e:
        print(f"Grafana at {url} refused the push: {e.message}", file=sys.stderr)
        return 1
    except OSError as e:  # the HTTP client's connection errors are OSErrors
        print(f"Grafana at {url} is unreachable: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    for line in lines:
        print(line)
    return 0


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
