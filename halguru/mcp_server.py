"""A project's agents as an MCP server (``halguru mcp serve``): each agent is a tool ``ask_<name>``.

Any MCP client (an IDE, a desktop assistant, another halguru agent) can then call an agent. Each call is
an ordinary run through ``halguru.agents.runtime``, recorded in the store like any other, so
``halguru logs`` shows it and the returned conversation id continues the conversation.

Over HTTP, a token (the secret HALGURU_MCP_TOKEN) is asked of every request when one is set, and is required to
listen anywhere but loopback: without it, ``--host 0.0.0.0`` let anyone on the network run the agents and their
tools.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import json
import os
import sys
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types import CallToolResult, TextContent
from pydantic import BaseModel, Field, ValidationError

from halguru import __version__
from halguru.agents.describe import clip, describe
from halguru.agents.events import Event, RunStarted
from halguru.agents.loader import Agent, load_agent
from halguru.agents.runtime import SHUTDOWN, NoConversation, collect_result, run
from halguru.api_schemas import BLANK_MESSAGE
from halguru.errors import HalguruError
from halguru.listen import WILDCARDS, check_listen, url_base
from halguru.printable import is_blank

TOOL_PREFIX = "ask_"
TOKEN_SECRET = "HALGURU_MCP_TOKEN"  # the bearer token HTTP clients send: the environment variable, else the keyring
MIN_TOKEN_CHARS = 16
STOP_WAIT = 5.0  # seconds the runs in flight get to store how they stopped, when serving is stopped
SHUTDOWN_TIMEOUT = 30.0  # seconds the asks in flight get to finish when HTTP serving is stopped (as `halguru serve`)
TOKENS_EVERY = 2.0  # seconds between two progress notifications while the model writes (a heartbeat, not a flood)


class AskResult(BaseModel):
    """What ``ask_<agent>`` returns besides the answer text: the ids to continue or inspect the run."""

    answer: str = Field(description="the agent's answer")
    conversation_id: str = Field(description="pass it back as conversation_id to continue this conversation")
    run_id: str = Field(description="the run, as `halguru logs show RUN_ID` shows it")


Message = Annotated[str, Field(description="what to ask the agent")]
ConversationId = Annotated[str | None, Field(
    description="continue a conversation: the conversation_id of an earlier answer (default: a new one)")]


def tool_name(agent: str) -> str:
    """``ask_<agent>`` as a tool name clients take (1 to 64 letters, digits, '_' or '-'; OpenAI's and Anthropic's
    rule, and halguru's own MCP client's): an agent name's '.' is '_', and a long name is cut."""
    return f"{TOOL_PREFIX}{agent.replace('.', '_')}"[:64]


def build_server(paths: Sequence[str | Path]) -> MCPServer:
    """An MCP server with one ``ask_<agent>`` tool per agent project; the agents are loaded (checked) now."""
    return _server(load_agents(paths))


def load_agents(paths: Sequence[str | Path]) -> dict[str, Agent]:
    """The agents by name; two with one name would be one tool, so that is an error."""
    if not paths:
        raise HalguruError("give at least one agent project to serve")
    agents: dict[str, Agent] = {}
    tools: dict[str, str] = {}
    for path in paths:
        agent = load_agent(path)
        if agent.name in agents and _same_project(agents[agent.name], agent):
            continue  # one project named twice (`helper ./helper/`): one tool
        if agent.name in agents:
            raise HalguruError(f"two agents are named {agent.name!r} ({agents[agent.name].path} and {agent.path}); "
                               "tool names must differ")
        name = tool_name(agent.name)
        if name in tools:
            raise HalguruError(f"agents {tools[name]!r} and {agent.name!r} would both be the tool {name}; rename "
                               "one (a tool name has no '.', and is cut at 64 characters)")
        agents[agent.name], tools[name] = agent, agent.name
    return agents


def _same_project(one: Agent, other: Agent) -> bool:
    return one.path is not None and other.path is not None and one.path.resolve() == other.path.resolve()


