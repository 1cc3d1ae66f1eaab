"""OpenAI's Responses API (``POST /v1/responses``), driven by the official openai SDK against a real uvicorn: the
2025-26 clients (``client.responses.create``, agent frameworks) call it instead of chat completions."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
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
WEATHER = {"type": "function", "name": "get_weather", "description": "The weather in a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


@pytest.fixture
def agents_dir(agents_dir: Path, tmp_path: Path) -> Path:
    """``helper``: the scripted model, its script rewritten per test step (``oai.script``)."""
    (agents_dir / "helper").mkdir()
    (agents_dir / "helper" / "agent.yaml").write_text(yaml.safe_dump(
        {"name": "helper", "model": f"scripted:{tmp_path / 'helper.yaml'}"}))
    (tmp_path / "helper.yaml").write_text("[]")
    (agents_dir / "gated").mkdir()  # its clock waits for a human's approval
    (agents_dir / "gated" / "agent.yaml").write_text(yaml.safe_dump(
        {"name": "gated", "model": f"scripted:{tmp_path / 'helper.yaml'}", "tools": ["clock"],
         "approvals": ["clock"]}))
    (agents_dir / "gated" / "tools.py").write_text(CLOCK)
    return agents_dir


@pytest.fixture
def oai(openai_client, tmp_path: Path):
    def script(*replies: object) -> None:
        (tmp_path / "helper.yaml").write_text(yaml.safe_dump(list(replies)))

    openai_client.script = script
    openai_client.store = openai_client.server.state.store
    return openai_client


def _prompt(oai, run_id: str) -> list[dict]:
    """What the run's (first) model call read."""
    return next(e for e in oai.store.get_events(run_id) if e["type"] == "model_call")["messages"]


def _raw(oai, method: str, path: str, key: str | None = None, **kwargs) -> httpx.Response:
    return httpx.request(method, f"{oai.server.url}/v1{path}", timeout=60,
                         headers={"Authorization": f"Bearer {key or oai.api_key}"}, **kwargs)


def test_a_response_whole_and_continued_by_previous_response_id(oai) -> None:
    first = oai.responses.create(model="echo", input="hi there", instructions="Be brief.",
                                 metadata={"ticket": "42"}, user="u1", temperature=0.5, max_output_tokens=100)
    assert first.id.startswith("resp_") and first.object == "response"
    assert (first.status, first.model, first.output_text) == ("completed", "echo", "You said: hi there")
    [item] = first.output
    assert (item.type, item.role, item.status, item.content[0].type) == \
        ("message", "assistant", "completed", "output_text")
    assert first.usage.output_tokens > 0 and first.usage.total_tokens == \
        first.usage.input_tokens + first.usage.output_tokens
    assert (first.metadata, first.instructions, first.temperature) == ({"ticket": "42"}, "Be brief.", 0.5)
    assert oai.responses.retrieve(first.id).model_dump() == first.model_dump()
    [run] = oai.store.list_runs(agent="echo")
    assert [m["role"] for m in _prompt(oai, run["id"])][-2:] == ["system", "user"]  # the instructions, then input

    # the same instructions again (as agent frameworks send them each time): the same conversation
    second = oai.responses.create(model="echo", input="and now?", previous_response_id=first.id,
                                  instructions="Be brief.")
    assert second.output_text == "You said: and now?" and second.previous_response_id == first.id
    [conversation] = oai.store.list_conversations()
    latest = oai.store.list_runs(agent="echo")[0]
    assert latest["conversation_id"] == conversation["id"] == run["conversation_id"]
    assert [(m["role"], m["content"]) for m in _prompt(oai, latest["id"])][-4:] == [
        ("system", "Be brief."), ("user", "hi there"), ("assistant", "You said: hi there"), ("user", "and now?")]
    # no instructions: those of the earlier requests are not carried over, as OpenAI's (the history goes on in a
    # conversation of its own, as a chat whose system prompt changed)
    third = oai.responses.create(model="echo", input="last", previous_response_id=second.id)
    assert third.output_text == "You said: last"
    newest = oai.store.list_runs(agent="echo")[0]
    assert [(m["role"], m["content"]) for m in _prompt(oai, newest["id"]) if m["content"] != "Echo."] == [
        ("user", "hi there"), ("assistant", "You said: hi there"), ("user", "and now?"),
        ("assistant", "You said: and now?"), ("user", "last")]


