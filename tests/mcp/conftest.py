"""A real MCP server (the official SDK's MCPServer) written into each agent folder, and loopback helpers."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

SERVER = '''\
import os
import sys
from pathlib import Path

from mcp.server.mcpserver import MCPServer

server = MCPServer("files", log_level="WARNING")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two numbers."""
    print(f"adding {a} and {b}", file=sys.stderr)  # must never reach the user's terminal
    return a + b


@server.tool()
def shout(text: str) -> str:
    """Upper-case a text."""
    return text.upper() + "!"


@server.tool()
def secret_word() -> str:
    """Not on the agent's allow-list."""
    Path("secret_word.called").write_text("yes")
    return "swordfish"


@server.tool()
def send(to: str) -> str:
    """Send a message (needs approval)."""
    with open("sent.log", "a") as f:
        f.write(to + "\\n")
    return f"sent to {to}"


@server.tool()
async def nap(seconds: float) -> str:
    """Sleeps."""
    import asyncio

    await asyncio.sleep(seconds)
    return "rested"


@server.tool()
def dump(chars: int, fail: bool = False) -> str:
    """Returns (or fails with) a text of that many characters."""
    if fail:
        from mcp.server.mcpserver.exceptions import ToolError

        raise ToolError("y" * chars)  # its text reaches the client
    return "x" * chars


@server.tool()
def crash() -> str:
    """Dies mid-call."""
    print("about to die: disk on fire", file=sys.stderr, flush=True)
    os._exit(1)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--http"]:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    elif sys.argv[1:2] == ["--http-gzip"]:  # JSON answers, gzipped as a proxy in front of a server may do
        import uvicorn
        from starlette.middleware.gzip import GZipMiddleware

        app = GZipMiddleware(server.streamable_http_app(json_response=True), minimum_size=100)
        uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
    else:
        Path("server.pid").write_text(str(os.getpid()))  # stdio servers run in the agent folder
        server.run()
'''


# A server whose tool names an agent cannot offer as they are: one a team tool has, one no endpoint accepts.
ODD_SERVER = '''\
from mcp.server.mcpserver import MCPServer

server = MCPServer("odd", log_level="WARNING")


@server.tool()
def ask_helper(request: str) -> str:
    """Not the team's ask_helper."""
    return "the server's answer"


@server.tool(name="files.read")
def read(path: str) -> str:
    """A dotted name."""
    return "contents"


@server.tool()
def ping() -> str:
    """Fine."""
    return "pong"


if __name__ == "__main__":
    server.run()
'''


# A stdio server written by hand, which breaks the protocol on stdout: at each tools/call (a message cut short),
# or (--chatty) from the first line on (a greeting instead of JSON-RPC); --string-schema lists a tool whose argument
# schema is not an object, which the SDK refuses; --twice lists its tool twice.
GARBLING_SERVER = '''\
import json
import sys

for line in sys.stdin:
    message = json.loads(line)
    if sys.argv[1:] == ["--chatty"]:
        print("Hello from chatty v1.2", flush=True)
        continue
    if "id" not in message:
        continue
    method, answer = message["method"], {"jsonrpc": "2.0", "id": message["id"]}
    if method == "initialize":
        answer["result"] = {"protocolVersion": message["params"]["protocolVersion"], "capabilities": {"tools": {}},
                            "serverInfo": {"name": "garbling", "version": "1"}}
    elif method == "tools/list":
        kind = "string" if sys.argv[1:] == ["--string-schema"] else "object"  # the spec's is always an object
        answer["result"] = {"tools": [{"name": "garble", "inputSchema": {"type": kind}}]
                            * (2 if sys.argv[1:] == ["--twice"] else 1)}
    elif method == "tools/call":
        print(json.dumps(answer)[:-1] + ', "result": {"content": [', flush=True)
        continue
    else:
        answer["error"] = {"code": -32601, "message": "method not found"}
    print(json.dumps(answer), flush=True)
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path, seconds: float = 30,
                  host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + seconds
    while True:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail(f"nothing listens on {port} after {seconds}s:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)


@contextlib.contextmanager
def background(argv: list[str], port: int, log: Path, env: dict[str, str] | None = None,
               host: str = "127.0.0.1") -> Iterator[None]:
    """A server process on host:port (a loopback address), stopped (and reaped) after the test."""
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        wait_for_port(port, proc, log, host=host)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy from the environment must never see the tests' loopback requests."""
    for name in list(os.environ):
        if name.lower() in ("http_proxy", "https_proxy", "all_proxy"):
            monkeypatch.delenv(name)


@pytest.fixture
def mcp_agent(tmp_path: Path) -> Callable[..., Path]:
    """An agent folder with server.py (the MCP server above) beside its agent.yaml."""

    def write(yaml_text: str, name: str = "agent") -> Path:
        folder = tmp_path / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "server.py").write_text(SERVER, encoding="utf-8")
        (folder / "agent.yaml").write_text(yaml_text.replace("PYTHON", sys.executable), encoding="utf-8")
        return folder

    return write
