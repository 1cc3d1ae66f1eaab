"""What real OpenAI clients send that an agent cannot do is refused with the reason, naming what to send instead."""

from __future__ import annotations

import json

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


def test_a_value_of_a_unions_shape_is_told_what_is_wrong_inside_it(openai_client) -> None:
    """A tool_choice in the Responses API's shape (``{"type": "function", "name": ...}``, which clients written for
    both send) was told "Input should be 'none', 'auto' or 'required'", and content sent as a list of strings
    "messages.0.content.str: Input should be a valid string": the union's first member, and its name as the
    field. The member whose shape the value has says what is wrong in it."""
    tools = [{"type": "function", "function": {"name": "f"}}]
    for extra, param, said in (
            ({"tools": tools, "tool_choice": {"type": "function", "name": "f"}}, "tool_choice.function",
             "tool_choice.function: Field required"),
            ({"messages": [{"role": "user", "content": ["hi"]}]}, "messages.0.content.0",
             "messages.0.content.0: Input should be a valid dictionary"),
            ({"tool_choice": "any"}, "tool_choice", "tool_choice: it is none of none, auto, required, "
             '{"type": "function", "function": {"name"}} or {"type": "allowed_tools", "allowed_tools": {"mode", '
             '"tools"}}'),
            ({"messages": [{"role": "user", "content": 5}]}, "messages.0.content",
             "messages.0.content: Input should be a valid string")):
        request = {"model": "echo", "messages": [{"role": "user", "content": "hi"}], **extra}
        with pytest.raises(openai.BadRequestError) as refused:
            openai_client.chat.completions.create(**request)
        assert (refused.value.body["param"], refused.value.body["message"]) == (param, said), refused.value.body


