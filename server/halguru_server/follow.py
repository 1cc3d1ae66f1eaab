"""Following a run through the store: SSE streams that survive a reconnect to another replica.

Every event a run's SSE stream carries has ``id: <run_id>:<seq>``: the top-level run's id and the event's number
in that run's trace (sub-runs share it). A client whose stream broke (its replica died, a deploy cut it, the
network dropped) reconnects to any replica: ``GET /v1/runs/{run_id}/events`` with ``Last-Event-ID`` (or
``?after=SEQ``) answers with the stored events after that one, then keeps reading the store while the run goes
on elsewhere, until its ``run_finished`` is stored or it reads as ended without one (a replica that died: its
lease passes and the run reads interrupted), which ends the stream with a fatal ``error`` event.

Invariant: following never drives the run. Closing this stream changes nothing, unlike the stream of
``POST .../messages``, whose closing is the web chat's Stop button (the run is cancelled).

What a resumed stream lacks: ``token`` events are not stored (the runtime keeps their text in ``model_result``
and ``run_finished.output``), so a client that resumes mid-answer gets the whole answer in those events.
A stream that is over answers a reconnect with 204, which tells a browser's EventSource to stop retrying.

What a follower costs: every ``POLL`` seconds, one read of the run's status and one of its events after the last
one sent (an index range, usually empty). Each client (a person, with all their API keys; an app's key; an
anonymous visitor's address) follows at most ``max_followers`` streams at once per process (``admit``): one
visitor opening 1,500 followers of one run made ``/healthz`` take up to 7 s.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from halguru.agents.events import Event
from halguru.errors import StoreError
from halguru_server import service
from halguru_server.errors import ApiError
from halguru_server.state import Principal, ServerState

TOO_MANY = "too_many_streams"

POLL = 0.2  # seconds between store reads while the run goes on elsewhere (the runtime flushes every 0.25 s)
RECHECK = 2.0  # seconds between checks that a signed-in follower's session still holds (``ended``)
RETRY_MS = 1000  # what a browser's EventSource waits before reconnecting
END = "end"  # the seq part of the id of a stream's synthetic last event: a reconnect with it gets 204
_LAST_ID = re.compile(r"^(run_[0-9a-f]{6,40}):(\d{1,9}|end)$")


def event_id(run_id: str, seq: int | str) -> str:
    return f"{run_id}:{seq}"


def live_renderer() -> Callable[[Event], str]:
    """How a live run's SSE stream writes each event: with its id, the first event's run (the top-level run:
    sub-runs' events carry their own run ids but share its numbering)."""
    top = ""

    def render(event: Event) -> str:
        nonlocal top
        top = top or event.run_id
        return f"id: {top}:{event.seq}\n" + service.sse(event.type, event.model_dump_json())

    return render


def error_event(kind: str, message: str, last_id: str | None = None) -> str:
    """The fatal ``error`` event a stream ends with when its run ended without ``run_finished``."""
    data = json.dumps({"type": "error", "kind": kind, "message": message, "fatal": True})
    return (f"id: {last_id}\n" if last_id else "") + service.sse("error", data)


def parse_after(run_id: str, last_event_id: str | None, after: int | None) -> int | str:
    """The last event the client has: ``Last-Event-ID`` wins over ``?after`` (a browser's EventSource
    reconnects to the same URL with the header set); -1 for the whole run. 400 for an id of another run."""
    if last_event_id:
        match = _LAST_ID.match(last_event_id.strip())
        if match is None or match[1] != run_id:
            raise ApiError(400, f"Last-Event-ID {last_event_id[:80]!r} is not an event id of run {run_id} "
                                f"(they read {run_id}:SEQ)")
        return END if match[2] == END else int(match[2])
    return -1 if after is None else after


def finished_seq(events: list[dict[str, Any]], run_id: str) -> int | None:
    """The seq of the run's own ``run_finished`` (not a sub-run's), if stored."""
    return next((e["seq"] for e in reversed(events) if e["type"] == "run_finished" and e["run_id"] == run_id),
                None)


def over(state: ServerState, run_id: str, after: int | str) -> bool:
    """The client already has the end of the run: nothing more will ever come (answer 204)."""
    if after == END:
        return True
    assert isinstance(after, int)
    done = finished_seq(state.store.get_events(run_id), run_id)
    return done is not None and after >= done


def admit(state: ServerState, client: str) -> Callable[[], None]:
    """Count one more stream followed by ``client`` (429 past ``max_followers``); returns what frees it (once).
    Counted on the event loop only, so no lock."""
    limit = state.settings.max_followers
    if state.followers[client] >= limit:
        raise ApiError(429, f"too many streams followed at once: {limit} per client; close one first (a stream "
                       "ends at its run's run_finished)", TOO_MANY, headers={"Retry-After": "5"})
    state.followers[client] += 1
    freed = False

    def free() -> None:
        nonlocal freed
        if not freed:
            freed = True
            state.followers[client] -= 1
            if state.followers[client] <= 0:
                del state.followers[client]

    return free


def _poll(state: ServerState, run_id: str, after: int) -> tuple[str, list[dict[str, Any]]]:
    """The run's status, then its events after ``after``: status first, as finish_run stores both in one
    transaction, so a final status read before the events means the events read after it are all there are."""
    status = state.store.get_run(run_id)["status"]
    return status, state.store.get_events(run_id, after)


def ended(state: ServerState, caller: Principal) -> str | None:
    """Why ``caller`` may no longer follow, or None: the web session its request came with was ended (signed out,
    revoked by an admin or from another browser, past its absolute timeout), its API key was revoked or expired,
    or its user was disabled. A stream is one request that goes on: checked at its start only, it kept delivering
    to a browser signed out, or a key revoked, long since."""
    if caller.web is not None:
        session = state.store.get_web_session(caller.web["id_hash"])
        if session is None or session["revoked"] is not None or session["expires"] <= time.time():
            return "your session ended (signed out or revoked)"
    if caller.key is not None:
        key = state.store.get_key(caller.key.id)
        if key is None or key["revoked"] is not None or (key["expires"] is not None and key["expires"] <= time.time()):
            return "your API key was revoked or has expired"
    if caller.user is not None:
        user = state.store.get_user(caller.user["id"])
        if user is None or user["disabled"]:
            return "your account was disabled"
    return None


async def follow(state: ServerState, run_id: str, after: int, caller: Principal) -> AsyncIterator[str]:
    """The stored events after ``after``, then the new ones as they are stored, until the run ends, or until the
    signed-in caller's session ends (checked every ``RECHECK`` s: an ``error`` event of kind ``signed_out``, with
    no id, so a browser's reconnect is asked who it is again)."""
    yield f"retry: {RETRY_MS}\n\n"
    quiet_since = checked = time.monotonic()
    recheck = caller.web is not None or caller.user is not None or caller.key is not None
    while True:
        if recheck and time.monotonic() - checked >= RECHECK:
            checked = time.monotonic()
            why = await asyncio.to_thread(ended, state, caller)
            if why is not None:
                yield error_event("signed_out", f"{why}: sign in again to follow run {run_id}")
                return
        try:  # one thread hop for both reads; only the events not sent yet
            status, events = await asyncio.to_thread(_poll, state, run_id, after)
        except StoreError:  # deleted with its conversation meanwhile
            yield error_event("deleted", f"run {run_id} was deleted", event_id(run_id, END))
            return
        for event in events:
            after = event["seq"]
            quiet_since = time.monotonic()
            shown = service.event_shown(event, caller)
            yield f"id: {run_id}:{after}\n" + service.sse(event["type"], json.dumps(shown))
            if event["type"] == "run_finished" and event["run_id"] == run_id:
                return
        if status != "running":
            yield error_event(status, f"run {run_id} ended {status} without finishing (its process stopped); "
                                      f"GET /v1/runs/{run_id} shows what it did", event_id(run_id, END))
            return
        if state.lifecycle.stopping:  # this replica is going away: the client reconnects to another one
            return
        if time.monotonic() - quiet_since >= state.settings.sse_keepalive:
            quiet_since = time.monotonic()
            yield service.KEEPALIVE
        await asyncio.sleep(POLL)
