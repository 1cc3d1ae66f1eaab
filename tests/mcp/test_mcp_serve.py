"""`halguru mcp serve`: agents as MCP tools, called with the official SDK's client (in process, stdio, HTTP)."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mcp import Client, StdioServerParameters, stdio_client

from halguru import __version__
from halguru.errors import AgentSpecError, HalguruError
from halguru.mcp_server import build_server
from halguru.store import open_store
from tests.mcp.conftest import background, free_port

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def helper(write_agent) -> Path:
    return write_agent("name: helper\ndescription: Answers questions.\nmodel: scripted\n", name="helper")


@pytest.fixture
def broken(write_agent, tmp_path: Path) -> Path:
    script = tmp_path / "broken.yaml"
    script.write_text(yaml.safe_dump([{"error": "the model exploded"}]))
    return write_agent(f"name: broken\nmodel: scripted:{script}\n", name="broken")


async def ask(client: Client, tool: str, **arguments: str) -> tuple[str, dict, bool]:
    result = await client.call_tool(tool, arguments)
    return "".join(b.text for b in result.content if b.type == "text"), result.structured_content, result.is_error


async def test_each_agent_is_a_tool_and_runs_are_recorded(helper: Path, broken: Path):
    async with Client(build_server([helper, broken])) as client:
        listed = {t.name: t for t in (await client.list_tools()).tools}
        assert sorted(listed) == ["ask_broken", "ask_helper"]
        # named, then described: "Ask Answers questions." read as nonsense
        assert listed["ask_helper"].description.startswith(
            "Ask the helper agent: Answers questions. Returns its answer")
        assert listed["ask_broken"].description.startswith("Ask the broken agent. Returns its answer")
        assert sorted(listed["ask_helper"].input_schema["properties"]) == ["conversation_id", "message"]
        assert listed["ask_helper"].input_schema["required"] == ["message"]

        text, ids, is_error = await ask(client, "ask_helper", message="hello")
        assert (text, is_error) == ("You said: hello", False)
        assert ids["answer"] == text
        again, ids2, _ = await ask(client, "ask_helper", message="more", conversation_id=ids["conversation_id"])
        assert again == "You said: more" and ids2["conversation_id"] == ids["conversation_id"]
        store = open_store()
        assert [m.content for m in store.get_messages(ids["conversation_id"])] == [
            "hello", "You said: hello", "more", "You said: more"]
        assert store.get_run(ids2["run_id"])["status"] == "ok"

        text, _, is_error = await ask(client, "ask_broken", message="hi")
        assert is_error and text.startswith("run run_") and "failed: the model exploded" in text
        # the conversation is named, so a caller can go on once the cause (an approval, say) is dealt with
        run_id = text.split()[1]
        assert f"(conversation_id {store.get_run(run_id)['conversation_id']})" in text
        text, _, is_error = await ask(client, "ask_helper", message="hi", conversation_id="conv_nope")
        assert is_error and "no conversation 'conv_nope'" in text and "leave conversation_id out" in text
        assert "--conversation" not in text  # a CLI flag an MCP client does not have
        runs = len(store.list_runs())
        for blank in ("", "  \n", "\u200b"):  # as `halguru run` and the REST API: no run on nothing
            text, _, is_error = await ask(client, "ask_helper", message=blank)
            assert is_error and "empty or only whitespace" in text
        assert len(store.list_runs()) == runs


async def test_bad_arguments_are_one_line_naming_each_field(helper: Path):
    async with Client(build_server([helper])) as client:
        runs = len(open_store().list_runs())
        for arguments, expected in [
            ({}, "invalid arguments for ask_helper: message: Field required"),
            ({"message": 5}, "invalid arguments for ask_helper: message: Input should be a valid string"),
            ({"message": "hi", "conversation_id": 7},
             "invalid arguments for ask_helper: conversation_id: Input should be a valid string"),
        ]:
            result = await client.call_tool("ask_helper", arguments)
            text = "".join(b.text for b in result.content if b.type == "text")
            assert result.is_error and text == expected  # not pydantic's report (its class, a docs link, 4 lines)
        assert len(open_store().list_runs()) == runs


def test_bad_projects_are_refused_before_serving(helper: Path, write_agent, tmp_path: Path):
    twin = write_agent("name: helper\nmodel: scripted\n", name="twin")
    with pytest.raises(HalguruError, match="two agents are named 'helper'"):
        build_server([helper, twin])
    with pytest.raises(AgentSpecError, match="no such agent project"):
        build_server([tmp_path / "missing"])


async def test_serve_over_stdio_as_a_subprocess(helper: Path, halguru_cmd, subprocess_env, tmp_path: Path):
    params = StdioServerParameters(command=halguru_cmd[0], args=[*halguru_cmd[1:], "mcp", "serve", str(helper)],
                                   env=subprocess_env)
    with (tmp_path / "serve.log").open("w") as log:
        async with Client(stdio_client(params, errlog=log)) as client:
            text, ids, is_error = await ask(client, "ask_helper", message="over stdio")
            info = client.server_info
    assert (text, is_error) == ("You said: over stdio", False)
    assert (info.name, info.version) == ("halguru", __version__)  # what a client shows of the server
    run = open_store().get_run(ids["run_id"])  # the server's runs land in the same HALGURU_HOME
    assert run["agent"] == "helper" and run["status"] == "ok"


async def test_serve_over_streamable_http(helper: Path, halguru_cmd, subprocess_env, tmp_path: Path):
    port = free_port()
    argv = [*halguru_cmd, "mcp", "serve", str(helper), "--http", "--port", str(port)]
    with background(argv, port, tmp_path / "serve.log", env=subprocess_env):
        async with Client(f"http://127.0.0.1:{port}/mcp") as client:
            text, _, is_error = await ask(client, "ask_helper", message="over http")
    assert (text, is_error) == ("You said: over http", False)
    assert "serving ask_helper at http://127.0.0.1:" in (tmp_path / "serve.log").read_text()


def test_serving_other_machines_needs_a_token(helper: Path, halguru_cmd, subprocess_env):
    """--host 0.0.0.0 served every agent, and the tools behind it, to anyone on the network, with no key at all."""
    argv = [*halguru_cmd, "mcp", "serve", str(helper), "--http", "--host", "0.0.0.0", "--port", str(free_port())]
    env = {k: v for k, v in subprocess_env.items() if k != "HALGURU_MCP_TOKEN"}
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        "Error: --host 0.0.0.0 lets other machines run the agents: set HALGURU_MCP_TOKEN (or `keyring set halguru "
        "HALGURU_MCP_TOKEN`) to a token clients must send as Authorization: Bearer <token>, or listen on 127.0.0.1"]
    short = subprocess.run(argv, capture_output=True, text=True, env={**env, "HALGURU_MCP_TOKEN": "hunter2"},
                           timeout=60)
    assert short.returncode == 1 and "HALGURU_MCP_TOKEN must be at least 16 characters" in short.stderr


async def test_a_token_is_asked_of_every_http_client(helper: Path, halguru_cmd, subprocess_env, tmp_path: Path):
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    token = "s3cret-token-of-32-characters-xx"
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    argv = [*halguru_cmd, "mcp", "serve", str(helper), "--http", "--port", str(port)]
    with background(argv, port, tmp_path / "serve.log", env={**subprocess_env, "HALGURU_MCP_TOKEN": token}):
        for wrong in ({}, {"Authorization": "Bearer not-the-token"}):
            refused = httpx2.post(url, headers={**wrong, "Accept": "application/json, text/event-stream"},
                                  json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
            assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
            assert refused.json()["error"]["message"] == (
                "unauthorized: send Authorization: Bearer <HALGURU_MCP_TOKEN>")
        async with (httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http,
                    Client(streamable_http_client(url, http_client=http)) as client):
            text, _, is_error = await ask(client, "ask_helper", message="with a token")
    assert (text, is_error) == ("You said: with a token", False)
    assert "clients send Authorization: Bearer <HALGURU_MCP_TOKEN>" in (tmp_path / "serve.log").read_text()


def test_help_does_not_import_the_mcp_sdk(subprocess_env):
    argv = [sys.executable, "-X", "importtime", "-m", "halguru", "mcp", "serve", "--help"]
    proc = subprocess.run(argv, capture_output=True, text=True, env=subprocess_env, timeout=60)
    assert proc.returncode == 0 and "--http" in proc.stdout, proc.stderr
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in proc.stderr.splitlines()
                if line.startswith("import time:") and "|" in line}
    assert "halguru" in imported and not imported & {"mcp", "mcp_types", "httpx2", "anyio", "starlette"}


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2"])
async def test_a_loopback_server_refuses_other_sites_pages(helper: Path, halguru_cmd, subprocess_env, tmp_path: Path,
                                                          host: str):
    """DNS rebinding: on 127.0.0.2 (any of 127/8 is this machine, and needs no token) a page of a site whose name
    resolved to that address ran the agents; the SDK protected only 127.0.0.1, localhost and ::1."""
    import httpx2

    port = free_port()
    url = f"http://{host}:{port}/mcp"
    argv = [*halguru_cmd, "mcp", "serve", str(helper), "--http", "--host", host, "--port", str(port)]
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "page", "version": "1"}}}
    env = {k: v for k, v in subprocess_env.items() if k != "HALGURU_MCP_TOKEN"}
    with background(argv, port, tmp_path / "serve.log", env=env, host=host):
        runs = len(open_store().list_runs())
        for attack, status in [({"Host": f"rebound.example:{port}"}, 421),
                               ({"Origin": f"http://rebound.example:{port}"}, 403)]:
            refused = httpx2.post(url, headers={**attack, "Accept": "application/json, text/event-stream"},
                                  json=initialize)
            assert refused.status_code == status, (attack, refused.text)
        async with Client(url) as client:  # the real client, which names the address it was given
            text, _, is_error = await ask(client, "ask_helper", message="from this machine")
    assert (text, is_error) == ("You said: from this machine", False)
    assert len(open_store().list_runs()) == runs + 1


async def test_a_long_ask_reports_progress_to_a_client_that_asks(write_agent, halguru_cmd, subprocess_env,
                                                                  tmp_path: Path):
    """A client that times a call out unless progress comes (the TypeScript SDK's resetTimeoutOnProgress, 60 s
    by default) gave up on any agent slower than that: `ask_<agent>` sent no notifications/progress at all."""
    script = tmp_path / "slow.yaml"
    script.write_text(yaml.safe_dump([{"text": " ".join(f"w{i}" for i in range(60)), "token_delay": 0.06}]))
    slow = write_agent(f"name: slow\nmodel: scripted:{script}\n", name="slow")
    params = StdioServerParameters(command=halguru_cmd[0], args=[*halguru_cmd[1:], "mcp", "serve", str(slow)],
                                   env=subprocess_env)
    told: list[tuple[float, str | None]] = []

    async def progress(value: float, total: float | None, message: str | None) -> None:
        told.append((value, message))

    with (tmp_path / "serve.log").open("w") as log:
        async with Client(stdio_client(params, errlog=log)) as client:
            result = await client.call_tool("ask_slow", {"message": "take your time"}, progress_callback=progress)
    assert not result.is_error
    run_id = result.structured_content["run_id"]
    values, messages = [v for v, _ in told], [m or "" for _, m in told]
    assert values == sorted(set(values)) and len(values) >= 4  # increasing, as the spec asks
    assert messages[0].startswith(f"run {run_id} · slow") and "take your time" in messages[0]
    assert any(m.startswith("model_call") for m in messages)
    writing = [m for m in messages if m.startswith("writing: ")]
    assert writing and all(m.endswith(" tokens so far") for m in writing) and len(writing) < 10  # not one a token
    assert messages[-1].startswith("run_finished ok")


async def test_an_agents_mcp_servers_run_once_for_many_asks(mcp_agent, halguru_cmd, subprocess_env, tmp_path: Path):
    """Each ask started the agent's MCP servers and stopped them after (2.3 s a call for one small server): they
    are kept running between calls, as `halguru serve` keeps them, and stopped when serving ends."""
    import os

    script = tmp_path / "script.yaml"
    script.write_text(yaml.safe_dump([{"tool_calls": [{"name": "add", "arguments": {"a": 1, "b": 2}}]}, "three"] * 3))
    folder = mcp_agent(f"name: adder\nmodel: scripted:{script}\nmcp:\n  - name: files\n    command: [PYTHON, "
                       "server.py]\n    timeout: 30\n", name="adder")
    pids = tmp_path / "pids"  # the server notes its pid at each start
    (folder / "server.py").write_text((folder / "server.py").read_text().replace(
        'Path("server.pid").write_text(str(os.getpid()))',
        f'Path("server.pid").write_text(str(os.getpid())); open({str(pids)!r}, "a").write(f"{{os.getpid()}}\\n")'))
    params = StdioServerParameters(command=halguru_cmd[0], args=[*halguru_cmd[1:], "mcp", "serve", str(folder)],
                                   env=subprocess_env)
    with (tmp_path / "serve.log").open("w") as log:
        async with Client(stdio_client(params, errlog=log)) as client:
            answers = [await ask(client, "ask_adder", message=f"one plus two, take {n}") for n in range(3)]
            (pid,) = [int(line) for line in pids.read_text().split()]  # one start for the three asks
            os.kill(pid, 0)  # running between them
    assert [(text, is_error) for text, _, is_error in answers] == [("three", False)] * 3
    runs = [open_store().get_events(ids["run_id"]) for _, ids, _ in answers]
    assert all([e["type"] for e in events if e["type"] == "error"] == [] for events in runs)
    for _ in range(100):  # stopped with the server that served them
        if not os.path.exists(f"/proc/{pid}") or "State:\tZ" in Path(f"/proc/{pid}/status").read_text():
            break
        await asyncio.sleep(0.1)
    else:
        pytest.fail("the agent's MCP server outlived `halguru mcp serve`")


def _children_running(argv_part: str) -> list[int]:
    """This process's children whose command line holds ``argv_part`` (zombies left out)."""
    import os

    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[1]) == os.getpid() and argv_part in cmdline:
            found.append(int(stat.parent.name))
    return found


