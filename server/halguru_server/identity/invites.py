"""Invitations for ``auth.registration: invite``: a single-use link to /auth/register that may fix the email and
sets the role (``halguru users invite``). Only the token's hash is stored (``auth_tokens``, purpose ``invite``).
An invitation bound to an email confirms that address when used, as whoever got the link holds it by mail.
"""

from __future__ import annotations

from urllib.parse import urlencode

from halguru.store.base import Store
from halguru_server.identity import accounts
from halguru_server.identity.roles import check_role

INVITE_TTL = 7 * 86400.0


def create_invite(store: Store, email: str | None, role: str = "user", ttl: float = INVITE_TTL) -> str:
    """A new invitation's token (shown once); AccountError for a bad email or role, or a taken email."""
    try:
        check_role(role)
    except ValueError as exc:
        raise accounts.AccountError(str(exc)) from None
    data = {"role": role}
    if email:
        data["email"] = accounts.check_email(email)
        if store.user_by_email(data["email"]) is not None:
            raise accounts.AccountError(f"a user with the email {data['email']} exists already")
    return accounts.issue_token(store, "invite", None, ttl, data)


def invite_link(base: str, token: str) -> str:
    """The link to send: this server's address (``auth.public_url``) + /auth/register with the token."""
    return f"{base.rstrip('/')}/auth/register?{urlencode({'invite': token})}"


def invite_command(email: str, role: str, days: float, url: str) -> None:
    """`halguru users invite`: print the link (stdout, for a script to mail) and what it grants (stderr)."""
    import typer

    from halguru.store import open_store
    from halguru_server.settings import load_settings

    base = url or load_settings().auth.public_url or "http://127.0.0.1:8000"
    token = create_invite(open_store(), email or None, role, days * 86400)
    typer.echo(invite_link(base, token))
    typer.echo(f"single use, for {email or 'anyone with the link'} as {role}, valid {days:g} days; it works while "
               "auth.registration is invite (or open)", err=True)
