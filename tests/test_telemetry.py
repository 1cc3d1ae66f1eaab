"""OpenTelemetry: runs exported over real OTLP/HTTP to a loopback collector stand-in, and nothing loaded when off."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.otlp_receiver import ReceivedSpan, Receiver, tree

ERROR = 2  # the OTLP status code of a failed span
OTEL_VARIABLES = [name for name in os.environ if name.startswith("OTEL_")]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.close()


@pytest.fixture
def otel_env(subprocess_env: dict[str, str], receiver: Receiver) -> dict[str, str]:
    env = {k: v for k, v in subprocess_env.items() if k not in OTEL_VARIABLES}
    return {**env, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url}


def named(spans: list[ReceivedSpan], name: str) -> list[ReceivedSpan]:
    return [s for s in spans if s.name == name]


def test_a_cli_run_with_a_tool_and_knowledge_is_one_tree_with_genai_attributes(
        halguru_cmd, otel_env, receiver, write_agent, tmp_path):
    folder = write_agent("name: helper\nmodel: scripted:script.yaml\ninstructions: Answer.\ntools: [calculator]\n"
                         "knowledge: [docs]\nretrieval: {mode: auto, top_k: 2}\n")
    (folder / "script.yaml").write_text('- tool_calls: [{name: calculator, arguments: {expression: "17*23"}}]\n'
                                        '- "17*23 = 391"\n')
    (folder / "docs").mkdir()
    (folder / "docs/guide.md").write_text("# Guide\n\n## Install\n\nInstall halguru with pipx install halguru.\n")
    done = subprocess.run([*halguru_cmd, "run", str(folder), "what is 17*23?"], env=otel_env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    spans = receiver.wait_for(5)  # flushed at exit: all there when the process is gone
    model = f"scripted:{folder / 'script.yaml'}"  # the model the call went to (the agent names it relatively)
    assert tree(spans) == ["invoke_agent helper", "  retrieval helper-docs", f"  chat {model}",
                           "  execute_tool calculator", f"  chat {model}"]
    assert set(receiver.posts) == {"application/x-protobuf"}
    [root] = named(spans, "invoke_agent helper")
    run_id, conversation = root.attributes["halguru.run_id"], root.attributes["gen_ai.conversation.id"]
    assert {s.trace_id for s in spans} == {root.trace_id} and root.parent_id == ""
    assert {s.service for s in spans} == {"halguru"}
    assert root.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert root.attributes["gen_ai.agent.name"] == "helper" and run_id.startswith("run_")
    assert root.attributes["halguru.run.status"] == "ok" and root.status_code == 0
    first, second = sorted(named(spans, f"chat {model}"), key=lambda s: s.start_ns)
    assert first.kind == 3  # CLIENT
    assert first.attributes["gen_ai.operation.name"] == "chat"
    assert first.attributes["gen_ai.request.model"] == model
    assert first.attributes["gen_ai.provider.name"] == "scripted"
    assert root.attributes["gen_ai.request.model"] == model
    assert first.attributes["gen_ai.usage.input_tokens"] > 0 and first.attributes["gen_ai.usage.output_tokens"] > 0
    assert first.attributes["gen_ai.response.finish_reasons"] == ["tool_calls"]
    assert first.attributes["gen_ai.conversation.id"] == conversation and first.attributes["halguru.run_id"] == run_id
    assert root.attributes["gen_ai.usage.input_tokens"] == sum(
        s.attributes["gen_ai.usage.input_tokens"] for s in (first, second))
    [tool] = named(spans, "execute_tool calculator")
    assert tool.attributes["gen_ai.operation.name"] == "execute_tool"
    assert tool.attributes["gen_ai.tool.name"] == "calculator" and tool.attributes["gen_ai.tool.call.id"]
    assert first.end_ns <= tool.start_ns <= tool.end_ns <= second.start_ns  # real times, in order
    [retrieval] = named(spans, "retrieval helper-docs")
    assert retrieval.attributes["gen_ai.operation.name"] == "retrieval"
    assert retrieval.attributes["gen_ai.data_source.id"] == "helper-docs"
    assert retrieval.attributes["halguru.retrieval.hits"] == 1
    assert all(root.start_ns <= s.start_ns <= s.end_ns <= root.end_ns for s in spans)


SCRIPT = """\
import sys
from pathlib import Path

from halguru.agents.runtime import run_sync
from halguru.models.scripted import ScriptedModel

