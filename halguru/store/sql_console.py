"""What the admin console asks of conversations (either backend; see ``sql_base``): search with filters,
messages with their authors, take-over (an operator answers as a human while the agent waits), and retention.

Text search is ``LIKE`` on lower-cased text (titles and message contents), the same SQL on SQLite and
PostgreSQL; a pattern's own ``%``, ``_`` and ``\\`` are escaped, so a search is for the text as typed. A rare status
or text is first looked up in indexes (the runs' status; messages' trigrams: SQLite's FTS5, PostgreSQL's pg_trgm),
which name the few conversations that ``LIKE`` then checks (``_candidates``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from halguru.store.records import ConversationFound, MessageRecord
from halguru.store.sql_base import SQLBase, after_position, like_pattern, newest_conversations
from halguru.store.sql_conversations import tool_calls_json

if TYPE_CHECKING:
    from halguru.models.base import Message

# The status of a conversation's last run, as the runs listing reads it (a lapsed lease reads interrupted).
_LAST_STATUS = ("(SELECT CASE WHEN r.status = 'running' AND coalesce(r.lease_expires, 0) < ? THEN 'interrupted' "
                "ELSE r.status END FROM runs r WHERE r.conversation_id = c.id ORDER BY r.started DESC LIMIT 1)")
_CHANNEL = "(SELECT min(t.channel) FROM channel_threads t WHERE t.conversation_id = c.id)"
CANDIDATES = 1000
"""Past this many conversations that may have a searched status or text, a search walks the conversations newest
first (a common status or word fills a page at once) rather than testing each of them."""
WALK = 2000
"""A common word's search tests the newest this many conversations first, each by its own messages (the index
on ``conversation_id``), and reads the word's every message only when they hold less than a page."""
NO_CHANNEL = "api"
"""The channel filter's name for conversations no channel started (the API, the web chat, the CLI)."""


def _runs_with(status: str, now: float) -> tuple[str, list[Any]]:
    """A condition on runs ``r`` that every run read as ``status`` meets (``runs_status`` answers it)."""
    if status == "interrupted":
        return "(r.status = 'interrupted' OR (r.status = 'running' AND coalesce(r.lease_expires, 0) < ?))", [now]
    return "r.status = ?", [status]


def _tool_fields(message: Message | None) -> tuple[str | None, str | None, str | None]:
    """The ``tool_calls``, ``tool_call_id`` and ``name`` columns of ``message`` (all None without one)."""
    if message is None:
        return None, None, None
    return tool_calls_json(message), message.tool_call_id, message.name


