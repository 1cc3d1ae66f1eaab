"""Durable runs: team and workflow runs save their state in the store after each step.

A run killed mid-way (even by SIGKILL) keeps its last checkpoint: the messages so far (a team run) or the
outputs of its finished steps (a workflow). ``resume`` continues it as a *continuation run* in the same
conversation, whose ``run_started`` metadata names the interrupted run (``resumes``) and whose first
event after it is ``resumed``; completed tool calls and steps are reused, never run again.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from halguru.agents.events import BaseEvent, Event
from halguru.errors import HalguruError

if TYPE_CHECKING:
    from halguru.agents.runtime import RunResult
    from halguru.models.base import Model
    from halguru.store.sqlite import SQLiteStore

RESUMABLE = ("interrupted", "failed", "cancelled")
STATUSES = ("running", "interrupted", "paused", "failed", "limited", "cancelled", "ok")


def start_checkpoint(store: SQLiteStore, run_id: str, kind: str, conversation_id: str, agent_path: str | None,
                     model: str | None, input: str) -> None:
    """The run's first checkpoint (nothing done yet): what is needed to start it again."""
    with store.write() as conn:
        conn.execute("INSERT INTO checkpoints (run_id, kind, conversation_id, agent_path, model, input, label, state, "
                     "updated) VALUES (?, ?, ?, ?, ?, ?, 'start', '{}', ?)",
                     (run_id, kind, conversation_id, agent_path, model, input, time.time()))


def save_checkpoint(store: SQLiteStore, run_id: str, label: str, state: dict[str, Any],
                    events: Sequence[BaseEvent]) -> None:
    """The state after a step, with the trace events so far, in one transaction (all or nothing)."""
    with store.write() as conn:
        store._insert_events(conn, events)
        conn.execute("UPDATE checkpoints SET label = ?, state = ?, updated = ? WHERE run_id = ?",
                     (label, json.dumps(state, ensure_ascii=False), time.time(), run_id))


def _store(store: SQLiteStore | None) -> SQLiteStore:
    if store is not None:
        return store
    from halguru.store import open_store

    return open_store()


def list_runs(status: str | None = None, limit: int = 20, store: SQLiteStore | None = None,
              agents: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Newest first, with each run's checkpoint (kind, label) and who resumed it; ``status`` and ``agents``
    (names; serve mode: those a key may use) filter, in SQL, so a page is never short.

    ``interrupted`` runs are stored as ``running`` (their process died before it could say otherwise): those
    two are told apart after the query, over all running rows (there are few).
    """
    from halguru.store.sqlite import _mark_interrupted

    if status is not None and status not in STATUSES:
        raise HalguruError(f"unknown status {status!r}; one of: {', '.join(STATUSES)}")
    if agents is not None and not agents:
        return []
    stored = "running" if status == "interrupted" else status
    clauses, params = [], []
    if agents is not None:
        clauses.append(f"r.agent IN ({', '.join('?' * len(agents))})")
        params += list(agents)
    if stored:
        clauses.append("r.status = ?")
        params.append(stored)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    relabelled = stored == "running"
    rows = _store(store).db.query(
        f"SELECT r.*, c.kind, c.label AS checkpoint, c.resumed_by FROM runs r LEFT JOIN checkpoints c "
        f"ON c.run_id = r.id {where} ORDER BY r.started DESC{'' if relabelled else ' LIMIT ?'}",
        params if relabelled else [*params, limit])
    marked = [_mark_interrupted(r) for r in rows]
    return [r for r in marked if status is None or r["status"] == status][:limit]


def check_resumable(store: SQLiteStore, run_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The run (id or unique prefix) and its checkpoint when it can be resumed; else why not, as a
    HalguruError (the CLI and serve mode say the same)."""
    run = store.get_run(run_id)
    rid, status = run["id"], run["status"]
    if status == "running":
        raise HalguruError(f"run {rid} is still running (pid {run['pid']}); stop it before resuming it")
    if status == "paused":
        raise HalguruError(f"run {rid} waits for approval; use `halguru runs approve {rid}` or `runs reject`")
    rows = list(store.db.query("SELECT * FROM checkpoints WHERE run_id = ?", [rid]))
    if not rows:
        raise HalguruError(f"run {rid} is not a team or workflow run; only those are checkpointed "
                           "(ask again with `halguru run`)")
    row = rows[0]
    if row["resumed_by"]:
        raise HalguruError(f"run {rid} was already resumed as run {row['resumed_by']}")
    if status not in RESUMABLE:
        raise HalguruError(f"run {rid} finished ({status}); only interrupted, failed or cancelled runs resume")
    if not row["agent_path"]:
        raise HalguruError(f"run {rid} ran an agent built in Python; it cannot be resumed here")
    return run, row


def _claim(store: SQLiteStore, run_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The run and its checkpoint, marked as being resumed (once: a second resume is refused)."""
    run, row = check_resumable(store, run_id)
    rid = run["id"]
    with store.write() as conn:
        claimed = conn.execute("UPDATE checkpoints SET resumed_by = '…' WHERE run_id = ? AND resumed_by IS NULL",
                               (rid,)).rowcount
        # The killed process never recorded an end: say so for good (its pid may be reused later).
        conn.execute("UPDATE runs SET status = 'interrupted' WHERE id = ? AND status = 'running'", (rid,))
    if not claimed:
        raise HalguruError(f"run {rid} is being resumed already")
    return run, row


async def resume_events(run_id: str, *, model: str | Model | None = None, store: SQLiteStore | None = None,
                        metadata: dict[str, Any] | None = None) -> AsyncIterator[Event]:
    """Continue the interrupted run ``run_id`` from its last checkpoint; stream the continuation's events
    (``metadata`` is added to its ``run_started``, e.g. serve mode's request id)."""
    from halguru.agents.loader import load_agent
    from halguru.agents.runtime import run
    from halguru.models.base import Message
    from halguru.orchestration.approvals import Resume

    store = _store(store)
    old, row = _claim(store, run_id)
    started = False
    try:
        agent = load_agent(row["agent_path"])
        state = json.loads(row["state"])
        messages = [Message.model_validate(m) for m in state.get("messages", [])]
        resume = Resume(old["id"], messages or [Message(role="user", content=row["input"])], {},
                        state=state, checkpoint=row["label"])
        async for event in run(agent, row["input"], row["conversation_id"], model=model or row["model"],
                               store=store, resume=resume, metadata={**(metadata or {}), "resumes": old["id"]}):
            if event.type == "run_started":
                started = True
                with store.write() as conn:
                    conn.execute("UPDATE checkpoints SET resumed_by = ? WHERE run_id = ?", (event.run_id, old["id"]))
            yield event
    finally:
        if not started:  # nothing ran: the run may be resumed again
            with store.write() as conn:
                conn.execute("UPDATE checkpoints SET resumed_by = NULL WHERE run_id = ?", (old["id"],))


def resume(run_id: str, *, model: str | Model | None = None, store: SQLiteStore | None = None) -> RunResult:
    """Blocking ``resume_events``: continue an interrupted team or workflow run to its end."""
    import asyncio

    from halguru.agents.runtime import collect_result

    return asyncio.run(collect_result(resume_events(run_id, model=model, store=store)))
