"""The `openai` provider against a real OpenAI-compatible server on loopback.

The server is llama-cpp-python's own (``python -m llama_cpp.server``) serving the
bundled SmolLM2 GGUF, started once for this module with ``--api_key``, so every
test also checks that halguru sends the key it was told to use.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.llama_server import free_port, llama_server, no_proxy

API_KEY = f"sk-e2e-{secrets.token_hex(12)}"
KEY_VAR = "HALGURU_E2E_LLAMA_KEY"
AGENT_YAML = """\
name: remote
model: local
instructions: You are a friendly assistant. Answer in one short sentence.
sampling: {temperature: 0, seed: 7}
limits: {max_tokens: 24}
"""


@pytest.fixture(scope="module")
def openai_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """llama_cpp.server on a free 127.0.0.1 port, requiring API_KEY; yields its /v1 base URL."""
    with llama_server(tmp_path_factory.mktemp("llama-server") / "server.log", api_key=API_KEY) as base_url:
        yield base_url


@pytest.fixture
def env(subprocess_env: dict[str, str]) -> dict[str, str]:
    return no_proxy({**subprocess_env, KEY_VAR: API_KEY})


@pytest.fixture
def piped_env(env: dict[str, str]) -> dict[str, str]:
    """stderr goes to a pipe (CI, `2>log`): no terminal width, and errors must still be one line."""
    return {k: v for k, v in env.items() if k != "COLUMNS"}


def cli(cmd: list[str], *args: str, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*cmd, *args], env=env, capture_output=True, text=True, timeout=timeout)


def register(cmd: list[str], env: dict[str, str], name: str, base_url: str) -> None:
    added = cli(cmd, "models", "add", name, "--openai-base-url", base_url, "--api-key-env", KEY_VAR, env=env)
    assert added.returncode == 0, added.stderr
    assert name in added.stdout


def stored_runs(cmd: list[str], env: dict[str, str]) -> list[dict]:
    logs = cli(cmd, "logs", "--json", env=env)
    assert logs.returncode == 0, logs.stderr
    return json.loads(logs.stdout)


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected a one-line error, got {len(lines)} lines:\n{stderr}"
    assert "Traceback" not in stderr
    return lines[0]


def test_registered_endpoint_answers_through_halguru_run(openai_server, write_agent, halguru_cmd, env):
    register(halguru_cmd, env, "local", openai_server)
    agent = write_agent(AGENT_YAML)

    result = cli(halguru_cmd, "run", str(agent), "Say hello", env=env)

    assert result.returncode == 0, result.stderr
    answer = result.stdout.strip()
    assert answer, "the model answered nothing"
    assert "Traceback" not in result.stderr
    (run,) = stored_runs(halguru_cmd, env)
    assert run["status"] == "ok"
    assert run["model"] == "local"
    assert run["agent"] == "remote"
    assert run["input"] == "Say hello"
    assert run["output"].strip() == answer


def test_json_event_stream_has_tokens_and_ok_finish(openai_server, write_agent, halguru_cmd, env):
    register(halguru_cmd, env, "local", openai_server)
    agent = write_agent(AGENT_YAML)

    result = cli(halguru_cmd, "run", "--json", str(agent), "Say hello", env=env)

    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    types = [e["type"] for e in events]
    assert types[0] == "run_started" and types[-1] == "run_finished"
    assert events[0]["model"] == "local"
    model_call = next(e for e in events if e["type"] == "model_call")
    assert model_call["model"] == "local"
    tokens = [e["text"] for e in events if e["type"] == "token"]
    assert len(tokens) > 1, "the answer was not streamed token by token"
    finished = events[-1]
    assert finished["status"] == "ok"
    assert finished["error"] is None
    assert finished["output"] == "".join(tokens)
    assert finished["output"].strip()
    # every event belongs to the same run, numbered in order
    assert {e["run_id"] for e in events} == {finished["run_id"]}
    assert [e["seq"] for e in events] == list(range(len(events)))


def test_wrong_api_key_is_one_clear_line_and_a_failed_run(openai_server, write_agent, halguru_cmd, piped_env):
    register(halguru_cmd, piped_env, "local", openai_server)
    agent = write_agent(AGENT_YAML)
    wrong = f"sk-wrong-{secrets.token_hex(8)}"

    result = cli(halguru_cmd, "run", str(agent), "Say hello", env={**piped_env, KEY_VAR: wrong})

    assert result.returncode == 1
    line = one_error_line(result.stderr)
    assert "API key" in line
    assert wrong not in result.stderr and wrong not in result.stdout
    assert result.stdout.strip() == ""
    (run,) = stored_runs(halguru_cmd, piped_env)
    assert run["status"] == "failed"
    assert "API key" in run["error"]
    assert run["id"] in line, "the error should name the stored run so the user can inspect it"


def test_unreachable_endpoint_is_one_clear_line_and_a_failed_run(write_agent, halguru_cmd, piped_env):
    closed = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there any more
    register(halguru_cmd, piped_env, "local", closed)
    agent = write_agent(AGENT_YAML)

    result = cli(halguru_cmd, "run", str(agent), "Say hello", env=piped_env)

    assert result.returncode == 1
    line = one_error_line(result.stderr)
    assert "cannot reach" in line
    assert closed in line
    (run,) = stored_runs(halguru_cmd, piped_env)
    assert run["status"] == "failed"
    assert closed in run["error"]


def test_api_key_is_never_written_or_listed(openai_server, write_agent, halguru_cmd, env, halguru_home: Path):
    register(halguru_cmd, env, "local", openai_server)

    listed = cli(halguru_cmd, "models", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    entry = next(e for e in json.loads(listed.stdout) if e["name"] == "local")
    assert entry["provider"] == "openai"
    assert entry["options"]["base_url"] == openai_server
    assert entry["options"]["api_key_env"] == KEY_VAR
    assert API_KEY not in listed.stdout
    table = cli(halguru_cmd, "models", "list", env=env)
    assert table.returncode == 0, table.stderr
    assert "local" in table.stdout and API_KEY not in table.stdout

    models_yaml = (halguru_home / "models.yaml").read_text(encoding="utf-8")
    assert openai_server in models_yaml
    assert API_KEY not in models_yaml

    # a run that used the key leaves it neither in the trace store nor in its printed trace
    agent = write_agent(AGENT_YAML)
    ran = cli(halguru_cmd, "run", str(agent), "Say hello", env=env)
    assert ran.returncode == 0, ran.stderr
    (run,) = stored_runs(halguru_cmd, env)
    shown = cli(halguru_cmd, "logs", "show", run["id"], "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    assert API_KEY not in shown.stdout
    for path in halguru_home.iterdir():
        if path.is_file():
            assert API_KEY.encode() not in path.read_bytes(), f"the API key was written to {path.name}"
