"""An MCP server offering hundreds of tools: each one's name, description and schema went into every model call
with no word of it (500 tools: a 30,000-token prompt for "hi", and over the 128 tools OpenAI accepts in a
request). Now the run and `halguru validate` say how many and what they cost, and point at the allow-list."""

from __future__ import annotations

import sys

import pytest

from halguru import run_sync
from halguru.models.scripted import ScriptedModel
from tests.mcp.test_mcp_tools import of_type

pytestmark = pytest.mark.timeout(120)

MANY_SERVER = '''\
from mcp.server.mcpserver import MCPServer

server = MCPServer("jira", log_level="WARNING")

for i in range(500):
    def tool(key: str, i: int = i) -> str:
        return f"tool {i}: {key}"
    server.add_tool(tool, name=f"op_{i}", description=f"Operation number {i} on an issue of the tracker.")

if __name__ == "__main__":
    server.run()
'''


def agent(tmp_path, allow: str = "") -> object:
    folder = tmp_path / "agent"
    folder.mkdir(exist_ok=True)
    (folder / "many.py").write_text(MANY_SERVER)
    (folder / "agent.yaml").write_text(f"name: tracker\nmodel: scripted\nmcp:\n  - name: jira\n    command: "
                                       f"[{sys.executable}, many.py]\n    timeout: 30\n{allow}")
    return folder


def test_a_server_offering_hundreds_of_tools_is_said_to_flood_the_prompt(tmp_path):
    result = run_sync(agent(tmp_path), "hi", model=ScriptedModel(["hello"]))
    assert result.ok and result.output == "hello"
    [warning] = [e for e in of_type(result, "error") if e.kind == "mcp"]
    assert not warning.fatal
    assert warning.message.startswith("mcp server 'jira' offers 500 tools, each sent to the model at every call (")
    assert "tokens" in warning.message and "tools: [op_0, op_1, ...]" in warning.message
    assert len(of_type(result, "model_call")[0].tools) == 500  # still offered: the warning only says so


def test_an_allow_list_is_not_warned_about(tmp_path):
    folder = agent(tmp_path, "    tools: [op_1, op_2]\n")
    result = run_sync(folder, "hi", model=ScriptedModel(["hello"]))
    assert result.ok and not of_type(result, "error")
    assert sorted(of_type(result, "model_call")[0].tools) == ["op_1", "op_2"]


def test_validate_warns_and_passes(cli, tmp_path):
    folder = agent(tmp_path)
    out = cli("validate", str(folder))
    assert "Warning: " in out.output and "mcp.0: mcp server 'jira' offers 500 tools" in out.output


BULKY_SERVER = '''\
import json
import sys

CITIES = {"type": "string", "enum": [f"city number {i}" for i in range(20000)]}  # every city of a country
TOOLS = [{"name": "weather", "description": "Weather in a city.",
          "inputSchema": {"type": "object", "properties": {"city": CITIES}}},
         {"name": "ping", "description": "Small.", "inputSchema": {"type": "object"}}]

for line in sys.stdin:
    message = json.loads(line)
    if "id" not in message:
        continue
    answer = {"jsonrpc": "2.0", "id": message["id"]}
    if message["method"] == "initialize":
        answer["result"] = {"protocolVersion": message["params"]["protocolVersion"], "capabilities": {"tools": {}},
                            "serverInfo": {"name": "geo", "version": "1"}}
    elif message["method"] == "tools/list":
        answer["result"] = {"tools": TOOLS}
    else:
        answer["error"] = {"code": -32601, "message": "method not found"}
    print(json.dumps(answer), flush=True)
'''


def test_a_tool_whose_schema_floods_the_prompt_is_named_even_when_allowed(tmp_path):
    folder = tmp_path / "geo"
    folder.mkdir()
    (folder / "geo.py").write_text(BULKY_SERVER)
    (folder / "agent.yaml").write_text(f"name: geo\nmodel: scripted\nmcp:\n  - name: geo\n    command: "
                                       f"[{sys.executable}, geo.py]\n    tools: [weather, ping]\n    timeout: 30\n")
    result = run_sync(folder, "hi", model=ScriptedModel(["hello"]))
    assert result.ok and sorted(of_type(result, "model_call")[0].tools) == ["ping", "weather"]
    [warning] = [e.message for e in of_type(result, "error") if e.kind == "mcp"]
    assert warning.startswith("mcp server 'geo': its tools' descriptions and schemas take about ")
    assert "tokens of every model call (weather alone about " in warning


def test_servers_that_together_pass_openais_limit_are_said_to(tmp_path):
    """Two allow-lists of 70 tools each: 140 tools in every request, which OpenAI refuses (at most 128), with no
    word before the first model call failed."""
    folder = agent(tmp_path)
    (folder / "more.py").write_text(MANY_SERVER.replace("op_", "act_"))
    ops = ", ".join(f"op_{i}" for i in range(70))
    acts = ", ".join(f"act_{i}" for i in range(70))
    (folder / "agent.yaml").write_text(
        f"name: tracker\nmodel: scripted\nmcp:\n  - name: jira\n    command: [{sys.executable}, many.py]\n"
        f"    tools: [{ops}]\n  - name: wiki\n    command: [{sys.executable}, more.py]\n    tools: [{acts}]\n")
    result = run_sync(folder, "hi", model=ScriptedModel(["hello"]))
    assert result.ok and len(of_type(result, "model_call")[0].tools) == 140
    [warning] = [e.message for e in of_type(result, "error") if e.kind == "mcp"]
    assert warning == ("mcp servers 'jira', 'wiki' offer 140 tools together, each sent to the model at every call; "
                       "OpenAI refuses more than 128 in a request: narrow their tools: lists")
