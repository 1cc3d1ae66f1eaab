"""Stored Responses API responses: messages of the ``openai-responses`` channel, their owner's only.

A response continuing one of the same conversation keeps only what it added (the new input and its answer) and
the id of the one it continues; a chain's transcript is rebuilt by walking back to a response that keeps its
whole transcript (one that started its conversation, or one that parted from it, since a deleted conversation
takes its responses with it). Storing the whole transcript in every response grew a chain of N responses with
N squared. A deleted response stays as a link of the chains through it, hidden: it can no longer be retrieved
or continued.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

from halguru.errors import StoreError
from halguru.store.records import ChannelMessageRecord
from halguru_server.errors import ApiError
from halguru_server.openai_response_items import dumps
from halguru_server.openai_schemas import ChatRequest
from halguru_server.openai_threads import RESPONSES_CHANNEL as CHANNEL
from halguru_server.state import Principal, ServerState

_ID = re.compile(r"resp_[0-9a-f]{32}")
DELETED = "deleted"  # the status of a deleted response kept as a link of the chains through it
log = logging.getLogger("halguru.server")


def load(state: ServerState, caller: Principal, response_id: str, param: str | None = None) -> dict[str, Any]:
    """A stored response with its messages, the caller's own (and of an agent its key may use); else 404
    whether or not it exists (as for one whose conversation or itself was deleted)."""
    record = state.store.get_channel_message(CHANNEL, response_id) if _ID.fullmatch(response_id) else None
    stored = json.loads(record["body"]) if record is not None else None
    served = state.agents.get(record["agent"]) if record is not None else None
    # as its runs: its owner's, through a key that may use its agent (one no longer served: the owner's still)
    if (record is None or stored is None or record["status"] == DELETED or not caller.owns(record["address"] or None)
            or (served is not None and not caller.allows(served))
            or state.store.get_conversation(stored["conversation"]) is None):
        raise ApiError(404, f"no response {response_id!r}" + (" to continue" if param else ""),
                       "previous_response_not_found" if param else "not_found", param=param)
    return dict(stored)


def history(state: ServerState, stored: dict[str, Any]) -> list[dict[str, Any]]:
    """The chat messages of a stored response's chain, oldest first (off the event loop). The walk stops past
    ``max_messages`` messages: a longer chain is refused (413) whole, not read whole."""
    parts: list[list[dict[str, Any]]] = []
    count = 0
    while "transcript" not in stored:  # a link: what it added, after the response it continues
        parts.append(stored["messages"])
        count += len(stored["messages"])
        record = state.store.get_channel_message(CHANNEL, stored["previous"])
        if count > state.settings.max_messages or record is None:  # None: gone with its conversation, as this one
            break
        stored = json.loads(record["body"])
    else:
        parts.append(stored["transcript"])
    return [message for part in reversed(parts) for message in part]


@dataclass
class Chain:
    """Where a request stands in a chain of responses: the one it continues (its id and conversation), and how
    many of the request's chat messages lead it (its instructions) and came from the chain."""

    previous: str | None = None
    conversation: str | None = None
    lead: int = 0
    earlier: int = 0

    def kept(self, chat: ChatRequest, conversation: str, answer: dict[str, Any]) -> dict[str, Any]:
        """What a response stores of its messages: only the new ones when it goes on in the conversation of the
        one it continues; else the whole transcript past its instructions (as OpenAI, not carried over)."""
        if self.previous is not None and self.conversation == conversation:
            new = chat.messages[self.lead + self.earlier:]
            return {"messages": [*(m.model_dump(exclude_none=True) for m in new), answer], "previous": self.previous}
        return {"transcript": [*(m.model_dump(exclude_none=True) for m in chat.messages[self.lead:]), answer]}


def save(state: ServerState, caller: Principal, agent: str, conversation: str, response: dict[str, Any],
         kept: dict[str, Any]) -> None:
    """Store an answered response for GET and for ``previous_response_id`` (off the event loop)."""
    now = time.time()
    body = dumps({"response": response, **kept, "conversation": conversation})
    record = ChannelMessageRecord(id=response["id"], channel=CHANNEL, agent=agent, conversation_id=conversation,
                                  direction="out", address=caller.owner or "", body=body, status=response["status"],
                                  job_id=None, created=now, updated=now)
    try:
        state.store.record_channel_message(record)
    except StoreError as exc:  # the answer stands; continuing it 404s
        log.warning("could not store response %s: %s", response["id"], exc)


def delete(state: ServerState, response_id: str) -> None:
    """Hide a response from GET and ``previous_response_id``: a response continuing it still reads its messages."""
    state.store.update_channel_message(CHANNEL, response_id, DELETED)
