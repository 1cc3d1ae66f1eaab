"""What continues a run (either backend): checkpoints of durable team and workflow runs, approvals of paused runs.

Rows here belong to a run (foreign keys); a write for a run that was deleted meanwhile (its conversation
deleted while it streamed) records nothing instead of failing.

A continuation is claimed before it starts (a resume of a checkpoint, the decision on an approval) and the
claim is a lease, as a run's liveness is: its process renews it (``RunsMixin._renew_leases``) until the
continuation's run starts and takes over with its own lease. A process killed in between leaves a claim that
expires, and another resume (or approve) takes the run over; two processes never both hold it.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, cast

from halguru.errors import StoreError
from halguru.store.records import CLAIMING, ApprovalRecord, CheckpointRecord
from halguru.store.sql_runs import BOOT_ID, RunsMixin, prefix_range

if TYPE_CHECKING:  # a listing (`halguru logs`) needs neither: their pydantic models cost 80 ms to import
    from halguru.agents.events import BaseEvent

__all__ = ["CLAIMING", "ResumeMixin"]

STEPS_DONE = "steps_done"
"""A workflow checkpoint's finished steps (step id -> its status and output), stored one row each."""
MESSAGES = "messages"
SAVED_RUNS = 64  # runs whose last saved messages a process remembers (one per run it has running, at most)
"""A plain agent's or a team's checkpoint: the run's messages so far, stored one row each."""


