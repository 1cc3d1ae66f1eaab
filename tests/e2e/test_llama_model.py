"""The real bundled model (SmolLM2-135M through llama.cpp), end to end."""

from __future__ import annotations

import json
import subprocess

import pytest

from halguru.agents.runtime import RunResult, run_sync
from halguru.models.registry import add_model, bundled_gguf_path
from halguru.store import open_store

CHAT_AGENT = """\
name: smol
model: smollm2
instructions: You are a concise assistant.
sampling: {temperature: 0, seed: 11}
limits: {max_tokens: 24}
"""


def cli(cmd: list[str], *args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*cmd, *args], env=env, capture_output=True, text=True, timeout=timeout)


def model_results(result: RunResult) -> list:
    return [e for e in result.events if e.type == "model_result"]


@pytest.mark.llama
def test_run_streams_an_answer_and_records_usage(write_agent, halguru_cmd, subprocess_env):
    agent = write_agent(CHAT_AGENT)

    result = cli(halguru_cmd, "run", str(agent), "Say hello.", env=subprocess_env)

    assert result.returncode == 0, result.stderr
    answer = result.stdout.strip()
    assert answer
    assert "Traceback" not in result.stderr
    logs = cli(halguru_cmd, "logs", "--json", env=subprocess_env)
    (run,) = json.loads(logs.stdout)
    assert run["status"] == "ok"
    assert run["model"] == "smollm2"
    assert run["output"].strip() == answer
    shown = cli(halguru_cmd, "logs", "show", run["id"], "--json", env=subprocess_env)
    assert shown.returncode == 0, shown.stderr
    events = json.loads(shown.stdout)["events"]
    (result_event,) = [e for e in events if e["type"] == "model_result"]
    assert result_event["completion_tokens"] > 0
    assert result_event["completion_tokens"] <= 24
    assert result_event["prompt_tokens"] > 0
    assert result_event["text"].strip() == answer
    assert events[-1]["type"] == "run_finished" and events[-1]["status"] == "ok"


def _first_step_call(run_id: str) -> dict:
    """The tool call of step 1, as stored in the trace; asserts it parsed cleanly."""
    events = open_store().get_events(run_id)
    (step1_result,) = [e for e in events if e["type"] == "model_result" and e["step"] == 1]
    assert step1_result["format_errors"] == 0, step1_result
    assert not [e for e in events if e["type"] == "error" and e["kind"] == "format" and e["step"] == 1]
    calls = [e for e in events if e["type"] == "tool_call" and e["step"] == 1]
    assert len(calls) == 1, events
    results = [e for e in events if e["type"] == "tool_result" and e["call_id"] == calls[0]["call_id"]]
    assert len(results) == 1, "the tool call was not executed"
    return calls[0]


@pytest.mark.llama
@pytest.mark.parametrize("question", ["What is 17 * 23?", "Add 2 and 2.", "How much is 144 divided by 12?"])
def test_required_tool_call_always_parses(write_agent, question):
    agent = write_agent("""\
name: calc
model: smollm2
instructions: Use the calculator for arithmetic.
tools: [calculator]
tool_choice: required
sampling: {temperature: 0.7, seed: 3}
limits: {max_tokens: 48, max_steps: 1}
""")
    # max_steps 1: the tool runs, then the run stops (failed, limits.max_steps) before a second model call;
    # only the first step's call matters here, and the 135M model's arithmetic is not under test.
    result = run_sync(agent, question)

    call = _first_step_call(result.run_id)
    assert call["name"] == "calculator"
    assert set(call["arguments"]) == {"expression"}
    assert isinstance(call["arguments"]["expression"], str)
    assert call["arguments"]["expression"].strip()


@pytest.mark.llama
def test_a_required_call_cut_at_max_tokens_says_which_limit_cut_it(write_agent):
    """With a few tokens the constrained call stops mid-value: it said "unparseable tool call: tool call cut short
    or invalid: Unterminated string", not that max_tokens cut it, nor which."""
    agent = write_agent("name: calc\nmodel: smollm2\ntools: [calculator]\ntool_choice: required\n"
                        "sampling: {temperature: 0, seed: 3}\nlimits: {max_tokens: 2, max_steps: 1}\n")
    result = run_sync(agent, "What is 1234567 * 7654321?")
    first = model_results(result)[0]
    assert first.finish_reason == "length" and first.format_errors == 1, first
    [error] = [e for e in result.events if e.type == "error" and e.kind == "format"]
    assert error.message == (f"the tool call was cut at max_tokens 2 (limits.max_tokens in {agent}'s agent.yaml) "
                             "before it was complete; raise it")


@pytest.mark.llama
@pytest.mark.parametrize("question", ["What time is it in Tokyo?", "What is 3 * 7?"])
def test_required_tool_call_picks_a_listed_tool_with_valid_arguments(write_agent, question):
    agent = write_agent("""\
name: multi
model: smollm2
tools: [calculator, current_time]
tool_choice: required
sampling: {temperature: 0, seed: 5}
limits: {max_tokens: 48, max_steps: 1}
""")
    result = run_sync(agent, question)

    call = _first_step_call(result.run_id)
    expected_args = {"calculator": {"expression"}, "current_time": {"timezone"}}
    assert call["name"] in expected_args
    assert set(call["arguments"]) == expected_args[call["name"]]
    assert all(isinstance(v, str) for v in call["arguments"].values())


