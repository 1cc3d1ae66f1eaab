"""`halguru db`: migration status and migrate on either backend, and `halguru db copy` moving a whole
installation (conversations, runs with events, checkpoints, approvals, keys, jobs with effects, channels,
schedules) from SQLite to the test's database and back, every record equal through the Store interface."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from halguru.agents.events import Checkpoint, RunFinished, RunStarted
from halguru.errors import StoreError
from halguru.models.base import Message, ToolCallRequest
from halguru.store import SQLiteStore, Store
from halguru.store.admin import DERIVED, TABLES, migration_status
from halguru.store.records import ChannelMessageRecord, WebSessionRecord


def _fill(store: Store) -> None:
    store.create_conversation("conv_hist", "agent", "seeded", [Message(role="user", content="earlier")],
                              owner="key:a")
    store.start_run("run_one0001", "conv_1", "agent", "scripted", "hello", owner="key:a")
    began = RunStarted(run_id="run_one0001", seq=0, agent="agent", model="scripted", input="hello",
                       conversation_id="conv_1", metadata={"test": True})
    done = RunFinished(run_id="run_one0001", seq=1, status="ok", output="hi")
    store.record_events("run_one0001", [began])
    calls = [ToolCallRequest(id="c0", name="lookup", arguments={"q": "x"})]
    store.finish_run("run_one0001", "conv_1", done.model_dump(), [done],
                     [Message(role="user", content="hello"), Message(role="assistant", content="", tool_calls=calls),
                      Message(role="tool", content="42", tool_call_id="c0", name="lookup")], active_agent="agent")
    store.start_run("run_team0001", "conv_2", "team", "scripted", "ship it", job_id="job_0001")
    store.start_checkpoint("run_team0001", "team", "conv_2", "/agents/team", None, "ship it")
    store.save_checkpoint("run_team0001", "step 1", {"done": ["a"]}, [Checkpoint(run_id="run_team0001", seq=0,
                                                                                 label="step 1")])
    call = ToolCallRequest(id="c1", name="ship", arguments={"order": "A"})
    store.save_pending("run_team0001", "conv_2", "team", "/agents/team", None, "ship it", call.model_dump_json(),
                       json.dumps([{"role": "user", "content": "ship it"}]), owner="key:b")
    store.decide_approval("run_team0001", "approved", "fine", "key:admin", {"order": "B"})
    store.create_user("usr_a", "ann@example.com", "Ann", "admin", password_hash="argon2-hash")
    store.create_key("ab12cd34", "ci", "hg_ab12cd34", "hash1", ["agent"], expires=2e9, user_id="usr_a")
    store.set_totp("usr_a", "SECRET", enabled=True)
    store.link_identity("google", "sub-1", "usr_a", "ann@example.com")
    store.create_web_session(WebSessionRecord(id_hash="s1", user_id="usr_a", csrf="c", created=1.0, last_seen=2.0,
                                              expires=4e9, mfa_done=True, address=None, user_agent="ua", revoked=None))
    store.create_auth_token("t1", "reset", "usr_a", {"next": "/"}, 4e9)
    store.set_recovery_codes("usr_a", ["h1", "h2"])
    job, _ = store.enqueue_job("reply", "echo", {"text": "hi"}, queue_key="sms:+1", idempotency_key="twilio:SM1")
    store.enqueue_job("run", "echo", {"input": "later"}, delay=3600)
    assert store.claim_job("w1", lease=30) is not None
    store.begin_effect(job["id"], "part:0")
    store.finish_effect(job["id"], "part:0", {"sid": "SM9"})
    store.finish_job(job["id"], "w1", {"conversation_id": "conv_1"})
    conversation = store.thread_conversation("twilio", "echo", "+15550001", owner="channel:twilio")
    store.record_channel_message(ChannelMessageRecord(
        id="SM1", channel="twilio", agent="echo", conversation_id=conversation, direction="in", address="+15550001",
        body="hi", status="received", job_id=job["id"], created=1.5, updated=2.5))
    store.fire_schedule("digest", None, 1234.5, None)
    store.create_deployment("echo", "ab" * 32, {"files": {"agent.yaml": "cd" * 32}}, b"\x1f\x8b\x00z", "user:usr_a")
    store.create_deployment("echo", "ef" * 32, {"files": {}}, b"v2", "user:usr_a")
    store.activate_deployment("echo", 1)
    store.save_push_subscription("https://push.example/s1", "usr_a", "BP" + "a" * 85, "c" * 22, "ab" * 32)
    store.record_push("https://push.example/s1", True)
    store.server_secret("vapid_private_key", lambda: "-----BEGIN PRIVATE KEY-----")


def _records(store: Store) -> dict:
    """Everything a user can read back, through the interface."""
    conversations = store.list_conversations(100)
    runs = store.list_runs(100)
    jobs = store.list_jobs(100)
    return {
        "conversations": conversations,
        "messages": {c["id"]: store.get_messages(c["id"]) for c in conversations},
        "channel_messages": {c["id"]: store.list_channel_messages(c["id"]) for c in conversations},
        "runs": runs, "run": [store.get_run(r["id"]) for r in runs],
        "events": {r["id"]: store.get_events(r["id"]) for r in runs},
        "test_runs_left_out": [r["id"] for r in store.list_runs(100, test_runs=False)],
        "test_conversations_left_out": [c["id"] for c in store.list_conversations(100, test_runs=False)],
        "job_runs": [r["id"] for r in store.list_runs(100, job_id="job_0001")],
        "checkpoint": store.get_checkpoint("run_team0001"), "approval": store.find_approval("run_team0001"),
        "keys": store.list_keys(), "key": store.key_by_hash("hash1"),
        "jobs": jobs, "effect": store.begin_effect(jobs[-1]["id"], "part:0"),
        "thread": store.thread_conversation("twilio", "echo", "+15550001"),
        "schedule": store.schedule_next("digest"), "next_due": store.job_next_due(),
        "users": store.list_users(), "identities": store.list_identities("usr_a"),
        "sessions": store.list_web_sessions("usr_a"), "codes": store.recovery_codes_left("usr_a"),
        "deployments": store.list_deployments(), "active": store.active_deployments(),
        "bundle": store.deployment_bundle("echo", 1),
        "push": store.list_push_subscriptions("usr_a"), "secret": store.server_secret("vapid_private_key", str),
    }


def test_copy_moves_every_record_there_and_back(cli, store_url: str, store_factory, tmp_path: Path) -> None:
    source = SQLiteStore(tmp_path / "source.db")
    _fill(source)
    expected = _records(source)
    source.close()

    out = cli("db", "copy", "--from", f"sqlite:{tmp_path / 'source.db'}", "--to", store_url).output
    assert "Copied" in out and "events" in out
    target = store_factory()
    assert _records(target) == expected
    newer, _ = target.enqueue_job("run", "echo", {})  # ids generated after the copy continue after its rows
    assert target.list_jobs(1)[0]["id"] == newer["id"]

    cli("db", "copy", "--from", store_url, "--to", f"sqlite:{tmp_path / 'back.db'}")
    back = SQLiteStore(tmp_path / "back.db")
    later = {"jobs": None, "next_due": None}  # the job queued in the middle is there too
    assert _records(back) | later == expected | later
    assert len(back.list_jobs(100)) == 3
    back.close()


def test_copy_refuses_a_target_with_rows_unless_forced(cli, cli_error, store_url: str, store_factory,
                                                       tmp_path: Path) -> None:
    source = SQLiteStore(tmp_path / "source.db")
    source.create_conversation("conv_new", "agent")
    source.close()
    target = store_factory()
    target.create_conversation("conv_old", "agent")
    line = cli_error("db", "copy", "--from", f"sqlite:{tmp_path / 'source.db'}", "--to", store_url)
    assert "already holds rows: conversations (1)" in line and "--force" in line
    assert [c["id"] for c in target.list_conversations()] == ["conv_old"]  # untouched
    cli("db", "copy", "--from", f"sqlite:{tmp_path / 'source.db'}", "--to", store_url, "--force")
    assert [c["id"] for c in target.list_conversations()] == ["conv_new"]


def test_bad_copy_arguments_are_one_line(cli_error, tmp_path: Path) -> None:
    assert "no SQLite database at" in cli_error("db", "copy", "--from", f"sqlite:{tmp_path}/none.db", "--to",
                                                f"sqlite:{tmp_path}/b.db")
    assert "unknown database 'mysql'" in cli_error("db", "copy", "--from", "mysql://u:p@h/db", "--to",
                                                   f"sqlite:{tmp_path}/b.db")
    SQLiteStore(tmp_path / "a.db").close()
    assert "are the same database" in cli_error("db", "copy", "--from", f"sqlite:{tmp_path}/a.db", "--to",
                                                f"sqlite:{tmp_path}/a.db")


def test_status_and_migrate_on_a_fresh_postgres_database(cli, new_postgres_database) -> None:
    url = new_postgres_database()
    out = cli("db", "status", "--url", url).output
    assert "pg001_initial" in out and "pending" in out and "23 pending" in out
    applied = cli("db", "migrate", "--url", url).output
    assert ("Applied 23: pg001_initial, pg002_identity, pg003_audit, pg004_console, pg005_deployments, "
            "pg006_push, pg007_message_keys, pg008_claims, pg009_key_roles, pg010_jobs_waiting, "
            "pg011_test_runs, pg012_run_jobs, pg013_channel_answers, pg014_channel_opt_outs, "
            "pg015_delivery_errors, pg016_message_text, pg017_analytics_days, "
            "pg018_jobs_fair, pg019_run_cancels, pg020_events_handoffs, pg021_checkpoint_steps, "
            "pg022_in_flight, pg023_checkpoint_messages") in applied
    assert "Up to date." in cli("db", "status", "--url", url).output
    assert "Nothing to apply" in cli("db", "migrate", "--url", url).output


@pytest.mark.sqlite_only(reason="the configured SQLite file is not made by `db status`; the PostgreSQL "
                                "`db status`/`migrate` are tested above with --url")
def test_status_of_the_configured_sqlite_store_applies_nothing(cli, halguru_home: Path) -> None:
    out = cli("db", "status").output
    assert "m001_initial" in out and "30 pending" in out and not (halguru_home / "halguru.db").exists()
    cli("db", "migrate")
    assert [s.applied is not None for s in migration_status(f"sqlite:{halguru_home / 'halguru.db'}")] == [True] * 30


def test_the_copy_covers_every_table_and_column_of_both_schemas(store_url: str, store_factory, raw_sql) -> None:
    store_factory()
    if store_url.startswith("sqlite:"):
        tables = {r[0] for r in raw_sql("SELECT name FROM sqlite_master WHERE type = 'table'")}
        tables -= {"migrations", "sqlite_sequence"}
        # the full-text index and its shadow tables: the copy's inserts fill it (triggers), as any insert does
        tables -= {t for t in tables for v in raw_sql("SELECT name FROM sqlite_master WHERE sql LIKE 'CREATE VIRTUAL%'")
                   if t == v[0] or t.startswith(f"{v[0]}_")}
        columns = {t: {r[1] for r in raw_sql(f"PRAGMA table_info({t})")} - {"pid"} for t in tables}  # pid: unused
    else:
        rows = raw_sql("SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public' "
                       "AND table_name <> 'migrations'")
        columns = {}
        for table, column in rows:
            columns.setdefault(table, set()).add(column)
    assert {t: c for t, c in columns.items() if t not in DERIVED} == {t: set(c) for t, c in TABLES.items()}


def test_copy_from_an_older_sqlite_file_migrates_it_first(cli, store_url: str, store_factory, tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    db = sqlite3.connect(old)
    from halguru.store.migrations import MIGRATIONS

    with db:
        db.execute("CREATE TABLE migrations (name TEXT PRIMARY KEY, applied REAL NOT NULL)")
        for migration in MIGRATIONS[:3]:  # an installation from before approvals, owners and jobs
            migration(db)
            db.execute("INSERT INTO migrations VALUES (?, 0)", (migration.__name__,))
        db.execute("INSERT INTO conversations (id, agent, title, created, updated) VALUES ('conv_a', 'a', 't', 1, 2)")
    db.close()
    cli("db", "copy", "--from", f"sqlite:{old}", "--to", store_url)
    conversation = store_factory().get_conversation("conv_a")
    assert conversation is not None and (conversation["owner"], conversation["updated"]) == (None, 2)


def test_a_database_a_newer_halguru_migrated_is_refused_in_one_line(cli_error, store_url: str, store_factory,
                                                                    raw_sql) -> None:
    """`db status` said "Up to date." and serve started on a schema with tables and columns it does not know."""
    store_factory().close()
    raw_sql("INSERT INTO migrations VALUES (?, ?)", ("m999_future", 1.0))
    try:
        with pytest.raises(StoreError, match=r"migrated by a newer halguru \(m999_future is not known"):
            store_factory()
        line = cli_error("db", "status", "--url", store_url)
        assert "newer halguru" in line and "m999_future" in line
    finally:  # the PostgreSQL session database outlives the test (its tables are emptied, not dropped)
        raw_sql("DELETE FROM migrations WHERE name = ?", ("m999_future",))


@pytest.mark.parametrize("backend", ["postgres"])
def test_a_copy_to_postgres_leaves_the_planner_its_statistics(cli, store_url: str, raw_sql, tmp_path: Path) -> None:
    """Copied tables had none until autovacuum came (never where it is off): the planner guessed, and listing
    the conversations whose last run failed, of 100,000 copied, ran for over 10 minutes instead of 80 ms."""
    source = SQLiteStore(tmp_path / "source.db")
    _fill(source)
    for i in range(30):
        source.create_conversation(f"conv_{i:03d}", "agent", f"title {i}", [Message(role="user", content="hi")])
    conversations = len(source.list_conversations(limit=1000))
    source.close()
    cli("db", "copy", "--from", f"sqlite:{tmp_path / 'source.db'}", "--to", store_url)
    estimated = dict(raw_sql("SELECT relname, reltuples FROM pg_class WHERE relname IN ('conversations', 'messages', "
                             "'runs', 'events', 'jobs') AND relkind = 'r'"))
    assert estimated["conversations"] == conversations
    assert min(estimated.values()) >= 1  # -1: never analyzed
    assert raw_sql("SELECT count(*) FROM pg_stats WHERE tablename = 'conversations' AND attname = 'agent'") == [(1,)]
