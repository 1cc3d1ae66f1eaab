"""PostgreSQL's append-only schema migrations. Never edit or reorder one that has shipped; add a new one, here
and (when SQLite needs it too) in ``migrations.py``.

Why our own migrations per backend rather than Alembic: the SQLite list already exists and ships (every
installation has run it and records it by name); the code base has no ORM and no SQLAlchemy, whose models
Alembic would want; and a schema change here is a handful of statements, each backend in its own dialect.
So each backend keeps an append-only list of named Python functions applied in one transaction and recorded
in a ``migrations`` table (``migration_runner.apply``); PostgreSQL's starts at today's whole schema
(``pg001_initial`` = SQLite's m001..m008) and grows next to SQLite's. The same store test suites, run on both
backends, hold the two schemas to one behaviour.

Types: TEXT, BIGINT for integers (SQLite's are 64-bit), DOUBLE PRECISION for times (epoch seconds, as the
store's records carry them), BIGSERIAL where SQLite has an implicit rowid or AUTOINCREMENT. JSON columns
stay TEXT rather than JSONB: the store writes and reads JSON in Python on both backends, so a value reads
back byte for byte as written (JSONB would reorder keys and respace it: an approval's ``arguments_before``
is shown as written), `halguru db copy` moves it verbatim either way, and the one query that looks inside
(leaving out test runs) casts. Every TEXT column uses the "C" collation: ids sort and compare by byte, as
in SQLite, which ``ORDER BY id`` and the id-prefix lookups (``id >= 'run_ab' AND id < 'run_ab\\U0010ffff'``)
rely on, whatever the database's default collation is.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import psycopg

from halguru.store.migrations import (
    AUDIT_SCHEMA,
    CHANNEL_ANSWERS_SQL,
    CHECKPOINT_MESSAGES_SQL,
    CHECKPOINT_STEPS_SQL,
    CLAIMS_SCHEMA,
    CONSOLE_SCHEMA,
    DELIVERY_ERRORS_SQL,
    DEPLOYMENTS_SCHEMA,
    EVENTS_HANDOFFS_SQL,
    IDENTITY_SCHEMA,
    IN_FLIGHT_SQL,
    JOBS_FAIR_SQL,
    JOBS_WAITING_SQL,
    KEY_ROLES_SQL,
    MESSAGE_KEYS_SCHEMA,
    OPT_OUTS_SCHEMA,
    PUSH_SCHEMA,
    RUN_CANCELS_SQL,
    RUN_JOBS_SQL,
    TEST_RUNS_SQL,
)
from halguru.store.postgres_base import _fold


def _execute_all(conn: Any, script: str) -> None:
    script = re.sub(r"\bTEXT\b", 'TEXT COLLATE "C"', script)  # byte order, as in SQLite (see above)
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


# pg001_initial's statements (shipped: never edit), in two parts: conversations, runs and keys; rate limits and the
# queue.
_RUNS_SCHEMA = """
    CREATE TABLE conversations (
        id TEXT PRIMARY KEY, agent TEXT NOT NULL, title TEXT NOT NULL DEFAULT '',
        created DOUBLE PRECISION NOT NULL, updated DOUBLE PRECISION NOT NULL, active_agent TEXT, owner TEXT
    );
    CREATE INDEX conversations_owner ON conversations (owner, updated);
    CREATE TABLE messages (
        id BIGSERIAL PRIMARY KEY, conversation_id TEXT NOT NULL REFERENCES conversations(id),
        seq BIGINT NOT NULL, role TEXT NOT NULL, content TEXT NOT NULL, tool_calls TEXT, tool_call_id TEXT,
        name TEXT, run_id TEXT, created DOUBLE PRECISION NOT NULL, UNIQUE (conversation_id, seq)
    );
    CREATE TABLE runs (
        id TEXT PRIMARY KEY, conversation_id TEXT NOT NULL, agent TEXT NOT NULL, model TEXT NOT NULL,
        input TEXT NOT NULL, output TEXT NOT NULL DEFAULT '', status TEXT NOT NULL, error TEXT,
        started DOUBLE PRECISION NOT NULL, finished DOUBLE PRECISION, duration_ms DOUBLE PRECISION,
        steps BIGINT NOT NULL DEFAULT 0, prompt_tokens BIGINT NOT NULL DEFAULT 0,
        completion_tokens BIGINT NOT NULL DEFAULT 0, owner TEXT, holder TEXT, lease_expires DOUBLE PRECISION
    );
    CREATE INDEX runs_started ON runs (started);
    CREATE INDEX runs_conversation ON runs (conversation_id);
    CREATE INDEX runs_status ON runs (status, started);
    CREATE INDEX runs_owner ON runs (owner, started);
    CREATE TABLE events (
        run_id TEXT NOT NULL REFERENCES runs(id), seq BIGINT NOT NULL, type TEXT NOT NULL,
        step BIGINT NOT NULL, ts DOUBLE PRECISION NOT NULL, data TEXT NOT NULL, PRIMARY KEY (run_id, seq)
    );
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY, name TEXT NOT NULL, prefix TEXT NOT NULL, hash TEXT NOT NULL UNIQUE,
        agents TEXT NOT NULL DEFAULT '[]', created DOUBLE PRECISION NOT NULL, expires DOUBLE PRECISION,
        revoked DOUBLE PRECISION, last_used DOUBLE PRECISION, scope TEXT NOT NULL DEFAULT 'user'
    );
    CREATE INDEX api_keys_name ON api_keys (name);
    CREATE TABLE approvals (
        run_id TEXT PRIMARY KEY REFERENCES runs(id), conversation_id TEXT NOT NULL, agent TEXT NOT NULL,
        agent_path TEXT, model TEXT, input TEXT NOT NULL, call TEXT NOT NULL, messages TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending', reason TEXT, continued_by TEXT,
        created DOUBLE PRECISION NOT NULL, resolved DOUBLE PRECISION, owner TEXT, decided_by TEXT,
        arguments_before TEXT, arguments_after TEXT
    );
    CREATE INDEX approvals_status ON approvals (status, created);
    CREATE TABLE checkpoints (
        run_id TEXT PRIMARY KEY REFERENCES runs(id), kind TEXT NOT NULL, conversation_id TEXT NOT NULL,
        agent_path TEXT, model TEXT, input TEXT NOT NULL, label TEXT NOT NULL, state TEXT NOT NULL,
        updated DOUBLE PRECISION NOT NULL, resumed_by TEXT
    )
