"""The OpenAI endpoint honours or refuses each field a client sends (it used to accept `stop`, `logprobs` and the
penalties and ignore them), answers errors in OpenAI's shape (type, param, code) and sends `usage` in a stream
only when asked, in a last chunk of its own, as the official client and LangChain read it."""

from __future__ import annotations

import httpx
import openai
import pytest


@pytest.fixture
def oai(openai_client):
    return openai_client


def _streamed(oai, **request) -> tuple[str, list]:
    chunks = list(oai.chat.completions.create(stream=True, **request))
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices), chunks


def test_stop_ends_the_answer_before_it_streamed_or_whole(oai) -> None:
    """The echo model streams word by word: "ha be" arrives split across two chunks and is still found."""
    say = [{"role": "user", "content": "alpha beta STOP gamma"}]
    for stop, expected in (("STOP", "You said: alpha beta "), (["zzz", "ha be", "STOP"], "You said: alp"),
                           (["nowhere"], "You said: alpha beta STOP gamma")):
        whole = oai.chat.completions.create(model="echo", messages=say, stop=stop)
        assert (whole.choices[0].message.content, whole.choices[0].finish_reason) == (expected, "stop")
        text, chunks = _streamed(oai, model="echo", messages=say, stop=stop)
        assert text == expected and chunks[-1].choices[0].finish_reason == "stop"
    run = oai.server.state.store.list_runs(agent="echo")[0]
    assert oai.server.state.store.get_run(run["id"])["output"] == "You said: alpha beta STOP gamma"  # the last one


def test_more_stop_strings_than_openais_four_are_honoured(oai) -> None:
    """Continue sends every stop word it knows to a base URL that is not api.openai.com's, SillyTavern one per
    speaker: llama.cpp's server, vLLM and Ollama take them all. Five or more were a 422 "at most 4 items"."""
    say = [{"role": "user", "content": "alpha beta STOP gamma"}]
    stop = ["<|im_end|>", "<|im_start|>", "<|eot_id|>", "\nUser:", "\nAssistant:", "zzz", "ha be", "STOP"]
    whole = oai.chat.completions.create(model="echo", messages=say, stop=stop)
    assert (whole.choices[0].message.content, whole.choices[0].finish_reason) == ("You said: alp", "stop")
    text, chunks = _streamed(oai, model="echo", messages=say, stop=stop)
    assert text == "You said: alp" and chunks[-1].choices[0].finish_reason == "stop"


def test_stop_is_typed_as_openai_types_it(oai) -> None:
    hi = [{"role": "user", "content": "hi"}]
    said = {}
    for stop in ([f"s{i}" for i in range(17)], [""], 5, [1]):
        with pytest.raises(openai.BadRequestError) as refused:
            oai.chat.completions.create(model="echo", messages=hi, stop=stop)
        assert refused.value.body["param"].startswith("stop"), refused.value.body
        said[str(stop)] = refused.value.body["message"]
    # what is wrong with the list, not that a list is no string (a union's first member: "stop.constrained-str:
    # Input should be a valid string" for each of them)
    assert said[str([f"s{i}" for i in range(17)])] == "stop: List should have at most 16 items after validation, not 17"
    assert said["['']"] == "stop.0: String should have at least 1 character"
    assert "constrained" not in " ".join(said.values()) and said["5"] == "stop: Input should be a valid string"


