"""Conversations and their messages (either backend; see ``sql_base``)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from halguru.errors import TooManyConversations
from halguru.store.records import ConversationRecord
from halguru.store.sql_base import SQLBase, after_position, newest_conversations

if TYPE_CHECKING:  # a listing (`halguru logs`) needs no message: the pydantic models cost time to import
    from halguru.models.base import Message

MESSAGES = "SELECT * FROM messages WHERE conversation_id = ? ORDER BY seq"


def tool_calls_json(message: Message) -> str | None:
    """A message's tool calls as the ``tool_calls`` column holds them (None when it has none)."""
    return json.dumps([c.model_dump() for c in message.tool_calls]) if message.tool_calls else None


def message_from_row(row: Any) -> Message:
    """A stored message (a row of ``messages``) as the model sees it."""
    from halguru.models.base import Message, ToolCallRequest

    return Message(role=row["role"], content=row["content"], tool_call_id=row["tool_call_id"], name=row["name"],
                   tool_calls=[ToolCallRequest(**c) for c in json.loads(row["tool_calls"] or "[]")])


class ConversationsMixin(SQLBase):
    """Conversations: listing (newest first, with message counts), creation with a history, deletion of
    everything in one."""

    # -- conversations -----------------------------------------------------
    def get_conversation(self, conversation_id: str) -> ConversationRecord | None:
        rows = self._rows("SELECT * FROM conversations WHERE id = ?", [conversation_id])
        return cast(ConversationRecord, rows[0]) if rows else None

    def list_conversations(self, limit: int = 20, agent: str | None = None, *,
                           agents: Sequence[str] | None = None, after: tuple[float, str] | None = None,
                           owner: str | None = None, test_runs: bool = True) -> list[ConversationRecord]:
        """Newest activity first (``updated DESC, id``); ``agent`` or ``agents`` narrow it to those agents'
        conversations, ``owner`` to that principal's; ``after`` (the last row's ``(updated, id)``) is the
        next page's start; ``test_runs=False`` leaves out the conversations of `halguru test` and `eval` runs."""
        names = [agent] if agent else agents
        if names is not None and not names:
            return []
        clauses: list[str] = []
        params: list[Any] = []
        if owner is not None:
            clauses.append("c.owner = ?")
            params.append(owner)
        if not test_runs:
            clauses.append("NOT EXISTS (SELECT 1 FROM runs r WHERE r.conversation_id = c.id AND r.test = 1)")
        keyset, values = after_position(after)
        newest, newest_params = newest_conversations(names, [*clauses, *keyset], [*params, *values], limit,
                                                       split=self.SPLIT_AGENTS)
        return cast(list[ConversationRecord], self._rows(
            f"SELECT c.*, (SELECT count(*) FROM messages m WHERE m.conversation_id = c.id) AS messages "
            f"FROM ({newest}) c ORDER BY c.updated DESC, c.id LIMIT ?", [*newest_params, limit]))

    def create_conversation(self, conversation_id: str, agent: str, title: str = "",
                            history: Sequence[Message] = (), *, owner: str | None = None,
                            max_owned: int | None = None, among: Sequence[str] | None = None
                            ) -> ConversationRecord:
        """A new conversation, optionally seeded with earlier messages (an OpenAI-style request's history).
        The title is stored whole, as a rename stores it: callers that derive one from a message cut it first.
        ``max_owned``: TooManyConversations if ``owner`` already keeps that many (counted under the owner's lock,
        so replicas creating at once cannot all get past it; counting stops at the cap, so a big owner costs
        no more than the cap's index entries); ``among``: only those of these agents count (the served ones:
        an agent removed in a deploy leaves conversations its owner can no longer reach to delete)."""
        now = time.time()
        with self._tx(relaxed=True) as conn:
            if max_owned is not None and owner is not None:
                self._lock(conn, "owned", owner)
                self._check_owned(conn, owner, max_owned, among)
            conn.execute("INSERT INTO conversations (id, agent, title, created, updated, owner) "
                         "VALUES (?, ?, ?, ?, ?, ?)", (conversation_id, agent, title, now, now, owner))
            conn.executemany(  # a history's tool calls and results too (a client's own tool loop)
                "INSERT INTO messages (conversation_id, seq, role, content, tool_calls, tool_call_id, name, created) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(conversation_id, i, m.role, m.content, tool_calls_json(m), m.tool_call_id, m.name, now)
                 for i, m in enumerate(history)])
        return ConversationRecord(id=conversation_id, agent=agent, title=title, created=now, updated=now,
                                  active_agent=None, owner=owner, messages=len(history))

    def check_owned_conversations(self, owner: str, max_owned: int, among: Sequence[str] | None = None) -> None:
        self._check_owned(None, owner, max_owned, among)

    def _check_owned(self, conn: Any, owner: str, limit: int, among: Sequence[str] | None) -> None:
        """TooManyConversations if ``owner`` keeps ``limit`` (of the agents ``among``); counting stops there."""
        agents = f" AND agent IN ({','.join('?' * len(among))})" if among else ""
        sql = f"SELECT count(*) AS n FROM (SELECT 1 FROM conversations WHERE owner = ?{agents} LIMIT ?) o"
        params = [owner, *(among or ()), limit]
        kept = (self._rows(sql, params) if conn is None else conn.execute(sql, params).fetchall())[0]
        if kept["n"] >= limit:
            raise TooManyConversations(f"you keep {limit} conversation{'s' if limit != 1 else ''}, as many as this "
                                       "server allows (max_conversations): delete some before starting another")

    def rename_conversation(self, conversation_id: str, title: str) -> bool:
        with self._tx() as conn:
            return bool(conn.execute("UPDATE conversations SET title = ? WHERE id = ?",
                                     (title, conversation_id)).rowcount)

    def delete_conversation(self, conversation_id: str) -> bool:
        """The conversation and everything in it (messages, idempotency keys; its runs with their events,
        approvals and checkpoints), in one transaction. A run still streaming in it then records nothing.
        False if it was not there (already deleted by a concurrent call: that one reports the deletion)."""
        runs = "SELECT id FROM runs WHERE conversation_id = ?"
        with self._tx() as conn:
            self._lock(conn, "conversation", conversation_id)  # a run finishing in it meanwhile waits
            # and one recording events waits too, then finds its run gone (PostgreSQL; SQLite has one writer)
            conn.execute("SELECT id FROM runs WHERE conversation_id = ?" + self.FOR_UPDATE, (conversation_id,))
            for table in ("events", "approvals", "checkpoints", "checkpoint_steps", "checkpoint_messages"):
                conn.execute(f"DELETE FROM {table} WHERE run_id IN ({runs})", (conversation_id,))
            conn.execute("DELETE FROM approvals WHERE conversation_id = ?", (conversation_id,))
            conn.execute("DELETE FROM checkpoints WHERE conversation_id = ?", (conversation_id,))
            conn.execute("DELETE FROM runs WHERE conversation_id = ?", (conversation_id,))
            conn.execute("DELETE FROM messages WHERE conversation_id = ?", (conversation_id,))
            conn.execute("DELETE FROM channel_threads WHERE conversation_id = ?", (conversation_id,))
            conn.execute("DELETE FROM channel_messages WHERE conversation_id = ?", (conversation_id,))
            conn.execute("DELETE FROM message_keys WHERE conversation_id = ?", (conversation_id,))
            return bool(conn.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,)).rowcount)

    def check_idle(self, conversation_id: str) -> None:
        with self._tx(relaxed=True) as conn:
            self._not_busy(conn, conversation_id, time.time())

    def get_messages(self, conversation_id: str) -> list[Message]:
        return [message_from_row(r) for r in self._rows(MESSAGES, [conversation_id])]

    def count_messages(self, conversation_id: str) -> int:
        rows = self._rows("SELECT count(*) AS n FROM messages WHERE conversation_id = ?", [conversation_id])
        return int(rows[0]["n"])
