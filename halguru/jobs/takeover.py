"""Take-over: an operator answers in a live conversation as a human, and the agent waits until handed back.

While a conversation is taken over (``taken_over_by`` in the store), a user's new message is stored and the
agent is not run (``hold``: the REST API and web chat answer that a human has the conversation; a channel's
reply job stores it and sends nothing). The operator's answers are stored as assistant messages whose
``author`` is the operator, so the user reads them in the conversation, and the model reads them as the
assistant's own turns once it is handed back. A conversation a channel started gets the operator's answer
on that channel too: a ``human_reply`` job sends it through the same once-only path as the agent's replies.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from halguru.agents.events import Event, RunFinished, RunStarted
from halguru.errors import HalguruError
from halguru.jobs.pipeline import REPLY_ATTEMPTS, channel_owner, queue_key
from halguru.store.base import Store

HUMAN_REPLY = "human_reply"
"""The job kind that sends an operator's message on the conversation's channel."""


class TakeoverError(HalguruError):
    """A take-over action that does not fit the conversation's state: ``status`` 404 (no such conversation)
    or 409 (held by another operator, or not taken over)."""

    def __init__(self, message: str, status: int = 409):
        super().__init__(message)
        self.status = status


def take_over(store: Store, conversation_id: str, by: str) -> None:
    """Give the conversation to operator ``by`` (taking it again is fine; another operator's is refused)."""
    holder = store.take_over(conversation_id, by)
    if holder == "":
        raise TakeoverError(f"no conversation {conversation_id!r}", 404)
    if holder != by:
        raise TakeoverError(f"conversation {conversation_id} is taken over by {holder}; they hand it back first")


def hand_back(store: Store, conversation_id: str) -> str:
    """The agent answers again; who had it. Refused when nobody had taken it over."""
    row = store.get_conversation(conversation_id)
    if row is None:
        raise TakeoverError(f"no conversation {conversation_id!r}", 404)
    if not row.get("taken_over_by"):
        raise TakeoverError(f"conversation {conversation_id} is not taken over")
    store.take_over(conversation_id, None)
    return str(row["taken_over_by"])


def hold(store: Store, conversation_id: str, text: str) -> bool:
    """Store a user's message without running the agent if an operator holds the conversation; False (nothing
    stored) when the agent should answer it."""
    return store.append_message(conversation_id, "user", text, if_taken_over=True) is not None


def reply(store: Store, conversation_id: str, by: str, text: str) -> dict[str, Any]:
    """The operator's message, stored as the assistant's (author ``by``) and, in a channel's conversation,
    queued to be sent there. Only in a conversation taken over (by anyone: a colleague may answer too)."""
    row = store.get_conversation(conversation_id)
    if row is None:
        raise TakeoverError(f"no conversation {conversation_id!r}", 404)
    if not row.get("taken_over_by"):
        raise TakeoverError(f"take conversation {conversation_id} over before answering in it")
    seq = store.append_message(conversation_id, "assistant", text, author=by)
    if seq is None:
        raise TakeoverError(f"no conversation {conversation_id!r}", 404)
    job_id = send_on_channel(store, conversation_id, text, f"human:{conversation_id}:{seq}", seq=seq)
    return {"conversation_id": conversation_id, "seq": seq, "job_id": job_id}


async def answer_on_channel(stream: AsyncIterator[Event], store: Store | None = None) -> AsyncIterator[Event]:
    """``stream`` (a paused run's continuation, once someone approved or rejected its call) with its answer
    queued for its conversation's channel: the reply job that paused had nothing to send, and the answer was
    stored and never reached the person who wrote. Queued before the end is passed on (a client that stops
    reading there does not lose it), once per run. ``store``: the default store when None."""
    import asyncio

    conversation = None
    try:
        async for event in stream:
            if isinstance(event, RunStarted):
                conversation = event.conversation_id
            elif (isinstance(event, RunFinished) and event.status == "ok" and event.output.strip()
                  and conversation is not None):
                await asyncio.to_thread(_answer, store, conversation, event.output, event.run_id)
            yield event
    finally:  # a reader that stops early stops the run, as it would without this wrapper
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()


def decided(run_id: str, edit_args: dict[str, Any] | None = None, *, reject: str | None = None,
            store: Store | None = None, **options: Any) -> AsyncIterator[Event]:
    """Approve (``reject`` None) or reject a paused run's call and stream its continuation
    (``approvals.resume_events``, ``options`` passed on), its answer queued for the conversation's channel: the
    one way the CLI, the debugger and the server decide, so that none leaves the person who texted unanswered
    (an approval in `halguru dev` was answered in the debugger only)."""
    from halguru.orchestration.approvals import resume_events

    return answer_on_channel(resume_events(run_id, edit_args, reject=reject, store=store, **options), store)


def _answer(store: Store | None, conversation_id: str, text: str, run_id: str) -> None:
    if store is None:
        from halguru.store import open_store

        store = open_store()
    # not behind the thread's queue: a message that came while the call waited is queued before this answer and
    # waits (postponed) until the answer is in the conversation; behind it, this answer went out after its own
    send_on_channel(store, conversation_id, text, f"answer:{run_id}", ordered=False)


def send_on_channel(store: Store, conversation_id: str, text: str, key: str, seq: int | None = None,
                    ordered: bool = True) -> str | None:
    """Queue a ``human_reply`` job sending ``text`` when a channel's message started the conversation, once per
    ``key`` (``ordered``: after the jobs queued in its thread); its id (None: no channel, or no message of it
    whose job still says where to answer)."""
    inbound = [m for m in store.list_channel_messages(conversation_id) if m["direction"] == "in" and m["job_id"]]
    # the newest message whose job kept its payload: a pruned job is a stub without one (its key only)
    jobs = (store.get_job(m["job_id"] or "") for m in reversed(inbound))
    job = next((j for j in jobs if j is not None and "channel" in j["payload"]), None)
    if job is None:
        return None
    p = job["payload"]
    payload = {"channel": p["channel"], "thread": p["thread"], "sender": p["sender"], "reply": p.get("reply") or {},
               "text": text, "conversation_id": conversation_id, "seq": seq,
               **({"ours": p["ours"]} if p.get("ours") else {})}
    queued, _ = store.enqueue_job(HUMAN_REPLY, job["agent"], payload,
                                  queue_key=queue_key(p["channel"], job["agent"], p["thread"]) if ordered else None,
                                  idempotency_key=key, owner=channel_owner(p["channel"]),
                                  max_attempts=REPLY_ATTEMPTS)
    return queued["id"]
