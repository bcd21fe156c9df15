"""Logins and bearer-token checks for the HTTP API: the token endpoint and route dependencies.

A router protects a route by asking for a principal:

    @router.get("/sites/{site}/alerts")
    async def alerts(site: str, who: StaffOfSite) -> list[Alert]: ...

`require(*roles)` checks the token and the role; `require_site(*roles)` also checks that the
user may see the route's `{site}`. Missing or bad token: 401 with `WWW-Authenticate: Bearer`;
wrong role, scope or site: 403. Routes addressed by id (`/alerts/{id}/ack`) take `require`
and answer 404 when `not who.can_see(alert.site)`, so ids of other sites reveal nothing.
"""

# No `from __future__ import annotations`: FastAPI reads the dependencies' annotations at
# run time, and those inside require() name its local variables.
import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.security import OAuth2PasswordBearer, OAuth2PasswordRequestForm
from pydantic import BaseModel

from stackpulse.kernel.auth import (
    DEMAND,
    READ,
    ROLES,
    USERS,
    WRITE,
    InvalidToken,
    Principal,
    Role,
    TokenIssuer,
    authenticate,
)
from stackpulse.kernel.statedb import StateDB

TOKEN_URL = "/api/v1/auth/token"

bearer = OAuth2PasswordBearer(
    tokenUrl=TOKEN_URL,
    auto_error=False,
    scopes={
        READ: "read the staff data of your sites",
        WRITE: "acknowledge and clear alerts of your sites",
        DEMAND: "read demand rankings",
        USERS: "manage users",
    },
)


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class AuthService:
    """What the token endpoint and the dependencies need; set on `app.state.auth`."""

    db: StateDB
    tokens: TokenIssuer
    clock: Callable[[], datetime] = field(default=_utcnow)

    async def login(self, username: str, password: str) -> Principal | None:
        # The database read and argon2 both block; neither may stall the event loop.
        return await asyncio.to_thread(authenticate, self.db, username, password)


class Token(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int


class Me(BaseModel):
    username: str
    role: Role
    sites: list[str]
    all_sites: bool
    scopes: list[str]


class ErrorDetail(BaseModel):
    detail: str


UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorDetail, "description": "Logins are not configured on this server"}
}


def _unauthorized(detail: str, error: str | None = None) -> HTTPException:
    challenge = "Bearer" if error is None else f'Bearer error="{error}"'
    return HTTPException(401, detail, headers={"WWW-Authenticate": challenge})


def _service(request: Request) -> AuthService:
    service = getattr(request.app.state, "auth", None)
    if not isinstance(service, AuthService):
        raise HTTPException(503, "logins are not configured on this server")
    return service


async def current_principal(
    request: Request, token: Annotated[str | None, Depends(bearer)]
) -> Principal:
    """The user the request's bearer token names; 401 without a valid one."""
    service = _service(request)
    if not token:
        raise _unauthorized("not authenticated: send Authorization: Bearer <token>")
    try:
        return service.tokens.verify(token, service.clock())
    except InvalidToken as err:
        raise _unauthorized(f"invalid token: {err}", "invalid_token") from None


def require(*roles: Role, scope: str | None = None) -> Callable[..., Awaitable[Principal]]:
    """A dependency admitting the given roles (and, if named, only tokens with `scope`)."""
    unknown = set(roles) - set(ROLES)
    if not roles or unknown:
        raise ValueError(f"require() needs roles among {ROLES}, got {roles}")

    async def dependency(who: Annotated[Principal, Depends(current_principal)]) -> Principal:
        if who.role not in roles:
            raise HTTPException(403, f"a {who.role} may not do this")
        if scope is not None and scope not in who.scopes:
            raise HTTPException(403, f"needs the {scope} scope")
        return who

    return dependency


def require_site(*roles: Role, scope: str | None = None) -> Callable[..., Awaitable[Principal]]:
    """Like `require`, and the user must be assigned to the route's `{site}` path parameter."""
    role_check = require(*roles, scope=scope)

    async def dependency(
        request: Request, who: Annotated[Principal, Depends(role_check)]
    ) -> Principal:
        site = request.path_params.get("site")
        if not isinstance(site, str):
            raise RuntimeError(f"require_site on {request.url.path}: the route has no {{site}}")
        if not who.can_see(site):
            raise HTTPException(403, f"{who.username} is not assigned to site {site!r}")
        return who

    return dependency


# The aliases routers use; each is one dependency, so FastAPI checks it once per request.
AnyStaff = Annotated[Principal, Depends(require("staff", "manager", "admin"))]
StaffOfSite = Annotated[Principal, Depends(require_site("staff", "manager", "admin"))]
EditorOfSite = Annotated[Principal, Depends(require_site("staff", "admin", scope=WRITE))]
Editor = Annotated[Principal, Depends(require("staff", "admin", scope=WRITE))]
ManagerOfSite = Annotated[Principal, Depends(require_site("manager", "admin"))]
Admin = Annotated[Principal, Depends(require("admin"))]


def auth_router() -> APIRouter:
    """`POST /api/v1/auth/token` (OAuth2 password grant) and `GET /api/v1/auth/me`."""
    router = APIRouter(prefix="/api/v1/auth", tags=["auth"])

    @router.post(
        "/token",
        responses={
            401: {"model": ErrorDetail, "description": "Wrong username or password"},
            **UNAVAILABLE,
        },
    )
    async def token(
        request: Request, form: Annotated[OAuth2PasswordRequestForm, Depends()]
    ) -> Token:
        service = _service(request)
        who = await service.login(form.username, form.password)
        if who is None:
            raise _unauthorized("wrong username or password")
        return Token(
            access_token=service.tokens.issue(who, service.clock()),
            expires_in=int(service.tokens.ttl.total_seconds()),
        )

    @router.get(
        "/me",
        responses={
            401: {"model": ErrorDetail, "description": "No or a bad bearer token"},
            **UNAVAILABLE,
        },
    )
    async def me(who: AnyStaff) -> Me:
        return Me(
            username=who.username,
            role=who.role,
            sites=sorted(who.sites),
            all_sites=who.all_sites,
            scopes=sorted(who.scopes),
        )

    return router
