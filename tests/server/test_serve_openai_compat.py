"""What real OpenAI clients send that an agent cannot do is refused with the reason, naming what to send instead."""

from __future__ import annotations

import openai
import pytest


def test_an_answer_to_continue_or_a_system_message_last_is_a_400_saying_why(openai_client) -> None:
    """A prefill (the assistant's message last, for the answer to continue it, as Anthropic-style clients and
    SillyTavern send) or a system message after the user's (a "post-history instruction") was refused with only
    "the last message must be from the user": the client was not told what about its request was at fault."""
    hi = {"role": "user", "content": "hi"}
    aside = "a system (or developer) message after the user's"
    call = {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}
    for last, said in (({"role": "assistant", "content": "Sure, here"}, "does not continue a prefilled answer"),
                       ({"role": "assistant", "content": None, "tool_calls": [call]},
                        "send its tool calls' results (role: tool, tool_call_id c1)"),
                       ({"role": "system", "content": "be brief"}, aside),
                       ({"role": "developer", "content": "be brief"}, aside)):
        with pytest.raises(openai.BadRequestError) as refused:
            openai_client.chat.completions.create(model="echo", messages=[hi, last])
        body = refused.value.body
        assert (body["param"], body["type"]) == ("messages", "invalid_request_error"), body
        assert body["message"].startswith("messages: the last message must be from the user"), body
        assert said in body["message"], body
    assert openai_client.server.state.store.list_runs() == []  # nothing ran, no conversation was started
    assert openai_client.server.state.store.list_conversations() == []
