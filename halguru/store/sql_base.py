"""What the SQL table mixins (``sql_runs``, ``sql_resume``, ``sql_keys``, ``sql_jobs``, ``sql_conversations``,
``sql_identity``) need from a backend: a write transaction, reads as dicts, and the few places where SQLite and
PostgreSQL differ.

The mixins are written once, in the SQL both databases speak (``?`` placeholders, ``ON CONFLICT``,
``RETURNING``, ``coalesce``), and serve both stores: ``SQLiteStore`` (``sqlite_base``) and ``PostgresStore``
(``postgres_base``, which turns ``?`` into psycopg's ``%s``). One copy of each query means one behaviour,
and the same test suites run on both backends to hold it.

Where the two differ is concurrency. SQLite has one writer at a time (``BEGIN IMMEDIATE``), so a transaction
that reads and then writes sees nothing change in between. PostgreSQL runs writers at once (READ COMMITTED),
so the mixins mark every such read-then-write with ``_lock(conn, scope, key)``: a no-op on SQLite, a
transaction-scoped advisory lock on PostgreSQL that serializes exactly the writers that touch one key (one
queue key, one rate bucket, one channel thread...) and nobody else. The other hooks: ``FOR_UPDATE`` /
``SKIP_LOCKED`` suffixes (empty on SQLite), ``_notify`` (PostgreSQL wakes idle workers) and ``errors`` (the
driver's exception classes).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from halguru.errors import ConversationBusy, ConversationPaused


class SQLCursor(Protocol):
    """What the mixins read from a statement: rows by index and by column name, ``rowcount``."""

    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class SQLConnection(Protocol):
    """A connection inside a transaction (``sqlite3.Connection`` as it is; psycopg through an adapter)."""

    def execute(self, sql: str, parameters: Any = ..., /) -> Any: ...
    def executemany(self, sql: str, parameters: Any, /) -> Any: ...


def values(rows: int, columns: int) -> str:
    """The VALUES of a multi-row INSERT, ``(?, ?), (?, ?)``: one statement for many rows (on PostgreSQL each
    statement costs the client ~0.1 ms of CPU, more than the rows it carries)."""
    row = f"({', '.join('?' * columns)})"
    return ", ".join([row] * rows)


def agent_filter(agent: str | None, agents: Sequence[str] | None,
                 column: str = "agent") -> tuple[list[str], list[Any]] | None:
    """The WHERE clauses and parameters a listing starts from: ``agent`` (one name) or ``agents`` (names; None:
    any agent). None when no row can match (an empty ``agents``), so the listing answers [] without a query."""
    names = [agent] if agent else list(agents) if agents is not None else None
    if names is None:
        return [], []
    if not names:
        return None
    return [f"{column} IN ({','.join('?' * len(names))})"], list(names)


MAX_AGENT_BRANCHES = 64
"""Past this many agents a listing filters with one ``IN`` (SQLite's compound SELECT is capped at 500 terms)."""


def newest_conversations(agents: Sequence[str] | None, clauses: Sequence[str], params: Sequence[Any],
                         limit: int, *, split: bool = True) -> tuple[str, list[Any]]:
    """A derived table (SQL and its parameters) of at most ``limit`` conversations matching ``clauses`` (on
    ``c``), newest activity first, each agent's read apart: ``UNION ALL`` of one ``agent = ?`` branch per name,
    each walking the ``(agent, updated)`` index from its newest and stopping after ``limit``.

    With one ``agent IN (...)`` both engines gathered every matching conversation and sorted them all (the
    ``(agent, updated)`` index is in order per agent only), and a listing's per-row subqueries (message
    counts, last status) ran for each before the LIMIT: 150 ms with 100,000 conversations on SQLite, for 20
    shown. The caller selects its columns and subqueries over this table, so those run for ``limit`` rows.
    ``split=False`` (PostgreSQL, ``SQLBase.SPLIT_AGENTS``): one ``IN``, as that planner walks the ``updated``
    index backwards itself and planning the branches cost it more (4 ms against 0.8) than they saved."""
    names = [None] if agents is None else list(dict.fromkeys(agents))
    if len(names) > (MAX_AGENT_BRANCHES if split else 1):
        names = [None]
        clauses = [f"c.agent IN ({','.join('?' * len(agents or []))})", *clauses]
        params = [*(agents or []), *params]
    branches, values = [], []
    for i, name in enumerate(names):
        where = [*(["c.agent = ?"] if name is not None else []), *clauses]
        branches.append(f"SELECT * FROM (SELECT c.* FROM conversations c"
                        f"{' WHERE ' + ' AND '.join(where) if where else ''} "
                        f"ORDER BY c.updated DESC, c.id LIMIT ?) b{i}")
        values += [*([name] if name is not None else []), *params, limit]
    return " UNION ALL ".join(branches), values


def after_position(after: tuple[float, str] | None, updated: str = "c.updated",
                   id: str = "c.id", *, oldest_first: bool = False) -> tuple[list[str], list[Any]]:
    """The keyset clause of a listing ordered ``updated DESC, id`` (``oldest_first``: ``updated, id``): the rows
    after ``after`` (the last row's ``(updated, id)``). A row bumped or added meanwhile does not shift the rest,
    as an OFFSET would. The plain ``updated <= ?`` (``>=``) lets both engines start the index scan there instead
    of filtering from the top."""
    if after is None:
        return [], []
    start, beyond = (">=", ">") if oldest_first else ("<=", "<")
    return [f"{updated} {start} ?", f"({updated} {beyond} ? OR {id} > ?)"], [after[0], after[0], after[1]]


def like_pattern(text: str) -> str:
    """``%text%`` lower-cased, with LIKE's own characters escaped (``ESCAPE '\\'``): a search for the text as
    typed, matched against a column folded with ``SQLBase.FOLD``."""
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


# Lock scopes: the second key of PostgreSQL's two-key advisory locks (the first is the hashed key).
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # what both databases' integers hold
LOCK_SCOPES = {"migrations": 1, "queue": 2, "rate": 3, "thread": 4, "channel_message": 5, "schedule": 6,
               "effect": 7, "conversation": 8, "idempotency": 9, "user": 10, "audit": 11,
               "deployment": 12, "push": 13, "waiting": 14, "owned": 15}


class SQLBase:
    """The backend hooks; ``SQLiteBase`` and ``PostgresBase`` implement them."""

    location: str  # where the database is, for messages (a file path, or host/database without a password)
    errors: tuple[type[Exception], ...] = ()  # the driver's errors (a failed lease renewal is logged, retried)
    FOR_UPDATE = ""  # appended to a SELECT whose rows the transaction then updates
    SKIP_LOCKED = ""  # appended to the claim's SELECT: concurrent claimers pass over each other's rows
    WRITE_PAUSE = 0.0  # seconds a write done in several transactions (a prune) waits between two of them
    SPLIT_AGENTS = True  # a listing reads each agent's newest conversations apart (``newest_conversations``)
    PER_ROW = ""  # ends a correlated EXISTS that must be tested row by row (``search_conversations``' common word)
    FOLD = "lower({})"  # SQL lower-casing a text column as Python's str.lower does (search), beyond ASCII

    def _text_sources(self, text: str) -> list[tuple[str, list[Any]]]:
        """SELECTs of ``id``s of conversations whose messages, then whose titles, may hold ``text`` (at least those
        that do), each with its parameters: the folded ``LIKE``, which PostgreSQL answers for the messages from
        its trigram index (``pg016_message_text``); SQLite asks its full-text index."""
        pattern = like_pattern(text)
        return [(f"SELECT m.conversation_id AS id FROM messages m WHERE {self.FOLD.format('m.content')} "
                 "LIKE ? ESCAPE '\\'", [pattern]),
                (f"SELECT c.id FROM conversations c WHERE {self.FOLD.format('c.title')} LIKE ? ESCAPE '\\'", [pattern])]

    def _tx(self, relaxed: bool = False) -> AbstractContextManager[Any]:
        """One write transaction on this thread's connection; a nested call joins the outer one.

        ``relaxed``: the commit need not wait for the disk. A crash of the database's host may then lose what
        committed in its last moments, never half of a transaction (PostgreSQL: also a crash of the server
        itself, at most the last ~0.6 s, three ``wal_writer_delay``). SQLite's WAL at ``synchronous=NORMAL``
        (the default store) gives every transaction that guarantee; on PostgreSQL only what every request
        writes takes it (a new conversation, a run's start, events, messages and lease), since waiting for
        the disk there is most of a request's time. Checkpoints, jobs, channel messages and their effects,
        identity, keys, audit and deployments always wait for the disk."""
        raise NotImplementedError

    def _autocommit(self) -> AbstractContextManager[Any]:
        """This thread's connection outside any transaction (inside one, that one): each statement commits by
        itself, relaxed (see ``_tx``). For a write that is one statement, and reads after it: on PostgreSQL it
        saves the BEGIN and the COMMIT, two of a request's round trips."""
        raise NotImplementedError

    def _not_busy(self, conn: SQLConnection, conversation_id: str, now: float, paused: bool = True) -> None:
        """Raise ConversationBusy while a live run (its lease held) answers in the conversation, ConversationPaused
        (``paused``) while one of its turns waits for an approval."""
        row = conn.execute("SELECT id, lease_expires FROM runs WHERE conversation_id = ? AND status = 'running' "
                           "AND lease_expires > ? LIMIT 1", (conversation_id, now)).fetchone()
        if row is not None:
            raise ConversationBusy(conversation_id, row["id"], row["lease_expires"] - now)
        row = conn.execute("SELECT run_id FROM approvals WHERE conversation_id = ? AND status = 'pending' LIMIT 1",
                           (conversation_id,)).fetchone() if paused else None
        if row is not None:
            raise ConversationPaused(conversation_id, row["run_id"])

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """A read, as plain dicts (inside this thread's open transaction, if there is one)."""
        raise NotImplementedError

    @staticmethod
    def _bindable(params: Sequence[Any]) -> list[Any]:
        """A read's parameters as both databases take them, matching what they matched: integers past 64 bits at
        its bounds (`logs -n 99999999999999999999` means every run; SQLite raised OverflowError, PostgreSQL
        "bigint out of range"), no stored integer lies beyond them; and text with bytes that are not UTF-8 (an
        argument `logs -c $'\\xff'`, which Python holds as a lone surrogate, a UnicodeEncodeError) escaped, as
        no stored text holds them."""
        return [max(INT64_MIN, min(p, INT64_MAX)) if type(p) is int
                else p.encode("utf-8", "backslashreplace").decode("utf-8") if type(p) is str and not p.isascii()
                else p for p in params]

    def _lock(self, conn: Any, scope: str, key: str) -> None:
        """Serialize the transactions that touch ``key`` in ``scope`` until this one ends (read-then-write)."""

    def _notify(self, conn: Any) -> None:
        """A job became runnable: wake the idle workers of other processes when this transaction commits."""

    def _snapshot(self, conn: Any) -> None:
        """Make this (just begun) transaction read one consistent snapshot of every table (`halguru db copy`);
        SQLite's write transaction is one already."""

    def _long_transaction(self, conn: Any) -> None:
        """This (just begun) transaction may wait long between statements (`halguru db copy`'s reading and writing
        ones wait for each other): PostgreSQL does not end it as a frozen process's (IDLE_TRANSACTION_S)."""

    def _after_copy(self, conn: Any) -> None:
        """Rows were inserted with their ids (`halguru db copy`): let generated ids continue after them."""

    def _analyze(self, tables: Sequence[str]) -> None:
        """Tables were filled at once (`halguru db copy`, committed): give the planner their statistics now."""
