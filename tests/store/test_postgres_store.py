"""Choosing and opening the PostgreSQL store: ``HALGURU_DATABASE_URL`` selects it (SQLite otherwise), replicas
starting together on a fresh database migrate it once, and a bad URL or an unreachable server is one line
that names the host, never the password."""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest

from halguru.agents.events import RunFinished
from halguru.config import get_settings, reset_settings
from halguru.errors import StoreError, StoreTimeout, StoreUnavailable
from halguru.models.base import Message
from halguru.store import SQLiteStore, open_store
from halguru.store.postgres import PostgresStore
from halguru.store.postgres_migrations import MIGRATIONS


def test_replicas_opening_a_fresh_database_at_once_migrate_it_once(new_postgres_database) -> None:
    url = new_postgres_database()
    start = threading.Barrier(4)
    opened: list[PostgresStore] = []
    errors: list[BaseException] = []

    def open_it() -> None:
        start.wait()
        try:
            opened.append(PostgresStore(url))
        except BaseException as exc:  # collected; the test asserts there are none
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors and len(opened) == 4
    with psycopg.connect(url) as conn:
        assert [r[0] for r in conn.execute("SELECT name FROM migrations")] == [m.__name__ for m in MIGRATIONS]
    opened[0].enqueue_job("run", "echo", {})
    assert len(opened[3].list_jobs()) == 1
    for store in opened:
        store.close()


@pytest.mark.sqlite_only(reason="checks that SQLite is the default when no database URL is set, which the "
                                "PostgreSQL test store sets")
def test_the_database_url_setting_selects_postgres_once_per_process(new_postgres_database, monkeypatch) -> None:
    assert isinstance(open_store(), SQLiteStore)
    url = new_postgres_database()
    monkeypatch.setenv("HALGURU_DATABASE_URL", url)
    reset_settings()
    store = open_store()
    assert isinstance(store, PostgresStore) and open_store() is store
    store.create_conversation("conv_pg", "agent")
    assert open_store().get_conversation("conv_pg") is not None
    assert isinstance(open_store(get_settings().database), SQLiteStore)  # a path: SQLite still
    store.close()  # before its database is dropped


@pytest.mark.parametrize(("url", "says"), [
    ("postgresql://admin:hunter2@127.0.0.1:1/halguru", "cannot reach the PostgreSQL store at "
                                                      "postgresql://127.0.0.1:1/halguru: connection to server at"),
    ("postgresql://postgres:hunter2@127.0.0.1:5432/no_such_db_xyz", 'database "no_such_db_xyz" does not exist'),
    ("postgresql://admin:hunter2@", "not a PostgreSQL URL"),
    ("postgresql://admin:hunter2@db.example:port/x", "not a PostgreSQL URL"),
    ("postgresql://admin:hunter2@pw@127.0.0.1:5432/x", "percent-encoded"),  # libpq would take "pw@127..." as host
    ("postgresql://admin:hun/ter2@127.0.0.1:5432/x", "percent-encoded"),
    ("postgresql://admin:hun@ter/2@127.0.0.1:5432/x", "percent-encoded"),  # host "ter" (a DNS lookup), db "2@..."
    ("postgresql://admin:hunter2#x@127.0.0.1:1/halguru", "cannot reach the PostgreSQL store at "  # libpq reads it
                                                        "postgresql://127.0.0.1:1/halguru"),
])
def test_a_bad_url_is_one_line_naming_the_host_not_the_password(url: str, says: str) -> None:
    with pytest.raises((StoreError, StoreUnavailable)) as raised:
        PostgresStore(url)
    message = str(raised.value)
    assert says in message and "hunter2" not in message and "\n" not in message


def test_a_bad_database_url_is_one_cli_line(cli_error) -> None:
    line = cli_error("jobs", "list", env={"HALGURU_DATABASE_URL": "postgresql://admin:hunter2@127.0.0.1:1/x"})
    assert "127.0.0.1:1" in line and "hunter2" not in line


