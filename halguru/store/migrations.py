"""Append-only schema migrations (SQLite's list; PostgreSQL's is ``postgres_migrations``, which says why each
backend keeps its own). Never edit or reorder one that has shipped; add a new one."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable


def _execute_all(conn: sqlite3.Connection, script: str) -> None:
    # Not executescript(): it commits first, and a migration must share the caller's transaction.
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


def m001_initial(conn: sqlite3.Connection) -> None:
    _execute_all(
        conn,
        """
        CREATE TABLE conversations (
            id TEXT PRIMARY KEY, agent TEXT NOT NULL, title TEXT NOT NULL DEFAULT '',
            created REAL NOT NULL, updated REAL NOT NULL
        );
        CREATE TABLE messages (
            id INTEGER PRIMARY KEY, conversation_id TEXT NOT NULL REFERENCES conversations(id),
            seq INTEGER NOT NULL, role TEXT NOT NULL, content TEXT NOT NULL,
            tool_calls TEXT, tool_call_id TEXT, name TEXT, run_id TEXT, created REAL NOT NULL,
            UNIQUE (conversation_id, seq)
        );
        CREATE TABLE runs (
            id TEXT PRIMARY KEY, conversation_id TEXT NOT NULL, agent TEXT NOT NULL, model TEXT NOT NULL,
            input TEXT NOT NULL, output TEXT NOT NULL DEFAULT '', status TEXT NOT NULL, error TEXT,
            started REAL NOT NULL, finished REAL, duration_ms REAL, steps INTEGER NOT NULL DEFAULT 0,
            prompt_tokens INTEGER NOT NULL DEFAULT 0, completion_tokens INTEGER NOT NULL DEFAULT 0,
            pid INTEGER
        );
        CREATE INDEX runs_started ON runs (started);
        CREATE INDEX runs_conversation ON runs (conversation_id);
        CREATE TABLE events (
            run_id TEXT NOT NULL REFERENCES runs(id), seq INTEGER NOT NULL, type TEXT NOT NULL,
            step INTEGER NOT NULL, ts REAL NOT NULL, data TEXT NOT NULL,
            PRIMARY KEY (run_id, seq)
        );
        """
    )


def m002_api_keys(conn: sqlite3.Connection) -> None:
    """Serve mode's API keys: only a SHA-256 of each key is kept; ``agents`` is a JSON list (empty: all)."""
    _execute_all(
        conn,
        """
        CREATE TABLE api_keys (
            id TEXT PRIMARY KEY, name TEXT NOT NULL, prefix TEXT NOT NULL, hash TEXT NOT NULL UNIQUE,
            agents TEXT NOT NULL DEFAULT '[]', created REAL NOT NULL, expires REAL, revoked REAL,
            last_used REAL
        );
        CREATE INDEX api_keys_name ON api_keys (name);
        """
    )


def m003_active_agent(conn: sqlite3.Connection) -> None:
    """Which member of a team holds each conversation: the next user turn goes to it."""
    conn.execute("ALTER TABLE conversations ADD COLUMN active_agent TEXT")


def m004_approvals(conn: sqlite3.Connection) -> None:
    """Paused runs: the call waiting for approval and the run's messages so far (JSON), to resume from."""
    _execute_all(
        conn,
        """
        CREATE TABLE approvals (
            run_id TEXT PRIMARY KEY REFERENCES runs(id), conversation_id TEXT NOT NULL, agent TEXT NOT NULL,
            agent_path TEXT, model TEXT, input TEXT NOT NULL, call TEXT NOT NULL, messages TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending', reason TEXT, continued_by TEXT,
            created REAL NOT NULL, resolved REAL
        );
        CREATE INDEX approvals_status ON approvals (status, created);
        """
    )


def m005_checkpoints(conn: sqlite3.Connection) -> None:
    """Durable runs: the last saved state (JSON) of each team or workflow run, to resume it after a crash."""
    _execute_all(
        conn,
        """
        CREATE TABLE checkpoints (
            run_id TEXT PRIMARY KEY REFERENCES runs(id), kind TEXT NOT NULL, conversation_id TEXT NOT NULL,
            agent_path TEXT, model TEXT, input TEXT NOT NULL, label TEXT NOT NULL, state TEXT NOT NULL,
            updated REAL NOT NULL, resumed_by TEXT
        );
        CREATE INDEX runs_status ON runs (status, started);
        """
    )