def test_input_items_and_the_whole_history_sent_back(oai) -> None:
    items = [{"role": "developer", "content": "Answer in English."},
             {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "first"}]}]
    first = oai.responses.create(model="echo", input=items)
    assert first.output_text == "You said: first"
    # the client keeps the history itself (store or not): the same conversation goes on
    again = [*items, *[o.model_dump(exclude_none=True) for o in first.output], {"role": "user", "content": "next"}]
    second = oai.responses.create(model="echo", input=again, store=False)
    assert second.output_text == "You said: next"
    assert len(oai.store.list_conversations()) == 1
    with pytest.raises(openai.NotFoundError):  # store: false keeps no response to retrieve or continue
        oai.responses.retrieve(second.id)


def test_two_continuations_of_one_response_part_ways(oai) -> None:
    """Both get the history; the second goes on in a conversation of its own (OpenAI lets a response be continued
    twice: two branches)."""
    first = oai.responses.create(model="echo", input="start")
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda text: oai.responses.create(model="echo", input=text,
                                                                  previous_response_id=first.id), ["a", "b"]))
    assert [a.output_text for a in answers] == ["You said: a", "You said: b"]
    assert len(oai.store.list_conversations()) == 2
    for run in oai.store.list_runs(agent="echo")[:2]:
        assert [m["content"] for m in _prompt(oai, run["id"]) if m["role"] != "system"][:2] == [
            "start", "You said: start"]
    for answer in answers:  # each branch goes on
        assert oai.responses.create(model="echo", input="more", previous_response_id=answer.id).status == "completed"
    assert len(oai.store.list_conversations()) == 2


