"""Agents calling tools of real MCP servers (stdio and streamable HTTP), through the runtime."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from halguru import load_agent, run, run_sync
from halguru.errors import AgentSpecError
from halguru.models.scripted import ScriptedModel
from halguru.orchestration.approvals import approve
from halguru.store import open_store
from tests.mcp.conftest import background, free_port

pytestmark = pytest.mark.timeout(120)

FILES = """\
name: mcpuser
model: scripted
mcp:
  - name: files
    command: [PYTHON, server.py]
    tools: [add, shout, send, crash]
    timeout: 20
"""


def call(name: str, call_id: str = "c1", **arguments) -> dict:
    return {"tool_calls": [{"id": call_id, "name": name, "arguments": arguments}]}


def of_type(result, kind: str) -> list:
    return [e for e in result.events if e.type == kind]


def test_agent_calls_an_mcp_tool_and_the_model_reads_its_result(mcp_agent):
    model = ScriptedModel([call("shout", text="hello"), "The server said HELLO!"])
    result = run_sync(mcp_agent(FILES), "shout hello", model=model)
    assert result.ok and result.output == "The server said HELLO!"
    assert not of_type(result, "error")
    first_call = of_type(result, "model_call")[0]
    assert sorted(first_call.tools) == ["add", "crash", "send", "shout"]  # the allow-list, nothing else
    [tool_result] = of_type(result, "tool_result")
    assert (tool_result.name, tool_result.content, tool_result.is_error) == ("shout", "HELLO!", False)
    assert model.requests[1].messages[-1].content == "HELLO!"  # the model's next call carries the result
    stored = [e["type"] for e in open_store().get_events(result.run_id)]
    assert "tool_result" in stored and stored[-1] == "run_finished"


def test_results_and_bad_arguments(mcp_agent):
    model = ScriptedModel([call("add", a=2, b=40), call("add", "c2", a="two"), "done"])
    result = run_sync(mcp_agent(FILES), "add", model=model)
    good, bad = of_type(result, "tool_result")
    assert good.content == "42" and not good.is_error
    assert bad.is_error and "invalid arguments for add" in bad.content  # checked against the server's schema
    assert result.ok


def test_the_allow_list_hides_the_other_tools(mcp_agent):
    folder = mcp_agent(FILES)
    model = ScriptedModel([call("secret_word"), "I cannot."])
    result = run_sync(folder, "the secret", model=model)
    assert result.ok and result.output == "I cannot."
    [tool_result] = of_type(result, "tool_result")
    assert tool_result.is_error and "unknown tool 'secret_word'" in tool_result.content
    assert not (folder / "secret_word.called").exists()  # never sent to the server


def test_a_server_that_fails_to_start_is_an_error_event_and_the_run_goes_on(mcp_agent):
    text = FILES + """\
  - name: broken
    command: [no-such-mcp-server-program, --stdio]
  - name: dies
    command: [PYTHON, -c, "import sys; sys.exit('missing config file')"]