def m006_owners_leases(conn: sqlite3.Connection) -> None:
    """Owners (an opaque principal id; NULL: the local CLI user) of conversations, runs and approvals; who
    decided an approval and the call's arguments before and after an edit; an API key's scope ('user' or
    'admin': an operator key that acts on every principal's objects); run liveness as a lease (holder boot
    id, expiry) instead of the pid, which is no longer read."""
    _execute_all(
        conn,
        """
        ALTER TABLE conversations ADD COLUMN owner TEXT;
        ALTER TABLE runs ADD COLUMN owner TEXT;
        ALTER TABLE runs ADD COLUMN holder TEXT;
        ALTER TABLE runs ADD COLUMN lease_expires REAL;
        ALTER TABLE approvals ADD COLUMN owner TEXT;
        ALTER TABLE approvals ADD COLUMN decided_by TEXT;
        ALTER TABLE approvals ADD COLUMN arguments_before TEXT;
        ALTER TABLE approvals ADD COLUMN arguments_after TEXT;
        ALTER TABLE api_keys ADD COLUMN scope TEXT NOT NULL DEFAULT 'user';
        CREATE INDEX conversations_owner ON conversations (owner, updated);
        CREATE INDEX runs_owner ON runs (owner, started)
        """
    )


def m007_rate_hits(conn: sqlite3.Connection) -> None:
    """Serve mode's rate limits, shared by every worker process: one row per hit, kept for one window."""
    _execute_all(
        conn,
        """
        CREATE TABLE rate_hits (bucket TEXT NOT NULL, ts REAL NOT NULL);
        CREATE INDEX rate_hits_bucket ON rate_hits (bucket, ts);
        CREATE INDEX rate_hits_ts ON rate_hits (ts)
        """
    )


def m008_jobs_channels(conn: sqlite3.Connection) -> None:
    """The worker's queue: jobs (leases, retries, idempotency keys, per-queue-key order), their side effects
    (done once across retries), the conversation of each channel thread, channel messages with their delivery
    status, and when each schedule is next due."""
    _execute_all(
        conn,
        """
        CREATE TABLE jobs (
            seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, kind TEXT NOT NULL,
            agent TEXT NOT NULL, queue_key TEXT, payload TEXT NOT NULL, status TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0, max_attempts INTEGER NOT NULL, run_after REAL NOT NULL,
            idempotency_key TEXT UNIQUE, owner TEXT, created REAL NOT NULL, started REAL, finished REAL,
            holder TEXT, lease_expires REAL, last_error TEXT, result TEXT
        );
        CREATE INDEX jobs_runnable ON jobs (status, run_after);
        CREATE INDEX jobs_queue_key ON jobs (queue_key, status, seq);
        CREATE INDEX jobs_created ON jobs (created);
        CREATE TABLE job_effects (
            job_id TEXT NOT NULL, key TEXT NOT NULL, state TEXT NOT NULL, value TEXT,
            started REAL NOT NULL, updated REAL NOT NULL, PRIMARY KEY (job_id, key)
        );
        CREATE TABLE channel_threads (
            channel TEXT NOT NULL, agent TEXT NOT NULL, thread TEXT NOT NULL, conversation_id TEXT NOT NULL,
            PRIMARY KEY (channel, agent, thread)
        );
        CREATE TABLE channel_messages (
            channel TEXT NOT NULL, id TEXT NOT NULL, agent TEXT NOT NULL, conversation_id TEXT,
            direction TEXT NOT NULL, address TEXT NOT NULL, body TEXT NOT NULL, status TEXT NOT NULL,
            job_id TEXT, created REAL NOT NULL, updated REAL NOT NULL, PRIMARY KEY (channel, id)
        );
        CREATE INDEX channel_messages_conversation ON channel_messages (conversation_id, created);
        CREATE TABLE schedules (id TEXT PRIMARY KEY, next_due REAL NOT NULL, updated REAL NOT NULL)
        """
    )


