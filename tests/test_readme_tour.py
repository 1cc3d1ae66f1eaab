"""What a fresh pass through the README tour tripped over: each wrong input is one `Error:` line and a non-zero
exit, never a traceback, and no stray output on a pipe."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

TEMPLATES = Path(__file__).resolve().parents[1] / "agents-templates"
IN_USE = "Address already in use (another program listens there: choose another --port, or --port 0 for a free one)"


@pytest.fixture
def listening() -> Iterator[int]:
    """A loopback port someone else already listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _run(halguru_cmd, env, *args: str, input: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([*halguru_cmd, *args], input=input, capture_output=True, text=True, env=env,
                          timeout=120, start_new_session=True)


def test_schema_to_a_missing_folder_is_one_line(cli_error, tmp_path: Path):
    line = cli_error("schema", "-o", str(tmp_path / "no" / "such" / "agent.schema.json"))
    assert line == f"Error: {tmp_path / 'no' / 'such' / 'agent.schema.json'}: No such file or directory"


def test_logs_export_to_a_missing_folder_is_one_line(cli, cli_error, write_agent, tmp_path: Path):
    agent = write_agent("name: echo\nmodel: scripted\n")
    cli("run", str(agent), "Hi")
    from halguru.store import open_store

    [run] = open_store().list_runs(limit=1)
    line = cli_error("logs", "export", run["id"], "-o", str(tmp_path / "nope" / "t.yaml"))
    assert "No such file or directory" in line and "nope" in line


def test_chat_reads_piped_input_without_a_terminal(halguru_cmd, subprocess_env, write_agent):
    """`termios.error` is not an OSError: piped input made the first answer a traceback."""
    agent = write_agent("name: echo\nmodel: scripted\n")
    proc = _run(halguru_cmd, subprocess_env, "chat", str(agent), input="Hello\n/exit\n")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "You said: Hello" in proc.stdout


def test_chat_model_checks_a_file_model_before_switching(halguru_cmd, subprocess_env, write_agent, tmp_path):
    """`/model ./nope.gguf` said "Model is now ./nope.gguf." and the next message failed, stored as a failed run;
    a script relative to where the chat started is found."""
    agent = write_agent("name: echo\nmodel: scripted\n")
    (tmp_path / "s.yaml").write_text("- scripted hello\n")
    typed = "/model ./nope.gguf\nHello\n/model scripted:s.yaml\nHi\n/exit\n"
    proc = subprocess.run([*halguru_cmd, "chat", str(agent)], input=typed, capture_output=True, text=True,
                          env=subprocess_env, timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Model is now ./nope.gguf" not in proc.stdout and "nope.gguf" in proc.stdout
    assert "You said: Hello" in proc.stdout and "scripted hello" in proc.stdout


def test_kb_ingest_on_a_pipe_prints_no_blank_line(halguru_cmd, subprocess_env, tmp_path: Path):
    """The transient progress bar left an empty line on stderr, so an error was two lines."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# A\n\nSome text.\n")
    proc = _run(halguru_cmd, subprocess_env, "kb", "ingest", "nobase", str(docs))
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [proc.stderr.strip()] and proc.stderr.startswith("Error: no knowledge base")
    assert _run(halguru_cmd, subprocess_env, "kb", "create", "docs").returncode == 0
    proc = _run(halguru_cmd, subprocess_env, "kb", "ingest", "docs", str(docs))
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_mcp_serve_http_on_a_port_in_use_is_one_line_before_the_banner(cli_error, listening: int):
    line = cli_error("mcp", "serve", str(TEMPLATES / "basic"), "--http", "--port", str(listening))
    assert line == f"Error: cannot listen on 127.0.0.1:{listening}: {IN_USE}"


def test_mcp_serve_rejects_a_port_out_of_range(halguru_cmd, subprocess_env):
    proc = _run(halguru_cmd, subprocess_env, "mcp", "serve", str(TEMPLATES / "basic"), "--http", "--port", "99999")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "Invalid value for '--port'" in proc.stderr


def test_serve_on_a_port_in_use_is_one_line_before_the_banner(cli_error, listening: int):
    line = cli_error("serve", str(TEMPLATES / "basic"), "--dev", "--port", str(listening))
    assert line == f"Error: cannot listen on 127.0.0.1:{listening}: {IN_USE}"


@pytest.mark.parametrize(("host", "base"), [("0.0.0.0", "http://127.0.0.1:8000"), ("::", "http://[::1]:8000"),
                                            ("::1", "http://[::1]:8000"), ("127.0.0.1", "http://127.0.0.1:8000"),
                                            ("example.com", "http://example.com:8000")])
def test_banner_links_open_in_a_browser(host: str, base: str):
    """`serve --host ::1` printed http://::1:8000 (no client parses it), `--host 0.0.0.0` a link to 0.0.0.0."""
    from halguru.listen import url_base

    assert url_base(host, 8000) == base


def test_serve_on_every_interface_links_loopback_and_says_where_it_listens(halguru_cmd, subprocess_env,
                                                                            write_agent):
    agent = write_agent("name: echo\nmodel: scripted\n")
    proc = subprocess.Popen([*halguru_cmd, "serve", str(agent), "--host", "0.0.0.0", "--port", "0"],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=subprocess_env,
                            start_new_session=True)
    try:
        assert proc.stderr is not None
        first, api = proc.stderr.readline(), proc.stderr.readline()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert first == "halguru serve: 1 agent project(s), listening on 0.0.0.0\n"
    assert api.startswith("  API      http://127.0.0.1:") and "0.0.0.0" not in api


def test_a_plugin_named_in_load_plugins_that_is_not_installed_is_a_warning(halguru_cmd, subprocess_env):
    proc = _run(halguru_cmd, {**subprocess_env, "HALGURU_LOAD_PLUGINS": "no-such-plugin"}, "plugins")
    assert proc.returncode == 0
    assert proc.stderr.strip() == ("halguru: warning: plugin 'no-such-plugin' skipped: not installed (named in "
                                   "HALGURU_LOAD_PLUGINS)")
    [row] = [line for line in proc.stdout.splitlines() if line.startswith("no-such-plugin ")]
    assert row.split(None, 2)[1:] == ["skipped", "not installed (named in HALGURU_LOAD_PLUGINS)"]


def test_an_unknown_tool_on_an_agent_without_tools_says_none(cli, write_agent):
    agent = write_agent("name: bare\nmodel: scripted:s.yaml\n")
    (agent / "s.yaml").write_text("- tool_calls: [{name: add, arguments: {a: 1}}]\n- done\n")
    result = cli("run", str(agent), "add")
    assert "unknown tool 'add'; available: none" in result.output


def test_load_plugins_is_read_from_the_environment_only(cli_error):
    """README, Configuration: HALGURU_HOME and HALGURU_LOAD_PLUGINS are not config.toml settings."""
    assert cli_error("config", "set", "load_plugins", "x").startswith("Error: unknown setting 'load_plugins'")


def test_run_with_nothing_on_stdin_is_an_error(cli_error, write_agent):
    agent = write_agent("name: echo\nmodel: scripted\n")
    assert cli_error("run", str(agent), "-") == "Error: no input on stdin ('-' reads the message from stdin)"


def test_run_reads_its_input_from_stdin(cli, write_agent):
    agent = write_agent("name: echo\nmodel: scripted\n")
    assert "You said: from stdin" in cli("run", str(agent), "-", input="from stdin\n").output


def test_kb_ingest_lists_each_skipped_file_on_one_line_when_piped(halguru_cmd, subprocess_env, tmp_path: Path):
    docs = tmp_path / "a-folder-with-a-rather-long-name-so-that-the-reason-would-wrap-at-eighty-columns"
    docs.mkdir()
    (docs / "link").symlink_to(tmp_path, target_is_directory=True)
    env = {**subprocess_env, "COLUMNS": "80"}
    assert _run(halguru_cmd, env, "kb", "create", "docs").returncode == 0
    proc = _run(halguru_cmd, env, "kb", "ingest", "docs", str(docs))
    assert proc.returncode == 0, proc.stderr
    [skipped] = [line for line in proc.stdout.splitlines() if line.startswith("  skipped ")]
    assert skipped.endswith("symlink to a folder (not followed; ingest its target instead)"), proc.stdout


def test_runs_list_says_whether_a_paused_run_still_waits(cli, write_agent):
    """A decided approval leaves its run `paused`; `runs list` said nothing more, as if it still waited."""
    agent = write_agent("name: mailer\nmodel: scripted:s.yaml\ntools: [send]\napprovals: [send]\n",
                        "from halguru import tool\n\n@tool\ndef send(to: str) -> str:\n"
                        "    \"\"\"Send.\"\"\"\n    return 'sent'\n")
    (agent / "s.yaml").write_text("- tool_calls: [{name: send, arguments: {to: ann}}]\n- done\n")
    cli("run", str(agent), "mail ann", code=3)
    from halguru.store import open_store

    [paused] = open_store().list_runs(limit=1)
    assert "waiting for approval" in cli("runs", "list", "--status", "paused").output
    cli("runs", "reject", paused["id"], "--reason", "no", code=3)  # the script asks again: paused again
    listed = cli("runs", "list", "--status", "paused").output.splitlines()
    [decided] = [line for line in listed if line.startswith(paused["id"])]
    assert "→ rejected, continued as run_" in decided
    assert sum("waiting for approval" in line for line in listed) == 1


MAILER = "name: mailer\nmodel: scripted:s.yaml\ntools: [send]\napprovals: [send]\n"
MAILER_TOOLS = ("from halguru import tool\n\n@tool\ndef send(to: str) -> str:\n"
                "    \"\"\"Send.\"\"\"\n    return 'sent'\n")


def test_runs_approve_works_from_another_folder_and_a_failed_load_keeps_it_pending(
        halguru_cmd, subprocess_env, tmp_path: Path):
    """The paused run stored the agent folder as typed (`mailer`): approving from elsewhere failed to load it
    and the approval was used up anyway."""
    work = tmp_path / "work"
    (work / "mailer").mkdir(parents=True)
    (work / "mailer" / "agent.yaml").write_text(MAILER)
    (work / "mailer" / "tools.py").write_text(MAILER_TOOLS)
    (work / "mailer" / "s.yaml").write_text("- tool_calls: [{name: send, arguments: {to: ann}}]\n- done\n")

    def halguru(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*halguru_cmd, *args], capture_output=True, text=True, env=subprocess_env,
                              timeout=120, cwd=cwd, start_new_session=True)

    assert halguru("run", "mailer", "mail ann", cwd=work).returncode == 3
    assert halguru("run", "mailer", "mail bob", cwd=work).returncode == 3
    from halguru.orchestration.approvals import list_pending

    first, second = (p["run_id"] for p in sorted(list_pending(), key=lambda p: p["created"]))
    proc = halguru("runs", "approve", first, cwd=tmp_path)  # another folder
    assert "← sent" in proc.stderr, proc.stderr  # (the script starts over, so the continuation asks again: 3)
    assert proc.returncode == 3

    (work / "mailer").rename(work / "moved")  # now the agent cannot load: nothing is used up
    proc = halguru("runs", "approve", second, cwd=work)
    assert proc.returncode == 1 and proc.stderr.startswith("Error: ") and len(proc.stderr.splitlines()) == 1
    assert second in [p["run_id"] for p in list_pending()]


def test_config_set_default_model_checks_the_model(cli, cli_error):
    """`config set` "checks and saves": an unknown default_model was saved, and every `model: default` failed."""
    assert cli_error("config", "set", "default_model", "nope").startswith("Error: unknown model 'nope'")
    assert "nope" not in cli("config", "show").output
    cli("config", "set", "default_model", "scripted")
    assert cli("models", "default").output.strip() == "scripted"


def test_run_refuses_another_agents_conversation_like_chat(cli, cli_error, write_agent):
    one = write_agent("name: one\nmodel: scripted\n", name="one")
    two = write_agent("name: two\nmodel: scripted\n", name="two")
    cli("run", str(one), "Hi")
    from halguru.store import open_store

    [run] = open_store().list_runs(limit=1)
    line = cli_error("run", str(two), "Hi", "--conversation", run["conversation_id"])
    assert line == f"Error: conversation {run['conversation_id']} belongs to agent 'one', not 'two'"
    assert "You said: again" in cli("run", str(one), "again", "--conversation", run["conversation_id"]).output


def test_conversation_last_continues_the_agents_latest_conversation(cli, cli_error, write_agent, halguru_cmd,
                                                                    subprocess_env):
    """`-c last` picks up where the agent's latest conversation left off (as `llm -c`), in run and chat."""
    one = write_agent("name: one\nmodel: scripted\n", name="one")
    two = write_agent("name: two\nmodel: scripted\n", name="two")
    assert cli_error("run", str(one), "Hi", "-c", "last") == (
        "Error: agent 'one' has no conversation yet; leave out --conversation to start one")
    cli("run", str(one), "first")
    cli("run", str(two), "other agent's")
    cli("run", str(one), "second", "-c", "last")
    from halguru.store import open_store

    store = open_store()
    [latest] = store.list_conversations(1, "one")
    assert [m.content for m in store.get_messages(latest["id"]) if m.role == "user"] == ["first", "second"]
    proc = subprocess.run([*halguru_cmd, "chat", str(one), "-c", "last"], input="third\n/history\n", text=True,
                          capture_output=True, env=subprocess_env, timeout=60)
    assert proc.returncode == 0 and latest["id"] in proc.stdout + proc.stderr
    assert [m.content for m in store.get_messages(latest["id"]) if m.role == "user"] == ["first", "second", "third"]


def test_run_and_chat_take_sampling_settings_for_one_run(cli, write_agent, halguru_cmd, subprocess_env):
    """`--temperature`, `--max-tokens` and `--seed` override the agent's sampling for that run only."""
    import json

    agent = write_agent("name: one\nmodel: scripted\nsampling: {temperature: 0.7}\n", name="one")
    events = [json.loads(line) for line in cli("run", str(agent), "Hi", "--json", "-t", "0", "--max-tokens", "9",
                                                "--seed", "4").output.splitlines()]
    [call] = [e for e in events if e["type"] == "model_call"]
    assert (call["settings"]["temperature"], call["settings"]["max_tokens"], call["settings"]["seed"]) == (0, 9, 4)
    events = [json.loads(line) for line in cli("run", str(agent), "Hi", "--json").output.splitlines()]
    [call] = [e for e in events if e["type"] == "model_call"]
    assert (call["settings"]["temperature"], call["settings"]["max_tokens"]) == (0.7, 512)
    bad = subprocess.run([*halguru_cmd, "run", str(agent), "Hi", "-t", "3"], capture_output=True, text=True,
                         env=subprocess_env, timeout=60)
    assert bad.returncode == 2 and "Invalid value for '--temperature'" in bad.stderr
    proc = subprocess.run([*halguru_cmd, "chat", str(agent), "--max-tokens", "5"], input="hello\n", text=True,
                          capture_output=True, env=subprocess_env, timeout=60)
    from halguru.store import open_store

    store = open_store()
    [run] = store.list_runs(limit=1)
    [call] = [e for e in store.get_events(run["id"]) if e["type"] == "model_call"]
    assert proc.returncode == 0 and call["settings"]["max_tokens"] == 5


TEST_FILE = "tests:\n  - name: hello\n    turns:\n      - user: Hi\n        expect: {contains: Hi}\n"


def test_eval_with_a_model_that_cannot_be_reached_exits_1_naming_it(halguru_cmd, subprocess_env, write_agent):
    """Every run failed (no server), yet eval scored it 0%, exited 0, and drew `openai:x` as an emoji."""
    agent = write_agent("name: echo\nmodel: scripted\n")
    (agent / "tests").mkdir()
    (agent / "tests" / "test_hello.yaml").write_text(TEST_FILE)
    env = {**subprocess_env, "OPENAI_BASE_URL": "http://127.0.0.1:1/v1", "OPENAI_API_KEY": "k"}
    proc = _run(halguru_cmd, env, "eval", str(agent), "--models", "scripted,openai:x")
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "❌" not in proc.stdout + proc.stderr and "openai:x: running 1 test(s) live" in proc.stderr
    [error] = [line for line in proc.stderr.splitlines() if line.startswith("Error: ")]
    assert error.startswith("Error: openai:x: every run failed: cannot reach http://127.0.0.1:1/v1")
    # `halguru models list` does not show where openai:MODEL goes: the hint named it all the same
    assert error.endswith("is the server running? OPENAI_BASE_URL sets it for openai:MODEL")
    assert "scripted  100% (1/1)" in proc.stdout


def test_eval_without_tests_or_project_is_one_line(cli_error, halguru_cmd, subprocess_env, write_agent, tmp_path):
    assert cli_error("eval", str(tmp_path / "nope"), "--models", "scripted").endswith(
        "nope: no such agent project (a folder with agent.yaml)")
    agent = write_agent("name: bare\nmodel: scripted\n")
    proc = _run(halguru_cmd, subprocess_env, "eval", str(agent), "--models", "scripted")
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-1] == f"Error: no conversation tests found in {agent / 'tests'} (files named " \
        "test_*.yaml)"


