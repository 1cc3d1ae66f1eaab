"""Client-side tools on the OpenAI endpoint: a request's ``tools`` are functions the client runs. The model calls
one, the answer carries ``tool_calls`` (finish_reason "tool_calls"), the client runs it and sends the history back
with its ``role: tool`` result, and the agent goes on. They were a 400 ("client-side tools are not supported"),
which the openai SDK's tool loops, LangChain and agent frameworks cannot work around."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import openai
import pytest
import yaml

CLOCK = '''\
from halguru import tool


@tool
def clock() -> str:
    """The time of day."""
    return "12:30"
'''

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
FORECAST = {"type": "function", "function": {"name": "get_forecast", "description": "Tomorrow's weather.",
                                             "parameters": {"type": "object", "properties": {}}}}
ASK = [{"role": "user", "content": "Weather in Oslo, and the time?"}]


@pytest.fixture
def agents_dir(agents_dir: Path, tmp_path: Path) -> Path:
    """`helper`: the scripted model (helper.yaml, rewritten per test step) with a tool of its own, `clock`;
    `flow`: a workflow; `mcpish`: an MCP server's get_weather."""
    (agents_dir / "helper").mkdir()
    (agents_dir / "helper" / "agent.yaml").write_text(yaml.safe_dump(
        {"name": "helper", "model": f"scripted:{tmp_path / 'helper.yaml'}", "tools": ["clock"]}))
    (agents_dir / "helper" / "tools.py").write_text(CLOCK)
    (agents_dir / "gated").mkdir()  # helper, its clock waiting for a human's approval
    (agents_dir / "gated" / "agent.yaml").write_text(yaml.safe_dump(
        {"name": "gated", "model": f"scripted:{tmp_path / 'helper.yaml'}", "tools": ["clock"],
         "approvals": ["clock"]}))
    (agents_dir / "gated" / "tools.py").write_text(CLOCK)
    (tmp_path / "helper.yaml").write_text("[]")
    from tests.server.test_runs_api import FLOW, FLOW_TOOLS, write_project

    write_project(agents_dir / "flow", FLOW, FLOW_TOOLS)  # a workflow: its steps run their own tools
    (agents_dir / "mcpish").mkdir()  # an MCP server's tools, allow-listed: known before it starts
    (agents_dir / "mcpish" / "agent.yaml").write_text(yaml.safe_dump({"name": "mcpish", "model": "scripted", "mcp": [
        {"name": "files", "command": ["python", "server.py"], "tools": ["get_weather"]}]}))
    return agents_dir


@pytest.fixture
def oai(openai_client, tmp_path: Path):
    def script(*replies: object) -> None:  # what the scripted model says next (each run starts at its top)
        (tmp_path / "helper.yaml").write_text(yaml.safe_dump(list(replies)))

    openai_client.script = script
    return openai_client


def _calls(*calls: tuple[str, dict]) -> dict:
    return {"tool_calls": [{"id": f"c{i}", "name": name, "arguments": args} for i, (name, args) in enumerate(calls)]}


def _model_calls(oai, run_id: str) -> list[dict]:
    return [e for e in oai.server.state.store.get_events(run_id) if e["type"] == "model_call"]


def _stream(oai, **ask) -> tuple[str, list[dict], str | None]:
    """A streamed answer put together as the SDK's users do: its content, tool calls (by index) and finish."""
    content, calls, finish = "", {}, None
    for chunk in oai.chat.completions.create(model="helper", stream=True, **ask):
        delta = chunk.choices[0].delta
        content += delta.content or ""
        for piece in delta.tool_calls or []:
            call = calls.setdefault(piece.index, {"id": "", "name": "", "arguments": ""})
            call["id"] += piece.id or ""
            call["name"] += piece.function.name or ""
            call["arguments"] += piece.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    return content, [calls[i] for i in sorted(calls)], finish