def m009_identity(conn: sqlite3.Connection) -> None:
    """Serve mode's people: users (role, argon2 password hash, TOTP secret and its last used time step,
    failed sign-ins and lockout), linked OIDC identities (provider + subject), server-side web sessions (only
    a SHA-256 of the cookie), single-use auth tokens (verify, reset, invite, oidc state), hashed recovery
    codes; and the user an API key belongs to (NULL: a key from before users, as it was)."""
    _execute_all(conn, IDENTITY_SCHEMA)


IDENTITY_SCHEMA = """
        CREATE TABLE users (
            id TEXT PRIMARY KEY, email TEXT UNIQUE, name TEXT NOT NULL DEFAULT '', role TEXT NOT NULL,
            password_hash TEXT, email_verified INTEGER NOT NULL DEFAULT 0, totp_secret TEXT,
            totp_enabled INTEGER NOT NULL DEFAULT 0, totp_last INTEGER, disabled INTEGER NOT NULL DEFAULT 0,
            failed_logins INTEGER NOT NULL DEFAULT 0, locked_until REAL, created REAL NOT NULL, last_login REAL
        );
        CREATE TABLE identities (
            provider TEXT NOT NULL, subject TEXT NOT NULL, user_id TEXT NOT NULL REFERENCES users(id),
            email TEXT, created REAL NOT NULL, PRIMARY KEY (provider, subject)
        );
        CREATE INDEX identities_user ON identities (user_id);
        CREATE TABLE web_sessions (
            id_hash TEXT PRIMARY KEY, user_id TEXT NOT NULL REFERENCES users(id), csrf TEXT NOT NULL,
            created REAL NOT NULL, last_seen REAL NOT NULL, expires REAL NOT NULL,
            mfa_done INTEGER NOT NULL DEFAULT 0, address TEXT, user_agent TEXT, revoked REAL
        );
        CREATE INDEX web_sessions_user ON web_sessions (user_id, last_seen);
        CREATE TABLE auth_tokens (
            token_hash TEXT PRIMARY KEY, purpose TEXT NOT NULL, user_id TEXT, data TEXT NOT NULL DEFAULT '{}',
            created REAL NOT NULL, expires REAL NOT NULL, used REAL
        );
        CREATE INDEX auth_tokens_user ON auth_tokens (user_id, purpose);
        CREATE INDEX auth_tokens_expires ON auth_tokens (expires);
        CREATE TABLE recovery_codes (
            user_id TEXT NOT NULL REFERENCES users(id), code_hash TEXT NOT NULL, created REAL NOT NULL,
            used REAL, PRIMARY KEY (user_id, code_hash)
        );
        ALTER TABLE api_keys ADD COLUMN user_id TEXT;
        CREATE INDEX api_keys_user ON api_keys (user_id)
        """
"""m009's statements; PostgreSQL's pg002 is the same with its types (``postgres_migrations.pg_types``)."""

AUDIT_SCHEMA = """
        CREATE TABLE audit (
            seq INTEGER PRIMARY KEY, time REAL NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
            target TEXT NOT NULL DEFAULT '', details TEXT NOT NULL DEFAULT '{}', address TEXT,
            alg TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL
        );
        CREATE INDEX audit_action ON audit (action, seq);
        CREATE INDEX audit_actor ON audit (actor, seq);
        CREATE INDEX audit_time ON audit (time)
        """
"""m010's statements; PostgreSQL's pg003 is the same with its types."""


def m010_audit(conn: sqlite3.Connection) -> None:
    """The audit log: privileged actions, append-only, each entry hash-chained to the one before
    (``sql_audit``). ``seq`` is assigned by the writer (no AUTOINCREMENT), so a deleted entry is a gap."""
    _execute_all(conn, AUDIT_SCHEMA)


CONSOLE_SCHEMA = """
        ALTER TABLE conversations ADD COLUMN taken_over_by TEXT;
        ALTER TABLE conversations ADD COLUMN taken_over_since REAL;
        ALTER TABLE messages ADD COLUMN author TEXT;
        CREATE INDEX conversations_updated ON conversations (updated);
        CREATE INDEX conversations_agent ON conversations (agent, updated)
        """
"""m011's statements; PostgreSQL's pg004 is the same with its types."""


def m011_console(conn: sqlite3.Connection) -> None:
    """The admin console's conversations: who took one over (an operator answering as a human; the agent
    does not run there meanwhile) and since when, who wrote a message (NULL: the user or the agent; an
    operator's principal for a human's answer), and indexes for searching by agent and date."""
    _execute_all(conn, CONSOLE_SCHEMA)