team, flow, plain, searcher = (Path(p) for p in sys.argv[1:5])
ask = {"tool_calls": [{"name": "ask_tech", "arguments": {"request": "is the line up?"}}]}
print(run_sync(team, "my line is down", model=ScriptedModel([ask, "The line is up.", "Tech says it is up."])).status)
print(run_sync(flow, "17*23", model=ScriptedModel(["391 it is"])).status)
print(run_sync(plain, "hi", model=ScriptedModel([{"error": "connection refused"}])).status)
search = {"tool_calls": [{"name": "search_knowledge", "arguments": {"query": "install"}}]}
print(run_sync(searcher, "install?", model=ScriptedModel([search, "pipx [1]"])).status)
"""


def write(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "agent.yaml").write_text(textwrap.dedent(text), encoding="utf-8")
    return folder


def test_sub_runs_nest_a_failed_run_is_an_error_and_a_search_holds_its_retrieval(otel_env, receiver, tmp_path):
    team = write(tmp_path / "desk", """\
        name: desk
        model: scripted
        team:
          specialists: [agents/tech]
        """)
    write(team / "agents/tech", "name: tech\ndescription: Technical problems.\nmodel: scripted\n")
    flow = write(tmp_path / "flow", """\
        name: flow
        tools: [calculator]
        workflow:
          steps:
            - id: compute
              tool: calculator
              args: {expression: "17*23"}
            - id: explain
              agent: ../writer
              input: "Explain {{ steps.compute.output }}"
        """)
    write(tmp_path / "writer", "name: writer\nmodel: scripted\n")
    plain = write(tmp_path / "plain", "name: plain\nmodel: scripted\n")
    searcher = write(tmp_path / "searcher", "name: searcher\nmodel: scripted\nknowledge: [docs]\n"
                     "retrieval: {mode: tool}\n")
    (searcher / "docs").mkdir()
    (searcher / "docs/guide.md").write_text("# Guide\n\nInstall halguru with pipx install halguru.\n")
    env = {**otel_env, "OTEL_SERVICE_NAME": "support-desk"}
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(team), str(flow), str(plain), str(searcher)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ok", "ok", "failed", "ok"]
    spans = receiver.wait_for(19)
    assert {s.service for s in spans} == {"support-desk"}
    assert tree(spans) == [
        "invoke_agent desk", "  chat scripted", "  execute_tool ask_tech", "    invoke_agent tech",
        "      chat scripted", "  chat scripted",
        "invoke_workflow flow", "  step compute", "    execute_tool calculator",
        "  step explain", "    invoke_agent writer", "      chat scripted",
        "invoke_agent plain", "  chat scripted",
        "invoke_agent searcher", "  chat scripted", "  execute_tool search_knowledge", "    retrieval searcher-docs",
        "  chat scripted"]
    [desk, tech] = named(spans, "invoke_agent desk") + named(spans, "invoke_agent tech")
    assert tech.trace_id == desk.trace_id and tech.attributes["halguru.parent_run_id"] == desk.attributes[
        "halguru.run_id"] != tech.attributes["halguru.run_id"]
    assert tech.attributes["gen_ai.agent.name"] == "tech" and "halguru.handoff" in desk.events
    [tech_call] = [s for s in spans if s.parent_id == tech.span_id]
    assert tech.attributes["gen_ai.usage.output_tokens"] == tech_call.attributes["gen_ai.usage.output_tokens"] > 0
    [workflow] = named(spans, "invoke_workflow flow")
    assert workflow.attributes["gen_ai.operation.name"] == "invoke_workflow"
    assert workflow.attributes["gen_ai.workflow.name"] == "flow"
    [step] = named(spans, "step explain")
    assert step.attributes["halguru.step.kind"] == "agent" and step.attributes["halguru.step.status"] == "ok"
    [failed] = named(spans, "invoke_agent plain")
    assert failed.status_code == ERROR and failed.attributes["error.type"] == "model"
    assert failed.attributes["halguru.run.status"] == "failed" and "connection refused" in failed.status_message
    [call] = [s for s in spans if s.parent_id == failed.span_id]
    assert call.status_code == ERROR and call.attributes["error.type"] == "model_error"


OFF_CHECK = """\
import sys
from halguru.agents.runtime import run_sync
assert run_sync(sys.argv[1], "hi").ok
from halguru.cli.app import main
loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry") or m == "halguru.agents.otel")
print(loaded or "none")
"""


def test_off_without_an_endpoint_imports_nothing_from_opentelemetry(halguru_cmd, subprocess_env, write_agent):
    env = {k: v for k, v in subprocess_env.items() if k not in OTEL_VARIABLES}
    folder = write_agent("name: plain\nmodel: scripted\n")
    done = subprocess.run([sys.executable, "-c", OFF_CHECK, str(folder)], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "none"
    trace = subprocess.run([sys.executable, "-X", "importtime", "-m", "halguru", "--help"], env=env,
                           capture_output=True, text=True, timeout=60)
    assert trace.returncode == 0 and "Usage" in trace.stdout
    assert "opentelemetry" not in trace.stderr  # -X importtime lists every module imported
    switched_off = {**env, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_SDK_DISABLED": "true"}
    done = subprocess.run([sys.executable, "-c", OFF_CHECK, str(folder)], env=switched_off, capture_output=True,
                          text=True, timeout=60)
    assert done.stdout.strip() == "none"


WITHOUT_SDK = """\
import sys

