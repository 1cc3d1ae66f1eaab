"""Approvals (human in the loop): tools listed in ``approvals:`` pause the run before they execute.

A paused run ends with status ``paused``; its pending call and its messages so far are kept in the store's
``approvals`` table (the conversation gets none of them yet). ``approve`` or ``reject`` continues it
through the runtime as a *continuation run*: a new run in the same conversation whose ``run_started``
metadata names the paused run (``resumes``), which runs (or refuses) the call and goes on to the answer.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator, Iterator, Sequence
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

from halguru import audit
from halguru.agents.events import Event
from halguru.agents.policies import REFUSED, Resume  # the gate itself is a policy of the loop
from halguru.blocking import run_blocking
from halguru.errors import HalguruError
from halguru.models.base import Message, ToolCallRequest
from halguru.orchestration.claims import claimed

if TYPE_CHECKING:
    from halguru.agents.loader import Agent
    from halguru.agents.runtime import RunResult
    from halguru.models.base import Model, PerAgentModel
    from halguru.store.base import Store
    from halguru.store.records import ApprovalRecord

__all__ = ["REFUSED", "Resume", "approve", "list_pending", "reject", "resume_events"]


def _store(store: Store | None) -> Store:
    if store is not None:
        return store
    from halguru.store import open_store

    return open_store()


def list_pending(store: Store | None = None, owner: str | None = None,
                 agents: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Paused runs waiting for a decision, oldest first: run id, agent, tool, arguments, when; ``owner`` and
    ``agents`` (names) narrow them."""
    rows = _store(store).list_pending(owner=owner, agents=agents)
    out = []
    for r in rows:
        call = json.loads(r["call"])
        out.append({"run_id": r["run_id"], "conversation_id": r["conversation_id"], "agent": r["agent"],
                    "tool": call["name"], "arguments": call["arguments"], "call_id": call["id"],
                    "input": r["input"], "created": r["created"]})
    return out


def stalled(row: ApprovalRecord) -> bool:
    """Decided, but its continuation never started and the process that was starting it is gone (its claim, a
    lease, expired): another may take the continuation over (``runs resume``, or the same decision again)."""
    return (row["status"] != "pending" and row["continued_by"] is None and row["claim_expires"] is not None
            and row["claim_expires"] < time.time())


def recorded(row: ApprovalRecord) -> tuple[str | None, dict[str, Any] | None]:
    """A decided approval's decision as ``resume_events`` takes it: the reason if rejected (else None), and the
    edited arguments if an edit changed them (else None)."""
    if row["status"] == "rejected":
        return row["reason"] or "", None
    after = json.loads(row["arguments_after"]) if row["arguments_after"] else None
    before = json.loads(row["arguments_before"]) if row["arguments_before"] else None
    return None, after if after != before else None


def refusal(row: ApprovalRecord, reject: str | None = None, edit_args: dict[str, Any] | None = None,
            ended: str | None = None) -> str | None:
    """Why a decision (``reject``'s reason, else an approval with ``edit_args``) cannot be made on the run
    now, one line; None when it can: the approval is pending, or it was decided so but its continuation stalled
    (it is taken over, with the recorded decision). ``ended``: how its continuation ended, if it can resume."""
    rid, status = row["run_id"], row["status"]
    if status == "pending":
        return None
    if row["continued_by"]:
        then = row["continued_by"]
        goes_on = (f", which ended {ended}: `halguru runs resume {then}` goes on from its last checkpoint"
                   if ended else "")
        return f"run {rid} is not waiting for approval (already {status}, continued as run {then}{goes_on})"
    if not stalled(row):
        starting = "; its continuation is starting" if row["claim_expires"] is not None else ""
        return f"run {rid} is not waiting for approval (already {status}{starting})"
    reason, edited = recorded(row)
    if (reject is None) == (reason is None) and (reject is None or reject == reason) and edit_args in (None, edited):
        return None
    return (f"run {rid} was {status}, but its continuation never started (the process that decided it stopped); "
            f"`halguru runs resume {rid}` continues it as decided")


def _claim(store: Store, run_id: str, status: str, reason: str | None, decided_by: str | None = None,
           arguments: dict[str, Any] | None = None, continues: bool = True) -> ApprovalRecord:
    """Mark the pending approval decided, by whom and with which arguments (once: a second approve or
    reject is refused), and claim its continuation (``continues``). A decided approval whose continuation
    stalled is taken over instead, once, if the decision asked for is the one recorded: the row returned is then
    the decided one (its status not 'pending')."""
    row = store.find_approval(run_id)
    if row is None:
        raise HalguruError(f"no paused run {run_id!r}; see `halguru runs pending`")
    if store.decide_approval(row["run_id"], status, reason, decided_by, arguments, continues=continues):
        return row
    row = store.find_approval(row["run_id"]) or row  # decided meanwhile, or before
    problem = refusal(row, reason if status == "rejected" else None, arguments, continuation_end(store, row))
    if problem is None and continues and store.take_over_approval(row["run_id"]):
        return row
    raise HalguruError(problem or f"run {row['run_id']} is being continued already")