DEPLOYMENTS_SCHEMA = """
        CREATE TABLE deployments (
            agent TEXT NOT NULL, version INTEGER NOT NULL, sha256 TEXT NOT NULL, manifest TEXT NOT NULL DEFAULT '{}',
            bundle BLOB NOT NULL, published_by TEXT, created REAL NOT NULL, active INTEGER NOT NULL DEFAULT 0,
            activated REAL, PRIMARY KEY (agent, version)
        );
        CREATE INDEX deployments_active ON deployments (active, agent)
        """
"""m012's statements; PostgreSQL's pg005 is the same with its types (BLOB: BYTEA)."""


def m012_deployments(conn: sqlite3.Connection) -> None:
    """Published agent versions (``halguru publish``): the bundle, its hash and manifest, who published it,
    and which version of each agent is served (``sql_deployments``)."""
    _execute_all(conn, DEPLOYMENTS_SCHEMA)


PUSH_SCHEMA = """
        CREATE TABLE push_subscriptions (
            endpoint TEXT PRIMARY KEY, user_id TEXT NOT NULL, p256dh TEXT NOT NULL, auth TEXT NOT NULL,
            session TEXT, created REAL NOT NULL, last_success REAL, last_failure REAL,
            failures INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX push_subscriptions_user ON push_subscriptions (user_id, created);
        CREATE TABLE server_secrets (name TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL NOT NULL)
        """
"""m013's statements; PostgreSQL's pg006 is the same with its types."""


def m013_push(conn: sqlite3.Connection) -> None:
    """The web chat's notifications (``sql_push``): each browser's Web Push subscription (its push service's
    endpoint, its keys, the user and web session that subscribed, how its last pushes went), and the server's
    own secrets (the VAPID key pair that signs pushes, shared by the replicas of one database)."""
    _execute_all(conn, PUSH_SCHEMA)


MESSAGE_KEYS_SCHEMA = """
        CREATE TABLE message_keys (
            owner TEXT NOT NULL, conversation_id TEXT NOT NULL, key TEXT NOT NULL, request_hash TEXT NOT NULL,
            status TEXT NOT NULL, run_id TEXT, created REAL NOT NULL, PRIMARY KEY (owner, conversation_id, key)
        );
        CREATE INDEX message_keys_conversation ON message_keys (conversation_id);
        CREATE INDEX message_keys_created ON message_keys (created)
        """
"""m014's statements; PostgreSQL's pg007 is the same with its types."""


def m014_message_keys(conn: sqlite3.Connection) -> None:
    """``Idempotency-Key`` of ``POST /v1/conversations/{id}/messages`` (``sql_message_keys``): per caller
    (``owner``, '' for none) and conversation, the key's request (a hash of the message), whether its run is
    still to start (``claimed``), started (``run``, with ``run_id``) or the message was held for an operator
    (``held``), and when it was claimed (keys live 24 hours)."""
    _execute_all(conn, MESSAGE_KEYS_SCHEMA)


CLAIMS_SCHEMA = """
        ALTER TABLE checkpoints ADD COLUMN claim_holder TEXT;
        ALTER TABLE checkpoints ADD COLUMN claim_expires REAL;
        ALTER TABLE approvals ADD COLUMN claim_holder TEXT;
        ALTER TABLE approvals ADD COLUMN claim_expires REAL;
        UPDATE approvals SET claim_expires = resolved + 3600 WHERE status = 'approved' AND continued_by IS NULL
        """
"""m015's statements; PostgreSQL's pg008 is the same with its types."""


def m015_claims(conn: sqlite3.Connection) -> None:
    """Who is starting a continuation, until when (a lease its process renews, ``sql_resume``): a resume of a
    checkpoint, or the continuation of a decided approval. A process killed before its continuation started
    leaves a claim that expires, so another resume can take the run over. An approval approved before this
    migration and never continued (its process died) can be taken over an hour after its decision."""
    _execute_all(conn, CLAIMS_SCHEMA)


KEY_ROLES_SQL = "UPDATE api_keys SET scope = 'developer' WHERE user_id IS NULL AND scope = 'user'"
"""m016's statement; PostgreSQL's pg009 is the same."""


