"""PostgreSQL connections for the store: a psycopg 3 connection pool, transactions, and the ``sql_base`` hooks.

The SQL mixins are written with SQLite's ``?`` placeholders and read rows by index and by name (as
``sqlite3.Row`` allows); ``_Connection`` turns ``?`` into psycopg's ``%s`` (so no query may hold a literal
``?``, such as a jsonb operator; ``%`` is escaped) and ``_row`` gives rows that behave like ``sqlite3.Row``.
Every pooled connection is in autocommit mode: a read outside a transaction is one statement and holds
nothing, and ``_tx`` opens an explicit transaction (``BEGIN``...``COMMIT``) that a nested ``_tx`` on the same
thread joins, as on SQLite. Transactions are never held across an ``await``: every store method is
synchronous.

Concurrency (READ COMMITTED): the mixins' read-then-write transactions take ``pg_advisory_xact_lock`` on
their key (``_lock``), released at commit or rollback, so two replicas serialize on one queue key, rate
bucket or channel thread without locking anything else; a conversation's writers lock its row instead.
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import psycopg
from psycopg.abc import Buffer
from psycopg.types.string import StrDumperUnknown
from psycopg_pool import ConnectionPool, PoolTimeout

from halguru.errors import StoreError, StoreTimeout, StoreUnavailable
from halguru.store.sql_base import LOCK_SCOPES, SQLBase

log = logging.getLogger(__name__)
POOL_SIZE = 10  # connections per store (per process); more threads than this wait for one
CONNECT_TIMEOUT_S = 5
# how long a statement waits for a pooled connection: long enough for a burst (statements take milliseconds),
# short enough that an outage is answered with a 503 in seconds, not after psycopg_pool's 30
POOL_WAIT_S = 10.0
CHANNEL = "halguru_jobs"  # NOTIFY'd when a job becomes runnable; idle workers LISTEN on it
# a transaction idle this long is ended by the server: its process is frozen or cut off (a paused VM, a network
# partition, where the server keeps the session until TCP gives up, hours), and its locks held every other
# replica's writers of the same key, each on a pooled connection, until no connection was left. Ours take
# milliseconds between statements; `halguru db copy`'s long ones say so (``_long_transaction``).
IDLE_TRANSACTION_S = 60
# a network path to the server that drops packets (a partition, a host powered off, a failover moving its address)
# left each statement waiting until the kernel gave up (tcp_retries2: ~15 minutes), and every request with it,
# rather than a 503: a connection whose data stays unacknowledged this long, or that stays silent to keepalive
# probes, is closed (Linux; elsewhere libpq ignores ``tcp_user_timeout``). A long query is unaffected: the
# server acknowledges it and answers the probes. The URL's own settings win (``?tcp_user_timeout=...``).
NETWORK_TIMEOUT_S = 10
# a runaway statement (a plan gone wrong on a grown table, a lock waited for behind a stuck transaction) held its
# pooled connection for as long as it ran, hours, and each request repeating it took another, until the pool was
# empty and every request waited: a pooled connection's statement is cancelled past this many seconds (the
# ``database_statement_timeout`` setting; 0: none), read as StoreTimeout (serve's 503). The URL's own
# ``statement_timeout`` (``?options=-cstatement_timeout%3D...``) wins; migrations and `halguru db copy` have none.
STATEMENT_TIMEOUT_S = 30.0


class _NulFreeText(StrDumperUnknown):
    """PostgreSQL text cannot hold NUL (SQLite's can): a NUL in a message, a tool's result or a model's output
    is stored as U+FFFD instead of failing the whole transaction (the run's final write, say)."""

    def dump(self, obj: str) -> Buffer | None:
        return super().dump(obj.replace("\x00", "\ufffd"))


def _nul_free(conn: psycopg.Connection[Any]) -> None:
    conn.adapters.register_dumper(str, _NulFreeText)


IDLE_CHECK_S = 2.0  # a pooled connection idle longer than this is checked with a round trip before use
_last_used: weakref.WeakKeyDictionary[psycopg.Connection[Any], float] = weakref.WeakKeyDictionary()


def _alive(conn: psycopg.Connection[Any]) -> bool:
    """Whether a pooled connection may be handed out, without a round trip per checkout (it was a third of a
    request's statements): a connection the server closed (a restart, a failover, ``pg_terminate_backend``) has
    data or EOF waiting on its idle socket; one idle for a while is checked with an empty query, as psycopg
    does."""
    try:
        idle = time.monotonic() - _last_used.get(conn, 0.0)
        if idle > IDLE_CHECK_S or select.select([conn.fileno()], [], [], 0)[0]:
            ConnectionPool.check_connection(conn)
    except (psycopg.Error, OSError):
        return False
    return True


def _fold(conn: psycopg.Connection[Any]) -> str:
    """``SQLBase.FOLD`` for this database: lower() in ICU's root collation, which folds as Python's str.lower does
    (SQLite's search): the database's default folded ASCII only under LC_CTYPE C ("école" found no "École"), and
    under C.UTF-8 or en_US.UTF-8 no final sigma ("ΚΟΣΜΟΣ" read "κοσμοσ": "κοσμος" found nothing). A server built
    without ICU keeps its default. A console search of 100,000 messages took as long either way (~0.1-0.2 s)."""
    (icu,) = conn.execute("SELECT EXISTS (SELECT 1 FROM pg_collation WHERE collname = 'und-x-icu')").fetchone() \
        or (False,)
    return 'lower({} COLLATE "und-x-icu")' if icu else PostgresBase.FOLD


def _options(url: str, statement_timeout: float = 0) -> str:
    """The pooled connections' ``options``: synchronous_commit off (see ``PostgresBase._pool``), transactions idle
    past IDLE_TRANSACTION_S ended, statements past ``statement_timeout`` seconds cancelled (0: the server's
    own setting), then the URL's own, which win where they set the same (a later ``-c`` does)
    (``?options=-csearch_path%3Dhalguru``) or PGOPTIONS, which a setting of ours would otherwise replace: the
    tables went to ``public`` instead of the schema the operator named."""
    theirs = psycopg.conninfo.conninfo_to_dict(url).get("options") or os.environ.get("PGOPTIONS", "")
    limit = f"-c statement_timeout={max(1, round(statement_timeout * 1000))} " if statement_timeout > 0 else ""
    return (f"-c synchronous_commit=off -c idle_in_transaction_session_timeout={int(IDLE_TRANSACTION_S * 1000)} "
            f"{limit}{theirs}").strip()


def _network(url: str) -> dict[str, Any]:
    """The connections' limits on a silent network (NETWORK_TIMEOUT_S), less those the URL sets itself."""
    ours = {"tcp_user_timeout": int(NETWORK_TIMEOUT_S * 1000), "keepalives": 1,
            "keepalives_idle": max(1, int(NETWORK_TIMEOUT_S)), "keepalives_interval": 2, "keepalives_count": 3}
    theirs = psycopg.conninfo.conninfo_to_dict(url)
    return {name: value for name, value in ours.items() if name not in theirs}


def first_line(exc: BaseException) -> str:
    """A driver error's first line (psycopg's go on with ``LINE 1:``, the statement and a caret): what a one-line
    error says."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def describe_url(url: str) -> str:
    """``postgresql://HOST:PORT/DB`` for messages: never the user's password. StoreError for a URL that is no
    PostgreSQL URL (the message does not echo it either: it may hold a password). The URL is read as libpq
    reads it (a password may hold ``#`` or ``?``), and refused where libpq would take part of the password
    for the host or the port (an ``@`` or ``/`` in it, not percent-encoded)."""
    try:
        parts = psycopg.conninfo.conninfo_to_dict(url) if url.partition("://")[0] in ("postgresql", "postgres") \
            else {}
    except psycopg.Error:
        parts = {}
    host, port = str(parts.get("host") or ""), str(parts.get("port") or "5432")
    dbname = str(parts.get("dbname") or "")  # "s3c@ret/pw" as a password made host "ret" and dbname "pw@HOST/DB"
    if not host or "@" in host + dbname or "/" in dbname or not all(p.isdigit() for p in port.split(",")):
        raise StoreError("the database URL is not a PostgreSQL URL: give postgresql://USER:PASSWORD@HOST:PORT/DB, "
                         "with any @ / : in the user or password percent-encoded (%40 %2F %3A) "
                         "(HALGURU_DATABASE_URL, database_url in config.toml, or --url)")
    host = f"[{host}]" if ":" in host else host  # an IPv6 address
    return f"postgresql://{host}:{port}/{dbname}"


class _Row(tuple[Any, ...]):
    """A row read by index, by column name, or as a mapping (``dict(row)``), like ``sqlite3.Row``."""

    names: dict[str, int]

    def __new__(cls, values: Sequence[Any], names: dict[str, int]) -> _Row:
        row = super().__new__(cls, values)
        row.names = names
        return row

    def __getitem__(self, key: Any) -> Any:
        return super().__getitem__(self.names[key] if isinstance(key, str) else key)

    def keys(self) -> list[str]:
        return list(self.names)


def _row(cursor: Any) -> Callable[[Sequence[Any]], _Row]:
    names = {column.name: i for i, column in enumerate(cursor.description or ())}
    return lambda values: _Row(values, names)


@lru_cache(maxsize=1024)
def _pg_sql(sql: str) -> str:
    return sql.replace("%", "%%").replace("?", "%s")


class _Connection:
    """A pooled connection as the mixins use it: ``execute`` and ``executemany`` with ``?`` placeholders."""

    def __init__(self, raw: psycopg.Connection[Any]):
        self.raw = raw

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> psycopg.Cursor[Any]:
        return self.raw.execute(_pg_sql(sql), parameters)

    def executemany(self, sql: str, parameters: Any, /) -> psycopg.Cursor[Any]:
        cursor = self.raw.cursor()
        rows = list(parameters)
        if rows:
            cursor.executemany(_pg_sql(sql), rows)
        return cursor


class _Local(threading.local):
    conn: _Connection | None = None  # this thread's open transaction, which a nested _tx joins


class PostgresBase(SQLBase):
    """The connection handling the store's table mixins build on, on PostgreSQL."""

    errors = (psycopg.Error, StoreError, StoreUnavailable)
    FOR_UPDATE = " FOR UPDATE"
    SKIP_LOCKED = " FOR UPDATE SKIP LOCKED"
    # the columns are COLLATE "C" (byte order), whose lower() folds ASCII only: the database's own locale folds,
    # where its server has no ICU (else ICU's root locale does: ``_fold``)
    FOLD = 'lower({} COLLATE "default")'
    PER_ROW = " OFFSET 0"  # else the planner hashed every message holding a common word first (1-2 s with 100,000)
    SPLIT_AGENTS = False  # its planner walks conversations_updated backwards for an agent IN (...) listing

    def __init__(self, url: str, *, pool_size: int = POOL_SIZE, statement_timeout: float | None = None):
        self.url = url
        self.statement_timeout = STATEMENT_TIMEOUT_S if statement_timeout is None else statement_timeout
        self.location = describe_url(url)
        self._recreated_at = -1e9
        self._recreated = ""  # what the last attempt to make lost tables again found
        self.heals = False  # whether lost tables are made again (a store opened to migrate, once it has)
        self._pool_size = pool_size
        self._local = _Local()
        self._pid = os.getpid()
        self._pool_lock = threading.Lock()
        self._opened_pool: ConnectionPool[Any] | None = None
        with self.connect() as conn:  # unreachable, refused, no such database: one clear error now
            self.FOLD = _fold(conn)

    def connect(self, **options: Any) -> psycopg.Connection[Any]:
        """A connection of its own (not pooled), autocommit; StoreError naming the host when it fails."""
        try:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S, row_factory=_row,
                                   **{**_network(self.url), **options})
            _nul_free(conn)
            return conn
        except psycopg.Error as exc:
            # psycopg's first line says what failed ("connection to server at ... failed: Connection refused")
            reason = first_line(exc).removeprefix("connection failed: ")
            raise StoreUnavailable(f"cannot reach the PostgreSQL store at {self.location}: {reason}") from None

    def _pool(self) -> ConnectionPool[Any]:
        """The pool, opened on first use (again in a forked child, which must not share its parent's)."""
        with self._pool_lock:
            if self._opened_pool is None or self._pid != os.getpid():
                self._pid, self._local = os.getpid(), _Local()
                # synchronous_commit off: the relaxed transactions (every request's) are the common case, so
                # they need no statement of their own; a strict one sets it on for itself (_tx). Writes happen
                # only in _tx, so nothing else commits relaxed.
                self._opened_pool = ConnectionPool(
                    self.url, min_size=1, max_size=self._pool_size, open=False, name="halguru-store",
                    timeout=POOL_WAIT_S, configure=_nul_free,
                    kwargs={"autocommit": True, "row_factory": _row, "connect_timeout": CONNECT_TIMEOUT_S,
                            "options": _options(self.url, self.statement_timeout), **_network(self.url)})
                self._opened_pool.open(wait=True, timeout=CONNECT_TIMEOUT_S * 2)
            return self._opened_pool

    @contextmanager
    def _connection(self, wait: float | None = None) -> Iterator[psycopg.Connection[Any]]:
        """A live pooled connection (waiting at most ``wait`` seconds for one, else POOL_WAIT_S); when it was
        last used decides whether its next checkout is checked.

        A connection the server dropped is replaced, not handed out, and the next pooled one is tried at once:
        psycopg_pool's own ``check`` waits 1 s, 2 s, 4 s... between tries, so after a PostgreSQL restart, with
        every pooled connection dead, requests outwaited their 10 s and answered 503 with the database up."""
        pool = self._pool()
        waited = POOL_WAIT_S if wait is None else wait
        deadline = time.monotonic() + waited
        try:
            raw = pool.getconn(timeout=waited)
            while not _alive(raw):
                raw.close()
                pool.putconn(raw)  # closed: the pool discards it and connects a replacement
                raw = pool.getconn(timeout=deadline - time.monotonic())
        except PoolTimeout:
            raise PoolTimeout(f"couldn't get a connection after {waited:.2f} sec") from None
        try:
            with raw:  # as ``pool.connection()``: commit, or roll back on an error
                yield raw
        finally:
            _last_used[raw] = time.monotonic()  # here, not in a pool ``reset`` (that hands the return to a thread)
            pool.putconn(raw)

    def close(self) -> None:
        """Close every pooled connection (this process's pool)."""
        with self._pool_lock:
            pool, self._opened_pool = self._opened_pool, None
        if pool is not None and self._pid == os.getpid():
            pool.close()

    @contextmanager
    def _lost(self) -> Iterator[None]:
        """The server went away or no pooled connection came in time: StoreUnavailable, one line naming it (a
        caller's CLI prints it, serve answers 503), not a driver traceback; a value too large for an index is a
        StoreError (serve: 400). Other database errors pass as they are."""
        try:
            yield
        except psycopg.errors.QueryCanceled as exc:  # an OperationalError too; retrying at once runs as long
            raise StoreTimeout(f"a statement on the PostgreSQL store at {self.location} was cancelled: "
                               f"{first_line(exc)} (database_statement_timeout: {self.statement_timeout:g} s)") \
                from exc
        except psycopg.errors.ProgramLimitExceeded as exc:  # an OperationalError, but the value's fault: an index
            # entry over ~8 KB fails at every try, and is no outage to wait out
            raise StoreError(f"a value is too large for the store ({first_line(exc)})") from exc
        except psycopg.OperationalError as exc:  # PoolTimeout is one
            reason = first_line(exc)
            raise StoreUnavailable(f"the PostgreSQL store at {self.location} failed: {reason}") from exc
        except psycopg.errors.UndefinedTable as exc:  # the database was dropped and made again, or emptied
            if not self.heals:  # opened not to migrate (`halguru db status`): it reads what is there
                raise
            raise StoreUnavailable(f"the PostgreSQL store at {self.location} {self._recreate_tables()}") from exc

    def _recreate_tables(self) -> str:
        """Apply the migrations to a database that lost its tables while this process ran (a dropped and
        recreated database, an empty restore), at most once in 30 s; each request until then got a 500 and a
        traceback in the log. Another replica doing it too waits on the migration lock. What happened, for the
        error: a table lost while its migration stays recorded cannot be made again here."""
        now = time.monotonic()
        if now - self._recreated_at < 30:
            return self._recreated
        self._recreated_at = now
        try:
            applied = self.migrate()
        except Exception as exc:  # a user without CREATE: the operator has to run `halguru db migrate`
            self._recreated = ("has lost its halguru tables and they could not be made again "
                               f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})")
        else:
            self._recreated = ("had no halguru tables (was the database made again?); they were created, try again"
                               if applied else "misses a halguru table whose migration is recorded: restore the "
                               "database from a copy (`halguru db copy`), or empty it to start over")
        log.warning("the PostgreSQL store %s", self._recreated, extra={"fields": {"store": self.location}})
        return self._recreated

    def migrate(self) -> list[str]:
        """Apply the pending migrations (PostgresStore's); the names applied."""
        raise NotImplementedError

    @contextmanager
    def _tx(self, relaxed: bool = False, wait: float | None = None) -> Iterator[_Connection]:
        local = self._local
        if local.conn is not None:
            yield local.conn
            return
        with self._lost(), self._connection(wait) as raw, raw.transaction():
            local.conn = _Connection(raw)
            try:
                if not relaxed:  # pooled connections commit without waiting for the disk (see _pool)
                    local.conn.execute("SET LOCAL synchronous_commit TO on")
                yield local.conn
            finally:
                local.conn = None

    @contextmanager
    def _autocommit(self) -> Iterator[_Connection]:
        if self._local.conn is not None:
            yield self._local.conn
            return
        with self._lost(), self._connection() as raw:  # pooled: autocommit, synchronous_commit off
            yield _Connection(raw)

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        params = self._bindable(params)
        if self._local.conn is not None:
            return [dict(row) for row in self._local.conn.execute(sql, params)]
        with self._lost(), self._connection() as raw:
            return [dict(row) for row in _Connection(raw).execute(sql, params)]

    def _lock(self, conn: Any, scope: str, key: str) -> None:
        if scope == "conversation":
            # the row's own lock, which a run's finish takes in its single statement (``postgres_runs``)
            conn.execute("SELECT 1 FROM conversations WHERE id = ? FOR UPDATE", (key,))
            return
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(?), ?)", (key, LOCK_SCOPES[scope]))

    def _notify(self, conn: Any) -> None:
        conn.execute(f"NOTIFY {CHANNEL}")  # delivered when (if) the transaction commits

    def _snapshot(self, conn: Any) -> None:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")

    def _long_transaction(self, conn: Any) -> None:
        conn.execute("SET LOCAL idle_in_transaction_session_timeout = 0")
        conn.execute("SET LOCAL statement_timeout = 0")  # a table copied in one statement takes what it takes

    def _analyze(self, tables: Sequence[str]) -> None:
        # else the planner guessed until autovacuum came (never, where it is off): listing the conversations whose
        # last run failed, of 100,000 copied, ran for over 10 minutes (80 ms after ANALYZE), by last status
        # cancelled 10 s, a search for a common word 4 s (25 ms each)
        with self._tx() as conn:  # ANALYZE runs in a transaction (VACUUM would not), so as long as it takes
            conn.execute("SET LOCAL statement_timeout = 0")
            conn.execute(f"ANALYZE {', '.join(tables)}")

    def _after_copy(self, conn: Any) -> None:
        for table, column in (("messages", "id"), ("jobs", "seq")):
            conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), "
                         f"coalesce(max({column}), 0) + 1, false) FROM {table}")
