"""The OpenAI-compatible endpoint, driven by the official openai client, unchanged but for base_url."""

from __future__ import annotations

import json

import openai
import pytest


@pytest.fixture
def oai(serve, api_key):
    server = serve()
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=api_key(), max_retries=0)


def test_models_are_the_agents(oai) -> None:
    assert sorted(m.id for m in oai.models.list()) == ["echo", "private", "slow"]
    assert oai.models.retrieve("echo").id == "echo"


def test_chat_completion_whole(oai) -> None:
    completion = oai.chat.completions.create(model="echo", messages=[
        {"role": "user", "content": "first"}, {"role": "assistant", "content": "You said: first"},
        {"role": "user", "content": "What did I say?"}])
    assert completion.choices[0].message.content == "You said: What did I say?"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.completion_tokens > 0 and completion.model == "echo"


def test_chat_completion_streamed(oai) -> None:
    stream = oai.chat.completions.create(model="echo", stream=True, messages=[{"role": "user", "content": "hi you"}])
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "You said: hi you"
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_openai_errors_map_to_the_client_exceptions(oai, serve) -> None:
    with pytest.raises(openai.NotFoundError, match="no model 'gpt-4o'"):
        oai.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError, match="last message must be from the user"):
        oai.chat.completions.create(model="echo", messages=[{"role": "assistant", "content": "x"}])
    bad = openai.OpenAI(base_url=str(oai.base_url), api_key="hg_nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_blank_messages_are_a_400_as_openai_answers(oai) -> None:
    """A last user message that is empty or only whitespace (as text or as text parts) starts no run."""
    for messages in ([{"role": "user", "content": "   "}],
                     [{"role": "system", "content": " "}, {"role": "user", "content": "\n"}],
                     [{"role": "user", "content": "first"},
                      {"role": "user", "content": [{"type": "text", "text": " "}]}],
                     [{"role": "user", "content": "\u200b\ufeff"}]):
        with pytest.raises(openai.BadRequestError, match="only whitespace"):
            oai.chat.completions.create(model="echo", messages=messages)


def test_max_tokens_past_the_models_context_is_held_to_the_agents_cap(serve, api_key, agents_dir) -> None:
    """A max_tokens larger than the agent's limits.max_tokens is held to it, however large: clients send 4096 or
    more by default, as large as the model's whole context (n_ctx 4096), which was a 400 though the answer was
    held to the agent's cap (4095 was answered). Only a cap that leaves the prompt no room is a 400, before any run
    (it was a 502 "run failed", which also counted as a server error on /status)."""
    import httpx
    import yaml

    from halguru.config import get_settings

    context = get_settings().llama_n_ctx
    for name, cap in (("small", 8), ("wide", context)):
        (agents_dir / name).mkdir()
        (agents_dir / name / "agent.yaml").write_text(yaml.safe_dump(
            {"name": name, "model": "smollm2", "limits": {"max_tokens": cap}}))
    server = serve()
    usage = {"include_usage": True}
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {api_key()}"}, timeout=120) as http:
        for max_tokens in (context, 10**9):
            whole = http.post("/v1/chat/completions", json={
                "model": "small", "max_tokens": max_tokens, "messages": [{"role": "user", "content": "hi"}]})
            assert whole.status_code == 200, whole.text
            assert 0 < whole.json()["usage"]["completion_tokens"] <= 8
            streamed = http.post("/v1/chat/completions", json={
                "model": "small", "max_completion_tokens": max_tokens, "stream": True, "stream_options": usage,
                "messages": [{"role": "user", "content": "hi"}]})
            counts = [json.loads(line[6:])["usage"] for line in streamed.text.splitlines()
                      if line.startswith("data: {") and '"choices": []' in line]
            assert streamed.status_code == 200 and 0 < counts[0]["completion_tokens"] <= 8, streamed.text
            for stream in (False, True):
                refused = http.post("/v1/chat/completions", json={
                    "model": "wide", "max_tokens": max_tokens, "stream": stream,
                    "messages": [{"role": "user", "content": "hi"}]})
                assert refused.status_code == 400, refused.text
                assert refused.json()["error"]["message"] == (
                    f"max_tokens: {max_tokens} leaves no room for the messages in the model's context of {context} "
                    f"tokens (agent wide's limits.max_tokens is {context}); ask for fewer")
        echo = http.post("/v1/chat/completions", json={"model": "echo", "max_tokens": 10**9,
                                                       "messages": [{"role": "user", "content": "hi"}]})
        assert echo.status_code == 200  # a model that states no context of its own
    assert server.state.store.list_runs(agent="wide") == [] and server.state.metrics.server_errors() == 0


@pytest.mark.parametrize("stream", [False, True])
def test_a_completion_given_up_in_the_queue_leaves_no_conversation(client, stream: bool) -> None:
    """The endpoint stores each completion as a conversation before the queue lets its run in; a client that gives
    up while queued leaves none behind (its run never started), while the running one keeps its own."""
    import time

    import httpx

    from halguru.store import open_store

    client.server.state.settings.concurrency = 1
    store = open_store()
    body = {"model": "slow", "messages": [{"role": "user", "content": "go"}]}
    with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as running:
        lines = running.iter_lines()
        assert '"content": "word0' in next(line for line in lines if '"content": "w' in line)  # it runs
        kept = {c["id"] for c in store.list_conversations()}
        assert len(kept) == 1
        gives_up = {**body, "messages": [{"role": "user", "content": "queued"}], "stream": stream}
        # queued behind the running one, then the client leaves
        with pytest.raises(httpx.ReadTimeout), client.stream("POST", "/v1/chat/completions", json=gives_up,
                                                             timeout=1.5) as queued:
            for _ in queued.iter_lines():
                pass
        deadline = time.monotonic() + 10
        while {c["id"] for c in store.list_conversations()} != kept:
            assert time.monotonic() < deadline, [c["title"] for c in store.list_conversations()]
            time.sleep(0.05)
    assert [c["id"] for c in store.list_conversations()] == sorted(kept)
    assert client.server.state.gate.queues[client.server.state.agents["slow"].model].depth == 0


def test_parameters_are_typed_as_openai_types_them_and_unsupported_ones_are_refused(serve, api_key) -> None:
    """`stream: "yes"`, `n: 5` or junk `tool_calls` were answered 200 as if the client had sent something else."""
    import httpx

    server = serve()
    hi = [{"role": "user", "content": "hi"}]
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {api_key()}"}, timeout=30) as http:
        for extra, status, said in (
                ({"stream": "yes"}, 400, "stream"), ({"max_tokens": "10"}, 400, "max_tokens"),
                ({"n": "z"}, 400, "n"), ({"n": 5}, 400, "n: 5 choices"), ({"n": 0}, 400, "n: 0 choices"),
                ({"temperature": "hot"}, 400, "temperature"), ({"stream_options": "x"}, 400, "stream_options"),
                ({"tool_choice": {"a": 1}}, 400, "tool_choice"), ({"tools": [{"type": "function"}]}, 400, "tools"),
                ({"parallel_tool_calls": "no"}, 400, "parallel_tool_calls"),
                ({"tool_choice": "sometimes"}, 400, "tool_choice"),
                ({"response_format": {"type": "json_schema", "json_schema": 123}}, 400, "response_format"),
                ({"response_format": {"type": "yaml"}}, 400, "response_format"),
                ({"messages": [{"role": "assistant", "content": "x", "tool_calls": "junk"}, *hi]}, 400, "tool_calls")):
            answer = http.post("/v1/chat/completions", json={"model": "echo", "messages": hi, **extra})
            assert answer.status_code == status, (extra, answer.text)
            assert said in json.dumps(answer.json()), (extra, answer.text)
        for extra in ({"n": 1, "temperature": 1, "stream": False, "stream_options": {"include_usage": True}},
                      {"tool_choice": "none", "response_format": {"type": "text"}}):
            assert http.post("/v1/chat/completions", json={"model": "echo", "messages": hi, **extra}).status_code == 200
    assert server.state.store.list_runs(agent="echo") and server.state.metrics.server_errors() == 0


def test_tools_with_tool_choice_none_are_answered_with_a_message(oai) -> None:
    """A client that keeps its tools listed but asks for no call (tool_choice "none": the Vercel AI SDK's
    toolChoice 'none' sends both) wants a message, which an agent answers; it was a 400 "client-side tools".
    The other choices offer them (tests/server/test_serve_openai_client_tools.py); a model that calls none
    answers with a message."""
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}]
    hi = [{"role": "user", "content": "hi"}]
    answer = oai.chat.completions.create(model="echo", messages=hi, tools=tools, tool_choice="none")
    assert answer.choices[0].message.content == "You said: hi" and not answer.choices[0].message.tool_calls
    for choice in ("auto", "required", {"type": "function", "function": {"name": "lookup"}}):
        answer = oai.chat.completions.create(model="echo", messages=hi, tools=tools, tool_choice=choice)
        assert (answer.choices[0].message.content, answer.choices[0].finish_reason) == ("You said: hi", "stop")