def test_fields_a_model_cannot_honour_are_a_400_naming_them(oai) -> None:
    hi = [{"role": "user", "content": "hi"}]
    for extra, param, said in (({"frequency_penalty": 0.5}, "frequency_penalty", "does not apply it"),
                               ({"presence_penalty": -1}, "presence_penalty", "does not apply it"),
                               ({"logprobs": True}, "logprobs", "log probabilities"),
                               ({"logprobs": True, "top_logprobs": 3}, "logprobs", "log probabilities"),
                               ({"top_logprobs": 2}, "top_logprobs", "log probabilities"),
                               ({"extra_body": {"logit_bias": {"50256": -100}}}, "logit_bias", "not supported"),
                               ({"extra_body": {"top_k": 5}}, "top_k", "does not apply it"),
                               ({"extra_body": {"min_p": 0.1}}, "min_p", "does not apply it"),
                               ({"extra_body": {"repeat_penalty": 1.3}}, "repeat_penalty", "does not apply it"),
                               ({"extra_body": {"mirostat": 2}}, "mirostat", "not supported"),
                               ({"extra_body": {"functions": [{"name": "f"}]}}, "functions", "not supported")):
        with pytest.raises(openai.BadRequestError) as refused:
            oai.chat.completions.create(model="echo", messages=hi, **extra)
        assert refused.value.body["param"] == param and said in refused.value.message, (extra, refused.value.body)
        assert refused.value.body["type"] == "invalid_request_error"
    # zero penalties, top_k and min_p 0 and a repeat_penalty of 1 change nothing, false logprobs ask for nothing,
    # and the fields documented as ignored pass
    fine = oai.chat.completions.create(model="echo", messages=hi, frequency_penalty=0, presence_penalty=0.0,
                                       logprobs=False, user="u-1", metadata={"a": "b"}, store=False,
                                       parallel_tool_calls=False, service_tier="auto",
                                       extra_body={"top_k": 0, "min_p": 0, "repeat_penalty": 1.0})
    assert fine.choices[0].message.content == "You said: hi"
    assert oai.server.state.metrics.server_errors() == 0


def test_fields_sent_as_null_are_fields_not_sent(client) -> None:
    """Clients built on their own typed request (Java, Go, C#) write every field they know, the unset ones as null,
    OpenAI's default: such a request was a 400 naming its first null field it does not type (logit_bias)."""
    nulls = dict.fromkeys(("temperature", "top_p", "n", "stop", "max_tokens", "max_completion_tokens", "seed",
                           "frequency_penalty", "presence_penalty", "logprobs", "top_logprobs", "response_format",
                           "tools", "tool_choice", "stream_options", "user", "logit_bias", "functions",
                           "function_call", "audio", "reasoning_effort", "verbosity", "web_search_options"))
    answer = client.post("/v1/chat/completions", json={"model": "echo", "stream": False, **nulls,
                                                       "messages": [{"role": "user", "content": "hi"}]})
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"] == "You said: hi"
    # a value still asks for something this endpoint does not do
    refused = client.post("/v1/chat/completions", json={"model": "echo", "logit_bias": {"50256": -100},
                                                        "messages": [{"role": "user", "content": "hi"}]})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "logit_bias"


def test_llama_cpps_sampling_fields_out_of_range_or_mistyped_are_refused_naming_them(oai) -> None:
    """As for OpenAI's own fields: a 400 in OpenAI's error shape, whatever the agent's model."""
    hi = [{"role": "user", "content": "hi"}]
    for name, value in (("top_k", -1), ("top_k", 1.5), ("top_k", "5"), ("top_k", True), ("min_p", 1.5),
                        ("min_p", -0.1), ("min_p", "0.1"), ("repeat_penalty", 0.5), ("repeat_penalty", 3)):
        with pytest.raises(openai.BadRequestError) as refused:
            oai.chat.completions.create(model="echo", messages=hi, extra_body={name: value})
        assert (refused.value.param, refused.value.type) == (name, "invalid_request_error"), (name, value)
    assert oai.server.state.store.list_runs(agent="echo") == []  # nothing ran