class ResumeMixin(RunsMixin):
    # -- checkpoints -------------------------------------------------------------------
    def start_checkpoint(self, run_id: str, kind: str, conversation_id: str, agent_path: str | None,
                         model: str | None, input: str) -> None:
        """The run's first checkpoint (nothing done yet): what is needed to start it again."""
        with self._tx() as conn:
            self._lock(conn, "conversation", conversation_id)  # not while it is being deleted (see delete)
            conn.execute("INSERT INTO checkpoints (run_id, kind, conversation_id, agent_path, model, input, label, "
                         "state, updated) SELECT ?, ?, ?, ?, ?, ?, 'start', '{}', ? "
                         "WHERE EXISTS (SELECT 1 FROM runs WHERE id = ?)",
                         (run_id, kind, conversation_id, agent_path, model, input, time.time(), run_id))

    def save_checkpoint(self, run_id: str, label: str, state: Mapping[str, Any],
                        events: Sequence[BaseEvent]) -> None:
        """The state after a step, with the trace events so far, in one transaction (all or nothing). A workflow's
        ``steps_done`` and an agent's or team's ``messages`` go to rows of their own, each written when it is new
        or changed: the state rewrote all of them at each step, 150 MB for a 5 MB output followed by 30 steps."""
        steps: Mapping[str, Any] = state.get(STEPS_DONE) or {}
        messages: Sequence[Any] = state.get(MESSAGES) or ()
        rest = json.dumps({k: v for k, v in state.items() if k not in (STEPS_DONE, MESSAGES)}, ensure_ascii=False)
        saved = self._saved_messages.get(run_id)
        with self._tx() as conn:
            self._insert_events(conn, run_id, events)
            if steps:
                self._save_steps(conn, run_id, steps)
            if messages:
                self._save_messages(conn, run_id, messages, saved)
            conn.execute("UPDATE checkpoints SET label = ?, state = ?, updated = ? WHERE run_id = ?",
                         (label, rest, time.time(), run_id))
        if messages:  # committed: what this process knows its rows hold
            self._saved_messages.pop(run_id, None)
            with contextlib.suppress(KeyError):  # popitem is atomic: runs of other threads save meanwhile
                while len(self._saved_messages) >= SAVED_RUNS:
                    self._saved_messages.popitem(last=False)
            self._saved_messages[run_id] = list(messages)

    def _save_steps(self, conn: Any, run_id: str, steps: Mapping[str, Any]) -> None:
        """The finished steps not stored yet (a step's output never changes once it is done)."""
        saved = {row[0] for row in conn.execute("SELECT step_id FROM checkpoint_steps WHERE run_id = ?",
                                                (run_id,)).fetchall()}
        new = [(run_id, sid, len(saved) + i, json.dumps(result, ensure_ascii=False), run_id)
               for i, (sid, result) in enumerate((s, r) for s, r in steps.items() if s not in saved)]
        conn.executemany("INSERT INTO checkpoint_steps (run_id, step_id, seq, result) SELECT ?, ?, ?, ? "
                         "WHERE EXISTS (SELECT 1 FROM checkpoints WHERE run_id = ?)", new)

    @cached_property
    def _saved_messages(self) -> OrderedDict[str, list[Any]]:
        """The messages this process last saved for each of its latest runs (``SAVED_RUNS``), as given: those
        equal to them (the same strings, so compared at once) are not written again."""
        return OrderedDict()

    def _save_messages(self, conn: Any, run_id: str, messages: Sequence[Any], known: list[Any] | None) -> None:
        """The rows from the first message that differs from ``known`` (what this process saved last for the run;
        a debugger may edit a call already saved) on, and none past the last; all of them when this process
        saved none yet (a resume in another process rewrites them once)."""
        same = 0
        if known is not None:
            while same < min(len(known), len(messages)) and known[same] == messages[same]:
                same += 1
        conn.execute("DELETE FROM checkpoint_messages WHERE run_id = ? AND seq >= ?", (run_id, same))
        conn.executemany("INSERT INTO checkpoint_messages (run_id, seq, message) SELECT ?, ?, ? "
                         "WHERE EXISTS (SELECT 1 FROM checkpoints WHERE run_id = ?)",
                         [(run_id, i, json.dumps(m, ensure_ascii=False), run_id)
                          for i, m in enumerate(messages[same:], same)])

    def get_checkpoint(self, run_id: str) -> CheckpointRecord | None:
        """The run's checkpoint; a resume's claim that expired (its process died first) reads as none."""
        rows = self._rows("SELECT * FROM checkpoints WHERE run_id = ?", [run_id])
        if not rows:
            return None
        row = rows[0]
        row["state"] = json.loads(row["state"])
        steps = self._rows("SELECT step_id, result FROM checkpoint_steps WHERE run_id = ? ORDER BY seq",
                           [row["run_id"]])
        if steps:  # a checkpoint saved before m028 has them in its state
            row["state"][STEPS_DONE] = {**row["state"].get(STEPS_DONE, {}),
                                        **{r["step_id"]: json.loads(r["result"]) for r in steps}}
        messages = self._rows("SELECT message FROM checkpoint_messages WHERE run_id = ? ORDER BY seq",
                              [row["run_id"]])
        if messages:  # a checkpoint saved before m030 has them in its state
            row["state"][MESSAGES] = [json.loads(r["message"]) for r in messages]
        if row["resumed_by"] == CLAIMING and (row["claim_expires"] or 0) < time.time():
            row["resumed_by"] = None
        return cast(CheckpointRecord, row)

    def claim_checkpoint(self, run_id: str) -> bool:
        """Mark the checkpoint as being resumed by this process, once (False: claimed already, or its run is
        alive); the claim is renewed until ``set_checkpoint_resumed_by``, and an expired one is free again. A run
        still stored 'running' (its lease passed) is marked interrupted for good."""
        now = time.time()
        with self._tx() as conn:
            live = conn.execute("SELECT 1 FROM runs WHERE id = ? AND status = 'running' AND lease_expires >= ?",
                                (run_id, now)).fetchone()
            if live:
                return False
            claimed = conn.execute(
                "UPDATE checkpoints SET resumed_by = ?, claim_holder = ?, claim_expires = ? WHERE run_id = ? "
                "AND (resumed_by IS NULL OR (resumed_by = ? AND coalesce(claim_expires, 0) < ?))",
                (CLAIMING, BOOT_ID, now + self.lease, run_id, CLAIMING, now)).rowcount
            conn.execute("UPDATE runs SET status = 'interrupted' WHERE id = ? AND status = 'running'", (run_id,))
        if claimed:
            self._hold(run_id, claim="checkpoints")
        return bool(claimed)

    def set_checkpoint_resumed_by(self, run_id: str, by: str | None) -> None:
        """This process's claim ends: the continuation run's id, or None to let the run be resumed again (nothing
        ran). A claim another process took over meanwhile (this one's had expired) is left alone."""
        try:
            with self._tx() as conn:
                conn.execute("UPDATE checkpoints SET resumed_by = ?, claim_holder = NULL, claim_expires = NULL "
                             "WHERE run_id = ? AND coalesce(claim_holder, ?) = ?", (by, run_id, BOOT_ID, BOOT_ID))
        finally:
            self._release(run_id, claim="checkpoints")

    # -- approvals ---------------------------------------------------------------------
    def save_pending(self, run_id: str, conversation_id: str, agent: str, agent_path: str | None,
                     model: str | None, input: str, call_json: str, messages_json: str,
                     owner: str | None = None) -> None:
        """A paused run: its pending call and its messages so far (JSON), to continue from."""
        arguments = json.dumps(json.loads(call_json).get("arguments", {}), ensure_ascii=False)
        with self._tx() as conn:
            self._lock(conn, "conversation", conversation_id)  # not while it is being deleted
            conn.execute(
                "INSERT INTO approvals (run_id, conversation_id, agent, agent_path, model, input, call, messages, "
                "created, owner, arguments_before) SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? "
                "WHERE EXISTS (SELECT 1 FROM runs WHERE id = ?)",
                (run_id, conversation_id, agent, agent_path, model, input, call_json, messages_json, time.time(),
                 owner, arguments, run_id))

    def list_pending(self, owner: str | None = None, agents: Sequence[str] | None = None
                     ) -> list[ApprovalRecord]:
        """Approvals waiting for a decision, oldest first; ``owner`` and ``agents`` (names) narrow them."""
        if agents is not None and not agents:
            return []
        clauses, params = ["a.status = 'pending'"], []
        if owner is not None:
            clauses.append("a.owner = ?")
            params.append(owner)
        if agents is not None:
            clauses.append(f"a.agent IN ({','.join('?' * len(agents))})")
            params += list(agents)
        rows = self._rows(f"SELECT a.* FROM approvals a JOIN runs r ON r.id = a.run_id "
                          f"WHERE {' AND '.join(clauses)} ORDER BY a.created", params)
        return cast(list[ApprovalRecord], rows)

    def find_approval(self, run_id_or_prefix: str) -> ApprovalRecord | None:
        """The approval of a run by id or unique id prefix (StoreError if the prefix is ambiguous)."""
        if not run_id_or_prefix:
            return None
        rows = self._rows("SELECT * FROM approvals WHERE run_id = ?", [run_id_or_prefix])
        if not rows:
            rows = self._rows("SELECT * FROM approvals WHERE run_id >= ? AND run_id < ? LIMIT 2",
                              prefix_range(run_id_or_prefix))
        if len(rows) > 1:
            raise StoreError(f"run id prefix {run_id_or_prefix!r} is ambiguous; give more characters")
        return cast(ApprovalRecord, rows[0]) if rows else None

    def decide_approval(self, run_id: str, status: str, reason: str | None, decided_by: str | None = None,
                        arguments_after: Mapping[str, Any] | None = None, continues: bool = True) -> bool:
        """Record the decision (once: False if it was no longer pending): who, when, and the arguments that
        will run (the edited ones, else the model's; none when rejected). ``continues``: this process claims its
        continuation (renewed until it starts, see ``set_approval_continued_by``); False: none will come."""
        after = json.dumps(arguments_after, ensure_ascii=False) if arguments_after is not None else None
        now = time.time()
        with self._tx() as conn:
            decided = conn.execute(
                "UPDATE approvals SET status = ?, reason = ?, resolved = ?, decided_by = ?, "
                "arguments_after = CASE WHEN ? = 'approved' THEN coalesce(?, arguments_before) END, "
                "claim_holder = ?, claim_expires = ? WHERE run_id = ? AND status = 'pending'",
                (status, reason, now, decided_by, status, after, BOOT_ID, now + self.lease if continues else None,
                 run_id)).rowcount
        if decided and continues:
            self._hold(run_id, claim="approvals")
        return bool(decided)

    def take_over_approval(self, run_id: str) -> bool:
        """Claim the continuation of a decided approval whose own never started and whose claim expired (the
        deciding process died): once, as ``decide_approval`` claims it (False: not so, or taken already)."""
        now = time.time()
        with self._tx() as conn:
            taken = conn.execute(
                "UPDATE approvals SET claim_holder = ?, claim_expires = ? WHERE run_id = ? AND status <> 'pending' "
                "AND continued_by IS NULL AND claim_expires IS NOT NULL AND claim_expires < ?",
                (BOOT_ID, now + self.lease, run_id, now)).rowcount
        if taken:
            self._hold(run_id, claim="approvals")
        return bool(taken)

    def release_approval(self, run_id: str) -> None:
        """This process's continuation of a decided approval did not start: another may take it over now."""
        try:
            with self._tx() as conn:
                conn.execute("UPDATE approvals SET claim_expires = 0 WHERE run_id = ? AND claim_holder = ? "
                             "AND continued_by IS NULL AND claim_expires IS NOT NULL", (run_id, BOOT_ID))
        finally:
            self._release(run_id, claim="approvals")

    def set_approval_continued_by(self, run_id: str, by: str) -> None:
        """The continuation run started: it holds the run from now on (its own lease), the claim ends."""
        try:
            with self._tx() as conn:
                conn.execute("UPDATE approvals SET continued_by = ?, claim_expires = NULL WHERE run_id = ?",
                             (by, run_id))
        finally:
            self._release(run_id, claim="approvals")
