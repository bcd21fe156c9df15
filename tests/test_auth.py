"""Access control: password hashes, signed tokens, the users command, the token endpoint,
a role x endpoint grid over real routes, and the rate limit."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import jwt
import pytest
from fastapi import APIRouter, HTTPException
from pydantic import SecretStr

from stackpulse.kernel.auth import (
    AuthError,
    InvalidToken,
    Principal,
    TokenIssuer,
    authenticate,
    check_new_user,
    hash_password,
    resolve_secret,
    verify_password,
)
from stackpulse.kernel.settings import Settings, SettingsError
from stackpulse.kernel.statedb import StateDB
from stackpulse.runtime import auth_for
from stackpulse.services.occupancy.view import OccupancyView
from stackpulse.users import add_demo_login
from stackpulse.web.auth import (
    AuthService,
    Editor,
    EditorOfSite,
    ManagerOfSite,
    StaffOfSite,
)
from stackpulse.web.ratelimit import Buckets, RateLimit
from tests.support.app import app_for
from tests.support.layouts import ONE_OF_EACH

ROOT = Path(__file__).resolve().parent.parent
SECRET = "test-secret-" + "x" * 32
NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
LAYOUTS = [ONE_OF_EACH, ONE_OF_EACH.model_copy(update={"site": "law", "name": "Law"})]
PASSWORD = "correct horse battery"


# ---- pure parts ------------------------------------------------------------------------


def test_passwords_are_stored_as_argon2_hashes_only() -> None:
    hashed = hash_password(PASSWORD)
    assert hashed.startswith("$argon2id$") and PASSWORD not in hashed
    assert verify_password(PASSWORD, hashed)
    assert not verify_password(PASSWORD + "!", hashed)
    assert not verify_password(PASSWORD, "not-a-hash")
    assert hash_password(PASSWORD) != hashed  # salted
    with pytest.raises(AuthError, match="too short"):
        hash_password("short")


def test_new_users_are_checked() -> None:
    assert check_new_user("ana", "staff", ["main", "main", "law"]) == ("staff", ("main", "law"))
    assert check_new_user("boss", "manager", []) == ("manager", ())
    for username, role, sites, problem in [
        ("ana", "staff", [], "at least one --site"),
        ("boss", "manager", ["main"], "every site"),
        ("eve", "root", [], "unknown role"),
        ("bad name", "admin", [], "username"),
        ("ana", "staff", ["Main Site"], "site id"),
    ]:
        with pytest.raises(AuthError, match=problem):
            check_new_user(username, role, sites)


def test_a_token_carries_the_principal_until_it_expires() -> None:
    issuer = TokenIssuer(SECRET, timedelta(minutes=30))
    ana = Principal("ana", "staff", frozenset({"main"}))
    token = issuer.issue(ana, NOW)
    assert issuer.verify(token, NOW + timedelta(minutes=29)) == ana
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["scope"] == "alerts:write sites:read" and claims["sites"] == ["main"]
    with pytest.raises(InvalidToken, match="expired"):
        issuer.verify(token, NOW + timedelta(minutes=30))


def _tamper(token: str, **changes: object) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


def test_tampered_foreign_and_unsigned_tokens_are_refused() -> None:
    issuer = TokenIssuer(SECRET)
    token = issuer.issue(Principal("ana", "staff", frozenset({"main"})), NOW)
    claims = {"iss": "stackpulse", "sub": "ana", "role": "admin", "sites": [], "iat": 0}
    forged = [
        _tamper(token, role="admin"),
        _tamper(token, sites=["main", "law"]),
        TokenIssuer("another-secret-" + "y" * 32).issue(Principal("ana", "admin"), NOW),
        jwt.encode({**claims, "exp": 2**40}, "", algorithm="none"),
        jwt.encode({**claims, "exp": 2**40, "role": "root"}, SECRET, algorithm="HS256"),
        "not.a.token",
        "",
    ]
    for bad in forged:
        with pytest.raises(InvalidToken):
            issuer.verify(bad, NOW)


def test_the_signing_key_is_required_outside_development() -> None:
    assert resolve_secret(SECRET, development=False) == SECRET
    generated = resolve_secret("", development=True)
    assert len(generated) >= 32 and generated != resolve_secret("", development=True)
    with pytest.raises(AuthError, match="STACKPULSE_SECRET is not set"):
        resolve_secret("", development=False)
    with pytest.raises(AuthError, match="too short"):
        resolve_secret("short", development=True)


def test_the_runtime_refuses_a_public_api_without_a_secret(tmp_path: Path) -> None:
    with StateDB.open(f"sqlite://{tmp_path / 's.db'}") as db:
        for http in ("0.0.0.0:8000", "[::]:8000", "library.example:8000"):
            with pytest.raises(SettingsError, match="STACKPULSE_SECRET"):
                auth_for(Settings(http=http), db)
        for http in ("127.0.0.1:8000", "localhost:8000", "[::1]:8000"):
            auth_for(Settings(http=http), db)
        service, limit = auth_for(Settings(http="0.0.0.0:80", secret=SecretStr(SECRET)), db)
        assert service.tokens.secret == SECRET and limit.enabled
        with pytest.raises(SettingsError, match="STACKPULSE_RATE"):
            auth_for(Settings(rate_limit=-1), db)


# ---- the users command and the token endpoint ------------------------------------------


def stackpulse(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STACKPULSE_")}
    return subprocess.run(
        [sys.executable, "-m", "stackpulse", *args],
        cwd=ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_users_add_reads_the_password_from_stdin_and_keeps_only_its_hash(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    url = f"sqlite://{path}"
    added = stackpulse("users", "--db", url, "add", "ana", "--role", "staff", "--site", "main",
                       stdin=PASSWORD + "\n")  # fmt: skip
    assert added.returncode == 0, added.stderr
    with StateDB.open(url) as db:
        user = db.get_user("ana")
        assert user is not None and user.role == "staff" and user.sites == ("main",)
        assert verify_password(PASSWORD, user.password_hash)
        assert authenticate(db, "ana", PASSWORD) == Principal("ana", "staff", frozenset({"main"}))
        assert authenticate(db, "ana", "wrong password") is None
        assert authenticate(db, "nobody", PASSWORD) is None
    for leftover in tmp_path.iterdir():
        assert PASSWORD.encode() not in leftover.read_bytes()

    again = stackpulse("users", "--db", url, "add", "ana", "--role", "admin", stdin=PASSWORD)
    assert again.returncode == 2 and again.stderr.count("\n") == 1
    assert "already exists" in again.stderr
    empty = stackpulse("users", "--db", url, "add", "bob", "--role", "manager", stdin="")
    assert empty.returncode == 2 and "no password" in empty.stderr
    listed = stackpulse("users", "--db", url, "list")
    assert listed.stdout.splitlines() == ["ana\tstaff\tmain"]
    assert "$argon2" not in listed.stdout
    bad_db = stackpulse("users", "--db", "mysql://x/y", "list")
    assert bad_db.returncode == 2 and bad_db.stderr.startswith("stackpulse: --db (STACKPULSE_DB)")


USERS = {
    "staff-main": ("staff", ("main",)),
    "staff-law": ("staff", ("law",)),
    "manager": ("manager", ()),
    "admin": ("admin", ()),
}


@pytest.fixture(scope="module")
def user_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StateDB]:
    with StateDB.open(f"sqlite://{tmp_path_factory.mktemp('auth') / 'state.db'}") as db:
        hashed = hash_password(PASSWORD)  # argon2 is slow on purpose: hash once
        for name, (role, sites) in USERS.items():
            db.add_user(name, hashed, role, sites)
        yield db


def protected_router() -> APIRouter:
    """Stand-ins for the staff, manager and alert routes, guarded as those will be."""
    router = APIRouter(prefix="/api/v1")
    alert_sites = {"a-main": "main", "a-law": "law"}

    @router.get("/sites/{site}/staff-data")
    async def staff_data(site: str, who: StaffOfSite) -> dict[str, str]:
        return {"site": site, "user": who.username}

    @router.get("/sites/{site}/manager-data")
    async def manager_data(site: str, who: ManagerOfSite) -> dict[str, str]:
        return {"site": site}

    @router.post("/sites/{site}/change")
    async def change(site: str, who: EditorOfSite) -> dict[str, str]:
        return {"site": site}

    @router.post("/alerts/{alert_id}/ack")
    async def ack(alert_id: str, who: Editor) -> dict[str, str]:
        site = alert_sites.get(alert_id)
        if site is None or not who.can_see(site):
            raise HTTPException(404, f"no alert {alert_id!r}")
        return {"id": alert_id, "acked_by": who.username}

    return router


@pytest.fixture
async def app_client(user_db: StateDB) -> AsyncIterator[httpx.AsyncClient]:
    service = AuthService(user_db, TokenIssuer(SECRET), clock=lambda: NOW)
    app = app_for(LAYOUTS, OccupancyView(), routers=[protected_router()], auth=service)
    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


async def login(http: httpx.AsyncClient, username: str, password: str = PASSWORD) -> str:
    response = await http.post(
        "/api/v1/auth/token", data={"username": username, "password": password}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 3600
    token: str = body["access_token"]
    return token


async def test_the_token_endpoint_answers_401_to_wrong_credentials(
    app_client: httpx.AsyncClient,
) -> None:
    for form in (
        {"username": "staff-main", "password": "wrong password"},
        {"username": "nobody", "password": PASSWORD},
        {"username": "staff-main", "password": ""},
    ):
        response = await app_client.post("/api/v1/auth/token", data=form)
        assert response.status_code in (401, 422), response.text
        assert "access_token" not in response.text
        if response.status_code == 401:
            assert response.headers["www-authenticate"] == "Bearer"
    token = await login(app_client, "staff-main")
    me = await app_client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.json() == {
        "username": "staff-main",
        "role": "staff",
        "sites": ["main"],
        "all_sites": False,
        "scopes": ["alerts:write", "sites:read"],
    }


# Who gets what: 401 without a valid token, 403 for a wrong role or site, 404 for an alert
# id of another site (nothing about it is revealed), 200 otherwise.
ENDPOINTS = {
    "GET staff main": ("GET", "/api/v1/sites/main/staff-data"),
    "GET staff law": ("GET", "/api/v1/sites/law/staff-data"),
    "GET manager main": ("GET", "/api/v1/sites/main/manager-data"),
    "POST change main": ("POST", "/api/v1/sites/main/change"),
    "POST change law": ("POST", "/api/v1/sites/law/change"),
    "POST ack main alert": ("POST", "/api/v1/alerts/a-main/ack"),
    "POST ack law alert": ("POST", "/api/v1/alerts/a-law/ack"),
    "GET me": ("GET", "/api/v1/auth/me"),
    "GET public zones": ("GET", "/api/v1/sites/main/zones"),
}
GRID = {
    #              staff main, staff law, mgr main, chg main, chg law, ack main, ack law, me, public
    "anonymous": (401, 401, 401, 401, 401, 401, 401, 401, 200),
    "garbage": (401, 401, 401, 401, 401, 401, 401, 401, 200),
    "expired": (401, 401, 401, 401, 401, 401, 401, 401, 200),
    "forged": (401, 401, 401, 401, 401, 401, 401, 401, 200),
    "staff-main": (200, 403, 403, 200, 403, 200, 404, 200, 200),
    "staff-law": (403, 200, 403, 403, 200, 404, 200, 200, 200),
    "manager": (200, 200, 200, 403, 403, 403, 403, 200, 200),
    "admin": (200, 200, 200, 200, 200, 200, 200, 200, 200),
}


async def _token_for(http: httpx.AsyncClient, who: str) -> str | None:
    if who == "anonymous":
        return None
    if who == "garbage":
        return "garbage"
    if who == "expired":
        return TokenIssuer(SECRET).issue(Principal("admin", "admin"), NOW - timedelta(hours=2))
    if who == "forged":
        return _tamper(await login(http, "staff-main"), role="admin")
    return await login(http, who)


@pytest.mark.parametrize("who", list(GRID))
async def test_role_by_endpoint_grid(app_client: httpx.AsyncClient, who: str) -> None:
    token = await _token_for(app_client, who)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    got = {}
    for name, (method, path) in ENDPOINTS.items():
        response = await app_client.request(method, path, headers=headers)
        got[name] = response.status_code
        if response.status_code == 401:
            assert response.headers["www-authenticate"].startswith("Bearer")
        if response.status_code in (401, 403, 404):
            assert set(response.json()) == {"detail"}  # an error, never data
    assert got == dict(zip(ENDPOINTS, GRID[who], strict=True))


async def test_without_logins_configured_protected_routes_are_closed() -> None:
    app = app_for(LAYOUTS, OccupancyView(), routers=[protected_router()])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as http:
        assert (await http.get("/api/v1/sites/main/staff-data")).status_code == 503
        form = {"username": "admin", "password": PASSWORD}
        assert (await http.post("/api/v1/auth/token", data=form)).status_code == 503
        assert (await http.get("/api/v1/sites/main/zones")).status_code == 200


# ---- rate limit ------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_buckets_refill_at_the_rate_and_stay_bounded() -> None:
    clock = FakeClock()
    buckets = Buckets(RateLimit(rate=2.0, burst=3, max_clients=100), clock)
    assert [buckets.take("a") for _ in range(3)] == [0, 0, 0]
    assert buckets.take("a") == pytest.approx(0.5)
    assert buckets.take("b") == 0  # clients are apart
    clock.now += 0.5
    assert buckets.take("a") == 0
    for i in range(1000):
        buckets.take(f"client-{i}")
    assert len(buckets) == 100


async def test_public_endpoints_answer_429_past_the_limit() -> None:
    limit = RateLimit(rate=0.5, burst=3)
    app = app_for(LAYOUTS, OccupancyView(), rate_limit=limit)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as http:
        codes = [(await http.get("/api/v1/sites/main/zones")).status_code for _ in range(3)]
        assert codes == [200, 200, 200]
        limited = await http.get("/api/v1/sites")
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1
        assert (await http.get("/healthz")).status_code == 200  # only /api/ is limited
    other = httpx.ASGITransport(app, client=("192.0.2.7", 5000))
    async with httpx.AsyncClient(transport=other, base_url="http://t") as http:
        assert (await http.get("/api/v1/sites")).status_code == 200


def test_the_demo_login_works_once_per_throwaway_database(tmp_path: Path) -> None:
    with StateDB.open(f"sqlite://{tmp_path / 'demo.db'}") as db:
        line = add_demo_login(db)
        user, _, rest = line.partition(" / ")
        password = rest.split()[0]
        assert authenticate(db, user, password) == Principal("demo", "admin")