async def test_sigterm_stops_a_stdio_server_at_once_with_its_run_stored(write_agent, halguru_cmd, subprocess_env,
                                                                          tmp_path: Path):
    """SIGTERM (a supervisor, an IDE stopping it) while the client kept stdin open: the SDK's thread blocked reading
    stdin kept `halguru mcp serve` for 20 s, until SIGTERM's grace ran out and it was killed (exit -15)."""
    import os
    import signal
    import time

    script = tmp_path / "slow.yaml"
    script.write_text(yaml.safe_dump([{"text": " ".join(f"w{i}" for i in range(400)), "token_delay": 0.05}]))
    slow = write_agent(f"name: slow\nmodel: scripted:{script}\n", name="slow")
    params = StdioServerParameters(command=halguru_cmd[0], args=[*halguru_cmd[1:], "mcp", "serve", str(slow)],
                                   env=subprocess_env)
    store = open_store()
    with (tmp_path / "serve.log").open("w") as log:
        async with Client(stdio_client(params, errlog=log)) as client:
            asking = asyncio.ensure_future(client.call_tool("ask_slow", {"message": "a long one"}))
            for _ in range(300):  # its run has started
                if store.list_runs():
                    break
                await asyncio.sleep(0.05)
            (pid,) = _children_running(f"mcp serve {slow}")
            os.kill(pid, signal.SIGTERM)
            stopped = time.monotonic()
            while _children_running(f"mcp serve {slow}") and time.monotonic() - stopped < 30:
                await asyncio.sleep(0.05)
            took = time.monotonic() - stopped
            asking.cancel()
            with contextlib.suppress(BaseException):
                await asking
    assert took < 8, f"it took {took:.1f}s to stop"
    [run] = store.list_runs()
    assert (run["status"], run["error"]) == ("cancelled", "cancelled by the user")


