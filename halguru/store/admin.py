"""Database administration, for `halguru db`: which migrations a database has, applying them, and copying a
whole installation from one database to another (SQLite to PostgreSQL when an operator scales out, or back).

A database is named by a target: ``sqlite:PATH`` (a SQLite file) or ``postgresql://USER:PASSWORD@HOST:PORT/DB``.
``configured_target()`` is the one the settings name (``database_url``, else the SQLite file in HALGURU_HOME).

The copy is table-driven (``TABLES``: every table of the schema and the columns both backends share), so it
runs in either direction. It reads the source in one transaction (one snapshot, even while the source is in
use: on SQLite it holds the write lock meanwhile, so stop `halguru serve` and workers for a long copy) and
writes the target in one transaction: the target has all of it or, after any failure, nothing new.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from halguru.errors import StoreError
from halguru.store.migration_runner import check_known
from halguru.store.sql_base import SQLBase

if TYPE_CHECKING:
    from halguru.store.postgres import PostgresStore
    from halguru.store.sqlite import SQLiteStore

# Every table the store keeps, parents before children (foreign keys), with the columns that are copied.
TABLES: dict[str, tuple[str, ...]] = {
    "users": ("id", "email", "name", "role", "password_hash", "email_verified", "totp_secret", "totp_enabled",
              "totp_last", "disabled", "failed_logins", "locked_until", "created", "last_login"),
    "identities": ("provider", "subject", "user_id", "email", "created"),
    "web_sessions": ("id_hash", "user_id", "csrf", "created", "last_seen", "expires", "mfa_done", "address",
                     "user_agent", "revoked"),
    "auth_tokens": ("token_hash", "purpose", "user_id", "data", "created", "expires", "used"),
    "recovery_codes": ("user_id", "code_hash", "created", "used"),
    "conversations": ("id", "agent", "title", "created", "updated", "active_agent", "owner", "taken_over_by",
                      "taken_over_since"),
    "messages": ("id", "conversation_id", "seq", "role", "content", "tool_calls", "tool_call_id", "name", "run_id",
                 "created", "author"),
    "runs": ("id", "conversation_id", "agent", "model", "input", "output", "status", "error", "started", "finished",
             "duration_ms", "steps", "prompt_tokens", "completion_tokens", "owner", "holder", "lease_expires",
             "test", "job_id", "cancel_requested"),
    "events": ("run_id", "seq", "type", "step", "ts", "data"),
    "approvals": ("run_id", "conversation_id", "agent", "agent_path", "model", "input", "call", "messages", "status",
                  "reason", "continued_by", "created", "resolved", "owner", "decided_by", "arguments_before",
                  "arguments_after", "claim_holder", "claim_expires"),
    "checkpoints": ("run_id", "kind", "conversation_id", "agent_path", "model", "input", "label", "state", "updated",
                    "resumed_by", "claim_holder", "claim_expires"),
    "checkpoint_steps": ("run_id", "step_id", "seq", "result"),
    "checkpoint_messages": ("run_id", "seq", "message"),
    "api_keys": ("id", "name", "prefix", "hash", "agents", "created", "expires", "revoked", "last_used", "scope",
                 "user_id"),
    "jobs": ("seq", "id", "kind", "agent", "queue_key", "payload", "status", "attempts", "max_attempts", "run_after",
             "idempotency_key", "owner", "created", "started", "finished", "holder", "lease_expires", "last_error",
             "result"),
    "job_effects": ("job_id", "key", "state", "value", "started", "updated"),
    "channel_threads": ("channel", "agent", "thread", "conversation_id"),
    "channel_messages": ("channel", "id", "agent", "conversation_id", "direction", "address", "body", "status",
                         "job_id", "created", "updated", "error"),
    "channel_opt_outs": ("channel", "agent", "ours", "sender", "reason", "since"),
    "schedules": ("id", "next_due", "updated"),
    "audit": ("seq", "time", "actor", "action", "target", "details", "address", "alg", "prev_hash", "hash"),
    "deployments": ("agent", "version", "sha256", "manifest", "bundle", "published_by", "created", "active",
                    "activated"),
    "push_subscriptions": ("endpoint", "user_id", "p256dh", "auth", "session", "created", "last_success",
                           "last_failure", "failures"),
    "server_secrets": ("name", "value", "created"),
    "message_keys": ("owner", "conversation_id", "key", "request_hash", "status", "run_id", "created"),
    "rate_hits": ("bucket", "ts"),  # copied only when asked: hits of the last window, gone a minute later
}
DERIVED = ("analytics_days", "analytics_marks", "in_flight")
"""Tables not copied: computed from the others (``sql_analytics``; the target computes its own again), or each
live process's own counts (``sql_inflight``: seconds long)."""
BATCH = 1000  # rows a copy reads and inserts at a time


