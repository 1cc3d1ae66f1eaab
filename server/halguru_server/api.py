"""The REST API under /v1: agents, conversations, messages (whole or streamed as SSE) and runs."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from halguru.agents.events import Event
from halguru.errors import StoreError
from halguru.jobs import takeover
from halguru.orchestration import durable
from halguru.store.records import MessageKeyRecord, RunRecord
from halguru_server import audit, follow, idempotency, ops, runs, service
from halguru_server.agents import ServedAgent
from halguru_server.bodies import GuardedRoute
from halguru_server.errors import ApiError, responses
from halguru_server.gate import Reservation
from halguru_server.identity.guards import require
from halguru_server.lifecycle import Pump
from halguru_server.schemas import (
    AgentList,
    AgentOut,
    ApproveIn,
    ConversationIn,
    ConversationOut,
    ConversationPage,
    ConversationRename,
    MessageIn,
    MessageList,
    PendingList,
    PendingRun,
    RejectIn,
    ResumeIn,
    RunCancelOut,
    RunDetail,
    RunList,
    RunOut,
    RunSummary,
    ToolCallOut,
    Usage,
)
from halguru_server.state import Principal, ServerState, agent_for, state_of

router = APIRouter(prefix="/v1", responses=responses(401, 422), route_class=GuardedRoute)
Caller = Annotated[Principal, Depends(require("chat:use"))]  # own conversations and runs (others': *_all)
Reader = Annotated[Principal, Depends(require("agents:read"))]
State = Annotated[ServerState, Depends(state_of)]
ConvId = Annotated[str, Path(max_length=100, description="a conversation id")]
RunId = Annotated[str, Path(max_length=50, description="a run id")]
_RUN_ID = re.compile(r"^run_[0-9a-f]{6,40}$")
# One Server-Sent Event (OpenAPI before 3.2: a text/event-stream ``schema`` describes each event).
SSE_EVENT = {"type": "object", "required": ["data"], "properties": {
    "event": {"type": "string", "description": "the run event's type (run_started, token, ..., error)"},
    "data": {"type": "string", "description": "the event as JSON"},
    "id": {"type": "string"}, "retry": {"type": "integer"}}}
SSE_DOC = {"content": {"text/event-stream": {"schema": SSE_EVENT}},
           "description": "the answer; with stream=true, Server-Sent Events (one per run event)"}
TAKEN_OVER = {"status": "taken_over", "message": "A person has taken this conversation over: your message is "
              "stored and they will answer here."}
HELD_DOC: dict[int | str, dict[str, Any]] = {202: {
    "description": "an operator has taken the conversation over: the message is stored, the agent does not "
                   "answer it (body: status 'taken_over', conversation_id, message)"}}


def agent_out(state: ServerState, name: str, caller: Principal) -> AgentOut:
    """An agent as the API shows ``caller`` it: its model as ``ops.model_shown`` gives it."""
    served = state.agents[name]
    spec = served.agent.spec
    return AgentOut(name=name, description=spec.description, model=ops.model_shown(spec.model, caller),
                    tools=list(spec.tools), web_chat=served.web_chat, version=state.agents.version(name))


@router.get("/agents", response_model=AgentList, tags=["agents"])
def list_agents(state: State, caller: Reader) -> AgentList:
    """The agents this server runs (those the API key may use)."""
    return AgentList(data=[agent_out(state, n, caller) for n, s in state.agents.items() if caller.allows(s)])


@router.get("/agents/{agent}", response_model=AgentOut, tags=["agents"], responses=responses(403, 404))
def get_agent(agent: str, state: State, caller: Reader) -> AgentOut:
    agent_for(state, caller, agent)
    return agent_out(state, agent, caller)


@router.post("/conversations", response_model=ConversationOut, status_code=201, tags=["conversations"],
             responses=responses(400, 403, 404, 409))
def create_conversation(body: ConversationIn, state: State, caller: Caller) -> ConversationOut:
    """Start an empty conversation with an agent; post messages to it next."""
    agent_for(state, caller, body.agent)
    return ConversationOut(**service.new_conversation(state, caller, body.agent, service.clean_title(body.title)))


@router.get("/conversations", response_model=ConversationPage, tags=["conversations"], responses=responses(400))
def list_conversations(state: State, caller: Caller, agent: str | None = None,
                       limit: Annotated[int, Query(ge=1, le=100)] = 20,
                       cursor: Annotated[str | None, Query(max_length=200)] = None) -> ConversationPage:
    """Newest activity first, ``limit`` per page; follow ``next_cursor`` for more. The cursor marks the last
    conversation shown, so conversations created or given a message meanwhile never repeat or shift the rest:
    each shows at most once per pass, and one that moved to the top after the first page heads the next pass."""
    rows, next_cursor = service.list_conversations(state, caller, agent, limit, cursor)
    return ConversationPage(data=[ConversationOut(**r) for r in rows], next_cursor=next_cursor)


@router.get("/conversations/{conversation_id}", response_model=ConversationOut, tags=["conversations"],
            responses=responses(404))
def get_conversation(conversation_id: ConvId, state: State, caller: Caller) -> ConversationOut:
    row = service.get_conversation(state, caller, conversation_id)
    return ConversationOut(**{**row, "messages": state.store.count_messages(conversation_id)})


@router.patch("/conversations/{conversation_id}", response_model=ConversationOut, tags=["conversations"],
              responses=responses(400, 404))
def rename_conversation(conversation_id: ConvId, body: ConversationRename, state: State,
                        caller: Caller) -> ConversationOut:
    """Give the conversation a new title (the web chat's Rename)."""
    row = service.rename_conversation(state, caller, conversation_id, body.title)
    return ConversationOut(**{**row, "messages": state.store.count_messages(conversation_id)})


@router.delete("/conversations/{conversation_id}", status_code=204, tags=["conversations"],
               responses=responses(404))
def delete_conversation(conversation_id: ConvId, request: Request, state: State, caller: Caller) -> Response:
    """Delete the conversation with its messages, runs and their events."""
    row = service.get_conversation(state, caller, conversation_id)
    service.delete_conversation(state, conversation_id)
    audit.record(request, "conversation.delete", conversation_id, {"agent": row["agent"], "owner": row["owner"]})
    return Response(status_code=204)


@router.get("/conversations/{conversation_id}/messages", response_model=MessageList, tags=["conversations"],
            responses=responses(400, 404))
def list_messages(conversation_id: ConvId, state: State, caller: Caller,
                  limit: Annotated[int, Query(ge=1, le=service.MESSAGES_MAX)] = service.MESSAGES_PAGE,
                  cursor: Annotated[str | None, Query(max_length=200)] = None) -> MessageList:
    """Oldest first, ``limit`` per page (100 unless given, at most 1000): follow ``next_cursor`` until it is
    null for the whole history."""
    service.get_conversation(state, caller, conversation_id)
    return service.message_list(state, conversation_id, limit, cursor)


@router.post("/conversations/{conversation_id}/messages", response_model=RunOut, tags=["conversations"],
             responses={200: SSE_DOC, **HELD_DOC, **responses(400, 404, 409, 413, 503)})
async def post_message(conversation_id: ConvId, body: MessageIn, request: Request, state: State,
                       caller: Caller, idempotency_key: Annotated[str | None, Header(
                           alias="Idempotency-Key", description=idempotency.HEADER_DOC)] = None,
                       ) -> Response | RunOut:
    """Send a message and get the answer: whole (JSON), or streamed as typed events with ``stream: true``
    (or ``Accept: text/event-stream``): run_started, token, tool_call, tool_result, ..., run_finished.
    With an ``Idempotency-Key``, a retry of the same message gets the first answer instead of a second turn.
    Closing the request (or its stream) cancels the run, unless ``detach`` (or an ``Idempotency-Key``) asks it to
    go on: then ``POST /v1/runs/{id}/cancel`` stops it."""
    return await answer(request, state, caller, conversation_id, body, idempotency_key)


async def answer(request: Request, state: ServerState, caller: Principal, conversation_id: str,
                 body: MessageIn, idempotency_key: str | None = None) -> Response | RunOut:
    """Post a message: shared by the REST API and the web chat (``idempotency`` says what a key does)."""
    # Off the event loop: with a database server a read is a round trip that would stall every other request.
    row = await asyncio.to_thread(service.get_conversation, state, caller, conversation_id)
    served = agent_for(state, caller, row["agent"])
    service.check_input(state, body.content)
    await asyncio.to_thread(service.check_room, state, caller, conversation_id, len(body.content))
    claim = None
    if idempotency_key is not None:  # claimed before the run is queued; released if it never starts
        claim, earlier = await idempotency.claim(state, caller, conversation_id, idempotency_key, body.content)
        if earlier is not None:
            return await _repeat(request, state, caller, earlier, body.stream)
    try:
        if row.get("taken_over_by") and await asyncio.to_thread(takeover.hold, state.store, conversation_id,
                                                                body.content):
            if claim is not None:
                await asyncio.to_thread(state.store.hold_message_key, *claim.args)
            return JSONResponse(TAKEN_OVER | {"conversation_id": conversation_id}, status_code=202)
        if body.stream or "text/event-stream" in request.headers.get("accept", ""):
            await service.check_idle(state, conversation_id)  # a 409 before the stream's 200
        reservation = service.reserve(state, served, caller)
    except BaseException:
        if claim is not None:
            await idempotency.release(state, claim)
        raise
    events = service.shown(service.run_events(state, served, body.content, conversation_id, _request_id(request),
                                              reservation, row["owner"]), caller)
    tracked = None
    if claim is not None:
        tracked = idempotency.tracked(state, claim, events)
        events = tracked.events()
    return await respond(request, state, served, reservation, events, body.stream,
                         finish_alone=claim is not None or body.detach,
                         settle=tracked.settle if tracked is not None else None)


async def _repeat(request: Request, state: ServerState, caller: Principal, earlier: MessageKeyRecord,
                  stream: bool) -> Response | RunOut:
    """A repeat of a keyed message: the first request's answer (its run's stored events as SSE when a stream is
    asked for), 202 again for a message held for an operator, 409 while the first is still going."""
    if earlier["status"] == "held":
        return JSONResponse(TAKEN_OVER | {"conversation_id": earlier["conversation_id"]}, status_code=202)
    out = await asyncio.to_thread(idempotency.stored_run, state, caller, earlier)  # 409 unless it ended
    if stream or "text/event-stream" in request.headers.get("accept", ""):
        return await resume_stream(state, caller, out.run_id, None, -1)
    return out


async def respond(request: Request, state: ServerState, served: ServedAgent, reservation: Reservation,
                  events: AsyncIterator[Event], stream: bool, finish_alone: bool = False,
                  settle: Callable[[], Awaitable[None]] | None = None) -> Response | RunOut:
    """A queued run as the client asked: SSE (``stream`` or ``Accept: text/event-stream``), else one RunOut
    (``finish_alone``: the run goes on if its client leaves, see ``service.collect``); ``settle`` is awaited once
    the response is done, whether or not it ever asked for an event.

    Shared by messages and the continuations of paused or interrupted runs, so both answer alike."""
    if stream or "text/event-stream" in request.headers.get("accept", ""):
        def error(kind: str, message: str, retry_after: int | None) -> str:
            event: dict[str, Any] = {"type": "error", "kind": kind, "message": message, "fatal": True}
            if retry_after is not None:  # a refusal that sending again later gets past (conversation_busy)
                event["retry_after"] = retry_after
            return service.sse("error", json.dumps(event))

        if not finish_alone:  # ids: resumable elsewhere
            body = service.sse_body(state, events, follow.live_renderer(), error)
            return service.EventStream(body, state, reservation.release, settle)
        # a keyed message runs on if its client leaves: its queue place is freed when the run ends, or with the
        # response if the run never started (the client left before the body began)
        pumps: list[Pump] = []

        def run_alone(pump: Pump) -> None:
            def ended(task: asyncio.Future[None]) -> None:
                reservation.release()
                if not task.cancelled():
                    task.exception()  # retrieved: a run that raised is stored as failed; nobody is left to tell

            pumps.append(pump)
            pump.task.add_done_callback(ended)

        body = service.sse_body(state, events, follow.live_renderer(), error, run_alone)
        return service.EventStream(body, state, lambda: None if pumps else reservation.release(), settle)
    try:
        collected = await service.collect(request, state, events, finish_alone)
    finally:
        reservation.release()
        if settle is not None:
            await settle()
    started, finished = service.summary(collected)
    return RunOut(run_id=finished.run_id, conversation_id=started.conversation_id, agent=served.name,
                  status=finished.status, output=finished.output, error=finished.error,
                  usage=Usage(prompt_tokens=finished.prompt_tokens, completion_tokens=finished.completion_tokens),
                  tool_calls=[ToolCallOut(name=e.name, arguments=e.arguments, id=e.call_id, client=e.client)
                              for e in collected if e.type == "tool_call"],
                  duration_ms=finished.duration_ms)


# a bad value is a 422 naming the ones there are, as on /v1/jobs (durable.STATUSES: the CLI's list)
RunStatus = Literal["running", "interrupted", "paused", "failed", "limited", "cancelled", "ok"]


@router.get("/runs", response_model=RunList, tags=["runs"])
def list_runs(state: State, caller: Caller,
              status: Annotated[RunStatus | None, Query(description="what the runs' status is")] = None,
              limit: Annotated[int, Query(ge=1, le=100)] = 20) -> RunList:
    """Runs of the agents this key may use, newest first, with the checkpoint a resume would start from."""
    return RunList(data=[RunSummary(**{**r, "model": ops.model_shown(r["model"], caller),
                                       "error": ops.error_shown(r["error"], caller)})
                         for r in runs.list_runs(state, caller, status, limit)])


@router.get("/runs/pending", response_model=PendingList, tags=["runs"])
def list_pending(state: State, caller: Caller) -> PendingList:
    """Paused runs waiting for a human (oldest first): the tool call to approve or reject."""
    return PendingList(data=[PendingRun(**r) for r in runs.list_pending(state, caller)])


CONTINUES = {200: SSE_DOC, **responses(403, 404, 409, 413, 503)}


@router.post("/runs/{run_id}/approve", response_model=RunOut, tags=["runs"], responses=CONTINUES)
async def approve_run(run_id: RunId, request: Request, state: State, caller: Caller,
                      body: ApproveIn | None = None) -> Response | RunOut:
    """Run the paused call (with ``edit_args`` instead of its arguments, if given) and continue the run: the
    continuation run is answered like a message (JSON, or SSE with ``stream: true``). 409 once decided."""
    body = body or ApproveIn()
    return await respond(request, state, *await runs.decide(state, caller, run_id, _request_id(request),
                                                            body.edit_args), body.stream)


@router.post("/runs/{run_id}/reject", response_model=RunOut, tags=["runs"], responses=CONTINUES)
async def reject_run(run_id: RunId, request: Request, state: State, caller: Caller,
                     body: RejectIn | None = None) -> Response | RunOut:
    """Refuse the paused call: the model is told so (and why) and the run goes on, answered like a message."""
    body = body or RejectIn()
    return await respond(request, state, *await runs.decide(state, caller, run_id, _request_id(request),
                                                            reject=body.reason), body.stream)


@router.post("/runs/{run_id}/resume", response_model=RunOut, tags=["runs"], responses=CONTINUES)
async def resume_run(run_id: RunId, request: Request, state: State, caller: Caller,
                     body: ResumeIn | None = None) -> Response | RunOut:
    """Continue an interrupted, failed, limited or cancelled team or workflow run from its last checkpoint (finished
    steps and tool calls are reused, not run again); answered like a message. 409 if it is not resumable."""
    body = body or ResumeIn()
    return await respond(request, state, *await runs.resume(state, caller, run_id, _request_id(request)),
                         body.stream)


@router.post("/runs/{run_id}/cancel", response_model=RunCancelOut, tags=["runs"], responses=responses(404, 409))
async def cancel_run(run_id: RunId, request: Request, state: State, caller: Caller) -> RunCancelOut:
    """Stop a running run, on whichever replica runs it: it ends ``cancelled``, keeping the answer so far (a
    detached message's run, or one whose client is still reading: its stream ends with an ``error`` event of kind
    ``cancelled``). Answers once it has ended (``running``: not yet, after a few seconds). 409 when it has ended
    already, waits for an approval (reject it instead) or is a job's (cancel the job). Stopping someone else's run
    (a role that sees all runs) is audited."""
    return await cancel(request, state, caller, run_id)


CANCEL_WAIT = 5.0  # seconds a cancel waits for the run to end before answering that it is still ending


async def cancel(request: Request, state: ServerState, caller: Principal, run_id: str,
                 audited: bool = False) -> RunCancelOut:
    """Ask the run's process to stop it (through the store: any replica), then wait for its end (shared by the
    API, the web chat's Stop and the console); audited when it is someone else's run, or ``audited``."""
    run = await asyncio.to_thread(owned_run, state, caller, run_id)
    try:
        await asyncio.to_thread(durable.ask_cancel, state.store, run)
    except durable.NotCancellable as exc:
        raise ApiError(409, str(exc), exc.kind) from None
    if audited or run["owner"] != caller.owner:
        await asyncio.to_thread(audit.record, request, "run.cancel", run_id,
                                {"agent": run["agent"], "owner": run["owner"]})
    status = "running"
    deadline = asyncio.get_running_loop().time() + CANCEL_WAIT
    while status == "running" and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(follow.POLL)
        status = (await asyncio.to_thread(state.store.get_run, run_id))["status"]
    return RunCancelOut(run_id=run_id, status=status)


@router.get("/runs/{run_id}", response_model=RunDetail, tags=["runs"], responses=responses(404))
def get_run(run_id: Annotated[str, Path(max_length=50)], state: State, caller: Caller) -> RunDetail:
    """A run with every recorded event (streamed tokens are summed up in model_result)."""
    run = owned_run(state, caller, run_id)
    fields = {k: v for k, v in run.items() if k in RunDetail.model_fields and k != "events"}
    fields["model"] = ops.model_shown(run["model"], caller)
    fields["error"] = ops.error_shown(run["error"], caller)
    return RunDetail(**fields, events=[service.event_shown(e, caller) for e in state.store.get_events(run_id)])


@router.get("/runs/{run_id}/events", tags=["runs"], responses={
    200: {"content": {"text/event-stream": {"schema": SSE_EVENT}}, "description": "the run's stored events "
          "after Last-Event-ID, then new ones as the run goes on (on any replica), to run_finished"},
    204: {"description": "the client already has the run's end"}, **responses(400, 404, 429)})
async def run_events(run_id: Annotated[str, Path(max_length=50)], state: State, caller: Caller,
                     last_event_id: Annotated[str | None, Header(max_length=120)] = None,
                     after: Annotated[int | None, Query(ge=-1, le=10**9, description="the seq of the last "
                                                        "event the client has (Last-Event-ID wins)")] = None,
                     ) -> Response:
    """Resume a run's SSE stream, on any replica: send the last ``id`` you got as ``Last-Event-ID`` (a browser's
    EventSource does). Tokens are not stored: a resumed answer arrives whole in model_result and run_finished.
    Closing this stream never stops the run."""
    return await resume_stream(state, caller, run_id, last_event_id, after)


async def resume_stream(state: ServerState, caller: Principal, run_id: str, last_event_id: str | None,
                        after: int | None) -> Response:
    """A run's events from the store after the client's last one (shared by the API and the web chat; an
    anonymous caller's with error details redacted, as its live stream had them)."""
    await asyncio.to_thread(owned_run, state, caller, run_id)
    start = follow.parse_after(run_id, last_event_id, after)
    if await asyncio.to_thread(follow.over, state, run_id, start):
        return Response(status_code=204)
    assert isinstance(start, int)
    free = follow.admit(state, caller.client)  # 429 past the client's share of followers
    return service.EventStream(follow.follow(state, run_id, start, caller), state, free)


def owned_run(state: ServerState, caller: Principal, run_id: str) -> RunRecord:
    """The run with exactly this id, if the caller may see it; else 404 whether or not it exists."""
    try:
        run = state.store.get_run(run_id) if _RUN_ID.match(run_id) else None
    except StoreError:
        run = None
    served = state.agents.get(run["agent"]) if run and run["id"] == run_id else None
    if run is None or served is None or not caller.allows(served) or not caller.owns(run["owner"], "runs"):
        raise ApiError(404, f"no run {run_id!r}")
    return run


def _request_id(request: Request) -> str:
    """The id the request-log middleware gave this request: a continuation's trace records it too."""
    return str(request.scope["state"]["request_id"])
