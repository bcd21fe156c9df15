"""Issue 7, point 3: `stackpulse dashboards push`, verified by contract.

No Grafana server can run here, so push talks to a local HTTP server that answers the
part of Grafana's HTTP API push uses — as Grafana's documentation describes it (paths,
methods, the `Authorization: Bearer` header, required keys and their types, status
codes and answer shapes) — and records every request and every breach of that contract.
"""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from stackpulse.cli import main as stackpulse_main
from stackpulse.dashboards.build import build_all
from stackpulse.dashboards.cli import main
from stackpulse.dashboards.common import DATASOURCE_UID
from stackpulse.dashboards.push import datasource_body

TOKEN = "glsa_contract_token_0123456789"
PROVISIONING = Path(__file__).resolve().parent.parent / "dashboards" / "provisioning"
_UID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
# The keys Grafana documents for each body; anything else is a breach of contract.
_DATASOURCE_KEYS = {
    "uid", "name", "type", "access", "url", "database", "user", "basicAuth",
    "basicAuthUser", "withCredentials", "isDefault", "jsonData", "secureJsonData", "version",
}  # fmt: skip
_DATASOURCE_TYPES = {
    "name": str, "type": str, "access": str, "uid": str, "url": str, "database": str,
    "basicAuth": bool, "isDefault": bool, "jsonData": dict, "secureJsonData": dict,
}  # fmt: skip
_SAVE_KEYS = {"dashboard", "folderId", "folderUid", "message", "overwrite"}


@dataclass
class Request:
    method: str
    path: str
    auth: str | None
    body: Any