@dataclass(frozen=True)
class MigrationState:
    name: str
    applied: float | None  # when (epoch seconds); None: pending


def configured_target() -> str:
    """The database the settings name: ``database_url`` if set, else ``sqlite:`` and the SQLite file."""
    from halguru.config import get_settings

    settings = get_settings()
    return settings.database_url or f"sqlite:{settings.database.expanduser()}"


def open_database(target: str, *, migrate: bool = True, must_exist: bool = False) -> SQLiteStore | PostgresStore:
    """The store a target names (a new one, not the process's cached store; close it after use).
    ``must_exist``: a SQLite file that is not there is an error instead of a new database."""
    if target.startswith(("postgresql://", "postgres://")):
        from halguru.store.postgres import PostgresStore

        return PostgresStore(target, migrate=migrate)
    if target.startswith("sqlite:"):
        from halguru.store.sqlite import SQLiteStore

        path = Path(target.removeprefix("sqlite:")).expanduser()
        if must_exist and not path.is_file():
            raise StoreError(f"no SQLite database at {path}")
        return SQLiteStore(path, migrate=migrate)
    raise StoreError(f"unknown database {target.split('://')[0].split(':')[0]!r}: give sqlite:PATH or "
                     "postgresql://USER:PASSWORD@HOST:PORT/DB")


def migration_status(target: str) -> list[MigrationState]:
    """Every migration of the target's backend, in order, with when it was applied (None: pending); applies
    nothing (a SQLite file that does not exist yet has them all pending, and is not created)."""
    if target.startswith("sqlite:") and not Path(target.removeprefix("sqlite:")).expanduser().is_file():
        from halguru.store.migrations import MIGRATIONS

        return [MigrationState(m.__name__, None) for m in MIGRATIONS]
    store = open_database(target, migrate=False)
    try:
        try:
            rows = store._rows("SELECT name, applied FROM migrations")
        except store.errors:  # no migrations table: a new database
            rows = []
        applied = {r["name"]: r["applied"] for r in rows}
        check_known(set(applied), store.MIGRATIONS)
        return [MigrationState(m.__name__, applied.get(m.__name__)) for m in store.MIGRATIONS]
    finally:
        store.close()


def migrate(target: str) -> list[str]:
    """Apply the target's pending migrations (one transaction); the names applied."""
    store = open_database(target, migrate=False)
    try:
        return store.migrate()
    finally:
        store.close()


def _count(conn: Any, table: str) -> int:
    return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def _copy_table(read: Any, write: Any, table: str, columns: tuple[str, ...]) -> int:
    names = ", ".join(columns)
    cursor = read.execute(f"SELECT {names} FROM {table} ORDER BY {columns[0]}")
    insert = f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' * len(columns))})"
    copied = 0
    while rows := cursor.fetchmany(BATCH):
        write.executemany(insert, [tuple(row) for row in rows])
        copied += len(rows)
    return copied


def copy_database(source: str, target: str, *, force: bool = False, rate_hits: bool = False) -> dict[str, int]:
    """Copy every table from ``source`` to ``target`` (both migrated to the current schema first); the rows
    copied per table. The target must hold no rows unless ``force``, which empties its tables first, in the
    same transaction, so that it ends as a copy of the source. Every table's row count is checked against
    the source's before the target's transaction commits."""
    src = open_database(source, must_exist=True)
    try:
        dst = open_database(target)
    except BaseException:
        src.close()
        raise
    try:
        if (type(src), src.location) == (type(dst), dst.location):
            raise StoreError(f"{source} and {target} are the same database")
        copied = _copy(src, dst, force=force, rate_hits=rate_hits)
        dst._analyze(list(copied))
        return copied
    finally:
        src.close()
        dst.close()


def _copy(src: SQLBase, dst: SQLBase, *, force: bool, rate_hits: bool) -> dict[str, int]:
    tables = [t for t in TABLES if rate_hits or t != "rate_hits"]
    copied: dict[str, int] = {}
    with src._tx() as read, dst._tx() as write:
        src._snapshot(read)
        src._long_transaction(read)
        dst._long_transaction(write)
        held = {t: n for t in TABLES if (n := _count(write, t))}
        if held and not force:
            listed = ", ".join(f"{t} ({n})" for t, n in held.items())
            raise StoreError(f"{dst.location} already holds rows: {listed}; give --force to replace them")
        for table in [*reversed(TABLES), *DERIVED]:  # children first (foreign keys)
            write.execute(f"DELETE FROM {table}")
        for table in tables:
            copied[table] = _copy_table(read, write, table, TABLES[table])
        dst._after_copy(write)
        for table in tables:
            expected, found = _count(read, table), _count(write, table)
            if copied[table] != expected or found != expected:
                raise StoreError(f"copying {table} went wrong: {expected} rows in the source, {found} in the "
                                 f"target; nothing was written")
    return copied
