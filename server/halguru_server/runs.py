"""Runs over the REST API: list them, list those waiting for approval, and continue them.

Approve, reject and resume wrap the library's ``resume_events`` (``halguru.orchestration.approvals`` and
``.durable``), which check and claim a run only once their stream starts: after the model queue lets it in,
when an SSE response has already begun. So the same checks are made here first, to answer 404, 403 or 409
before any byte; the library's own claim stays the last word (another worker may decide the run meanwhile).

Those checks read the store on a thread (on PostgreSQL each read is a round trip, which on the event loop
would stall every other request of the server); ``_BUSY`` is read and written on the event loop only, with no
``await`` between the last check and the reservation, so of concurrent requests here one continues the run.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from halguru.agents.events import Event, RunFinished
from halguru.errors import HalguruError, StoreError, StoreUnavailable
from halguru.orchestration import approvals, durable
from halguru.store.records import ApprovalRecord, CheckpointRecord, RunListRecord, RunRecord
from halguru_server import service
from halguru_server.agents import ServedAgent
from halguru_server.errors import ApiError
from halguru_server.gate import Reservation
from halguru_server.lifecycle import closing
from halguru_server.push import Pusher
from halguru_server.state import Principal, ServerState

RUN_ID = re.compile(r"^run_[0-9a-f]{6,40}$")
Started = tuple[ServedAgent, Reservation, AsyncIterator[Event]]
# Runs a request of this process is about to continue: a second request gets 409 at once, not mid-stream.
_BUSY: dict[str, Reservation] = {}


# -- listing -------------------------------------------------------------------
def _visible(state: ServerState, caller: Principal) -> list[str]:
    return [name for name, served in state.agents.items() if caller.allows(served)]


def list_runs(state: ServerState, caller: Principal, status: str | None, limit: int) -> list[RunListRecord]:
    """``durable.list_runs`` for the caller's agents only; an unknown status is a 400."""
    try:
        return durable.list_runs(status, limit, state.store, agents=_visible(state, caller),
                                 owner=caller.owner_filter_for("runs"))
    except StoreUnavailable:  # 503: not the request's fault
        raise
    except HalguruError as exc:
        raise ApiError(400, str(exc)) from None


def list_pending(state: ServerState, caller: Principal) -> list[dict[str, Any]]:
    """The paused runs this caller could approve here (their run still stored, their agent served here)."""
    visible = _visible(state, caller)
    owner = caller.owner_filter_for("approvals")
    paths = {r["run_id"]: r["agent_path"] for r in state.store.list_pending(agents=visible, owner=owner)}
    out = []
    for row in approvals.list_pending(state.store, agents=visible, owner=owner):
        served = _ours(state, row["agent"], paths.get(row["run_id"]), need_path=True)
        if row["run_id"] in paths and served is not None and caller.allows(served):
            out.append(row)
    return out


# -- checks --------------------------------------------------------------------
def _ours(state: ServerState, agent: str, path: str | None, need_path: bool) -> ServedAgent | None:
    """The served agent a run belongs to: same name and, where the store kept it, the same folder."""
    served = state.agents.get(agent)
    if served is None or (path is None and need_path):
        return None
    if path is not None and (served.agent.path is None or Path(path).resolve() != served.agent.path.resolve()):
        # a published agent's earlier version (`halguru publish` since the run paused) continues on its version
        from halguru_server.deployments import published_version_of, unpack_for

        if not published_version_of(agent, path):
            return None

        unpack_for(state.store, agent, path)  # a replica that never served that version has it from the store
    return served


def _run(state: ServerState, run_id: str) -> RunRecord | None:
    """The run with exactly this id (never a prefix match)."""
    if not RUN_ID.match(run_id):
        return None
    try:
        run = state.store.get_run(run_id)
    except StoreError:
        return None
    return run if run["id"] == run_id else None


def _target(state: ServerState, caller: Principal, run_id: str, row: ApprovalRecord | CheckpointRecord | None,
            run: RunRecord | None) -> tuple[ServedAgent, RunRecord]:
    """The run and its agent: 404 unless the run is served here, of an agent the caller may use, and the
    caller's (or its role approves all); the same 404 whichever it is, so a key limited to some agents learns
    nothing of the others' runs."""
    served = _ours(state, run["agent"], row["agent_path"] if row else None, need_path=row is not None) if run else None
    if run is None or served is None or not caller.allows(served) or not caller.owns(run["owner"], "approvals"):
        raise ApiError(404, f"no run {run_id!r}; GET /v1/runs lists them")
    return served, run


def _not_busy(run_id: str) -> None:
    for rid in [rid for rid, r in _BUSY.items() if r.released]:
        del _BUSY[rid]
    if run_id in _BUSY:
        raise ApiError(409, f"run {run_id} is being continued by another request")


def _decision_target(state: ServerState, caller: Principal,
                     run_id: str) -> tuple[ServedAgent, RunRecord, ApprovalRecord | None]:
    """The run, its agent and its approval row (store reads: call on a thread)."""
    run = _run(state, run_id)
    row = state.store.find_approval(run_id) if run else None
    if row is not None and row["run_id"] != run_id:
        row = None
    served, run = _target(state, caller, run_id, row, run)
    return served, run, row


