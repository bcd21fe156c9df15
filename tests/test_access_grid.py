"""Every /api/v1 route x every kind of caller: refusals are 401/403/404 and carry no data.

The routes come from the app itself (`app.routes`), built as `stackpulse run api` builds
it, so a route added later is in the grid without anyone adding it here.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import fastapi.routing
import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import SecretStr
from sse_starlette.sse import EventSourceResponse
from starlette.routing import BaseRoute

from stackpulse.kernel.auth import Principal, check_new_user, hash_password
from stackpulse.kernel.settings import Settings
from stackpulse.kernel.statedb import StateDB
from stackpulse.kernel.store import open_store
from stackpulse.kernel.store.base import SeriesStore
from stackpulse.runtime import auth_for
from stackpulse.services.alerts.lifecycle import AlertBook
from stackpulse.services.alerts.model import Observation, Severity
from stackpulse.services.alerts.settings import AlertSettings
from stackpulse.services.alerts.store import AlertStore
from stackpulse.services.occupancy.view import OccupancyView
from stackpulse.web.auth import AuthService
from tests.support.app import app_for
from tests.support.browser import serve_app
from tests.test_api import LAYOUTS, ROOT, initial_state
from tests.test_inventory_api import fed_view

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SITE_A, SITE_B = "main", "law"
PASSWORD = "grid password 42"
SECRET = "grid-secret-" + "g" * 40
USERS = {  # caller -> (username, role, sites), stored as `stackpulse users add` stores them
    "staff_a": ("ana", "staff", [SITE_A]),
    "staff_b": ("lee", "staff", [SITE_B]),
    "manager": ("max", "manager", []),
    "admin": ("root", "admin", []),
}
BAD_CALLERS = ("no token", "garbage token", "expired token")
CALLERS = (*BAD_CALLERS, *USERS)

# protocol.md section 5 "anyone" (and the token endpoint itself, and the site list).
PUBLIC = {
    ("GET", "/api/v1/sites"),
    ("GET", "/api/v1/sites/{site}/zones"),
    ("GET", "/api/v1/sites/{site}/seats"),
    ("GET", "/api/v1/sites/{site}/stream"),
    ("GET", "/api/v1/sites/{site}/forecast"),
    ("POST", "/api/v1/auth/token"),
}

# What each signed-in caller gets from a protected route addressing site A (or an alert of
# site A): "ok" is any 2xx, "refused" 403 or 404, "any" 2xx or a refusal. Staff of B on an
# id-addressed route: 404, the id is not theirs.
Want = Literal["ok", "refused", "any", 401, 403, 404]
ANY_STAFF: dict[str, Want] = {"staff_a": "ok", "staff_b": "ok", "manager": "ok", "admin": "ok"}
SITE_READ: dict[str, Want] = {**ANY_STAFF, "staff_b": 403}
ID_READ: dict[str, Want] = {**ANY_STAFF, "staff_b": 404}
ID_WRITE: dict[str, Want] = {**ID_READ, "manager": 403}
MANAGERS: dict[str, Want] = {**ANY_STAFF, "staff_a": 403, "staff_b": 403}
EXPECTED: dict[tuple[str, str], dict[str, Want]] = {
    ("GET", "/api/v1/auth/me"): ANY_STAFF,
    ("GET", "/api/v1/sites/{site}/alerts"): SITE_READ,
    ("GET", "/api/v1/sites/{site}/alerts/stream"): SITE_READ,
    ("GET", "/api/v1/alerts/{alert_id}"): ID_READ,
    ("GET", "/api/v1/alerts/{alert_id}/history"): ID_READ,
    ("POST", "/api/v1/alerts/{alert_id}/ack"): ID_WRITE,
    ("POST", "/api/v1/alerts/{alert_id}/clear"): ID_WRITE,
    ("GET", "/api/v1/sites/{site}/items/misplaced"): SITE_READ,
    ("GET", "/api/v1/sites/{site}/items/missing"): SITE_READ,
    ("GET", "/api/v1/sites/{site}/items/reshelving"): SITE_READ,
    ("GET", "/api/v1/sites/{site}/tasks"): SITE_READ,
    ("GET", "/api/v1/sites/{site}/inventory/stream"): SITE_READ,
    ("GET", "/api/v1/sites/{site}/demand"): MANAGERS,
    ("GET", "/api/v1/sites/{site}/demand/classes"): MANAGERS,
    ("GET", "/api/v1/sites/{site}/reports/daily"): MANAGERS,
    ("GET", "/api/v1/sites/{site}/reports/daily.csv"): MANAGERS,
    ("GET", "/api/v1/sites/{site}/reports/daily.html"): MANAGERS,
    ("GET", "/api/v1/sites/{site}/reports/floors"): MANAGERS,
    ("GET", "/api/v1/sites/{site}/reports/devices"): MANAGERS,
}
# A protected route not in EXPECTED yet: refused without a valid token, refused to staff
# of another site (protocol.md section 5), open to an admin, and no data in a refusal.
UNLISTED: dict[str, Want] = {"staff_a": "any", "staff_b": "refused", "manager": "any"}
UNLISTED |= {"admin": "ok"}


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # as declared, e.g. /api/v1/alerts/{alert_id}/ack
    stream: bool  # Server-Sent Events: only the status and headers are read

    @property
    def key(self) -> tuple[str, str]:
        return (self.method, self.path)

    @property
    def params(self) -> set[str]:
        return set(re.findall(r"{(\w+)}", self.path))


def _routes(app: FastAPI) -> Iterator[tuple[str | None, set[str] | None, BaseRoute]]:
    """(path, methods, route) of each route, included routers' routes at their full path."""
    walk = getattr(fastapi.routing, "iter_route_contexts", None)
    if walk is None:  # FastAPI before included routers were kept lazily: already flat
        for route in app.routes:
            yield getattr(route, "path", None), getattr(route, "methods", None), route
        return
    for context in walk(app.routes):
        yield context.path, context.methods, context.original_route