"""
_QUEUE_SCHEMA = """
    CREATE TABLE rate_hits (bucket TEXT NOT NULL, ts DOUBLE PRECISION NOT NULL);
    CREATE INDEX rate_hits_bucket ON rate_hits (bucket, ts);
    CREATE INDEX rate_hits_ts ON rate_hits (ts);
    CREATE TABLE jobs (
        seq BIGSERIAL PRIMARY KEY, id TEXT NOT NULL UNIQUE, kind TEXT NOT NULL,
        agent TEXT NOT NULL, queue_key TEXT, payload TEXT NOT NULL, status TEXT NOT NULL,
        attempts BIGINT NOT NULL DEFAULT 0, max_attempts BIGINT NOT NULL, run_after DOUBLE PRECISION NOT NULL,
        idempotency_key TEXT UNIQUE, owner TEXT, created DOUBLE PRECISION NOT NULL,
        started DOUBLE PRECISION, finished DOUBLE PRECISION, holder TEXT, lease_expires DOUBLE PRECISION,
        last_error TEXT, result TEXT
    );
    CREATE INDEX jobs_runnable ON jobs (status, run_after);
    CREATE INDEX jobs_queue_key ON jobs (queue_key, status, seq);
    CREATE INDEX jobs_created ON jobs (created);
    CREATE TABLE job_effects (
        job_id TEXT NOT NULL, key TEXT NOT NULL, state TEXT NOT NULL, value TEXT,
        started DOUBLE PRECISION NOT NULL, updated DOUBLE PRECISION NOT NULL, PRIMARY KEY (job_id, key)
    );
    CREATE TABLE channel_threads (
        channel TEXT NOT NULL, agent TEXT NOT NULL, thread TEXT NOT NULL, conversation_id TEXT NOT NULL,
        PRIMARY KEY (channel, agent, thread)
    );
    CREATE TABLE channel_messages (
        channel TEXT NOT NULL, id TEXT NOT NULL, agent TEXT NOT NULL, conversation_id TEXT,
        direction TEXT NOT NULL, address TEXT NOT NULL, body TEXT NOT NULL, status TEXT NOT NULL,
        job_id TEXT, created DOUBLE PRECISION NOT NULL, updated DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (channel, id)
    );
    CREATE INDEX channel_messages_conversation ON channel_messages (conversation_id, created);
    CREATE TABLE schedules (id TEXT PRIMARY KEY, next_due DOUBLE PRECISION NOT NULL,
                            updated DOUBLE PRECISION NOT NULL)
