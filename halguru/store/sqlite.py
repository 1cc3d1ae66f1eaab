"""SQLite implementation of the store (WAL, a connection per thread, BEGIN IMMEDIATE writers, busy timeout).

Writes that belong together happen in one transaction, so a crash (even SIGKILL) leaves either all of
them or none: a run's final events, its status and the conversation messages it added are committed
together. The tables are split by concern: runs and leases (``sqlite_runs``), checkpoints and approvals
(``sqlite_resume``), API keys (``sqlite_keys``), jobs, channels and schedules (``sqlite_jobs``);
connections in ``sqlite_base``.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, cast

from halguru.errors import StoreError
from halguru.models.base import Message, ToolCallRequest
from halguru.store.base import ConversationRecord, Store
from halguru.store.migrations import MIGRATIONS
from halguru.store.sqlite_jobs import JobsMixin
from halguru.store.sqlite_keys import KeysMixin
from halguru.store.sqlite_resume import ResumeMixin


class SQLiteStore(ResumeMixin, KeysMixin, JobsMixin):
    """The default store, one database file. ``lease`` (seconds) overrides how long a run stays alive
    without a renewal (``HALGURU_RUN_LEASE``, else 30 s)."""

    def __init__(self, path: Path, *, lease: float | None = None):
        self._init_leases(lease)
        self._init_keys()
        super().__init__(path)
        try:
            self._migrate()
        except sqlite3.DatabaseError as exc:
            self.close()
            raise StoreError(f"cannot open the trace store {path}: {exc}") from None
        self.reap_expired_runs()  # one indexed UPDATE: runs of processes that died are interrupted for good

    def _migrate(self) -> None:
        with self._tx() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied REAL NOT NULL)")
            done = {row[0] for row in conn.execute("SELECT name FROM migrations")}
            for migration in MIGRATIONS:
                if migration.__name__ not in done:
                    migration(conn)
                    conn.execute("INSERT INTO migrations VALUES (?, ?)", (migration.__name__, time.time()))

    def close(self) -> None:
        """Stop renewing leases (runs still held will read interrupted once theirs pass) and close every
        connection this store opened."""
        self._stop_leases()
        super().close()

    def ping(self) -> None:
        """Raise StoreError unless the database answers and takes the write lock (nothing is written)."""
        try:
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute("SELECT count(*) FROM migrations").fetchone()
            finally:
                conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            raise StoreError(f"the store is not writable: {exc}") from None

    # -- conversations -----------------------------------------------------
    def get_conversation(self, conversation_id: str) -> ConversationRecord | None:
        rows = self._rows("SELECT * FROM conversations WHERE id = ?", [conversation_id])
        return cast(ConversationRecord, rows[0]) if rows else None

    def list_conversations(self, limit: int = 20, agent: str | None = None, *,
                           agents: Sequence[str] | None = None, offset: int = 0,
                           owner: str | None = None) -> list[ConversationRecord]:
        """Newest first; ``agent`` or ``agents`` narrow it to those agents' conversations, ``owner`` to
        that principal's."""
        names = [agent] if agent else list(agents) if agents is not None else None
        if names == []:
            return []
        clauses, params = [], []
        if names is not None:
            clauses.append(f"agent IN ({','.join('?' * len(names))})")
            params += names
        if owner is not None:
            clauses.append("owner = ?")
            params.append(owner)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        return cast(list[ConversationRecord], self._rows(
            f"SELECT c.*, (SELECT count(*) FROM messages m WHERE m.conversation_id = c.id) AS messages "
            f"FROM conversations c {where} ORDER BY updated DESC, id LIMIT ? OFFSET ?", [*params, limit, offset]))

    def create_conversation(self, conversation_id: str, agent: str, title: str = "",
                            history: Sequence[Message] = (), *, owner: str | None = None) -> ConversationRecord:
        """A new conversation, optionally seeded with earlier messages (an OpenAI-style request's history)."""
        now = time.time()
        with self._tx() as conn:
            conn.execute("INSERT INTO conversations (id, agent, title, created, updated, owner) "
                         "VALUES (?, ?, ?, ?, ?, ?)", (conversation_id, agent, title[:80], now, now, owner))
            conn.executemany(
                "INSERT INTO messages (conversation_id, seq, role, content, created) VALUES (?, ?, ?, ?, ?)",
                [(conversation_id, i, m.role, m.content, now) for i, m in enumerate(history)])
        return ConversationRecord(id=conversation_id, agent=agent, title=title[:80], created=now, updated=now,
                                  active_agent=None, owner=owner, messages=len(history))

    def delete_conversation(self, conversation_id: str) -> None:
        """The conversation and everything in it (messages; its runs with their events, approvals and
        checkpoints), in one transaction. A run still streaming in it then records nothing."""
        runs = "SELECT id FROM runs WHERE conversation_id = ?"
        with self._tx() as conn:
            for table in ("events", "approvals", "checkpoints"):
                conn.execute(f"DELETE FROM {table} WHERE run_id IN ({runs})", (conversation_id,))
            conn.execute("DELETE FROM approvals WHERE conversation_id = ?", (conversation_id,))
            conn.execute("DELETE FROM checkpoints WHERE conversation_id = ?", (conversation_id,))
            conn.execute("DELETE FROM runs WHERE conversation_id = ?", (conversation_id,))
            conn.execute("DELETE FROM messages WHERE conversation_id = ?", (conversation_id,))
            conn.execute("DELETE FROM channel_threads WHERE conversation_id = ?", (conversation_id,))
            conn.execute("DELETE FROM channel_messages WHERE conversation_id = ?", (conversation_id,))
            conn.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))

    def get_messages(self, conversation_id: str) -> list[Message]:
        rows = self._rows("SELECT * FROM messages WHERE conversation_id = ? ORDER BY seq", [conversation_id])
        return [
            Message(
                role=r["role"], content=r["content"], tool_call_id=r["tool_call_id"], name=r["name"],
                tool_calls=[ToolCallRequest(**c) for c in json.loads(r["tool_calls"] or "[]")],
            )
            for r in rows
        ]


_STORES: dict[Path, SQLiteStore] = {}


def open_store(path: Path | None = None) -> SQLiteStore:
    """The store at ``path`` (default: the configured one), opened once per process."""
    from halguru.config import get_settings

    key = path or get_settings().database
    store = _STORES.get(key)
    if store is None:  # resolve only on first use: every run opens the store
        resolved = key.expanduser().resolve()
        store = _STORES.get(resolved) or SQLiteStore(resolved)
        _STORES[key] = _STORES[resolved] = store
    return store


if TYPE_CHECKING:  # the type checker holds SQLiteStore to the Store protocol
    def _implements(store: SQLiteStore) -> Store:
        return store