@dataclass
class Grafana:
    """The state and the log of the contract server."""

    token: str = TOKEN
    healthy_json: bool = True  # False: answers like a web page, not like Grafana
    datasources: dict[str, dict[str, Any]] = field(default_factory=dict)
    folders: dict[str, dict[str, Any]] = field(default_factory=dict)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)  # uid -> saved
    requests: list[Request] = field(default_factory=list)
    breaches: list[str] = field(default_factory=list)
    next_id: int = 1

    @property
    def writes(self) -> list[Request]:
        return [r for r in self.requests if r.method in ("POST", "PUT", "DELETE")]

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    # -- the API ---------------------------------------------------------------------

    def handle(self, method: str, path: str, auth: str | None, body: Any) -> tuple[int, Any]:
        self.requests.append(Request(method, path, auth, body))
        path = path.split("?", 1)[0]
        if path == "/api/health" and method == "GET":
            if not self.healthy_json:
                return 200, "<html>welcome</html>"
            return 200, {"commit": "contract", "database": "ok", "version": "11.3.0"}
        if auth != f"Bearer {self.token}":
            if not (auth or "").startswith("Bearer "):
                self.breaches.append(f"{method} {path}: no Bearer token")
            return 401, {"message": "Unauthorized"}
        routes: list[tuple[str, str, Callable[..., tuple[int, Any]]]] = [
            ("GET", r"/api/datasources", self.list_datasources),
            ("POST", r"/api/datasources", self.create_datasource),
            ("GET", r"/api/datasources/uid/([^/]+)", self.get_datasource),
            ("PUT", r"/api/datasources/uid/([^/]+)", self.update_datasource),
            ("GET", r"/api/folders", self.list_folders),
            ("POST", r"/api/folders", self.create_folder),
            ("GET", r"/api/folders/([^/]+)", self.get_folder),
            ("PUT", r"/api/folders/([^/]+)", self.update_folder),
            ("POST", r"/api/dashboards/db", self.save_dashboard),
            ("GET", r"/api/dashboards/uid/([^/]+)", self.get_dashboard),
        ]
        for verb, pattern, answer in routes:
            match = re.fullmatch(pattern, path)
            if match and verb == method:
                if method in ("POST", "PUT") and not isinstance(body, dict):
                    self.breaches.append(f"{method} {path}: body is not a JSON object")
                    return 400, {"message": "bad request data"}
                return answer(body, *match.groups())
        self.breaches.append(f"{method} {path}: not an endpoint push should use")
        return 404, {"message": "Not found"}

    def _bad(self, where: str, problem: str) -> tuple[int, Any]:
        self.breaches.append(f"{where}: {problem}")
        return 400, {"message": problem}

    def _check_datasource(self, where: str, body: dict[str, Any]) -> str | None:
        for key in ("name", "type", "access"):
            if not isinstance(body.get(key), str) or not body[key]:
                return f"{key} is required (string)"
        if body["access"] not in ("proxy", "direct"):
            return "access must be proxy or direct"
        if unknown := set(body) - _DATASOURCE_KEYS:
            return f"undocumented keys {sorted(unknown)}"
        for key, kind in _DATASOURCE_TYPES.items():
            if key in body and not isinstance(body[key], kind):
                return f"{key} must be a {kind.__name__}"
        if "uid" in body and not _UID.match(body["uid"]):
            return "uid must be at most 40 letters, digits, - or _"
        return None

    def list_datasources(self, _body: Any) -> tuple[int, Any]:
        return 200, list(self.datasources.values())

    def create_datasource(self, body: dict[str, Any]) -> tuple[int, Any]:
        if problem := self._check_datasource("POST /api/datasources", body):
            return self._bad("POST /api/datasources", problem)
        if any(d["name"] == body["name"] for d in self.datasources.values()):
            return 409, {"message": "data source with the same name already exists"}
        uid = body.get("uid") or f"ds{self.next_id}"
        if uid in self.datasources:
            return 409, {"message": "data source with the same uid already exists"}
        ds = {"id": self.new_id(), "orgId": 1, "readOnly": False, "version": 1, **body, "uid": uid}
        self.datasources[uid] = ds
        return 200, {
            "datasource": ds,
            "id": ds["id"],
            "message": "Datasource added",
            "name": ds["name"],
        }

    def get_datasource(self, _body: Any, uid: str) -> tuple[int, Any]:
        if uid not in self.datasources:
            return 404, {"message": "Data source not found"}
        return 200, self.datasources[uid]

    def update_datasource(self, body: dict[str, Any], uid: str) -> tuple[int, Any]:
        if problem := self._check_datasource(f"PUT /api/datasources/uid/{uid}", body):
            return self._bad(f"PUT /api/datasources/uid/{uid}", problem)
        if uid not in self.datasources:
            return 404, {"message": "Data source not found"}
        old = self.datasources[uid]
        ds = {**body, "id": old["id"], "orgId": 1, "uid": uid, "version": old["version"] + 1}
        self.datasources[uid] = ds
        return 200, {
            "datasource": ds,
            "id": ds["id"],
            "message": "Datasource updated",
            "name": ds["name"],
        }

    def _folder(self, uid: str, title: str, version: int, id_: int) -> dict[str, Any]:
        slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
        return {
            "id": id_, "uid": uid, "title": title, "url": f"/dashboards/f/{uid}/{slug}",
            "hasAcl": False, "canSave": True, "canEdit": True, "canAdmin": True,
            "version": version,
        }  # fmt: skip

    def list_folders(self, _body: Any) -> tuple[int, Any]:
        return 200, [{k: f[k] for k in ("id", "uid", "title")} for f in self.folders.values()]

    def create_folder(self, body: dict[str, Any]) -> tuple[int, Any]:
        if not isinstance(body.get("title"), str) or not body["title"]:
            return self._bad("POST /api/folders", "title is required (string)")
        if set(body) - {"uid", "title", "parentUid", "description"}:
            return self._bad("POST /api/folders", f"undocumented keys {sorted(body)}")
        uid = body.get("uid") or f"f{self.next_id}"
        if not isinstance(uid, str) or not _UID.match(uid):
            return self._bad("POST /api/folders", "uid must be at most 40 letters, digits, - or _")
        if uid in self.folders:
            return 409, {"message": "a folder with the same uid already exists"}
        self.folders[uid] = self._folder(uid, body["title"], 1, self.new_id())
        return 200, self.folders[uid]

    def get_folder(self, _body: Any, uid: str) -> tuple[int, Any]:
        if uid not in self.folders:
            return 404, {"message": "folder not found"}
        return 200, self.folders[uid]

    def update_folder(self, body: dict[str, Any], uid: str) -> tuple[int, Any]:
        if uid not in self.folders:
            return 404, {"message": "folder not found"}
        if not isinstance(body.get("title"), str):
            return self._bad(f"PUT /api/folders/{uid}", "title is required (string)")
        old = self.folders[uid]
        if not body.get("overwrite") and body.get("version") != old["version"]:
            return 412, {"message": "the folder has been changed by someone else"}
        self.folders[uid] = self._folder(uid, body["title"], old["version"] + 1, old["id"])
        return 200, self.folders[uid]

    def save_dashboard(self, body: dict[str, Any]) -> tuple[int, Any]:
        where = "POST /api/dashboards/db"
        board = body.get("dashboard")
        if unknown := set(body) - _SAVE_KEYS:
            return self._bad(where, f"undocumented keys {sorted(unknown)}")
        if not isinstance(board, dict) or not isinstance(board.get("title"), str):
            return self._bad(where, "dashboard must be an object with a title")
        uid = board.get("uid")
        if not isinstance(uid, str) or not _UID.match(uid):
            return self._bad(where, "push must give each dashboard its fixed uid")
        if "overwrite" in body and not isinstance(body["overwrite"], bool):
            return self._bad(where, "overwrite must be a boolean")
        folder = body.get("folderUid", "")
        if not isinstance(folder, str):
            return self._bad(where, "folderUid must be a string")
        if folder and folder not in self.folders:
            return 400, {"message": "folder not found"}
        old = self.dashboards.get(uid)
        if (
            old
            and not body.get("overwrite")
            and board.get("version") != old["dashboard"]["version"]
        ):
            changed = "The dashboard has been changed by someone else"
            return 412, {"message": changed, "status": "version-mismatch"}
        version = old["dashboard"]["version"] + 1 if old else 1
        id_ = old["dashboard"]["id"] if old else self.new_id()
        saved = {**board, "id": id_, "uid": uid, "version": version}
        self.dashboards[uid] = {"dashboard": saved, "folderUid": folder}
        slug = re.sub(r"[^a-z0-9]+", "-", board["title"].lower()).strip("-")
        return 200, {
            "id": id_, "uid": uid, "url": f"/d/{uid}/{slug}", "status": "success",
            "version": version, "slug": slug,
        }  # fmt: skip

    def get_dashboard(self, _body: Any, uid: str) -> tuple[int, Any]:
        if uid not in self.dashboards:
            return 404, {"message": "Dashboard not found"}
        saved = self.dashboards[uid]
        folder = self.folders.get(saved["folderUid"], {})
        return 200, {
            "dashboard": saved["dashboard"],
            "meta": {
                "type": "db", "canSave": True, "provisioned": False,
                "slug": uid, "url": f"/d/{uid}", "version": saved["dashboard"]["version"],
                "folderId": folder.get("id", 0), "folderUid": saved["folderUid"],
                "folderTitle": folder.get("title", "General"),
            },
        }  # fmt: skip


