"""Conversations (``/admin/conversations``, ``conversations:read_all``): search everyone's conversations with
filters, open one as its user saw it with each run's trace tree (the tree of `halguru logs show`), export it,
delete it, take it over (``runs:approve_all``): answer as a person, then hand it back, and stop a running
run (audited).

Every action goes through the functions of ``/v1/admin/conversations`` and ``/v1/conversations/{id}/takeover``
(``halguru_server.conversations_api``), so the API and the console record the same audit entries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from io import StringIO
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import Depends, Path, Query, Request
from fastapi.responses import HTMLResponse, Response

from halguru.errors import StoreError
from halguru_server import api as rest_api
from halguru_server import audit, conversations_api, service
from halguru_server.console import shell
from halguru_server.costly import Costly
from halguru_server.errors import ApiError
from halguru_server.identity import pages
from halguru_server.identity.guards import require
from halguru_server.openai_threads import RESPONSES_CHANNEL
from halguru_server.state import Principal, ServerState, state_of

router = shell.page_router()
Reader = Annotated[Principal, Depends(require("conversations:read_all"))]
Steerer = Annotated[Principal, Depends(require("runs:approve_all"))]
State = Annotated[ServerState, Depends(state_of)]
ConvId = Annotated[str, Path(max_length=100)]
Field = Annotated[str | None, Query(max_length=200)]
FILTERS = ("q", "agent", "channel", "owner", "status", "since", "until")


def trace_text(run: dict[str, Any], events: list[dict[str, Any]]) -> str:
    """A run's event tree as `halguru logs show` prints it (``trace_tree``), as plain text for a <pre>."""
    from rich.console import Console

    from halguru.cli.render import trace_tree

    out = StringIO()
    Console(file=out, width=110, color_system=None, force_terminal=False, soft_wrap=False).print(
        trace_tree(run, events))
    return out.getvalue()


def _fields(state: ServerState, values: dict[str, str | None]) -> list[dict[str, Any]]:
    """The filter form's fields, filled with the current query."""
    agents = [("", "any")] + [(n, n) for n in sorted(state.agents)]
    statuses = [("", "any")] + [(s, s) for s in conversations_api.STATUSES]
    return [
        {"name": "q", "label": "Text, or a conversation or run id", "value": values["q"], "type": "search"},
        {"name": "agent", "label": "Agent", "value": values["agent"], "type": "select", "options": agents},
        {"name": "channel", "label": "Channel (api: none)", "value": values["channel"]},
        {"name": "owner", "label": "User (email or user:<id>)", "value": values["owner"]},
        {"name": "status", "label": "Last run", "value": values["status"], "type": "select", "options": statuses},
        {"name": "since", "label": "Active from (UTC)", "value": values["since"], "type": "date"},
        {"name": "until", "label": "Active until (UTC)", "value": values["until"], "type": "date"},
    ]


def _people(state: ServerState, names: Iterable[str | None]) -> dict[str, str]:
    """Owners and authors as the page names them: a user's email (or name) for each ``user:<id>`` among
    ``names`` (the page's own rows). Every user was read for each page and each 3 s refresh of a taken-over
    conversation's messages: 0.5 s a time with 20,000 accounts."""
    people = {}
    for name in {n for n in names if n and n.startswith("user:")}:
        if (user := state.store.get_user(name.removeprefix("user:"))) is not None:
            people[name] = user["email"] or user["name"] or user["id"]
    return people


def _named(state: ServerState, caller: Principal, text: str) -> str | None:
    """The conversation an id pasted into the search box names (a conversation's id, or a run's from a log line
    or a user's report), if the caller may read it: the text search looks in titles and messages, never ids."""
    if not service.ID.match(text):
        return None
    found = state.store.get_conversation(text)
    if found is None:
        try:
            run = state.store.get_run(text)
        except StoreError:
            return None
        if run["id"] != text or not run["conversation_id"]:  # a run id's prefix is not the id typed
            return None
    conversation_id = text if found is not None else str(run["conversation_id"])
    try:
        return str(service.get_conversation(state, caller, conversation_id)["id"])
    except ApiError:  # not the caller's to read: searched as text, as any other
        return None


@router.get("/conversations")
def conversations_page(request: Request, state: State, caller: Reader, _: Costly, q: Field = None, agent: Field = None,
                       channel: Field = None, owner: Field = None, status: Field = None, since: Field = None,
                       until: Field = None, cursor: Field = None, deleted: Field = None) -> Response:
    """The search form and a page of results (newest activity first); an id typed alone opens its conversation."""
    if q and q.strip() and not cursor and (named := _named(state, caller, q.strip())) is not None:
        return shell.back(f"/admin/conversations/{named}")
    values = {"q": q, "agent": agent, "channel": channel, "owner": owner, "status": status, "since": since,
              "until": until}
    error, next_cursor = None, None
    rows: list[Any] = []
    try:
        rows, next_cursor = conversations_api.search(state, caller, **values, limit=50, cursor=cursor)
    except ApiError as exc:
        error = exc.message
    query = {k: v for k, v in values.items() if v}
    more = f"/admin/conversations?{urlencode({**query, 'cursor': next_cursor})}" if next_cursor else None
    export = "/admin/conversations/export.csv" + (f"?{urlencode(query)}" if query else "")
    return shell.render(request, caller, "conversations.html", "Conversations", status=422 if error else 200,
                        error=error, fields=_fields(state, values), rows=rows, more=more, export=export,
                        people=_people(state, (r["owner"] for r in rows)),
                        notice=f"Deleted conversation {deleted}." if deleted else None)


