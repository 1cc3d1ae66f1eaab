"""Conversation management for operators (the admin console uses the same functions): search everyone's
conversations, read one with its runs, export it (JSON, or the test-case YAML of `halguru logs export`), and
take one over (``halguru.jobs.takeover``): answer as a human while the agent waits, then hand it back.

Reading is ``conversations:read_all``; taking over, answering and handing back are ``runs:approve_all`` (the
permission to steer what agents do for others: docs/identity.md). Take-overs, replies, hand-backs and exports
are recorded in the audit log.
"""

from __future__ import annotations

import calendar
import math
import re
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from halguru.errors import StoreError
from halguru.jobs import takeover
from halguru.store.records import ConversationFound, MessageRecord, RunListRecord
from halguru_server import audit, cursors, service
from halguru_server.bodies import GuardedRoute
from halguru_server.costly import Costly
from halguru_server.errors import ApiError, responses
from halguru_server.identity.guards import require
from halguru_server.openai_threads import RESPONSES_CHANNEL
from halguru_server.schemas import non_blank
from halguru_server.state import Principal, ServerState, state_of

router = APIRouter(prefix="/v1", tags=["conversations (operators)"], responses=responses(401, 403, 422),
                   route_class=GuardedRoute)
Reader = Annotated[Principal, Depends(require("conversations:read_all"))]
Steerer = Annotated[Principal, Depends(require("runs:approve_all"))]
State = Annotated[ServerState, Depends(state_of)]
ConvId = Annotated[str, Path(max_length=100, description="a conversation id")]
STATUSES = ("ok", "failed", "paused", "limited", "cancelled", "interrupted", "running")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class Found(BaseModel):
    id: str
    agent: str
    title: str
    created: float
    updated: float
    owner: str | None
    messages: int
    last_status: str | None = Field(description="the status of its last run; null: no run yet")
    channel: str | None = Field(description="the channel it came from (twilio, email, job...); null: API or web chat")
    match: str | None = Field(description="with q: the first message that matched")
    taken_over_by: str | None = None
    taken_over_since: float | None = None


class FoundPage(BaseModel):
    data: list[Found]
    next_cursor: str | None


class MessageOut(BaseModel):
    seq: int
    role: str
    content: str
    tool_calls: list[dict[str, Any]]
    tool_call_id: str | None
    name: str | None
    run_id: str | None
    author: str | None = Field(description="an operator's principal for an answer written by a person")
    created: float


class DeliveryOut(BaseModel):
    id: str = Field(description="the provider's id (Twilio's MessageSid; an inbound one prefixed with the agent)")
    channel: str
    direction: Literal["in", "out"]
    address: str = Field(description="the other party: who wrote, or who the reply went to")
    status: str = Field(description="as the channel last reported it: received, sent, delivered, undelivered, ...; "
                                    "an inbound one not answered says why ('ignored: opted out (STOP)')")
    error: str | None = Field(default=None, description="why it failed, as the provider said ('error 30003: "
                                                        "unreachable handset ...'; Twilio's ErrorCode)")
    job_id: str | None
    created: float
    updated: float


class Detail(BaseModel):
    conversation: dict[str, Any]
    messages: list[MessageOut] = Field(description="its newest `limit` messages (before `before`), oldest first")
    earlier_cursor: int | None = Field(default=None, description="`before` for the page of messages before these "
                                                                 "(null: these are the first)")
    runs: list[dict[str, Any]] = Field(description="its runs, oldest first (events: GET /v1/runs/{id})")
    deliveries: list[DeliveryOut] = Field(description="its channel's messages, oldest first, with their delivery "
                                                      "status (empty for a conversation no channel started)")


class ReplyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: Annotated[str, non_blank("the answer is only whitespace; write the answer first")] = Field(
        min_length=1, max_length=20000, description="the operator's answer, sent as a person")


class TakeoverOut(BaseModel):
    conversation_id: str
    taken_over_by: str | None
    taken_over_since: float | None


class ReplyOut(BaseModel):
    conversation_id: str
    seq: int = Field(description="the stored message's position in the conversation")
    job_id: str | None = Field(description="the job sending it on the conversation's channel; null: no channel")


def parse_time(value: str | None, name: str, end: bool = False) -> float | None:
    """Epoch seconds, or a date ``YYYY-MM-DD`` (UTC; as an end, the day's end); 422 otherwise (``nan`` and
    ``inf`` too, which ``float`` takes: the search answered an empty page as if nothing matched)."""
    if value is None or value == "":
        return None
    try:
        if _DATE.match(value):
            day = float(calendar.timegm(time.strptime(value, "%Y-%m-%d")))
            return day + 86400 if end else day
        seconds = float(value)
        if not math.isfinite(seconds):
            raise ValueError(value)
        return seconds
    except ValueError:
        raise ApiError(422, f"{name}: {value!r} is neither a date (YYYY-MM-DD) nor epoch seconds") from None