"""
    model = ScriptedModel([call("shout", text="still here"), "ok"])
    result = run_sync(mcp_agent(text), "hi", model=model)
    assert result.ok and result.output == "ok"
    errors = {e.message.split(" failed to start")[0]: e for e in of_type(result, "error")}
    assert set(errors) == {"mcp server 'broken'", "mcp server 'dies'"}
    assert all(e.kind == "mcp" and not e.fatal for e in errors.values())
    assert "no-such-mcp-server-program" in errors["mcp server 'broken'"].message
    assert "missing config file" in errors["mcp server 'dies'"].message  # the last line of its stderr
    assert of_type(result, "tool_result")[0].content == "STILL HERE!"  # the working server still serves


def test_a_server_that_crashes_mid_call_is_an_error_and_the_run_ends_cleanly(mcp_agent):
    model = ScriptedModel([call("crash"), call("add", "c2", a=1, b=1), "The tool server is down."])
    result = run_sync(mcp_agent(FILES), "crash it", model=model)
    assert result.ok and result.output == "The tool server is down."
    crashed, after = of_type(result, "tool_result")
    assert crashed.is_error and "mcp server 'files' stopped during crash" in crashed.content
    assert "disk on fire" in crashed.content
    assert after.is_error and "mcp server 'files' is not running" in after.content
    assert [e.kind for e in of_type(result, "error")] == ["tool", "tool"]
    assert open_store().get_run(result.run_id)["status"] == "ok"


async def test_a_run_closed_from_another_task_stops_its_servers(mcp_agent):
    folder = mcp_agent(FILES)
    model = ScriptedModel([call("shout", text="x"), {"text": "a slow answer " * 20, "token_delay": 0.2}])
    stream = run(folder, "go", model=model)
    async for event in stream:
        if event.type == "token":
            break
    pid = int((folder / "server.pid").read_text())
    await asyncio.create_task(stream.aclose())  # e.g. a server whose client went away
    deadline = time.monotonic() + 10
    while _alive(pid):
        assert time.monotonic() < deadline, "the MCP server outlived its run"
        await asyncio.sleep(0.05)
    run_id = event.run_id
    assert open_store().get_run(run_id)["status"] == "cancelled"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie nobody reaps (PID 1 in a container may not) is dead too
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return True


# A server that starts a helper process (a language server, a browser) and exits when its stdin closes, as servers
# do, without stopping the helper.
HELPER_SERVER = '''\
import subprocess
import sys
from pathlib import Path

from mcp.server.mcpserver import MCPServer

helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
Path("helper.pid").write_text(str(helper.pid))
server = MCPServer("helped", log_level="WARNING")


@server.tool()
def ping() -> str:
    """Answers."""
    return "pong"


server.run()
'''


@pytest.mark.skipif(sys.platform == "win32", reason="process groups are POSIX")
def test_a_helper_process_a_server_started_does_not_outlive_the_run(mcp_agent):
    folder = mcp_agent("name: helped\nmodel: scripted\nmcp:\n  - name: helped\n    command: [PYTHON, helped.py]\n")
    (folder / "helped.py").write_text(HELPER_SERVER, encoding="utf-8")
    result = run_sync(folder, "ping", model=ScriptedModel([call("ping"), "pong it is"]))
    assert result.ok and of_type(result, "tool_result")[0].content == "pong"
    helper = int((folder / "helper.pid").read_text())
    deadline = time.monotonic() + 5
    while _alive(helper):
        if time.monotonic() > deadline:
            os.kill(helper, 9)
            pytest.fail("the server's helper process outlived the run")
        time.sleep(0.05)


def test_an_mcp_tool_under_approvals_pauses_the_run(mcp_agent):
    folder = mcp_agent(FILES + "approvals: [send]\n")
    model = ScriptedModel([call("send", to="ann"), "Sent to ann."])
    paused = run_sync(folder, "send it", model=model)
    assert paused.status == "paused" and not (folder / "sent.log").exists()
    assert of_type(paused, "approval_requested")[0].name == "send"
    done = approve(paused.run_id, model=model)
    assert done.ok and done.output == "Sent to ann."
    assert (folder / "sent.log").read_text() == "ann\n"
    assert of_type(done, "tool_result")[0].content == "sent to ann"


def test_approvals_may_name_mcp_tools_only_if_a_server_may_offer_them(mcp_agent):
    assert load_agent(mcp_agent(FILES + "approvals: [send]\n")).spec.approvals == ["send"]
    open_list = FILES.replace("    tools: [add, shout, send, crash]\n", "")
    assert load_agent(mcp_agent(open_list + "approvals: [anything]\n", name="open")).spec.approvals == ["anything"]
    with pytest.raises(AgentSpecError, match=r"approvals.0: 'rm_rf' is not one of"):
        load_agent(mcp_agent(FILES + "approvals: [rm_rf]\n", name="strict"))


def test_http_servers_that_cannot_be_reached_are_error_events(mcp_agent, tmp_path: Path):
    port, closed = free_port(), free_port()
    folder = mcp_agent(f"""\
name: webuser
model: scripted
mcp:
  - name: web
    url: http://127.0.0.1:{port}/mcp
    headers: {{X-Token: "${{MCP_TEST_TOKEN}}"}}
  - name: nobody
    url: http://127.0.0.1:{closed}/mcp
    timeout: 5