def test_response_format_json_schema_constrains_the_answer(serve, api_key, agents_dir) -> None:
    """OpenAI's structured output, on the bundled llama.cpp model: the answer is JSON that fits the schema."""
    import httpx
    import yaml

    (agents_dir / "small").mkdir()
    (agents_dir / "small" / "agent.yaml").write_text(yaml.safe_dump({"name": "small", "model": "smollm2"}))
    server = serve()
    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}}, "required": ["city"],
              "additionalProperties": False}
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {api_key()}"}, timeout=120) as http:
        answer = http.post("/v1/chat/completions", json={
            "model": "small", "max_tokens": 40, "messages": [{"role": "user", "content": "Name a city in France."}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "place", "schema": schema}}})
    assert answer.status_code == 200, answer.text
    value = json.loads(answer.json()["choices"][0]["message"]["content"])
    assert set(value) == {"city"} and isinstance(value["city"], str)


@pytest.mark.llama
def test_response_format_constrains_the_answer_of_an_agent_with_tools(serve, api_key, agents_dir) -> None:
    """An agent with tools on the bundled model answered in free text, whatever the schema ('17*23 = 456.'): the
    grammar was left off whenever tools were offered. The answer now fits the schema or opens a tool call."""
    import yaml

    (agents_dir / "calc").mkdir()
    (agents_dir / "calc" / "agent.yaml").write_text(yaml.safe_dump({"name": "calc", "model": "smollm2",
                                                                    "tools": ["calculator"]}))
    server = serve()
    oai = openai.OpenAI(base_url=f"{server.url}/v1", api_key=api_key(), max_retries=0, timeout=120)
    schema = {"type": "object", "properties": {"result": {"type": "integer"}}, "required": ["result"],
              "additionalProperties": False}
    for stream in (False, True):
        answer = oai.chat.completions.create(
            model="calc", max_tokens=60, temperature=0, stream=stream,
            messages=[{"role": "user", "content": "What is 17*23?"}],
            response_format={"type": "json_schema", "json_schema": {"name": "product", "schema": schema}})
        text = "".join(c.choices[0].delta.content or "" for c in answer if c.choices) if stream \
            else answer.choices[0].message.content
        assert json.loads(text) == {"result": 391}, text
    run = server.state.store.list_runs(agent="calc")[0]
    assert [e["name"] for e in server.state.store.get_events(run["id"]) if e["type"] == "tool_call"] == ["calculator"]