def time_range(since: str | None, until: str | None) -> tuple[float | None, float | None]:
    """``since`` and ``until`` as epoch seconds; a 422 for an ``until`` at or before ``since`` (swapped dates
    answered an empty page, as if no conversation was active then)."""
    start, end = parse_time(since, "since"), parse_time(until, "until", end=True)
    if start is not None and end is not None and end <= start:
        raise ApiError(422, f"until {until} is not after since {since}: nothing can be active between them")
    return start, end


def search(state: ServerState, caller: Principal, *, agent: str | None = None, channel: str | None = None,
           owner: str | None = None, since: str | None = None, until: str | None = None,
           status: str | None = None, q: str | None = None, limit: int = 50,
           cursor: str | None = None) -> tuple[list[ConversationFound], str | None]:
    """Conversations of the agents the caller may use, narrowed by the filters; a page and the next cursor."""
    if status and status not in STATUSES:
        raise ApiError(422, f"status: use one of {', '.join(STATUSES)}")
    names = [n for n, s in state.agents.items() if caller.allows(s) and (not agent or n == agent)]
    if q:
        service.check_text(q, "q")
    after = cursors.conversation_after(cursor)
    if owner and "@" in owner and ":" not in owner:  # an email: that user's conversations
        user = state.store.user_by_email(owner.strip().lower())
        owner = f"user:{user['id']}" if user else "user:"  # nobody's
    start, end = time_range(since, until)
    rows = state.store.search_conversations(
        agents=names, owner=owner or None, channel=channel or None, since=start, until=end, status=status or None,
        text=q or None, limit=limit + 1, after=after)
    return rows[:limit], cursors.conversation_cursor(rows[limit - 1]) if len(rows) > limit else None


def detail(state: ServerState, caller: Principal, conversation_id: str) -> tuple[dict[str, Any],
                                                                                 list[MessageRecord],
                                                                                 list[RunListRecord]]:
    """The conversation (404 unless the caller may see it), its messages and its runs oldest first."""
    row = service.get_conversation(state, caller, conversation_id)
    runs = state.store.list_runs(limit=1000, conversation_id=conversation_id)
    return row, state.store.conversation_messages(conversation_id), list(reversed(runs))


def export_json(state: ServerState, caller: Principal, conversation_id: str) -> dict[str, Any]:
    """The conversation, its messages, and each run with its events (as `halguru logs show --json` has them)."""
    row, messages, runs = detail(state, caller, conversation_id)
    return {"conversation": row, "messages": messages,
            "runs": [{"run": run, "events": state.store.get_events(run["id"])} for run in runs]}


def export_yaml(state: ServerState, caller: Principal, conversation_id: str) -> str:
    """The conversation as a test case, as `halguru logs export` writes it for its last run."""
    from halguru.testing.export import run_to_test_yaml

    service.get_conversation(state, caller, conversation_id)  # 404 unless the caller may see it
    runs = state.store.list_runs(limit=1, conversation_id=conversation_id)  # its last run: not its whole history
    if not runs:
        raise ApiError(409, f"conversation {conversation_id} has no run to export as a test case")
    try:
        return run_to_test_yaml(state.store, runs[0]["id"])
    except StoreError as exc:
        raise ApiError(409, str(exc)) from None


def steer(request: Request, state: ServerState, caller: Principal, conversation_id: str, action: str,
          text: str = "") -> dict[str, Any]:
    """Take over, hand back or reply (``action``), recorded in the audit log; what changed."""
    row = service.get_conversation(state, caller, conversation_id)
    try:
        if action == "takeover":
            takeover.take_over(state.store, conversation_id, caller.label)
            result: dict[str, Any] = {}
        elif action == "handback":
            result = {"was_taken_over_by": takeover.hand_back(state.store, conversation_id)}
        else:
            service.check_text(text, "text")
            result = takeover.reply(state.store, conversation_id, caller.label, text)
    except takeover.TakeoverError as exc:
        raise ApiError(exc.status, str(exc)) from None
    details = {"agent": row["agent"], "owner": row["owner"],
               **{k: v for k, v in result.items() if k != "conversation_id"}}
    audit.record(request, f"conversation.{action}", conversation_id, details)
    if action == "reply" and state.pusher is not None:  # the user may have left the page: tell them
        state.pusher.notify(conversation_id, f"{row['agent']}: an operator answered", text, actor=caller.owner)
    return result