async def _check_decision(state: ServerState, caller: Principal, run_id: str, reject: str | None,
                          edit_args: dict[str, Any] | None) -> tuple[ServedAgent, ApprovalRecord]:
    """The refusals of ``approvals.resume_events`` (the library's own words), made before it claims the run: a
    decided approval whose continuation stalled is taken over when the decision asked for is the recorded one."""
    served, run, row = await asyncio.to_thread(_decision_target, state, caller, run_id)
    _not_busy(run_id)
    if row is None:
        raise ApiError(409, f"run {run_id} is not waiting for approval (it is {run['status']})")
    problem = approvals.refusal(row, reject, edit_args)
    if problem is not None:
        raise ApiError(409, problem)
    return served, row


def _resume_target(state: ServerState, caller: Principal, run_id: str) -> tuple[ServedAgent, RunRecord]:
    """The run and its agent (store reads: call on a thread)."""
    run = _run(state, run_id)
    return _target(state, caller, run_id, state.store.get_checkpoint(run_id) if run else None, run)


def _resumable(state: ServerState, run_id: str) -> None:
    try:
        durable.check_resumable(state.store, run_id)
    except StoreUnavailable:  # 503: not the request's fault
        raise
    except HalguruError as exc:
        raise ApiError(409, str(exc)) from None


async def _check_resume(state: ServerState, caller: Principal, run_id: str) -> tuple[ServedAgent, RunRecord]:
    """The refusals of ``durable.resume_events`` (the same check), made before it claims the run."""
    served, run = await asyncio.to_thread(_resume_target, state, caller, run_id)
    _not_busy(run_id)
    await asyncio.to_thread(_resumable, state, run_id)
    return served, run


# -- continuing ----------------------------------------------------------------
async def decide(state: ServerState, caller: Principal, run_id: str, request_id: str,
                 edit_args: dict[str, Any] | None = None,
                 reject: str | None = None) -> Started:
    """Approve (``reject`` None) or reject the paused run: its continuation, queued like a message."""
    served, row = await _check_decision(state, caller, run_id, reject, edit_args if reject is None else None)
    if edit_args is not None and reject is None:  # a bad edit is the request's fault (422), and uses nothing up
        try:  # (it reads the approval and loads the agent: on a thread)
            await asyncio.to_thread(approvals.check_edited_args, state.store, run_id, edit_args, "edit_args")
        except StoreUnavailable:  # 503: not the request's fault
            raise
        except HalguruError as exc:
            raise ApiError(422, str(exc)) from None
    text = reject if reject is not None else json.dumps(edit_args) if edit_args is not None else ""
    service.check_input(state, text)  # what the model will read: the same size limit as a message
    stream: AsyncIterator[Event] = approvals.resume_events(  # an SMS's answer is sent too
        run_id, edit_args, reject=reject, store=state.store, metadata={"request_id": request_id},
        decided_by=caller.label)
    if state.pusher is not None:
        said = "rejected" if reject is not None else "approved"
        stream = _tell_owner(stream, state.pusher, row["conversation_id"], f"{served.name}: the action was {said}",
                             caller.owner)
    return _start(state, caller, served, run_id, stream)


async def _tell_owner(stream: AsyncIterator[Event], pusher: Pusher, conversation_id: str, title: str,
                      actor: str | None) -> AsyncIterator[Event]:
    """The continuation's answer goes to the run's owner as a notification when someone else decided it
    (an operator in the console): the owner is not watching this stream."""
    async with closing(stream) as events:
        async for event in events:
            yield event
            if isinstance(event, RunFinished) and event.status == "ok" and event.output.strip():
                pusher.notify(conversation_id, title, event.output, actor=actor)


async def resume(state: ServerState, caller: Principal, run_id: str, request_id: str) -> Started:
    """Continue an interrupted, failed, limited or cancelled team or workflow run from its last checkpoint."""
    served, run = await _check_resume(state, caller, run_id)
    service.check_input(state, "")
    stream = durable.resume_events(run_id, store=state.store, by=caller.label, metadata={"request_id": request_id})
    if state.pusher is not None:  # the owner hears of the answer as from a decision (it may be one, stalled)
        title = await asyncio.to_thread(_resume_title, state, served.name, run)
        stream = _tell_owner(stream, state.pusher, run["conversation_id"], title, caller.owner)
    return _start(state, caller, served, run_id, stream)


def _resume_title(state: ServerState, agent: str, run: RunRecord) -> str:
    """What the owner's notification of a resumed run's answer says: the decision it carries out (a paused run
    whose decided approval's continuation stalled), else that the agent answered."""
    row = state.store.find_approval(run["id"]) if run["status"] == "paused" else None
    if row is not None and row["run_id"] == run["id"] and row["status"] in ("approved", "rejected"):
        return f"{agent}: the action was {row['status']}"
    return f"{agent} answered"


def _start(state: ServerState, caller: Principal, served: ServedAgent, run_id: str,
           stream: AsyncIterator[Event]) -> Started:
    """Hold the run and a place in its model's queue: on the event loop, with no ``await`` since the busy
    check (made again: another request may have taken the run while this one read the store)."""
    _not_busy(run_id)
    reservation = service.reserve(state, served, caller)
    _BUSY[run_id] = reservation
    return served, reservation, service.metered(state, served, reservation, _conflicts(stream))


async def _conflicts(stream: AsyncIterator[Event]) -> AsyncIterator[Event]:
    """A refusal from the library's claim (the run was decided elsewhere meanwhile) becomes a 409."""
    started = False
    try:
        async with closing(stream) as events:
            async for event in events:
                started = True
                yield event
    except StoreUnavailable:  # 503: not the request's fault
        raise
    except HalguruError as exc:
        if started:
            raise
        raise ApiError(409, str(exc)) from None