"""


def pg001_initial(conn: Any) -> None:
    """The whole schema as of SQLite's m008: conversations and messages, runs (owners, leases) and their
    events, approvals, checkpoints, API keys, rate-limit hits, jobs and their effects, channel threads and
    messages, schedules. Foreign keys and indexes as in SQLite."""
    _execute_all(conn, _RUNS_SCHEMA + ";" + _QUEUE_SCHEMA)


def pg002_identity(conn: Any) -> None:
    """SQLite's m009 statements with PostgreSQL's types: users, identities, web sessions, auth tokens,
    recovery codes, and ``api_keys.user_id`` (m009 says what each holds)."""
    _execute_all(conn, _pg_types(IDENTITY_SCHEMA))


def _pg_types(script: str) -> str:
    """SQLite's column types as PostgreSQL's (REAL: DOUBLE PRECISION, INTEGER: BIGINT)."""
    return re.sub(r"\bINTEGER\b", "BIGINT", re.sub(r"\bREAL\b", "DOUBLE PRECISION", script))


def pg003_audit(conn: Any) -> None:
    """SQLite's m010 with PostgreSQL's types: the hash-chained audit log."""
    _execute_all(conn, _pg_types(AUDIT_SCHEMA))


def pg004_console(conn: Any) -> None:
    """SQLite's m011 with PostgreSQL's types: conversations taken over by an operator, messages' authors."""
    _execute_all(conn, _pg_types(CONSOLE_SCHEMA))


def pg005_deployments(conn: Any) -> None:
    """SQLite's m012 with PostgreSQL's types: published agent versions, their bundles (BYTEA) and which is active."""
    _execute_all(conn, _pg_types(DEPLOYMENTS_SCHEMA).replace(" BLOB ", " BYTEA "))


def pg006_push(conn: Any) -> None:
    """SQLite's m013 with PostgreSQL's types: Web Push subscriptions and the server's secrets (VAPID key)."""
    _execute_all(conn, _pg_types(PUSH_SCHEMA))


def pg007_message_keys(conn: Any) -> None:
    """SQLite's m014 with PostgreSQL's types: the messages endpoint's idempotency keys."""
    _execute_all(conn, _pg_types(MESSAGE_KEYS_SCHEMA))


def pg008_claims(conn: Any) -> None:
    """SQLite's m015 with PostgreSQL's types: continuation claims of checkpoints and approvals, with expiry."""
    _execute_all(conn, _pg_types(CLAIMS_SCHEMA))


def pg009_key_roles(conn: Any) -> None:
    """SQLite's m016: a key without a user has a role of its own (its scope); old ``user`` ones stay developers."""
    conn.execute(KEY_ROLES_SQL)


def pg010_jobs_waiting(conn: Any) -> None:
    """SQLite's m017: the queued jobs indexed in the order a claim takes them, with their owner."""
    _execute_all(conn, JOBS_WAITING_SQL)


def pg011_test_runs(conn: Any) -> None:
    """SQLite's m018: whether `halguru test` made a run, as a column set from the run_started metadata, indexed."""
    # jsonb cannot hold U+0000, which json.dumps writes as an escape (a tool read a binary file): replaced
    # for the cast only (each match is a whole escape or an escaped backslash and "u0000": still JSON)
    test = r"""(replace(data, '\u0000', '\ufffd')::jsonb #>> '{metadata,test}') IN ('true', '1')"""
    _execute_all(conn, _pg_types(TEST_RUNS_SQL.format(test=test)))