def test_a_response_schema_the_model_cannot_follow_is_a_400_before_any_run(serve, api_key, agents_dir) -> None:
    """A schema that is not JSON Schema, or that llama.cpp cannot turn into a grammar (an unanchored pattern, a
    $ref that does not resolve or loops), is the request's mistake: a 400 naming response_format and the reason,
    with no run stored. It was a 502 "run failed" after the run started, counted as a server and model error."""
    import yaml

    (agents_dir / "small").mkdir()
    (agents_dir / "small" / "agent.yaml").write_text(yaml.safe_dump({"name": "small", "model": "smollm2"}))
    server = serve()
    oai = openai.OpenAI(base_url=f"{server.url}/v1", api_key=api_key(), max_retries=0, timeout=60)

    def ask(model: str, schema: dict, stream: bool = False):
        return oai.chat.completions.create(
            model=model, max_tokens=5, stream=stream, messages=[{"role": "user", "content": "hi"}],
            response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}})

    not_json_schema = {"type": "object", "properties": {"a": {"type": "nonsense"}}}
    for model in ("small", "echo"):  # whichever model
        for stream in (False, True):
            with pytest.raises(openai.BadRequestError) as refused:
                ask(model, not_json_schema, stream)
            error = refused.value.body
            assert refused.value.status_code == 400 and error["param"] == "response_format", error
            assert error["type"] == "invalid_request_error" and error["message"] == (
                "response_format: the json_schema's schema is not valid JSON Schema: 'nonsense' is not valid under "
                "any of the given schemas, at schema.properties.a.type")
    for schema, reason in (({"type": "string", "pattern": "a+"}, 'Pattern must start with "^" and end with "$"'),
                           ({"$ref": "#/$defs/missing"}, "Error resolving ref"),
                           ({"$ref": "#/$defs/a", "$defs": {"a": {"$ref": "#/$defs/a"}}}, "cannot be resolved")):
        with pytest.raises(openai.BadRequestError) as refused:
            ask("small", schema)
        assert refused.value.body["param"] == "response_format"
        assert refused.value.body["message"].startswith(
            "response_format: agent small's model (smollm2) cannot follow this schema: "), refused.value.body
        assert reason in refused.value.body["message"]
    assert server.state.store.list_runs() == [] and server.state.metrics.server_errors() == 0
    assert ask("echo", {"type": "string", "pattern": "a+"}).choices[0].message.content  # valid, for a scripted model