@router.get("/admin/conversations", response_model=FoundPage, responses=responses(400, 503))
def search_conversations(
        state: State, caller: Reader, _: Costly,
        agent: Annotated[str | None, Query(max_length=100)] = None,
        channel: Annotated[str | None, Query(max_length=50, description="a channel name, or 'api' for none")] = None,
        owner: Annotated[str | None, Query(max_length=200, description="a user's email, or an owner: user:<id>, "
                                           "key:<id>, anon:..., channel:<name>")] = None,
        since: Annotated[str | None, Query(max_length=30, description="last activity from: YYYY-MM-DD or epoch s")]
        = None,
        until: Annotated[str | None, Query(max_length=30, description="last activity up to (the whole day)")] = None,
        status: Annotated[str | None, Query(max_length=20, description="its last run's status")] = None,
        q: Annotated[str | None, Query(max_length=200, description="text in its title or any message")] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        cursor: Annotated[str | None, Query(max_length=200)] = None) -> FoundPage:
    """Everyone's conversations, newest activity first, with filters; ``next_cursor`` pages on as
    ``GET /v1/conversations`` does (each conversation at most once per pass)."""
    rows, next_cursor = search(state, caller, agent=agent, channel=channel, owner=owner, since=since, until=until,
                               status=status, q=q, limit=limit, cursor=cursor)
    return FoundPage(data=[Found(**r) for r in rows], next_cursor=next_cursor)


@router.get("/admin/conversations/{conversation_id}", response_model=Detail, responses=responses(404, 422))
def read_conversation(
        conversation_id: ConvId, state: State, caller: Reader,
        limit: Annotated[int, Query(ge=1, le=1000, description="how many messages, the newest")] = 100,
        before: Annotated[int | None, Query(ge=0, description="only messages before this seq (a page's "
                                                              "earlier_cursor)")] = None) -> Detail:
    """A conversation as its user saw it (messages with their authors, a page at a time from the newest) and its
    runs. The whole history, with each run's events, is the export."""
    row = service.get_conversation(state, caller, conversation_id)
    messages = state.store.conversation_tail(conversation_id, limit + 1, before)  # one more: is there an earlier page
    earlier = None
    if len(messages) > limit:
        del messages[0]
        earlier = messages[0]["seq"]
    runs = reversed(state.store.list_runs(limit=1000, conversation_id=conversation_id))
    deliveries = [DeliveryOut.model_validate(m) for m in state.store.list_channel_messages(conversation_id)
                  if m["channel"] != RESPONSES_CHANNEL]
    return Detail(conversation=row, messages=[MessageOut(**m) for m in messages], earlier_cursor=earlier,
                  runs=[dict(r) for r in runs], deliveries=deliveries)


@router.get("/admin/conversations/{conversation_id}/export", responses={
    200: {"content": {"application/json": {}, "application/yaml": {}}}, **responses(404, 409, 503)})
def export_conversation(conversation_id: ConvId, request: Request, state: State, caller: Reader, _: Costly,
                        format: Literal["json", "yaml"] = "json") -> Response:
    """Download the conversation: JSON (messages, runs and their events) or the test-case YAML of
    `halguru logs export` (its last run, with the turns before it)."""
    import json

    if format == "yaml":
        body, media = export_yaml(state, caller, conversation_id), "application/yaml"
    else:
        body, media = json.dumps(export_json(state, caller, conversation_id), indent=2, ensure_ascii=False), \
            "application/json"
    audit.record(request, "conversation.export", conversation_id, {"format": format})
    name = f"{conversation_id}.{format}"
    return Response(body, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.post("/conversations/{conversation_id}/takeover", response_model=TakeoverOut, responses=responses(404, 409))
def take_over(conversation_id: ConvId, request: Request, state: State, caller: Steerer) -> TakeoverOut:
    """Answer in this conversation as a person: the agent is not run for its new messages until handed back
    (409 while another operator has it)."""
    steer(request, state, caller, conversation_id, "takeover")
    row = state.store.get_conversation(conversation_id)
    return TakeoverOut(conversation_id=conversation_id, taken_over_by=row.get("taken_over_by") if row else None,
                       taken_over_since=row.get("taken_over_since") if row else None)


@router.post("/conversations/{conversation_id}/handback", response_model=TakeoverOut,
             responses=responses(404, 409))
def hand_back(conversation_id: ConvId, request: Request, state: State, caller: Steerer) -> TakeoverOut:
    """The agent answers this conversation's new messages again (409 if it was not taken over)."""
    steer(request, state, caller, conversation_id, "handback")
    return TakeoverOut(conversation_id=conversation_id, taken_over_by=None, taken_over_since=None)


@router.post("/conversations/{conversation_id}/reply", response_model=ReplyOut, status_code=201,
             responses=responses(404, 409))
def reply(conversation_id: ConvId, body: ReplyIn, request: Request, state: State, caller: Steerer) -> ReplyOut:
    """The operator's answer in a taken-over conversation: stored as the assistant's (marked as written by a
    person) and sent on the conversation's channel when it came from one."""
    return ReplyOut(**steer(request, state, caller, conversation_id, "reply", body.text))
