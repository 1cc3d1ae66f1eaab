"""Serve mode's API keys and rate limits (either backend). Only a hash of each key is stored; hashing and
formatting stay in ``halguru_server.keys``. Rate-limit hits live in the store so that every worker process
(``--workers N``) counts the same window."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from typing import Any

from halguru.store.records import ApiKeyRecord
from halguru.store.sql_base import SQLBase

TOUCH_EVERY = 60.0
MAX_RATE_WINDOW = 3600.0  # the longest window a rate bucket may have (a recipient's account mails: an hour)
"""``last_used`` is written at most this often per key: a write per request would serialize every reader."""


def _key(row: dict[str, Any]) -> ApiKeyRecord:
    return ApiKeyRecord(id=row["id"], name=row["name"], prefix=row["prefix"], agents=json.loads(row["agents"]),
                        scope=row["scope"], created=row["created"], expires=row["expires"], revoked=row["revoked"],
                        last_used=row["last_used"], user_id=row["user_id"])


class KeysMixin(SQLBase):
    """API keys and rate limits: what serve mode's authentication reads on every request."""

    def _init_keys(self) -> None:
        self._touched: dict[str, float] = {}
        self._touched_lock = threading.Lock()

    def create_key(self, key_id: str, name: str, prefix: str, key_hash: str, agents: Sequence[str] = (),
                   expires: float | None = None, scope: str = "user", *,
                   user_id: str | None = None) -> ApiKeyRecord | None:
        """The new key, or None when a key already has the id ``key_id`` (nothing stored: try another id)."""
        now = time.time()
        with self._tx() as conn:
            added = conn.execute(
                "INSERT INTO api_keys (id, name, prefix, hash, agents, created, expires, scope, user_id) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                (key_id, name, prefix, key_hash, json.dumps(list(agents)), now, expires, scope, user_id)).rowcount
        if not added:
            return None
        return ApiKeyRecord(id=key_id, name=name, prefix=prefix, agents=list(agents), scope=scope, created=now,
                            expires=expires, revoked=None, last_used=None, user_id=user_id)

    def list_keys(self, user_id: str | None = None) -> list[ApiKeyRecord]:
        if user_id is not None:
            return [_key(r) for r in self._rows("SELECT * FROM api_keys WHERE user_id = ? ORDER BY created",
                                                [user_id])]
        return [_key(r) for r in self._rows("SELECT * FROM api_keys ORDER BY created")]

    def revoke_keys(self, key_ids: Sequence[str]) -> int:
        """Revoke these keys (those not revoked already); how many."""
        if not key_ids:
            return 0
        with self._tx() as conn:
            return conn.execute(f"UPDATE api_keys SET revoked = ? WHERE revoked IS NULL "
                                f"AND id IN ({','.join('?' * len(key_ids))})", [time.time(), *key_ids]).rowcount

    def get_key(self, key_id: str) -> ApiKeyRecord | None:
        rows = self._rows("SELECT * FROM api_keys WHERE id = ?", [key_id])
        return _key(rows[0]) if rows else None

    def key_by_hash(self, key_hash: str) -> ApiKeyRecord | None:
        rows = self._rows("SELECT * FROM api_keys WHERE hash = ?", [key_hash])
        return _key(rows[0]) if rows else None

    def touch_key(self, key_id: str) -> None:
        """Record that the key was used now; at most one write per key a minute (per process, and in SQL)."""
        now = time.time()
        with self._touched_lock:
            if now - self._touched.get(key_id, 0.0) < TOUCH_EVERY:
                return
            self._touched[key_id] = now
        with self._tx() as conn:
            conn.execute("UPDATE api_keys SET last_used = ? WHERE id = ? "
                         "AND (last_used IS NULL OR last_used < ?)", (now, key_id, now - TOUCH_EVERY))

    def rate_hit(self, bucket: str, limit: int, window_s: float) -> float | None:
        """Count one hit for ``bucket`` in a sliding window (at most ``MAX_RATE_WINDOW``): None if it is allowed
        (and recorded), else the seconds until the oldest hit leaves the window. The bucket's expired hits are
        dropped on the way, and every bucket's older than the longest window."""
        window_s = min(window_s, MAX_RATE_WINDOW)
        with self._tx() as conn:
            self._lock(conn, "rate", bucket)
            now = time.time()  # after the lock: a hit that waited for it is counted when it is let in
            conn.execute("DELETE FROM rate_hits WHERE bucket = ? AND ts <= ?", (bucket, now - window_s))
            conn.execute("DELETE FROM rate_hits WHERE ts <= ?", (now - MAX_RATE_WINDOW,))
            count, oldest = conn.execute("SELECT count(*), min(ts) FROM rate_hits WHERE bucket = ?",
                                         (bucket,)).fetchone()
            if count >= limit:
                return max(0.0, oldest + window_s - now) if oldest is not None else window_s
            conn.execute("INSERT INTO rate_hits (bucket, ts) VALUES (?, ?)", (bucket, now))
        return None
