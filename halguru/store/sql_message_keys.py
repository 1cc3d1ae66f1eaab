"""Idempotency keys of ``POST /v1/conversations/{id}/messages`` (either backend; see ``sql_base``).

A key is scoped by the caller (``owner``; '' for none) and the conversation. The request that claims it first
goes on; a repeat finds the claim and answers from it (the server's ``idempotency`` module): the first run's
result once it has ended, 409 while it has not, 422 for another message under the same key. A claim moves from
``claimed`` (no run yet: the request waits for its turn in the model's queue) to ``run`` (with the run's id) or
``held`` (the conversation was taken over: the message waits for an operator); a request that fails before its
run starts releases its claim, so the key is not used up.

Keys live ``KEY_TTL`` (24 hours): an older one is claimed anew, and ``prune_runs`` deletes them. A ``claimed``
row older than ``STALE_CLAIM`` is a request whose process died before its run started (the claim was never
released): it is claimed anew too, as is a key whose run no longer exists (pruned).
"""

from __future__ import annotations

import time
from typing import Any, cast

from halguru.store.records import MessageKeyRecord
from halguru.store.sql_base import SQLBase

KEY_TTL = 24 * 3600.0
STALE_CLAIM = 600.0
_KEY = "owner = ? AND conversation_id = ? AND key = ?"


def delete_old_keys(conn: Any, cutoff: float) -> int:
    """Delete the keys claimed before ``cutoff`` in the caller's transaction (``prune_runs`` and
    ``prune_message_keys``); how many."""
    return int(conn.execute("DELETE FROM message_keys WHERE created < ?", (cutoff,)).rowcount)


def _record(row: Any) -> MessageKeyRecord:
    return cast(MessageKeyRecord, {k: row[k] for k in MessageKeyRecord.__annotations__})


class MessageKeysMixin(SQLBase):
    """The messages endpoint's idempotency keys."""

    def claim_message_key(self, owner: str, conversation_id: str, key: str,
                          request_hash: str) -> MessageKeyRecord | None:
        now = time.time()
        with self._tx(relaxed=True) as conn:  # relaxed, like the messages the key guards
            self._lock(conn, "idempotency", f"{owner}\n{conversation_id}\n{key}")
            conn.execute(f"DELETE FROM message_keys WHERE {_KEY} AND (created < ? OR (status = 'claimed' AND "
                         "created < ?) OR (status = 'run' AND NOT EXISTS "
                         "(SELECT 1 FROM runs r WHERE r.id = message_keys.run_id)))",
                         (owner, conversation_id, key, now - KEY_TTL, now - STALE_CLAIM))
            rows = conn.execute(
                "INSERT INTO message_keys (owner, conversation_id, key, request_hash, status, run_id, created) "
                "VALUES (?, ?, ?, ?, 'claimed', NULL, ?) ON CONFLICT (owner, conversation_id, key) DO NOTHING "
                "RETURNING key", (owner, conversation_id, key, request_hash, now)).fetchall()
            if rows:  # all: SQLite ends the statement
                return None
            return _record(conn.execute(f"SELECT * FROM message_keys WHERE {_KEY}",
                                        (owner, conversation_id, key)).fetchone())

    def start_message_key(self, owner: str, conversation_id: str, key: str, run_id: str) -> bool:
        with self._tx(relaxed=True) as conn:
            return conn.execute(f"UPDATE message_keys SET status = 'run', run_id = ? WHERE {_KEY} "
                                "AND status = 'claimed'", (run_id, owner, conversation_id, key)).rowcount == 1

    def hold_message_key(self, owner: str, conversation_id: str, key: str) -> bool:
        with self._tx(relaxed=True) as conn:
            return conn.execute(f"UPDATE message_keys SET status = 'held' WHERE {_KEY} AND status = 'claimed'",
                                (owner, conversation_id, key)).rowcount == 1

    def release_message_key(self, owner: str, conversation_id: str, key: str) -> bool:
        with self._tx(relaxed=True) as conn:
            return conn.execute(f"DELETE FROM message_keys WHERE {_KEY} AND status = 'claimed'",
                                (owner, conversation_id, key)).rowcount == 1

    def forget_message_key(self, owner: str, conversation_id: str, key: str, run_id: str) -> bool:
        with self._tx(relaxed=True) as conn:
            return conn.execute(f"DELETE FROM message_keys WHERE {_KEY} AND status = 'run' AND run_id = ?",
                                (owner, conversation_id, key, run_id)).rowcount == 1

    def prune_message_keys(self, before: float | None = None) -> int:
        cutoff = time.time() - KEY_TTL if before is None else before
        with self._tx() as conn:
            return delete_old_keys(conn, cutoff)
