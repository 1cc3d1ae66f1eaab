"""MCP servers without an allow-list whose tools share a name with the agent's or another server's: which one the
model gets is defined (the agent's own, then the server listed first), and each one left out is one line naming
both, at run time and in `halguru validate`."""

from __future__ import annotations

import sys

import pytest

from halguru import run_sync
from halguru.models.scripted import ScriptedModel
from tests.mcp.test_mcp_tools import call, of_type
from tests.test_validate import error_of

pytestmark = pytest.mark.timeout(120)

# A second server offering tools named like the first server's (add) and like a built-in tool (calculator)
CALC_SERVER = '''\
from mcp.server.mcpserver import MCPServer

server = MCPServer("calc", log_level="WARNING")


@server.tool()
def add(a: int, b: int) -> int:
    """Not the files server's add."""
    return 1000 + a * b


@server.tool()
def calculator(expression: str) -> str:
    """Not halguru's calculator."""
    return "the server's calculator"


@server.tool()
def mul(a: int, b: int) -> int:
    """Only this server has it."""
    return a * b


if __name__ == "__main__":
    server.run()
'''
AGENT = f"""\
name: clash
model: scripted
tools: [calculator]
mcp:
  - name: files
    command: [{sys.executable}, server.py]
    timeout: 20
  - name: calc
    command: [{sys.executable}, calc.py]
    timeout: 20
"""
LEFT_OUT = [
    "mcp server 'calc': tool 'add' is not offered: mcp server 'files' (listed before) has a tool of that "
    "name, which comes first",
    "mcp server 'calc': tool 'calculator' is not offered: the agent has a tool of that name, which comes first",
]


@pytest.fixture
def clash(mcp_agent):
    folder = mcp_agent(AGENT)
    (folder / "calc.py").write_text(CALC_SERVER, encoding="utf-8")
    return folder


def test_a_tool_two_servers_offer_is_the_first_s_and_the_other_is_named(clash):
    """The second server's add was said to have 'the name of another tool of this agent', which the agent does
    not have: it was the first server's, and neither was named."""
    model = ScriptedModel(
        [call("add", a=2, b=3), call("calculator", "c2", expression="2*3"), call("mul", "c3", a=2, b=3), "done"]
    )
    result = run_sync(clash, "go", model=model)
    assert result.ok, result.error
    assert sorted(e.message for e in of_type(result, "error")) == LEFT_OUT
    assert {e.kind for e in of_type(result, "error")} == {"mcp"}
    tools = of_type(result, "model_call")[0].tools
    assert len(tools) == len(set(tools)) and {"add", "calculator", "mul", "shout"} <= set(tools)
    assert [r.content for r in of_type(result, "tool_result")] == ["5", "6", "6"]  # files' add, halguru's calculator


def test_validate_names_both_as_the_run_does(cli, clash):
    assert error_of(cli, "validate", str(clash)) == f"{clash}/agent.yaml:8: mcp.1: {LEFT_OUT[0]}"


def test_a_secret_in_a_servers_command_is_refused_with_the_way_to_pass_it(cli, tmp_path):
    """`command: [server, --token, "${TOKEN}"]` started the server with the six characters ${TOKEN} as its token
    (only env: and headers: read secrets): it failed later, with the server's own words about a bad token."""
    folder = tmp_path / "argy"
    folder.mkdir()
    (folder / "agent.yaml").write_text('name: argy\nmodel: scripted\nmcp:\n  - name: files\n'
                                       '    command: [server, --token, "${TOKEN}"]\n')
    message = error_of(cli, "validate", str(folder))
    assert "mcp.0.command" in message and "${TOKEN} is not read in a command" in message
    assert 'env: {TOKEN: "${TOKEN}"}' in message


def test_two_servers_of_one_name_are_refused(cli, tmp_path):
    """Two `mcp:` servers named `files` were both started: every error and trace line said "mcp server 'files'",
    and `halguru validate` put a problem of the second at the first's line."""
    folder = tmp_path / "twice"
    folder.mkdir()
    (folder / "agent.yaml").write_text("name: twice\nmodel: scripted\nmcp:\n  - name: files\n    command: [a]\n"
                                       "  - name: files\n    command: [b]\n")
    message = error_of(cli, "validate", str(folder))
    assert message.endswith("two mcp servers are named 'files'; give each its own name (errors and traces name "
                            "the server)")
    assert "agent.yaml:" in message
