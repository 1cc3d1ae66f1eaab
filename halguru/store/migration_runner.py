"""Applying schema migrations (either backend's list: ``migrations`` for SQLite, ``postgres_migrations``):
pending ones in the caller's transaction, a SQLite store copied first, a database from a newer halguru refused."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def apply(conn: Any, migrations: Sequence[Callable[[Any], None]]) -> list[str]:
    """Apply the migrations not yet recorded in the ``migrations`` table, in the caller's transaction (all or
    none), recording each by name; the names applied. An existing SQLite store is copied first (``back_up``)."""
    conn.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied DOUBLE PRECISION NOT NULL)")
    done = {row[0] for row in conn.execute("SELECT name FROM migrations").fetchall()}
    check_known(done, migrations)
    pending = [m.__name__ for m in migrations if m.__name__ not in done]
    if pending and done and isinstance(conn, sqlite3.Connection):  # an existing SQLite store, about to change
        back_up(conn, pending)
    for migration in migrations:
        if migration.__name__ in pending:
            migration(conn)
            conn.execute("INSERT INTO migrations VALUES (?, ?)", (migration.__name__, time.time()))
    return pending


def back_up(conn: sqlite3.Connection, pending: list[str]) -> Path | None:
    """Copy a SQLite store before its pending migrations change it, to PATH.before-mNNN (the first of them): an
    older halguru refuses a migrated store, so this copy is the way back. Read by a second connection (SQLite's
    backup API) while ``conn`` holds the write lock, so it is exactly what the migrations start from; said in one
    line on stderr. None for an in-memory database."""
    path = next((row[2] for row in conn.execute("PRAGMA database_list") if row[1] == "main"), "")
    if not path:
        return None
    target = Path(f"{path}.before-{pending[0].split('_')[0]}")
    partial = target.with_name(f"{target.name}.partial")
    print(f"halguru: upgrading the store {path} ({', '.join(pending)}); a copy of it as it was goes to {target}",
          file=sys.stderr, flush=True)
    try:
        with contextlib.closing(sqlite3.connect(path)) as source, contextlib.closing(sqlite3.connect(partial)) as copy:
            source.backup(copy)
        os.replace(partial, target)
    except (sqlite3.Error, OSError) as exc:
        partial.unlink(missing_ok=True)
        from halguru.errors import StoreError

        raise StoreError(f"cannot copy the store to {target} before upgrading it ({exc}); nothing was changed: "
                         "free some space or make its folder writable, then run halguru again") from None
    return target


def check_known(done: set[str], migrations: Sequence[Callable[[Any], None]]) -> None:
    """Refuse a database a newer halguru migrated: this version would read and write tables it does not know."""
    unknown = sorted(done - {m.__name__ for m in migrations})
    if unknown:
        from halguru.errors import StoreError

        raise StoreError(f"the database was migrated by a newer halguru ({', '.join(unknown)} is not known to this "
                         "version): upgrade halguru, or use a copy made by this version")