async def _ask_then_stop(write_agent, halguru_cmd, subprocess_env, tmp_path: Path, words: int,
                         *options: str) -> tuple[object, float, int | None]:
    """An ask over HTTP whose serving process gets SIGTERM once its run started: the call's result (or the
    exception the client got), seconds from the signal to the process's exit, and its exit status."""
    import os
    import signal
    import time

    script = tmp_path / "slow.yaml"
    script.write_text(yaml.safe_dump([{"text": " ".join(f"w{i}" for i in range(words)), "token_delay": 0.05}]))
    slow = write_agent(f"name: slow\nmodel: scripted:{script}\n", name="slow")
    port = 26500 + os.getpid() % 400
    argv = [*halguru_cmd, "mcp", "serve", str(slow), "--http", "--port", str(port), *options]
    store = open_store()
    with (tmp_path / "serve.log").open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=subprocess_env,
                                start_new_session=True)
    try:
        from tests.mcp.conftest import wait_for_port

        wait_for_port(port, proc, tmp_path / "serve.log")
        async with Client(f"http://127.0.0.1:{port}/mcp") as client:
            await client.list_tools()  # as clients do first: the SDK's lists them after a call otherwise, which a
            # stopping server (no new connections) cannot answer, and the call's answer is lost with it
            asking = asyncio.ensure_future(client.call_tool("ask_slow", {"message": "a long one"}))
            for _ in range(300):  # its run has started
                if store.list_runs():
                    break
                await asyncio.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            stopped = time.monotonic()
            try:
                got: object = await asyncio.wait_for(asking, 40)
            except BaseException as exc:  # what the client got is the finding
                got = exc
        while proc.poll() is None and time.monotonic() - stopped < 40:
            await asyncio.sleep(0.05)
        return got, time.monotonic() - stopped, proc.poll()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_stopping_http_serving_lets_the_asks_in_flight_finish(write_agent, halguru_cmd, subprocess_env,
                                                                     tmp_path: Path):
    """SIGTERM while an ask runs: it finishes within the grace period and its caller gets the answer."""
    got, took, code = await _ask_then_stop(write_agent, halguru_cmd, subprocess_env, tmp_path, 60)
    assert not isinstance(got, BaseException), repr(got)
    assert not got.is_error and got.content[0].text.startswith("w0 w1")
    [run] = open_store().list_runs()
    assert run["status"] == "ok"
    assert code is not None and took < 15
    assert "1 call in flight, given 30s to finish" in (tmp_path / "serve.log").read_text()