MESSAGES_PAGE = 100
"""Messages the page shows at a time, the newest first; "Earlier messages" pages back. The whole history was read
and drawn: a 30 MB conversation took seconds and hundreds of MB per view, and every 3 s while taken over."""
RUNS_PAGE = 20
"""Runs whose traces the page shows at a time, the newest; "Earlier runs" pages back."""
Position = Annotated[int | None, Query(ge=0, le=2**62)]


def _messages(state: ServerState, conversation_id: str, before: int | None,
              owner: str | None = None) -> dict[str, Any]:
    """A page of the messages before seq ``before`` (None: the newest), and the link to the page before it;
    ``people`` names their authors and the conversation's ``owner``."""
    page = state.store.conversation_tail(conversation_id, MESSAGES_PAGE + 1, before)  # one more: any earlier?
    earlier = page[0]["seq"] if len(page) > MESSAGES_PAGE else None
    page = page[-MESSAGES_PAGE:]
    link = f"/admin/conversations/{conversation_id}"
    return {"messages": page, "people": _people(state, [owner, *(m["author"] for m in page)]),
            "earlier": f"{link}?{urlencode({'before': page[0]['seq']})}" if earlier is not None else None,
            "newest": link if before is not None else None}


def _traces(state: ServerState, conversation_id: str, skip: int) -> dict[str, Any]:
    """The trace trees of the newest runs after the ``skip`` newest (oldest of them first), and the paging links.
    A model call's history is counted, not read (``get_events(history=False)``)."""
    from halguru.agents.events import stub_history

    runs = state.store.list_runs(limit=skip + RUNS_PAGE + 1, conversation_id=conversation_id)
    shown = list(reversed(runs[skip:skip + RUNS_PAGE]))
    traces = [(run, trace_text(dict(run), [stub_history(e) for e in state.store.get_events(run["id"], history=False)]))
              for run in shown]
    link = f"/admin/conversations/{conversation_id}"
    return {"traces": traces,
            "earlier_runs": f"{link}?{urlencode({'runs': skip + RUNS_PAGE})}" if len(runs) > skip + RUNS_PAGE else None,
            "newest_runs": link if skip else None}


@router.get("/conversations/{conversation_id}")
def conversation_page(conversation_id: ConvId, request: Request, state: State, caller: Reader,
                      notice: Annotated[str | None, Query(max_length=200)] = None, before: Position = None,
                      runs: Annotated[int, Query(ge=0, le=100_000)] = 0) -> HTMLResponse:
    """One conversation: a page of its messages as the user saw them (the newest unless ``before`` a seq), the
    traces of a page of its runs (the newest unless ``runs`` skips some), and the actions."""
    row = service.get_conversation(state, caller, conversation_id)
    # what the channel said of each message (a reply Twilio reports undelivered): else nowhere to be seen
    deliveries = [m for m in state.store.list_channel_messages(conversation_id) if m["channel"] != RESPONSES_CHANNEL]
    return shell.render(request, caller, "conversation.html", row["title"] or "Untitled conversation",
                        conversation=row, **_messages(state, conversation_id, before, row["owner"]),
                        **_traces(state, conversation_id, runs), live=before is None,
                        deliveries=deliveries, can_steer=caller.can("runs:approve_all"), notice=notice)


@router.get("/conversations/{conversation_id}/messages")
def messages_fragment(conversation_id: ConvId, state: State, caller: Reader) -> HTMLResponse:
    """The newest page of messages alone: the page refreshes it while a person holds the conversation."""
    service.get_conversation(state, caller, conversation_id)
    return shell.fragment("conversation_messages.html", **_messages(state, conversation_id, None))


@router.post("/conversations/{conversation_id}/runs/{run_id}/cancel")
async def cancel_run(conversation_id: ConvId, run_id: Annotated[str, Path(max_length=50)], request: Request,
                     state: State, caller: Steerer) -> Response:
    """Stop one of the conversation's running runs (on whichever replica runs it), audited as ``run.cancel``."""
    await pages.form(request)
    page = f"/admin/conversations/{conversation_id}"
    try:
        run = await asyncio.to_thread(rest_api.owned_run, state, caller, run_id)
        if run["conversation_id"] != conversation_id:
            raise ApiError(404, f"no run {run_id!r} in this conversation")
        ended = await rest_api.cancel(request, state, caller, run_id, audited=True)
    except ApiError as exc:
        return shell.back(f"{page}?{urlencode({'notice': exc.message})}", caller)
    said = "Cancelled." if ended.status == "cancelled" else f"Asked to stop; the run reads {ended.status}."
    return shell.back(f"{page}?{urlencode({'notice': said})}", caller)


@router.post("/conversations/{conversation_id}/{action}")
async def conversation_action(conversation_id: ConvId, action: Literal["takeover", "handback", "reply", "delete"],
                              request: Request, state: State, caller: Steerer) -> Response:
    """Take over, answer, hand back or delete, from the page's forms; back to the page with what happened."""
    form = await pages.form(request)
    page = f"/admin/conversations/{conversation_id}"
    try:
        if action == "delete":
            row = service.get_conversation(state, caller, conversation_id)
            service.delete_conversation(state, conversation_id)
            audit.record(request, "conversation.delete", conversation_id, {"agent": row["agent"],
                                                                            "owner": row["owner"]})
            return shell.back(f"/admin/conversations?{urlencode({'deleted': conversation_id})}", caller)
        text = form.get("text", "").strip()
        if action == "reply" and not text:
            raise ApiError(422, "write the answer first")
        conversations_api.steer(request, state, caller, conversation_id, action, text)
    except ApiError as exc:
        return shell.back(f"{page}?{urlencode({'notice': exc.message})}", caller)
    said = {"takeover": "You have the conversation: the agent waits until you hand it back.",
            "handback": "Handed back: the agent answers again.", "reply": "Sent."}[action]
    return shell.back(f"{page}?{urlencode({'notice': said})}", caller)