class ConsoleMixin(SQLBase):
    """Search, messages with authors, take-over state and retention deletes."""

    def search_conversations(self, *, agents: Sequence[str] | None = None, owner: str | None = None,
                             channel: str | None = None, since: float | None = None, until: float | None = None,
                             status: str | None = None, text: str | None = None, limit: int = 50,
                             after: tuple[float, str] | None = None) -> list[ConversationFound]:
        """Newest activity first (``updated DESC, id``). ``agents`` (None: any), ``owner``, ``channel`` (a channel
        name, or ``api`` for none), ``since``/``until`` (last activity in [since, until)), ``status`` (of the last
        run) and ``text`` (in the title or any message) narrow it; ``after`` (the last row's ``(updated, id)``)
        is the next page's start."""
        if agents is not None and not agents:
            return []
        clauses: list[str] = []
        params: list[Any] = []
        now = time.time()
        pattern = like_pattern(text) if text else None
        for clause, value in (("c.owner = ?", owner), ("c.updated >= ?", since), ("c.updated < ?", until)):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        if channel == NO_CHANNEL:
            clauses.append("NOT EXISTS (SELECT 1 FROM channel_threads t WHERE t.conversation_id = c.id)")
        elif channel:
            clauses.append("EXISTS (SELECT 1 FROM channel_threads t WHERE t.conversation_id = c.id AND t.channel = ?)")
            params.append(channel)
        candidates = self._candidates(status, text, now)
        if candidates is not None:
            if not candidates:
                return []
            # the candidates drive the query, by the primary key; the agents' index, chosen first, walked every
            # conversation of theirs (0.3-0.5 s with 100,000), so the agents are compared as an expression
            clauses.append(f"c.id IN ({','.join('?' * len(candidates))})")
            params.extend(candidates)
            if agents is not None:
                clauses.append(f"c.agent || '' IN ({','.join('?' * len(agents))})")
                params.extend(agents)
                agents = None
        if status:
            if candidates is None and agents is not None and len(agents) > 1 and self.SPLIT_AGENTS:
                # a common status: one walk of the updated index, the agents compared first as an expression;
                # one walk per agent each tested ~1/share conversations for a page (6 agents, failed: 6 walks
                # of ~1,000 last statuses, 150-430 ms with 100,000 conversations, against one walk's 8-25 ms)
                clauses.insert(0, f"c.agent || '' IN ({','.join('?' * len(agents))})")
                params[:0] = agents
                agents = None
            clauses.append(f"{_LAST_STATUS} = ?")
            params.extend([now, status])
        keyset, values = after_position(after)
        if pattern is not None:
            held = (f"({self.FOLD.format('c.title')} LIKE ? ESCAPE '\\' OR EXISTS (SELECT 1 FROM messages m WHERE "
                    f"m.conversation_id = c.id AND {self.FOLD.format('m.content')} LIKE ? ESCAPE '\\'{self.PER_ROW}))")
            if candidates is None and self.PER_ROW:  # a common word: the newest WALK first (SQLite walks anyway)
                window, window_params = newest_conversations(agents, [*clauses, *keyset], [*params, *values], WALK,
                                                             split=self.SPLIT_AGENTS)
                rows = self._found(f"SELECT * FROM ({window}) c WHERE {held}", [*window_params, pattern, pattern],
                                   pattern, now, limit)
                if len(rows) == limit:
                    return rows
            clauses.append(held.replace(self.PER_ROW, ""))
            params.extend([pattern, pattern])
        newest, newest_params = newest_conversations(agents, [*clauses, *keyset], [*params, *values], limit,
                                                       split=self.SPLIT_AGENTS)
        return self._found(newest, newest_params, pattern, now, limit)

    def _found(self, newest: str, newest_params: Sequence[Any], pattern: str | None, now: float,
               limit: int) -> list[ConversationFound]:
        """The page of ``newest`` (a derived table of conversations ``c``, newest first) with each one's message
        count, last status, channel and first message holding ``pattern``."""
        match = (f"(SELECT m.content FROM messages m WHERE m.conversation_id = c.id AND "
                 f"{self.FOLD.format('m.content')} LIKE ? ESCAPE '\\' ORDER BY m.seq LIMIT 1)") if pattern is not None \
            else "NULL"
        head = [now] + ([pattern] if pattern is not None else [])
        rows = self._rows(
            f"SELECT c.*, (SELECT count(*) FROM messages m WHERE m.conversation_id = c.id) AS messages, "
            f"{_LAST_STATUS} AS last_status, {_CHANNEL} AS channel, {match} AS match "
            f"FROM ({newest}) c ORDER BY c.updated DESC, c.id LIMIT ?",
            [*head, *newest_params, limit])
        return cast(list[ConversationFound], rows)

    def _candidates(self, status: str | None, text: str | None, now: float) -> list[str] | None:
        """The ids of the conversations that may match ``status`` and ``text`` (a superset: the search still tests
        each), read from indexes: the runs with that status (``runs_status``) and the messages the backend's text
        index finds (``_text_sources``). None when more than ``CANDIDATES`` may (a common status or word):
        then the search tests each conversation, newest first, and soon fills its page. A rare status or an absent
        text scanned every conversation instead (0.5-3 s with 100,000)."""
        found: set[str] | None = None
        if status:
            ran, params = _runs_with(status, now)
            found = self._ids(f"SELECT r.conversation_id AS id FROM runs r WHERE {ran}", params)
        if text and found != set():
            holding = self._holding(text)
            if holding is not None:
                found = holding if found is None else found & holding
        return None if found is None else sorted(found)

    def _holding(self, text: str) -> set[str] | None:
        """The conversations whose messages or title may hold ``text`` (``_text_sources``, read apart: a UNION was
        read whole before its LIMIT); None past ``CANDIDATES``."""
        holding: set[str] = set()
        for select, params in self._text_sources(text):
            found = self._ids(select, params)
            if found is None or len(holding | found) > CANDIDATES:
                return None
            holding |= found
        return holding

    def _ids(self, select: str, params: Sequence[Any]) -> set[str] | None:
        """The ``id`` column of ``select``'s rows; None past ``CANDIDATES`` rows. Rows, not distinct ids: a DISTINCT
        read every match before its LIMIT on PostgreSQL (a common word: every message rechecked, 1.3 s)."""
        rows = self._rows(f"{select} LIMIT ?", [*params, CANDIDATES + 1])
        return None if len(rows) > CANDIDATES else {row["id"] for row in rows}

    def conversation_messages(self, conversation_id: str, offset: int = 0,
                              limit: int | None = None) -> list[MessageRecord]:
        """The conversation's messages in order, with their authors and times; ``limit`` of them from position
        ``offset`` (None: to the end), read in SQL, so a page of a long history reads that page only."""
        rows = self._rows("SELECT seq, role, content, tool_calls, tool_call_id, name, run_id, author, created "
                          "FROM messages WHERE conversation_id = ? ORDER BY seq LIMIT ? OFFSET ?",
                          [conversation_id, 2**62 if limit is None else limit, offset])  # no LIMIT ALL in SQLite
        for row in rows:
            row["tool_calls"] = json.loads(row["tool_calls"] or "[]")
        return cast(list[MessageRecord], rows)

    def conversation_tail(self, conversation_id: str, limit: int, before: int | None = None) -> list[MessageRecord]:
        """The last ``limit`` messages before the one numbered ``before`` (None: the conversation's last), in order:
        a page of a long history read from its end by the (conversation, seq) index, the rest never read."""
        rows = self._rows("SELECT seq, role, content, tool_calls, tool_call_id, name, run_id, author, created "
                          "FROM messages WHERE conversation_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?",
                          [conversation_id, 2**62 if before is None else before, limit])
        for row in rows:
            row["tool_calls"] = json.loads(row["tool_calls"] or "[]")
        return cast(list[MessageRecord], rows[::-1])

    def conversation_chars(self, conversation_id: str) -> int:
        """How many characters the conversation's messages hold in all (serve caps an anonymous visitor's)."""
        rows = self._rows("SELECT COALESCE(SUM(LENGTH(content)), 0) AS chars FROM messages WHERE conversation_id = ?",
                          [conversation_id])
        return int(rows[0]["chars"])

    def take_over(self, conversation_id: str, by: str | None) -> str | None:
        """Hand the conversation to operator ``by`` (None: back to the agent). Taking one another operator
        holds changes nothing. Who holds it afterwards (None: the agent), or "" for an unknown conversation."""
        now = time.time()
        with self._tx() as conn:
            self._lock(conn, "conversation", conversation_id)
            row = conn.execute("SELECT taken_over_by FROM conversations WHERE id = ?" + self.FOR_UPDATE,
                               (conversation_id,)).fetchone()
            if row is None:
                return ""
            holder = row[0]
            if by is None or holder is None:
                conn.execute("UPDATE conversations SET taken_over_by = ?, taken_over_since = ? WHERE id = ?",
                             (by, now if by else None, conversation_id))
                holder = by
            return cast(str | None, holder)

    def append_message(self, conversation_id: str, role: str, content: str, *, author: str | None = None,
                       if_taken_over: bool = False, when_idle: bool = False,
                       tools: Message | None = None) -> int | None:
        """Add a message at the end of the conversation (no run); its seq, or None when the conversation is
        gone or (``if_taken_over``) no operator holds it: then nothing is stored and the agent should answer.
        ``when_idle``: ConversationBusy or ConversationPaused as ``start_run`` raises them (a run's messages are
        stored as it ends, so one added meanwhile would land before the turn it came after). ``tools``: the message
        whose tool calls, tool_call_id and name are stored with it (a tool loop in an OpenAI client's history)."""
        now = time.time()
        with self._tx() as conn:
            self._lock(conn, "conversation", conversation_id)
            row = conn.execute("SELECT taken_over_by FROM conversations WHERE id = ?",
                               (conversation_id,)).fetchone()
            if row is None or (if_taken_over and row[0] is None):
                return None
            if when_idle:
                self._not_busy(conn, conversation_id, now)
            (last,) = conn.execute("SELECT coalesce(max(seq), -1) FROM messages WHERE conversation_id = ?",
                                   (conversation_id,)).fetchone()
            conn.execute("INSERT INTO messages (conversation_id, seq, role, content, tool_calls, tool_call_id, name, "
                         "author, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (conversation_id, last + 1, role, content, *_tool_fields(tools), author, now))
            conn.execute("UPDATE conversations SET updated = ? WHERE id = ?", (now, conversation_id))
            return int(last) + 1

    def expired_conversations(self, agent: str, before: float, limit: int = 200) -> list[str]:
        """Ids of ``agent``'s conversations last active before ``before``, oldest first, leaving out those an
        operator holds, those with a live run and those waiting for a human's decision (a pending approval: days
        of waiting are no idleness; `halguru prune` keeps them too)."""
        rows = self._rows(
            "SELECT c.id FROM conversations c WHERE c.agent = ? AND c.updated < ? AND c.taken_over_by IS NULL "
            "AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.conversation_id = c.id AND r.status = 'running' "
            "AND coalesce(r.lease_expires, 0) >= ?) AND NOT EXISTS (SELECT 1 FROM approvals a "
            "WHERE a.conversation_id = c.id AND a.status = 'pending') ORDER BY c.updated LIMIT ?",
            [agent, before, time.time(), limit])
        return [r["id"] for r in rows]