def test_a_seed_or_top_k_past_what_they_are_is_refused_naming_it(oai) -> None:
    """seed is OpenAI's int64, top_k llama.cpp's int32: 2**70 and 2**40 were taken (ctypes kept their low 32 bits:
    seed 2**70 sampled as seed 0, top_k 2**32 + 1 as top_k 1)."""
    hi = [{"role": "user", "content": "hi"}]
    for name, value in (("seed", 2**70), ("seed", 2**63), ("seed", -(2**63) - 1), ("top_k", 2**40),
                        ("top_k", 2**31), ("top_k", 2**32 + 1)):
        with pytest.raises(openai.BadRequestError) as refused:
            oai.chat.completions.create(model="echo", messages=hi, extra_body={name: value})
        assert (refused.value.param, refused.value.type) == (name, "invalid_request_error"), (name, value)
        assert "less than or equal to" in refused.value.message or "greater than" in refused.value.message
    assert oai.server.state.store.list_runs(agent="echo") == []
    for seed in (2**63 - 1, -(2**63)):  # OpenAI's bounds pass
        assert oai.chat.completions.create(model="echo", messages=hi, seed=seed).choices[0].message.content


def test_an_openai_compatible_model_gets_top_k_and_min_p_but_no_repeat_penalty(write_agent) -> None:
    """The openai provider sends top_k and min_p on (vLLM and llama.cpp's server read them); it cannot send a
    repeat_penalty, so a request for one is refused rather than ignored, and one of 1 (none) is left out."""
    from halguru_server.agents import ServedAgent
    from halguru_server.errors import ApiError
    from halguru_server.openai_schemas import ChatRequest

    from halguru.agents.loader import load_agent
    from halguru.models.openai_compat import OpenAIProvider

    served = ServedAgent(load_agent(write_agent("name: up\nmodel: scripted\n")), "key", None,
                         sampling=OpenAIProvider.sampling)

    def sampling(**fields: object) -> dict:
        return ChatRequest(model="up", messages=[{"role": "user", "content": "hi"}], **fields).sampling(served)

    assert sampling(top_k=20, min_p=0.05, repeat_penalty=1.0) == {"top_k": 20, "min_p": 0.05}
    with pytest.raises(ApiError) as refused:
        sampling(top_k=20, repeat_penalty=1.3)
    assert (refused.value.status, refused.value.param) == (400, "repeat_penalty")


@pytest.fixture
def small(agents_dir, request):
    """The official client, on a server that also serves `small`: an agent on the bundled llama.cpp model."""
    import yaml

    (agents_dir / "small").mkdir()
    (agents_dir / "small" / "agent.yaml").write_text(yaml.safe_dump({"name": "small", "model": "smollm2"}))
    return request.getfixturevalue("openai_client")  # its server starts now, serving `small` too


def test_penalties_reach_a_model_that_applies_them(small) -> None:
    """The bundled llama.cpp model applies both penalties: strong ones change a greedy count (its commas repeat)."""
    ask = {"model": "small", "max_tokens": 30, "temperature": 0,
           "messages": [{"role": "user", "content": "Count from 1 to 20 separated by commas."}]}
    plain = small.chat.completions.create(**ask).choices[0].message.content
    for penalty in ({"frequency_penalty": 2}, {"presence_penalty": 2}):
        penalized = small.chat.completions.create(**ask, **penalty).choices[0].message.content
        assert plain and penalized and plain != penalized, penalty
    assert small.chat.completions.create(**ask).choices[0].message.content == plain  # greedy: only the penalties


