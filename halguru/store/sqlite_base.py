"""SQLite connections for the store: one per thread, WAL, a busy timeout, ``BEGIN IMMEDIATE`` writes.

One connection shared by threads is what failed under serve load: a reader's statement ran inside another
thread's write transaction on the same connection (``cannot start a transaction within a transaction``).
Here no connection is ever used by two threads; SQLite's own locking (WAL: readers never block the
writer, ``busy_timeout`` queues writers) does the rest. Every store method is synchronous, so no
transaction is ever held across an ``await``.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from halguru.errors import StoreError
from halguru.store.sql_base import SQLBase, like_pattern

BUSY_TIMEOUT_MS = 10_000
CHANGE_CHECK_S = 0.02  # an idle worker notices another process's job within this


def not_writable(path: Path) -> str:
    """Why this user cannot write the store at ``path`` and what fixes it, as ": ..." to end an error line; "" when
    nothing in the way is unwritable. The usual case: a host folder mounted as a container's HALGURU_HOME, made
    by root, while the image runs as uid 1000 (SQLite itself says only "unable to open database file")."""
    folder = path.parent
    existing = next((p for p in (folder, *folder.parents) if p.exists()), folder)  # the folder, or what holds it
    uid = os.geteuid() if hasattr(os, "geteuid") else -1
    for item in (existing, path, path.with_name(f"{path.name}-wal"), path.with_name(f"{path.name}-shm")):
        if not item.exists() or os.access(item, os.W_OK):
            continue
        owner = item.stat().st_uid
        if owner == uid:
            why, fix = "its permissions, or a read-only mount", f"chmod u+w {item}"
        elif item == existing != folder:
            why, fix = f"it belongs to uid {owner}", f"mkdir -p {folder} && chown {uid} {folder} as root"
        else:
            why, fix = f"it belongs to uid {owner}", f"chown -R {uid} {folder} (on the host, for a mounted folder)"
        return (f": this user (uid {uid}) cannot write {item} ({why}): {fix}, or set HALGURU_HOME to a folder it "
                "can write")
    return ""


def cannot_open(path: Path, exc: sqlite3.DatabaseError) -> StoreError:
    """The store at ``path`` could not be opened: what SQLite said, and what the user can do about it (SQLite's
    "database is locked" or "database disk image is malformed" alone left them guessing)."""
    code = exc.sqlite_errorcode & 0xFF if isinstance(exc, sqlite3.Error) and exc.sqlite_errorcode else None
    if code == sqlite3.SQLITE_BUSY:
        hint = (f": another process has held its write lock for over {BUSY_TIMEOUT_MS // 1000} s (a halguru "
                "command still running, or a sqlite3 shell in a transaction); end it, or try again when it is done")
    elif code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        hint = (": the file is damaged or not a halguru store; restore it from a backup, or move it aside (with "
                "its -wal and -shm files) and halguru starts a new, empty one")
    else:
        hint = not_writable(path)
    return StoreError(f"cannot open the trace store {path}: {exc}{hint}")


class _Local(threading.local):
    conn: sqlite3.Connection | None = None
    generation: int = -1
    depth: int = 0  # nested _tx() calls on this thread join the outer transaction


def _nul_free(params: Any) -> Any:
    return [p.replace("\x00", "\ufffd") if type(p) is str and "\x00" in p else p for p in params] \
        if isinstance(params, list | tuple) else params


class _Connection(sqlite3.Connection):
    """SQLite text holds U+0000, PostgreSQL's cannot (it stores U+FFFD: ``postgres_base._NulFreeText``): U+FFFD
    here too, so a text reads back the same from either backend (a title, an operator's message, a history)."""

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        return super().execute(sql, _nul_free(parameters))

    def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor:
        return super().executemany(sql, (_nul_free(p) for p in parameters))


def _fold(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def indexed(text: str) -> bool:
    """Whether the full-text index finds every message whose folded content holds ``text``: three characters or
    more (trigrams), ASCII (FTS5 folds case as Python's ``str.lower`` does there, and differently for 391 other
    letters, Cherokee's say), and no final "i" (Python folds the Turkish "İ" to "i" and a combining dot; FTS5 keeps
    it). Other texts are searched by scanning, as before."""
    return len(text) >= 3 and text.isascii() and not text.lower().endswith("i")


class SQLiteBase(SQLBase):
    """The connection handling the store's table mixins build on (``_rows``, ``_tx``)."""

    errors = (sqlite3.Error,)
    # SQLite's busy handler polls at most 0.1 s apart: a writer waiting meanwhile gets the lock in the pause (taken
    # again at once, it waited for the whole prune, 3 s for 170,000 runs, and timed out past 10 s)
    WRITE_PAUSE = 0.1
    FOLD = "fold({})"  # SQLite's own lower() folds ASCII only: "école" would not find "École"

    def __init__(self, path: Path):
        self.path = path
        self.location = str(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            why = "is not a folder" if isinstance(exc, FileExistsError | NotADirectoryError) else exc.strerror
            raise StoreError(f"cannot open the trace store {path}: {exc.filename or path.parent} {why}"
                             f"{not_writable(path)}") from None
        self._local = _Local()
        self._opened: dict[threading.Thread, sqlite3.Connection] = {}
        self._opened_lock = threading.Lock()
        self._generation = 0
        self._message_text: bool | None = None  # whether m023 made the full-text index (once known)
        self._pid = os.getpid()
        try:
            self._use_wal()
        except sqlite3.DatabaseError as exc:
            self.close()
            raise cannot_open(path, exc) from None

    def _text_sources(self, text: str) -> list[tuple[str, list[Any]]]:
        """When the full-text index (m023: trigrams, so a phrase query matches a substring as ``LIKE`` does) exists
        and ``indexed(text)``: the messages it finds, and the titles SQLite's own ``LIKE`` (ASCII case folded,
        no Python call a row) finds or that hold other characters than ASCII. Else the folded ``LIKE`` of both."""
        if not indexed(text) or not self._has_message_text():
            return super()._text_sources(text)
        return [("SELECT m.conversation_id AS id FROM message_text f JOIN messages m ON m.id = f.rowid "
                 "WHERE message_text MATCH ?", ['"' + text.replace('"', '""') + '"']),
                ("SELECT c.id FROM conversations c WHERE c.title LIKE ? ESCAPE '\\' "
                 "OR length(c.title) <> length(CAST(c.title AS BLOB))", [like_pattern(text)])]

    def _has_message_text(self) -> bool:
        if self._message_text is None:
            found = self._conn().execute("SELECT 1 FROM sqlite_master WHERE name = 'message_text'").fetchone()
            self._message_text = found is not None
        return self._message_text

    def _use_wal(self) -> None:
        """Put the file in WAL mode (it stays so). The switch needs an exclusive lock, and while another process
        holds a write lock on a file not yet in WAL (two processes creating the same store at once), SQLite
        refuses at once rather than wait, as waiting could deadlock: so this waits as the busy timeout would."""
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                self._conn().execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def _connect(self) -> sqlite3.Connection:
        # check_same_thread=False only so close() may close it from another thread; it is used by one.
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                               timeout=BUSY_TIMEOUT_MS / 1000, factory=_Connection)
        conn.row_factory = sqlite3.Row
        conn.create_function("fold", 1, _fold, deterministic=True)  # FOLD
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use (again after close(), or in a forked child)."""
        local = self._local
        if local.conn is not None and local.generation == self._generation and self._pid == os.getpid():
            return local.conn
        if self._pid != os.getpid():  # a forked child must not touch its parent's connections (nor locks)
            self._pid, self._opened, self._opened_lock = os.getpid(), {}, threading.Lock()
            self._generation += 1
        conn = self._connect()
        with self._opened_lock:
            for thread in [t for t in self._opened if not t.is_alive()]:  # threads that ended: close theirs
                self._opened.pop(thread).close()
            self._opened[threading.current_thread()] = conn
        local.conn, local.generation, local.depth = conn, self._generation, 0
        return conn

    def close(self) -> None:
        """Close every connection this store opened, whichever thread opened it."""
        with self._opened_lock:
            opened, self._opened = list(self._opened.values()), {}
            self._generation += 1
        for conn in opened:
            conn.close()

    @contextmanager
    def _tx(self, relaxed: bool = False) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken up front (BEGIN IMMEDIATE) so it never fails half-way on a lock;
        a nested call joins the outer one. Every commit is ``relaxed`` here (WAL, ``synchronous=NORMAL``)."""
        conn, local = self._conn(), self._local
        if local.depth:
            local.depth += 1
            try:
                yield conn
            finally:
                local.depth -= 1
            return
        with self._writable():
            conn.execute("BEGIN IMMEDIATE")
            local.depth = 1
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # also when COMMIT itself failed: never leave one open
                    conn.execute("ROLLBACK")
                raise
            finally:
                local.depth = 0

    @contextmanager
    def _autocommit(self) -> Iterator[sqlite3.Connection]:
        with self._writable():
            yield self._conn()  # isolation_level=None: outside _tx, each statement is its own transaction

    @contextmanager
    def _writable(self) -> Iterator[None]:
        """A write to a file on a read-only mount (or one without write permission), or on a full disk, is one
        line, not a driver traceback (the transaction is rolled back: nothing is half-written)."""
        try:
            yield
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_FULL:
                raise StoreError(f"the trace store {self.path} cannot grow: the disk is full ({exc}); free some space "
                                 "(`halguru logs prune --older-than 30d` removes old runs) and try again") from None
            if "readonly" not in str(exc):
                raise
            raise StoreError(f"the trace store {self.path} is read-only: {exc}{not_writable(self.path)}") from None

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """A read on this thread's own connection, as plain dicts."""
        return [dict(row) for row in self._conn().execute(sql, self._bindable(params))]

    def wait_for_jobs(self, timeout: float, woken: threading.Event) -> None:
        """SQLite has no notifications, but ``PRAGMA data_version`` changes when another connection commits:
        a read of shared memory, cheap enough to check every ``CHANGE_CHECK_S``."""
        conn = self._conn()
        seen = conn.execute("PRAGMA data_version").fetchone()[0]
        deadline = time.monotonic() + timeout
        while not woken.wait(min(CHANGE_CHECK_S, max(0.0, deadline - time.monotonic()))):
            if time.monotonic() >= deadline or conn.execute("PRAGMA data_version").fetchone()[0] != seen:
                return
