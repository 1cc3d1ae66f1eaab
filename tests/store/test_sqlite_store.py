"""The store: schema and WAL (SQLite), atomic writes (SQLite: a trigger makes the last statement fail), lookups
and leases read as interrupted (both backends)."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from halguru.agents.events import RunFinished, RunStarted
from halguru.errors import StoreError
from halguru.models.base import Message
from halguru.store import SQLiteStore, open_store


@pytest.mark.sqlite_only(reason="the default store is the SQLite file in HALGURU_HOME: its schema and WAL mode "
                                "(test_postgres_store.py checks the PostgreSQL schema)")
def test_new_store_is_migrated_and_in_wal_mode(halguru_home):
    store = open_store()
    assert store.path == (halguru_home / "halguru.db").resolve()
    from halguru.store.migrations import MIGRATIONS

    db = sqlite3.connect(store.path)
    names = [r[0] for r in db.execute("SELECT name FROM migrations ORDER BY applied")]
    assert names[0] == "m001_initial" and names == [m.__name__ for m in MIGRATIONS]
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"conversations", "messages", "runs", "events", "approvals", "checkpoints", "api_keys"} <= tables
    db.close()


def _old_store(path: Path, migrations: int = 13) -> None:
    """A store an older halguru made (its first ``migrations`` applied) holding one conversation."""
    from halguru.store.migration_runner import apply
    from halguru.store.migrations import MIGRATIONS

    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        apply(conn, MIGRATIONS[:migrations])
        conn.execute("INSERT INTO conversations (id, agent, title, created, updated) VALUES ('conv_a', 'a', 't', 1, 2)")


def test_upgrading_a_store_keeps_a_copy_the_older_halguru_can_open(tmp_path, capsys):
    from halguru.store.migration_runner import check_known
    from halguru.store.migrations import MIGRATIONS

    path = tmp_path / "halguru.db"
    _old_store(path)
    capsys.readouterr()
    SQLiteStore(path).close()
    copy = tmp_path / "halguru.db.before-m014"
    said = capsys.readouterr().err.splitlines()
    assert said == [f"halguru: upgrading the store {path} (m014_message_keys, m015_claims, m016_key_roles, "
                    f"m017_jobs_waiting, m018_test_runs, m019_run_jobs, m020_channel_answers, m021_channel_opt_outs, "
                    f"m022_delivery_errors, m023_message_text, m024_analytics_days, m025_jobs_fair, "
                    f"m026_run_cancels, m027_events_handoffs, m028_checkpoint_steps, m029_in_flight, "
                    f"m030_checkpoint_messages); a copy of it as it was goes to {copy}"]
    with contextlib.closing(sqlite3.connect(copy)) as old:
        assert old.execute("SELECT id FROM conversations").fetchall() == [("conv_a",)]
        check_known({r[0] for r in old.execute("SELECT name FROM migrations")}, MIGRATIONS[:13])  # opens
    with pytest.raises(StoreError, match="newer halguru"):  # what the older halguru says of the upgraded store
        check_known({r[0] for r in sqlite3.connect(path).execute("SELECT name FROM migrations")}, MIGRATIONS[:13])
    SQLiteStore(path).close()  # up to date: no second copy, nothing said
    SQLiteStore(tmp_path / "new.db").close()  # a new store: nothing to copy
    assert capsys.readouterr().err == ""
    assert sorted(p.name for p in tmp_path.iterdir() if ".before-" in p.name) == ["halguru.db.before-m014"]


def test_a_copy_that_cannot_be_made_stops_the_upgrade_and_changes_nothing(tmp_path):
    path = tmp_path / "halguru.db"
    _old_store(path)
    (tmp_path / "halguru.db.before-m014").mkdir()  # in the way
    with pytest.raises(StoreError, match=r"cannot copy the store to .*before-m014 before upgrading it .*nothing"):
        SQLiteStore(path)
    names = sqlite3.connect(path).execute("SELECT name FROM migrations").fetchall()
    assert len(names) == 13 and not list(tmp_path.glob("*.partial"))


def test_reopening_does_not_migrate_twice(tmp_path):
    path = tmp_path / "t.db"
    SQLiteStore(path).close()
    SQLiteStore(path).close()
    from halguru.store.migrations import MIGRATIONS

    assert sqlite3.connect(path).execute("SELECT count(*) FROM migrations").fetchone()[0] == len(MIGRATIONS)


def test_a_store_opens_while_another_process_is_creating_it(tmp_path):
    """Two processes (say two `halguru worker`s) creating the same store at once: one holds a write lock on the
    file before it is in WAL mode, where SQLite refuses the other's switch to WAL at once instead of waiting."""
    path = tmp_path / "t.db"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("CREATE TABLE early (x)")
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO early VALUES (1)")
    released = threading.Timer(0.3, lambda: other.execute("COMMIT"))
    released.start()
    started = time.monotonic()
    store = SQLiteStore(path)  # "cannot open the trace store ...: database is locked" before
    released.join()
    assert time.monotonic() - started >= 0.25  # it waited for the lock
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.list_runs(5) == []
    store.close()
    other.close()


