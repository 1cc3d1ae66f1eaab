"""The worker's durable queue, on either backend: jobs with leases, retries and per-queue-key order, their side
effects, channel threads and messages, and schedules.

A claim is one transaction that moves the row to ``running`` with the claimer's lease before anyone else can
take it: on SQLite because there is one writer at a time (``BEGIN IMMEDIATE``), on PostgreSQL because the
claim's SELECT locks the row ``FOR UPDATE SKIP LOCKED`` (concurrent claimers pass over it and take the next
one instead of waiting). A job whose holder stops renewing its lease is claimable again (at-least-once); the
effects table is what keeps a retried job from repeating what already happened.

Per-queue-key order (a conversation's messages one at a time, oldest first) is the claim's rule "no earlier
unfinished job with the same key". On PostgreSQL it holds under concurrent claimers because a job's status
only leaves queued/running when it is finished, and because ``enqueue_job`` takes the key's lock before
drawing its ``seq``: without it, two enqueues of one key could commit in the other order than their seqs,
and a claimer could run the later job before the earlier one was even visible.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping, Sequence
from typing import Any, cast

from halguru.errors import TooManyJobs
from halguru.store.records import ChannelMessageRecord, EffectRecord, JobRecord, OptOutRecord
from halguru.store.sql_base import SQLBase, agent_filter
from halguru.store.sql_runs import PRUNED, prefix_range

# A job may run when it is due (or its holder's lease passed) and no earlier job of its queue key is unfinished:
# queued, running, or cancelled while running and still leased (its holder has not stopped it yet). The two ways
# to be due are looked for apart, each in an index's order so that the search stops at its first match: one
# query with both (an OR) sorted every runnable row, 86 ms a pass for a backlog of 20,000 on SQLite.
_DUE = ("j.status = 'queued' AND j.run_after <= ?",  # jobs_waiting (status, run_after, seq, owner): in order
        "j.status = 'running' AND j.lease_expires < ?")  # abandoned by a stopped worker: a few at most
_IN_ORDER = """
    (j.queue_key IS NULL OR NOT EXISTS (
        SELECT 1 FROM jobs e WHERE e.queue_key = j.queue_key AND e.seq < j.seq
        AND (e.status IN ('queued', 'running') OR (e.status = 'cancelled' AND e.lease_expires >= ?))))
