"""The @tool decorator, tool execution and the built-in tools."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator

import pytest
from pydantic import BaseModel

from halguru import tool
from halguru.errors import ToolError
from halguru.tools.builtin import calculator, current_time, http_get
from halguru.tools.registry import execute_tool, plugin_tools


def run(coro):
    return asyncio.run(coro)


def test_typed_function_becomes_a_schema():
    @tool
    def book(city: str, nights: int = 1, breakfast: bool = False) -> str:
        """Book a hotel."""
        return f"{city}:{nights}:{breakfast}"

    params = book.parameters
    assert params["required"] == ["city"]
    assert params["properties"]["nights"] == {"default": 1, "title": "Nights", "type": "integer"}
    assert book.description == "Book a hotel."
    assert run(execute_tool(book, {"city": "Oslo", "nights": "2"})) == "Oslo:2:False"


class Query(BaseModel):
    text: str
    limit: int = 3


def test_pydantic_model_argument():
    @tool(name="search", description="Search notes.")
    def search(query: Query) -> list[str]:
        return [query.text] * query.limit

    assert search.name == "search" and search.parameters["required"] == ["text"]
    assert run(execute_tool(search, {"text": "hi", "limit": 2})) == '["hi", "hi"]'


def test_invalid_arguments_are_explained():
    with pytest.raises(ToolError) as info:
        run(execute_tool(calculator, {"expr": "1+1"}))
    assert "expression: Field required" in str(info.value)
    assert "expr: Extra inputs are not permitted" in str(info.value)


def test_tool_needs_a_docstring_and_type_hints():
    with pytest.raises(ToolError, match="docstring"):
        tool(lambda x: x)

    def untyped(x):
        """Doc."""

    with pytest.raises(ToolError, match="needs a type hint"):
        tool(untyped)


class Holder(BaseModel):
    model_config = {"arbitrary_types_allowed": True}
    fn: Callable[[int], int]


def test_a_parameter_type_without_a_json_schema_is_one_line_at_validate_not_a_traceback_at_run(
        halguru_cmd, subprocess_env, write_agent):
    """`x: Callable[[int], int]` passed `validate` (OK), then `tools` and `run` died in an 80-line pydantic
    traceback; `x: callable` was a 5-line pydantic message naming neither the tool nor the parameter."""
    import subprocess

    for hint in ("Callable[[int], int]", "callable"):
        folder = write_agent("name: t1\nmodel: scripted\ntools: [apply]\n",
                             "from typing import Callable\nfrom halguru import tool\n\n\n@tool\n"
                             f"def apply(n: int, x: {hint}) -> str:\n    \"\"\"Apply.\"\"\"\n    return 'r'\n")
        for command in (["validate", str(folder)], ["run", str(folder), "hi"], ["tools", str(folder)]):
            proc = subprocess.run([*halguru_cmd, *command], capture_output=True, text=True, env=subprocess_env,
                                  timeout=60)
            assert proc.returncode == 1, (command, proc.stdout)
            [line] = proc.stderr.strip().splitlines()
            assert "Traceback" not in line and "tool apply: parameter 'x' has type" in line
            assert "which has no JSON schema to show the model" in line

    def takes(args: Holder) -> str:
        """Doc."""
        return ""

    with pytest.raises(ToolError, match="tool takes: its argument model Holder has no JSON schema"):
        tool(takes)


def test_a_tool_that_prints_does_not_break_the_json_of_run_test_and_eval(halguru_cmd, subprocess_env, write_agent):
    """`halguru run --json | jq`: a tool's print() landed among the JSON lines on stdout (`debug 1` between
    tool_call and tool_result), so the stream no longer parsed."""
    import json
    import subprocess

    folder = write_agent("name: t1\nmodel: scripted:s.yaml\ntools: [chatty]\n",
                         "import sys\n\nfrom halguru import tool\n\n\n@tool\ndef chatty(x: int) -> str:\n"
                         "    \"\"\"Chatty.\"\"\"\n    print('debug', x)\n    sys.stdout.write('more\\n')\n"
                         "    return 'r'\n")
    (folder / "s.yaml").write_text("- tool_calls: [{name: chatty, arguments: {x: 1}}]\n- done\n")
    proc = subprocess.run([*halguru_cmd, "run", str(folder), "go", "--json"], capture_output=True, text=True,
                          env=subprocess_env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [e["type"] for e in events][-1] == "run_finished" and events[-1]["output"] == "done"
    assert "debug 1\nmore" in proc.stderr
    (folder / "tests").mkdir()
    (folder / "tests" / "test_p.yaml").write_text(
        "tests:\n  - name: t\n    turns:\n      - user: go\n        expect: {tool_called: chatty}\n")
    for command in (["test", str(folder), "--json"], ["eval", str(folder), "--models", "scripted:s.yaml", "--json"]):
        proc = subprocess.run([*halguru_cmd, *command], capture_output=True, text=True, env=subprocess_env,
                              timeout=60, cwd=folder)
        assert proc.returncode == 0, proc.stderr
        json.loads(proc.stdout)  # the report alone
        assert "debug 1\nmore" in proc.stderr


def test_raising_tool_reports_type_and_message():
    @tool
    def fragile() -> str:
        """Always fails."""
        raise RuntimeError("disk on fire")

    with pytest.raises(ToolError, match="fragile raised RuntimeError: disk on fire"):
        run(execute_tool(fragile, {}))


def test_a_raising_tools_traceback_is_kept_from_its_own_code_on(halguru_cmd, subprocess_env, write_agent):
    """The run's error said only "boom raised ZeroDivisionError": no file or line anywhere, not with --debug."""
    import subprocess

    from halguru.store import open_store

    folder = write_agent("name: t1\nmodel: scripted:s.yaml\ntools: [boom]\n")
    (folder / "s.yaml").write_text("- tool_calls: [{name: boom, arguments: {}}]\n- done\n")
    (folder / "tools.py").write_text("from halguru import tool\n\n\ndef helper():\n    return 1 / 0\n\n\n"
                                     "@tool\ndef boom() -> str:\n    \"\"\"Explode.\"\"\"\n    return str(helper())\n")
    proc = subprocess.run([*halguru_cmd, "--debug", "run", str(folder), "go"], capture_output=True, text=True,
                          env=subprocess_env, timeout=60)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr
    assert f'File "{folder / "tools.py"}", line 5, in helper' in proc.stderr
    [run_] = open_store().list_runs(limit=1)
    [error] = [e for e in open_store().get_events(run_["id"]) if e["type"] == "error"]
    assert error["message"] == "boom raised ZeroDivisionError: division by zero"
    assert error["detail"].splitlines()[0] == f'  File "{folder / "tools.py"}", line 11, in boom'
    assert error["detail"].endswith("ZeroDivisionError: division by zero") and "registry.py" not in error["detail"]
    plain = subprocess.run([*halguru_cmd, "run", str(folder), "go"], capture_output=True, text=True,
                           env=subprocess_env, timeout=60)
    assert "line 5" not in plain.stderr  # without --debug, the one line


