"""`stackpulse users ...`: staff, manager and admin accounts in the state database."""

from __future__ import annotations

import argparse
import getpass
import secrets
import sys
from typing import TYPE_CHECKING, TextIO

from stackpulse.kernel.auth import ROLES, AuthError, check_new_user, hash_password
from stackpulse.kernel.settings import Settings

if TYPE_CHECKING:
    from stackpulse.kernel.statedb import StateDB


def add_users_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    users = sub.add_parser("users", help="add, list or remove staff and manager logins")
    users.add_argument("--db", help="state database URL, sqlite:///path.db or postgresql://...")
    actions = users.add_subparsers(dest="action", required=True)
    add = actions.add_parser(
        "add", help="add a user; the password is read from standard input, only its hash kept"
    )
    add.add_argument("username")
    add.add_argument("--role", required=True, choices=ROLES)
    add.add_argument(
        "--site", action="append", default=[], help="a site a staff user works at (repeatable)"
    )
    add.add_argument("--replace", action="store_true", help="overwrite an existing user")
    actions.add_parser("list", help="list users (names, roles, sites; never hashes)")
    remove = actions.add_parser("remove", help="remove a user")
    remove.add_argument("username")


def main(args: argparse.Namespace, stdin: TextIO | None = None) -> int:
    """Run a `users` action; one `stackpulse: ...` line and exit 2 on any problem."""
    from stackpulse.kernel.statedb import StateDB, StateDBError, UserExistsError

    settings = Settings(**({"db": args.db} if args.db else {}))
    try:
        with StateDB.open(settings.db) as db:
            return _act(db, args, stdin or sys.stdin)
    except UserExistsError as err:
        print(f"stackpulse: users add: {err}; --replace overwrites it", file=sys.stderr)
        return 2
    except StateDBError as err:
        print(f"stackpulse: --db (STACKPULSE_DB): {err}", file=sys.stderr)
        return 2
    except AuthError as err:
        print(f"stackpulse: users {args.action}: {err}", file=sys.stderr)
        return 2


def _act(db: StateDB, args: argparse.Namespace, stdin: TextIO) -> int:
    if args.action == "add":
        role, sites = check_new_user(args.username, args.role, args.site)
        password_hash = hash_password(read_password(stdin))
        db.add_user(args.username, password_hash, role, sites, replace=args.replace)
        where = f" at {', '.join(sites)}" if sites else " (every site)"
        print(f"user {args.username!r} stored as {role}{where}")
        return 0
    if args.action == "list":
        for user in db.list_users():
            print(f"{user.username}\t{user.role}\t{','.join(user.sites) or '*'}")
        return 0
    if not db.delete_user(args.username):
        raise AuthError(f"no user {args.username!r}")
    print(f"user {args.username!r} removed")
    return 0


def read_password(stdin: TextIO) -> str:
    """A prompt (twice) at a terminal; otherwise the first line of standard input."""
    if stdin.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            raise AuthError("the two passwords differ")
        return first
    line = stdin.readline()
    if not line:
        raise AuthError("no password on standard input")
    return line.removesuffix("\n").removesuffix("\r")


def add_demo_login(db: StateDB) -> str:
    """An admin `demo` with a random password, for a demo's own throwaway database."""
    password = secrets.token_urlsafe(12)
    db.add_user("demo", hash_password(password), "admin", replace=True)
    return f"demo / {password}  (admin; this run only)"
