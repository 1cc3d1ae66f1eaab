"""Anonymous web-chat sessions: a token the server issues, so anonymous conversations have an owner.

A token is ``s1.<id>.<mac>``: 18 random bytes and an HMAC-SHA256 of them under the server's session secret
(``HALGURU_SERVE_SESSION_SECRET``; when unset, one made once and kept in the store, so sessions outlive a
restart and every replica or worker on that store accepts them). A token signed under another secret (the
operator rotated it) is refused with 401 ``invalid_session``; the web chat then starts a new session.
Invariant: an ``anon:<id>`` owner is only ever taken from a token this server (or one sharing its secret)
signed; the id alone, as stored with the objects, cannot be turned back into a token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from halguru.store.base import Store

PREFIX = "s1"
STORED_SECRET = "chat_session_secret"  # its name in the store's server_secrets (when the operator sets none)


def _mac(secret: str, session_id: str) -> str:
    return hmac.new(secret.encode(), f"{PREFIX}.{session_id}".encode(), hashlib.sha256).hexdigest()[:32]


def issue(secret: str) -> str:
    """A new, unguessable session token."""
    session_id = secrets.token_urlsafe(18)
    return f"{PREFIX}.{session_id}.{_mac(secret, session_id)}"


def verify(secret: str, token: str) -> str | None:
    """The session id of a token this server signed, else None."""
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != PREFIX or not 16 <= len(parts[1]) <= 64:
        return None
    # bytes: compare_digest refuses str with non-ASCII characters (a header may carry any latin-1 byte)
    return parts[1] if hmac.compare_digest(parts[2].encode(), _mac(secret, parts[1]).encode()) else None


def stored_secret(store: Store) -> str:
    """The secret to sign with when ``session_secret`` is unset: made by the first process that asks and kept in
    the store (as the VAPID key is), so a restart, ``--workers`` and replicas sharing the store all agree."""
    return store.server_secret(STORED_SECRET, lambda: secrets.token_urlsafe(32))
