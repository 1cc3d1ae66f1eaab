"""Take-over: an operator answers in a live conversation as a human, and the agent waits until handed back.

While a conversation is taken over (``taken_over_by`` in the store), a user's new message is stored and the
agent is not run (``hold``: the REST API and web chat answer that a human has the conversation; a channel's
reply job stores it and sends nothing). The operator's answers are stored as assistant messages whose
``author`` is the operator, so the user reads them in the conversation, and the model reads them as the
assistant's own turns once it is handed back. A conversation a channel started gets the operator's answer
on that channel too: a ``human_reply`` job sends it through the same once-only path as the agent's replies.
"""

from __future__ import annotations

from typing import Any

from halguru.channels.replies import HUMAN_REPLY, send_on_channel
from halguru.errors import HalguruError
from halguru.store.base import Store

__all__ = ["HUMAN_REPLY", "TakeoverError", "hand_back", "hold", "reply", "send_on_channel", "take_over"]


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