""")
    with background([sys.executable, str(folder / "server.py"), "--http", str(port)], port, tmp_path / "http.log"):
        result = run_sync(folder, "hello", record=False)
    # The header names a secret nobody set: that server is reported, and so is the one nobody listens on.
    missing, refused = (e.message for e in of_type(result, "error"))
    assert missing.startswith("mcp server 'web' failed to start: the secret MCP_TEST_TOKEN is not set")
    assert refused.startswith("mcp server 'nobody' failed to start") and f":{closed}/mcp" in refused
    assert result.ok and result.output == "You said: hello"
    assert of_type(result, "model_call")[0].tools == []


class _Refusing(BaseHTTPRequestHandler):
    """Answers every request with the status its path names: /401/mcp is a gateway refusing a wrong token."""

    def do_POST(self) -> None:
        self.send_response(int(self.path.split("/")[1]))
        self.send_header("content-length", "0")
        self.end_headers()

    do_GET = do_DELETE = do_POST

    def log_message(self, *args) -> None:
        pass


def test_an_http_error_status_is_named_when_a_server_does_not_start(mcp_agent):
    """A wrong token (401), a gateway with the server down (502) and an /sse URL all read 'Server returned an error
    response'."""
    with ThreadingHTTPServer(("127.0.0.1", 0), _Refusing) as http:
        threading.Thread(target=http.serve_forever, daemon=True).start()
        port = http.server_address[1]
        folder = mcp_agent("name: webuser\nmodel: scripted\nmcp:\n" + "".join(
            f"  - name: s{path.split('/')[0]}\n    url: http://127.0.0.1:{port}/{path}\n    timeout: 5\n"
            for path in ("401/mcp", "502/mcp", "405/sse")))
        result = run_sync(folder, "hello", record=False)
        http.shutdown()
    assert [e.message for e in of_type(result, "error")] == [
        f"mcp server 's401' failed to start: the server answered HTTP 401 Unauthorized "
        f"(http://127.0.0.1:{port}/401/mcp)",
        f"mcp server 's502' failed to start: the server answered HTTP 502 Bad Gateway "
        f"(http://127.0.0.1:{port}/502/mcp)",
        "mcp server 's405' failed to start: HTTP 405 Method Not Allowed: an /sse URL is the older HTTP+SSE "
        "transport, which halguru does not speak; give the server's streamable HTTP endpoint (often /mcp) "
        f"(http://127.0.0.1:{port}/405/sse)"]
    assert result.ok and result.output == "You said: hello"


class _CutShort(BaseHTTPRequestHandler):
    """A streamable HTTP server (JSON answers) whose answer is cut short: at the start (/start/mcp) or at a call."""

    def do_POST(self) -> None:
        import json

        message = json.loads(self.rfile.read(int(self.headers["content-length"])))
        if "id" not in message:  # a notification
            self.send_response(202)
            self.send_header("content-length", "0")
            self.end_headers()
            return
        answer: dict = {"jsonrpc": "2.0", "id": message["id"]}
        if message["method"] == "initialize":
            answer["result"] = {"protocolVersion": message["params"]["protocolVersion"],
                                "capabilities": {"tools": {}}, "serverInfo": {"name": "cut", "version": "1"}}
        elif message["method"] == "tools/list":
            answer["result"] = {"tools": [{"name": "garble", "inputSchema": {"type": "object"}}]}
        else:
            answer["error"] = {"code": -32601, "message": "method not found"}
        body = json.dumps(answer).encode()
        if message["method"] == "tools/call" or (self.path.startswith("/start") and message["method"] == "initialize"):
            body = body[:30]
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.send_response(405)
        self.send_header("content-length", "0")
        self.end_headers()

    do_DELETE = do_GET

    def log_message(self, *args) -> None:
        pass


