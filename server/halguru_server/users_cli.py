"""What `halguru users` does: bootstrap and manage serve mode's people from the server's shell (the first admin
of a fresh server has no browser session to do it with). A thin layer over ``identity.accounts``; the plugin
module keeps only the argument parsing."""

from __future__ import annotations

import datetime as dt
import sys
import time

import typer

from halguru import audit
from halguru.errors import HalguruError
from halguru.printable import printable
from halguru.store import open_store
from halguru.store.records import UserRecord
from halguru_server.identity import accounts
from halguru_server.identity.roles import check_role


def _interactive() -> bool:
    """Whether standard input is a terminal a hidden prompt can read (a seam for tests: CliRunner's is not)."""
    return sys.stdin.isatty()


def _password(password_stdin: bool) -> str:
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise HalguruError("--password-stdin: no password on standard input")
        return password
    if not _interactive():  # getpass would warn (GetPassWarning), echo, and abort at the confirmation
        raise HalguruError("no terminal to ask for a password: pipe it in with --password-stdin (one line), "
                           "or pass --no-password")
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))


def create(email: str, role: str, name: str, password_stdin: bool, no_password: bool) -> None:
    try:
        check_role(role)  # every check before asking for a password that would be thrown away
    except ValueError as exc:
        raise HalguruError(str(exc)) from None
    store = open_store()
    accounts.check_email(email)
    if store.user_by_email(email) is not None:
        raise HalguruError(f"a user with the email {email.strip().lower()} exists already")
    password = None if no_password else _password(password_stdin)
    user = accounts.create_user(store, email, role=role, name=name, password=password, email_verified=True)
    audit.record(store, None, "user.create", user["id"], {"email": user["email"], "role": user["role"]})
    typer.echo(f"user {user['id']} ({user['email']}) created with role {user['role']}"
               + ("" if password else "; no password: they sign in with OIDC (or set one via a reset link until "
                                          "an OIDC sign-in links the account)"),
               err=True)


def _when(ts: float | None) -> str:
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M") if ts else "never"


def _state(user: UserRecord) -> str:
    if user["disabled"]:
        return "disabled"
    if user["locked_until"] and user["locked_until"] > time.time():
        return "locked"
    return "active"


def show(json_output: bool = False) -> None:
    users = accounts.list_users(open_store())
    if json_output:
        import json

        secret = ("password_hash", "totp_secret", "totp_last")  # never printed
        typer.echo(json.dumps([{**{k: v for k, v in u.items() if k not in secret}, "state": _state(u)}
                               for u in users], indent=2, ensure_ascii=False))
        return
    if not users:
        typer.echo("no users; create the first admin with `halguru users create EMAIL --role admin`")
        return
    typer.echo(f"{'ID':<22}{'EMAIL':<32}{'ROLE':<11}{'2FA':<5}{'LAST SIGN-IN':<18}STATE")
    for u in users:
        typer.echo(printable(f"{u['id']:<22}{(u['email'] or '-'):<32}{u['role']:<11}"
                             f"{'on' if u['totp_enabled'] else 'off':<5}{_when(u['last_login']):<18}{_state(u)}"))


def set_role(user: str, role: str) -> None:
    changed = accounts.set_role(open_store(), user, role)
    audit.record(open_store(), None, "user.role", changed["id"], {"role": role})
    typer.echo(f"{changed['email'] or changed['id']} is now {role}")


def disable(user: str, enable: bool) -> None:
    changed = accounts.disable_user(open_store(), user, disabled=not enable)
    action = "user.enable" if enable else "user.disable"
    audit.record(open_store(), None, action, changed["id"], {"disabled": not enable})
    what = "enabled" if enable else "disabled (signed out everywhere; their keys stop working)"
    typer.echo(f"{changed['email'] or changed['id']} {what}")


def unlock(user: str) -> None:
    changed = accounts.unlock(open_store(), user)
    audit.record(open_store(), None, "user.unlock", changed["id"])
    typer.echo(f"{changed['email'] or changed['id']} unlocked: their next sign-in is checked as usual")


def reset_2fa(user: str) -> None:
    changed = accounts.reset_2fa(open_store(), user)
    audit.record(open_store(), None, "user.reset_2fa", changed["id"])
    typer.echo(f"two-factor sign-in of {changed['email'] or changed['id']} removed (authenticator and recovery "
               "codes); they are signed out and enrol again at their next sign-in if their role requires it")