@pytest.mark.llama
def test_top_k_min_p_and_repeat_penalty_reach_the_llama_cpp_model(small) -> None:
    """What a client of llama.cpp's server, vLLM or Ollama sends (the openai client's extra_body) is applied: top_k 1
    or min_p 1 at temperature 1 samples the likeliest token each time, as greedy does; a strong repeat_penalty
    changes a greedy count (its commas repeat). Each run records the settings it was given."""
    ask = {"model": "small", "max_tokens": 30,
           "messages": [{"role": "user", "content": "Count from 1 to 20 separated by commas."}]}

    def answer(temperature: float, **extra: float) -> str:
        text = small.chat.completions.create(**ask, temperature=temperature, seed=3, extra_body=extra)
        return text.choices[0].message.content

    greedy = answer(0, repeat_penalty=1.0)
    assert greedy
    assert answer(1, top_k=1, repeat_penalty=1.0) == greedy
    assert answer(1, min_p=1.0, repeat_penalty=1.0) == greedy
    assert answer(0, repeat_penalty=2.0) != greedy
    store = small.server.state.store
    recorded = [next(e["settings"] for e in store.get_events(run["id"]) if e["type"] == "model_call")
                for run in reversed(store.list_runs(agent="small"))]
    assert [(s.get("top_k"), s.get("min_p"), s["repeat_penalty"]) for s in recorded] == [
        (None, None, 1.0), (1, None, 1.0), (None, 1.0, 1.0), (None, None, 2.0)]


@pytest.mark.llama
def test_every_seed_repeats_its_answer_on_the_llama_cpp_model(small) -> None:
    """llama.cpp's seed is 32 bits and 0xFFFFFFFF means "random": seed -1 and 4294967295 sampled differently on
    every run, and 2**32 + 3 as seed 3. Each seed now repeats its own answer."""
    ask = {"model": "small", "max_tokens": 16, "temperature": 2.0, "extra_body": {"top_k": 0, "min_p": 0},
           "messages": [{"role": "user", "content": "Write a random word."}]}

    def answers(seed: int) -> list[str | None]:
        return [small.chat.completions.create(**ask, seed=seed).choices[0].message.content for _ in range(3)]

    for seed in (-1, 2**32 - 1, 2**63 - 1):
        first, *again = answers(seed)
        assert first and again == [first, first], seed
    assert answers(3)[0] != answers(2**32 + 3)[0]


@pytest.mark.llama
def test_top_p_0_is_greedy_as_openai_reads_it(small) -> None:
    """OpenAI accepts top_p 0 (only the likeliest token); it was a 422 "greater than 0". It samples greedily now,
    whatever the temperature and seed: the answer of temperature 0."""
    ask = {"model": "small", "max_tokens": 20,
           "messages": [{"role": "user", "content": "Write a random word."}]}
    greedy = small.chat.completions.create(**ask, temperature=0).choices[0].message.content
    for seed in (1, 2, 3):
        answer = small.chat.completions.create(**ask, temperature=1.8, top_p=0, seed=seed)
        assert answer.choices[0].message.content == greedy, seed
    streamed, _ = _streamed(small, **ask, top_p=0, temperature=2)
    assert streamed == greedy
    store = small.server.state.store
    settings = next(e["settings"] for e in store.get_events(store.list_runs(agent="small")[0]["id"])
                    if e["type"] == "model_call")
    assert settings["temperature"] == 0 and settings["top_p"] == 0.95  # the agent's top_p: greedy needs none
    with pytest.raises(openai.BadRequestError, match="top_p"):
        small.chat.completions.create(**ask, top_p=-0.1)


def test_stop_on_the_bundled_model_ends_generation_there(small) -> None:
    """The tester's report: counting with stop=["5"] ran on to 10. llama.cpp now stops at the stop string."""
    oai = small
    ask = {"model": "small", "max_tokens": 60, "temperature": 0,
           "messages": [{"role": "user", "content": "Count from 1 to 20 separated by commas."}]}
    free = oai.chat.completions.create(**ask)
    assert "5" in free.choices[0].message.content  # without stop the count goes past 5
    cut = oai.chat.completions.create(**ask, stop=["5"])
    text = cut.choices[0].message.content
    assert "5" not in text and free.choices[0].message.content.startswith(text) and cut.choices[0].finish_reason \
        == "stop"
    assert cut.usage.completion_tokens < free.usage.completion_tokens
    streamed, chunks = _streamed(oai, **ask, stop="5")
    assert streamed == text and chunks[-1].choices[0].finish_reason == "stop"


