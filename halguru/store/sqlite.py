"""SQLite implementation of the store (WAL, a connection per thread, BEGIN IMMEDIATE writers, busy timeout).

Writes that belong together happen in one transaction, so a crash (even SIGKILL) leaves either all of
them or none: a run's final events, its status and the conversation messages it added are committed
together. The tables are split by concern into mixins that PostgreSQL shares (``sql_base`` says how):
conversations (``sql_conversations``), runs and leases (``sql_runs``), checkpoints and approvals
(``sql_resume``), API keys (``sql_keys``), jobs, channels and schedules (``sql_jobs``), users and sign-in
(``sql_identity``), the audit log (``sql_audit``); SQLite's connections in ``sqlite_base``.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

from halguru.errors import StoreError
from halguru.store.base import Store
from halguru.store.migration_runner import apply
from halguru.store.migrations import MIGRATIONS
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
from halguru.store.sqlite_base import SQLiteBase, cannot_open


class SQLiteStore(ConversationsMixin, InFlightMixin, ResumeMixin, KeysMixin, JobsMixin, IdentityMixin, AuditMixin,
                  ConsoleMixin, StatsMixin, DeploymentsMixin, PushMixin, MessageKeysMixin, SQLiteBase):
    """The default store, one database file. ``lease`` (seconds) overrides how long a run stays alive
    without a renewal (``HALGURU_RUN_LEASE``, else 30 s); ``migrate=False`` opens it without applying
    pending migrations (`halguru db status`)."""

    MIGRATIONS = MIGRATIONS

    def __init__(self, path: Path, *, lease: float | None = None, migrate: bool = True):
        self._init_leases(lease)
        self._init_keys()
        super().__init__(path)
        if not migrate:
            return
        try:
            self.migrate()
        except sqlite3.DatabaseError as exc:
            self.close()
            raise cannot_open(path, exc) from None
        # one indexed UPDATE: runs of processes that died are interrupted for good; a read-only file (a mounted
        # backup, say) is still read (such runs read interrupted all the same)
        with contextlib.suppress(StoreError):
            self.reap_expired_runs()

    def migrate(self) -> list[str]:
        """Apply the pending migrations in one transaction; the names applied."""
        with self._tx() as conn:
            return apply(conn, MIGRATIONS)

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


_STORES: dict[Path | str, Store] = {}


def open_store(path: Path | None = None) -> Store:
    """The store at ``path`` (a SQLite file), else the configured one: PostgreSQL when ``database_url``
    (``HALGURU_DATABASE_URL``) is set, else the SQLite file in HALGURU_HOME. Opened once per process (per
    path or URL); the PostgreSQL driver is imported only then."""
    from halguru.config import get_settings

    settings = get_settings()
    if path is None and settings.database_url:
        url = settings.database_url
        store = _STORES.get(url)
        if store is None:
            from halguru.store.postgres import PostgresStore

            store = _STORES[url] = PostgresStore(url, statement_timeout=settings.database_statement_timeout)
        return store
    key = path or settings.database
    store = _STORES.get(key)
    if store is None:  # resolve only on first use: every run opens the store
        resolved = key.expanduser().resolve()
        store = _STORES.get(resolved) or SQLiteStore(resolved)
        _STORES[key] = _STORES[resolved] = store
    return store


if TYPE_CHECKING:  # the type checker holds SQLiteStore to the Store protocol
    def _implements(store: SQLiteStore) -> Store:
        return store