class NoOpenTelemetry:  # as if halguru[otel] were not installed
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "opentelemetry":
            raise ModuleNotFoundError(f"No module named {name!r}")

sys.meta_path.insert(0, NoOpenTelemetry())
from halguru.agents.runtime import run_sync
print(run_sync(sys.argv[1], "hi").status, run_sync(sys.argv[1], "again").status)
"""


def test_an_endpoint_without_the_sdk_installed_warns_once_and_runs_go_on(otel_env, write_agent):
    folder = write_agent("name: plain\nmodel: scripted\n")
    done = subprocess.run([sys.executable, "-c", WITHOUT_SDK, str(folder)], env=otel_env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ok", "ok"]
    assert done.stderr.count("OpenTelemetry is configured but cannot start") == 1
    assert "pip install 'halguru[otel]'" in done.stderr


def test_a_command_waits_at_most_2_s_at_exit_for_a_collector_that_is_down(halguru_cmd, subprocess_env, write_agent):
    """The exporter retried for up to 10 s (OTEL_EXPORTER_OTLP_TIMEOUT) at exit: every `halguru run` took ~9 s."""
    import socket
    import time

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in subprocess_env.items() if k not in OTEL_VARIABLES}
    folder = write_agent("name: plain\nmodel: scripted\n")
    started = time.monotonic()
    done = subprocess.run([*halguru_cmd, "run", str(folder), "hi"], capture_output=True, text=True, timeout=60,
                          env={**env, "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}"})
    took = time.monotonic() - started
    assert done.returncode == 0 and done.stdout.strip() == "You said: hi", done.stderr
    assert "the collector did not take this run's spans within 2 s; they are not exported" in done.stderr
    assert took < 6, took  # the start, the run, and at most 2 s of retries


CLIENT_SCRIPT = """\
import sys

from halguru.agents.client_tools import ClientTools
from halguru.agents.runtime import run_sync
from halguru.models.base import Message, ToolSpec
from halguru.models.scripted import ScriptedModel

tools = ClientTools((ToolSpec(name="get_weather", description="", parameters={}),))
call = {"tool_calls": [{"id": "w1", "name": "get_weather", "arguments": {}}]}
first = run_sync(sys.argv[1], "weather?", model=ScriptedModel([call]), client_tools=tools)
results = [Message(role="tool", content="snow", tool_call_id="w1", name="get_weather")]
print(first.status, run_sync(sys.argv[1], "get_weather: snow", first.conversation_id, model=ScriptedModel(["Snow."]),
                             client_tools=tools, tool_results=results).status)
"""


def test_a_call_left_to_the_client_is_a_mark_on_its_run_not_a_tool_it_executed(otel_env, receiver, tmp_path):
    """A client-side tool (the OpenAI endpoint's ``tools``) runs in the client, between two runs: an execute_tool
    span would have lasted to the run's end, as if the server ran it; each run marks the call or its result."""
    plain = write(tmp_path / "plain", "name: plain\nmodel: scripted\n")
    done = subprocess.run([sys.executable, "-c", CLIENT_SCRIPT, str(plain)], env=otel_env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ok", "ok"]
    spans = receiver.wait_for(4)
    assert tree(spans) == ["invoke_agent plain", "  chat scripted", "invoke_agent plain", "  chat scripted"]
    first, second = sorted(named(spans, "invoke_agent plain"), key=lambda s: s.start_ns)
    assert "halguru.tool_call" in first.events and "halguru.tool_result" in second.events
