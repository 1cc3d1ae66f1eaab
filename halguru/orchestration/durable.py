"""Durable runs: team and workflow runs save their state in the store after each step.

A run killed mid-way (even by SIGKILL) keeps its last checkpoint: the messages so far (a team run) or the
outputs of its finished steps (a workflow). ``resume`` continues it as a *continuation run* in the same
conversation, whose ``run_started`` metadata names the interrupted run (``resumes``) and whose first
event after it is ``resumed``; completed tool calls and steps are reused, never run again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

from halguru import audit
from halguru.agents.events import BaseEvent, Event
from halguru.blocking import run_blocking
from halguru.errors import HalguruError
from halguru.orchestration.claims import claimed
from halguru.store.records import CLAIMING

if TYPE_CHECKING:
    from halguru.agents.runtime import RunResult
    from halguru.models.base import Model
    from halguru.store.base import Store
    from halguru.store.records import CheckpointRecord, RunListRecord, RunRecord

RESUMABLE = ("interrupted", "failed", "limited", "cancelled")
"""The ends a team or workflow run resumes from (its last checkpoint): a run past its timeout or a guard
ends ``limited``, and its retry (a job's) would otherwise run its finished steps again."""
STATUSES = ("running", "interrupted", "paused", "failed", "limited", "cancelled", "ok")


def start_checkpoint(store: Store, run_id: str, kind: str, conversation_id: str, agent_path: str | None,
                     model: str | None, input: str) -> None:
    """The run's first checkpoint (nothing done yet): what is needed to start it again."""
    store.start_checkpoint(run_id, kind, conversation_id, agent_path, model, input)


def save_checkpoint(store: Store, run_id: str, label: str, state: dict[str, Any],
                    events: Sequence[BaseEvent]) -> None:
    """The state after a step, with the trace events so far, in one transaction (all or nothing)."""
    store.save_checkpoint(run_id, label, state, events)


def _store(store: Store | None) -> Store:
    if store is not None:
        return store
    from halguru.store import open_store

    return open_store()


class NotCancellable(HalguruError):
    """A run that a cancel cannot stop: it has ended, it waits for an approval (``kind`` not_running), or it is a
    worker's job's (job_run: its worker would take the cancel for a lost lease and let the job run again)."""

    def __init__(self, message: str, kind: str):
        super().__init__(message)
        self.kind = kind


def ask_cancel(store: Store, run: RunRecord) -> None:
    """Ask the process running ``run`` to stop it, through the store (any process, any replica on the database):
    it does within ``CANCEL_POLL`` seconds, storing it cancelled with the answer so far. NotCancellable says
    why not."""
    run_id, job = run["id"], run["job_id"]
    if job and run["status"] == "running":
        raise NotCancellable(f"run {run_id} is job {job}'s: cancel the job instead (`halguru jobs cancel {job}`, "
                             f"POST /v1/jobs/{job}/cancel)", "job_run")
    status = store.request_cancel(run_id)
    if status == "paused":
        raise NotCancellable(f"run {run_id} waits for a tool call's approval: reject it instead (`halguru runs "
                             f"reject {run_id}`, POST /v1/runs/{run_id}/reject)", "not_running")
    if status != "running":
        raise NotCancellable(f"run {run_id} has already ended ({status}): there is nothing to cancel", "not_running")


def cancel(run_id: str, *, store: Store | None = None, wait: float = 5.0) -> tuple[str, str]:
    """Stop the running run ``run_id`` (id or unique prefix) wherever it runs (``ask_cancel``); (its id, its
    status once it ended, or ``running`` still after ``wait`` seconds)."""
    store = _store(store)
    run = store.get_run(run_id)
    ask_cancel(store, run)
    deadline = time.monotonic() + wait
    while (status := store.get_run(run["id"])["status"]) == "running" and time.monotonic() < deadline:
        time.sleep(0.1)
    return run["id"], status


def list_runs(status: str | None = None, limit: int = 20, store: Store | None = None,
              agents: Sequence[str] | None = None, owner: str | None = None,
              test_runs: bool = True) -> list[RunListRecord]:
    """Newest first, with each run's checkpoint (kind, label) and who resumed it; ``status``, ``agents``
    (names; serve mode: those a key may use) and ``owner`` filter, in the store, so a page is never short;
    ``test_runs=False`` leaves out the runs `halguru test` made. A run whose lease passed (its process died) is
    listed as ``interrupted``."""
    if status is not None and status not in STATUSES:
        raise HalguruError(f"unknown status {status!r}; one of: {', '.join(STATUSES)}")
    return _store(store).list_runs(limit, status=status, agents=agents, owner=owner, test_runs=test_runs)


def check_resumable(store: Store, run_id: str) -> tuple[RunRecord, CheckpointRecord | None]:
    """The run (id or unique prefix) and its checkpoint when it can be resumed (None: a paused run whose
    approval was decided but whose continuation stalled, which ``resume_events`` starts as decided); else why
    not, as a HalguruError (the CLI and serve mode say the same)."""
    run = store.get_run(run_id)
    rid, status = run["id"], run["status"]
    if status == "running":
        expires = max(0, round((run["lease_expires"] or 0) - time.time()))
        raise HalguruError(f"run {rid} is still running (its lease expires in {expires} s); "
                           "stop it before resuming it")
    if status == "paused":
        _check_stalled(store, rid)
        return run, None
    row = store.get_checkpoint(rid)
    if row is None:
        raise HalguruError(f"run {rid} is not a team or workflow run; only those are checkpointed "
                           "(ask again with `halguru run`)")
    if row["resumed_by"] == CLAIMING:  # another process is starting its resume (its claim is renewed)
        raise HalguruError(f"run {rid} is being resumed already")
    if row["resumed_by"]:
        raise HalguruError(f"run {rid} was already resumed as run {row['resumed_by']}")
    if status not in RESUMABLE:
        raise HalguruError(f"run {rid} finished ({status}); only interrupted, failed, limited or cancelled runs resume")
    if not row["agent_path"]:
        raise HalguruError(f"run {rid} ran an agent built in Python; it cannot be resumed here")
    if deleted_version(store, run["agent"], row["agent_path"]):
        raise VersionDeleted(f"run {rid} ran a published version of {run['agent']} that was deleted since (`halguru "
                             "deployments delete`, or past the newest deployments_keep); it cannot be resumed: ask "
                             "again")
    return run, row


class VersionDeleted(HalguruError):
    """The run's published version was deleted: no retry resumes it (a job using it fails for good)."""


def deleted_version(store: Store, agent: str, path: str) -> bool:
    """Whether ``path`` is the folder of a published version of ``agent`` (``HALGURU_HOME/deployments/AGENT/SHA``)
    no longer in the store. A deleted version is never served again, not even by a replica whose disk still has
    its folder, nor from a checkpoint cut on it (its steps and tools may be the secret it was deleted for)."""
    from pathlib import Path

    from halguru.config import get_settings

    folder = Path(path)
    if folder.parent.resolve() != (get_settings().home / "deployments" / agent).resolve():
        return False
    return all(d["sha256"] != folder.name for d in store.list_deployments(agent))


def _check_stalled(store: Store, run_id: str) -> None:
    """Raise unless the paused run's approval was decided and its continuation stalled (the process that was
    starting it died): waiting for a decision, continued, or being continued."""
    from halguru.orchestration.approvals import continuation_end, refusal, stalled

    approval = store.find_approval(run_id)
    if approval is None or approval["status"] == "pending":
        raise HalguruError(f"run {run_id} waits for approval; use `halguru runs approve {run_id}` or `runs reject`")
    if not stalled(approval):
        raise HalguruError(refusal(approval, ended=continuation_end(store, approval))
                           or f"run {run_id} is being continued already")


def _claim(store: Store, run_id: str) -> tuple[RunRecord, CheckpointRecord]:
    """The run and its checkpoint, marked as being resumed by this process (once: a second resume is refused
    while the claim lasts; a claim whose process died expires); a run still stored 'running' (its lease passed)
    is marked interrupted for good."""
    run, row = check_resumable(store, run_id)
    if row is None:  # paused meanwhile? (check_resumable's None is for paused runs, which resume_events routes)
        raise HalguruError(f"run {run['id']} waits for approval; use `halguru runs approve {run['id']}`")
    if not store.claim_checkpoint(run["id"]):
        raise HalguruError(f"run {run['id']} is being resumed already")
    return run, row


async def resume_events(run_id: str, *, model: str | Model | None = None, store: Store | None = None,
                        metadata: dict[str, Any] | None = None, by: str | None = None,
                        channel_answer: bool = True) -> AsyncIterator[Event]:
    """Continue the interrupted run ``run_id`` from its last checkpoint; stream the continuation's events
    (``metadata`` is added to its ``run_started``, e.g. serve mode's request id; ``by``: who resumed it, for the
    audit log, None from the CLI). A run that went on from a decided approval (its continuation, cut) has its
    answer queued for a channel's conversation, as the decision would have (``channel_answer`` False: the
    caller sends it, as a reply job does)."""
    from halguru.agents.loader import load_agent
    from halguru.agents.runtime import run
    from halguru.models.base import Message
    from halguru.models.references import check_model
    from halguru.orchestration.approvals import Resume, answer_on_channel, answers_a_decision, left_to_client

    store = _store(store)
    if isinstance(model, str):  # a model that cannot load is said before the run is claimed
        await asyncio.to_thread(check_model, model)
    if (await asyncio.to_thread(store.get_run, run_id))["status"] == "paused":
        async with aclosing(_continue_decided(store, run_id, model, metadata, by)) as decided:
            async for event in decided:
                yield event
        return
    old, row = await claimed(lambda: _claim(store, run_id),  # store calls off the event loop, as the runtime's
                             lambda done: store.set_checkpoint_resumed_by(done[0]["id"], None))
    started = False
    try:
        if model is None and row["model"]:  # the run's own model: checked before anything is recorded
            await asyncio.to_thread(check_model, row["model"])
        await asyncio.to_thread(audit.record, store, by, "run.resume", old["id"], {"checkpoint": row["label"]})
        agent = await asyncio.to_thread(load_agent, row["agent_path"] or "")  # never empty: see check_resumable
        state = row["state"]
        messages = [Message.model_validate(m) for m in state.get("messages", [])]
        resume = Resume(old["id"], messages or [Message(role="user", content=row["input"])], {},
                        state=state, checkpoint=row["label"])
        # a continuation after an approval whose reply also called the caller's tools: still the caller's
        resume.client_calls = await asyncio.to_thread(left_to_client, store, old["id"])
        answers = channel_answer and await asyncio.to_thread(answers_a_decision, store, old["id"])
        async with aclosing(run(agent, row["input"], row["conversation_id"], model=model or row["model"],
                                store=store, resume=resume, metadata={**(metadata or {}), "resumes": old["id"]},
                                owner=old["owner"])) as events:  # the continuation belongs to whoever owned the run
            async for event in events:
                if event.type == "run_started":
                    started = True
                    await asyncio.to_thread(store.set_checkpoint_resumed_by, old["id"], event.run_id)
                elif event.type == "run_finished" and answers and event.status == "ok" and event.output.strip():
                    await asyncio.to_thread(answer_on_channel, store, row["conversation_id"], event.output,
                                            event.run_id)
                yield event
    finally:
        if not started:  # nothing ran: the run may be resumed again (shielded: a cancelled request still frees it)
            await asyncio.shield(asyncio.to_thread(store.set_checkpoint_resumed_by, old["id"], None))


async def _continue_decided(store: Store, run_id: str, model: str | Model | None, metadata: dict[str, Any] | None,
                            by: str | None) -> AsyncGenerator[Event, None]:
    """A paused run whose approval was decided but whose continuation stalled: its continuation, taken over
    (once) and run with the recorded decision."""
    from halguru.orchestration import approvals

    def decision() -> tuple[str, str | None, dict[str, Any] | None]:
        run, _ = check_resumable(store, run_id)
        approval = store.find_approval(run["id"])
        assert approval is not None  # check_resumable found it
        return (run["id"], *approvals.recorded(approval))

    rid, reject, edit_args = await asyncio.to_thread(decision)
    async with aclosing(approvals.resume_events(rid, edit_args, reject=reject, model=model, store=store,
                                                metadata=metadata, decided_by=by)) as events:
        async for event in events:
            yield event


def resume(run_id: str, *, model: str | Model | None = None, store: Store | None = None) -> RunResult:
    """Blocking ``resume_events``: continue an interrupted team or workflow run to its end."""

    from halguru.agents.runtime import collect_result

    return run_blocking(collect_result(resume_events(run_id, model=model, store=store)))