def api_endpoints(app: FastAPI) -> list[Endpoint]:
    """Every method of every route under /api/v1, flattened from `app.routes`."""
    found: list[Endpoint] = []
    for path, methods, route in _routes(app):
        if not isinstance(route, APIRoute) or path is None or not path.startswith("/api/v1/"):
            continue
        response = route.response_class
        stream = isinstance(response, type) and issubclass(response, EventSourceResponse)
        for method in sorted(methods or ()):
            if method != "HEAD":
                found.append(Endpoint(method, path, stream))
    return found


def _alert(book: AlertBook, site: str) -> str:
    """Open a new alert on `site`, so each ack or clear in the grid has one of its own."""
    subject = f"seat-{next(_serial)}"
    obs = Observation(
        rule="device_offline",
        site=site,
        subject=subject,
        active=True,
        at=datetime.now(UTC) - timedelta(minutes=1),
        severity=Severity.WARNING,
        message=f"{subject}: offline",
    )
    [opened] = book.apply(obs)
    return opened.alert.id


_serial = itertools.count(1)


def _occupancy() -> OccupancyView:
    view = OccupancyView(ROOT)
    for topic, payload in initial_state(ROOT):
        view.apply(topic, payload)
    return view


def build(db: StateDB, store: SeriesStore | None) -> tuple[FastAPI, AuthService, AlertBook]:
    """The app as stackpulse.runtime._start_api composes it, over one state database."""
    settings = Settings(secret=SecretStr(SECRET), rate_limit=100_000.0, rate_burst=100_000)
    auth, limit = auth_for(settings, db)
    book = AlertBook(AlertStore(db), AlertSettings())
    app = app_for(
        LAYOUTS,
        _occupancy(),
        alerts=book,
        inventory=fed_view(),
        auth=auth,
        rate_limit=limit,
        store=store,
        ping_seconds=5,
    )
    return app, auth, book


@dataclass
class Grid:
    http: httpx.AsyncClient
    auth: AuthService
    book: AlertBook
    endpoints: list[Endpoint]
    tokens: dict[str, str]

    def headers(self, caller: str) -> dict[str, str]:
        if caller == "no token":
            return {}
        if caller == "garbage token":
            return {"Authorization": "Bearer not.a-real.token"}
        if caller == "expired token":  # signed with the right key, two hours ago
            username, role, sites = USERS["admin"]
            old = datetime.now(UTC) - timedelta(hours=2)
            principal = Principal(username, check_new_user(username, role, sites)[0])
            return {"Authorization": f"Bearer {self.auth.tokens.issue(principal, old)}"}
        return {"Authorization": f"Bearer {self.tokens[caller]}"}

    async def call(self, ep: Endpoint, caller: str, site: str = SITE_A) -> httpx.Response:
        values: dict[str, str] = {}
        for name in ep.params:
            if name == "site":
                values[name] = site
            elif name == "alert_id":
                values[name] = await asyncio.to_thread(_alert, self.book, site)
            else:
                raise AssertionError(f"{ep.method} {ep.path}: no value for {{{name}}} in the grid")
        url = ep.path.format(**values)
        headers = self.headers(caller)
        if ep.key == ("POST", "/api/v1/auth/token"):
            username = USERS["staff_a"][0]
            form = {"username": username, "password": PASSWORD}
            return await self.http.post(url, data=form, headers=headers)
        if ep.stream:
            async with self.http.stream(ep.method, url, headers=headers) as answer:
                if not answer.is_success:
                    await answer.aread()
                return answer
        return await self.http.request(ep.method, url, headers=headers)


@pytest.fixture
async def grid(tmp_path: Path, influx_db: str) -> AsyncIterator[Grid]:
    db = StateDB.open(f"sqlite:///{tmp_path / 'state.db'}")
    for username, role, sites in USERS.values():
        checked_role, checked_sites = check_new_user(username, role, sites)
        db.add_user(username, hash_password(PASSWORD), checked_role, checked_sites)
    store = open_store(influx_db)
    app, auth, book = build(db, store)
    try:
        async with (
            serve_app(app) as base,
            httpx.AsyncClient(base_url=base, timeout=10) as http,
        ):
            tokens = {}
            for caller, (username, _, _) in USERS.items():
                answer = await http.post(
                    "/api/v1/auth/token", data={"username": username, "password": PASSWORD}
                )
                assert answer.status_code == 200, answer.text
                tokens[caller] = answer.json()["access_token"]
            yield Grid(http, auth, book, api_endpoints(app), tokens)
    finally:
        await store.close()
        db.close()


