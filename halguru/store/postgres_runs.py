"""A run's finish on PostgreSQL in one statement: status, events, messages, the conversation's ``updated``.

On PostgreSQL every statement is a round trip that hands the GIL to another thread and back; the shared
``sql_runs`` version takes 7 of them (BEGIN, a lock, four writes, COMMIT). (A run's start stays the shared
transaction: it locks the conversation's row to see whether another run answers in it.) Here the writes are
data-modifying CTEs over rows passed as JSON arrays (``json_array_elements``: one text parameter each, which
psycopg sends as it is, where a Python list is adapted element by element), autocommitted: a single statement
is atomic by itself, its text does not depend on how many rows it carries (psycopg prepares it after a few
uses), and it locks the conversation's row before the run's, the order every other writer of a conversation
follows (``PostgresBase._lock``): a concurrent delete either finds the finished run or makes this one record
nothing.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import psycopg

from halguru.store.sql_conversations import tool_calls_json
from halguru.store.sql_runs import RunsMixin, is_test_start

if TYPE_CHECKING:  # a listing (`halguru logs`) needs neither: their pydantic models cost 80 ms to import
    from halguru.agents.events import BaseEvent
    from halguru.models.base import Message

log = logging.getLogger(__name__)

# The conversation's row is locked first (c); the run is updated only if both exist (r), and the events and
# messages are written only if it was (e, m). The messages' seqs follow the conversation's last as this
# statement's snapshot saw it: if another writer added one meanwhile, the unique (conversation_id, seq) fails
# the whole statement, and the finish takes the shared path instead.
_FINISH = """
WITH c AS (
    UPDATE conversations SET updated = ?, active_agent = coalesce(?, active_agent)
    WHERE id = ? AND EXISTS (SELECT 1 FROM runs WHERE id = ?) RETURNING id
), r AS (
    UPDATE runs SET status = ?, output = ?, error = ?, finished = ?, duration_ms = ?, steps = ?,
        prompt_tokens = ?, completion_tokens = ?
    WHERE id = ? AND EXISTS (SELECT 1 FROM c) RETURNING id
), e AS (
    INSERT INTO events (run_id, seq, type, step, ts, data)
    SELECT r.id, (e->>0)::bigint, e->>1, (e->>2)::bigint, (e->>3)::float8, e->>4
    FROM r, json_array_elements(?::json) AS e
), m AS (
    INSERT INTO messages (conversation_id, seq, role, content, tool_calls, tool_call_id, name, run_id, created)
    SELECT c.id, last.seq + m.n - 1, m.x->>'role', m.x->>'content', m.x->>'tool_calls', m.x->>'tool_call_id',
        m.x->>'name', r.id, ?
    FROM c, r, (SELECT coalesce(max(seq), -1) + 1 AS seq FROM messages WHERE conversation_id = ?) AS last,
        json_array_elements(?::json) WITH ORDINALITY AS m(x, n)
)
SELECT count(*) FROM r
"""


def _text(value: str | None) -> str | None:
    """PostgreSQL text cannot hold NUL (``postgres_base._NulFreeText`` says why): as U+FFFD, like every other
    text parameter. In JSON, a NUL would be a ``\\u0000`` escape, which ``->>`` refuses."""
    return value.replace("\x00", "\ufffd") if value else value


class PostgresRunsMixin(RunsMixin):
    """``finish_run`` as a single statement."""

    def finish_run(
        self, run_id: str, conversation_id: str, summary: Mapping[str, Any], events: Sequence[BaseEvent],
        new_messages: Sequence[Message], active_agent: str | None = None,
    ) -> None:
        if any(map(is_test_start, events)):  # the shared path marks the run as a test run
            return super().finish_run(run_id, conversation_id, summary, events, new_messages, active_agent)
        now = time.time()
        params = (
            now, active_agent, conversation_id, run_id,
            summary["status"], summary["output"], summary.get("error"), now, summary["duration_ms"],
            summary["steps"], summary["prompt_tokens"], summary["completion_tokens"], run_id,
            json.dumps([(e.seq, e.type, e.step, e.ts, e.model_dump_json()) for e in events]),
            now, conversation_id,
            json.dumps([{"role": m.role, "content": _text(m.content), "tool_calls": tool_calls_json(m),
                         "tool_call_id": _text(m.tool_call_id), "name": _text(m.name)} for m in new_messages]),
        )
        try:
            try:
                with self._autocommit() as conn:
                    (recorded,) = conn.execute(_FINISH, params).fetchone()
            except psycopg.errors.UniqueViolation as exc:
                if exc.diag.constraint_name != "messages_conversation_id_seq_key":
                    raise
                # another writer added messages after this statement's snapshot: the shared path (a transaction
                # that locks the conversation's row, then reads its last seq) cannot collide
                return super().finish_run(run_id, conversation_id, summary, events, new_messages, active_agent)
        except self.errors:
            self._finish_failed(run_id)
            raise
        finally:
            self._release(run_id)
        if not recorded:
            log.info("run %s finished after its conversation %s was deleted: not recorded", run_id, conversation_id)