def test_a_content_part_this_endpoint_cannot_read_is_named_with_its_place(openai_client) -> None:
    """An image, audio or file part was "content part type 'image_url' is not supported; send text" with the
    message's content as the param: which part of a long list, and that no image is read, went unsaid."""
    text = {"type": "text", "text": "what is this?"}
    for part, param, said in (({"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}},
                               "messages.1.content.1.type", "text parts only (no images, audio or files)"),
                              ({"type": "input_audio", "input_audio": {"data": "AA==", "format": "wav"}},
                               "messages.1.content.1.type", "'input_audio' is not supported"),
                              ({"type": "text", "text": {"value": "x"}}, "messages.1.content.1.text",
                               "must be a string")):
        messages = [{"role": "system", "content": "s"}, {"role": "user", "content": [text, part]}]
        with pytest.raises(openai.BadRequestError) as refused:
            openai_client.chat.completions.create(model="echo", messages=messages)
        body = refused.value.body
        assert body["param"] == param and said in body["message"], body
        assert body["message"].startswith(param), body
    assert openai_client.server.state.store.list_runs() == []


def test_a_mistyped_field_is_openais_400_not_a_422(openai_client) -> None:
    """OpenAI answers a field of the wrong type or out of range with a 400 ``invalid_request_error``; these routes
    answered 422, which the SDK raises as UnprocessableEntityError: code catching BadRequestError missed it. The
    document says 400 too; halguru's own routes keep their 422."""
    import httpx

    hi = [{"role": "user", "content": "hi"}]
    for call in (lambda: openai_client.chat.completions.create(model="echo", messages=hi, temperature="hot"),
                 lambda: openai_client.chat.completions.create(model="echo", messages=[{"role": "robot"}]),
                 lambda: openai_client.responses.create(model="echo", input="hi", max_output_tokens="10"),
                 lambda: openai_client.embeddings.create(model="echo", input=[[1, 2]]),
                 lambda: openai_client.models.retrieve("m" * 300)):
        with pytest.raises(openai.BadRequestError) as refused:
            call()
        assert refused.value.status_code == 400 and refused.value.type == "invalid_request_error", refused.value.body
        assert refused.value.param, refused.value.body
    with httpx.Client(base_url=openai_client.server.url, headers={"Authorization": f"Bearer {openai_client.api_key}"},
                      timeout=30) as http:
        paths = http.get("/openapi.json").json()["paths"]
        assert http.post("/v1/conversations", json={"agent": 5}).status_code == 422
    completions = paths["/v1/chat/completions"]["post"]["responses"]
    assert "422" not in completions and completions["400"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/OpenAIErrorBody")
    assert "422" not in paths["/v1/models/{model}"]["get"]["responses"]
    assert "422" in paths["/v1/conversations"]["post"]["responses"]
    assert openai_client.server.state.store.list_runs() == []


def _prompt(client, run_id: str) -> list[tuple[str, str]]:
    """What the run's first model call read: each message's role and text (a tool call as ``call NAME ARGS``)."""
    messages = next(e for e in client.server.state.store.get_events(run_id) if e["type"] == "model_call")["messages"]
    return [(m["role"], m.get("content") or " ".join(f"call {c['name']} {json.dumps(c['arguments'])}"
                                                 for c in m.get("tool_calls") or [])) for m in messages]


def test_who_speaks_reaches_the_model_and_the_chat_goes_on(openai_client) -> None:
    """A message's ``name`` (several people in one chat; the few-shot ``system`` messages named example_user and
    example_assistant of OpenAI's guide) was dropped: the model could not tell who said what."""
    store = openai_client.server.state.store
    messages = [{"role": "system", "name": "example_user", "content": "What's 2+2?"},
                {"role": "user", "name": "alice", "content": "hi"}]
    first = openai_client.chat.completions.create(model="echo", messages=messages)
    [run] = store.list_runs(agent="echo")
    assert _prompt(openai_client, run["id"])[-2:] == [("system", "example_user: What's 2+2?"), ("user", "alice: hi")]
    more = [*messages, {"role": "assistant", "content": first.choices[0].message.content},
            {"role": "user", "name": "bob", "content": "and me"}]
    openai_client.chat.completions.create(model="echo", messages=more)
    assert len(store.list_conversations()) == 1  # the same chat goes on
    assert _prompt(openai_client, store.list_runs(agent="echo")[0]["id"])[-1] == ("user", "bob: and me")
    with pytest.raises(openai.BadRequestError) as refused:  # as OpenAI: no spaces nor <|\/> in a name
        openai_client.chat.completions.create(model="echo", messages=[{"role": "user", "name": "a b", "content": "x"}])
    assert refused.value.param == "messages.0.name"


def test_a_named_message_as_long_as_the_limit_is_taken(serve, api_key) -> None:
    """The input limit counts what the user wrote: a message of ``max_input_chars`` with a ``name`` was refused
    for the name put before it ("messages.0.content: 1007 characters; the limit is 1000")."""
    server = serve(max_input_chars=1000)
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=api_key(), max_retries=0)
    client.server = server  # type: ignore[attr-defined]
    said = [{"role": "user", "name": "alice", "content": "x" * 1000}]
    assert client.chat.completions.create(model="echo", messages=said).choices[0].finish_reason == "stop"
    [run] = server.state.store.list_runs(agent="echo")
    assert _prompt(client, run["id"])[-1] == ("user", "alice: " + "x" * 1000)
    with pytest.raises(openai.APIStatusError) as refused:
        client.chat.completions.create(model="echo", messages=[{**said[0], "content": "x" * 1001}])
    assert refused.value.status_code == 413 and "1001 characters" in refused.value.message


def test_a_legacy_function_call_in_the_history_reaches_the_model(openai_client) -> None:
    """A history from before tools (an assistant's ``function_call`` and the ``role: function`` result, as older
    apps stored their chats) was a 422 "role" for the function message, or its call silently left out."""
    messages = [{"role": "user", "content": "weather in Paris?"},
                {"role": "assistant", "content": None,
                 "function_call": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
                {"role": "function", "name": "get_weather", "content": "sunny"},
                {"role": "assistant", "content": "It is sunny."},
                {"role": "user", "content": "thanks"}]
    answer = openai_client.chat.completions.create(model="echo", messages=messages)
    assert answer.choices[0].message.content
    [run] = openai_client.server.state.store.list_runs(agent="echo")
    assert _prompt(openai_client, run["id"])[-5:] == [
        ("user", "weather in Paris?"), ("assistant", 'call get_weather {"city": "Paris"}'), ("tool", "sunny"),
        ("assistant", "It is sunny."), ("user", "thanks")]
    for bad, param in (({"role": "function", "name": "other", "content": "x"}, "messages.2.name"),
                       ({"role": "function", "name": "get_weather", "content": "x"}, "messages.3.name")):
        wrong = [*messages[:2], bad] if param == "messages.2.name" else [*messages[:3], bad]
        with pytest.raises(openai.BadRequestError) as refused:
            openai_client.chat.completions.create(model="echo", messages=[*wrong, {"role": "user", "content": "x"}])
        assert refused.value.param == param, refused.value.body