def test_a_stream_sends_the_responses_events_in_order(oai) -> None:
    with oai.responses.stream(model="echo", input="one two three") as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    deltas = kinds.count("response.output_text.delta")
    assert deltas >= 1 and kinds == ["response.created", "response.in_progress", "response.output_item.added",
                                     "response.content_part.added", *["response.output_text.delta"] * deltas,
                                     "response.output_text.done", "response.content_part.done",
                                     "response.output_item.done", "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "You said: one two three"
    assert final.status == "completed" and final.output_text == "You said: one two three" and final.usage
    assert oai.responses.retrieve(final.id).output_text == "You said: one two three"
    streamed = list(oai.responses.create(model="echo", input="again", previous_response_id=final.id, stream=True))
    assert streamed[-1].type == "response.completed" and streamed[-1].response.output_text == "You said: again"
    assert len(oai.store.list_conversations()) == 1


@pytest.mark.parametrize("stream", [False, True])
def test_a_function_call_and_its_output_continue_the_run(oai, stream) -> None:
    oai.script({"text": "Let me look.", "tool_calls": [{"id": "c0", "name": "get_weather",
                                                        "arguments": {"city": "Oslo"}}]})
    ask = {"model": "helper", "input": "Weather in Oslo?", "tools": [WEATHER]}
    if stream:
        with oai.responses.stream(**ask) as events:
            kinds = [e.type for e in events]
            first = events.get_final_response()
        assert kinds[-5:] == ["response.output_item.added", "response.function_call_arguments.delta",
                              "response.function_call_arguments.done", "response.output_item.done",
                              "response.completed"]
    else:
        first = oai.responses.create(**ask)
    assert [o.type for o in first.output] == ["message", "function_call"]
    call = first.output[1]
    assert (call.call_id, call.name, json.loads(call.arguments)) == ("c0", "get_weather", {"city": "Oslo"})
    assert first.output_text == "Let me look."

    oai.script("It is -3 C in Oslo.")
    second = oai.responses.create(model="helper", previous_response_id=first.id, tools=[WEATHER], input=[
        {"type": "function_call_output", "call_id": call.call_id, "output": "-3 C and snowing"}])
    assert second.output_text == "It is -3 C in Oslo."
    [conversation] = oai.store.list_conversations()
    latest = oai.store.list_runs(agent="helper")[0]
    assert latest["conversation_id"] == conversation["id"] and latest["status"] == "ok"
    assert _prompt(oai, latest["id"])[-1] == {"role": "tool", "content": "-3 C and snowing", "tool_call_id": "c0",
                                              "name": "get_weather"}
    # the whole history sent back instead (the SDK's input += response.output) continues it too
    oai.script("Still snowing.")
    third = oai.responses.create(model="helper", tools=[WEATHER], input=[
        {"role": "user", "content": "Weather in Oslo?"}, *[o.model_dump(exclude_none=True) for o in first.output],
        {"type": "function_call_output", "call_id": "c0", "output": "-3 C and snowing"},
        *[o.model_dump(exclude_none=True) for o in second.output], {"role": "user", "content": "And now?"}])
    assert third.output_text == "Still snowing."
    assert len(oai.store.list_conversations()) == 1


@pytest.mark.llama
def test_the_sdks_parse_gets_an_answer_that_fits_its_model(agents_dir: Path, request) -> None:
    """``client.responses.parse(text_format=...)`` sends text.format json_schema: on the bundled model the answer is
    decoded under it, and the SDK reads it back as the pydantic model."""
    from pydantic import BaseModel, Field

    class City(BaseModel):
        name: str = Field(max_length=20)

    (agents_dir / "small").mkdir()
    (agents_dir / "small" / "agent.yaml").write_text(yaml.safe_dump({"name": "small", "model": "smollm2"}))
    oai = request.getfixturevalue("openai_client")
    parsed = oai.responses.parse(model="small", input="Name a city in France.", text_format=City,
                                 max_output_tokens=40, temperature=0)
    assert isinstance(parsed.output_parsed, City) and parsed.output_parsed.name


def test_stored_responses_are_their_owners_only(oai, api_key) -> None:
    mine = oai.responses.create(model="echo", input="secret")
    other = openai.OpenAI(base_url=str(oai.base_url), api_key=api_key("other"), max_retries=0)
    for attempt in (lambda: other.responses.retrieve(mine.id), lambda: other.responses.delete(mine.id),
                    lambda: other.responses.create(model="echo", input="x", previous_response_id=mine.id)):
        with pytest.raises(openai.NotFoundError):
            attempt()
    with pytest.raises(openai.NotFoundError) as unknown:
        oai.responses.create(model="echo", input="x", previous_response_id="resp_" + "0" * 32)
    assert unknown.value.body["param"] == "previous_response_id"
    assert unknown.value.body["code"] == "previous_response_not_found"
    assert unknown.value.body["type"] == "not_found_error"
    oai.responses.delete(mine.id)
    with pytest.raises(openai.NotFoundError):
        oai.responses.retrieve(mine.id)
    # a response goes with its conversation, where it is no delivery the conversation lists
    kept = oai.responses.create(model="echo", input="kept")
    conversation = oai.store.list_runs(agent="echo")[0]["conversation_id"]
    detail = httpx.get(f"{oai.server.url}/v1/admin/conversations/{conversation}", timeout=30,
                       headers={"Authorization": f"Bearer {api_key('admin', scope='admin')}"})
    assert detail.status_code == 200 and detail.json()["deliveries"] == [], detail.text
    oai.store.delete_conversation(oai.store.list_runs(agent="echo")[0]["conversation_id"])
    with pytest.raises(openai.NotFoundError):
        oai.responses.retrieve(kept.id)


def test_a_key_held_to_some_agents_sees_no_response_of_the_others(oai) -> None:
    """A person's key limited to helper: their echo response is as hidden from it as echo's runs are."""
    from halguru_server.keys import create_key

    oai.store.create_user("usr_ann", "ann@example.com", "Ann", "developer")
    every, held = (create_key(oai.store, name, agents, user_id="usr_ann")[1]
                   for name, agents in (("every", None), ("held", ["helper"])))
    mine = _raw(oai, "POST", "/responses", every, json={"model": "echo", "input": "hi"}).json()
    assert _raw(oai, "GET", f"/responses/{mine['id']}", every).status_code == 200
    assert _raw(oai, "GET", f"/responses/{mine['id']}", held).status_code == 404
    assert _raw(oai, "DELETE", f"/responses/{mine['id']}", held).status_code == 404
    continued = _raw(oai, "POST", "/responses", held, json={"model": "helper", "input": "x",
                                                          "previous_response_id": mine["id"]})
    assert continued.status_code == 404 and continued.json()["error"]["param"] == "previous_response_id"


@pytest.mark.parametrize("body, status, param, said", [
    ({"input": []}, 400, "input", "at least one item"),
    ({"input": [{"type": "reasoning", "summary": []}]}, 400, "input.0.type", "'reasoning' is not supported"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]}, 400,
     "input.0.content.0.type", "'input_image' is not supported"),
    ({"input": [{"role": "tool", "content": "x"}]}, 400, "input.0.role", "'tool' is none of"),
    ({"input": [{"role": "user", "content": 5}]}, 400, "input.0.content", "string or a list"),
    ({"input": [{"role": "assistant", "content": "x"}]}, 400, "input", "must end with a user message"),
    ({"input": [{"type": "function_call_output", "call_id": "c9", "output": "x"}]}, 400, "input.0",
     "tool_call_id 'c9' is none of theirs"),
    ({"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}, 400, "input.0.call_id", "call_id"),
    ({"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "[1]"},
                {"type": "function_call_output", "call_id": "c", "output": "x"}]}, 400, "input.0.arguments",
     "arguments are a JSON object"),
    ({"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": {"a": 1}}]}, 400,
     "input.0.arguments", "as a string"),
    ({"input": [{"type": "function_call_output", "call_id": "c", "output": 5}]}, 400, "input.0.output",
     "a string or a list"),
    ({"input": [5]}, 400, "input.0", "an item is an object"),
    ({"include": ["message.output_text.logprobs"]}, 400, "include", "not supported"),
    ({"input": "   "}, 400, "input", "only whitespace"),
    ({"background": True}, 400, "background", "not supported"),
    ({"tools": [{"type": "web_search"}]}, 400, "tools.0.type", "'web_search' tools are not offered"),
    ({"tools": [{"type": "function", "name": "bad name!"}]}, 400, "tools.0.name", "string should match"),
    ({"tool_choice": "sometimes"}, 400, "tool_choice", "none, auto, required"),
    ({"tool_choice": "required"}, 400, "tool_choice", "it sends none"),
    ({"text": {"format": {"type": "xml"}}}, 400, "text.format", "json_schema"),
    ({"text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": 5}}}}, 400, "text.format",
     "not valid JSON Schema"),
    ({"metadata": {"k": "v" * 600}}, 400, "metadata.k", "at most 512"),
    ({"max_output_tokens": "10"}, 400, "max_output_tokens", ""),
    ({"previous_response_id": "nope"}, 404, "previous_response_id", "no response 'nope'"),
    ({"model": "gpt-5"}, 404, "model", "no model 'gpt-5'"),
])
def test_bad_input_is_an_openai_error_naming_the_field(oai, body, status, param, said) -> None:
    answer = _raw(oai, "POST", "/responses", json={"model": "helper", "input": "hi", **body})
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["param"] == param and said.lower() in error["message"].lower(), error
    assert oai.store.list_runs() == [] and oai.store.list_conversations() == []