"""


_FAIR = "coalesce(owner, '') || '|' || agent"  # records.fair_key in SQL
_TURN = "(coalesce(j.owner, '') = ? AND j.agent = ?)"  # a job of one fair_key


def new_job_id() -> str:
    return f"job_{int(time.time() * 1000):x}{secrets.token_hex(5)}"


def _job(row: Mapping[str, Any]) -> JobRecord:
    job = {k: row[k] for k in JobRecord.__annotations__}
    job["payload"] = json.loads(row["payload"])
    job["result"] = json.loads(row["result"]) if row["result"] else None
    return cast(JobRecord, job)


class JobsMixin(SQLBase):
    """Jobs, job effects, channel threads and messages, schedules."""

    # -- jobs -------------------------------------------------------------------------
    def enqueue_job(self, kind: str, agent: str, payload: Mapping[str, Any], *, queue_key: str | None = None,
                    idempotency_key: str | None = None, owner: str | None = None, delay: float = 0.0,
                    max_attempts: int = 5, max_waiting: int | None = None) -> tuple[JobRecord, bool]:
        with self._tx() as conn:
            if max_waiting is not None and owner is not None:
                self._check_waiting(conn, owner, max_waiting, idempotency_key)
            if queue_key is not None:  # seqs of one key are drawn in commit order (see the module docstring)
                self._lock(conn, "queue", queue_key)
            now = time.time()
            rows = conn.execute(
                "INSERT INTO jobs (id, kind, agent, queue_key, payload, status, max_attempts, run_after, "
                "idempotency_key, owner, created) VALUES (?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?) "
                "ON CONFLICT (idempotency_key) DO NOTHING RETURNING *",
                (new_job_id(), kind, agent, queue_key, json.dumps(dict(payload)), max(1, max_attempts),
                 now + delay, idempotency_key, owner, now)).fetchall()  # all: SQLite ends the statement
            if not rows:  # the key was used: a concurrent insert of it waited for the first one to commit
                return _job(conn.execute("SELECT * FROM jobs WHERE idempotency_key = ?",
                                         (idempotency_key,)).fetchone()), False
            self._notify(conn)
            return _job(rows[0]), True

    def _check_waiting(self, conn: Any, owner: str, limit: int, idempotency_key: str | None) -> None:
        """TooManyJobs if ``owner`` has ``limit`` jobs queued (a repeat of a used idempotency key is no new job).
        Counted under the owner's lock: on PostgreSQL concurrent enqueues each counted before the others
        committed, and all of 16 at once got past a cap of 5."""
        self._lock(conn, "waiting", owner)
        if idempotency_key is not None and conn.execute("SELECT 1 FROM jobs WHERE idempotency_key = ?",
                                                        (idempotency_key,)).fetchone() is not None:
            return
        waiting = conn.execute("SELECT count(*) AS n FROM (SELECT 1 FROM jobs WHERE owner = ? AND status = 'queued' "
                               "LIMIT ?) w", (owner, limit)).fetchone()["n"]
        if waiting >= limit:
            raise TooManyJobs(f"{limit} of your jobs are already waiting; queue more when some have run")

    def claim_job(self, holder: str, lease: float, agents: Sequence[str] | None = None,
                  served: Sequence[str] = ()) -> JobRecord | None:
        if agents is not None and not agents:
            return None
        if self._first_runnable(None, time.time(), agents, set()) is None:
            return None  # nothing runnable: no write lock taken (idle workers look often)
        with self._tx() as conn:
            while True:
                now = time.time()
                # Fair across owners and agents (``fair_key``): two keys' 40 queued jobs each must not hold back a
                # third's (or the channels' replies) until all are done, nor one agent's inbox flood another agent's
                # replies. Those with a job running, or served last, wait their turn.
                running = dict(conn.execute(f"SELECT {_FAIR}, count(*) FROM jobs "
                                            "WHERE status = 'running' AND lease_expires >= ? GROUP BY 1",
                                            (now,)).fetchall())
                passes = [{*running, *served}] + [{o for o, n in running.items() if n > level}
                                                 for level in sorted({0, *running.values()})]
                job_id = None
                tries = [*(s for s in passes if s), set()]  # then anyone's
                for i, skipped in enumerate(tries):
                    if skipped in tries[:i]:  # the same ones passed over again: the same rows walked again
                        continue
                    job_id = self._first_runnable(conn, now, agents, skipped)
                    if job_id is not None:
                        break
                if job_id is None:
                    return None
                row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
                if row["attempts"] >= row["max_attempts"]:  # its worker died on its last attempt
                    conn.execute("UPDATE jobs SET status = 'dead', finished = ?, holder = NULL, lease_expires = NULL, "
                                 "last_error = coalesce(last_error, 'its worker stopped (lease expired)') "
                                 "WHERE id = ?", (now, job_id))
                    continue
                conn.execute("UPDATE jobs SET status = 'running', holder = ?, lease_expires = ?, "
                             "attempts = attempts + 1, started = coalesce(started, ?) WHERE id = ?",
                             (holder, now + lease, now, job_id))
                return _job(conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone())

    def _first_runnable(self, conn: Any, now: float, agents: Sequence[str] | None, skipped: set[str]) -> str | None:
        """The id of the runnable job due first (then the oldest) of ``agents``' jobs, whose ``fair_key`` is not
        in ``skipped``; in ``conn``'s transaction locked for the claim (PostgreSQL: rows other claimers hold are
        passed over), else (None) a look without a lock."""
        only = f" AND j.agent IN ({','.join('?' * len(agents))})" if agents else ""
        # one (owner, agent) test per key, not the key built for each row walked: 6.5 ms a pass over 5,000, not 11
        others = f" AND NOT ({' OR '.join([_TURN] * len(skipped))})" if skipped else ""
        turns = [part for key in skipped for part in key.partition("|")[::2]]  # (owner, agent) of each
        found: list[Any] = []
        for due in _DUE:
            sql = (f"SELECT j.id, j.run_after, j.seq FROM jobs j WHERE {due} AND {_IN_ORDER}{only}{others} "
                   f"ORDER BY j.run_after, j.seq LIMIT 1")
            params = (now, now, *(agents or ()), *turns)
            rows = conn.execute(sql + self.SKIP_LOCKED, params).fetchall() if conn is not None else \
                self._rows(sql, params)
            found += rows
        return min(found, key=lambda r: (r["run_after"], r["seq"]))["id"] if found else None

    def renew_job(self, job_id: str, holder: str, lease: float) -> bool:
        with self._tx() as conn:
            return conn.execute("UPDATE jobs SET lease_expires = ? WHERE id = ? AND holder = ? AND status = 'running'",
                                (time.time() + lease, job_id, holder)).rowcount == 1

    def finish_job(self, job_id: str, holder: str, result: Mapping[str, Any] | None = None) -> bool:
        with self._tx() as conn:
            return conn.execute(
                "UPDATE jobs SET status = 'done', finished = ?, result = ?, lease_expires = NULL "
                "WHERE id = ? AND holder = ? AND status = 'running'",
                (time.time(), json.dumps(dict(result)) if result is not None else None, job_id, holder)).rowcount == 1

    def fail_job(self, job_id: str, holder: str, error: str, retry_in: float | None) -> str:
        now = time.time()
        with self._tx() as conn:
            row = conn.execute("SELECT attempts, max_attempts FROM jobs WHERE id = ? AND holder = ? "
                               "AND status = 'running'" + self.FOR_UPDATE, (job_id, holder)).fetchone()
            if row is None:
                return ""
            if retry_in is None or row["attempts"] >= row["max_attempts"]:
                conn.execute("UPDATE jobs SET status = 'dead', finished = ?, last_error = ?, lease_expires = NULL "
                             "WHERE id = ?", (now, error, job_id))
                return "dead"
            conn.execute("UPDATE jobs SET status = 'queued', run_after = ?, last_error = ?, holder = NULL, "
                         "lease_expires = NULL WHERE id = ?", (now + retry_in, error, job_id))
            self._notify(conn)
            return "queued"

    def release_job(self, job_id: str, holder: str, reason: str, delay: float = 0.0) -> bool:
        with self._tx() as conn:
            released = conn.execute(
                "UPDATE jobs SET status = 'queued', attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, "
                "run_after = ?, last_error = ?, holder = NULL, lease_expires = NULL "
                "WHERE id = ? AND holder = ? AND status = 'running'",
                (time.time() + delay, reason, job_id, holder)).rowcount == 1
            if released:
                self._notify(conn)
            return released

    def get_job(self, job_id: str) -> JobRecord | None:
        rows = self._rows("SELECT * FROM jobs WHERE id = ?", [job_id])
        return _job(rows[0]) if rows else None

    def find_job(self, job_id_or_prefix: str) -> JobRecord | None:
        """By id, else by a unique prefix of one."""
        found = self.get_job(job_id_or_prefix)
        if found is not None or not job_id_or_prefix:
            return found
        rows = self._rows("SELECT * FROM jobs WHERE id >= ? AND id < ? LIMIT 2", prefix_range(job_id_or_prefix))
        return _job(rows[0]) if len(rows) == 1 else None

    def list_jobs(self, limit: int = 20, *, status: str | None = None, agent: str | None = None,
                  agents: Sequence[str] | None = None, owner: str | None = None,
                  before: int | None = None) -> list[JobRecord]:
        """Newest first (``seq DESC``); ``before`` (the last row's seq) is the next page's start: jobs queued
        meanwhile go to the head and shift nothing."""
        start = agent_filter(agent, agents)
        if start is None:
            return []
        clauses, params = start
        clauses.append(f"kind <> '{PRUNED}'")  # stubs kept against replays are no jobs to list
        for clause, value in (("status = ?", status), ("owner = ?", owner), ("seq < ?", before)):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        return [_job(r) for r in self._rows(f"SELECT * FROM jobs {where} ORDER BY seq DESC LIMIT ?",
                                            [*params, limit])]

    def retry_job(self, job_id: str, *, owner: str | None = None, max_waiting: int | None = None) -> bool:
        now = time.time()
        with self._tx() as conn:  # cancelled while running: not before the lease its old holder may still use;
            # never started: not before the time it was queued for (its ``delay``); else now
            if max_waiting is not None and owner is not None:
                self._check_waiting(conn, owner, max_waiting, None)
            retried = conn.execute("UPDATE jobs SET status = 'queued', attempts = 0, finished = NULL, run_after = "
                                   "CASE WHEN lease_expires > ? THEN lease_expires "
                                   "WHEN started IS NULL AND run_after > ? THEN run_after ELSE ? END, "
                                   "holder = NULL, lease_expires = NULL WHERE id = ? "
                                   "AND status IN ('dead', 'cancelled')", (now, now, now, job_id)).rowcount == 1
            if retried:
                self._notify(conn)
            return retried

    def cancel_job(self, job_id: str) -> bool:
        now = time.time()
        with self._tx() as conn:  # a running one keeps its lease until its holder lets go (``let_go_job``)
            cancelled = conn.execute("UPDATE jobs SET status = 'cancelled', finished = ?, lease_expires = "
                                     "CASE WHEN status = 'running' THEN lease_expires ELSE NULL END "
                                     "WHERE id = ? AND status IN ('queued', 'running')", (now, job_id)).rowcount == 1
            if cancelled:  # its run stops at the holder's next look for cancels (``RunsMixin.watch_cancel``)
                conn.execute("UPDATE runs SET cancel_requested = coalesce(cancel_requested, ?) "
                             "WHERE job_id = ? AND status = 'running'", (now, job_id))
            return cancelled

    def cancel_queued_jobs(self, agent: str, *, owner: str | None = None) -> int:
        mine, params = (" AND owner = ?", [owner]) if owner is not None else ("", [])
        with self._tx() as conn:
            return int(conn.execute("UPDATE jobs SET status = 'cancelled', finished = ?, lease_expires = NULL "
                                    f"WHERE agent = ? AND status = 'queued'{mine}",
                                    [time.time(), agent, *params]).rowcount)

    def retry_dead_jobs(self, agents: Sequence[str] | None = None, *, owner: str | None = None,
                        max_waiting: int | None = None) -> tuple[int, int]:
        if agents is not None and not agents:
            return 0, 0
        where, params = "status = 'dead'", []
        if agents is not None:
            where += f" AND agent IN ({','.join('?' * len(agents))})"
            params += list(agents)
        if owner is not None:
            where += " AND owner = ?"
            params.append(owner)
        with self._tx() as conn:
            if max_waiting is None:
                ids = [r["id"] for r in conn.execute(f"SELECT id FROM jobs WHERE {where} ORDER BY seq", params)]
            else:
                ids = self._dead_within_caps(conn, where, params, owner, max_waiting)
            now = time.time()
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                conn.execute("UPDATE jobs SET status = 'queued', attempts = 0, finished = NULL, run_after = ?, "
                             f"holder = NULL, lease_expires = NULL WHERE id IN ({','.join('?' * len(chunk))})",
                             [now, *chunk])
            if ids:
                self._notify(conn)
            left = conn.execute(f"SELECT count(*) AS n FROM jobs WHERE {where}", params).fetchone()["n"]
            return len(ids), int(left)

    def _dead_within_caps(self, conn: Any, where: str, params: list[Any], owner: str | None,
                          max_waiting: int) -> list[str]:
        """The dead jobs (``where``) to queue again, oldest first, as many of each owner's as leave them at most
        ``max_waiting`` queued (``owner``: that owner's only; else every owner's, and all of those with none, which
        nobody's cap counts: a channel's, a schedule's). Each owner's count is taken under their lock, as
        ``_check_waiting``: concurrent retries and enqueues count each other."""
        owners = [owner] if owner is not None else sorted(
            r["owner"] for r in conn.execute(f"SELECT DISTINCT owner FROM jobs WHERE {where} AND owner IS NOT NULL",
                                             params))
        picked: list[str] = []
        for who in owners:  # in order: two bulk retries lock owners alike, never crosswise
            self._lock(conn, "waiting", who)
        for who in owners:
            waiting = conn.execute("SELECT count(*) AS n FROM jobs WHERE owner = ? AND status = 'queued'",
                                   (who,)).fetchone()["n"]
            room = max_waiting - int(waiting)
            if room > 0:
                picked += [r["id"] for r in conn.execute(
                    f"SELECT id FROM jobs WHERE {where} AND owner = ? ORDER BY seq LIMIT ?", [*params, who, room])]
        if owner is None:
            picked += [r["id"] for r in conn.execute(f"SELECT id FROM jobs WHERE {where} AND owner IS NULL", params)]
        return picked

    def let_go_job(self, job_id: str, holder: str) -> bool:
        with self._tx() as conn:
            let_go = conn.execute("UPDATE jobs SET lease_expires = NULL WHERE id = ? AND holder = ? "
                                  "AND status = 'cancelled' AND lease_expires IS NOT NULL",
                                  (job_id, holder)).rowcount == 1
            if let_go:
                self._notify(conn)
            return let_go

    def job_stats(self) -> dict[str, float]:
        now = time.time()
        stats: dict[str, float] = {s: 0 for s in ("queued", "running", "done", "dead", "cancelled")}
        for row in self._rows(f"SELECT status, count(*) AS n FROM jobs WHERE kind <> '{PRUNED}' GROUP BY status"):
            stats[row["status"]] = row["n"]
        oldest = self._rows("SELECT min(run_after) AS t FROM jobs WHERE status = 'queued' AND run_after <= ?", [now])
        stats["oldest_queued_s"] = now - oldest[0]["t"] if oldest and oldest[0]["t"] is not None else 0.0
        return stats

    def job_next_due(self) -> float | None:
        rows = self._rows("SELECT min(run_after) AS t FROM jobs WHERE status = 'queued'")
        running = self._rows("SELECT min(lease_expires) AS t FROM jobs WHERE status = 'running'")
        times = [r[0]["t"] for r in (rows, running) if r and r[0]["t"] is not None]
        return min(times) if times else None

    # -- effects ------------------------------------------------------------------------
    def begin_effect(self, job_id: str, key: str) -> EffectRecord | None:
        now = time.time()
        with self._tx() as conn:
            self._lock(conn, "effect", f"{job_id}\n{key}")
            row = conn.execute("SELECT * FROM job_effects WHERE job_id = ? AND key = ?", (job_id, key)).fetchone()
            if row is not None:
                effect = dict(row)
                effect["value"] = json.loads(row["value"]) if row["value"] else None
                return cast(EffectRecord, effect)
            conn.execute("INSERT INTO job_effects (job_id, key, state, started, updated) "
                         "VALUES (?, ?, 'started', ?, ?)", (job_id, key, now, now))
            return None

    def finish_effect(self, job_id: str, key: str, value: Any) -> None:
        now = time.time()
        with self._tx() as conn:
            conn.execute("INSERT INTO job_effects (job_id, key, state, value, started, updated) "
                         "VALUES (?, ?, 'done', ?, ?, ?) ON CONFLICT (job_id, key) DO UPDATE SET state = 'done', "
                         "value = excluded.value, updated = excluded.updated",
                         (job_id, key, _effect_json(value), now, now))

    # -- channels --------------------------------------------------------------------------
    def thread_conversation(self, channel: str, agent: str, thread: str, *, title: str = "",
                            owner: str | None = None) -> str:
        with self._tx() as conn:
            self._lock(conn, "thread", f"{channel}\n{agent}\n{thread}")
            row = conn.execute("SELECT t.conversation_id FROM channel_threads t JOIN conversations c "
                               "ON c.id = t.conversation_id WHERE t.channel = ? AND t.agent = ? AND t.thread = ?",
                               (channel, agent, thread)).fetchone()
            if row is not None:
                return str(row[0])
            conv_id = f"conv_{int(time.time() * 1000):x}{secrets.token_hex(10)}"
            now = time.time()
            conn.execute("INSERT INTO conversations (id, agent, title, created, updated, owner) "
                         "VALUES (?, ?, ?, ?, ?, ?)", (conv_id, agent, title[:80], now, now, owner))
            conn.execute("INSERT INTO channel_threads (channel, agent, thread, conversation_id) VALUES (?, ?, ?, ?) "
                         "ON CONFLICT (channel, agent, thread) "
                         "DO UPDATE SET conversation_id = excluded.conversation_id",
                         (channel, agent, thread, conv_id))
            return conv_id

    def claim_thread(self, channel: str, agent: str, threads: Sequence[str],
                     owner: str | None) -> tuple[str, str] | None:
        if not threads:
            return None
        owned = "c.owner = ?" if owner is not None else "c.owner IS NULL"
        with self._tx() as conn:
            rows = conn.execute(
                "SELECT t.thread, t.conversation_id FROM channel_threads t JOIN conversations c "
                f"ON c.id = t.conversation_id WHERE t.channel = ? AND t.agent = ? AND t.thread IN "
                f"({', '.join('?' * len(threads))}) AND {owned} AND c.taken_over_by IS NULL",
                (channel, agent, *threads, *([owner] if owner is not None else []))).fetchall()
            found = {str(r[0]): str(r[1]) for r in rows}
            for thread in (t for t in threads if t in found):
                conversation_id = found[thread]
                # Set aside by the row's key: a concurrent claim of the same row (PostgreSQL) updates nothing.
                if conn.execute("UPDATE channel_threads SET thread = ? WHERE channel = ? AND agent = ? AND thread = ?",
                                (_held(conversation_id), channel, agent, thread)).rowcount:
                    return thread, conversation_id
        return None

    def retire_thread(self, channel: str, agent: str, thread: str, conversation_id: str) -> bool:
        with self._tx() as conn:
            self._lock(conn, "thread", f"{channel}\n{agent}\n{thread}")
            return bool(conn.execute(
                "UPDATE channel_threads SET thread = ? WHERE channel = ? AND agent = ? AND thread = ? "
                "AND conversation_id = ?", (f"{thread}\nfull:{conversation_id}", channel, agent, thread,
                                            conversation_id)).rowcount)

    def set_thread(self, channel: str, agent: str, conversation_id: str, thread: str | None) -> None:
        held = _held(conversation_id)
        with self._tx() as conn:
            if thread is not None:  # two conversations setting the same thread at once: one after the other
                self._lock(conn, "thread", f"{channel}\n{agent}\n{thread}")
            if thread is not None and conn.execute(
                    "SELECT 1 FROM channel_threads WHERE channel = ? AND agent = ? AND thread = ? "
                    "AND conversation_id <> ?", (channel, agent, thread, conversation_id)).fetchone():
                thread = None  # the same messages in another conversation: that one keeps them
            value = thread or held
            if not conn.execute("UPDATE channel_threads SET thread = ? WHERE channel = ? AND agent = ? AND thread = ?",
                                (value, channel, agent, held)).rowcount:
                conn.execute("INSERT INTO channel_threads (channel, agent, thread, conversation_id) "
                             "SELECT ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM conversations WHERE id = ?) "
                             "ON CONFLICT (channel, agent, thread) DO NOTHING",
                             (channel, agent, value, conversation_id, conversation_id))

    def record_channel_message(self, message: ChannelMessageRecord) -> bool:
        columns = list(ChannelMessageRecord.__annotations__)
        with self._tx() as conn:
            self._lock(conn, "channel_message", f"{message['channel']}\n{message['id']}")
            known = conn.execute("SELECT 1 FROM channel_messages WHERE channel = ? AND id = ?",
                                 (message["channel"], message["id"])).fetchone() is not None
            # Known already (a delivery report came first): fill in what the report could not say, keep its status.
            conn.execute(f"INSERT INTO channel_messages ({', '.join(columns)}) "
                         f"VALUES ({', '.join('?' * len(columns))}) "
                         "ON CONFLICT (channel, id) DO UPDATE SET agent = excluded.agent, "
                         "direction = excluded.direction, address = excluded.address, body = excluded.body, "
                         "conversation_id = coalesce(channel_messages.conversation_id, excluded.conversation_id), "
                         "job_id = coalesce(channel_messages.job_id, excluded.job_id) "
                         "WHERE channel_messages.body = '' AND channel_messages.job_id IS NULL",
                         [message.get(c) for c in columns])
            return not known

    def update_channel_message(self, channel: str, message_id: str, status: str | None = None, *,
                               conversation_id: str | None = None, error: str | None = None) -> bool:
        with self._tx() as conn:
            return conn.execute("UPDATE channel_messages SET status = coalesce(?, status), "
                                "conversation_id = coalesce(?, conversation_id), "
                                "error = CASE WHEN ? = '' THEN NULL ELSE coalesce(?, error) END, "
                                "updated = ? WHERE channel = ? AND id = ?",
                                (status, conversation_id, error, error, time.time(), channel, message_id)
                                ).rowcount == 1

    def forget_channel_message(self, channel: str, message_id: str) -> bool:
        with self._tx() as conn:
            return conn.execute("DELETE FROM channel_messages WHERE channel = ? AND id = ?",
                                (channel, message_id)).rowcount == 1

    def count_channel_answers(self, channel: str, agent: str, address: str, since: float,
                              body: str | None = None) -> int:
        # channel_messages_address (channel, agent, the address's start, created) finds the correspondent's last
        # hour; the whole address is compared in the count, not the WHERE: there SQLite put the address itself
        # in the indexed expression (constant propagation) and scanned all of the agent's messages
        same = " AND body = ?" if body is not None else ""
        rows = self._rows(f"SELECT count(CASE WHEN address = ?{same} THEN 1 END) AS n FROM channel_messages "
                          "WHERE channel = ? AND agent = ? AND substr(address, 1, 100) = ? AND created > ? "
                          "AND direction = 'in' AND job_id IS NOT NULL",
                          [address, *([body] if body is not None else []), channel, agent, address[:100], since])
        return int(rows[0]["n"])

    def get_channel_message(self, channel: str, message_id: str) -> ChannelMessageRecord | None:
        rows = self._rows("SELECT * FROM channel_messages WHERE channel = ? AND id = ?", [channel, message_id])
        return cast(ChannelMessageRecord, rows[0]) if rows else None

    def list_channel_messages(self, conversation_id: str) -> list[ChannelMessageRecord]:
        return cast(list[ChannelMessageRecord], self._rows(
            "SELECT * FROM channel_messages WHERE conversation_id = ? ORDER BY created", [conversation_id]))

    def set_opt_out(self, channel: str, agent: str, ours: str, sender: str, reason: str | None) -> bool:
        key = (channel, agent, ours, sender)
        with self._tx() as conn:
            if reason is None:
                return conn.execute("DELETE FROM channel_opt_outs WHERE channel = ? AND agent = ? AND ours = ? "
                                    "AND sender = ?", key).rowcount > 0
            return conn.execute("INSERT INTO channel_opt_outs (channel, agent, ours, sender, reason, since) VALUES "
                                "(?, ?, ?, ?, ?, ?) ON CONFLICT (channel, agent, ours, sender) DO NOTHING",
                                (*key, reason, time.time())).rowcount > 0

    def get_opt_out(self, channel: str, agent: str, ours: str, sender: str) -> OptOutRecord | None:
        rows = self._rows("SELECT * FROM channel_opt_outs WHERE channel = ? AND agent = ? AND ours = ? "
                          "AND sender = ?", [channel, agent, ours, sender])
        return cast(OptOutRecord, rows[0]) if rows else None

    def list_opt_outs(self, channel: str | None = None, agent: str | None = None, sender: str | None = None,
                      limit: int = 100) -> list[OptOutRecord]:
        where = [f"{name} = ?" for name, value in (("channel", channel), ("agent", agent), ("sender", sender))
                 if value is not None]
        params = [value for value in (channel, agent, sender) if value is not None]
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        return cast(list[OptOutRecord], self._rows(
            f"SELECT * FROM channel_opt_outs{clause} ORDER BY since DESC, sender LIMIT ?", [*params, limit]))

    # -- schedules -------------------------------------------------------------------------------
    def schedule_next(self, schedule_id: str) -> float | None:
        rows = self._rows("SELECT next_due FROM schedules WHERE id = ?", [schedule_id])
        return rows[0]["next_due"] if rows else None

    def waiting_job(self, key_prefix: str) -> JobRecord | None:
        low, high = prefix_range(key_prefix)
        rows = self._rows("SELECT * FROM jobs WHERE idempotency_key >= ? AND idempotency_key < ? AND status = 'queued' "
                          "LIMIT 1", (low, high))
        return _job(rows[0]) if rows else None

    def fire_schedule(self, schedule_id: str, due: float | None, next_due: float,
                      job: Mapping[str, Any] | None) -> bool:
        now = time.time()
        with self._tx() as conn:
            self._lock(conn, "schedule", schedule_id)
            row = conn.execute("SELECT next_due FROM schedules WHERE id = ?", (schedule_id,)).fetchone()
            if (row[0] if row else None) != due:
                return False  # another worker moved it first
            conn.execute("INSERT INTO schedules (id, next_due, updated) VALUES (?, ?, ?) ON CONFLICT (id) "
                         "DO UPDATE SET next_due = excluded.next_due, updated = excluded.updated",
                         (schedule_id, next_due, now))
            if job is not None:
                spec = dict(job)
                self.enqueue_job(spec.pop("kind"), spec.pop("agent"), spec.pop("payload"), **spec)
            return True


def _held(conversation_id: str) -> str:
    """The thread a conversation holds while it is claimed or has no thread of its own: one no claim asks for
    (threads are hashes)."""
    return f"~{conversation_id}"


def _effect_json(value: Any) -> str:
    """What an effect gave, as stored: any JSON value (a channel part's provider id, a dict, nothing), and what is
    not JSON as its text, never an error once the effect is done (the job's retry would do it again)."""
    return json.dumps(dict(value) if isinstance(value, Mapping) else value, default=str)
