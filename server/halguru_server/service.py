"""What the routes do, shared by the REST API, the OpenAI endpoint and the web chat.

Runs always go through ``halguru.agents.runtime.run`` (the only entry point),
inside a place in the model's fair queue, with the request id in the trace.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
import unicodedata
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import suppress
from typing import Any

from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from halguru.agents.client_tools import ClientTools
from halguru.agents.events import Error, Event, RunFinished, RunStarted, ToolCall
from halguru.agents.runtime import NoConversation, run
from halguru.errors import ConversationBusy, ConversationPaused, TooManyConversations
from halguru.models.base import Message
from halguru_server import cursors, inflight
from halguru_server.agents import ServedAgent
from halguru_server.errors import ApiError
from halguru_server.gate import Reservation
from halguru_server.lifecycle import Pump, RunCut, closing
from halguru_server.ops import model_label, reads_metrics, without_folders
from halguru_server.schemas import MessageList, MessageOut, RunningOut
from halguru_server.state import Principal, ServerState

ID = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
log = logging.getLogger("halguru.server")
TOO_MANY_CONVERSATIONS = "too_many_conversations"


# -- conversations -----------------------------------------------------------
def new_conversation(state: ServerState, principal: Principal, agent: str, title: str = "",
                     history: list[Message] | None = None) -> dict:
    """An empty stored conversation, owned by ``principal`` (an anonymous one needs its chat session). The
    ``max_conversations`` cap counts the served agents' only: a removed agent's are out of their owner's reach."""
    if principal.anonymous and principal.session is None:
        raise ApiError(401, "start a chat session first: POST /chat/api/session", "no_session")
    conv_id = f"conv_{int(time.time() * 1000):x}{secrets.token_hex(10)}"
    try:
        return dict(state.store.create_conversation(conv_id, agent, title, history or [], owner=principal.owner,
                                                    max_owned=state.settings.max_conversations or None,
                                                    among=list(state.agents)))
    except TooManyConversations as exc:  # 409, not 429: waiting frees nothing (the clients retry a 429)
        raise ApiError(409, str(exc), TOO_MANY_CONVERSATIONS) from None


def check_owned(state: ServerState, owner: str) -> None:
    """409 if ``owner`` keeps ``max_conversations`` (a job that will start one is refused when queued; the
    worker, which knows no server settings, does not count again: at most ``max_waiting_jobs`` more)."""
    try:
        state.store.check_owned_conversations(owner, state.settings.max_conversations, list(state.agents))
    except TooManyConversations as exc:
        raise ApiError(409, str(exc), TOO_MANY_CONVERSATIONS) from None


def get_conversation(state: ServerState, principal: Principal, conv_id: str) -> dict[str, Any]:
    """The conversation, if ``principal`` owns it (or its role reads all) and may use its agent; else 404 whether or
    not it exists, so another principal's ids leak nothing."""
    row = state.store.get_conversation(conv_id) if ID.match(conv_id) else None
    served = state.agents.get(row["agent"]) if row else None
    if row is None or served is None or not principal.allows(served) or not principal.owns(row["owner"]):
        raise ApiError(404, f"no conversation {conv_id!r}")
    return dict(row)


MESSAGES_PAGE = 100
"""Messages per page of a conversation's history when the caller names no ``limit`` (at most ``MESSAGES_MAX``):
one page of a long history is read, not the whole of it (a 30 MB history read whole four times at once held
every other request up to 2 s)."""
MESSAGES_MAX = 1000


def message_list(state: ServerState, conversation_id: str, limit: int = MESSAGES_PAGE,
                 cursor: str | None = None) -> MessageList:
    """A page of a conversation's messages as the API shows them, oldest first: an operator's answers marked
    ``human`` (who it was stays with the operators), each with its run's status (an answer cut short says so when
    shown again). ``limit`` per page, ``next_cursor`` for the next (None: the last page)."""
    offset = cursors.offset_of(cursor)
    # before the messages: a run that ends between the two reads is then in both, never in neither
    running = state.store.list_runs(1, conversation_id=conversation_id, status="running")
    page = state.store.conversation_messages(conversation_id, offset, limit + 1)  # one more: is there a next?
    more, page = len(page) > limit, page[:limit]
    statuses = state.store.run_statuses(conversation_id) if any(m["run_id"] for m in page) else {}
    if more or any(m["run_id"] == run["id"] for run in running for m in page):
        running = []
    return MessageList(running=RunningOut(run_id=running[0]["id"], input=running[0]["input"]) if running else None,
                       data=[
        MessageOut(role=m["role"], content=m["content"], tool_calls=m["tool_calls"], tool_call_id=m["tool_call_id"],
                   name=m["name"], human=m["author"] is not None, run_id=m["run_id"],
                   run_status=statuses.get(m["run_id"]) if m["run_id"] else None)
        for m in page], next_cursor=cursors.offset_cursor(offset + limit) if more else None)