class _AgentServer(MCPServer):
    """The SDK's server, with a call's bad arguments said in one line (the SDK quotes pydantic's whole report:
    the model class, one line per field and a link to pydantic's docs)."""

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            if not isinstance(exc.__cause__, ValidationError):
                raise
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}"
                                 for e in exc.__cause__.errors()[:3])
            raise ToolError(f"invalid arguments for {name}: {problems}") from None


class InFlight:
    """The asks running now (serving waits for them to store how they stopped before it leaves): how many, and
    their runs' tasks, which a shutdown's end cancels as such (stored interrupted, not cancelled by a user)."""

    def __init__(self) -> None:
        self.count = 0
        self.runs: set[asyncio.Task[Any]] = set()
        self.interrupted = False

    def interrupt(self) -> None:
        """The grace period is over (or a second signal came): every run in flight is stopped as a shutdown."""
        self.interrupted = True
        for task in list(self.runs):
            task.cancel(SHUTDOWN)

    async def settled(self, seconds: float) -> None:
        """Wait until no ask runs, at most ``seconds``."""
        with anyio.move_on_after(seconds):
            while self.count:
                await anyio.sleep(0.02)


def _server(agents: dict[str, Agent], in_flight: InFlight | None = None) -> MCPServer:
    server: MCPServer = _AgentServer(
        "halguru", instructions="Each tool asks one halguru agent a question and returns its answer.",
        version=__version__, log_level="WARNING")
    for name, agent in agents.items():
        # "Ask the assistant agent: An assistant that ..." (it was "Ask An assistant that ...", and "Ask Answers
        # from the documents ..." for the knowledge template's description)
        about = f": {agent.spec.description.strip().rstrip('.')}" if agent.spec.description.strip() else ""
        server.add_tool(_asker(agent, in_flight or InFlight()), name=tool_name(name),
                        description=f"Ask the {name} agent{about}. Returns its answer and a conversation_id "
                        "that continues the conversation.")
    return server


def _asker(agent: Agent, in_flight: InFlight) -> Callable[..., Awaitable[CallToolResult]]:
    async def ask(message: Message, conversation_id: ConversationId = None,
                  ctx: Context | None = None) -> Annotated[CallToolResult, AskResult]:
        if is_blank(message):  # as `halguru run` and the REST API: no run on nothing
            return _error(BLANK_MESSAGE)
        in_flight.count += 1
        started: list[RunStarted] = []
        try:
            events = _noting(run(agent, message, conversation_id, metadata={"via": "mcp"}), started)
            result = await _running(collect_result(events if ctx is None else _reporting(events, ctx)), in_flight)
        except _Interrupted:
            return await _interrupted(started)
        except NoConversation:
            return _error(f"no conversation {conversation_id!r}; leave conversation_id out to start one")
        except HalguruError as exc:  # the caller's mistake, said plainly
            return _error(str(exc))
        finally:
            in_flight.count -= 1
        if not result.ok:
            hint = f"; decide it with `halguru runs approve {result.run_id}`" if result.status == "paused" else ""
            # the ids, as an answer gives them: once the call is decided, the caller continues the conversation
            return _error(f"run {result.run_id} {result.status}: {result.error or 'no answer'}{hint} "
                          f"(conversation_id {result.conversation_id})")
        ids = AskResult(answer=result.output, conversation_id=result.conversation_id, run_id=result.run_id)
        return CallToolResult(content=[TextContent(text=result.output)], structured_content=ids.model_dump())

    ask.__name__ = tool_name(agent.name)
    return ask


class _Interrupted(Exception):
    """The ask's run was stopped by the end of a shutdown's grace period."""


async def _running(collecting: Awaitable[Any], in_flight: InFlight) -> Any:
    """The run, in a task of its own that a shutdown may interrupt (``_Interrupted``); cancelling the ask (a client
    that cancels the call) cancels it as before."""
    task = asyncio.ensure_future(collecting)
    in_flight.runs.add(task)
    task.add_done_callback(in_flight.runs.discard)
    if in_flight.interrupted:  # came in after the grace period
        task.cancel(SHUTDOWN)
    try:
        return await task
    except asyncio.CancelledError:
        me = asyncio.current_task()
        if task.cancelled() and (me is None or not me.cancelling()):
            raise _Interrupted from None
        raise