def m016_key_roles(conn: sqlite3.Connection) -> None:
    """A key without a user has a role of its own, its ``scope`` (admin, operator, developer or user). Such keys
    made before said ``user`` for a developer's reach: they keep it, and a new key's ``user`` means chat only
    (every `halguru keys create NAME` for an app could publish, which runs code on the server)."""
    conn.execute(KEY_ROLES_SQL)


JOBS_WAITING_SQL = """
        DROP INDEX jobs_runnable;
        CREATE INDEX jobs_waiting ON jobs (status, run_after, seq, owner);
        CREATE INDEX jobs_owner ON jobs (owner, status)
        """
"""m017's statements; PostgreSQL's pg010 is the same."""


def m017_jobs_waiting(conn: sqlite3.Connection) -> None:
    """The queued jobs in the order a claim takes them, with their owner: a claim that passes over the jobs of
    owners already served (fairness) walks this index and stops at its first match, instead of sorting every
    queued job (with a backlog of 20,000, 86 ms a pass to 2 ms); and by owner, to count an owner's waiting
    jobs (``max_waiting``)."""
    _execute_all(conn, JOBS_WAITING_SQL)


TEST_RUNS_SQL = """
        ALTER TABLE runs ADD COLUMN test INTEGER NOT NULL DEFAULT 0;
        UPDATE runs SET test = 1 WHERE id IN (SELECT run_id FROM events WHERE type = 'run_started' AND {test});
        CREATE INDEX runs_listed ON runs (started) WHERE test = 0;
        CREATE INDEX runs_agent ON runs (agent, started) WHERE test = 0
        """
"""m018's statements (``{test}``: the backend's SQL, true when a run_started event's ``data`` says
``metadata.test``); PostgreSQL's pg011 is the same."""


def m018_test_runs(conn: sqlite3.Connection) -> None:
    """Whether `halguru test` made a run, as a column (set from the existing runs' run_started metadata), and the
    other runs indexed in listing order: `halguru logs` hid test runs by reading each run's run_started event as
    it walked back through the newest runs (0.2-0.5 s with 40,000 recent test runs, every second with -f).
    Partial indexes: with a full one on (test, started), PostgreSQL's planner still walked ``runs_started``."""
    _execute_all(conn, TEST_RUNS_SQL.format(test="json_extract(data, '$.metadata.test') = 1"))


RUN_JOBS_SQL = """
        ALTER TABLE runs ADD COLUMN job_id TEXT;
        UPDATE runs SET job_id = (SELECT {job} FROM events WHERE run_id = runs.id AND seq = 0 AND type = 'run_started')
            WHERE id IN (SELECT run_id FROM events WHERE seq = 0 AND type = 'run_started' AND {job} IS NOT NULL);
        CREATE INDEX runs_job ON runs (job_id, started) WHERE job_id IS NOT NULL
        """
"""m019's statements (``{job}``: the backend's SQL reading ``metadata.job_id`` from a run_started event's
``data``); PostgreSQL's pg012 is the same."""


def m019_run_jobs(conn: sqlite3.Connection) -> None:
    """The job that started a run (the worker's runs, and the continuations of theirs), as a column, so a retried
    job finds its own earlier run by it: by input text and time, it took a user's same message in the
    conversation for its own. Existing runs get it from their run_started metadata, where the worker has always
    put it (seq 0: the run's own start, not a team member's or a workflow step's). Partial index: most runs
    have no job."""
    _execute_all(conn, RUN_JOBS_SQL.format(job="json_extract(data, '$.metadata.job_id')"))


CHANNEL_ANSWERS_SQL = """
        CREATE INDEX channel_messages_address ON channel_messages (channel, agent, substr(address, 1, 100), created)
        """
"""m020's statement; PostgreSQL's pg013 is the same. The address's start, not all of it: a From or Reply-To of
6,000 characters is over PostgreSQL's ~2,700-byte index entry (the index could not be made on a database
holding one, nor such a mail recorded after)."""


def m020_channel_answers(conn: sqlite3.Connection) -> None:
    """A channel's messages by agent, correspondent and time: the email channel's ``max_answers_per_hour`` counts
    a correspondent's mail answered in the last hour in the store (every worker on one inbox, and after a
    restart), where each worker process had counted its own in memory."""
    _execute_all(conn, CHANNEL_ANSWERS_SQL)


