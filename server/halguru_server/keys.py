"""API keys: created once and shown once, stored as a SHA-256 hash in the trace store (table api_keys).

Keys are 32 random bytes, so a fast hash is enough (no password stretching needed);
lookups by hash are a single indexed query per request.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from halguru import durations
from halguru.errors import HalguruError
from halguru.store.base import Store
from halguru.store.records import ApiKeyRecord
from halguru_server.identity import roles

MAX_NAME = 100
# Active keys one user may hold through POST /v1/keys: each is a row every key listing and revoke reads (20,000
# made 1.5-2.8 s of each revoke), and a key costs its maker nothing to make.
MAX_ACTIVE_PER_USER = 100
"""The longest key name (the API's and the CLI's): PostgreSQL refuses an index entry past ~2,700 bytes, so a
longer one was stored on SQLite and failed on PostgreSQL."""
ID_TRIES = 10
"""Ids drawn for one new key before giving up: with a million keys stored, 10 taken in a row is ~1 in 10^36."""


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    prefix: str
    agents: tuple[str, ...]  # empty: every agent
    created: float
    expires: float | None
    revoked: float | None
    last_used: float | None
    scope: str = "user"  # a user's key: "admin" all of its user's permissions, "user" at most a developer's;
    # a key without a user: its role (user, developer, operator, admin)
    user_id: str | None = None  # the user it belongs to; None: a key with a role of its own (its scope)

    def allows(self, agent: str) -> bool:
        return not self.agents or agent in self.agents

    @property
    def state(self) -> str:
        if self.revoked:
            return "revoked"
        if self.expires is not None and self.expires < time.time():
            return "expired"
        return "active"


def parse_duration(text: str) -> float:
    """A key's lifetime (30d, 12h): longer than 0, at most 100 years."""
    seconds = durations.parse_duration(text, "expires")
    if seconds <= 0:  # "0s" would otherwise mean "never expires"
        raise HalguruError(f"expires: {text!r}: a key's lifetime must be longer than 0 (e.g. 30d); "
                           "leave it out for a key that never expires")
    return seconds


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _key(r: ApiKeyRecord) -> ApiKey:
    return ApiKey(r["id"], r["name"], r["prefix"], tuple(r["agents"]), r["created"], r["expires"], r["revoked"],
                  r["last_used"], r["scope"], r["user_id"])


def create_key(store: Store, name: str, agents: list[str] | None = None,
               expires_in: float | None = None, scope: str = "user", *,
               user_id: str | None = None) -> tuple[ApiKey, str]:
    """A new key; the secret is returned here only and never stored. With ``user_id`` the key is that user's
    and carries at most their permissions (``scope="user"``: at most a developer's, ``"admin"``: all); without,
    ``scope`` is the key's own role (``user``: chat only; developer, operator, admin)."""
    if not name.strip():
        raise HalguruError("a key needs a name (who or what uses it)")
    if len(name) > MAX_NAME:
        raise HalguruError(f"a key's name is at most {MAX_NAME} characters, not {len(name)}")
    scopes = roles.KEY_SCOPES if user_id is not None else roles.ROLES
    if scope not in scopes:
        raise HalguruError(f"invalid key {'scope' if user_id else 'role'} {scope!r}: use {', '.join(scopes)}")
    if expires_in is not None and expires_in <= 0:
        raise HalguruError("a key's lifetime must be longer than 0; pass None for a key that never expires")
    expires = time.time() + expires_in if expires_in is not None else None
    for _ in range(ID_TRIES):  # a new id when one is taken: 32 bits collide now and then across many keys
        key_id = new_key_id()
        secret = f"hg_{key_id}_{secrets.token_urlsafe(32)}"
        record = store.create_key(key_id, name, secret[:11], _hash(secret), agents or [], expires, scope=scope,
                                  user_id=user_id)
        if record is not None:
            return _key(record), secret
    raise HalguruError(f"no free key id after {ID_TRIES} tries; try again")


def new_key_id() -> str:
    """A random key id: 8 hex digits, shown in listings and in the key's first characters (``hg_<id>_``)."""
    return secrets.token_hex(4)


def list_keys(store: Store, user_id: str | None = None) -> list[ApiKey]:
    """Every key, or the keys of ``user_id``."""
    return [_key(r) for r in store.list_keys(user_id)]


def revoke_key(store: Store, name_or_id: str) -> ApiKey:
    """Revoke the active key with this id, or the one active key with this name. A name that several active
    keys share is refused, naming their ids: revoking all of them at once would cut off more than asked."""
    active = [k for k in list_keys(store) if k.revoked is None]
    keys = [k for k in active if k.id == name_or_id] or [k for k in active if k.name == name_or_id]
    if not keys:
        raise HalguruError(f"no active key named {name_or_id!r}; see `halguru keys list`")
    if len(keys) > 1:
        raise HalguruError(f"{len(keys)} active keys are named {name_or_id!r} ({', '.join(k.id for k in keys)}); "
                           "revoke one by its id")
    store.revoke_keys([keys[0].id])
    return keys[0]


def verify_key(store: Store, secret: str) -> ApiKey | None:
    """The active key matching ``secret``, or None (unknown, revoked or expired); its ``last_used`` is
    recorded (at most once a minute, so a request costs no write)."""
    record = store.key_by_hash(_hash(secret))
    if record is None:
        return None
    key = _key(record)
    if key.state != "active":
        return None
    store.touch_key(key.id)
    return key