def _text(answer: httpx.Response) -> str:
    """The start of the body, for messages; an open event stream's was never read."""
    try:
        return answer.text[:120]
    except httpx.ResponseNotRead:
        return "<event stream>"


def _refusal_problem(answer: httpx.Response) -> str | None:
    """Why a 401/403/404 answer is not a bare refusal, or None when it is one."""
    try:
        body = answer.json()
    except ValueError:
        return f"a non-JSON body: {_text(answer)!r}"
    if not (isinstance(body, dict) and set(body) == {"detail"} and isinstance(body["detail"], str)):
        return f"a body with more than a detail: {_text(answer)!r}"
    challenge = answer.headers.get("www-authenticate", "")
    if answer.status_code == 401 and not challenge.lower().startswith("bearer"):
        return "a 401 without WWW-Authenticate: Bearer"
    return None


def _verdict(answer: httpx.Response, want: Want) -> str | None:
    """What is wrong with `answer` for a caller who should get `want`; None if nothing."""
    code = answer.status_code
    if code in (401, 403, 404):
        problem = _refusal_problem(answer)
        if problem is not None:
            return f"{code} with {problem}"
    if want == "any":
        return None if code in (403, 404) or 200 <= code < 300 else f"got {code}"
    if want == "refused":
        return None if code in (403, 404) else f"got {code}, wanted 403 or 404"
    if want == "ok":
        return None if 200 <= code < 300 else f"got {code}, wanted 2xx: {_text(answer)!r}"
    return None if code == want else f"got {code}, wanted {want}: {_text(answer)!r}"


def _cells(grid: Grid) -> Iterator[tuple[Endpoint, str, str, Want]]:
    """(endpoint, caller, site in the path, what the caller should get)."""
    for ep in grid.endpoints:
        if ep.key in PUBLIC:
            for caller in CALLERS:
                yield ep, caller, SITE_A, "ok"
            continue
        rules = EXPECTED.get(ep.key, UNLISTED)
        if rules is UNLISTED and not ep.params & {"site", "alert_id"}:
            rules = {**UNLISTED, "staff_b": "any"}  # nothing of a site's in its address
        for caller in CALLERS:
            if caller in BAD_CALLERS:
                yield ep, caller, SITE_A, 401
            else:
                yield ep, caller, SITE_A, rules[caller]
        # Staff of B do get their own site: the refusal above is about the site, not them.
        if "site" in ep.params and rules is SITE_READ:
            yield ep, "staff_b", SITE_B, "ok"
            yield ep, "staff_a", SITE_B, 403
        if "alert_id" in ep.params and rules in (ID_READ, ID_WRITE):
            yield ep, "staff_b", SITE_B, "ok"
            yield ep, "staff_a", SITE_B, 404


def test_the_grid_enumerates_the_routes_it_is_meant_to_guard() -> None:
    """A broken enumeration (an empty or partial list) must fail, not pass vacuously."""
    with StateDB.open("sqlite://") as db:
        app, _, _ = build(db, None)
        endpoints = api_endpoints(app)
    keys = {ep.key for ep in endpoints}
    protected = keys - PUBLIC
    assert keys >= PUBLIC, f"public routes missing from the app: {PUBLIC - keys}"
    assert protected, "no protected /api/v1 route found"
    assert set(EXPECTED) <= protected, f"listed but not in the app: {set(EXPECTED) - protected}"
    # A new route is in the grid at once (as UNLISTED); say who may call it to finish it.
    assert protected <= set(EXPECTED), f"protected, no roles listed: {protected - set(EXPECTED)}"
    for must in (
        ("GET", "/api/v1/sites/{site}/items/misplaced"),  # staff
        ("GET", "/api/v1/sites/{site}/demand"),  # manager
        ("GET", "/api/v1/sites/{site}/reports/daily"),  # manager
        ("GET", "/api/v1/sites/{site}/alerts"),  # alerts
        ("POST", "/api/v1/alerts/{alert_id}/ack"),
    ):
        assert must in protected
    streams = {ep.path for ep in endpoints if ep.stream}
    assert streams == {
        "/api/v1/sites/{site}/stream",
        "/api/v1/sites/{site}/alerts/stream",
        "/api/v1/sites/{site}/inventory/stream",
    }


async def test_every_api_route_answers_each_caller_as_its_role_and_site_allow(
    grid: Grid,
) -> None:
    wrong: list[str] = []
    calls = 0
    for ep, caller, site, want in _cells(grid):
        answer = await grid.call(ep, caller, site)
        calls += 1
        problem = _verdict(answer, want)
        if problem is not None:
            wrong.append(f"{ep.method} {ep.path} [{site}] as {caller}: {problem}")
    assert not wrong, "\n".join(wrong)
    assert calls >= len(grid.endpoints) * len(CALLERS)
