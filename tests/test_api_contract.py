"""API contract: schemathesis drives every operation of the OpenAPI spec, with and without tokens.

The app is the one the API process builds (stackpulse.runtime's wiring) over real state: a
SQLite state database with users made through the user store, an alert book holding alerts
opened by real observations, views fed the retained messages the services publish, and a
SQLite series store for the managers' reports.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from schemathesis import Case, HookContext
from schemathesis.checks import CheckFunction, not_a_server_error
from schemathesis.schemas import APIOperation, BaseSchema
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from stackpulse.kernel.auth import check_new_user, hash_password
from stackpulse.kernel.settings import Settings
from stackpulse.kernel.statedb import StateDB
from stackpulse.kernel.store.factory import open_store
from stackpulse.kernel.topics import state_topic
from stackpulse.runtime import auth_for
from stackpulse.services.alerts.lifecycle import AlertBook
from stackpulse.services.alerts.model import Observation, Severity
from stackpulse.services.alerts.settings import AlertSettings
from stackpulse.services.alerts.store import AlertStore
from stackpulse.services.occupancy.view import OccupancyView
from tests.support.app import app_for
from tests.support.browser import serve_app
from tests.test_api import LAYOUTS, ROOT, initial_state
from tests.test_inventory_api import fed_view

SECRET = "contract-secret-" + "c" * 32
PASSWORD = "contract password 42"
USERS: tuple[tuple[str, str, list[str]], ...] = (
    ("ana", "staff", ["main"]),
    ("max", "manager", []),
    ("root", "admin", []),
)
MODES = {"anonymous": None, "staff": "ana", "manager": "max"}
SITES = [lay.site for lay in LAYOUTS]
STREAMS = ["stream", "alerts/stream", "inventory/stream"]
CHECKS: list[CheckFunction] = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
MAX_EXAMPLES = 25
AnyCase = Case[APIOperation[Any, Any, Any, Any]]
SENDABLE = {"method", "url", "headers", "params", "content", "data", "files", "json", "cookies"}


@dataclass(frozen=True)
class Deployment:
    app: FastAPI
    http: TestClient  # one client (and one event loop) for all the generated requests
    tokens: dict[str, str]  # username -> bearer token, issued by the token endpoint
    alert_ids: list[str]

    def headers(self, username: str | None) -> dict[str, str]:
        if username is None:
            return {}
        return {"Authorization": f"Bearer {self.tokens[username]}"}


def _users(db: StateDB) -> StateDB:
    """As `stackpulse users add` stores them: checked, then only the password's hash kept."""
    for username, role, sites in USERS:
        checked_role, checked_sites = check_new_user(username, role, sites)
        db.add_user(username, hash_password(PASSWORD), checked_role, checked_sites)
    return db


def _alerts(book: AlertBook) -> list[str]:
    """Open alerts on both sites; ack one and clear one, so every state is there to act on."""
    now = datetime.now(UTC) - timedelta(minutes=5)
    opened = []
    for site, subject, rule in [
        ("main", "seat-1", "device_offline"),
        ("main", "seat-2", "battery_low"),
        ("main", "seat-3", "device_offline"),
        ("law", "l1", "zone_over_capacity"),
    ]:
        obs = Observation(
            rule=rule,
            site=site,
            subject=subject,
            active=True,
            at=now,
            severity=Severity.CRITICAL if rule == "battery_low" else Severity.WARNING,
            message=f"{subject}: {rule}",
        )
        [transition] = book.apply(obs)
        opened.append(transition.alert.id)
    book.ack(opened[1], "ana", now + timedelta(minutes=1))
    book.clear(opened[2], "ana", now + timedelta(minutes=2))
    return opened


def _occupancy() -> OccupancyView:
    view = OccupancyView(ROOT)
    for topic, payload in initial_state(ROOT):
        view.apply(topic, payload)
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    forecast = {
        "id": "f1-reading",
        "hours": [
            {"at": hour.isoformat(), "occupancy": 40, "busyness": "busy"},
            {"at": (hour + timedelta(hours=1)).isoformat()},
        ],
    }
    view.apply(
        state_topic(ROOT, "main", "occupancy", "forecast", "f1-reading"),
        json.dumps(forecast).encode(),
    )
    return view


@contextmanager
def _built(db: StateDB, where: Path, *, rate: float, burst: int) -> Iterator[FastAPI]:
    """The app as `stackpulse run api` composes it (stackpulse.runtime._start)."""
    settings = Settings(secret=SecretStr(SECRET), rate_limit=rate, rate_burst=burst)
    auth, limit = auth_for(settings, db)
    book = AlertBook(AlertStore(db), AlertSettings())
    store = open_store(f"sqlite://{where / 'series.db'}")
    asyncio.run(store.ping())
    try:
        yield app_for(
            LAYOUTS,
            _occupancy(),
            alerts=book,
            inventory=fed_view(),
            auth=auth,
            rate_limit=limit,
            store=store,
        )
    finally:
        asyncio.run(store.close())