def test_a_refused_response_schema_names_the_model_file_without_its_folders(serve, api_key, agents_dir,
                                                                           tmp_path) -> None:
    """An agent on a .gguf file: a chat-only key's schema it cannot follow was a 400 naming the file's whole
    server path, which /v1/agents and the runs show such a key without folders."""
    import httpx
    import yaml

    gguf = tmp_path / "secret-folder" / "helper.gguf"
    (agents_dir / "local").mkdir()
    (agents_dir / "local" / "agent.yaml").write_text(yaml.safe_dump({"name": "local", "model": str(gguf)}))
    server = serve()
    schema = {"type": "string", "pattern": "a+"}
    refused = httpx.post(f"{server.url}/v1/chat/completions",
                         headers={"Authorization": f"Bearer {api_key(scope='user')}"},
                         json={"model": "local", "messages": [{"role": "user", "content": "hi"}], "response_format": {
                             "type": "json_schema", "json_schema": {"name": "x", "schema": schema}}})
    assert refused.status_code == 400, refused.text
    message = refused.json()["error"]["message"]
    assert message.startswith("response_format: agent local's model (helper.gguf) cannot follow this schema: ")
    assert "secret-folder" not in refused.text


def test_a_response_schema_too_deep_for_llama_cpp_is_a_400_and_the_server_lives(serve, api_key, agents_dir) -> None:
    """``maxLength: 5000`` was a 502 after the run started (llama.cpp refused the grammar), and a pattern
    ``^c{1,20000}$`` (215 bytes, any chat-only key) killed the server process with a segfault."""
    import httpx
    import yaml

    (agents_dir / "small").mkdir()
    (agents_dir / "small" / "agent.yaml").write_text(yaml.safe_dump({"name": "small", "model": "smollm2"}))
    server = serve()
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {api_key(scope='user')}"}) as http:
        refused = http.post("/v1/chat/completions", json={
            "model": "small", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}], "response_format": {
                "type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "string", "maxLength": 5000}}}})
        assert refused.status_code == 400 and refused.json()["error"]["param"] == "response_format", refused.text
        assert "its grammar would nest 5,000 deep (at most 1,000)" in refused.json()["error"]["message"]
        assert http.get("/healthz").status_code == 200
    assert server.state.store.list_runs() == []


def test_a_response_schema_too_wide_is_a_400_before_any_work_on_it(serve, api_key, agents_dir,
                                                                  monkeypatch) -> None:
    """3,000 properties each with ``^(a|b)*c{1,999}$`` (a 180 KB request): ~0.6 s of CPU validating the schema and
    ~0.3 s building a 21 MB grammar, both only to refuse it. Weighed first now: neither runs."""
    import httpx
    import yaml
    from halguru_server import openai_schemas

    def never(schema):
        raise AssertionError("the schema was validated")

    (agents_dir / "small").mkdir()
    (agents_dir / "small" / "agent.yaml").write_text(yaml.safe_dump({"name": "small", "model": "smollm2"}))
    server = serve()
    monkeypatch.setattr(openai_schemas, "check_json_schema", never)
    schema = {"type": "object", "properties": {f"p{i}": {"type": "string", "pattern": "^(a|b)*c{1,999}$"}
                                               for i in range(3000)}}
    refused = httpx.post(f"{server.url}/v1/chat/completions", headers={"Authorization": f"Bearer {api_key()}"},
                         json={"model": "small", "messages": [{"role": "user", "content": "hi"}], "response_format": {
                             "type": "json_schema", "json_schema": {"name": "x", "schema": schema}}}, timeout=30)
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "response_format", refused.text
    assert refused.json()["error"]["message"].startswith(
        "response_format: agent small's model (smollm2) cannot follow this schema: its grammar would be about ")
    assert server.state.store.list_runs() == []


def test_a_response_schema_of_too_many_optional_properties_is_a_400_naming_the_count(serve, api_key,
                                                                                     agents_dir) -> None:
    """llama-cpp-python's converter is quadratic in an object's optional properties: 900 (26 KB, under every size
    limit) took ~0.9 s of CPU a request, and an allOf of 9 $refs to a 100-property definition, 5 times over
    (4 KB), ~6 s. Both are refused, before any work on the schema or any run."""
    import httpx
    import yaml

    (agents_dir / "small").mkdir()
    (agents_dir / "small" / "agent.yaml").write_text(yaml.safe_dump({"name": "small", "model": "smollm2"}))
    server = serve()
    flat = {"type": "object", "properties": {f"p{i}": {"type": "integer"} for i in range(900)}}
    wide = {"type": "object", "allOf": [{"anyOf": [{"$ref": "#/$defs/a"}] * 9}]}
    referred = {"type": "object", "properties": {f"o{j}": wide for j in range(5)},
                "$defs": {"a": {"type": "object", "properties": {f"p{i}": {"type": "integer"} for i in range(100)}}}}
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {api_key()}"}, timeout=30) as http:
        for schema in (flat, referred):
            refused = http.post("/v1/chat/completions", json={
                "model": "small", "messages": [{"role": "user", "content": "hi"}], "response_format": {
                    "type": "json_schema", "json_schema": {"name": "x", "schema": schema}}})
            assert refused.status_code == 400 and refused.json()["error"]["param"] == "response_format", refused.text
            assert refused.json()["error"]["message"] == (
                "response_format: agent small's model (smollm2) cannot follow this schema: an object of it has 900 "
                "optional properties (at most 100 in one object): list more of them in required, or split the "
                "object")
    assert server.state.store.list_runs() == []


def test_messages_too_long_for_the_models_context_are_a_400_context_length_exceeded(serve, api_key,
                                                                                      agents_dir) -> None:
    """A prompt that does not fit the model's context even with the older turns left out (5,000 emoji: ~15,000
    tokens in 5,000 characters, under max_input_chars) was a 502 run_failed, counted as a server error, and as a
    job it was tried 5 times. OpenAI answers 400 context_length_exceeded (clients trim their history on it); the
    job fails once, for good."""
    import time

    import httpx
    import yaml

    (agents_dir / "small").mkdir()
    (agents_dir / "small" / "agent.yaml").write_text(yaml.safe_dump({"name": "small", "model": "smollm2"}))
    server = serve()
    key = api_key()
    oai = openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0, timeout=120)
    long = [{"role": "user", "content": "\U0001F600" * 5000}]
    with pytest.raises(openai.BadRequestError) as refused:
        oai.chat.completions.create(model="small", messages=long)
    assert (refused.value.code, refused.value.param) == ("context_length_exceeded", "messages")
    assert "does not fit the context" in refused.value.message
    with pytest.raises(openai.APIError) as cut:
        list(oai.chat.completions.create(model="small", messages=long, stream=True))
    assert cut.value.code == "context_length_exceeded"
    assert server.state.metrics.server_errors() == 0
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
        job = http.post("/v1/jobs", json={"agent": "small", "input": "\U0001F600" * 5000}).json()["id"]
        deadline = time.monotonic() + 60
        while (seen := http.get(f"/v1/jobs/{job}").json())["status"] in ("queued", "running"):
            assert time.monotonic() < deadline, seen
            time.sleep(0.2)
    assert (seen["status"], seen["attempts"]) == ("dead", 1), seen
    assert "does not fit the context" in seen["last_error"]