def test_a_plugin_tools_traceback_is_kept_though_its_module_is_named_halguru_something():
    """Frames were dropped by a prefix test on the path: site-packages/halguru_x.py "starts with" .../halguru."""
    from pathlib import Path

    import halguru
    from halguru.tools.registry import tool_traceback

    package = Path(halguru.__file__).resolve().parent
    beside = package.with_name("halguru_myplugin.py")  # compiled as if there: a plugin's module
    namespace: dict = {}
    exec(compile("def probe():\n    return 1 / 0\n", str(beside), "exec"), namespace)
    # the tool called from halguru's own code, as execute_tool calls it: that frame goes, the plugin's stays
    exec(compile("def call(tool):\n    try:\n        tool()\n    except Exception as exc:\n        return exc\n",
                 str(package / "tools" / "calling.py"), "exec"), namespace)
    detail = tool_traceback(namespace["call"](namespace["probe"]))
    assert detail.splitlines()[0] == f'  File "{beside}", line 2, in probe', detail
    assert "calling.py" not in detail


def test_slow_tool_times_out():
    @tool(timeout=0.2)
    async def slow() -> str:
        """Sleeps."""
        await asyncio.sleep(5)
        return "late"

    with pytest.raises(ToolError, match=r"timed out after 0\.2s"):
        run(execute_tool(slow, {}))