@pytest.mark.parametrize("password", ["hunter2", "hun@ter2", "hun/ter2", "hun#ter2"])
def test_config_show_hides_the_password(cli, monkeypatch, password: str) -> None:
    """Even one whose @ or / its owner did not percent-encode."""
    monkeypatch.setenv("HALGURU_DATABASE_URL", f"postgresql://halguru:{password}@db.example:5432/halguru")
    reset_settings()
    out = cli("config", "show").output
    assert "postgresql://halguru:***@db.example:5432/halguru" in out and "ter2" not in out


@pytest.mark.parametrize("backend", ["postgres"])
def test_connections_the_server_dropped_are_replaced(store, store_url: str) -> None:
    """A PostgreSQL restart or failover drops every connection: the pool hands out fresh ones instead."""
    store.create_conversation("conv_1", "agent")
    database = store_url.rsplit("/", 1)[1]
    with psycopg.connect(store_url, autocommit=True) as admin:
        # 5000: wait until each backend has gone (as after a restart), not just signal it
        killed = admin.execute("SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity "
                               "WHERE datname = %s "
                               "AND pid <> pg_backend_pid()", (database,)).fetchone()[0]
    assert killed >= 1
    assert store.get_conversation("conv_1") is not None
    store.enqueue_job("run", "echo", {})
    assert len(store.list_jobs()) == 1


def test_a_restart_under_a_busy_pool_is_not_answered_as_an_outage(new_postgres_database) -> None:
    """After a restart every pooled connection is dead: the next statement is answered at once on a new one,
    not after seconds of waiting between dead ones (a request's 10 s ran out: 503 with the database up)."""
    url = new_postgres_database()
    store = PostgresStore(url)
    try:
        store.migrate()
        store.create_conversation("conv_1", "agent")
        with contextlib.ExitStack() as held:  # a busy moment: the pool holds several connections
            for _ in range(6):
                held.enter_context(store._connection())
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
                          "WHERE datname = %s AND pid <> pg_backend_pid()", (url.rsplit("/", 1)[1],))
        started = time.monotonic()
        assert store.get_conversation("conv_1") is not None
        assert time.monotonic() - started < 0.9
    finally:
        store.close()



def test_only_a_requests_own_writes_skip_the_wait_for_the_disk(new_postgres_database, monkeypatch) -> None:
    """A run's records commit without waiting for the WAL on disk (as every commit on SQLite's WAL does); a
    job, whose worker sends messages to the outside world once, waits; a strict transaction's setting never
    outlives it on the pooled connection."""
    store = PostgresStore(new_postgres_database())
    store._pool_size = 1  # (before the pool opens) one connection: every transaction shares it
    committed: list[str] = []
    tx, autocommit = store._tx, store._autocommit

    @contextmanager
    def watched(relaxed: bool = False) -> Iterator[Any]:
        with tx(relaxed) as conn:
            yield conn
            committed.append(conn.execute("SELECT current_setting('synchronous_commit')").fetchone()[0])

    @contextmanager
    def watched_autocommit() -> Iterator[Any]:  # a run's finish is one statement, outside a transaction
        with autocommit() as conn:
            yield conn
            committed.append(conn.execute("SELECT current_setting('synchronous_commit')").fetchone()[0])

    monkeypatch.setattr(store, "_tx", watched)
    monkeypatch.setattr(store, "_autocommit", watched_autocommit)
    store.start_run("run_r0000001", "conv_r", "echo", "scripted", "hi")
    done = RunFinished(run_id="run_r0000001", status="ok", output="hello")
    store.finish_run("run_r0000001", "conv_r", done.model_dump(), [done], [Message(role="user", content="hi")])
    assert committed == ["off", "off"]
    store.enqueue_job("run", "echo", {"input": "hi"})
    assert committed[-1] == "on"
    store.record_events("run_r0000001", [RunFinished(run_id="run_r0000001", seq=9, status="ok", output="")])
    assert committed[-1] == "off"
    assert [m.content for m in store.get_messages("conv_r")] == ["hi"]
    store.close()