def pg012_run_jobs(conn: Any) -> None:
    """SQLite's m019: the job that started a run, as a column set from the run_started metadata, indexed."""
    job = r"""(replace(data, '\u0000', '\ufffd')::jsonb #>> '{metadata,job_id}')"""  # as pg011 reads it
    _execute_all(conn, RUN_JOBS_SQL.format(job=job))


def pg013_channel_answers(conn: Any) -> None:
    """SQLite's m020: channel messages by agent, correspondent and time (``max_answers_per_hour``)."""
    _execute_all(conn, CHANNEL_ANSWERS_SQL)


def pg014_channel_opt_outs(conn: Any) -> None:
    """SQLite's m021 with PostgreSQL's types: senders who opted out of an agent's number."""
    _execute_all(conn, _pg_types(OPT_OUTS_SCHEMA))


def pg015_delivery_errors(conn: Any) -> None:
    """SQLite's m022: why a channel message failed, beside its status."""
    conn.execute(DELIVERY_ERRORS_SQL)


def pg016_message_text(conn: Any) -> None:
    """SQLite's m023 as pg_trgm's GIN indexes of each message's and title's folded text (the search's own ``FOLD``
    expression), which answer the search's ``LIKE`` themselves (the titles' folding alone took 0.1-0.3 s with
    100,000 conversations). A server where the extension cannot be made (not installed, or
    this user may not create it) gets no index, and the search scans as before."""
    conn.execute("SAVEPOINT trigram")
    try:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except psycopg.Error:
        conn.execute("ROLLBACK TO SAVEPOINT trigram")
        return
    conn.execute("RELEASE SAVEPOINT trigram")
    fold = _fold(conn.raw)
    conn.execute(f"CREATE INDEX message_text ON messages USING gin (({fold.format('content')}) gin_trgm_ops)")
    conn.execute(f"CREATE INDEX conversation_titles ON conversations USING gin (({fold.format('title')}) gin_trgm_ops)")


def pg017_analytics_days(conn: Any) -> None:
    """SQLite's m024: each closed day's analytics kept, and the triggers (plpgsql) that mark a day changed."""
    from halguru.store.sql_analytics import postgres_statements

    for statement in postgres_statements():
        conn.execute(statement)


def pg018_jobs_fair(conn: Any) -> None:
    """SQLite's m025: the claim's order index with each job's agent (fairness by owner and agent)."""
    _execute_all(conn, JOBS_FAIR_SQL)


def pg019_run_cancels(conn: Any) -> None:
    """SQLite's m026: when someone asked to stop a running run, seen by the replica holding it."""
    _execute_all(conn, RUN_CANCELS_SQL.replace("REAL", "DOUBLE PRECISION"))


def pg020_events_handoffs(conn: Any) -> None:
    """SQLite's m027: the handoff events alone, by run (the analytics' live day)."""
    _execute_all(conn, EVENTS_HANDOFFS_SQL)


def pg021_checkpoint_steps(conn: Any) -> None:
    """SQLite's m028: a workflow's finished steps, one row each, written once."""
    _execute_all(conn, CHECKPOINT_STEPS_SQL.replace("INTEGER", "BIGINT"))


def pg022_in_flight(conn: Any) -> None:
    """SQLite's m029: each serve process's requests in flight per client (``max_in_flight`` across replicas)."""
    _execute_all(conn, IN_FLIGHT_SQL.replace("REAL", "DOUBLE PRECISION"))


def pg023_checkpoint_messages(conn: Any) -> None:
    """SQLite's m030: a durable agent's or team's messages, one row each, written when new or changed."""
    _execute_all(conn, CHECKPOINT_MESSAGES_SQL.replace("INTEGER", "BIGINT"))


MIGRATIONS: list[Callable[[Any], None]] = [pg001_initial, pg002_identity, pg003_audit, pg004_console,
                                           pg005_deployments, pg006_push, pg007_message_keys,
                                           pg008_claims, pg009_key_roles, pg010_jobs_waiting,
                                           pg011_test_runs, pg012_run_jobs, pg013_channel_answers,
                                           pg014_channel_opt_outs, pg015_delivery_errors, pg016_message_text,
                                           pg017_analytics_days,
                                           pg018_jobs_fair, pg019_run_cancels,
                                           pg020_events_handoffs, pg021_checkpoint_steps,
                                           pg022_in_flight,
                                           pg023_checkpoint_messages]
