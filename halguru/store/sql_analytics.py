"""The analytics page's numbers per UTC day, each closed day's computed once and kept (``analytics_days``).

Aggregating every run and message of the window took about 1 s with 100,000 runs (the GROUP BY sorts and the
messages' join to their conversations). A closed day's numbers rarely change, so they are kept as JSON, beside
the day's *version*: the sum of its marks in ``analytics_marks``, which triggers on ``runs``, ``messages``,
``conversations``, ``channel_threads`` and handoff ``events`` add when a write touches a day before the
database clock's today (a run spanning midnight, a deleted conversation, a retention purge, an import). A kept
day whose version moved on is computed again; today (and yesterday in the first ``GRACE_S`` after midnight,
while a write begun before it may still commit) is always read live. Marks need no shared row: SQLite has one
writer (one row per day), PostgreSQL's go one per day and transaction (no transaction waits on another's).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

from halguru.store.sql_base import SQLBase

DAY_S = 86400
GRACE_S = 300
"""How long after midnight the day before is still read live: a write whose trigger ran before midnight (and so
left no mark) has committed by then (a transaction is short; PostgreSQL ends one idle for IDLE_TRANSACTION_S)."""
KEEP_DAYS = 400
"""Kept days and marks older than this are dropped (the page's window is at most 366 days)."""
FLOOR = "(CAST({x} AS INTEGER) - CASE WHEN CAST({x} AS INTEGER) > {x} THEN 1 ELSE 0 END)"  # PostgreSQL rounds
ERR = "CASE WHEN status IN ('failed', 'interrupted') THEN 1 ELSE 0 END"
SUM = "CAST(sum({}) AS BIGINT)"  # PostgreSQL's sum of a BIGINT column is NUMERIC (a Decimal in Python)
_KINDS = ("runs", "messages", "handoffs", "tokens", "tools")


class AnalyticsMixin(SQLBase):
    """Per-day aggregates of runs and messages for ``halguru_server.console.analytics``."""

    def analytics_rows(self, first_day: int, now: float | None = None, keep: bool = True) -> dict[str, list[Any]]:
        """Rows of each kind (``_day_rows``) for the UTC days from ``first_day`` (days since the epoch) on; the
        closed ones from ``analytics_days`` when ``keep`` (else all computed now, as the kept ones were)."""
        now = time.time() if now is None else now
        live_from = max(first_day, int((now - GRACE_S) // DAY_S)) if keep else first_day
        found = self.day_rows(live_from * DAY_S, 1e300)
        if first_day < live_from:
            for data in self._kept_days(first_day, live_from).values():
                for kind in _KINDS:
                    found[kind] += data[kind]
        return found

    def _kept_days(self, first: int, end: int) -> dict[int, dict[str, list[Any]]]:
        """Days ``first`` to ``end`` (excluded), each kept one whose version is current as kept, the others
        computed (in one pass) and kept with the version read before computing them."""
        versions = {int(r["day"]): int(r["n"]) for r in self._rows(
            "SELECT day, CAST(sum(n) AS BIGINT) AS n FROM analytics_marks WHERE day >= ? AND day < ? GROUP BY day",
            (first, end))}
        kept = {int(r["day"]): json.loads(r["data"]) for r in self._rows(
            "SELECT day, version, data FROM analytics_days WHERE day >= ? AND day < ?", (first, end))
            if int(r["version"]) == versions.get(int(r["day"]), 0)}
        stale = [day for day in range(first, end) if day not in kept]
        if not stale:
            return kept
        found = self.day_rows(stale[0] * DAY_S, (stale[-1] + 1) * DAY_S)
        fresh: dict[int, dict[str, list[Any]]] = {day: {kind: [] for kind in _KINDS} for day in stale}
        for kind in _KINDS:
            for row in found[kind]:
                if int(row["day"]) in fresh:
                    fresh[int(row["day"])][kind].append(row)
        with self._tx() as conn:
            conn.executemany("INSERT INTO analytics_days (day, version, data) VALUES (?, ?, ?) ON CONFLICT (day) "
                             "DO UPDATE SET version = excluded.version, data = excluded.data",
                             [(day, versions.get(day, 0), json.dumps(data)) for day, data in fresh.items()])
            old = int(time.time() // DAY_S) - KEEP_DAYS
            conn.execute("DELETE FROM analytics_days WHERE day < ?", (old,))
            conn.execute("DELETE FROM analytics_marks WHERE day < ?", (old,))
        return {**kept, **fresh}

    def day_rows(self, since: float, until: float) -> dict[str, list[Any]]:
        """Per UTC day (``day``), for what started or was written from ``since`` to ``until`` (excluded):
        ``runs`` per agent (runs, ok, errors, limited, conversations, tokens); ``messages`` per channel (``api``:
        no channel thread) and agent (messages, the user's, conversations); ``handoffs`` (from, to, count);
        ``tokens`` per agent and model; ``tools`` per tool and agent (calls)."""
        runs_day, messages_day = FLOOR.format(x="(started / 86400.0)"), FLOOR.format(x="(m.created / 86400.0)")
        span = (since, until)
        handoffs: Counter[tuple[int, str, str]] = Counter()
        for row in self._rows(
                f"SELECT {FLOOR.format(x='(r.started / 86400.0)')} AS day, e.data FROM events e JOIN runs r "
                "ON r.id = e.run_id WHERE r.started >= ? AND r.started < ? AND e.type = 'handoff'", span):
            data = json.loads(row["data"])
            handoffs[(int(row["day"]), data.get("from_agent", ""), data.get("to_agent", ""))] += 1
        return {
            "runs": self._rows(
                f"SELECT day, agent, count(*) AS runs, sum(ok) AS ok, sum(err) AS errors, sum(lim) AS limited, "
                f"count(DISTINCT conversation_id) AS conversations, {SUM.format('tokens')} AS tokens FROM (SELECT "
                f"{runs_day} AS day, agent, conversation_id, {ERR} AS err, "
                "CASE WHEN status = 'ok' THEN 1 ELSE 0 END AS ok, CASE WHEN status = 'limited' THEN 1 ELSE 0 END "
                "AS lim, prompt_tokens + completion_tokens AS tokens FROM runs WHERE started >= ? AND started < ?) "
                "t GROUP BY day, agent", span),
            "messages": self._rows(
                f"SELECT {messages_day} AS day, coalesce(t.channel, 'api') AS channel, c.agent, count(*) AS messages, "
                "sum(CASE WHEN m.role = 'user' THEN 1 ELSE 0 END) AS user_messages, "
                "count(DISTINCT m.conversation_id) AS conversations FROM messages m "
                "JOIN conversations c ON c.id = m.conversation_id LEFT JOIN (SELECT conversation_id, min(channel) "
                "AS channel FROM channel_threads GROUP BY conversation_id) t ON t.conversation_id = m.conversation_id "
                "WHERE m.created >= ? AND m.created < ? GROUP BY 1, 2, 3", span),
            "handoffs": [{"day": d, "from": f, "to": t, "count": n} for (d, f, t), n in handoffs.items()],
            "tokens": self._rows(
                f"SELECT {runs_day} AS day, agent, model, {SUM.format('prompt_tokens')} AS prompt_tokens, "
                f"{SUM.format('completion_tokens')} AS completion_tokens FROM runs WHERE started >= ? "
                "AND started < ? GROUP BY 1, agent, model", span),
            "tools": self._rows(
                f"SELECT {messages_day} AS day, m.name AS tool, c.agent, count(*) AS calls FROM messages m JOIN "
                "conversations c ON c.id = m.conversation_id WHERE m.role = 'tool' AND m.created >= ? "
                "AND m.created < ? GROUP BY 1, m.name, c.agent", span)}


_TABLES = ("CREATE TABLE analytics_days (day BIGINT PRIMARY KEY, version BIGINT NOT NULL, data TEXT NOT NULL)",
           "CREATE TABLE analytics_marks (day BIGINT NOT NULL, tx BIGINT NOT NULL, n BIGINT NOT NULL, "
           "PRIMARY KEY (day, tx))",
           "CREATE INDEX messages_created ON messages (created)")  # today's messages, read live
_WATCHED = {  # table: (the columns whose update marks, and the timestamp or conversation of a row ({r}: NEW/OLD))
    "runs": ("status, started, agent, model, conversation_id, prompt_tokens, completion_tokens", "{r}.started"),
    "messages": ("created, role, name, conversation_id", "{r}.created"),
    "conversations": ("agent", "conversation:{r}.id"),
    "channel_threads": ("channel, conversation_id", "conversation:{r}.conversation_id"),
    "events": ("type, run_id", "(SELECT started FROM runs WHERE id = {r}.run_id)"),
}
_SQLITE_NOW = "(CAST(strftime('%s', 'now') AS INTEGER) / 86400 * 86400)"


def _sqlite_mark(what: str, row: str) -> str:
    """The SQLite trigger statement marking the day of ``what`` (``_WATCHED``) for ``row`` (NEW or OLD)."""
    upsert = "ON CONFLICT (day, tx) DO UPDATE SET n = n + 1;"
    if what.startswith("conversation:"):
        conversation = what.removeprefix("conversation:").format(r=row)
        return (f"INSERT INTO analytics_marks (day, tx, n) SELECT DISTINCT CAST(created / 86400 AS INTEGER), 0, 1 "
                f"FROM messages WHERE conversation_id = {conversation} AND created < {_SQLITE_NOW} {upsert}")
    at = what.format(r=row)
    return (f"INSERT INTO analytics_marks (day, tx, n) SELECT CAST({at} / 86400 AS INTEGER), 0, 1 "
            f"WHERE {at} < {_SQLITE_NOW} {upsert}")


def sqlite_statements() -> list[str]:
    """SQLite's tables and triggers (m024)."""
    statements = list(_TABLES)
    for table, (columns, what) in _WATCHED.items():
        for event, rows in (("INSERT", ["NEW"]), ("DELETE", ["OLD"]), (f"UPDATE OF {columns}", ["OLD", "NEW"])):
            if table == "conversations" and event == "INSERT":
                continue  # a new conversation has no messages yet
            name = f"analytics_{table}_{event.split()[0].lower()}"
            when = (" WHEN " + " OR ".join(f"{r}.type = 'handoff'" for r in rows) if table == "events"
                    else " WHEN " + " OR ".join(f"{what.format(r=r)} < {_SQLITE_NOW}" for r in rows)
                    if what.startswith("{r}.") else "")  # a write of today's skips the trigger: half its time
            body = " ".join(_sqlite_mark(what, row) for row in rows)
            statements.append(f"CREATE TRIGGER {name} AFTER {event} ON {table}{when} BEGIN {body} END")
    return statements


_PG_TODAY = "floor(extract(epoch FROM clock_timestamp()) / 86400) * 86400"
_PG_FUNCTIONS = [
    "CREATE FUNCTION analytics_mark(ts DOUBLE PRECISION) RETURNS void LANGUAGE plpgsql AS $$ BEGIN "
    f"IF ts < {_PG_TODAY} THEN INSERT INTO analytics_marks (day, tx, n) VALUES (floor(ts / 86400)::bigint, "
    "txid_current(), 1) ON CONFLICT (day, tx) DO NOTHING; END IF; END $$",
    "CREATE FUNCTION analytics_mark_conversation(conversation TEXT) RETURNS void LANGUAGE plpgsql AS $$ BEGIN "
    "INSERT INTO analytics_marks (day, tx, n) SELECT DISTINCT floor(created / 86400)::bigint, txid_current(), 1 "
    f"FROM messages WHERE conversation_id = conversation AND created < {_PG_TODAY} ON CONFLICT (day, tx) DO NOTHING; "
    "END $$"]
"""plpgsql, whose statements are planned once a session: as SQL functions (planned at each call) they made an
insert of a message about 5 times slower."""


def postgres_statements() -> list[str]:
    """PostgreSQL's tables, functions and triggers (pg017)."""
    statements = [*_TABLES, *_PG_FUNCTIONS]
    for table, (columns, what) in _WATCHED.items():
        def call(row: str, what: str = what) -> str:
            if what.startswith("conversation:"):
                return f"PERFORM analytics_mark_conversation({what.removeprefix('conversation:').format(r=row)});"
            return f"PERFORM analytics_mark({what.format(r=row)});"
        old, new = (f"IF TG_OP <> '{op}' AND {row}.type = 'handoff' THEN {call(row)} END IF;" if table == "events"
                    else f"IF TG_OP <> '{op}' THEN {call(row)} END IF;" for op, row in (("INSERT", "OLD"),
                                                                                         ("DELETE", "NEW")))
        events = "INSERT OR DELETE OR UPDATE" if table != "conversations" else "DELETE OR UPDATE"
        statements += [f"CREATE FUNCTION analytics_{table}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                       f"{old} {new} RETURN NULL; END $$",
                       f"CREATE TRIGGER analytics_{table} AFTER {events} OF {columns} ON {table} FOR EACH ROW "
                       f"EXECUTE FUNCTION analytics_{table}()"]
    return statements
