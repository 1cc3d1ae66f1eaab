"""API keys: created once and shown once, stored as a SHA-256 hash in the trace store (table api_keys).

Keys are 32 random bytes, so a fast hash is enough (no password stretching needed);
lookups by hash are a single indexed query per request.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from halguru.errors import HalguruError
from halguru.store.sqlite import SQLiteStore

_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


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
    match = _DURATION.match(text.strip())
    if not match:
        raise HalguruError(f"invalid duration {text!r}: use a number and s, m, h, d or w (e.g. 30d)")
    return int(match.group(1)) * _UNITS[match.group(2)]


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _row(r: dict[str, Any]) -> ApiKey:
    return ApiKey(r["id"], r["name"], r["prefix"], tuple(json.loads(r["agents"])), r["created"], r["expires"],
                  r["revoked"], r["last_used"])


def create_key(store: SQLiteStore, name: str, agents: list[str] | None = None,
               expires_in: float | None = None) -> tuple[ApiKey, str]:
    """A new key; the secret is returned here only and never stored."""
    if not name.strip():
        raise HalguruError("a key needs a name (who or what uses it)")
    key_id = secrets.token_hex(4)
    secret = f"hg_{key_id}_{secrets.token_urlsafe(32)}"
    now = time.time()
    expires = now + expires_in if expires_in else None
    with store.write() as conn:
        conn.execute("INSERT INTO api_keys (id, name, prefix, hash, agents, created, expires) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?)",
                     (key_id, name, secret[:11], _hash(secret), json.dumps(agents or []), now, expires))
    return ApiKey(key_id, name, secret[:11], tuple(agents or []), now, expires, None, None), secret


def list_keys(store: SQLiteStore) -> list[ApiKey]:
    return [_row(r) for r in store.db.query("SELECT * FROM api_keys ORDER BY created")]


def revoke_key(store: SQLiteStore, name_or_id: str) -> list[ApiKey]:
    """Revoke the key with this id, or every active key with this name."""
    keys = [k for k in list_keys(store) if k.revoked is None and name_or_id in (k.id, k.name)]
    if not keys:
        raise HalguruError(f"no active key named {name_or_id!r}; see `halguru keys list`")
    with store.write() as conn:
        conn.executemany("UPDATE api_keys SET revoked = ? WHERE id = ?", [(time.time(), k.id) for k in keys])
    return keys


def verify_key(store: SQLiteStore, secret: str) -> ApiKey | None:
    """The active key matching ``secret``, or None (unknown, revoked or expired)."""
    rows = list(store.db.query("SELECT * FROM api_keys WHERE hash = ?", [_hash(secret)]))
    if not rows:
        return None
    key = _row(rows[0])
    return key if key.state == "active" else None
