"""SQLite implementation of the trace store (WAL, BEGIN IMMEDIATE writers, busy timeout).

Writes that belong together happen in one transaction, so a crash (even
SIGKILL) leaves either all of them or none: a run's final events, its status
and the conversation messages it added are committed together.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlite_utils

from halguru.agents.events import BaseEvent
from halguru.errors import StoreError
from halguru.models.base import Message, ToolCallRequest
from halguru.store.migrations import MIGRATIONS


class SQLiteStore:
    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
            conn.execute("PRAGMA journal_mode=WAL")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open the trace store {path}: {exc}") from None
        conn.execute("PRAGMA busy_timeout=10000")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        self.db = sqlite_utils.Database(conn)
        self._lock = threading.RLock()
        self._migrate()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken up front (BEGIN IMMEDIATE) so it never fails half-way on a lock."""
        with self._lock:
            conn = self.db.conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _migrate(self) -> None:
        with self.write() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied REAL NOT NULL)")
            done = {row[0] for row in conn.execute("SELECT name FROM migrations")}
            for migration in MIGRATIONS:
                if migration.__name__ not in done:
                    migration(conn)
                    conn.execute("INSERT INTO migrations VALUES (?, ?)", (migration.__name__, time.time()))

    def close(self) -> None:
        self.db.conn.close()

    # -- conversations -----------------------------------------------------
    def get_conversation(self, conversation_id: str) -> dict[str, Any] | None:
        rows = list(self.db.query("SELECT * FROM conversations WHERE id = ?", [conversation_id]))
        return rows[0] if rows else None

    def list_conversations(self, limit: int = 20, agent: str | None = None, *,
                           agents: Sequence[str] | None = None, offset: int = 0) -> list[dict[str, Any]]:
        """Newest first; ``agent`` or ``agents`` narrow it to those agents' conversations."""
        names = [agent] if agent else list(agents) if agents is not None else None
        where = f"WHERE agent IN ({','.join('?' * len(names))})" if names is not None else ""
        if names == []:
            return []
        return list(self.db.query(
            f"SELECT c.*, (SELECT count(*) FROM messages m WHERE m.conversation_id = c.id) AS messages "
            f"FROM conversations c {where} ORDER BY updated DESC, id LIMIT ? OFFSET ?",
            [*(names or []), limit, offset]))

    def create_conversation(self, conversation_id: str, agent: str, title: str = "",
                            history: Sequence[Message] = ()) -> dict[str, Any]:
        """A new conversation, optionally seeded with earlier messages (an OpenAI-style request's history)."""
        now = time.time()
        with self.write() as conn:
            conn.execute("INSERT INTO conversations (id, agent, title, created, updated) VALUES (?, ?, ?, ?, ?)",
                         (conversation_id, agent, title[:80], now, now))
            conn.executemany(
                "INSERT INTO messages (conversation_id, seq, role, content, created) VALUES (?, ?, ?, ?, ?)",
                [(conversation_id, i, m.role, m.content, now) for i, m in enumerate(history)])
        return {"id": conversation_id, "agent": agent, "title": title[:80], "created": now, "updated": now,
                "messages": len(history)}

    def delete_conversation(self, conversation_id: str) -> None:
        """The conversation, its messages, runs and their events, in one transaction."""
        with self.write() as conn:
            runs = "SELECT id FROM runs WHERE conversation_id = ?"
            conn.execute(f"DELETE FROM events WHERE run_id IN ({runs})", (conversation_id,))
            conn.execute("DELETE FROM runs WHERE conversation_id = ?", (conversation_id,))
            conn.execute("DELETE FROM messages WHERE conversation_id = ?", (conversation_id,))
            conn.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))

    def get_messages(self, conversation_id: str) -> list[Message]:
        rows = self.db.query(
            "SELECT * FROM messages WHERE conversation_id = ? ORDER BY seq", [conversation_id]
        )
        return [
            Message(
                role=r["role"], content=r["content"], tool_call_id=r["tool_call_id"], name=r["name"],
                tool_calls=[ToolCallRequest(**c) for c in json.loads(r["tool_calls"] or "[]")],
            )
            for r in rows
        ]

    # -- runs ----------------------------------------------------------------
    def start_run(self, run_id: str, conversation_id: str, agent: str, model: str, input: str) -> None:
        """Record a run as running, creating its conversation (titled by the input) if it is new."""
        now = time.time()
        with self.write() as conn:
            conn.execute(
                "INSERT INTO conversations (id, agent, title, created, updated) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(id) DO NOTHING",
                (conversation_id, agent, input[:80], now, now),
            )
            conn.execute(
                "INSERT INTO runs (id, conversation_id, agent, model, input, status, started, pid) "
                "VALUES (?, ?, ?, ?, ?, 'running', ?, ?)",
                (run_id, conversation_id, agent, model, input, now, os.getpid()),
            )

    def record_events(self, events: Sequence[BaseEvent]) -> None:
        if not events:
            return
        with self.write() as conn:
            self._insert_events(conn, events)

    @staticmethod
    def _insert_events(conn: sqlite3.Connection, events: Sequence[BaseEvent]) -> None:
        conn.executemany(
            "INSERT INTO events (run_id, seq, type, step, ts, data) VALUES (?, ?, ?, ?, ?, ?)",
            [(e.run_id, e.seq, e.type, e.step, e.ts, e.model_dump_json()) for e in events],
        )

    def finish_run(
        self, run_id: str, conversation_id: str, summary: dict[str, Any], events: Sequence[BaseEvent],
        new_messages: Sequence[Message], active_agent: str | None = None,
    ) -> None:
        """Final events, run status and the conversation's new messages (and, in a team, which member
        now holds the conversation), in one transaction."""
        now = time.time()
        with self.write() as conn:
            self._insert_events(conn, events)
            conn.execute(
                "UPDATE runs SET status = ?, output = ?, error = ?, finished = ?, duration_ms = ?, steps = ?, "
                "prompt_tokens = ?, completion_tokens = ? WHERE id = ?",
                (summary["status"], summary["output"], summary.get("error"), now, summary["duration_ms"],
                 summary["steps"], summary["prompt_tokens"], summary["completion_tokens"], run_id),
            )
            (last,) = conn.execute(
                "SELECT coalesce(max(seq), -1) FROM messages WHERE conversation_id = ?", (conversation_id,)
            ).fetchone()
            conn.executemany(
                "INSERT INTO messages (conversation_id, seq, role, content, tool_calls, tool_call_id, name, "
                "run_id, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (conversation_id, last + 1 + i, m.role, m.content,
                     json.dumps([c.model_dump() for c in m.tool_calls]) if m.tool_calls else None,
                     m.tool_call_id, m.name, run_id, now)
                    for i, m in enumerate(new_messages)
                ],
            )
            conn.execute("UPDATE conversations SET updated = ?, active_agent = coalesce(?, active_agent) WHERE id = ?",
                         (now, active_agent, conversation_id))

    def list_runs(self, limit: int = 20, agent: str | None = None, conversation_id: str | None = None
                  ) -> list[dict[str, Any]]:
        clauses, params = [], []
        if agent:
            clauses.append("agent = ?")
            params.append(agent)
        if conversation_id:
            clauses.append("conversation_id = ?")
            params.append(conversation_id)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = list(self.db.query(f"SELECT * FROM runs {where} ORDER BY started DESC LIMIT ?", [*params, limit]))
        return [_mark_interrupted(r) for r in rows]

    def get_run(self, run_id: str) -> dict[str, Any]:
        """A run by id or unique id prefix."""
        rows = list(self.db.query("SELECT * FROM runs WHERE id LIKE ? ORDER BY started DESC LIMIT 2",
                                  [f"{run_id}%"]))
        if not rows:
            raise StoreError(f"no run {run_id!r} in {self.path}; see `halguru logs` for run ids")
        if len(rows) > 1 and rows[0]["id"] != run_id:
            raise StoreError(f"run id prefix {run_id!r} is ambiguous; give more characters")
        return _mark_interrupted(rows[0])

    def get_events(self, run_id: str) -> list[dict[str, Any]]:
        return [json.loads(r["data"]) for r in
                self.db.query("SELECT data FROM events WHERE run_id = ? ORDER BY seq", [run_id])]


def _mark_interrupted(run: dict[str, Any]) -> dict[str, Any]:
    """A run still 'running' whose process is gone was killed mid-run."""
    if run["status"] == "running" and run.get("pid") and not _alive(run["pid"]):
        run["status"] = "interrupted"
    return run


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