def test_errors_are_in_openais_shape_with_param_and_code(oai) -> None:
    hi = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.NotFoundError) as missing:
        oai.chat.completions.create(model="nope", messages=hi)
    assert (missing.value.code, missing.value.param, missing.value.type) == ("model_not_found", "model",
                                                                             "not_found_error")
    # an OpenAI client lists models, not /v1/agents: the hint named a route of halguru's own API
    assert "no model 'nope' (a model here is an agent's name); GET /v1/models lists them" in str(missing.value)
    with pytest.raises(openai.NotFoundError) as card:
        oai.models.retrieve("nope")
    assert card.value.code == "model_not_found"
    bad = openai.OpenAI(base_url=str(oai.base_url), api_key="hg_nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as unknown_key:
        bad.chat.completions.create(model="echo", messages=hi)
    assert (unknown_key.value.code, unknown_key.value.type) == ("invalid_api_key", "authentication_error")
    with pytest.raises(openai.BadRequestError) as choices:
        oai.chat.completions.create(model="echo", messages=hi, n=2)
    assert (choices.value.param, choices.value.type, choices.value.code) == ("n", "invalid_request_error",
                                                                             "invalid_request")
    with pytest.raises(openai.BadRequestError) as typed:
        oai.chat.completions.create(model="echo", messages=hi, extra_body={"max_tokens": "10"})
    assert (typed.value.param, typed.value.type) == ("max_tokens", "invalid_request_error")
    with pytest.raises(openai.BadRequestError) as deep:
        oai.chat.completions.create(model="echo", messages=[{"role": "robot", "content": "x"}])
    assert deep.value.param == "messages.0.role"
    with pytest.raises(openai.NotFoundError) as elsewhere:
        oai.completions.create(model="echo", prompt="x")  # not offered: still an error an OpenAI client reads
    assert elsewhere.value.type == "not_found_error" and "no route" in elsewhere.value.message
    with pytest.raises(openai.NotFoundError) as no_embedder:  # offered, for the embedders the operator lists
        oai.embeddings.create(model="echo", input="x")
    assert (no_embedder.value.type, no_embedder.value.code) == ("not_found_error", "model_not_found")


def test_other_routes_keep_halgurus_error_shape(oai) -> None:
    """Only the OpenAI routes changed: the rest of /v1 (halguru.client, the TypeScript client) reads type/message."""
    url = str(oai.base_url).rstrip("/")
    for path in ("/agents", "/conversations/conv_missing"):
        body = httpx.get(url + path, headers={"Authorization": "Bearer hg_nope"}).json()
        assert body == {"error": {"type": "unauthorized", "message": body["error"]["message"]}}
    key = {"Authorization": f"Bearer {oai.api_key}"}
    assert set(httpx.get(url + "/conversations/conv_missing", headers=key).json()["error"]) == {"type", "message"}


def test_usage_is_streamed_only_when_asked_in_a_last_chunk_without_choices(oai) -> None:
    hi = [{"role": "user", "content": "hi you"}]
    text, chunks = _streamed(oai, model="echo", messages=hi)
    assert text == "You said: hi you" and all(c.usage is None for c in chunks) and chunks[-1].choices
    text, chunks = _streamed(oai, model="echo", messages=hi, stream_options={"include_usage": True})
    *rest, last = chunks
    assert text == "You said: hi you" and last.choices == [] and all(c.usage is None for c in rest)
    assert last.usage.completion_tokens > 0 and last.usage.total_tokens == (last.usage.prompt_tokens
                                                                            + last.usage.completion_tokens)
    assert rest[-1].choices[0].finish_reason == "stop"
    with httpx.stream("POST", f"{oai.base_url}chat/completions", headers={"Authorization": f"Bearer {oai.api_key}"},
                      json={"model": "echo", "messages": hi, "stream": True}) as raw:
        lines = [line for line in raw.iter_lines() if line.startswith("data: {")]
    assert lines and not any('"usage"' in line for line in lines)  # not even null, when not asked