@pytest.mark.llama
def test_second_turn_reuses_the_first_turns_kv_cache(write_agent):
    agent = write_agent(CHAT_AGENT)

    first = run_sync(agent, "Name a colour.")
    second = run_sync(agent, "Name another one.", conversation=first.conversation_id)

    assert first.ok and second.ok, (first.error, second.error)
    (r1,), (r2,) = model_results(first), model_results(second)
    assert r2.prompt_tokens > r1.prompt_tokens, "the second turn's prompt should hold the first turn"
    assert r2.cached_tokens > 0
    assert r2.cached_tokens >= r1.prompt_tokens, (r1.prompt_tokens, r2.cached_tokens)
    assert r2.cached_tokens < r2.prompt_tokens


@pytest.mark.llama
def test_interleaved_conversations_keep_their_kv_cache(write_agent):
    agent = write_agent(CHAT_AGENT)

    a1 = run_sync(agent, "Name a colour.")
    b1 = run_sync(agent, "Write one word about the sea.")
    a2 = run_sync(agent, "Name another one.", conversation=a1.conversation_id)

    assert a1.ok and b1.ok and a2.ok, (a1.error, b1.error, a2.error)
    assert a1.conversation_id != b1.conversation_id
    (ra1,), (rb1,), (ra2,) = model_results(a1), model_results(b1), model_results(a2)
    # B's prompt only shares the system prompt with A's: without a saved state, A2 would too.
    assert rb1.cached_tokens < ra1.prompt_tokens
    assert ra2.cached_tokens >= ra1.prompt_tokens, (ra1.prompt_tokens, rb1.cached_tokens, ra2.cached_tokens)
    # and A2 was answered with A's history, not B's
    (call_a2,) = [e for e in a2.events if e.type == "model_call"]
    assert [m["content"] for m in call_a2.messages if m["role"] != "system"] == [
        "Name a colour.", a1.output, "Name another one."]


@pytest.mark.llama
def test_model_still_answers_after_runs_that_time_out(write_agent):
    """A run cut off by limits.timeout must not break the model for the runs that follow."""
    # A model of its own (other options, so another instance): if it breaks, other tests keep theirs.
    add_model("smol-timeouts", "llama-cpp", {"path": str(bundled_gguf_path()), "n_ctx": 2048}, source="test")
    quick = write_agent("name: quick\nmodel: smol-timeouts\nsampling: {temperature: 0}\n"
                        "limits: {max_tokens: 8, timeout: 20}\n", name="quick")
    slow = write_agent("name: rambler\nmodel: smol-timeouts\nlimits: {max_tokens: 1000, timeout: 0.5}\n",
                       name="slow")
    warm = run_sync(quick, "Say hello.")  # loads the model, so the timeouts below hit mid-generation
    assert warm.ok, warm.error

    # Stopping a generation races with the model's worker thread; several rounds make a loss visible.
    for attempt in range(8):
        cut = run_sync(slow, "Write a very long story about a dragon and a knight.", record=False)
        assert cut.status == "limited" and "timeout" in (cut.error or ""), (attempt, cut.status, cut.error)
        after = run_sync(quick, "Say hello.", record=False)
        assert after.ok, f"round {attempt}: the model stopped answering after a timed-out run: {after.error}"
        assert after.output.strip()


def test_missing_gguf_is_one_line_error_naming_the_path(write_agent, halguru_cmd, subprocess_env):
    # stderr goes to a pipe (CI, `2>log`): no terminal width, and the error must still be one line
    env = {k: v for k, v in subprocess_env.items() if k != "COLUMNS"}
    agent = write_agent("name: nofile\nmodel: /nonexistent/x.gguf\nlimits: {max_tokens: 24}\n")

    result = cli(halguru_cmd, "run", str(agent), "hello", env=env)

    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected a one-line error, got:\n{result.stderr}"
    assert "/nonexistent/x.gguf" in lines[0]
    assert "not found" in lines[0]
    assert "Traceback" not in result.stderr
    assert lines[0].startswith(f"Error: {agent / 'agent.yaml'}:2: model: ")  # as `halguru validate` says it
    logs = cli(halguru_cmd, "logs", "--json", env=env)
    assert json.loads(logs.stdout) == []  # refused before the run: no failed run stored for a path typo


@pytest.mark.llama
def test_a_conversation_that_outgrows_the_context_says_how_many_messages_were_left_out(
        write_agent, halguru_cmd, subprocess_env):
    """The second turn's prompt left out the first turn to fit 512 tokens, yet its model_call listed every
    message and nothing in `logs show` (or the inspector's "messages as sent") said the model never read it."""
    add_model("smol-512", "llama-cpp", {"path": str(bundled_gguf_path()), "n_ctx": 512}, source="test")
    agent = write_agent(CHAT_AGENT.replace("smollm2", "smol-512").replace("max_tokens: 24", "max_tokens: 4"))
    filler = "The quick brown fox jumps over the lazy dog. " * 25  # ~250 tokens: two do not fit 508
    first = run_sync(agent, f"One: {filler}")
    second = run_sync(agent, f"Two: {filler}", conversation=first.conversation_id)

    assert first.ok and second.ok, (first.error, second.error)
    (r1,), (r2,) = model_results(first), model_results(second)
    assert (r1.dropped_messages, r2.dropped_messages) == (0, 1), "the first user message (its short answer fits)"
    assert r2.prompt_tokens < r1.prompt_tokens + 100
    shown = cli(halguru_cmd, "logs", "show", second.run_id, env=subprocess_env).stdout
    assert "the oldest message left out" in shown
    assert "left out" not in cli(halguru_cmd, "logs", "show", first.run_id, env=subprocess_env).stdout