def test_an_http_answer_cut_short_is_one_line(mcp_agent):
    """The SDK quotes pydantic's whole report (the input, a link to its docs): the trace and the model read four
    lines of it."""
    with ThreadingHTTPServer(("127.0.0.1", 0), _CutShort) as http:
        threading.Thread(target=http.serve_forever, daemon=True).start()
        port = http.server_address[1]
        folder = mcp_agent("name: webuser\nmodel: scripted\nmcp:\n" + "".join(
            f"  - name: {name}\n    url: http://127.0.0.1:{port}/{name}/mcp\n    timeout: 10\n"
            for name in ("start", "call")))
        model = ScriptedModel([call("garble"), "done"])
        result = run_sync(folder, "hello", model=model)
        http.shutdown()
    [start, failed] = [e.message for e in of_type(result, "error")]
    assert start == (f"mcp server 'start' failed to start: Failed to parse JSON response: Invalid JSON: EOF while "
                     f"parsing a string at line 1 column 30 (http://127.0.0.1:{port}/start/mcp)")
    [tool_result] = of_type(result, "tool_result")
    assert failed == ("mcp server 'call': garble failed: Failed to parse JSON response: Invalid JSON: EOF while "
                      "parsing a string at line 1 column 30")
    assert tool_result.is_error and tool_result.content == model.requests[1].messages[-1].content == (
        f"error: {failed}")  # what the trace shows and the model reads
    assert result.ok and result.output == "done"


def test_start_failures_do_not_quote_the_urls_credentials(mcp_agent):
    """A user:password (or a ?token=) in the url is not repeated in the error, which lands in traces."""
    closed = free_port()
    folder = mcp_agent(f"""\
name: webuser
model: scripted
mcp:
  - name: nobody
    url: http://ann:hunter2@127.0.0.1:{closed}/mcp?token=s3cret&v=1
    timeout: 5
""")
    result = run_sync(folder, "hello")
    [error] = (e.message for e in of_type(result, "error"))
    assert error.startswith("mcp server 'nobody' failed to start")
    assert f"(http://***@127.0.0.1:{closed}/mcp?token=***&v=***)" in error
    stored = str(open_store().get_events(result.run_id))
    assert not {"ann", "hunter2", "s3cret"} & set(re.findall(r"\w+", error + stored))
    assert result.ok