def test_logs_conversations_refuses_the_run_filters_it_would_ignore(cli, cli_error):
    assert cli_error("logs", "--conversations", "--status", "failed") == (
        "Error: --status: filter runs, not --conversations (which takes --agent, --all, --limit and --json)")
    assert cli("logs", "--conversations", "--agent", "nope").output.strip() == "No conversations of agent 'nope'."


def test_serve_approve_with_bad_edit_args_is_422_and_the_run_stays_pending(write_agent, tmp_path: Path):
    """Over HTTP a bad edit was a 409 `conflict` naming the CLI's `--edit-args`."""
    from fastapi.testclient import TestClient
    from halguru_server import ServerSettings, create_app

    agent = write_agent(MAILER, MAILER_TOOLS, name="mailer")
    (agent / "s.yaml").write_text("- tool_calls: [{name: send, arguments: {to: ann}}]\n- done\n")
    with TestClient(create_app(ServerSettings(agents=[agent], dev=True)), base_url="http://127.0.0.1") as client:
        conv = client.post("/v1/conversations", json={"agent": "mailer"}).json()["id"]
        paused = client.post(f"/v1/conversations/{conv}/messages", json={"content": "mail ann"}).json()
        assert paused["status"] == "paused"
        bad = client.post(f"/v1/runs/{paused['run_id']}/approve", json={"edit_args": {"to": 5}})
        assert bad.status_code == 422, bad.text
        assert bad.json()["error"] == {"type": "invalid_request", "message": (
            f"edit_args: invalid arguments for send: to: Input should be a valid string; "
            f"run {paused['run_id']} is still waiting for approval")}
        assert [p["run_id"] for p in client.get("/v1/runs/pending").json()["data"]] == [paused["run_id"]]


def test_run_with_an_empty_message_is_one_line(cli_error, write_agent):
    folder = write_agent("name: basic\nmodel: scripted\n")
    for message in ("", "   ", "\u200b\u200b"):
        line = cli_error("run", str(folder), message)
        assert line == "Error: the message is empty; give the agent something to answer"
