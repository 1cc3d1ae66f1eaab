"""Serve mode keeps MCP servers running between requests (a request does not pay a server's start),
starts a crashed one again, and stops them all when it stops."""

from __future__ import annotations

import asyncio
import os
import re
import time
from pathlib import Path

import httpx
import pytest
import yaml

from halguru import load_agent, run
from halguru.models.scripted import ScriptedModel
from halguru.tools import mcp
from halguru.tools.mcp import keep_servers_running, stop_kept_servers
from tests.server.conftest import Server, free_port

pytestmark = pytest.mark.timeout(120)

AGENT = """\
name: mcpuser
model: scripted:{script}
mcp:
  - name: files
    command: [PYTHON, server.py]
    tools: [add, crash]
    timeout: 20
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not Path(f"/proc/{pid}/status").read_text().count("State:\tZ")


def ask(server: Server, script: Path, call: str) -> dict:
    script.write_text(yaml.safe_dump([{"tool_calls": [{"name": call, "arguments": {"a": 1, "b": 2}
                                                        if call == "add" else {}}]}, "done"]))
    conv = httpx.post(f"{server.url}/v1/conversations", json={"agent": "mcpuser"}).json()["id"]
    answer = httpx.post(f"{server.url}/v1/conversations/{conv}/messages", json={"content": "go"}, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_serve_mode_reuses_mcp_servers_and_restarts_a_crashed_one(mcp_agent, tmp_path: Path):
    from halguru_server import ServerSettings, create_app

    script = tmp_path / "script.yaml"
    folder = mcp_agent(AGENT.format(script=script), name="mcpuser")
    server = Server(create_app(ServerSettings(agents=[folder], dev=True)), free_port()).start()
    try:
        first = ask(server, script, "add")
        assert first["status"] == "ok"
        pid = int((folder / "server.pid").read_text())
        second = ask(server, script, "add")
        assert second["status"] == "ok" and int((folder / "server.pid").read_text()) == pid  # the same process
        assert alive(pid)

        crashed = ask(server, script, "crash")  # the tool error names the server; the run still ends ok
        assert crashed["status"] == "ok"
        deadline = time.monotonic() + 10
        while alive(pid):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        again = ask(server, script, "add")
        assert again["status"] == "ok"
        new_pid = int((folder / "server.pid").read_text())
        assert new_pid != pid and alive(new_pid)  # started again for the next request
    finally:
        server.stop()
    deadline = time.monotonic() + 15
    while alive(new_pid):
        assert time.monotonic() < deadline, "the MCP server outlived `halguru serve`"
        time.sleep(0.05)


def test_a_chat_keeps_its_mcp_server_across_turns_and_stops_it_on_exit(mcp_agent, tmp_path: Path, halguru_cmd,
                                                                        subprocess_env):
    import subprocess

    script = tmp_path / "script.yaml"
    script.write_text(yaml.safe_dump([{"tool_calls": [{"name": "add", "arguments": {"a": 1, "b": 2}}]}, "three",
                                      {"tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 2}}]}, "four"]))
    folder = mcp_agent(AGENT.format(script=script), name="mcpuser")
    pids = tmp_path / "pids"
    # The server records its pid at each start: one start for the whole chat.
    (folder / "server.py").write_text((folder / "server.py").read_text().replace(
        'Path("server.pid").write_text(str(os.getpid()))',
        f'Path("server.pid").write_text(str(os.getpid())); open({str(pids)!r}, "a").write(f"{{os.getpid()}}\\n")'))
    proc = subprocess.run([*halguru_cmd, "chat", str(folder)], input="one plus two\ntwo plus two\n/exit\n",
                          capture_output=True, text=True, env=subprocess_env, timeout=90)
    assert proc.returncode == 0, proc.stderr
    assert "three" in proc.stdout and "four" in proc.stdout and "adding" not in proc.stdout + proc.stderr
    (pid,) = [int(line) for line in pids.read_text().split()]
    assert not alive(pid)



async def ask_in_process(folder: Path, tool: str = "add", **arguments: float) -> None:
    model = ScriptedModel([{"tool_calls": [{"name": tool, "arguments": arguments or {"a": 1, "b": 2}}]}, "done"])
    async for event in run(load_agent(folder), "go", model=model):
        assert event.type != "error", event


async def test_a_kept_server_no_run_uses_is_stopped_and_one_in_use_is_not(mcp_agent, monkeypatch):
    """Each published version of an agent has its own folder, so its own kept servers: the replaced versions'
    kept running (one process per version) until `halguru serve` stopped."""
    monkeypatch.setattr("halguru.tools.mcp.IDLE_STOP", 1.0, raising=False)  # 10 minutes, shortened
    yaml_text = ("name: mcpuser\nmodel: scripted\nmcp:\n"
                 "  - {name: files, command: [PYTHON, server.py], tools: [add, nap]}\n")
    old, new = mcp_agent(yaml_text, name="v1"), mcp_agent(yaml_text, name="v2")  # as two published versions
    keep_servers_running()
    try:
        await ask_in_process(old)
        old_pid = int((old / "server.pid").read_text())
        napping = asyncio.create_task(ask_in_process(old, "nap", seconds=3.0))  # in use past the idle time
        # once its run holds the server (on a loaded machine that run may take a while to start: a fixed wait
        # let the next ask find it unused and stop it), and past the idle time since the first run
        pool, deadline = mcp._POOLS[asyncio.get_running_loop()], time.monotonic() + 30
        while not any(server.users > 0 for server in pool.servers.values()):
            assert time.monotonic() < deadline, "the napping run never took its server"
            await asyncio.sleep(0.02)
        await asyncio.sleep(1.2)
        await ask_in_process(new)
        new_pid = int((new / "server.pid").read_text())
        assert alive(old_pid)  # a run still holds it
        await napping
        await asyncio.sleep(1.5)
        await ask_in_process(new)  # the old version's server has been unused for 1.5 s: stopped now
        deadline = time.monotonic() + 10
        while alive(old_pid):
            assert time.monotonic() < deadline, "an idle kept server was not stopped"
            await asyncio.sleep(0.05)
        assert alive(new_pid) and int((new / "server.pid").read_text()) == new_pid  # the one asked for: kept
    finally:
        await stop_kept_servers()
    assert not alive(new_pid)


async def test_a_kept_server_that_died_between_runs_is_started_again_for_the_next(mcp_agent):
    """A kept server killed while no run used it (for memory, say) cost the next run its first call: 'mcp server
    'files' stopped during add: connection closed', told to the model, from a server dead long before."""
    import signal

    folder = mcp_agent("name: mcpuser\nmodel: scripted\nmcp:\n  - {name: files, command: [PYTHON, server.py]}\n")
    keep_servers_running()
    try:
        await ask_in_process(folder)
        pid = int((folder / "server.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while alive(pid):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)  # its stdout's end reaches the transport
        await ask_in_process(folder)  # no error event: its call went to a server started again
        new_pid = int((folder / "server.pid").read_text())
        assert new_pid != pid and alive(new_pid)
    finally:
        await stop_kept_servers()
    assert not alive(new_pid)


HUNG = "import sys\nfor line in sys.stdin:\n    pass\n"  # reads every request, answers none


async def test_a_server_that_never_answers_costs_its_timeout_once_a_minute_not_each_run(tmp_path: Path, monkeypatch):
    """In serve mode (and chat, dev, mcp serve) a server that never answered made every run wait its whole timeout
    (30 s by default) before the model was called: each message of a chat took 30 s more."""
    import sys

    from halguru.agents.runtime import collect_result

    monkeypatch.setattr(mcp, "RETRY_AFTER", 3.0)
    folder = tmp_path / "hung"
    folder.mkdir()
    (folder / "hung.py").write_text(HUNG)
    (folder / "agent.yaml").write_text(f"name: hung\nmodel: scripted\nmcp:\n  - name: stuck\n    command: "
                                       f"[{sys.executable}, hung.py]\n    timeout: 1.5\n")
    keep_servers_running()
    took, said = [], []
    try:
        for i in range(3):
            if i == 2:
                await asyncio.sleep(3)  # RETRY_AFTER passed: tried again
            started = time.monotonic()
            result = await collect_result(run(folder, f"hi {i}", model=ScriptedModel([f"answer {i}"])))
            took.append(time.monotonic() - started)
            assert result.ok and result.output == f"answer {i}"
            [error] = [e.message for e in result.events if e.type == "error"]
            said.append(error)
    finally:
        await stop_kept_servers()
    assert took[0] >= 1.5 and took[1] < 1 and took[2] >= 1.5, took
    assert said[0] == said[2] == "mcp server 'stuck' failed to start: no answer within 1.5s (timeout)"
    assert said[1].startswith("mcp server 'stuck' failed to start: no answer within 1.5s (timeout) (")
    assert re.search(r"\(at its start \d+s ago; the next try is in \d+s\)$", said[1]), said[1]