def _handler(grafana: Grafana) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body: Any = None
            if raw:
                if not (self.headers.get("Content-Type") or "").startswith("application/json"):
                    grafana.breaches.append(f"{self.command} {self.path}: body is not JSON")
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw
            status, answer = grafana.handle(
                self.command, self.path, self.headers.get("Authorization"), body
            )
            text = answer if isinstance(answer, str) else json.dumps(answer)
            data = text.encode()
            self.send_response(status)
            kind = "text/html" if isinstance(answer, str) else "application/json"
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def grafana() -> Iterator[tuple[Grafana, str]]:
    state = Grafana()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, name="contract-grafana", daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("URL", "TOKEN"):
        monkeypatch.delenv(f"STACKPULSE_GRAFANA_{name}", raising=False)
    for name in ("STACKPULSE_INFLUX_URL", "STACKPULSE_INFLUX_DB", "STACKPULSE_STORE"):
        monkeypatch.delenv(name, raising=False)


def _push(url: str, *extra: str, token: str = TOKEN) -> int:
    return main(
        ["push", "--grafana", url, "--token", token, "--influx-url", "http://influxdb:8086",
         "--influx-db", "stackpulse", *extra]
    )  # fmt: skip


def _built() -> dict[str, dict[str, Any]]:
    return {b["uid"]: b for b in (json.loads(t) for t in build_all().values())}


# -- the tests ------------------------------------------------------------------------


def test_first_push_creates_datasource_folder_and_every_dashboard(
    grafana: tuple[Grafana, str], capsys: pytest.CaptureFixture[str]
) -> None:
    state, url = grafana
    assert _push(url) == 0, capsys.readouterr().err
    assert state.breaches == []
    (ds,) = state.datasources.values()
    assert ds["uid"] == DATASOURCE_UID and ds["type"] == "influxdb" and ds["access"] == "proxy"
    assert ds["url"] == "http://influxdb:8086"
    assert ds["jsonData"]["version"] == "InfluxQL" and ds["jsonData"]["dbName"] == "stackpulse"
    assert {u: f["title"] for u, f in state.folders.items()} == {"stackpulse": "StackPulse"}
    built = _built()
    assert set(state.dashboards) == set(built) and len(built) == 7
    for uid, saved in state.dashboards.items():
        assert saved["folderUid"] == "stackpulse"
        content = {k: v for k, v in saved["dashboard"].items() if k not in ("id", "version")}
        assert content == built[uid]
    # Health needs no token; everything else carried it.
    assert all(r.auth == f"Bearer {TOKEN}" for r in state.requests if r.path != "/api/health")
    out = capsys.readouterr().out
    assert "datasource stackpulse-influx: created" in out and "folder stackpulse: created" in out
    assert out.count(": created") == 2 + len(built)
    saves = [r for r in state.writes if r.path == "/api/dashboards/db"]
    assert all(r.body["overwrite"] is True and r.body["folderUid"] == "stackpulse" for r in saves)