def _login(http: TestClient, username: str) -> str:
    answer = http.post("/api/v1/auth/token", data={"username": username, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["access_token"]
    return token


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    where: Path = tmp_path_factory.mktemp("contract")
    with StateDB.open(f"sqlite://{where / 'state.db'}") as db:
        _users(db)
        alert_ids = _alerts(AlertBook(AlertStore(db), AlertSettings()))
        with (
            _built(db, where, rate=100_000.0, burst=100_000) as app,
            TestClient(app) as http,
        ):
            tokens = {name: _login(http, name) for name, *_ in USERS}
            yield Deployment(app, http, tokens, alert_ids)


@pytest.fixture(scope="module", params=list(MODES))
def username(request: pytest.FixtureRequest) -> str | None:
    """Who calls: nobody (no token), a staff user of site main, a manager."""
    name: str | None = MODES[request.param]
    return name


@pytest.fixture(scope="module")
def api_schema(deployment: Deployment, username: str | None) -> BaseSchema:
    # Asking for `username` here is what runs the contract once per caller.
    loaded = schemathesis.openapi.from_asgi("/openapi.json", deployment.app)
    loaded.config.generation.update(max_examples=MAX_EXAMPLES, deterministic=True)
    known = {"site": SITES, "alert_id": deployment.alert_ids}

    @loaded.hook
    def flatmap_path_parameters(
        context: HookContext, path_parameters: dict[str, Any]
    ) -> st.SearchStrategy[dict[str, Any]]:
        """Half the time a site or alert that exists, so the 200s are checked too."""
        real = [name for name in known if name in (path_parameters or {})]
        if not real:
            return st.just(path_parameters)
        swapped = st.fixed_dictionaries({n: st.sampled_from(known[n]) for n in real})
        return st.one_of(st.just(path_parameters), swapped.map(lambda s: {**path_parameters, **s}))

    del flatmap_path_parameters  # registered on the schema by the decorator
    return loaded


# Event streams never end; they are checked below, one request each. (The filter goes on
# the lazy schema: it replaces any filter the fixture's schema carries.)
schema = schemathesis.pytest.from_fixture("api_schema").exclude(path_regex=r"/stream$")


@schema.parametrize()
@pytest.mark.timeout(300)
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_keeps_its_contract(
    case: AnyCase, deployment: Deployment, username: str | None
) -> None:
    headers = deployment.headers(username)
    response = _send(deployment.http, case, headers)
    case.validate_response(response, checks=CHECKS, headers=headers)


def _send(http: TestClient, case: AnyCase, headers: dict[str, str]) -> httpx.Response:
    """The case as httpx sends it through the app's TestClient.

    Not `case.call()`: its requests transport counts urllib3 connection pools, which fails
    under urllib3-future (installed as `urllib3` by niquests, which grafana-client needs).
    """
    sent = case.as_transport_kwargs(base_url=str(http.base_url), headers=headers)
    if not sent.get("cookies"):
        sent.pop("cookies", None)
    body = sent.pop("data", None)
    if isinstance(body, str | bytes):
        sent["content"] = body
    elif body is not None:
        sent["data"] = body
    unknown = set(sent) - SENDABLE
    assert not unknown, f"the case needs {unknown}, which this test does not send"
    answer: httpx.Response = http.request(**sent)
    return answer


# ---- the event streams, one request each ----------------------------------------------


async def _open_stream(
    http: httpx.AsyncClient, path: str, headers: dict[str, str]
) -> tuple[int, str]:
    async with asyncio.timeout(10), http.stream("GET", path, headers=headers) as answer:
        return answer.status_code, answer.headers.get("content-type", "")


@pytest.mark.parametrize("stream", STREAMS)
async def test_streams_answer_an_event_stream_to_whom_may_read_them(
    deployment: Deployment, stream: str
) -> None:
    path = f"/api/v1/sites/main/{stream}"
    reader = {"stream": None, "alerts/stream": "ana", "inventory/stream": "ana"}[stream]
    async with serve_app(deployment.app) as url, httpx.AsyncClient(base_url=url) as http:
        status, kind = await _open_stream(http, path, deployment.headers(reader))
        assert status == 200 and kind.startswith("text/event-stream")
        if reader is not None:  # protected: no token or a bad one is a 401
            assert (await _open_stream(http, path, {}))[0] == 401
            bad = {"Authorization": "Bearer not.a.token"}
            assert (await _open_stream(http, path, bad))[0] == 401


# ---- the rate limit ----------------------------------------------------------------------


def test_past_the_rate_limit_every_api_route_answers_a_documented_429(tmp_path: Path) -> None:
    with (
        StateDB.open(f"sqlite://{tmp_path / 'state.db'}") as db,
        _built(_users(db), tmp_path, rate=0.001, burst=2) as app,
        TestClient(app) as http,
    ):
        loaded = schemathesis.openapi.from_asgi("/openapi.json", app)
        for path, operations in app.openapi()["paths"].items():
            for op in operations.values():
                assert ("429" in op["responses"]) == path.startswith("/api/"), path
        zones = loaded["/api/v1/sites/{site}/zones"]["GET"].Case(path_parameters={"site": "main"})
        alerts = loaded["/api/v1/sites/{site}/alerts"]["GET"].Case(path_parameters={"site": "main"})
        login = loaded["/api/v1/auth/token"]["POST"].Case(
            body={"username": "ana", "password": PASSWORD},
            media_type="application/x-www-form-urlencoded",
        )
        statuses = []
        for case in (login, zones, zones, alerts, login):
            answer = _send(http, case, {})
            case.validate_response(answer, checks=CHECKS)  # Retry-After: an integer >= 1
            statuses.append(answer.status_code)
        assert statuses == [200, 200, 429, 429, 429]
        # Not under /api/: the health check and the pages are never limited.
        assert http.get("/healthz").status_code == 200


def test_without_a_limit_no_route_promises_a_429(tmp_path: Path) -> None:
    with (
        StateDB.open(f"sqlite://{tmp_path / 'state.db'}") as db,
        _built(_users(db), tmp_path, rate=0, burst=1) as app,
    ):
        for operations in app.openapi()["paths"].values():
            assert not any("429" in op["responses"] for op in operations.values())