def continuation_end(store: Store, row: ApprovalRecord) -> str | None:
    """How the decided approval's continuation ended when `runs resume` goes on from it (failed, cancelled,
    limited, interrupted, not resumed yet), else None: a second decision is told where the turn went on."""
    from halguru.orchestration.durable import RESUMABLE

    if not row["continued_by"]:
        return None
    try:
        run = store.get_run(row["continued_by"])
    except HalguruError:  # deleted with its conversation
        return None
    checkpoint = store.get_checkpoint(run["id"]) if run["status"] in RESUMABLE else None
    return run["status"] if checkpoint is not None and not checkpoint["resumed_by"] else None


DECLINED = "Sorry, I could not do that: the request was declined."
"""The answer a rejected call's conversation gets when no continuation can run (its agent or model no longer
loads), so no model writes one: stored after the paused turn's message and sent on its channel (an SMS's)."""


def _reject_without_continuation(store: Store, pending: ApprovalRecord, reason: str, decided_by: str | None,
                                 problem: str) -> None:
    """Reject a call whose agent (or model) no longer loads: the decision is recorded, so the conversation the
    approval held goes on, though no continuation can tell the model; the paused turn gets ``DECLINED`` as its
    answer (the person who texted is told); then say so (one line)."""
    row = _claim(store, pending["run_id"], "rejected", reason, decided_by, continues=False)
    call = ToolCallRequest.model_validate_json(row["call"])
    audit.record(store, decided_by, "run.reject", row["run_id"], {"tool": call.name, "edited": False,
                                                                  "reason": reason, "continued": False})
    from halguru.channels.replies import send_on_channel

    conversation = row["conversation_id"]
    store.append_message(conversation, "user", row["input"])  # the paused turn's: kept with the approval till now
    seq = store.append_message(conversation, "assistant", DECLINED)
    if seq is not None:
        send_on_channel(store, conversation, DECLINED, f"answer:{row['run_id']}", seq=seq, ordered=False)
    raise HalguruError(f"run {row['run_id']} is rejected, but no continuation ran ({problem}); its conversation "
                       f"can go on, answered {DECLINED!r}")


def _decide(store: Store, run_id: str, edit_args: dict[str, Any] | None, reject: str | None,
            decided_by: str | None, model: str | Model | PerAgentModel | None = None,
            agent_given: Agent | None = None
            ) -> tuple[ApprovalRecord, Agent, ToolCallRequest, Resume]:
    """Record the decision on the paused run (checked, claimed once, audited) and what its continuation needs:
    the agent, the decided call and the ``Resume``. Store calls and file reads, so serve mode runs it on a
    thread."""
    from halguru.agents.loader import load_agent
    from halguru.models.references import check_model

    if edit_args is not None and reject is None:  # check the edit before the approval is used up
        check_edited_args(store, run_id, edit_args)
    pending, agent = store.find_approval(run_id), agent_given
    if agent is None and pending is not None and pending["status"] == "pending" and pending["agent_path"]:
        try:
            agent = load_agent(pending["agent_path"])  # before the claim: a failed load uses nothing up
            reference = model if model is not None else pending["model"]
            if isinstance(reference, str) and reference:  # nor a model that cannot load
                check_model(reference)
        except HalguruError as exc:
            if reject is None:
                raise HalguruError(f"{exc}; run {pending['run_id']} is still waiting for approval (rejecting it "
                                   "frees its conversation)") from None
            _reject_without_continuation(store, pending, reject, decided_by, str(exc))
    if agent is not None and pending is not None and pending["status"] == "pending" and reject is None:
        _check_step_still_there(agent, pending)
    row = _claim(store, run_id, "rejected" if reject is not None else "approved", reject, decided_by,
                 edit_args if reject is None else None)
    try:
        return _continuation(store, row, agent, edit_args, reject, decided_by)
    except BaseException:  # nothing continues it here: another may take it over at once
        store.release_approval(row["run_id"])
        raise