def _run(store, run_id="run_abc123", conv="conv_1"):
    store.start_run(run_id, conv, "agent", "scripted", "hello")
    return run_id


def test_finish_run_is_all_or_nothing(tmp_path):
    store = SQLiteStore(tmp_path / "t.db")
    run_id = _run(store)
    finished = RunFinished(run_id=run_id, seq=1, status="ok", output="hi")
    summary = finished.model_dump()
    # The messages insert fails after the events insert and the run update ran in the same transaction.
    db = sqlite3.connect(store.path)
    db.execute("CREATE TRIGGER boom BEFORE INSERT ON messages BEGIN SELECT RAISE(ABORT, 'boom'); END")
    db.commit()
    with pytest.raises(sqlite3.IntegrityError, match="boom"):
        store.finish_run(run_id, "conv_1", summary, [finished], [Message(role="user", content="hello")])
    assert store.get_run(run_id)["status"] == "running"
    assert store.get_events(run_id) == []
    db.execute("DROP TRIGGER boom")
    db.commit()
    store.finish_run(run_id, "conv_1", summary, [finished], [Message(role="user", content="hello")])
    assert store.get_run(run_id)["status"] == "ok"
    assert [m.content for m in store.get_messages("conv_1")] == ["hello"]


def test_run_lookup_by_prefix(store):
    _run(store, "run_aaa111")
    _run(store, "run_aaa222", conv="conv_2")
    assert store.get_run("run_aaa1")["id"] == "run_aaa111"
    with pytest.raises(StoreError, match="ambiguous"):
        store.get_run("run_aaa")
    with pytest.raises(StoreError, match="no run 'run_zzz'"):
        store.get_run("run_zzz")


def test_running_run_whose_lease_passed_reads_as_interrupted(store, store_factory, raw_sql):
    run_id = _run(store)
    assert store.get_run(run_id)["status"] == "running"  # its lease is renewed by this process
    store.close()  # stops renewing
    raw_sql("UPDATE runs SET lease_expires = 1 WHERE id = ?", [run_id])
    store = store_factory()  # opening reaps it for good
    assert store.get_run(run_id)["status"] == "interrupted"
    assert store.list_runs()[0]["status"] == "interrupted"
    assert raw_sql("SELECT status FROM runs")[0][0] == "interrupted"


def test_events_are_stored_in_order(store):
    run_id = _run(store)
    store.record_events(run_id, [RunStarted(run_id=run_id, seq=0, agent="a", model="m", input="x",
                                            conversation_id="c")])
    assert [e["type"] for e in store.get_events(run_id)] == ["run_started"]


def test_conversations_listing_counts_messages(store):
    run_id = _run(store)
    finished = RunFinished(run_id=run_id, seq=1, status="ok", output="hi")
    store.finish_run(run_id, "conv_1", finished.model_dump(), [finished],
                     [Message(role="user", content="hello"), Message(role="assistant", content="hi")])
    [conversation] = store.list_conversations()
    assert conversation["id"] == "conv_1" and conversation["messages"] == 2 and conversation["title"] == "hello"


def test_unreadable_database_is_a_clear_error(tmp_path):
    path = tmp_path / "broken.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="cannot open the trace store"):
        SQLiteStore(path)


@pytest.mark.sqlite_only(reason="mounts HALGURU_HOME read-only over its SQLite file; on PostgreSQL the home "
                                "holds no database")
def test_a_home_on_a_read_only_mount_is_read_and_a_write_is_one_line(tmp_path, halguru_cmd, subprocess_env):
    """A home mounted read-only (a backup looked at, a locked-down container): `halguru logs` lists its runs
    (opening no longer writes first), and a run that must record is one `Error:` line."""
    import shlex
    import subprocess

    home = Path(subprocess_env["HALGURU_HOME"])
    agent = tmp_path / "ag"
    agent.mkdir()
    (agent / "agent.yaml").write_text("name: ag\nmodel: scripted\n")
    first = subprocess.run([*halguru_cmd, "run", str(agent), "hello"], env=subprocess_env, capture_output=True,
                           text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    cli = " ".join(map(shlex.quote, halguru_cmd))
    script = (f"mount --bind {home} {home} && mount -o remount,ro,bind {home} && "
              f"{cli} logs; echo rc=$?; {cli} run {agent} again; echo rc=$?")
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], env=subprocess_env, capture_output=True,
                          text=True, timeout=120)
    assert "mount:" not in done.stderr, done.stderr  # a private mount namespace needs root, as CI has
    assert "hello" in done.stdout and done.stdout.count("rc=") == 2, done.stdout
    assert done.stdout.split("rc=")[1].startswith("0")
    assert done.stdout.split("rc=")[2].startswith("1")
    assert "Traceback" not in done.stderr
    assert "Error: the trace store" in done.stderr and "is read-only" in done.stderr, done.stderr