def test_a_client_tool_call_ends_the_answer_and_its_result_continues_the_run(oai, cli) -> None:
    oai.script(_calls(("clock", {}), ("get_weather", {"city": "Oslo"})))
    first = oai.chat.completions.create(model="helper", messages=ASK, tools=[WEATHER])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    [call] = choice.message.tool_calls  # the agent's own clock ran here; the client sees only its function
    assert (call.id, call.type, call.function.name, json.loads(call.function.arguments)) == \
        ("c1", "function", "get_weather", {"city": "Oslo"})
    store = oai.server.state.store
    [run] = store.list_runs(agent="helper")
    assert run["status"] == "ok"
    events = store.get_events(run["id"])
    assert [(e["name"], e.get("client", False)) for e in events if e["type"] == "tool_call"] == \
        [("clock", False), ("get_weather", True)]
    assert [e["content"] for e in events if e["type"] == "tool_result"] == ["12:30"]

    oai.script("It is -3 C in Oslo at 12:30.")
    chat = [*ASK, choice.message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "-3 C and snowing"}]
    second = oai.chat.completions.create(model="helper", messages=chat, tools=[WEATHER])
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content == "It is -3 C in Oslo at 12:30."
    assert second.choices[0].message.tool_calls is None
    [conversation] = store.list_conversations()  # the first answer's conversation, continued
    latest = store.list_runs(agent="helper")[0]
    assert latest["conversation_id"] == conversation["id"] and latest["status"] == "ok"
    [model_call] = _model_calls(oai, latest["id"])  # what the model read: both calls, each with its result
    assert [m["role"] for m in model_call["messages"]][-3:] == ["assistant", "tool", "tool"]
    assert model_call["messages"][-1] == {"role": "tool", "content": "-3 C and snowing", "tool_call_id": "c1",
                                          "name": "get_weather"}
    assert [c["name"] for c in model_call["messages"][-3]["tool_calls"]] == ["clock", "get_weather"]
    # halguru logs shows the call left to the client, and the result it sent back
    assert "get_weather" in cli("logs", "show", run["id"]).output
    shown = cli("logs", "show", latest["id"]).output
    assert "tool_result" in shown and "-3 C and snowing" in shown


@pytest.mark.parametrize("order, stream", [("client call first", False), ("client call last", True)])
def test_a_reply_calling_a_client_tool_and_one_waiting_for_approval_leaves_the_client_its_call(oai, order,
                                                                                               stream) -> None:
    """The reply called the client's get_weather and the agent's clock, which waits for approval: the run paused
    (409) as it should, and once approved the continuation ran get_weather here: 'error: unknown tool', and the
    model went on without the client's result. Now the approved clock runs, and get_weather is left to the
    client as without the pause: the continuation ends ok with it, its id as the model gave it."""
    calls = [("get_weather", {"city": "Oslo"}), ("clock", {})]
    oai.script(_calls(*(calls if order == "client call first" else calls[::-1])))
    if stream:
        with pytest.raises(openai.APIError) as streamed:
            list(oai.chat.completions.create(model="gated", messages=ASK, tools=[WEATHER], stream=True))
        assert streamed.value.code == "run_paused"
    else:
        with pytest.raises(openai.ConflictError) as paused:
            oai.chat.completions.create(model="gated", messages=ASK, tools=[WEATHER])
        assert paused.value.body["code"] == "run_paused"
    store = oai.server.state.store
    [run] = store.list_runs(agent="gated")
    approved = httpx.post(f"{oai.server.url}/v1/runs/{run['id']}/approve", timeout=60,
                          headers={"Authorization": f"Bearer {oai.api_key}"})
    assert approved.status_code == 200, approved.text
    body = approved.json()
    assert body["status"] == "ok", body
    weather = "c0" if order == "client call first" else "c1"
    assert [(c["id"], c["name"], c["client"]) for c in body["tool_calls"] if c["name"] == "get_weather"] == [
        (weather, "get_weather", True)]
    events = store.get_events(body["run_id"])
    assert [(e["name"], e.get("client", False)) for e in events if e["type"] == "tool_call"] == [
        (name, name == "get_weather") for name, _ in (calls if order == "client call first" else calls[::-1])]
    assert [(e["name"], e["content"]) for e in events if e["type"] == "tool_result"] == [("clock", "12:30")]
    assert not [e for e in events if e["type"] == "model_call"]  # the client's result comes first

    oai.script("It is -3 C in Oslo at 12:30.")  # the client runs its call and sends the result, as without the pause
    [left] = [c for c in body["tool_calls"] if c["client"]]
    chat = [*ASK, {"role": "assistant", "content": body["output"] or None, "tool_calls": [
                {"id": left["id"], "type": "function",
                 "function": {"name": left["name"], "arguments": json.dumps(left["arguments"])}}]},
            {"role": "tool", "tool_call_id": left["id"], "content": "-3 C and snowing"}]
    answer = oai.chat.completions.create(model="gated", messages=chat, tools=[WEATHER])
    assert answer.choices[0].message.content == "It is -3 C in Oslo at 12:30."
    [conversation] = store.list_conversations()  # the paused one, continued
    latest = store.list_runs(agent="gated")[0]
    assert latest["conversation_id"] == conversation["id"]
    [model_call] = _model_calls(oai, latest["id"])  # the model read the approved clock's result and the client's
    assert [m["content"] for m in model_call["messages"] if m["role"] == "tool"] == ["12:30", "-3 C and snowing"]