def _check_step_still_there(agent: Agent, pending: ApprovalRecord) -> None:
    """A paused workflow's step (the call's id) must still be in its agent.yaml and call the same tool: approved,
    the continuation went on without it, or ran another tool, and the approval said it had run."""
    workflow = agent.workflow
    if workflow is None:
        return
    call = ToolCallRequest.model_validate_json(pending["call"])
    step = workflow.steps.get(call.id)
    if step is not None and step.tool == call.name:
        return
    now = "which its agent.yaml no longer has" if step is None else (
        f"which now calls {step.tool}" if step.tool else "which is no longer a tool step")
    rid = pending["run_id"]
    raise HalguruError(f"run {rid} paused at step {call.id} ({call.name}), {now}: put the step back to approve it, "
                       f"or reject it (`halguru runs reject {rid}`)")


def _continuation(store: Store, row: ApprovalRecord, agent: Agent | None, edit_args: dict[str, Any] | None,
                  reject: str | None, decided_by: str | None
                  ) -> tuple[ApprovalRecord, Agent, ToolCallRequest, Resume]:
    """What the continuation of a claimed approval needs, audited: a new decision, or (``row`` decided already:
    taken over) the recorded one."""
    from halguru.agents.loader import load_agent

    call = ToolCallRequest.model_validate_json(row["call"])
    if row["status"] != "pending":
        reject, edit_args = recorded(row)
        audit.record(store, decided_by, "run.resume", row["run_id"], {"approval": row["status"], "tool": call.name})
    else:
        audit.record(store, decided_by, "run.reject" if reject is not None else "run.approve", row["run_id"],
                     {"tool": call.name, "edited": edit_args is not None, "reason": reject})
    if agent is None:
        if not row["agent_path"]:
            raise HalguruError(f"run {row['run_id']} was paused by an agent built in Python; it cannot be resumed "
                               "here")
        agent = load_agent(row["agent_path"])
    messages = [Message.model_validate(m) for m in json.loads(row["messages"])]
    resume = Resume(row["run_id"], messages, {call.id: reject}, client_calls=left_to_client(store, row["run_id"]))
    saved = store.get_checkpoint(row["run_id"])
    if saved is not None and agent.workflow is not None:  # a workflow goes on from the steps it had finished
        resume.state, resume.checkpoint = saved["state"], saved["label"]
    if edit_args is not None and reject is None:
        resume.edited.add(call.id)
        for message in messages:  # the edited call is the one run and kept in the conversation
            message.tool_calls = [c.model_copy(update={"arguments": edit_args}) if c.id == call.id else c
                                  for c in message.tool_calls]
    if agent.workflow is None:  # a team (or a plain agent) goes on from the paused step's messages
        kept: dict[str, Any] = {k: saved["state"][k] for k in ("active_agent", "handoffs")
                                if saved is not None and k in saved["state"]}
        resume.first_state = {"messages": [m.model_dump(exclude_defaults=True) for m in messages], **kept}
        resume.checkpoint = saved["label"] if saved is not None else f"{call.name} requested"
    return row, agent, call, resume


def _back_through_resumes(store: Store, run_id: str) -> Iterator[tuple[str, list[dict[str, Any]], str | None]]:
    """The run, then the run it resumed or continued, and so on: (its id, its events, the run it went on from)."""
    for _ in range(20):  # a chain of resumes of one turn: a few links at most
        events = store.get_events(run_id)
        resumes = events[0].get("metadata", {}).get("resumes") if events else None
        yield run_id, events, resumes
        if not resumes:
            return
        run_id = resumes


def answers_a_decision(store: Store, run_id: str) -> bool:
    """Whether the run goes on from a decided approval (its continuation, or a resume of one that was cut): its
    answer is then the paused turn's, which ``resume_events`` would have queued for a channel's conversation."""
    for rid, _, resumes in _back_through_resumes(store, run_id):
        approval = store.find_approval(resumes) if resumes else None
        if approval is not None and approval["run_id"] == resumes and approval["continued_by"] == rid:
            return True
    return False


def left_to_client(store: Store, run_id: str) -> set[str]:
    """The calls of the caller's own tools (the OpenAI endpoint's client-side functions) that the run's paused
    reply left to the caller, as its pause recorded them (``approval_requested``), following a continuation or a
    resume back to that pause: the run that goes on from there leaves them to the caller, not running them."""
    for _, events, _ in _back_through_resumes(store, run_id):
        asked = [e for e in events if e["type"] == "approval_requested" and not e.get("parent_run_id")]
        if asked:
            return set(asked[-1].get("client_calls") or ())
    return set()


