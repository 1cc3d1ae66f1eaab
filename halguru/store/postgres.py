"""PostgreSQL implementation of the store, for several serve replicas and workers sharing one database
(``HALGURU_DATABASE_URL=postgresql://...``; SQLite stays the default).

It is the same table mixins as SQLite's (``sql_base`` says how they serve both) over a psycopg 3 connection
pool (``postgres_base``), with what only PostgreSQL has: migrations applied under an advisory lock, so that
replicas starting together do not race (the second waits, then finds nothing to do); the job queue's claims
with ``FOR UPDATE SKIP LOCKED``; and ``LISTEN/NOTIFY`` to wake idle workers the moment a job is queued in
another process (``JobListener``), where SQLite polls a counter.

Writes that belong together are one transaction, as on SQLite: a run's final events, status and new
messages commit together or not at all.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

import psycopg

from halguru.errors import StoreError, StoreUnavailable
from halguru.store.base import Store
from halguru.store.migration_runner import apply
from halguru.store.postgres_base import CHANNEL, PostgresBase, first_line
from halguru.store.postgres_migrations import MIGRATIONS
from halguru.store.postgres_runs import PostgresRunsMixin
from halguru.store.sql_audit import AuditMixin
from halguru.store.sql_console import ConsoleMixin
from halguru.store.sql_conversations import ConversationsMixin
from halguru.store.sql_deployments import DeploymentsMixin
from halguru.store.sql_identity import IdentityMixin
from halguru.store.sql_inflight import InFlightMixin
from halguru.store.sql_jobs import JobsMixin
from halguru.store.sql_keys import KeysMixin
from halguru.store.sql_message_keys import MessageKeysMixin
from halguru.store.sql_push import PushMixin
from halguru.store.sql_resume import ResumeMixin
from halguru.store.sql_stats import StatsMixin

log = logging.getLogger(__name__)

PING_WAIT_S = 2.0  # a readiness probe's wait for a pooled connection
WAKE_CHECK_S = 0.05  # wait_for_jobs looks at ``woken`` at least this often


class JobListener:
    """One ``LISTEN halguru_jobs`` connection per store, on a daemon thread that counts notifications;
    ``wait`` returns when the count moves. One connection serves every waiting thread of the process, and a
    lost connection is opened again (counting as a notification: one may have been missed meanwhile)."""

    def __init__(self, connect: Any):
        self._connect = connect
        self._count = 0
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self._listen, name="halguru-store-listen", daemon=True)
                self._thread.start()
        self._ready.wait(5)  # listening before the first wait counts from here

    def _bump(self) -> None:
        with self._changed:
            self._count += 1
            self._changed.notify_all()

    def _listen(self) -> None:
        lost = False
        while not self._stop.is_set():
            try:
                with self._connect() as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    if lost:
                        log.info("job notifications back")
                    lost = False
                    if self._ready.is_set():
                        self._bump()  # reconnected
                    self._ready.set()
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=0.5):
                            self._bump()
            except (psycopg.Error, StoreError, StoreUnavailable) as exc:
                # once per outage, not every second of it
                (log.debug if lost else log.warning)("job notifications lost (%s); listening again", exc)
                lost = True
                self._ready.set()  # waiters fall back to their timeout meanwhile
                self._stop.wait(1)

    def wait(self, timeout: float, woken: threading.Event) -> None:
        """Until a notification, ``woken``, or ``timeout`` seconds; ``woken`` is looked at every 50 ms."""
        self._start()
        deadline = time.monotonic() + timeout
        with self._changed:
            seen = self._count
            while self._count == seen and not woken.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._changed.wait(min(WAKE_CHECK_S, left))

    def stop(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(2)


class PostgresStore(ConversationsMixin, InFlightMixin, PostgresRunsMixin, ResumeMixin, KeysMixin, JobsMixin,
                    IdentityMixin, AuditMixin, ConsoleMixin, StatsMixin, DeploymentsMixin, PushMixin, MessageKeysMixin,
                    PostgresBase):
    """The store in a PostgreSQL database (``url``: postgresql://USER:PASSWORD@HOST:PORT/DB). ``lease``
    (seconds) overrides how long a run stays alive without a renewal (``HALGURU_RUN_LEASE``, else 30 s);
    ``migrate=False`` opens it without applying pending migrations (`halguru db status`); ``statement_timeout``
    (seconds, 0: none; default ``postgres_base.STATEMENT_TIMEOUT_S``) cancels a pooled connection's statement
    that runs longer."""

    MIGRATIONS = MIGRATIONS

    def __init__(self, url: str, *, lease: float | None = None, migrate: bool = True,
                 statement_timeout: float | None = None):
        self._init_leases(lease)
        self._init_keys()
        super().__init__(url, statement_timeout=statement_timeout)
        self._listener = JobListener(self.connect)
        if migrate:
            try:
                self.migrate()
                self.heals = True
                self.reap_expired_runs()  # runs of processes that died are interrupted for good
            except BaseException as exc:
                self.close()
                if isinstance(exc, psycopg.Error):  # the user may not create tables, ...
                    raise StoreError(f"cannot open the PostgreSQL store at {self.location}: "
                                     f"{first_line(exc)}") from None
                raise

    def migrate(self) -> list[str]:
        """Apply the pending migrations in one transaction, under an advisory lock (a replica starting at the
        same time waits, then finds them applied); the names applied."""
        with self._tx() as conn:
            conn.execute("SET LOCAL statement_timeout = 0")  # an index built on a large table takes what it takes
            self._lock(conn, "migrations", "schema")
            return apply(conn, MIGRATIONS)

    def close(self) -> None:
        """Stop renewing leases (runs still held will read interrupted once theirs pass), stop listening, and
        close the pool."""
        self._stop_leases()
        self._listener.stop()
        super().close()

    def ping(self) -> None:
        """Raise StoreError unless the database answers, has its tables and takes writes (not a read-only standby), and
        StoreUnavailable when no connection comes within PING_WAIT_S (a readiness probe waits no longer)."""
        try:
            with self._tx(wait=PING_WAIT_S) as conn:
                conn.execute("SELECT count(*) FROM migrations").fetchone()
                # the tables every request uses are there (one lost under a recorded migration is not made again)
                conn.execute("SELECT 1 FROM conversations, messages, runs, events, approvals, checkpoints, jobs, "
                             "api_keys, users LIMIT 0").fetchall()
                (read_only,) = conn.execute("SHOW transaction_read_only").fetchone() or ("off",)
                if read_only == "on":
                    raise StoreError(f"the store is not writable: {self.location} is read-only")
        except psycopg.Error as exc:
            raise StoreError(f"the store is not writable: {first_line(exc)}") from None

    def wait_for_jobs(self, timeout: float, woken: threading.Event) -> None:
        """Block until a job is queued (NOTIFY from any process's ``enqueue_job``, retry or failed attempt
        queued again), ``woken`` is set, or ``timeout`` seconds pass."""
        self._listener.wait(timeout, woken)


if TYPE_CHECKING:  # the type checker holds PostgresStore to the Store protocol
    def _implements(store: PostgresStore) -> Store:
        return store