def test_an_answer_cut_at_max_output_tokens_is_incomplete(oai, tmp_path: Path, agents_dir: Path,
                                                          monkeypatch: pytest.MonkeyPatch, serve) -> None:
    from halguru.plugins.manager import reset_plugin_manager
    from tests.feedback_plugins import install_cut

    monkeypatch.syspath_prepend(str(install_cut(tmp_path / "site")))
    reset_plugin_manager()
    (agents_dir / "cutter").mkdir()
    (agents_dir / "cutter" / "agent.yaml").write_text("name: cutter\nmodel: cut\n")
    client = openai.OpenAI(base_url=f"{serve().url}/v1", api_key=oai.api_key, max_retries=0)
    whole = client.responses.create(model="cutter", input="Tell all")
    assert (whole.status, whole.incomplete_details.reason, whole.output_text) == \
        ("incomplete", "max_output_tokens", "The answer is long and")
    events = list(client.responses.create(model="cutter", input="Tell all", stream=True))
    assert events[-1].type == "response.incomplete" and events[-1].response.status == "incomplete"


def test_a_failed_run_is_a_502_or_a_response_failed_event(oai) -> None:
    oai.script({"error": "the model is down"})
    with pytest.raises(openai.InternalServerError) as failed:
        oai.responses.create(model="helper", input="hi")
    assert failed.value.status_code == 502 and failed.value.body["code"] == "run_failed"
    oai.script({"error": "the model is down"})
    events = list(oai.responses.create(model="helper", input="hi", stream=True))
    assert events[-1].type == "response.failed" and events[-1].response.status == "failed"
    assert "ended failed" in events[-1].response.error.message