def test_the_urls_own_options_reach_every_connection(new_postgres_database) -> None:
    """`?options=-csearch_path%3Dhalguru` (a schema of its own in a shared database): the pool's own setting
    replaced it, and the tables went to ``public``."""
    url = new_postgres_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA halguru")
    store = PostgresStore(f"{url}?options=-csearch_path%3Dhalguru%20-capplication_name%3Dhg")
    store.create_conversation("conv_s", "echo")
    assert store._rows("SELECT current_setting('synchronous_commit') AS s, current_setting('application_name') "
                       "AS a") == [{"s": "off", "a": "hg"}]
    store.close()
    with psycopg.connect(url) as conn:
        found = conn.execute("SELECT table_schema FROM information_schema.tables WHERE table_name IN "
                             "('conversations', 'runs', 'jobs', 'migrations')").fetchall()
        assert sorted(found) == [("halguru",)] * 4
        assert conn.execute("SELECT id FROM halguru.conversations").fetchall() == [("conv_s",)]


def test_a_database_made_again_under_a_running_store_gets_its_tables_back(new_postgres_database) -> None:
    """Dropped and created again (or emptied) while serve ran: each request was a 500 with a traceback, and a
    poller logged one every 2 s, until a restart. Now the first read says so in one line (serve: 503) and
    puts the tables back; the next works."""
    import psycopg

    url = new_postgres_database()
    store = PostgresStore(url)
    try:
        store.create_conversation("conv_1", "echo", "before")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DROP SCHEMA public CASCADE")
            conn.execute("CREATE SCHEMA public")
        with pytest.raises(StoreUnavailable, match=r"had no halguru tables .* they were created, try again"):
            store.list_conversations()
        assert store.list_conversations() == []
        store.create_conversation("conv_2", "echo", "after")
        assert [c["id"] for c in store.list_conversations()] == ["conv_2"]
    finally:
        store.close()


def test_a_table_lost_under_a_recorded_migration_is_said_not_claimed_fixed(new_postgres_database) -> None:
    """Only `events` dropped: the repair said "they were created, try again" every 30 s while nothing was, and
    /readyz said the store was fine."""
    import psycopg

    url = new_postgres_database()
    store = PostgresStore(url)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DROP TABLE events")
        with pytest.raises(StoreUnavailable, match="misses a halguru table whose migration is recorded: restore"):
            store.get_events("run_x")
        with pytest.raises((StoreError, StoreUnavailable), match="misses a halguru table"):
            store.ping()  # /readyz: 503
    finally:
        store.close()


def test_a_lock_held_by_a_frozen_process_is_let_go(new_postgres_database, monkeypatch) -> None:
    """A replica frozen mid-transaction (its VM paused, a network partition: the server keeps the session until TCP
    gives up, hours) held its locks meanwhile: every other replica's audit write waited for the chain's lock for
    good, each holding a pooled connection, until none was left. A transaction idle that long is ended."""
    import halguru.store.postgres_base as base

    monkeypatch.setattr(base, "IDLE_TRANSACTION_S", 1, raising=False)
    url = new_postgres_database()
    frozen_store, other = PostgresStore(url), PostgresStore(url)
    frozen, holding = threading.Event(), threading.Event()

    def freeze() -> None:
        with contextlib.suppress(Exception), frozen_store._tx() as conn:
            frozen_store._lock(conn, "audit", "chain")
            holding.set()
            frozen.wait(30)

    threading.Thread(target=freeze, daemon=True).start()
    assert holding.wait(10)
    written = threading.Thread(target=other.append_audit, args=("admin", "key.create"), daemon=True)
    start = time.monotonic()
    written.start()
    written.join(10)
    frozen.set()
    assert not written.is_alive(), "the audit write still waits for the frozen transaction's lock"
    assert time.monotonic() - start < 5
    assert [e["action"] for e in other.list_audit()] == ["key.create"]
    with frozen_store._tx() as conn:  # the frozen process's pool carries on
        assert conn.execute("SELECT 1").fetchone()[0] == 1
    frozen_store.close()
    other.close()


def test_a_copys_long_transactions_are_not_ended_while_idle(new_postgres_database, monkeypatch) -> None:
    """`halguru db copy` reads the source in one transaction while it writes the target in another: each waits
    for the other, for as long as a table takes."""
    import halguru.store.postgres_base as base

    monkeypatch.setattr(base, "IDLE_TRANSACTION_S", 1)
    store = PostgresStore(new_postgres_database())
    with store._tx() as conn:
        store._long_transaction(conn)
        time.sleep(2)
        assert conn.execute("SELECT 1").fetchone()[0] == 1
    store.close()


