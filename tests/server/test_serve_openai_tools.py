"""A history holding an assistant's tool calls and their results (a client's own tool loop, or a chat carried
over from another model) reaches the agent's model as the agent's own tool calls and results: they were dropped,
so the next answer could not use them."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
import yaml


@pytest.fixture
def oai(openai_client):
    return openai_client


def _model_input(oai, run_id: str) -> list[dict]:
    [call] = [e for e in oai.server.state.store.get_events(run_id) if e["type"] == "model_call"]
    return call["messages"]


def _tool_loop(question: str) -> list[dict]:
    """The messages a client adds after running a tool the model asked for."""
    return [{"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "weather", "arguments": json.dumps({"city": "Oslo"})}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "-3 C and snowing"},
            {"role": "user", "content": question}]


def test_tool_calls_and_results_in_the_history_reach_the_model(oai) -> None:
    store = oai.server.state.store
    chat = [{"role": "user", "content": "hello"}]
    first = oai.chat.completions.create(model="echo", messages=chat)
    chat += [{"role": "assistant", "content": first.choices[0].message.content},
             {"role": "user", "content": "weather in Oslo?"}, *_tool_loop("so, a coat?")]
    second = oai.chat.completions.create(model="echo", messages=chat)  # continues the first's conversation
    assert second.choices[0].message.content == "You said: so, a coat?"
    [conversation] = store.list_conversations()
    [run] = [r for r in store.list_runs(conversation_id=conversation["id"]) if r["input"] == "so, a coat?"]
    seen = _model_input(oai, run["id"])
    assert {"role": "assistant", "tool_calls": [
        {"id": "call_1", "name": "weather", "arguments": {"city": "Oslo"}}]} in seen
    assert {"role": "tool", "content": "-3 C and snowing", "tool_call_id": "call_1", "name": "weather"} in seen
    assert [m["role"] for m in seen][-3:] == ["assistant", "tool", "user"]
    # a new chat (no earlier completion) holding a tool loop in its history: the same
    fresh = [{"role": "user", "content": "weather in Oslo?"}, *_tool_loop("and tomorrow?")]
    oai.chat.completions.create(model="echo", messages=fresh, stream=True).close()
    oai.chat.completions.create(model="echo", messages=fresh)
    run = store.list_runs(agent="echo")[0]
    assert {"role": "tool", "content": "-3 C and snowing", "tool_call_id": "call_1", "name": "weather"} \
        in _model_input(oai, run["id"])


def test_a_tool_loop_that_does_not_fit_together_is_a_400_naming_the_message(oai) -> None:
    loop = _tool_loop("so?")
    bad_arguments = [{**loop[0], "tool_calls": [{**loop[0]["tool_calls"][0],
                                                  "function": {"name": "weather", "arguments": "[1, 2"}}]}, *loop[1:]]
    deep_arguments = [{**loop[0], "tool_calls": [{**loop[0]["tool_calls"][0],
                                                   "function": {"name": "weather", "arguments": "[" * 10_000}}]},
                      *loop[1:]]  # a 500 RecursionError
    for messages, param, said in (
            ([{"role": "user", "content": "hi"}, *loop[1:]], "messages.1.tool_call_id",
             "a tool message must answer a tool call of an earlier assistant message"),
            (bad_arguments, "messages.0.tool_calls.0.function.arguments", "must be a JSON object"),
            (deep_arguments, "messages.0.tool_calls.0.function.arguments", "nested too deeply"),
            ([{**loop[0], "tool_calls": [{"id": "x"}]}, *loop[1:]], "messages.0.tool_calls.0", "a tool call is"),
            (loop[:1], "messages", "the last message must be from the user, or the results of the tool calls")):
        with pytest.raises(openai.BadRequestError) as refused:
            oai.chat.completions.create(model="echo", messages=messages)
        assert refused.value.body["param"] == param and said in refused.value.body["message"], refused.value.body
    assert oai.server.state.store.list_runs() == []


def _nested(depth: int) -> dict:
    value: object = 1
    for _ in range(depth):
        value = {"a": value}
    assert isinstance(value, dict)
    return value


def test_tool_call_arguments_too_deep_to_read_back_are_a_400_and_store_nothing(oai) -> None:
    """Arguments nested a few hundred deep parse (Python's parser goes to ~1,000) and were stored: then reading
    the conversation's messages (GET .../messages, the console) was a 500 (pydantic writes ~250 levels at most)."""
    loop = _tool_loop("so?")

    def chat(depth: int) -> list[dict]:
        call = {**loop[0]["tool_calls"][0], "function": {"name": "weather", "arguments": json.dumps(_nested(depth))}}
        return [{**loop[0], "tool_calls": [call]}, *loop[1:]]

    for stream in (False, True):
        with pytest.raises(openai.BadRequestError) as refused:
            oai.chat.completions.create(model="echo", messages=chat(300), stream=stream)
        assert refused.value.body["param"] == "messages.0.tool_calls.0.function.arguments"
        assert refused.value.body["message"] == ("a tool call's arguments nest 300 deep; at most 100 (objects and "
                                                 "lists in one another)")
    store = oai.server.state.store
    assert store.list_runs() == [] and store.list_conversations() == []
    oai.chat.completions.create(model="echo", messages=chat(100))  # as deep as a schema here may go: kept
    [conversation] = store.list_conversations()
    with httpx.Client(base_url=oai.server.url, headers={"Authorization": f"Bearer {oai.api_key}"}) as http:
        messages = http.get(f"/v1/conversations/{conversation['id']}/messages")
    assert messages.status_code == 200, messages.text
    assert messages.json()["data"][0]["tool_calls"][0]["arguments"] == _nested(100)


@pytest.mark.parametrize("stream", [False, True])
def test_a_run_paused_for_approval_is_a_409_saying_how_to_go_on(serve, api_key, tmp_path, stream: bool) -> None:
    """A tool of the agent that waits for a human's approval: the completion was a 502 "run ended paused", which
    the SDKs retry (three runs, each pausing on the same call). Now a 409 run_paused, not retried, naming the
    call and halguru's own routes that decide it; approving it there answers with the rest of the run."""
    import httpx

    from tests.server.test_runs_api import MAILER_TOOLS, send, write_project

    script = tmp_path / "mailer.yaml"
    script.write_text(yaml.safe_dump([send("ann@example.com")]))
    write_project(tmp_path / "agents" / "mailer", {"name": "mailer", "model": f"scripted:{script}",
                                                   "tools": ["send_email"], "approvals": ["send_email"]},
                  MAILER_TOOLS)
    server = serve()
    key = api_key()
    default = openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, timeout=60)  # the SDK's own retries
    ask = {"model": "mailer", "messages": [{"role": "user", "content": "mail ann"}]}
    with pytest.raises(openai.APIError) as paused:
        if stream:
            list(default.chat.completions.create(**ask, stream=True))
        else:
            default.chat.completions.create(**ask)
    [run] = server.state.store.list_runs(agent="mailer")
    assert run["status"] == "paused"
    error = paused.value.body if not stream else {"code": paused.value.code, "message": paused.value.message}
    assert error["code"] == "run_paused", error
    assert error["message"] == (
        f"the agent's run {run['id']} paused: its call of send_email waits for a human's approval, so there is no "
        f"answer yet; approve it with POST /v1/runs/{run['id']}/approve or refuse it with POST "
        f"/v1/runs/{run['id']}/reject, which answer with the rest of the run")
    if not stream:
        assert isinstance(paused.value, openai.ConflictError)
        assert paused.value.response.headers["x-should-retry"] == "false"
    script.write_text(yaml.safe_dump(["Sent."]))
    approved = httpx.post(f"{server.url}/v1/runs/{run['id']}/approve", headers={"Authorization": f"Bearer {key}"},
                          timeout=30)
    assert approved.status_code == 200 and approved.json()["output"] == "Sent.", approved.text
    assert server.state.metrics.server_errors() == 0