def test_streamable_http_server_with_a_secret_header(mcp_agent, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("MCP_TEST_TOKEN", "t0k3n")
    port = free_port()
    folder = mcp_agent(f"""\
name: webuser
model: scripted
mcp:
  - name: web
    url: http://127.0.0.1:{port}/mcp
    headers: {{X-Token: "${{MCP_TEST_TOKEN}}"}}
    tools: [add, nap, crash]
    timeout: 2
""")
    with background([sys.executable, str(folder / "server.py"), "--http", str(port)], port, tmp_path / "http.log"):
        model = ScriptedModel([call("add", a=20, b=22), call("nap", "c2", seconds=30), call("crash", "c3"), "42"])
        started = time.monotonic()
        result = run_sync(folder, "add", model=model)
    added, slow, crashed = of_type(result, "tool_result")
    assert added.content == "42" and not added.is_error
    assert slow.is_error and "mcp server 'web': nap timed out after 2s" in slow.content
    assert time.monotonic() - started < 20
    assert crashed.is_error and "mcp server 'web'" in crashed.content
    assert result.ok and result.output == "42"


def test_the_cli_shows_no_server_output(mcp_agent, halguru_cmd, subprocess_env, tmp_path: Path):
    script = tmp_path / "script.yaml"
    script.write_text(yaml.safe_dump([call("add", a=1, b=2), "three"]))
    folder = mcp_agent(FILES)
    proc = subprocess.run([*halguru_cmd, "run", str(folder), "add", "--model", f"scripted:{script}"],
                          capture_output=True, text=True, env=subprocess_env, timeout=90, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "three"
    assert "adding 1 and 2" not in proc.stderr + proc.stdout  # the server's stderr went to its log
    assert "← 3" in proc.stderr  # the tool result, as the CLI shows it


def test_a_team_member_gets_its_mcp_tools_when_handed_the_conversation(mcp_agent):
    mcp_agent(FILES.replace("name: mcpuser", "name: filer"), name="filer")
    lead = mcp_agent("name: desk\nmodel: scripted\nteam:\n  handoffs: [../filer]\n", name="desk")
    model = ScriptedModel([call("handoff_to_filer", "h1", reason="files"), call("add", "c2", a=1, b=2),
                           "filer: 3"])
    result = run_sync(lead, "add 1 and 2", model=model)
    assert result.ok and result.output == "filer: 3", result.error
    assert [e.content for e in of_type(result, "tool_result")][-1] == "3"
    # The lead saw only its team tool; the member saw its MCP tools and the way back.
    assert [t.name for t in model.requests[0].tools] == ["handoff_to_filer"]
    assert sorted(t.name for t in model.requests[1].tools) == ["add", "crash", "handoff_to_desk", "send", "shout"]


def test_a_workflow_agent_cannot_have_mcp_servers(mcp_agent):
    folder = mcp_agent(FILES.replace("model: scripted\n", "") + "workflow:\n  steps:\n    - {id: a, condition: '1'}\n")
    with pytest.raises(AgentSpecError, match=r"agent.yaml:3: mcp: a workflow's tool steps use its tools:"):
        load_agent(folder)


def test_a_huge_result_or_error_is_cut_as_any_tool_result(mcp_agent):
    folder = mcp_agent(FILES.replace("tools: [add, shout, send, crash]", "tools: [dump]"))
    model = ScriptedModel([call("dump", chars=2_000_000), call("dump", "c2", chars=50_000, fail=True), "done"])
    result = run_sync(folder, "dump", model=model)
    assert result.ok and result.output == "done"
    big, failed = of_type(result, "tool_result")
    assert big.content == "x" * 8000 + "\n… (cut: 1992000 characters)"
    assert failed.is_error and len(failed.content) < 8100 and failed.content.endswith(" characters)")
    assert "… (cut: " in of_type(result, "error")[0].message
    assert model.requests[1].messages[-1].content == big.content  # what the model read, and the trace keeps
    stored = [e for e in open_store().get_events(result.run_id) if e["type"] == "tool_result"]
    assert max(len(e["content"]) for e in stored) < 8100


def test_mcp_tools_named_like_a_team_tool_or_no_function_are_not_offered(tmp_path: Path):
    """A server's ask_helper was offered beside the team's (the model saw two), and a dotted name went to the
    model, which OpenAI-compatible endpoints refuse."""
    from tests.mcp.conftest import ODD_SERVER

    helper = tmp_path / "helper"
    helper.mkdir()
    (helper / "agent.yaml").write_text("name: helper\nmodel: scripted\n")
    desk = tmp_path / "desk"
    desk.mkdir()
    (desk / "server.py").write_text(ODD_SERVER)
    (desk / "agent.yaml").write_text(f"name: desk\nmodel: scripted\nteam:\n  specialists: [../helper]\nmcp:\n"
                                     f"  - name: odd\n    command: [{sys.executable}, server.py]\n")
    model = ScriptedModel([call("ping"), "pong it is"])
    result = run_sync(desk, "ping", model=model)
    assert result.ok and result.output == "pong it is"
    assert sorted(t.name for t in model.requests[0].tools) == ["ask_helper", "ping"]
    assert next(t.description for t in model.requests[0].tools if t.name == "ask_helper").startswith("Ask helper")
    errors = sorted(e.message for e in of_type(result, "error"))
    assert [e.kind for e in of_type(result, "error")] == ["mcp", "mcp"]
    assert errors == ["mcp server 'odd': tool 'ask_helper' is not offered: the agent's team has a tool of that "
                      "name, which comes first",
                      "mcp server 'odd': tool 'files.read' is not offered: a tool name is 1 to 64 letters, digits, "
                      "'_' or '-' (an allow-list, the server's tools:, leaves it out)"]


VERBOSE_SERVER = """\
from mcp.server.mcpserver import MCPServer

server = MCPServer("verbose", log_level="WARNING")


@server.tool(description="Explains at length. " * 10_000)
def verbose() -> str:
    return "said"


server.run()
"""


def test_a_huge_tool_description_is_cut_before_it_reaches_the_model(mcp_agent):
    """A server's 200,000-character description went whole into every model call: 'hi' was a 40,077-token prompt,
    refused by the 4096-token context of the bundled model."""
    folder = mcp_agent("name: verbose\nmodel: scripted\nmcp:\n  - name: verbose\n    command: [PYTHON, verbose.py]\n")
    (folder / "verbose.py").write_text(VERBOSE_SERVER)
    model = ScriptedModel([call("verbose"), "done"])
    result = run_sync(folder, "hi", model=model)
    assert result.ok and of_type(result, "tool_result")[0].content == "said"
    [spec] = model.requests[0].tools
    assert spec.description.startswith("Explains at length. ")
    assert spec.description.endswith("\n… (cut: 196000 characters)") and len(spec.description) < 4100


def test_a_server_writing_what_is_not_json_rpc_on_stdout_is_said_so(mcp_agent):
    """It was reported as a timeout ("no answer within 5s"), the SDK's own warning silenced."""
    from tests.mcp.conftest import GARBLING_SERVER

    folder = mcp_agent(FILES.replace("tools: [add, shout, send, crash]", "tools: [add]") + """\
  - name: garbling
    command: [PYTHON, garbling.py]
    timeout: 3
  - name: chatty
    command: [PYTHON, garbling.py, --chatty]
    timeout: 3
""")
    (folder / "garbling.py").write_text(GARBLING_SERVER)
    model = ScriptedModel([call("garble"), call("add", "c2", a=1, b=2), "done"])
    result = run_sync(folder, "go", model=model)
    assert result.ok and result.output == "done"
    started, garbled = (e.message for e in of_type(result, "error"))
    assert started == ("mcp server 'chatty' failed to start: it wrote on stdout something that is not JSON-RPC "
                       "('Hello from chatty v1.2') and no answer within 3s; a stdio server must write only its "
                       "messages to stdout (logs go to stderr)")
    assert re.sub(r'"id": \d+', '"id": N', garbled) == (
        "mcp server 'garbling': garble failed: it wrote on stdout something that is not JSON-RPC "
        """('{"jsonrpc": "2.0", "id": N, "result": {"content": [') and no answer within 3s; a stdio server must """
        "write only its messages to stdout (logs go to stderr)")
    assert [r.content for r in of_type(result, "tool_result")][1] == "3"  # the other server still serves


# A stdio server written by hand: logs each method it gets; `big` answers that many characters. With --silent it
# never answers server/discover (as some servers ignore what they do not know), else it says it does not know it;
# with --id-last it writes a response's id after its result (as the TypeScript SDK does).
QUIET_SERVER = '''\
import json
import sys

for line in sys.stdin:
    message = json.loads(line)
    with open("methods.log", "a") as log:
        log.write(message.get("method", "") + "\\n")
    if "id" not in message or (message["method"] == "server/discover" and "--silent" in sys.argv):
        continue
    method, answer = message["method"], {} if "--id-last" in sys.argv else {"jsonrpc": "2.0", "id": message["id"]}
    if method == "initialize":
        answer["result"] = {"protocolVersion": message["params"]["protocolVersion"], "capabilities": {"tools": {}},
                            "serverInfo": {"name": "quiet", "version": "1"}}
    elif method == "tools/list":
        answer["result"] = {"tools": [{"name": "big", "inputSchema": {"type": "object", "properties": {
            "chars": {"type": "integer"}}}}]}
    elif method == "tools/call":
        answer["result"] = {"content": [{"type": "text", "text": "x" * message["params"]["arguments"]["chars"]}]}
    else:
        answer["error"] = {"code": -32601, "message": "method not found"}
    answer.update({"jsonrpc": "2.0", "id": message["id"]})
    sys.stdout.write(json.dumps(answer) + "\\n")
    sys.stdout.flush()
'''

QUIET = """\
name: quietuser
model: scripted
mcp:
  - name: quiet
    command: [PYTHON, quiet.py]
    timeout: 20
"""


def run_garbling(mcp_agent, flag: str):
    """A run of an agent whose one server is GARBLING_SERVER started with ``flag``; its model answers 'done'."""
    from tests.mcp.conftest import GARBLING_SERVER

    folder = mcp_agent(f"name: odd\nmodel: scripted\nmcp:\n  - name: odd\n"
                       f"    command: [PYTHON, garbling.py, {flag}]\n    timeout: 5\n")
    (folder / "garbling.py").write_text(GARBLING_SERVER)
    result = run_sync(folder, "go", model=ScriptedModel(["done"]))
    assert result.ok and result.output == "done"
    return result


def test_a_tool_list_the_sdk_refuses_is_one_line_naming_the_field(mcp_agent):
    """It read 'failed to start: 1 validation error for ListToolsResult', the field and the reason on other lines."""
    result = run_garbling(mcp_agent, "--string-schema")
    assert [e.message for e in of_type(result, "error")] == [
        "mcp server 'odd' failed to start: it sent an invalid ListToolsResult (tools.0.inputSchema.type: Input "
        "should be 'object')"]


def test_a_tool_listed_twice_is_said_to_be(mcp_agent):
    """It read 'tool 'garble' has the name of another tool of this agent', which the agent does not have."""
    result = run_garbling(mcp_agent, "--twice")
    assert [e.message for e in of_type(result, "error")] == [
        "mcp server 'odd' lists tool 'garble' twice; the first is offered"]
    assert of_type(result, "model_call")[0].tools == ["garble"]


@pytest.mark.parametrize("order", ["", ", --id-last"])
def test_a_result_over_the_message_limit_is_said_to_be_too_large_at_once(mcp_agent, order: str):
    """A 50 MB result was reported as 'timed out after 20s' (the SDK's reader copied the growing line at each read)."""
    folder = mcp_agent(QUIET.replace("quiet.py]", f"quiet.py{order}]"))
    (folder / "quiet.py").write_text(QUIET_SERVER)
    model = ScriptedModel([call("big", chars=50_000_000), call("big", "c2", chars=3), "done"])
    started = time.monotonic()
    result = run_sync(folder, "go", model=model)
    assert_too_large_then_served(result, "error: mcp server 'quiet': big failed")
    assert time.monotonic() - started < 15


@pytest.mark.parametrize("mode", ["--http", "--http-gzip"])
def test_an_http_answer_over_the_message_limit_is_dropped_as_it_comes(mcp_agent, tmp_path: Path, mode: str):
    """Over HTTP a 100 MB result was read whole (1 GB of memory) before the 8000-character cut. Gzipped (JSON answers
    behind a compressing proxy), the limit counted compressed bytes: 40 MB of x, 40 KB on the wire, passed it (a
    1 GB answer gzipped to 1 MB took 5.2 GB of memory); now it counts what the answer decodes to."""
    port = free_port()
    folder = mcp_agent(f"name: webuser\nmodel: scripted\nmcp:\n  - name: web\n    url: http://127.0.0.1:{port}/mcp\n"
                       "    tools: [dump]\n    timeout: 20\n")
    with background([sys.executable, str(folder / "server.py"), mode, str(port)], port, tmp_path / "http.log"):
        model = ScriptedModel([call("dump", chars=40_000_000), call("dump", "c2", chars=3), "done"])
        result = run_sync(folder, "go", model=model)
    assert_too_large_then_served(result, "error: mcp server 'web': dump failed")


def assert_too_large_then_served(result, failed: str) -> None:
    """The run's first call was answered too large, and the same server then answered 'xxx'."""
    assert result.ok and result.output == "done", result.error
    too_large, small = of_type(result, "tool_result")
    assert too_large.is_error and too_large.content == (
        f"{failed}: its answer is over 16 MB, the limit for one message (the answer was dropped)")
    assert small.content == "xxx" and not small.is_error  # the same server still serves


def test_a_server_that_never_answers_discover_costs_its_wait_once(mcp_agent, monkeypatch):
    """Each start waited for the SDK's server/discover probe to time out (10 s) before the handshake."""
    monkeypatch.setattr("mcp.client.session.DISCOVER_TIMEOUT_SECONDS", 2.0)  # the SDK's 10 s, shortened
    folder = mcp_agent(QUIET.replace("quiet.py]", "quiet.py, --silent]"))
    (folder / "quiet.py").write_text(QUIET_SERVER)
    took = []
    for _ in range(2):
        started = time.monotonic()
        result = run_sync(folder, "go", model=ScriptedModel([call("big", chars=2), "done"]))
        took.append(time.monotonic() - started)
        assert result.ok and [r.content for r in of_type(result, "tool_result")] == ["xx"], result.error
    methods = (folder / "methods.log").read_text().split()
    assert methods.count("server/discover") == 1 and methods.count("initialize") == 2
    assert took[0] >= 2 and took[1] < 2


def test_two_starts_noting_legacy_servers_at_once_both_land(monkeypatch):
    """Each start that saw a server speak the handshake read mcp-legacy-servers.json, added its server and wrote
    the file back: two at once (serve replicas, `halguru run`s) each wrote over the other's entry."""
    import threading

    from halguru.tools import mcp

    real = mcp._legacy_servers

    def slow_read() -> set[str]:  # the window between one process's read and its write, made wide
        found = real()
        time.sleep(0.3)
        return found

    monkeypatch.setattr(mcp, "_legacy_servers", slow_read)
    threads = [threading.Thread(target=mcp._remember, args=(key,), kwargs={"legacy": True}) for key in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert real() == {"a", "b"}


def test_a_callers_tools_are_offered_beside_the_mcp_servers_and_a_clash_is_said(mcp_agent):
    """The OpenAI endpoint's client-side tools (``client_tools``) on an agent with MCP servers: the model is offered
    both; an MCP tool named as one of the caller's is not offered, and the run says so."""
    from halguru.agents.client_tools import ClientTools
    from halguru.models.base import ToolSpec

    model = ScriptedModel([call("add", a=2, b=40), call("weather", "c2"), "unused"])
    client = ClientTools((ToolSpec(name="weather", description="", parameters={}),
                          ToolSpec(name="shout", description="", parameters={})))
    result = run_sync(mcp_agent(FILES), "add, then the weather", model=model, client_tools=client)
    assert result.ok and sorted(of_type(result, "model_call")[0].tools) == ["add", "crash", "send", "shout",
                                                                           "weather"]
    assert [(e.name, e.client) for e in of_type(result, "tool_call")] == [("add", False), ("weather", True)]
    assert of_type(result, "tool_result")[0].content == "42"
    [error] = of_type(result, "error")
    assert "shout" in error.message


WORKER = """\
import asyncio

from mcp.server.mcpserver import Context, MCPServer

server = MCPServer("worker", log_level="WARNING")


@server.tool()
async def work(seconds: float, report: bool, ctx: Context) -> str:
    \"\"\"Works a while, saying so every half second if asked to.\"\"\"
    for step in range(int(seconds * 2)):
        await asyncio.sleep(0.5)
        if report:
            await ctx.report_progress(step + 1, message="still at it")
    return "worked"


if __name__ == "__main__":
    server.run()
"""


def test_a_call_that_reports_progress_runs_past_the_timeout_and_a_silent_one_does_not(mcp_agent):
    """A long tool that keeps saying it is at work (an agent behind `halguru mcp serve`) timed out at `timeout`
    however often it reported progress: a 40 s agent could not be called with the default 30."""
    folder = mcp_agent("name: boss\nmodel: scripted\nmcp:\n  - {name: worker, command: [PYTHON, server.py], "
                       "timeout: 8}\n")  # (it must start within 8 s too, on a loaded machine)
    (folder / "server.py").write_text(WORKER)
    model = ScriptedModel([call("work", seconds=11, report=True), call("work", "c2", seconds=11, report=False),
                           "done"])
    started = time.monotonic()
    result = run_sync(folder, "work", model=model)
    reported, silent = of_type(result, "tool_result")
    assert (reported.content, reported.is_error) == ("worked", False)
    assert silent.is_error and silent.content == "error: mcp server 'worker': work timed out after 8s"
    assert silent.duration_ms < 10500 and time.monotonic() - started < 60
    assert result.ok and result.output == "done"
