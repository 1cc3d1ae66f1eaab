"""One stored conversation per OpenAI-style chat, though its client sends the whole chat with every request.

After a completion, its conversation is filed (as a thread of the ``openai`` channel) under a hash of the
messages the client sees: those it sent and the answer. A later request of the same owner to the same agent
whose messages before its last user message start with such a hashed list continues that conversation: only
the messages after it are added. Anything else (another owner, an edited earlier message, a changed system
prompt) starts a new conversation with the history the request carries. A continued conversation is claimed
while its turn runs, so a second request with the same history at the same time gets a conversation of its
own (the two chats have parted), and a run that fails leaves its conversation to no later request
(its retry starts a new one).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass

from halguru.errors import StoreError
from halguru.models.base import Message, ToolCallRequest
from halguru_server import service
from halguru_server.state import Principal, ServerState

CHANNEL = "openai"
# Where openai_responses keeps stored responses (channel messages of their conversation, which no listing of
# a conversation's deliveries shows: they are not messages a person was sent)
RESPONSES_CHANNEL = "openai-responses"
log = logging.getLogger("halguru.server")


def _step(key: bytes, role: str, text: str, message: Message | None = None) -> bytes:
    # Outer whitespace does not count: some clients trim the answer they send back. A tool call or result
    # counts with its id (and a call with its arguments); a message without them hashes as it always did.
    parts: list[object] = [role, text.strip()]
    if message is not None and (message.tool_calls or message.tool_call_id):
        parts += [message.tool_call_id, [c.model_dump() for c in message.tool_calls]]
    return hashlib.sha256(key + json.dumps(parts, ensure_ascii=False).encode()).digest()


def transcript_keys(owner: str | None, agent: str, messages: list[Message]) -> list[bytes]:
    """The key of each leading part of ``messages``: ``keys[i]`` is that of messages[:i + 1] for this owner and
    agent (a hash chain: one hash per message)."""
    key = hashlib.sha256(json.dumps([owner or "", agent]).encode()).digest()
    keys = []
    for message in messages:
        key = _step(key, message.role, message.content, message)
        keys.append(key)
    return keys


@dataclass
class Thread:
    """Where a completion's run goes: a conversation continued (``claimed``) or new, and the keys of its
    messages, to file it under once answered (``remember``) or to give back if its run never starts."""

    conversation: str
    claimed: bool
    keys: list[bytes]
    agent: str
    new: int = 1  # how many of the request's last messages the run brings (a user's, or the client's tool results)

    def answered_key(self, answer: str, calls: list[ToolCallRequest] | None = None) -> str:
        """The thread of the conversation once ``answer`` closes it: what the client's next request starts with.
        ``calls``: the tool calls the answer leaves to the client, as it will send them back."""
        message = Message(role="assistant", content=answer, tool_calls=calls) if calls else None
        return _step(self.keys[-1], "assistant", answer, message).hex()

    def remember(self, state: ServerState, answer: str, calls: list[ToolCallRequest] | None = None) -> None:
        """File the answered conversation so that the client's next request continues it."""
        try:
            state.store.set_thread(CHANNEL, self.agent, self.conversation, self.answered_key(answer, calls))
        except StoreError as exc:  # the answer stands; the chat's next request starts a new conversation
            log.warning("could not file conversation %s for its next completion: %s", self.conversation, exc)

    def never_ran(self, state: ServerState) -> None:
        """The run never started (its client left while it was queued): a new conversation is deleted, as if
        never asked for; a continued one is filed again under what it holds now."""
        if not self.claimed:
            state.store.delete_conversation(self.conversation)
        elif len(self.keys) > self.new:
            state.store.set_thread(CHANNEL, self.agent, self.conversation, self.keys[-1 - self.new].hex())


def open_thread(state: ServerState, caller: Principal, agent: str, messages: list[Message], new: int = 1) -> Thread:
    """The conversation the request's run goes to (store writes: call it off the event loop). ``messages`` are
    the request's, the last ``new`` ones the run's own: the user's new message, or the client's tool results."""
    keys = transcript_keys(caller.owner, agent, messages)
    # An earlier completion's messages end with its answer: the longest such start of this request's history;
    # or they are all but the new ones (filed so by ``never_ran``, whatever its role: an aside, a tool result).
    # Only a known owner's (or --dev's) conversations are continued: never another's, nor a visitor's.
    last = len(messages) - 1 - new  # the history's last message
    ends = [i for i in range(last, -1, -1) if messages[i].role == "assistant" or i == last]
    claimed = state.store.claim_thread(CHANNEL, agent, [keys[i].hex() for i in ends], caller.owner) \
        if ends and (caller.owner is not None or caller.dev) else None
    if claimed is not None:
        thread, conversation = claimed
        at = next(i for i in ends if keys[i].hex() == thread)
        for message in messages[at + 1:last + 1]:  # what the client added since, before the run's own
            state.store.append_message(conversation, message.role, message.content, tools=message)
        return Thread(conversation, True, keys, agent, new)
    conversation = service.new_conversation(state, caller, agent, _title(messages), messages[:last + 1])["id"]
    state.store.set_thread(CHANNEL, agent, conversation, None)  # listed under the channel from the start
    return Thread(conversation, False, keys, agent, new)


def _title(messages: list[Message]) -> str:
    """A new conversation's title: its last user message's start, on one line as a title a client sends is
    (``service.clean_title``): each run of spaces and line breaks one space."""
    text = next((m.content for m in reversed(messages) if m.role == "user"), messages[-1].content)
    return " ".join(text[:400].split())[:80].rstrip()