async def resume_events(run_id: str, edit_args: dict[str, Any] | None = None, *, reject: str | None = None,
                        model: str | Model | PerAgentModel | None = None, store: Store | None = None,
                        metadata: dict[str, Any] | None = None, decided_by: str | None = None,
                        agent: Agent | None = None) -> AsyncGenerator[Event, None]:
    """Decide the paused run ``run_id`` and stream its continuation run's events, its answer queued for the
    conversation's channel when a channel's message started it (``metadata`` is added to
    its ``run_started``, e.g. serve mode's request id; ``decided_by`` is the deciding principal, recorded
    with the decision; ``agent``: the agent to continue with instead of the one loaded from its folder, as
    conversation tests give theirs, whose tools record or replay). Its store calls run off the event loop, as
    the runtime's own do."""
    from halguru.agents.runtime import run

    store = _store(store)
    row, decided, call, resume = await claimed(
        lambda: _decide(store, run_id, edit_args, reject, decided_by, model, agent),
        lambda done: store.release_approval(done[0]["run_id"]))
    started, approved = False, resume.decisions[call.id] is None  # the decision taken (a take-over's: recorded)
    try:
        async with aclosing(run(decided, row["input"], row["conversation_id"], model=model or row["model"],
                                store=store, resume=resume, metadata={**(metadata or {}), "resumes": row["run_id"]},
                                owner=row["owner"])) as events:
            async for event in events:
                if event.type == "run_started":
                    started = True
                    await asyncio.to_thread(store.set_approval_continued_by, row["run_id"], event.run_id)
                elif event.type == "tool_result" and event.call_id == call.id and approved:  # the side effect ran
                    await asyncio.to_thread(audit.record, store, decided_by, "tool.call", call.name,
                                            {"run_id": row["run_id"], "error": event.is_error})
                elif event.type == "run_finished" and event.status == "ok" and event.output.strip():
                    # queued before the end is passed on: a reader that stops there does not lose it
                    await asyncio.to_thread(answer_on_channel, store, row["conversation_id"], event.output,
                                            event.run_id)
                yield event
    finally:
        if not started:  # nothing ran (shielded: a cancelled request still frees it for a take-over)
            await asyncio.shield(asyncio.to_thread(store.release_approval, row["run_id"]))


def answer_on_channel(store: Store, conversation_id: str, text: str, run_id: str) -> None:
    """A channel's conversation (an SMS's) gets the continuation's answer, once per run: the reply job that
    paused had nothing to send, and every way of deciding (the CLI, the debugger, the server, ``approve`` here,
    `runs resume` of a stalled decision) comes through ``resume_events``."""
    from halguru.channels.replies import send_on_channel

    # not behind the thread's queue: a message that came while the call waited is queued before this answer and
    # waits (postponed) until the answer is in the conversation; behind it, this answer went out after its own
    send_on_channel(store, conversation_id, text, f"answer:{run_id}", ordered=False)


def check_edited_args(store: Store, run_id: str, edit_args: dict[str, Any], what: str = "--edit-args") -> None:
    """Raise (one line, naming them as ``what``) unless ``edit_args`` fit the paused call's tool; the approval
    stays pending."""
    row = store.find_approval(run_id)
    problem = edited_args_problem(row, edit_args) if row is not None else None
    if row is not None and problem is not None:
        raise HalguruError(f"{what}: {problem}; run {row['run_id']} is still waiting for approval")


def edited_args_problem(row: ApprovalRecord, edit_args: dict[str, Any]) -> str | None:
    """Why ``edit_args`` do not fit the paused call's tool (its schema's words), or None. A tool whose schema is
    known only at run time (an MCP server's) is checked when it runs."""
    from halguru.agents.loader import load_agent

    if row["status"] != "pending" or not row["agent_path"]:
        return None  # _claim (or the agent_path check) says what is wrong
    call = ToolCallRequest.model_validate_json(row["call"])
    agent = load_agent(row["agent_path"])
    tool = next((a.tools[call.name] for a in agent.involved() if call.name in a.tools), None)
    if tool is None:
        return None
    try:
        tool.validate(edit_args)
    except HalguruError as exc:
        return str(exc)
    return None


def approve(run_id: str, edit_args: dict[str, Any] | None = None, *, model: str | Model | None = None,
            store: Store | None = None) -> RunResult:
    """Run the pending call (with ``edit_args`` in place of its arguments, if given) and continue the run."""

    from halguru.agents.runtime import collect_result

    return run_blocking(collect_result(resume_events(run_id, edit_args, model=model, store=store)))


def reject(run_id: str, reason: str = "", *, model: str | Model | None = None,
           store: Store | None = None) -> RunResult:
    """Tell the model the pending call was refused (and why), and continue the run."""

    from halguru.agents.runtime import collect_result

    return run_blocking(collect_result(resume_events(run_id, reject=reason, model=model, store=store)))