def test_second_push_writes_nothing(
    grafana: tuple[Grafana, str], capsys: pytest.CaptureFixture[str]
) -> None:
    state, url = grafana
    assert _push(url) == 0
    before = len(state.writes)
    versions = {u: d["dashboard"]["version"] for u, d in state.dashboards.items()}
    capsys.readouterr()
    assert _push(url) == 0
    assert len(state.writes) == before, [f"{r.method} {r.path}" for r in state.writes[before:]]
    assert {u: d["dashboard"]["version"] for u, d in state.dashboards.items()} == versions
    assert "was up to date" in capsys.readouterr().out
    assert state.breaches == []


def test_push_repairs_only_what_differs(grafana: tuple[Grafana, str]) -> None:
    state, url = grafana
    assert _push(url) == 0
    state.dashboards["stackpulse-seats"]["dashboard"]["title"] = "edited in the UI"
    state.folders["stackpulse"]["title"] = "Renamed"
    before = len(state.writes)
    assert _push(url, "--influx-url", "http://influx.internal:8086") == 0
    assert sorted(f"{r.method} {r.path}" for r in state.writes[before:]) == [
        "POST /api/dashboards/db",
        f"PUT /api/datasources/uid/{DATASOURCE_UID}",
        "PUT /api/folders/stackpulse",
    ]
    assert state.dashboards["stackpulse-seats"]["dashboard"]["title"] == "StackPulse — Seats"
    assert state.datasources[DATASOURCE_UID]["url"] == "http://influx.internal:8086"
    assert state.folders["stackpulse"]["title"] == "StackPulse"
    assert state.breaches == []


def test_push_through_the_stackpulse_command(grafana: tuple[Grafana, str]) -> None:
    state, url = grafana
    argv = ["dashboards", "push", "--grafana", url, "--token", TOKEN, "--influx-url",
            "http://influxdb:8086"]  # fmt: skip
    assert stackpulse_main(argv) == 0
    assert len(state.dashboards) == len(build_all()) and state.breaches == []


def test_wrong_token_is_one_line_and_exit_2(
    grafana: tuple[Grafana, str], capsys: pytest.CaptureFixture[str]
) -> None:
    state, url = grafana
    assert _push(url, token="glsa_wrong") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "refused the token (401)" in err[0] and "--token" in err[0]
    assert "glsa_wrong" not in err[0]
    assert state.writes == [] and state.breaches == []


def test_unreachable_or_not_grafana_is_one_line(
    grafana: tuple[Grafana, str], capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert _push(f"http://127.0.0.1:{port}", "--timeout", "2") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unreachable" in err[0], err

    state, url = grafana
    state.healthy_json = False
    assert _push(url) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not answer like Grafana" in err[0], err
    assert state.writes == []


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--grafana", "ftp://grafana", "--token", "t"], ["--grafana"]),
        (["--grafana", "http://127.0.0.1:1"], ["--token"]),
        (["--grafana", "http://127.0.0.1:1", "--token", "t"], ["--influx-url"]),
        (
            ["--grafana", "http://127.0.0.1:1", "--token", "t", "--influx-url", "influx"],
            ["--influx-url"],
        ),
    ],
)
def test_unusable_settings_exit_2_before_any_request(
    args: list[str], names: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["push", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and all(n in err[0] for n in names), err


def test_influx_defaults_come_from_the_store_url(
    grafana: tuple[Grafana, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    state, url = grafana
    monkeypatch.setenv("STACKPULSE_STORE", "influxdb://influx.lan:8086/library")
    monkeypatch.setenv("STACKPULSE_GRAFANA_TOKEN", TOKEN)
    assert main(["push", "--grafana", url]) == 0
    ds = state.datasources[DATASOURCE_UID]
    assert (ds["url"], ds["database"], ds["jsonData"]["dbName"]) == (
        "http://influx.lan:8086",
        "library",
        "library",
    )


def test_provisioning_files_describe_the_same_datasource_push_creates() -> None:
    (source,) = yaml.safe_load((PROVISIONING / "datasources" / "stackpulse.yaml").read_text())[
        "datasources"
    ]
    pushed = datasource_body("${STACKPULSE_INFLUX_URL}", "${STACKPULSE_INFLUX_DB}")
    for key in ("uid", "name", "type", "access", "url", "database", "isDefault", "jsonData"):
        assert source[key] == pushed[key], key
    (provider,) = yaml.safe_load((PROVISIONING / "dashboards" / "stackpulse.yaml").read_text())[
        "providers"
    ]
    assert (provider["folder"], provider["folderUid"]) == ("StackPulse", "stackpulse")
