"""Who may do what: roles, password hashes and signed bearer tokens (no web framework here).

Roles (protocol.md section 5):
  staff   - the staff endpoints of the sites the user is assigned to; may ack/clear alerts there
  manager - every site, read only: the staff endpoints' reads and the manager endpoints
  admin   - every site, everything
Students need no account: public endpoints take no token.
"""

from __future__ import annotations

import functools
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal, get_args

import jwt
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from stackpulse.kernel.topics import SITE_RE

if TYPE_CHECKING:  # only the types: the database's driver stays unloaded in processes without it
    from stackpulse.kernel.statedb import StateDB, UserRecord

Role = Literal["staff", "manager", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)

# Scopes a token carries; routes ask for a role and, for changes, a scope.
READ = "sites:read"  # the staff endpoints' reads (misplaced, missing, alerts)
WRITE = "alerts:write"  # ack and clear alerts
DEMAND = "demand:read"  # the manager endpoints
USERS = "users:admin"
ROLE_SCOPES: dict[Role, frozenset[str]] = {
    "staff": frozenset({READ, WRITE}),
    "manager": frozenset({READ, DEMAND}),
    "admin": frozenset({READ, WRITE, DEMAND, USERS}),
}

USERNAME_RE = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
MIN_PASSWORD = 8
MIN_SECRET = 32  # bytes of an HS256 key; shorter ones are guessable offline from one token
ALGORITHM = "HS256"
ISSUER = "stackpulse"
DEFAULT_TOKEN_TTL = timedelta(hours=1)

_hasher = PasswordHash((Argon2Hasher(),))


@functools.cache
def _dummy_hash() -> str:
    """Checked against when the user does not exist, so a miss costs as long as a wrong
    password. Made on first use: an argon2 hash takes tens of MB for a moment, which
    every process importing this module (the gateway too) paid at import."""
    return _hasher.hash(secrets.token_urlsafe(16))


class AuthError(ValueError):
    """A user, password or secret that cannot be used; the message says why."""


class InvalidToken(Exception):
    """A bearer token that is missing, malformed, tampered with or expired."""


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated user; `sites` matters for staff only (managers and admins see all)."""

    username: str
    role: Role
    sites: frozenset[str] = frozenset()

    @property
    def scopes(self) -> frozenset[str]:
        return ROLE_SCOPES[self.role]

    @property
    def all_sites(self) -> bool:
        return self.role != "staff"

    def can_see(self, site: str) -> bool:
        """Whether this user may read (and, by scope, change) what belongs to `site`."""
        return self.all_sites or site in self.sites


def parse_role(value: str) -> Role:
    for role in ROLES:
        if value == role:
            return role
    raise AuthError(f"unknown role {value!r}; one of {', '.join(ROLES)}")


def check_new_user(username: str, role: str, sites: Iterable[str]) -> tuple[Role, tuple[str, ...]]:
    """Validate what `users add` is given; staff need at least one site, others none."""
    if not USERNAME_RE.fullmatch(username):
        raise AuthError(f"username {username!r}: use 1-64 of letters, digits and _.@-")
    checked = parse_role(role)
    site_list = tuple(dict.fromkeys(sites))
    for site in site_list:
        if not SITE_RE.fullmatch(site):
            raise AuthError(f"site {site!r}: a site id is 1-32 of a-z, 0-9 and -")
    if checked == "staff" and not site_list:
        raise AuthError("a staff user needs at least one --site")
    if checked != "staff" and site_list:
        raise AuthError(f"a {checked} sees every site; --site is for staff users only")
    return checked, site_list


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise AuthError(f"the password is too short: at least {MIN_PASSWORD} characters")
    return _hasher.hash(password)


def verify_password(password: str, password_hash: str) -> bool:
    try:
        return _hasher.verify(password, password_hash)
    except Exception:  # a malformed or foreign hash in the database is a failed login
        return False


def principal_of(user: UserRecord) -> Principal:
    return Principal(user.username, parse_role(user.role), frozenset(user.sites))


def authenticate(db: StateDB, username: str, password: str) -> Principal | None:
    """The user if the password matches its stored hash; None otherwise (blocking: argon2)."""
    user = db.get_user(username) if USERNAME_RE.fullmatch(username) else None
    if user is None:
        verify_password(password, _dummy_hash())
        return None
    if not verify_password(password, user.password_hash):
        return None
    try:
        return principal_of(user)
    except AuthError:  # a role this version does not know: no access
        return None


def resolve_secret(secret: str, *, development: bool) -> str:
    """The token signing key: the one given, or a random one per run in development."""
    if secret:
        if len(secret.encode()) < MIN_SECRET:
            raise AuthError(f"STACKPULSE_SECRET is too short: at least {MIN_SECRET} bytes")
        return secret
    if development:
        return secrets.token_urlsafe(MIN_SECRET)
    raise AuthError(
        "STACKPULSE_SECRET is not set: an API listening beyond loopback needs a token "
        f"signing key of at least {MIN_SECRET} random bytes, e.g. from "
        "`python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`"
    )


@dataclass(frozen=True, slots=True)
class TokenIssuer:
    """Signs and checks HS256 bearer tokens carrying the user's role, sites and scopes."""

    secret: str
    ttl: timedelta = DEFAULT_TOKEN_TTL

    def issue(self, who: Principal, now: datetime) -> str:
        issued = int(now.timestamp())
        claims = {
            "iss": ISSUER,
            "sub": who.username,
            "role": who.role,
            "sites": sorted(who.sites),
            "scope": " ".join(sorted(who.scopes)),
            "iat": issued,
            "exp": issued + int(self.ttl.total_seconds()),
        }
        return jwt.encode(claims, self.secret, algorithm=ALGORITHM)

    def verify(self, token: str, now: datetime) -> Principal:
        """The principal a valid token names; InvalidToken for anything else."""
        try:
            claims = jwt.decode(
                token,
                self.secret,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                # Expiry is checked below against `now`, so tests need no sleeping.
                options={"verify_exp": False, "require": ["exp", "iat", "sub", "iss"]},
            )
        except jwt.InvalidTokenError as err:
            raise InvalidToken(str(err)) from None
        exp = claims["exp"]
        if not isinstance(exp, int | float) or exp <= now.timestamp():
            raise InvalidToken("the token has expired")
        return _principal_from(claims)


def _principal_from(claims: dict[str, object]) -> Principal:
    username, role, sites = claims.get("sub"), claims.get("role"), claims.get("sites")
    if not isinstance(username, str) or not isinstance(role, str):
        raise InvalidToken("the token names no user or role")
    if not isinstance(sites, list) or not all(isinstance(s, str) for s in sites):
        raise InvalidToken("the token's sites are not a list of site ids")
    try:
        return Principal(username, parse_role(role), frozenset(sites))
    except AuthError as err:
        raise InvalidToken(str(err)) from None
