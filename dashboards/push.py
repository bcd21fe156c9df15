"""Make a running Grafana hold the StackPulse data source, folder and dashboards.

Every object is read first and written only when it differs from what the code builds,
so a second push writes nothing. Paths, methods and bodies are those of Grafana's HTTP
API (`/api/health`, `/api/datasources/uid/{uid}`, `/api/folders/{uid}`,
`/api/dashboards/uid/{uid}`, `POST /api/dashboards/db`), through grafana-client.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from grafana_client.api import GrafanaApi
from grafana_client.client import GrafanaClientError

from stackpulse.dashboards.common import DATASOURCE_UID

__all__ = [
    "DATASOURCE_NAME",
    "Action",
    "Destination",
    "Outcome",
    "datasource_body",
    "push",
    "push_payload",
]

DATASOURCE_NAME: Final = "StackPulse InfluxDB"
# Grafana adds these to a saved dashboard; they say nothing about its content.
_SERVER_KEYS: Final = frozenset({"id", "version"})

Action = Literal["created", "updated", "unchanged"]


@dataclass(frozen=True, slots=True)
class Destination:
    """Where the dashboards go and what their data source points at."""

    influx_url: str  # InfluxDB's HTTP API as Grafana reaches it
    influx_db: str
    folder_uid: str | None = "stackpulse"  # None: Grafana's General folder
    folder_title: str = "StackPulse"


@dataclass(frozen=True, slots=True)
class Outcome:
    what: str  # "datasource", "folder" or "dashboard"
    uid: str
    action: Action

    def __str__(self) -> str:
        return f"{self.what} {self.uid}: {self.action}"


def datasource_body(influx_url: str, influx_db: str) -> dict[str, Any]:
    """The InfluxDB (InfluxQL) data source, the same as provisioning/datasources/."""
    return {
        "uid": DATASOURCE_UID,
        "name": DATASOURCE_NAME,
        "type": "influxdb",
        "access": "proxy",
        "url": influx_url,
        # Older Grafana reads `database`, newer `jsonData.dbName`: give both.
        "database": influx_db,
        "basicAuth": False,
        "isDefault": False,
        "jsonData": {
            "version": "InfluxQL",
            "dbName": influx_db,
            "httpMode": "GET",
            "timeInterval": "1m",
        },
    }


def push_payload(dashboard_json: Mapping[str, Any], folder_uid: str | None) -> dict[str, Any]:
    """The body of ``POST /api/dashboards/db``: overwrite whatever has the same uid."""
    payload: dict[str, Any] = {
        "dashboard": dict(dashboard_json),
        "overwrite": True,
        "message": "pushed by stackpulse dashboards push",
    }
    if folder_uid:
        payload["folderUid"] = folder_uid
    return payload


def _get(call: Any, *args: Any) -> dict[str, Any] | None:
    """The object Grafana holds, or None when it answers 404."""
    try:
        found = call(*args)
    except GrafanaClientError as e:
        if e.status_code == 404:
            return None
        raise
    return found if isinstance(found, dict) else None


def _covers(remote: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """Whether `remote` has every key of `wanted` with the same value (dicts compared alike)."""
    for key, value in wanted.items():
        theirs = remote.get(key)
        if isinstance(value, Mapping):
            if not isinstance(theirs, Mapping) or not _covers(theirs, value):
                return False
        elif theirs != value:
            return False
    return True


def _sync_datasource(api: GrafanaApi, dest: Destination) -> Outcome:
    datasources: Any = api.datasource  # grafana-client is untyped
    wanted = datasource_body(dest.influx_url, dest.influx_db)
    remote = _get(datasources.get_datasource_by_uid, DATASOURCE_UID)
    if remote is None:
        datasources.create_datasource(wanted)
        return Outcome("datasource", DATASOURCE_UID, "created")
    # `database` is deprecated (jsonData.dbName holds it): a Grafana may answer it empty.
    if _covers(remote, {k: v for k, v in wanted.items() if k != "database"}):
        return Outcome("datasource", DATASOURCE_UID, "unchanged")
    # jsonData is replaced as a whole on update: keep what others set besides ours.
    body = dict(wanted)
    body["jsonData"] = {**(remote.get("jsonData") or {}), **wanted["jsonData"]}
    datasources.update_datasource_by_uid(DATASOURCE_UID, body)
    return Outcome("datasource", DATASOURCE_UID, "updated")


def _sync_folder(api: GrafanaApi, dest: Destination) -> Outcome | None:
    if not dest.folder_uid:
        return None
    folders: Any = api.folder
    remote = _get(folders.get_folder, dest.folder_uid)
    if remote is None:
        folders.create_folder(dest.folder_title, uid=dest.folder_uid)
        return Outcome("folder", dest.folder_uid, "created")
    if remote.get("title") == dest.folder_title:
        return Outcome("folder", dest.folder_uid, "unchanged")
    folders.update_folder(dest.folder_uid, title=dest.folder_title, version=remote.get("version"))
    return Outcome("folder", dest.folder_uid, "updated")


def _same_dashboard(remote: Mapping[str, Any], board: Mapping[str, Any], folder: str) -> bool:
    saved = remote.get("dashboard")
    meta = remote.get("meta")
    if not isinstance(saved, Mapping) or not isinstance(meta, Mapping):
        return False
    content = {k: v for k, v in saved.items() if k not in _SERVER_KEYS}
    ours = {k: v for k, v in board.items() if k not in _SERVER_KEYS}
    return content == ours and (meta.get("folderUid") or "") == folder


def _sync_dashboard(api: GrafanaApi, board: Mapping[str, Any], dest: Destination) -> Outcome:
    uid = str(board["uid"])
    dashboards: Any = api.dashboard
    remote = _get(dashboards.get_dashboard, uid)
    if remote is not None and _same_dashboard(remote, board, dest.folder_uid or ""):
        return Outcome("dashboard", uid, "unchanged")
    dashboards.update_dashboard(push_payload(board, dest.folder_uid))
    return Outcome("dashboard", uid, "created" if remote is None else "updated")


def push(api: GrafanaApi, built: Mapping[str, str], dest: Destination) -> list[Outcome]:
    """Data source, folder, then every dashboard of `built` (file name -> JSON text).

    Raises grafana-client's errors (GrafanaUnauthorizedError for a refused token) and
    requests' connection errors; the caller turns them into one line.
    """
    # Needs no token: tells "not Grafana / not reachable" apart from "token refused".
    health = api.client.GET("/health")
    if not isinstance(health, dict) or "database" not in health:
        raise ValueError(f"GET /api/health answered {str(health)[:80]!r}")
    outcomes = [_sync_datasource(api, dest)]
    folder = _sync_folder(api, dest)
    if folder is not None:
        outcomes.append(folder)
    for text in built.values():
        outcomes.append(_sync_dashboard(api, json.loads(text), dest))
    return outcomes