async def _noting(events: AsyncGenerator[Event, None], started: list[RunStarted]) -> AsyncGenerator[Event, None]:
    """The run's events, its run_started kept in ``started`` (an interrupted run's ids, for its caller)."""
    async with contextlib.aclosing(events):
        async for event in events:
            if isinstance(event, RunStarted):
                started.append(event)
            yield event


async def _interrupted(started: list[RunStarted]) -> CallToolResult:
    """A shutdown's grace period ended the run: the caller is told, with the error it was stored with."""
    if not started:
        return _error("interrupted by server shutdown before the run started; send the message again")
    from halguru.store import open_store

    first = started[0]
    stored = await asyncio.to_thread(lambda: open_store().get_run(first.run_id))
    why = (stored or {}).get("error") or "interrupted by server shutdown"
    return _error(f"run {first.run_id} interrupted: {why} (conversation_id {first.conversation_id})")


async def _reporting(events: AsyncGenerator[Event, None], ctx: Context) -> AsyncIterator[Event]:
    """The run's events, each told to a client that asked for progress (a request with a progressToken) as a
    ``notifications/progress`` with the event's trace line: the run id from the start, each model call and tool
    call, and while the model writes a count of its tokens every TOKENS_EVERY seconds. A client that times a call
    out unless progress comes (resetTimeoutOnProgress) keeps waiting for a long run; one that asked for nothing
    is sent nothing (the SDK's report_progress does nothing then)."""
    count, tokens, told = 0, 0, time.monotonic()
    async with contextlib.aclosing(events):
        async for event in events:
            if event.type == "token":
                tokens += 1
                if time.monotonic() - told < TOKENS_EVERY:
                    yield event
                    continue
                text = f"writing: {tokens} tokens so far"
            else:
                tokens, text = 0, describe(event).plain
            count, told = count + 1, time.monotonic()
            with contextlib.suppress(Exception):  # a client gone (HTTP) does not stop the run: it is recorded
                await ctx.report_progress(count, message=clip(text, 300))
            yield event


def _error(message: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(text=message)], is_error=True)


def serve(paths: Sequence[str | Path], *, transport: Literal["stdio", "http"] = "stdio",
          host: str = "127.0.0.1", port: int = 8000, shutdown_timeout: float = SHUTDOWN_TIMEOUT) -> None:
    """Serve the agents until interrupted: over stdin/stdout (default) or streamable HTTP at /mcp."""
    agents = load_agents(paths)
    in_flight = InFlight()
    server = _server(agents, in_flight)
    if transport == "stdio":
        # (as the SDK's run("stdio"), which points fd 1 at stderr while serving: stray prints miss the wire)
        anyio.run(_keeping_servers, server.run_stdio_async, in_flight)
        return
    token = http_token(host)
    port = check_listen(host, port)  # a port in use (or a bad host) is one line, before the banner says "serving"
    tools = ", ".join(tool_name(name) for name in agents)
    everywhere = f" (listening on {host or 'every interface'})" if host in WILDCARDS else ""
    asked = f"; clients send Authorization: Bearer <{TOKEN_SECRET}>" if token else ""
    print(f"halguru mcp: serving {tools} at {url_base(host, port)}/mcp{everywhere}{asked} (Ctrl-C stops)",
          file=sys.stderr)
    app: Any = server.streamable_http_app(transport_security=transport_security(host), host=host)
    if token is not None:
        app = BearerGate(app, token)
    from halguru.mcp_draining import Draining

    app = Draining(app, in_flight, shutdown_timeout)
    server.streamable_http_app = lambda **_: app  # type: ignore[method-assign]  # (what the SDK's run serves)
    # (as the SDK's run("streamable-http"); uvicorn is serve mode's: halguru leaves it to the SDK)
    anyio.run(_keeping_servers, functools.partial(server.run_streamable_http_async, host=host, port=port))