def list_conversations(state: ServerState, principal: Principal, agent: str | None, limit: int,
                       cursor: str | None, own: bool = False) -> tuple[list[dict[str, Any]], str | None]:
    """Newest activity first; the cursor is a keyset (see ``cursors``: each conversation at most once per pass).
    ``own``: only the principal's, even for a role that sees everyone's (the web chat's history)."""
    after = cursors.conversation_after(cursor)
    names = [n for n, s in state.agents.items() if principal.allows(s) and (agent is None or n == agent)]
    if principal.key is not None and principal.key.agents:
        names = [n for n in names if principal.key.allows(n)]
    if not names:
        return [], None
    if own and principal.owner is None and not principal.dev:
        return [], None  # an anonymous visitor without a session has no conversations yet
    owner = principal.owner if own and not principal.dev else principal.owner_filter_for("conversations")
    rows = state.store.list_conversations(limit + 1, agents=names, after=after, owner=owner)
    page = [dict(r) for r in rows[:limit]]
    return page, cursors.conversation_cursor(page[-1]) if len(rows) > limit else None


def rename_conversation(state: ServerState, principal: Principal, conv_id: str, title: str) -> dict[str, Any]:
    """Retitle a conversation the principal may open; the conversation as it is now."""
    get_conversation(state, principal, conv_id)
    title = clean_title(title)
    if not title:
        raise ApiError(400, "give the conversation a title that is not blank", param="title")
    if not state.store.rename_conversation(conv_id, title):
        raise ApiError(404, f"no conversation {conv_id!r}")
    return get_conversation(state, principal, conv_id)


def clean_title(title: str) -> str:
    """A title as it is stored and shown, on one line: each run of spaces and line breaks one space; 400 for a
    control character (an escape, a NUL the store would keep as U+FFFD) or a lone surrogate. Creating and
    renaming a conversation both go through it, so one title reads back as it was answered."""
    title = " ".join(title.split())
    check_text(title, "the title")
    control = next((c for c in title if unicodedata.category(c) == "Cc"), None)
    if control is not None:
        raise ApiError(400, f"the title has a control character (\\x{ord(control):02x}); remove it", param="title")
    return title


def delete_conversation(state: ServerState, conv_id: str) -> None:
    """404 when a concurrent request deleted it first (that one answers 204 and is audited)."""
    if not state.store.delete_conversation(conv_id):
        raise ApiError(404, f"no conversation {conv_id!r}")