def test_streamed_tool_calls_come_as_openai_sends_them(oai) -> None:
    oai.script({"text": "Let me look.", **_calls(("get_weather", {"city": "Oslo"}), ("get_forecast", {}))})
    content, calls, finish = _stream(oai, messages=ASK, tools=[WEATHER, FORECAST])
    assert (content, finish) == ("Let me look.", "tool_calls")
    assert [(c["id"], c["name"], json.loads(c["arguments"])) for c in calls] == \
        [("c0", "get_weather", {"city": "Oslo"}), ("c1", "get_forecast", {})]
    with httpx.stream("POST", f"{oai.server.url}/v1/chat/completions", timeout=30,
                      headers={"Authorization": f"Bearer {oai.api_key}"},
                      json={"model": "helper", "messages": ASK, "tools": [WEATHER, FORECAST], "stream": True}) as raw:
        lines = [line for line in raw.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    [last] = [json.loads(line[6:]) for line in lines[-2:-1]]
    assert last["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "tool_calls"}

    oai.script("Snow today and tomorrow.")  # both results go back, streamed as well
    chat = [*ASK, {"role": "assistant", "content": content, "tool_calls": [
        {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
        for c in calls]},
            {"role": "tool", "tool_call_id": "c0", "content": "snow"},
            {"role": "tool", "tool_call_id": "c1", "content": "snow"}]
    assert _stream(oai, messages=chat, tools=[WEATHER, FORECAST]) == ("Snow today and tomorrow.", [], "stop")
    store = oai.server.state.store
    assert len(store.list_conversations()) == 2  # the raw request's chat is one of its own
    [_, continued, _] = store.list_runs(agent="helper")
    assert continued["status"] == "ok"


@pytest.mark.parametrize("choice, offered", [
    ("none", ["clock"]),
    ("auto", ["clock", "get_weather", "get_forecast"]),
    ({"type": "function", "function": {"name": "get_forecast"}}, ["get_forecast"]),
    # OpenAI's newer form: a client keeps its whole list (the model's cache) and narrows what may be called
    ({"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": [
        {"type": "function", "function": {"name": "get_weather"}}]}}, ["clock", "get_weather"]),
    ({"type": "allowed_tools", "allowed_tools": {"mode": "required", "tools": [
        {"type": "function", "function": {"name": "get_forecast"}}]}}, ["clock", "get_forecast"]),
])
def test_tool_choice_decides_what_the_model_is_offered(oai, choice, offered) -> None:
    oai.script("Fine.")
    answer = oai.chat.completions.create(model="helper", messages=ASK, tools=[WEATHER, FORECAST], tool_choice=choice)
    assert answer.choices[0].finish_reason == "stop"
    [run] = oai.server.state.store.list_runs(agent="helper")
    assert _model_calls(oai, run["id"])[0]["tools"] == offered


def test_one_call_per_answer_when_parallel_tool_calls_is_false(oai) -> None:
    oai.script(_calls(("get_weather", {"city": "Oslo"}), ("get_forecast", {})))
    answer = oai.chat.completions.create(model="helper", messages=ASK, tools=[WEATHER, FORECAST],
                                         parallel_tool_calls=False)
    assert [c.function.name for c in answer.choices[0].message.tool_calls] == ["get_weather"]
    oai.script(_calls(("get_weather", {"city": "Oslo"}), ("get_forecast", {})))
    answer = oai.chat.completions.create(model="helper", messages=ASK, tools=[WEATHER, FORECAST])
    assert [c.function.name for c in answer.choices[0].message.tool_calls] == ["get_weather", "get_forecast"]


def test_tools_the_run_cannot_offer_are_a_400_naming_them(oai, agents_dir: Path) -> None:
    clash = {"type": "function", "function": {"name": "clock", "parameters": {"type": "object"}}}
    bad_schema = {"type": "function", "function": {"name": "f", "parameters": {"type": "object",
                                                                               "properties": {"x": {"type": 5}}}}}
    not_object = {"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}
    for extra, param, said in (
            ({"tools": [clash]}, "tools.0.function.name", "'clock' is a tool of agent helper's own"),
            ({"tools": [WEATHER, WEATHER]}, "tools.1.function.name", "'get_weather' is sent twice"),
            ({"tools": [bad_schema]}, "tools.0.function.parameters", "is not valid JSON Schema"),
            ({"tools": [not_object]}, "tools.0.function.parameters", "of type object"),
            ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice",
             "'nope' is none of the request's tools"),
            ({"tool_choice": "required"}, "tool_choice", "it sends none")):
        with pytest.raises(openai.BadRequestError) as refused:
            oai.chat.completions.create(model="helper", messages=ASK, **extra)
        assert refused.value.body["param"] == param and said in refused.value.body["message"], refused.value.body
    with pytest.raises(openai.BadRequestError, match="agent flow is a workflow"):
        oai.chat.completions.create(model="flow", messages=ASK, tools=[WEATHER])
    with pytest.raises(openai.BadRequestError, match="'get_weather' is a tool of agent mcpish's own"):
        oai.chat.completions.create(model="mcpish", messages=ASK, tools=[WEATHER])
    called = {"role": "assistant", "tool_calls": [{"id": "c0", "type": "function", "function": {
        "name": "get_weather", "arguments": "{}"}}]}
    with pytest.raises(openai.BadRequestError, match="agent flow is a workflow, which runs its own tools"):
        oai.chat.completions.create(model="flow", messages=[*ASK, called, {"role": "tool", "tool_call_id": "c0",
                                                                          "content": "snow"}])
    assert oai.server.state.store.list_runs() == []


def test_a_tool_result_answering_no_call_is_still_a_400(oai) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        oai.chat.completions.create(model="helper", messages=[*ASK, {"role": "tool", "tool_call_id": "c9",
                                                                     "content": "snow"}])
    assert refused.value.body["param"] == "messages.1.tool_call_id"


@pytest.mark.llama
def test_the_bundled_models_call_of_a_client_tool_parses_and_round_trips(agents_dir: Path, request) -> None:
    """On llama.cpp the call is written under the function's schema (as the agent's own tools are): it parses."""
    (agents_dir / "small").mkdir()
    (agents_dir / "small" / "agent.yaml").write_text(yaml.safe_dump({"name": "small", "model": "smollm2"}))
    oai = request.getfixturevalue("openai_client")
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = oai.chat.completions.create(model="small", messages=ask, tools=[WEATHER], tool_choice="required",
                                        temperature=0, max_tokens=60)
    assert first.choices[0].finish_reason == "tool_calls"
    [call] = first.choices[0].message.tool_calls
    arguments = json.loads(call.function.arguments)
    assert call.function.name == "get_weather" and isinstance(arguments["city"], str), arguments
    chat = [*ask, first.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21 C"}]
    second = oai.chat.completions.create(model="small", messages=chat, tools=[WEATHER], tool_choice="none",
                                         temperature=0, max_tokens=30)
    assert second.choices[0].finish_reason in ("stop", "length") and second.choices[0].message.content
    store = oai.server.state.store
    [conversation] = store.list_conversations()
    latest = store.list_runs(agent="small")[0]
    assert latest["conversation_id"] == conversation["id"]
    [model_call] = _model_calls(oai, latest["id"])
    assert model_call["messages"][-1]["content"] == "Sunny, 21 C"


@pytest.mark.llama
def test_the_bundled_model_fills_a_pydantic_function_tool_the_sdk_parses(agents_dir: Path, request) -> None:
    """The openai SDK's ``pydantic_function_tool``: arguments with a nested model (``$defs``, ``$ref``) and an
    enum. Its second argument failed the run ("Unsupported ref tool#/$defs/Where"): a 502."""
    from enum import StrEnum

    from pydantic import BaseModel

    class Unit(StrEnum):
        celsius = "celsius"
        fahrenheit = "fahrenheit"

    class Where(BaseModel):
        city: str
        country: str

    class GetWeather(BaseModel):
        where: Where
        unit: Unit
        days: int

    (agents_dir / "small").mkdir()
    (agents_dir / "small" / "agent.yaml").write_text(yaml.safe_dump({"name": "small", "model": "smollm2"}))
    oai = request.getfixturevalue("openai_client")
    for _ in range(2):  # the same tool again: its schema as the first call left it
        answer = oai.chat.completions.parse(
            model="small", messages=[{"role": "user", "content": "Weather in Paris for 3 days, in celsius?"}],
            tools=[openai.pydantic_function_tool(GetWeather)], tool_choice="required", temperature=0, max_tokens=60)
        assert answer.choices[0].finish_reason == "tool_calls"
        assert isinstance(answer.choices[0].message.tool_calls[0].function.parsed_arguments, GetWeather)


def test_allowed_tools_naming_a_tool_not_sent_is_a_400(oai) -> None:
    choice = {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": [
        {"type": "function", "function": {"name": "get_time"}}]}}
    with pytest.raises(openai.BadRequestError) as refused:
        oai.chat.completions.create(model="helper", messages=ASK, tools=[WEATHER], tool_choice=choice)
    assert refused.value.param == "tool_choice.allowed_tools.tools" and "'get_time'" in refused.value.message
    tools = [{"type": "function", **WEATHER["function"]}, {"type": "function", **FORECAST["function"]}]
    oai.script("Fine.")
    answer = oai.responses.create(model="helper", input="Weather?", tools=tools, tool_choice={
        "type": "allowed_tools", "mode": "auto", "tools": [{"type": "function", "name": "get_forecast"}]})
    assert answer.output_text == "Fine."
    [run] = oai.server.state.store.list_runs(agent="helper")
    assert _model_calls(oai, run["id"])[0]["tools"] == ["clock", "get_forecast"]
    with pytest.raises(openai.BadRequestError) as unknown:  # named as the Responses request has it
        oai.responses.create(model="helper", input="Weather?", tools=tools, tool_choice={
            "type": "allowed_tools", "mode": "auto", "tools": [{"type": "function", "name": "get_time"}]})
    assert unknown.value.param == "tool_choice.tools" and unknown.value.body["message"].startswith("tool_choice.tools:")


def test_allowed_tools_with_no_tools_sent_is_a_400(oai) -> None:
    """An allowed_tools choice names tools of the request's: with none sent, it named none (a required mode
    answered in plain text, as if the choice had been honoured), as ``tool_choice: "required"`` is refused."""
    choice = {"type": "allowed_tools", "allowed_tools": {"mode": "required", "tools": [
        {"type": "function", "function": {"name": "get_weather"}}]}}
    with pytest.raises(openai.BadRequestError) as refused:
        oai.chat.completions.create(model="helper", messages=ASK, tool_choice=choice)
    assert refused.value.param == "tool_choice.allowed_tools.tools" and "'get_weather'" in refused.value.message
    with pytest.raises(openai.BadRequestError) as unknown:
        oai.responses.create(model="helper", input="Weather?", tool_choice={
            "type": "allowed_tools", "mode": "auto", "tools": [{"type": "function", "name": "get_weather"}]})
    assert unknown.value.param == "tool_choice.tools"
    assert oai.server.state.store.list_runs(agent="helper") == []


def test_a_wrong_field_of_a_tool_choice_object_is_named(oai) -> None:
    """A mistyped allowed_tools mode, a choice missing its object, a type not known: each refusal names what is
    wrong in the object sent (it said "'none', 'auto' or 'required'", or that its type should be 'function')."""
    def refused(**kwargs) -> openai.BadRequestError:
        with pytest.raises(openai.BadRequestError) as caught:
            if "input" in kwargs:
                oai.responses.create(model="helper", **kwargs)
            else:
                oai.chat.completions.create(model="helper", messages=ASK, tools=[WEATHER], **kwargs)
        return caught.value

    mode = refused(tool_choice={"type": "allowed_tools", "allowed_tools": {"mode": "requred", "tools": [
        {"type": "function", "function": {"name": "get_weather"}}]}})
    assert mode.param == "tool_choice.allowed_tools.mode" and "'auto' or 'required'" in mode.message
    missing = refused(tool_choice={"type": "allowed_tools"})
    assert missing.param == "tool_choice.allowed_tools" and "Field required" in missing.message
    unknown = refused(tool_choice={"type": "custom", "custom": {"name": "get_weather"}})
    assert unknown.param == "tool_choice" and "allowed_tools" in unknown.message
    tools = [{"type": "function", **WEATHER["function"]}]
    responses_mode = refused(input="Weather?", tools=tools, tool_choice={
        "type": "allowed_tools", "mode": "requred", "tools": [{"type": "function", "name": "get_weather"}]})
    assert responses_mode.param == "tool_choice.mode" and "'auto' or 'required'" in responses_mode.message
    unnamed = refused(input="Weather?", tools=tools, tool_choice={
        "type": "allowed_tools", "mode": "auto", "tools": [{"type": "function"}]})  # named as the request has it
    assert unnamed.param == "tool_choice.tools.0.name"
    assert unnamed.body["message"].startswith("tool_choice.tools.0.name:")
    assert oai.server.state.store.list_runs(agent="helper") == []