def test_a_tool_that_calls_sys_exit_is_an_error_the_run_goes_on(halguru_cmd, subprocess_env, write_agent):
    """An async or inline tool calling sys.exit(4) ended `halguru run` at once with exit code 4, silently, its
    run left `running` (then `interrupted`); a threaded one was reported as `raised RuntimeError: SystemExit: 3`."""
    import subprocess

    folder = write_agent("name: t1\nmodel: scripted:s.yaml\ntools: [aquit, iquit, quit]\nlimits: {max_steps: 9}\n",
                         "import sys\n\nfrom halguru import tool\n\n\n@tool\nasync def aquit() -> str:\n"
                         "    \"\"\"Quit.\"\"\"\n    sys.exit(4)\n\n\n@tool(inline=True)\ndef iquit() -> str:\n"
                         "    \"\"\"Quit.\"\"\"\n    sys.exit(5)\n\n\n@tool\ndef quit() -> str:\n"
                         "    \"\"\"Quit.\"\"\"\n    sys.exit(3)\n")
    (folder / "s.yaml").write_text("".join(f"- tool_calls: [{{name: {n}, arguments: {{}}}}]\n"
                                           for n in ("aquit", "iquit", "quit")) + "- done\n")
    proc = subprocess.run([*halguru_cmd, "run", str(folder), "go"], capture_output=True, text=True,
                          env=subprocess_env, timeout=60)
    assert (proc.returncode, proc.stdout.strip()) == (0, "done"), proc.stderr
    for name, code in (("aquit", 4), ("iquit", 5), ("quit", 3)):
        assert f"error: {name} raised SystemExit: {code}" in proc.stderr


def test_unserialisable_result_is_an_error():
    @tool
    def opaque() -> object:
        """Returns something JSON cannot hold."""
        return object()

    with pytest.raises(ToolError) as opaque_error:
        run(execute_tool(opaque, {}))
    assert str(opaque_error.value) == "opaque: tool returned a value of type object that cannot be turned into JSON"

    @tool
    def loop() -> dict:
        """Returns a dict holding itself."""
        d: dict = {}
        d["self"] = d
        return d

    # was the bare "Circular reference detected": no tool, no JSON, no why
    with pytest.raises(ToolError) as loop_error:
        run(execute_tool(loop, {}))
    assert str(loop_error.value) == ("loop: tool returned a value that cannot be turned into JSON: Circular reference "
                                     "detected (it holds itself)")


@pytest.mark.parametrize(
    ("expression", "result"),
    [("17*23", 391), ("2^10", 1024), ("sqrt(16) + 1", 5), ("10/4", 2.5),
     ("-(3 - 5) * pi", 6.283185307179586)],
)
def test_calculator(expression, result):
    """A number (a workflow step reads it as one), its text as the model read it before."""
    assert calculator(expression) == result and type(calculator(expression)) is type(result)
    assert run(execute_tool(calculator, {"expression": expression})) == str(result)


@pytest.mark.parametrize(
    "expression", ["__import__('os').system('id')", "open('/etc/passwd')", "[1,2]", "1/0", "9**9**9"])
def test_calculator_refuses_what_is_not_arithmetic(expression):
    with pytest.raises(ToolError):
        calculator(expression)