# -- runs --------------------------------------------------------------------
def check_text(text: str, where: str = "the message") -> None:
    """400 for text that cannot be stored: a lone surrogate (valid JSON, ``"\\ud800"``, but not UTF-8)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ApiError(400, f"{where} contains a lone surrogate ({text[exc.start]!r} at character {exc.start}); "
                            "send valid UTF-8 text") from None


def check_input(state: ServerState, text: str, where: str | None = None) -> None:
    """413 for a message past ``max_input_chars``; ``where``: the request field holding it (the error's param)."""
    check_text(text)
    if len(text) > state.settings.max_input_chars:
        what = f"{where}: {len(text)} characters" if where else f"the message is {len(text)} characters"
        raise ApiError(413, f"{what}; the limit is {state.settings.max_input_chars} (HALGURU_SERVE_MAX_INPUT_CHARS)",
                       "message_too_long", param=where)
    if state.lifecycle.stopping:
        raise ApiError(503, "the server is shutting down; retry on another instance", headers={"Retry-After": "5"})


def check_room(state: ServerState, principal: Principal, conversation_id: str, adding: int) -> None:
    """409 ``conversation_full`` when the conversation would pass its cap: ``max_public_conversation_chars`` for
    an anonymous visitor's, ``max_conversation_chars`` for any other (0: none). Each message and 50,000-character
    attachment is kept, and each run reads the whole history again, so one visitor within the rate limit grew
    one to 30 MB in half an hour, and four reads of it at once held /healthz up to 2 s."""
    public = principal.anonymous
    limit = state.settings.max_public_conversation_chars if public else state.settings.max_conversation_chars
    if not limit:
        return
    held = state.store.conversation_chars(conversation_id)
    if held + adding > limit:
        keeps = f"a public chat keeps at most {limit}" if public else \
            f"a conversation keeps at most {limit} (HALGURU_SERVE_MAX_CONVERSATION_CHARS)"
        raise ApiError(409, f"this conversation holds {held} characters and {keeps}; start a new conversation",
                       "conversation_full")


def reserve(state: ServerState, served: ServedAgent, principal: Principal) -> Reservation:
    """A place in the model's queue now (503 when full), before any response byte is sent."""
    concurrency = served.slots if served.slots is not None else state.settings.concurrency
    return state.gate.reserve(served.model, principal.client, concurrency)


async def run_events(state: ServerState, served: ServedAgent, text: str, conversation: str | None,
                     request_id: str, reservation: Reservation, owner: str | None,
                     sampling: dict[str, Any] | None = None, output_schema: dict[str, Any] | None = None,
                     client_tools: ClientTools | None = None, tool_results: list[Message] | None = None
                     ) -> AsyncIterator[Event]:
    """The run's events, once the queue lets it in. Closing this iterator cancels the run (stored). ``owner``
    is the conversation's: an admin posting into another's conversation adds a run its owner sees.
    ``output_schema``: the answer is one JSON value matching it (the OpenAI endpoint's ``response_format``);
    ``client_tools`` and ``tool_results``: its client-side tools and their results (``halguru.agents.runtime``)."""
    stream = run(served.agent, text, conversation, store=state.store, sampling=sampling,
                 metadata={"request_id": request_id}, owner=owner, output_schema=output_schema,
                 client_tools=client_tools, tool_results=tool_results)
    try:
        async for event in metered(state, served, reservation, stream):
            yield event
    except NoConversation:  # deleted between the request's check and the run's start: as if never there
        raise ApiError(404, f"no conversation {conversation!r}") from None
    except ConversationBusy as exc:
        raise conflict(exc) from None


def conflict(exc: ConversationBusy) -> ApiError:
    """The 409 of a conversation that takes no message now: a turn of it waits for an approval (no retry helps
    until it is decided), or another message of it is being answered (retry after)."""
    if isinstance(exc, ConversationPaused):
        return ApiError(409, str(exc), "conversation_paused")
    return ApiError(409, str(exc), "conversation_busy", headers={"Retry-After": str(round(exc.retry_after))})


async def check_idle(state: ServerState, conversation_id: str) -> None:
    """409 now, before a stream's 200, for a conversation that would refuse the run as it starts (a race with
    another request still ends the stream in an error event)."""
    try:
        await asyncio.to_thread(state.store.check_idle, conversation_id)
    except ConversationBusy as exc:
        raise conflict(exc) from None


class UntilStarted:
    """A run's events (``events()``) that tell when the run starts (``on_start(run_id)``) or that it never will
    (``never()``): its events ended without a RunStarted (the queue wait ended by a disconnect or a shutdown, the
    conversation deleted meanwhile), or its response was closed before it asked for the first event, which
    ``settle`` catches (a generator that never started runs no ``finally``). Both are store calls, run off the
    event loop; ``never`` is shielded, so a cancelled request still cleans up."""

    def __init__(self, events: AsyncIterator[Event], never: Callable[[], object],
                 on_start: Callable[[str], object] | None = None):
        self.inner, self.never, self.on_start = events, never, on_start
        self.began = False

    async def events(self) -> AsyncIterator[Event]:
        self.began = True
        started = False
        try:
            async with closing(self.inner) as stream:
                async for event in stream:
                    if not started and isinstance(event, RunStarted):
                        started = True
                        if self.on_start is not None:
                            await asyncio.to_thread(self.on_start, event.run_id)
                    yield event
        finally:
            if not started:
                await asyncio.shield(asyncio.to_thread(self.never))

    async def settle(self) -> None:
        """Once the response is done: ``never()`` if the events were never asked for (else ``events`` saw to it)."""
        if not self.began:
            self.began = True
            await asyncio.shield(asyncio.to_thread(self.never))


REDACTED = frozenset({"error", "run_finished", "run_started", "model_call", "tool_result"})  # what redaction() changes


def redaction(event: dict[str, Any]) -> dict[str, Any]:
    """The fields of an event (one of the REDACTED types) that an anonymous web-chat visitor sees otherwise: no
    model or tool error details (the operator finds them by the run id), no folders of a model file's path, and
    no prompt (the instructions and retrieved knowledge are the operator's; the chat page never shows them)."""
    kind = event["type"]
    if kind == "error":  # nor a tool's traceback (its detail): the server's paths and source lines
        return {"message": f"{event['kind']} error (run {event['run_id']})", "detail": None}
    if kind == "tool_result":  # a failed call's words are the tool's error (a path, a host, an exception)
        return {"content": f"error (run {event['run_id']})"} if event.get("is_error") else {}
    if kind == "run_finished":
        return {"error": f"the run ended {event['status']} (run {event['run_id']})"} if event.get("error") else {}
    if kind in ("run_started", "model_call"):
        return {"model": model_label(event["model"]), **({"messages": []} if kind == "model_call" else {})}
    return {}


def event_shown(event: dict[str, Any], caller: Principal) -> dict[str, Any]:
    """A stored event as ``caller`` sees it: as ``redaction`` leaves it to an anonymous visitor, with a model
    reference's folders left out for a caller who may not read metrics (``ops.model_shown``), else whole."""
    if event["type"] not in REDACTED:
        return event
    if caller.anonymous:
        return {**event, **redaction(event)}
    if not reads_metrics(caller):
        return {**event, **labelled(event)}
    return event


def labelled(event: dict[str, Any]) -> dict[str, Any]:
    """The fields of an event (one of the REDACTED types) that a caller who may not read metrics sees otherwise:
    a model reference, and the file paths in an error (a model file missing), without their folders."""
    changed: dict[str, Any] = {}
    if "model" in event:
        changed["model"] = model_label(event["model"])
    for field in ("message", "detail", "error") + (("content",) if event.get("is_error") else ()):
        if isinstance(event.get(field), str):
            changed[field] = without_folders(event[field])
    return changed


def shown(events: AsyncIterator[Event], caller: Principal) -> AsyncIterator[Event]:
    """A run's live events as ``caller`` sees them (``event_shown``)."""
    if caller.anonymous:
        return redacted(events)
    return _labelled(events) if not reads_metrics(caller) else events


async def _labelled(events: AsyncIterator[Event]) -> AsyncIterator[Event]:
    async with closing(events) as stream:
        async for event in stream:
            if event.type in REDACTED:
                event = event.model_copy(update=labelled(event.model_dump()))
            yield event


async def redacted(events: AsyncIterator[Event]) -> AsyncIterator[Event]:
    """What an anonymous web-chat visitor sees of a run (``redaction``); the error details go to the log."""
    async with closing(events) as stream:
        async for event in stream:
            if event.type in REDACTED:
                if isinstance(event, Error):
                    log.warning("run error", extra={"fields": {"run_id": event.run_id, "kind": event.kind,
                                                               "message": event.message}})
                elif isinstance(event, RunFinished) and event.error:
                    log.warning("run failed", extra={"fields": {"run_id": event.run_id, "status": event.status,
                                                                "error": event.error}})
                event = event.model_copy(update=redaction(event.model_dump()))
            yield event


async def metered(state: ServerState, served: ServedAgent, reservation: Reservation,
                  stream: AsyncIterator[Event]) -> AsyncIterator[Event]:
    """A run's events (a new run or a continuation) once the queue lets it in, counted in the metrics.

    The stream starts only inside the reservation; closing this iterator closes it, which cancels the run.
    """
    m = state.metrics
    started = finished = False
    try:
        async with reservation, closing(stream) as events:
            async for event in events:
                started = True
                if isinstance(event, RunFinished):
                    finished = True
                    m.runs.labels(served.name, event.status).inc()
                    m.run_duration.labels(served.name).observe(event.duration_ms / 1000)
                    m.tokens.labels(served.name, "in").inc(event.prompt_tokens)
                    m.tokens.labels(served.name, "out").inc(event.completion_tokens)
                elif isinstance(event, ToolCall):
                    m.tool_calls.labels(served.name, m.tool_label(event.name)).inc()
                elif isinstance(event, Error):
                    m.errors.labels(event.kind).inc()
                yield event
    finally:
        if started and not finished:  # the run was cut: as the store records it
            m.runs.labels(served.name, "interrupted" if state.lifecycle.interrupted else "cancelled").inc()


async def collect(request: Request, state: ServerState, events: AsyncIterator[Event],
                  finish_alone: bool = False) -> list[Event]:
    """Run to the end in its own task; if the client goes away first, cancel the run (stored as cancelled), or
    with ``finish_alone`` (a message with an Idempotency-Key: its retry is to get the whole answer; or ``detach``)
    let it run to its end; if the shutdown grace period cuts it, a 503 (the run is stored as interrupted)."""
    pump = Pump(state.lifecycle, events)

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    task = asyncio.ensure_future(pump.collect())
    watch = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
    if not task.done() and finish_alone:
        await asyncio.wait({task})
    if not task.done():
        await pump.close()
        with suppress(BaseException):
            await task
        raise ApiError(499, "client closed the request", "cancelled")
    try:
        return task.result()
    except RunCut as cut:
        if cut.shutdown:
            raise ApiError(503, str(cut), "shutdown", headers={"Retry-After": "5"}) from None
        raise ApiError(499, "client closed the request", "cancelled") from None


KEEPALIVE = ": keep-alive\n\n"


async def sse_body(state: ServerState, events: AsyncIterator[Event], render: Callable[[Event], str | None],
                   error: Callable[[str, str, int | None], str], alone: Callable[[Pump], None] | None = None
                   ) -> AsyncIterator[str]:
    """An SSE body: each event as ``render`` writes it, a keep-alive comment every ``sse_keepalive`` seconds
    of silence (long tool calls, queue waits), and a final ``error`` if the run is refused or cut short (with the
    seconds to wait before sending again, where the refusal has them, as a 409's Retry-After). A client
    that leaves cancels the run, unless ``alone`` is given (a keyed message, see ``collect``): then the run goes
    on to its end, and ``alone`` gets its pump as it starts (to free the queue place when the run ends)."""
    pump = Pump(state.lifecycle, events, finish_alone=alone is not None)
    if alone is not None:
        alone(pump)
    try:
        async with closing(pump.items(state.settings.sse_keepalive, state.settings.sse_coalesce)) as items:
            async for event in items:
                text = KEEPALIVE if event is None else render(event)
                if text:
                    yield text
    except ApiError as exc:  # refused once the stream had begun: a continuation decided elsewhere, or a message
        # whose conversation another message (another replica's) began answering in while it waited in the queue
        retry = (exc.headers or {}).get("Retry-After")
        yield error(exc.type, exc.message, int(retry) if retry else None)
    except RunCut as cut:
        yield error("shutdown" if cut.shutdown else "cancelled", str(cut), None)
    except Exception:
        log.exception("a run failed mid-stream")
        yield error("internal", "internal error; see the server log", None)


def summary(events: list[Event]) -> tuple[RunStarted, RunFinished]:
    started, finished = events[0], events[-1]
    assert isinstance(started, RunStarted) and isinstance(finished, RunFinished)
    return started, finished


class EventStream(StreamingResponse):
    """An SSE response that frees its queue place even if the client left before the first byte (``on_close``,
    then ``settle``, awaited: what a body that never started would otherwise leave undone)."""

    def __init__(self, content: AsyncIterator[str], state: ServerState, on_close: Callable[[], None],
                 settle: Callable[[], Awaitable[None]] | None = None):
        super().__init__(content, media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self._state, self._on_close, self._settle = state, on_close, settle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        inflight.leave(scope.get("state", {}))  # a stream has its own cap (followers, the model gate's place)
        self._state.metrics.streams.inc()
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._state.metrics.streams.dec()
            self._on_close()
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                await aclose()
            if self._settle is not None:
                await self._settle()


def sse(event: str, data: str) -> str:
    return f"event: {event}\ndata: {data}\n\n"
