"""Runs and their events (either backend), and run liveness as a lease.

A process id says nothing in a container (``halguru serve`` is PID 1 after every restart) nor across
hosts, so a run is alive while its holder renews a lease: ``start_run`` records this process's boot id
and ``lease_expires = now + lease``; a daemon thread renews the leases of every run this store holds
every ``lease / 3`` seconds with one UPDATE; ``finish_run`` lets go. A run stored ``running`` whose lease
has passed reads ``interrupted`` (its process died or hung), and ``reap_expired_runs`` says so for good.

Stopping a run held elsewhere goes through the same rows: ``request_cancel`` stores when someone asked
(``cancel_requested``), and the same thread, every ``CANCEL_POLL`` seconds while this process runs any run that
``watch_cancel`` names, reads which of them were asked and calls their callbacks (the runtime cancels the run's
task there). One path for every replica, the one that took the request included.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

from halguru.errors import StoreError
from halguru.store.records import CLAIMING, RunListRecord, RunRecord
from halguru.store.sql_base import SQLBase, SQLConnection, agent_filter, values
from halguru.store.sql_conversations import MESSAGES, message_from_row, tool_calls_json
from halguru.store.sql_message_keys import KEY_TTL, delete_old_keys

if TYPE_CHECKING:  # a listing (`halguru logs`) needs neither: their pydantic models cost 80 ms to import
    from halguru.agents.events import BaseEvent
    from halguru.models.base import Message

log = logging.getLogger(__name__)
T = TypeVar("T")

BOOT_ID = uuid.uuid4().hex
"""This process: the holder recorded on the runs it starts."""
CANCEL_POLL = 0.2  # seconds between looks for cancels of the runs this process holds (while it holds any)
INSERT_ROWS = 500  # rows per multi-row INSERT (3,000 parameters: far below either database's limit)


def _new_boot_id() -> None:
    global BOOT_ID
    BOOT_ID = uuid.uuid4().hex


os.register_at_fork(after_in_child=_new_boot_id)


def _chunks(items: Sequence[T]) -> Iterator[Sequence[T]]:
    """``items`` in pieces of at most INSERT_ROWS, one multi-row INSERT each."""
    for start in range(0, len(items), INSERT_ROWS):
        yield items[start:start + INSERT_ROWS]


def default_lease() -> float:
    """How long a run stays alive without a renewal (``HALGURU_RUN_LEASE``, seconds)."""
    from halguru.config import get_settings

    return get_settings().run_lease


# A 'running' row whose lease passed (or that never had one: written before leases) is interrupted.
_STATUS = ("CASE WHEN r.status = 'running' AND coalesce(r.lease_expires, 0) < ? THEN 'interrupted' "
           "ELSE r.status END AS status")
# A resume's claim whose process died before its continuation started (the claim expired) reads as none.
RESUMED_BY = (f"CASE WHEN c.resumed_by = '{CLAIMING}' AND coalesce(c.claim_expires, 0) < ? THEN NULL "
              "ELSE c.resumed_by END")
_RUN_COLUMNS = ("r.id, r.conversation_id, r.agent, r.model, r.input, r.output, " + _STATUS + ", r.error, "
                "r.started, r.finished, r.duration_ms, r.steps, r.prompt_tokens, r.completion_tokens, r.owner, "
                "r.holder, r.lease_expires, r.job_id")


def prefix_range(prefix: str) -> tuple[str, str]:
    """Bounds of the ids starting with ``prefix``, for an indexed ``id >= ? AND id < ?`` (LIKE would
    treat ``_`` as a wildcard and ignore case)."""
    return prefix, prefix + "\U0010ffff"


def is_test_start(event: BaseEvent) -> bool:
    """A run_started event of a run `halguru test` made (``test`` in its metadata)."""
    return event.type == "run_started" and bool(getattr(event, "metadata", {}).get("test"))


PRUNED = "pruned"  # the kind of a pruned channel job's stub: its idempotency key kept, its content gone
REPLAY_GUARD_S = 180 * 86400.0  # how long such a stub refuses the same provider message again
PRUNE_BATCH = 10_000  # runs ``prune_runs`` deletes per transaction (SQLite: about 0.3 s each)

class RunsMixin(SQLBase):
    lease: float

    def _init_leases(self, lease: float | None) -> None:
        self.lease = default_lease() if lease is None else lease
        self._held: set[str] = set()
        self._claims: set[tuple[str, str]] = set()  # (table, run id): continuation claims (``sql_resume``)
        self._unfinished: set[str] = set()  # runs whose finish could not be stored (``_finish_failed``)
        self._cancels: dict[str, Callable[[], None]] = {}  # run id -> what stops it (``watch_cancel``)
        self._held_lock = threading.Lock()
        self._renewer: threading.Thread | None = None
        self._stop_renewing = threading.Event()
        self._wake = threading.Event()  # a run newly watched for cancels: look every CANCEL_POLL from now

    # -- leases -----------------------------------------------------------------------
    def _hold(self, run_id: str, claim: str | None = None) -> None:
        """Renew the run's lease (or, with ``claim``, its claim in that table: checkpoints or approvals)."""
        with self._held_lock:
            if claim is None:
                self._held.add(run_id)
            else:
                self._claims.add((claim, run_id))
            self._start_renewer()

    def _start_renewer(self) -> None:
        """(Holding ``_held_lock``.)"""
        if self._renewer is None or not self._renewer.is_alive():
            self._stop_renewing.clear()
            self._renewer = threading.Thread(target=self._renew_leases, name="halguru-store-leases", daemon=True)
            self._renewer.start()

    def _finish_failed(self, run_id: str) -> None:
        """The run's finish could not be stored (the store went away): it stays 'running' under its lease, and its
        conversation busy (409) until that passes, up to ``lease`` seconds after the store is back though nothing
        runs. The renewer stores it as interrupted at its first tick that reaches the store instead."""
        with self._held_lock:
            self._held.discard(run_id)
            self._cancels.pop(run_id, None)
            self._unfinished.add(run_id)
            self._start_renewer()

    def _release(self, run_id: str, claim: str | None = None) -> None:
        with self._held_lock:
            if claim is None:
                self._held.discard(run_id)
                self._cancels.pop(run_id, None)
            else:
                self._claims.discard((claim, run_id))

    def watch_cancel(self, run_id: str, on_cancel: Callable[[], None]) -> None:
        """Call ``on_cancel`` (once, on the store's lease thread) when someone asks to stop the running run
        ``run_id`` (``request_cancel``, from any process on this database), until the run finishes."""
        with self._held_lock:
            self._cancels[run_id] = on_cancel
            self._start_renewer()
        self._wake.set()

    def request_cancel(self, run_id: str) -> str:
        """Ask whichever process holds the run to stop it: it does at its next look (``CANCEL_POLL``). Returns the
        run's status as read: 'running' (asked, or asked already), else how it ended (nothing asked). StoreError
        for an unknown run."""
        now = time.time()
        with self._tx() as conn:
            row = conn.execute(f"SELECT {_STATUS} FROM runs r WHERE r.id = ?" + self.FOR_UPDATE,
                               (now, run_id)).fetchone()
            if row is None:
                raise StoreError(f"no run {run_id!r} in {self.location}")
            if row["status"] == "running":
                conn.execute("UPDATE runs SET cancel_requested = coalesce(cancel_requested, ?) WHERE id = ?",
                             (now, run_id))
            return str(row["status"])

    def _look_for_cancels(self) -> None:
        """Call the callbacks of the watched runs someone asked to stop (each once)."""
        with self._held_lock:
            watched = sorted(self._cancels)
        if not watched:
            return
        try:
            rows = self._rows(f"SELECT id FROM runs WHERE cancel_requested IS NOT NULL "
                              f"AND id IN ({','.join('?' * len(watched))})", watched)
        except self.errors as exc:  # looked at again at the next tick
            log.warning("could not look for cancelled runs: %s", exc)
            return
        for row in rows:
            with self._held_lock:
                on_cancel = self._cancels.pop(str(row["id"]), None)
            if on_cancel is not None:
                try:
                    on_cancel()
                except Exception:  # one callback's failure never stops the renewals
                    log.exception("stopping run %s failed", row["id"])

    def _renew_leases(self) -> None:
        """Renew every held run's lease and claim in one UPDATE per table, every lease/3 s, and look for cancels
        every CANCEL_POLL s while any run is watched; end when none is held."""
        due = time.monotonic() + self.lease / 3
        while True:
            with self._held_lock:
                watching = bool(self._cancels)
            wait = max(0.0, due - time.monotonic())
            self._wake.wait(min(wait, CANCEL_POLL) if watching else wait)
            self._wake.clear()
            if self._stop_renewing.is_set():
                return
            if watching:
                self._look_for_cancels()
            if time.monotonic() < due:
                continue
            due = time.monotonic() + self.lease / 3
            with self._held_lock:
                held, claims, unfinished = sorted(self._held), sorted(self._claims), sorted(self._unfinished)
                if not held and not claims and not unfinished and not self._cancels:
                    self._renewer = None
                    return
            try:
                with self._tx(relaxed=True) as conn:
                    until = time.time() + self.lease
                    if unfinished:  # (a finish that did commit, its answer lost on the way, is not 'running')
                        conn.execute(f"UPDATE runs SET status = 'interrupted' WHERE status = 'running' AND holder = ? "
                                     f"AND id IN ({','.join('?' * len(unfinished))})", [BOOT_ID, *unfinished])
                    if held:
                        conn.execute(f"UPDATE runs SET lease_expires = ? WHERE status = 'running' AND holder = ? "
                                     f"AND id IN ({','.join('?' * len(held))})", [until, BOOT_ID, *held])
                    for table in ("approvals", "checkpoints"):  # a claim taken over meanwhile is not ours
                        ids = [rid for t, rid in claims if t == table]
                        if ids:
                            conn.execute(f"UPDATE {table} SET claim_expires = ? WHERE claim_holder = ? "
                                         f"AND claim_expires IS NOT NULL AND run_id IN ({','.join('?' * len(ids))})",
                                         [until, BOOT_ID, *ids])
                with self._held_lock:
                    self._unfinished.difference_update(unfinished)
            except self.errors as exc:  # try again at the next tick; the lease outlasts two misses
                log.warning("could not renew the leases of %d runs: %s", len(held) + len(claims), exc)

    def _stop_leases(self) -> None:
        with self._held_lock:
            renewer, self._renewer = self._renewer, None
            self._held.clear()
            self._claims.clear()
            self._unfinished.clear()
            self._cancels.clear()
        self._stop_renewing.set()
        self._wake.set()
        if renewer is not None and renewer is not threading.current_thread():
            renewer.join(10)

    def reap_expired_runs(self) -> int:
        """Mark for good as interrupted the runs stored 'running' whose lease has passed; how many."""
        with self._tx() as conn:
            return conn.execute("UPDATE runs SET status = 'interrupted' WHERE status = 'running' "
                                "AND coalesce(lease_expires, 0) < ?", (time.time(),)).rowcount

    # -- runs -----------------------------------------------------------------------------
    def start_run(self, run_id: str, conversation_id: str, agent: str, model: str, input: str, *,
                  owner: str | None = None, existing: bool = False, resumes: str | None = None,
                  replaces: str | None = None, job_id: str | None = None) -> list[Message] | None:
        """Record a run as running (leased to this process), creating its conversation (titled by the
        input, owned by ``owner``) if it is new; returns the conversation's messages before this run.
        ``existing``: the conversation must exist already; None, and nothing recorded, when it does not.
        ``resumes``: the run this one goes on from, with a decided approval or a checkpoint, so another approval
        pending in the conversation does not hold it back (its decision would be used up for nothing), and whose
        job (``job_id``) it carries on unless given one: a job's run resumed is still that job's. ``replaces``: the
        run a resume goes on from: what it left in the conversation (a failed, cancelled or shut-down run keeps
        its turn so far) is taken back, as its checkpoint holds it and the continuation stores it again; kept,
        the question was there twice and every later model call read it twice."""
        now = time.time()
        run = ("INSERT INTO runs (id, conversation_id, agent, model, input, status, started, owner, holder, "
               "lease_expires, job_id) SELECT ?, ?, ?, ?, ?, 'running', ?, ?, ?, ?, "
               "coalesce(?, (SELECT job_id FROM runs WHERE id = ?))")
        params = (run_id, conversation_id, agent, model, input, now, owner, BOOT_ID, now + self.lease, job_id, resumes)
        with self._tx(relaxed=True) as conn:
            if existing:
                # The conversation's row locked before the check (SQLite's write transactions are serial anyway):
                # a second start waits here, then (read committed) sees the first one's run, committed meanwhile.
                if conn.execute("SELECT 1 FROM conversations WHERE id = ?" + self.FOR_UPDATE,
                                (conversation_id,)).fetchone() is None:
                    return None
                self._not_busy(conn, conversation_id, now, paused=resumes is None)
            else:
                conn.execute(
                    "INSERT INTO conversations (id, agent, title, created, updated, owner) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO NOTHING",
                    (conversation_id, agent, input[:80], now, now, owner),
                )
            conn.execute(run, params)
            if replaces is None and resumes is None and job_id is not None:
                replaces = self._jobs_cut_turn(conn, conversation_id, job_id)
            if replaces is not None:
                conn.execute("DELETE FROM messages WHERE conversation_id = ? AND run_id = ?",
                             (conversation_id, replaces))
            messages = [message_from_row(row) for row in conn.execute(MESSAGES, (conversation_id,))]
        self._hold(run_id)
        return messages

    @staticmethod
    def _jobs_cut_turn(conn: SQLConnection, conversation_id: str, job_id: str) -> str | None:
        """A job's retry: the run of that job whose turn ends the conversation, failed or cut (its question and any
        answer so far), is taken back as a resumed run's is; kept, every try asked the question again (a model
        down for five tries left it five times). Not when the conversation went on after it."""
        last = conn.execute("SELECT r.id, r.job_id, r.status FROM messages m JOIN runs r ON r.id = m.run_id "
                            "WHERE m.conversation_id = ? ORDER BY m.seq DESC LIMIT 1", (conversation_id,)).fetchone()
        if last is None or last["job_id"] != job_id or last["status"] in ("ok", "paused", "running"):
            return None
        return str(last["id"])

    def record_events(self, run_id: str, events: Sequence[BaseEvent]) -> None:
        """Events of the top-level run ``run_id`` (its sub-runs' events included: they name their own ids)."""
        if not events:
            return
        with self._tx(relaxed=True) as conn:
            self._insert_events(conn, run_id, events)

    def _insert_events(self, conn: SQLConnection, run_id: str, events: Sequence[BaseEvent],
                       exists: bool = False) -> None:
        """Insert a run's events if the run still exists (its conversation may be deleted while it streams);
        ``exists``: the caller checked already, in this transaction."""
        if not events:
            return
        # FOR UPDATE (PostgreSQL): a delete of the run waits for this, or this sees it gone, never a half
        if not exists and conn.execute("SELECT 1 FROM runs WHERE id = ?" + self.FOR_UPDATE,
                                       (run_id,)).fetchone() is None:
            return
        if any(map(is_test_start, events)):  # listings leave it out by this column (indexed), not its events
            conn.execute("UPDATE runs SET test = 1 WHERE id = ?", (run_id,))
        for chunk in _chunks(events):
            conn.execute(f"INSERT INTO events (run_id, seq, type, step, ts, data) VALUES {values(len(chunk), 6)}",
                         [v for e in chunk for v in (run_id, e.seq, e.type, e.step, e.ts, e.model_dump_json())])

    def finish_run(
        self, run_id: str, conversation_id: str, summary: Mapping[str, Any], events: Sequence[BaseEvent],
        new_messages: Sequence[Message], active_agent: str | None = None,
    ) -> None:
        """Final events, run status and the conversation's new messages (and, in a team, which member
        now holds the conversation), in one transaction. If the run or its conversation was deleted
        meanwhile (the user deleted the conversation while the run streamed), nothing is recorded."""
        now = time.time()
        try:
            with self._tx(relaxed=True) as conn:
                self._lock(conn, "conversation", conversation_id)  # its messages' seqs, a concurrent delete
                # first, as it also checks that both still exist (each statement costs on PostgreSQL)
                if conn.execute(
                    "UPDATE runs SET status = ?, output = ?, error = ?, finished = ?, duration_ms = ?, steps = ?, "
                    "prompt_tokens = ?, completion_tokens = ? WHERE id = ? "
                    "AND EXISTS (SELECT 1 FROM conversations WHERE id = ?)",
                    (summary["status"], summary["output"], summary.get("error"), now, summary["duration_ms"],
                     summary["steps"], summary["prompt_tokens"], summary["completion_tokens"], run_id,
                     conversation_id),
                ).rowcount == 0:
                    log.info("run %s finished after its conversation %s was deleted: not recorded",
                             run_id, conversation_id)
                    return
                self._insert_events(conn, run_id, events, exists=True)
                for chunk in _chunks(new_messages):
                    # one statement per chunk: its seqs follow the conversation's last, in this order
                    rows = [(i, m.role, m.content, tool_calls_json(m), m.tool_call_id, m.name)
                            for i, m in enumerate(chunk)]
                    conn.execute(
                        "INSERT INTO messages (conversation_id, seq, role, content, tool_calls, tool_call_id, "
                        "name, run_id, created) SELECT ?, last.seq + m.column1, m.column2, m.column3, m.column4, "
                        "m.column5, m.column6, ?, ? FROM (SELECT coalesce(max(seq), -1) + 1 AS seq FROM messages "
                        f"WHERE conversation_id = ?) AS last, (VALUES {values(len(rows), 6)}) AS m",
                        [conversation_id, run_id, now, conversation_id, *(v for row in rows for v in row)])
                conn.execute("UPDATE conversations SET updated = ?, active_agent = coalesce(?, active_agent) "
                             "WHERE id = ?", (now, active_agent, conversation_id))
        except self.errors:
            self._finish_failed(run_id)
            raise
        finally:
            self._release(run_id)

    def list_runs(self, limit: int = 20, agent: str | None = None, conversation_id: str | None = None, *,
                  status: str | None = None, agents: Sequence[str] | None = None,
                  owner: str | None = None, since: float | None = None,
                  test_runs: bool = True, job_id: str | None = None) -> list[RunListRecord]:
        """Newest first, each with its checkpoint (kind, label) and who resumed it. ``agent`` or ``agents``
        (names), ``conversation_id``, ``status`` (as read: 'interrupted' includes expired leases), ``owner``,
        ``since`` (started at or after) and ``job_id`` (the job's runs) filter, and ``test_runs=False`` leaves out
        the runs `halguru test` made (``test`` in their run_started metadata: the ``test`` column, set as that
        event is stored), in SQL, so a page is never short."""
        now = time.time()
        start = agent_filter(agent, agents, "r.agent")
        if start is None:
            return []
        clauses, names = start
        params: list[Any] = [now, now, *names]  # the status's and resumed_by's clocks, then the filters
        if conversation_id:
            clauses.append("r.conversation_id = ?")
            params.append(conversation_id)
        if owner is not None:
            clauses.append("r.owner = ?")
            params.append(owner)
        if job_id is not None:
            clauses.append("r.job_id = ?")
            params.append(job_id)
        if status == "interrupted":
            clauses.append("(r.status = 'interrupted' OR (r.status = 'running' AND coalesce(r.lease_expires, 0) < ?))")
            params.append(now)
        elif status == "running":
            clauses.append("r.status = 'running' AND r.lease_expires >= ?")
            params.append(now)
        elif status is not None:
            clauses.append("r.status = ?")
            params.append(status)
        if since is not None:
            clauses.append("r.started >= ?")
            params.append(since)
        if not test_runs:
            clauses.append("r.test = 0")
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._rows(
            f"SELECT {_RUN_COLUMNS}, c.kind, c.label AS checkpoint, {RESUMED_BY} AS resumed_by FROM runs r "
            f"LEFT JOIN checkpoints c ON c.run_id = r.id {where} ORDER BY r.started DESC LIMIT ?", [*params, limit])
        return cast(list[RunListRecord], rows)

    def prune_runs(self, before: float) -> int:
        """Delete the runs started before ``before`` that are not running (a live lease), waiting for approval
        (a pending approval) or interrupted (a crash or a shutdown stopped it and its checkpoint is not yet
        resumed; an old failed or cancelled run goes, though `halguru runs resume` would take it), with their
        events, approvals and checkpoints, the conversations (their messages, channel threads and messages) left
        without a run, the jobs that finished before ``before``, and the messages endpoint's idempotency keys
        older than 24 hours. One transaction per PRUNE_BATCH runs: a prune of 100,000 runs held the store's write
        lock for seconds (on SQLite every run, chat and worker of ``serve`` waited, or timed out). Returns how
        many runs were deleted."""
        count = 0
        while True:
            deleted = self._prune_batch(before)
            count += deleted
            if deleted < PRUNE_BATCH:
                break
            time.sleep(self.WRITE_PAUSE)
        now = time.time()
        with self._tx() as conn:
            delete_old_keys(conn, now - KEY_TTL)  # keys live a day
            finished = "SELECT id FROM jobs WHERE status IN ('done', 'dead', 'cancelled') AND finished < ?"
            conn.execute(f"DELETE FROM job_effects WHERE job_id IN ({finished})", (before,))
            # A channel message's job leaves a stub (its key, no content) for REPLAY_GUARD_S: a provider's
            # signature has no time in it, so a captured webhook sent again after a prune was answered again.
            conn.execute(f"UPDATE jobs SET kind = '{PRUNED}', payload = '{{}}', result = NULL, last_error = NULL "
                         f"WHERE id IN ({finished}) AND idempotency_key IS NOT NULL AND owner LIKE 'channel:%' "
                         "AND finished >= ?", (before, now - REPLAY_GUARD_S))
            conn.execute(f"DELETE FROM jobs WHERE id IN ({finished}) AND (kind <> '{PRUNED}' OR finished < ?)",
                         (before, now - REPLAY_GUARD_S))
        return count

    def _prune_batch(self, before: float) -> int:
        """Up to PRUNE_BATCH of ``prune_runs``'s runs, oldest first, and the conversations they leave empty, in
        one transaction; how many runs."""
        old = ("SELECT id FROM runs r WHERE started < ? AND NOT (status = 'running' "
               "AND coalesce(lease_expires, 0) >= ?) "
               "AND NOT EXISTS (SELECT 1 FROM approvals a WHERE a.run_id = r.id AND a.status = 'pending') "
               "AND NOT (r.status IN ('running', 'interrupted') AND EXISTS "
               f"(SELECT 1 FROM checkpoints c WHERE c.run_id = r.id AND {RESUMED_BY} IS NULL "
               "AND coalesce(c.agent_path, '') <> '')) ORDER BY started LIMIT ?")
        now = time.time()
        with self._tx() as conn:
            conn.execute("CREATE TEMP TABLE IF NOT EXISTS pruned (id TEXT PRIMARY KEY, conversation_id TEXT)")
            conn.execute("DELETE FROM pruned")
            conn.execute(f"INSERT INTO pruned SELECT id, conversation_id FROM runs WHERE id IN ({old})",
                         (before, now, now, PRUNE_BATCH))
            for table in ("events", "approvals", "checkpoints", "checkpoint_steps", "checkpoint_messages"):
                conn.execute(f"DELETE FROM {table} WHERE run_id IN (SELECT id FROM pruned)")
            count: int = conn.execute("DELETE FROM runs WHERE id IN (SELECT id FROM pruned)").rowcount
            empty = ("SELECT DISTINCT p.conversation_id FROM pruned p WHERE NOT EXISTS "
                     "(SELECT 1 FROM runs r WHERE r.conversation_id = p.conversation_id)")
            for table in ("approvals", "checkpoints", "messages", "channel_threads", "channel_messages",
                          "message_keys"):
                conn.execute(f"DELETE FROM {table} WHERE conversation_id IN ({empty})")
            conn.execute(f"DELETE FROM conversations WHERE id IN ({empty})")
            conn.execute("DELETE FROM pruned")
        return count

    def run_agents(self) -> list[str]:
        """The names of the agents that have runs stored (`halguru test`'s too), sorted: what `halguru logs
        --agent` can match."""
        # sorted here: PostgreSQL's collation orders names otherwise than SQLite's bytes
        return sorted(str(row["agent"]) for row in self._rows("SELECT DISTINCT agent FROM runs", []))

    def run_statuses(self, conversation_id: str) -> dict[str, str]:
        """Each of the conversation's runs by id: its status as read (a lapsed lease is 'interrupted'), so a
        client shown the conversation again can tell an answer cut short (cancelled, failed, …) from a whole one."""
        rows = self._rows(f"SELECT r.id, {_STATUS} FROM runs r WHERE r.conversation_id = ?",
                          [time.time(), conversation_id])
        return {str(row["id"]): str(row["status"]) for row in rows}

    def get_run(self, run_id: str) -> RunRecord:
        """A run by id or unique id prefix."""
        now = time.time()
        rows = self._rows(f"SELECT {_RUN_COLUMNS} FROM runs r WHERE r.id = ?", [now, run_id])
        if not rows and run_id:
            rows = self._rows(f"SELECT {_RUN_COLUMNS} FROM runs r WHERE r.id >= ? AND r.id < ? LIMIT 2",
                              [now, *prefix_range(run_id)])
        if not rows:
            raise StoreError(f"no run {run_id!r} in {self.location}; see `halguru logs` for run ids")
        if len(rows) > 1:
            raise StoreError(f"run id prefix {run_id!r} is ambiguous; give more characters")
        return cast(RunRecord, rows[0])

    def get_events(self, run_id: str, after: int = -1, *, history: bool = True) -> list[dict[str, Any]]:
        """A run's events in order (those numbered after ``after``: what a follower has not seen yet), each model
        call's messages whole (stored, the conversation's history is a reference to its messages: see
        ``halguru.agents.events.HISTORY``); ``history=False`` keeps that reference (a trace tree counts the
        messages: a late run's history in a long conversation is most of it)."""
        from halguru.agents.events import expand_history, history_wanted

        events = [json.loads(r["data"]) for r in
                  self._rows("SELECT data FROM events WHERE run_id = ? AND seq > ? ORDER BY seq", [run_id, after])]
        wanted = max(map(history_wanted, events), default=0)
        if not wanted or not history:
            return events
        rows = self._rows("SELECT m.* FROM messages m JOIN runs r ON r.conversation_id = m.conversation_id "
                          "WHERE r.id = ? ORDER BY m.seq LIMIT ?", [run_id, wanted])
        expanded = [message_from_row(row).model_dump(exclude_defaults=True) for row in rows]
        return [expand_history(e, expanded) for e in events]