async def _keeping_servers(serving: Callable[[], Awaitable[None]], stdio: InFlight | None = None) -> None:
    """Serve with the agents' MCP servers (agent.yaml ``mcp:``) kept running between calls, as ``halguru serve``
    keeps them, and stopped when serving ends: each ask started and stopped them all (2.3 s a call for one small
    server, against 0.1 s once it runs).

    Over stdio, stopped (Ctrl-C, SIGTERM) while the client keeps stdin open, the process leaves once the runs in
    flight are stored and the servers stopped: the SDK's thread blocked reading stdin cannot be cancelled, and kept
    it until the client closed stdin or SIGTERM's grace ran out (20 s, then killed: exit -15). ``stdio``: the
    asks in flight there."""
    from halguru.tools.mcp import keep_servers_running, stop_kept_servers

    keep_servers_running()
    try:
        if stdio is None:
            await serving()
        else:
            await _serving_stdio(serving, stdio)
    finally:
        with anyio.CancelScope(shield=True):
            await stop_kept_servers()


async def _serving_stdio(serving: Callable[[], Awaitable[None]], in_flight: InFlight) -> None:
    task = asyncio.ensure_future(serving())
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        task.cancel()  # the runs in flight are stored cancelled; only a stdin reader may be left
        await in_flight.settled(STOP_WAIT)
        if not task.done():
            from halguru.tools.mcp import stop_kept_servers

            with anyio.CancelScope(shield=True):
                await stop_kept_servers()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(130)  # as a command stopped by Ctrl-C exits
        raise


def transport_security(host: str) -> TransportSecuritySettings | None:
    """DNS rebinding protection for a loopback HOST: requests must name this machine (Host) and come from no other
    site's page (Origin). The SDK turns it on only for 127.0.0.1, localhost and ::1: served on 127.0.0.2 (any of
    127/8) or localhost.localdomain with no token, a web page whose name resolved to that address ran the agents.
    Elsewhere (a token is then required) None: the SDK's default, as a page cannot know the token."""
    from halguru.channels.email import is_loopback

    if not is_loopback(host):
        return None
    named = host.strip("[]").lower()
    names = {"127.0.0.1", "localhost", "[::1]", f"[{named}]" if ":" in named else named}
    return TransportSecuritySettings(enable_dns_rebinding_protection=True,
                                     allowed_hosts=sorted(f"{name}:*" for name in names),
                                     allowed_origins=sorted(f"http://{name}:*" for name in names))


def http_token(host: str) -> str | None:
    """The token HTTP clients must send (None: none is asked); one line when it is missing where it is needed or
    unfit to be one."""
    from halguru.channels.email import is_loopback
    from halguru.models.secrets import lookup_secret

    token = (lookup_secret(TOKEN_SECRET) or "").strip()
    if not token:
        if is_loopback(host):
            return None
        raise HalguruError(f"--host {host or repr(host)} lets other machines run the agents: set {TOKEN_SECRET} "
                           f"(or `keyring set halguru {TOKEN_SECRET}`) to a token clients must send as "
                           "Authorization: Bearer <token>, or listen on 127.0.0.1")
    if len(token) < MIN_TOKEN_CHARS or any(c.isspace() for c in token):
        raise HalguruError(f"{TOKEN_SECRET} must be at least {MIN_TOKEN_CHARS} characters with no spaces; make "
                           "one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'")
    return token


class BearerGate:
    """ASGI middleware: an HTTP request without ``Authorization: Bearer <token>`` is answered 401 before the MCP
    app sees it (a JSON-RPC error, as MCP clients read one)."""

    def __init__(self, app: Any, token: str):
        self.app, self.token = app, token.encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and not self._allowed(scope):
            body = json.dumps({"jsonrpc": "2.0", "id": None, "error": {
                "code": -32001, "message": f"unauthorized: send Authorization: Bearer <{TOKEN_SECRET}>"}}).encode()
            await send({"type": "http.response.start", "status": 401, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", b'Bearer realm="halguru mcp"')]})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)

    def _allowed(self, scope: Any) -> bool:
        given = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        scheme, _, token = given.partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.token)