OPT_OUTS_SCHEMA = """
        CREATE TABLE channel_opt_outs (
            channel TEXT NOT NULL, agent TEXT NOT NULL, ours TEXT NOT NULL, sender TEXT NOT NULL,
            reason TEXT NOT NULL, since REAL NOT NULL, PRIMARY KEY (channel, agent, ours, sender)
        )
        """
"""m021's statement; PostgreSQL's pg014 is the same with its types."""


def m021_channel_opt_outs(conn: sqlite3.Connection) -> None:
    """Senders who opted out (an SMS STOP, or Twilio refusing a reply with 21610), per channel, agent, number of
    ours and sender: only Twilio knew, so each of their later messages still ran the agent, whose reply failed."""
    _execute_all(conn, OPT_OUTS_SCHEMA)


DELIVERY_ERRORS_SQL = "ALTER TABLE channel_messages ADD COLUMN error TEXT"
"""m022's statement; PostgreSQL's pg015 is the same."""


def m022_delivery_errors(conn: sqlite3.Connection) -> None:
    """Why a channel message failed (Twilio's ErrorCode in a status callback: 30003, 30007, 21610): logged only,
    the console showed 'undelivered' and nothing more."""
    conn.execute(DELIVERY_ERRORS_SQL)


MESSAGE_TEXT_SQL = [
    "CREATE VIRTUAL TABLE message_text USING fts5(content, content='', tokenize='trigram case_sensitive 0')",
    "INSERT INTO message_text (rowid, content) SELECT id, content FROM messages",
    "CREATE TRIGGER message_text_insert AFTER INSERT ON messages BEGIN "
    "INSERT INTO message_text (rowid, content) VALUES (new.id, new.content); END",
    "CREATE TRIGGER message_text_delete AFTER DELETE ON messages BEGIN "
    "INSERT INTO message_text (message_text, rowid, content) VALUES ('delete', old.id, old.content); END",
    "CREATE TRIGGER message_text_update AFTER UPDATE OF content ON messages BEGIN "
    "INSERT INTO message_text (message_text, rowid, content) VALUES ('delete', old.id, old.content); "
    "INSERT INTO message_text (rowid, content) VALUES (new.id, new.content); END",
]
"""m023's statements: the trigram index of each message (FTS5's own case folding, without a copy of the text:
``content=''``), kept by triggers that need nothing but SQLite (any program may write the messages)."""


def has_trigram(conn: sqlite3.Connection) -> bool:
    """Whether this SQLite has FTS5's trigram tokenizer (3.34 and later, built with FTS5)."""
    try:
        conn.execute("CREATE VIRTUAL TABLE temp.trigram_probe USING fts5(x, tokenize='trigram')")
    except sqlite3.OperationalError:
        return False
    conn.execute("DROP TABLE temp.trigram_probe")
    return True


def m023_message_text(conn: sqlite3.Connection) -> None:
    """The console's text search asks a full-text index of the messages (FTS5 trigrams) for the conversations that
    may hold a text, then checks those with the same ``LIKE`` as before: a text in no message took 0.7-1.6 s with
    200,000 messages, every message folded and scanned. A SQLite without the trigram tokenizer gets no index, and
    the search scans as before."""
    if has_trigram(conn):
        for statement in MESSAGE_TEXT_SQL:
            conn.execute(statement)


def m024_analytics_days(conn: sqlite3.Connection) -> None:
    """Each closed day's analytics kept, and the triggers that mark a day changed (``sql_analytics``): the page
    took about 1 s with 100,000 runs, every run and message of the window aggregated on each view."""
    from halguru.store.sql_analytics import sqlite_statements

    for statement in sqlite_statements():
        conn.execute(statement)


JOBS_FAIR_SQL = """
        DROP INDEX jobs_waiting;
        CREATE INDEX jobs_waiting ON jobs (status, run_after, seq, owner, agent)
        """
"""m025's statements; PostgreSQL's pg018 is the same."""