async def test_an_ask_past_the_grace_period_is_interrupted_not_cancelled(write_agent, halguru_cmd, subprocess_env,
                                                                          tmp_path: Path):
    """Past the grace period a run was stored `cancelled` ("cancelled by the user", whom nothing had asked), and
    serving waited for it as long as the client did."""
    got, took, code = await _ask_then_stop(write_agent, halguru_cmd, subprocess_env, tmp_path, 800,
                                           "--shutdown-timeout", "1")
    [run] = open_store().list_runs()
    assert run["status"] == "interrupted" and run["error"].startswith("interrupted by server shutdown")
    assert not isinstance(got, BaseException), repr(got)
    assert got.is_error and f"run {run['id']} interrupted: interrupted by server shutdown" in got.content[0].text
    assert code is not None and took < 10


async def test_an_agent_whose_name_no_client_takes_as_a_tool_name_is_offered_under_one(write_agent):
    """`support.bot` (a valid agent name) was offered as `ask_support.bot`, which OpenAI, Anthropic and halguru's
    own MCP client refuse (a tool name is 1 to 64 letters, digits, '_' or '-'): no model could call it."""
    dotted = write_agent("name: support.bot\nmodel: scripted\n", name="dotted")
    long = write_agent(f"name: {'x' * 70}\nmodel: scripted\n", name="long")
    async with Client(build_server([dotted, long])) as client:
        listed = {t.name: t for t in (await client.list_tools()).tools}
        assert sorted(listed) == ["ask_support_bot", "ask_" + "x" * 60]
        assert listed["ask_support_bot"].description.startswith("Ask the support.bot agent")
        text, ids, is_error = await ask(client, "ask_support_bot", message="hello")
    assert (text, is_error) == ("You said: hello", False)
    assert open_store().get_run(ids["run_id"])["agent"] == "support.bot"


def test_two_agents_with_one_tool_name_are_refused(write_agent):
    one = write_agent("name: support.bot\nmodel: scripted\n", name="one")
    other = write_agent("name: support_bot\nmodel: scripted\n", name="other")
    with pytest.raises(HalguruError, match=r"agents 'support.bot' and 'support_bot' would both be the tool "
                                           r"ask_support_bot"):
        build_server([one, other])


def test_a_project_named_twice_is_served_once(helper: Path):
    """`halguru mcp serve helper ./helper/` was refused as "two agents are named 'helper' (helper and helper);
    tool names must differ": one project, whose name needs no change."""
    from halguru.mcp_server import load_agents

    assert list(load_agents([helper, helper.parent / "." / helper.name / "agent.yaml"])) == ["helper"]