def test_a_failed_run_is_not_run_again_by_the_sdks_own_retries(serve, api_key, agents_dir, tmp_path) -> None:
    """The official client retries a 5xx twice by default: a failed run (whose tools may have acted) was run three
    times for one request; the 502 now tells it not to retry."""
    import yaml

    script = tmp_path / "fail.yaml"
    script.write_text(yaml.safe_dump([{"error": "connection refused"}]))
    (agents_dir / "failing").mkdir()
    (agents_dir / "failing" / "agent.yaml").write_text(yaml.safe_dump({"name": "failing",
                                                                       "model": f"scripted:{script}"}))
    server = serve()
    default = openai.OpenAI(base_url=f"{server.url}/v1", api_key=api_key())  # max_retries: the SDK's own (2)
    with pytest.raises(openai.InternalServerError, match="ended failed") as failed:
        default.chat.completions.create(model="failing", messages=[{"role": "user", "content": "x"}])
    assert failed.value.status_code == 502 and failed.value.response.headers["x-should-retry"] == "false"
    assert len(server.state.store.list_runs(agent="failing")) == 1


def test_a_base_url_without_v1_is_told_so_in_openais_shape(serve, api_key) -> None:
    """OpenAI clients configured with http://HOST:PORT (no /v1) called /models and /chat/completions and got
    halguru's own 404 ("no route GET /models; see /swagger"), which they showed as an unknown error."""
    import httpx

    server = serve()
    lost = openai.OpenAI(base_url=server.url, api_key=api_key(), max_retries=0)
    for call in (lambda: lost.models.list(),
                 lambda: lost.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}])):
        with pytest.raises(openai.NotFoundError) as missing:
            call()
        assert missing.value.body["type"] == "not_found_error", missing.value.body
        assert f"base URL ends in /v1 ({server.url}/v1)" in missing.value.message
    # other unknown paths keep halguru's shape and words
    other = httpx.get(f"{server.url}/nowhere").json()["error"]
    assert other == {"type": "not_found", "message": "no route GET /nowhere; see /swagger"}


def test_an_assistants_refusal_part_sent_back_is_part_of_the_history(openai_client) -> None:
    """OpenAI's request schema allows an assistant message of text and refusal parts (a history from OpenAI's own
    models sent back): it was a 400 "content part type 'refusal' is not supported"."""
    history = [{"role": "user", "content": "tell me a secret"},
               {"role": "assistant", "content": [{"type": "refusal", "refusal": "I can't share that."}]},
               {"role": "user", "content": "then a joke"}]
    oai = openai_client
    answer = oai.chat.completions.create(model="echo", messages=history)
    assert answer.choices[0].message.content == "You said: then a joke"
    store = oai.server.state.store
    stored = store.get_messages(store.list_conversations()[0]["id"])
    assert [m.content for m in stored][:2] == ["tell me a secret", "I can't share that."]
    for messages, said in (([{"role": "user", "content": [{"type": "refusal", "refusal": "no"}]}], "'refusal' is not"),
                           ([history[0], {"role": "assistant", "content": [{"type": "refusal", "refusal": 5}]},
                             history[2]], "'refusal' must be a string")):
        with pytest.raises(openai.BadRequestError, match=said):  # only an assistant refuses, in words
            oai.chat.completions.create(model="echo", messages=messages)