def test_a_run_paused_for_approval_is_a_409_or_an_error_event_and_stores_no_response(oai) -> None:
    oai.script({"tool_calls": [{"id": "c0", "name": "clock"}]})
    with pytest.raises(openai.ConflictError) as paused:
        oai.responses.create(model="gated", input="What time is it?")
    assert paused.value.body["code"] == "run_paused" and "approve" in paused.value.body["message"]
    oai.script({"tool_calls": [{"id": "c0", "name": "clock"}]})
    with pytest.raises(openai.APIError) as streamed:
        list(oai.responses.create(model="gated", input="What time is it?", stream=True))
    assert streamed.value.code == "run_paused"
    assert [r["status"] for r in oai.store.list_runs(agent="gated")] == ["paused", "paused"]
    assert oai.store.list_channel_messages(oai.store.list_runs(agent="gated")[0]["conversation_id"]) == []


@pytest.mark.llama
def test_the_bundled_model_streams_a_response(agents_dir: Path, request) -> None:
    (agents_dir / "small").mkdir()
    (agents_dir / "small" / "agent.yaml").write_text(yaml.safe_dump({"name": "small", "model": "smollm2"}))
    oai = request.getfixturevalue("openai_client")
    events = list(oai.responses.create(model="small", input="Say hello.", max_output_tokens=24, temperature=0,
                                       stream=True))
    assert events[0].type == "response.created" and events[-1].type in ("response.completed", "response.incomplete")
    final = events[-1].response
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text and final.output_text == text and final.usage.output_tokens > 0
    again = oai.responses.create(model="small", input="Again.", previous_response_id=final.id, max_output_tokens=8)
    assert again.status in ("completed", "incomplete")
    assert len(oai.server.state.store.list_conversations()) == 1


def test_a_chain_stores_only_what_each_response_adds(oai) -> None:
    """Each stored response kept its chain's whole transcript: a chain of N responses took N squared of the
    store. Each keeps what it added now; the chain is rebuilt from its links, a deleted one's too."""
    ids: list[str] = []
    for i in range(6):
        after = {"previous_response_id": ids[-1]} if ids else {}
        ids.append(oai.responses.create(model="echo", input=f"turn {i} " + "x" * 2000, instructions="Be brief.",
                                        **after).id)
    sizes = [len(oai.store.get_channel_message("openai-responses", i)["body"]) for i in ids]
    assert max(sizes) - min(sizes) < 1000, sizes  # each turn added about 4000 characters to the next
    oai.responses.delete(ids[2])
    for gone in (lambda: oai.responses.retrieve(ids[2]),
                 lambda: oai.responses.create(model="echo", input="x", previous_response_id=ids[2])):
        with pytest.raises(openai.NotFoundError):
            gone()
    last = oai.responses.create(model="echo", input="end", previous_response_id=ids[-1], instructions="Be brief.")
    assert last.output_text == "You said: end"
    said = [m["content"][:6] for m in _prompt(oai, oai.store.list_runs(agent="echo")[0]["id"]) if m["role"] == "user"]
    assert said == [f"turn {i}" for i in range(6)] + ["end"]
    assert len(oai.store.list_conversations()) == 1


def test_a_chain_longer_than_the_message_limit_is_a_413(oai, serve, api_key) -> None:
    """The walk back a chain stops at the limit on a conversation's messages, as a long history sent whole."""
    client = openai.OpenAI(base_url=f"{serve(max_messages=6).url}/v1", api_key=api_key(), max_retries=0)
    previous: dict[str, str] = {}
    for i in range(3):
        previous = {"previous_response_id": client.responses.create(model="echo", input=f"t{i}", **previous).id}
    with pytest.raises(openai.APIStatusError) as refused:
        client.responses.create(model="echo", input="more", **previous)
    assert refused.value.status_code == 413 and refused.value.code == "too_many_messages"