def test_a_database_the_store_cannot_create_its_tables_in_is_one_cli_line(cli_error, new_postgres_database) -> None:
    """A search_path naming no schema that exists: the error was three lines, psycopg's LINE 1 and a caret
    under the migrations' CREATE TABLE included."""
    url = f"{new_postgres_database()}?options=-csearch_path%3Dnot_made"
    line = cli_error("jobs", "list", env={"HALGURU_DATABASE_URL": url})
    assert line.endswith("cannot open the PostgreSQL store at postgresql://127.0.0.1:5432/" + url.split("/")[-1]
                         .split("?")[0] + ": no schema has been selected to create in"), line


@pytest.mark.parametrize("backend", ["postgres"])
def test_a_value_too_large_for_an_index_is_refused_not_taken_for_an_outage(store) -> None:
    """PostgreSQL refuses an index entry over ~8 KB (ProgramLimitExceeded, an OperationalError): it read as "the
    store failed", StoreUnavailable, so serve answered 503 "try again shortly" and a worker waited out an outage
    for what fails at every try. It is the value's fault: a StoreError naming it (serve: a 400), the rest kept."""
    huge = secrets.token_hex(10_000)  # random: a repeated letter compresses below the limit
    with pytest.raises(StoreError, match=r"^a value is too large for the store \(index row requires \d+ bytes"):
        store.enqueue_job("run", "echo", {}, idempotency_key=huge)
    with pytest.raises(StoreError, match="too large for the store"):
        store.thread_conversation("sms", "echo", huge, title="t")
    store.enqueue_job("run", "echo", {}, idempotency_key="k")
    assert [j["idempotency_key"] for j in store.list_jobs()] == ["k"]


def test_a_runaway_statement_is_cancelled_and_its_connection_freed(new_postgres_database) -> None:
    """A statement that ran for hours (a plan gone wrong, a lock waited for behind a stuck transaction) held its
    pooled connection all along: each request repeating it took another, until none was left. One past the
    store's statement timeout is cancelled, read as StoreTimeout (one line naming the setting), and the
    connection serves the next statement."""
    url = new_postgres_database()
    store = PostgresStore(url, statement_timeout=0.3)
    start = time.monotonic()
    with pytest.raises(StoreTimeout) as caught:
        store._rows("SELECT pg_sleep(5)")
    assert time.monotonic() - start < 3
    assert str(caught.value) == (f"a statement on the PostgreSQL store at {store.location} was cancelled: canceling "
                                 "statement due to statement timeout (database_statement_timeout: 0.3 s)")
    assert isinstance(caught.value, StoreUnavailable)  # serve's 503, not a 500
    assert store._rows("SELECT 1 AS one") == [{"one": 1}]
    store.close()


def test_the_statement_timeout_is_the_urls_where_it_sets_one_and_none_for_migrations_and_copies(
        new_postgres_database, monkeypatch) -> None:
    """The URL's own statement_timeout wins over the store's; `halguru db copy`'s statements (a table in one)
    and a migration's (an index built on a large table) run as long as they take."""
    monkeypatch.setenv("HALGURU_DATABASE_STATEMENT_TIMEOUT", "7")
    reset_settings()
    url = new_postgres_database()
    monkeypatch.setenv("HALGURU_DATABASE_URL", url)
    reset_settings()
    configured = open_store()  # the setting reaches the configured store
    assert configured._rows("SELECT current_setting('statement_timeout') AS t") == [{"t": "7s"}]
    theirs = PostgresStore(f"{url}?options=-cstatement_timeout%3D0", statement_timeout=0.2)
    assert theirs._rows("SELECT current_setting('statement_timeout') AS t") == [{"t": "0"}]
    theirs.close()
    store = PostgresStore(url, statement_timeout=0.2)
    with store._tx() as conn:
        store._long_transaction(conn)
        assert conn.execute("SELECT pg_sleep(0.5)").fetchone() is not None
    seen: list[str] = []
    real = store._lock

    def lock(conn: Any, scope: str, key: str) -> None:
        seen.append(conn.execute("SELECT current_setting('statement_timeout')").fetchone()[0])
        real(conn, scope, key)

    store._lock = lock  # type: ignore[method-assign]
    store.migrate()
    assert seen == ["0"]
    store.close()