def m025_jobs_fair(conn: sqlite3.Connection) -> None:
    """The claim's order index with each job's agent too: a claim takes turns by owner and agent
    (``records.fair_key``), and passing over a 20,000-job flood of one agent read each row from the table (41 ms a
    claim; 14 ms with the owner alone, from the index)."""
    _execute_all(conn, JOBS_FAIR_SQL)


RUN_CANCELS_SQL = "ALTER TABLE runs ADD COLUMN cancel_requested REAL"
"""m026's statement (PostgreSQL's pg019 runs the same)."""


def m026_run_cancels(conn: sqlite3.Connection) -> None:
    """When someone asked to stop a running run (``POST /v1/runs/{id}/cancel``): the process holding the run, on
    whichever replica, sees it at its next look (``RunsMixin.watch_cancel``) and cancels the run there."""
    _execute_all(conn, RUN_CANCELS_SQL)


EVENTS_HANDOFFS_SQL = "CREATE INDEX events_handoffs ON events (run_id) WHERE type = 'handoff'"
"""m027's statement (PostgreSQL's pg020 runs the same)."""


def m027_events_handoffs(conn: sqlite3.Connection) -> None:
    """The handoff events alone, by run: the analytics' live day read every event (~30 a run) to find its few
    handoffs (``sql_analytics.day_rows``): 360 ms of PostgreSQL's 3,000,000 events for a late UTC day, 32 ms from
    this index."""
    _execute_all(conn, EVENTS_HANDOFFS_SQL)


CHECKPOINT_STEPS_SQL = """
    CREATE TABLE checkpoint_steps (
        run_id TEXT NOT NULL, step_id TEXT NOT NULL, seq INTEGER NOT NULL, result TEXT NOT NULL,
        PRIMARY KEY (run_id, step_id)
    )
"""
"""m028's statement (PostgreSQL's pg021 runs the same)."""


def m028_checkpoint_steps(conn: sqlite3.Connection) -> None:
    """A workflow's finished steps, one row each, written once (``ResumeMixin.save_checkpoint``): a checkpoint
    rewrote every output so far in its state, so one 5 MB output followed by 30 steps wrote 150 MB."""
    _execute_all(conn, CHECKPOINT_STEPS_SQL)


IN_FLIGHT_SQL = """
    CREATE TABLE in_flight (
        process TEXT NOT NULL, client TEXT NOT NULL, n INTEGER NOT NULL, expires REAL NOT NULL,
        PRIMARY KEY (process, client)
    )"""
"""m029's statement (PostgreSQL's pg022 runs the same, with DOUBLE PRECISION)."""


def m029_in_flight(conn: sqlite3.Connection) -> None:
    """Each serve process's requests in flight per client (``sql_inflight``): ``max_in_flight`` across replicas."""
    _execute_all(conn, IN_FLIGHT_SQL)


CHECKPOINT_MESSAGES_SQL = """
    CREATE TABLE checkpoint_messages (
        run_id TEXT NOT NULL, seq INTEGER NOT NULL, message TEXT NOT NULL,
        PRIMARY KEY (run_id, seq)
    )
"""
"""m030's statement (PostgreSQL's pg023 runs the same)."""


def m030_checkpoint_messages(conn: sqlite3.Connection) -> None:
    """A durable agent's or team's messages, one row each, written when new or changed
    (``ResumeMixin.save_checkpoint``): each checkpoint rewrote every message so far, so 200 tool results of 8,000
    characters (one result's cap) wrote 160 MB."""
    _execute_all(conn, CHECKPOINT_MESSAGES_SQL)


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [m001_initial, m002_api_keys, m003_active_agent,
                                                          m004_approvals, m005_checkpoints, m006_owners_leases,
                                                          m007_rate_hits, m008_jobs_channels, m009_identity,
                                                          m010_audit, m011_console,
                                                          m012_deployments, m013_push,
                                                          m014_message_keys, m015_claims, m016_key_roles,
                                                          m017_jobs_waiting, m018_test_runs, m019_run_jobs,
                                                          m020_channel_answers, m021_channel_opt_outs,
                                                          m022_delivery_errors, m023_message_text,
                                                          m024_analytics_days, m025_jobs_fair,
                                                          m026_run_cancels, m027_events_handoffs,
                                                          m028_checkpoint_steps,
                                                          m029_in_flight,
                                                          m030_checkpoint_messages]