def test_current_time_in_a_timezone():
    assert current_time("Asia/Tokyo").endswith("+09:00")
    with pytest.raises(ToolError, match="unknown timezone 'Mars/Base'"):
        current_time("Mars/Base")


@contextlib.contextmanager
def _loopback(body: bytes, hits: list[str] | None = None) -> Iterator[str]:
    """A loopback HTTP server answering every GET with ``body`` (each path recorded in ``hits``); its base URL."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if hits is not None:
                hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()


@pytest.fixture
def local_http_server():
    with _loopback(b"hello from loopback") as url:
        yield url


def test_http_get_refuses_loopback_by_default(local_http_server):
    with pytest.raises(ToolError, match="private or loopback address"):
        run(execute_tool(http_get, {"url": local_http_server}))


def test_http_get_reaches_loopback_when_configured(local_http_server, monkeypatch):
    from halguru.config import reset_settings

    monkeypatch.setenv("HALGURU_HTTP_ALLOW_PRIVATE", "1")
    reset_settings()
    assert run(execute_tool(http_get, {"url": local_http_server})) == "HTTP 200\nhello from loopback"


def test_http_get_refuses_other_schemes():
    with pytest.raises(ToolError, match="not an http"):
        run(execute_tool(http_get, {"url": "file:///etc/passwd"}))


def test_builtin_tools_come_through_the_plugin_hook():
    assert {"calculator", "current_time", "http_get"} <= set(plugin_tools())


@pytest.fixture
def schema_server():
    """A loopback server that serves a JSON schema and records each request for it."""
    hits: list[str] = []
    with _loopback(b'{"type": "string"}', hits) as url:
        yield f"{url}schema.json", hits


def test_a_schema_ref_to_a_url_is_not_fetched(schema_server):
    """An MCP server's (or OpenAPI document's) $ref to a URL was fetched by jsonschema with urllib, on the event
    loop and without a timeout, from whatever address it named."""
    from halguru.tools.schema_tool import schema_tool

    url, hits = schema_server
    remote = schema_tool("lookup", "Look up.", {"type": "object", "properties": {"q": {"$ref": url}}},
                         lambda arguments: "found")
    with pytest.raises(ToolError, match=r"^lookup cannot be called: its argument schema is invalid \(Unresolvable"):
        run(execute_tool(remote, {"q": "x"}))
    assert hits == []


def test_a_tool_with_an_invalid_schema_is_an_error_result_not_a_crash():
    from halguru.tools.schema_tool import schema_tool

    typo = schema_tool("typo", "Typo.", {"type": "object", "properties": {"q": {"type": "strnig"}}},
                       lambda arguments: "found")
    with pytest.raises(ToolError, match=r"^typo cannot be called: its argument schema is invalid \(Unknown type "
                                        r"'strnig'"):
        run(execute_tool(typo, {"q": "x"}))


def test_a_backtracking_pattern_in_a_schema_does_not_hang_the_process():
    """An MCP server's "pattern": "^(a+)+$" and a model's 40-character argument held the event loop (and the GIL)
    for good: Ctrl-C and SIGTERM could not stop the process."""
    code = """if True:
        import asyncio
        from halguru.tools.registry import execute_tool
        from halguru.tools.schema_tool import schema_tool
        schema = {"type": "object", "properties": {"s": {"type": "string", "pattern": "^(a+)+$"}}}
        tool = schema_tool("match", "Match.", schema, lambda arguments: "server said: no match")
        print(asyncio.run(execute_tool(tool, {"s": "a" * 40 + "!"})))
    """
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30,
                          env=os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.returncode == 0 and proc.stdout.strip() == "server said: no match", proc.stderr


def test_http_get_max_chars_must_be_positive():
    """max_chars=-1 returned all of the body but its last character (a slice from the end)."""
    with pytest.raises(ToolError, match="invalid arguments for http_get"):
        run(execute_tool(http_get, {"url": "http://example.com/", "max_chars": -1}))
