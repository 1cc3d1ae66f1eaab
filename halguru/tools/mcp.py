"""Tools from MCP servers (agent.yaml ``mcp:``), through the official ``mcp`` SDK.

Each server is held open by its own background task for the length of a run: the SDK's anyio cancel
scopes must be entered and left by one task, while the runtime calls tools (and may be closed) from
others. Calls go through the shared ``mcp.Client``, which works from any task of the same event loop.
Every failure is a line or a ToolError that names the server, so a broken server never ends a run.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import logging
import math
import os
import re
import sys
import tempfile
import time
import weakref
from collections.abc import Collection, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from halguru.errors import ToolError
from halguru.models.base import ToolSpec
from halguru.models.secrets import expand_secrets
from halguru.tools.decorator import Tool
from halguru.tools.mcp_text import (
    OPENAI_MAX_TOOLS,
    OTHER_CONTENT,
    REFUSED,
    USERINFO,
    bulky,
    condensed,
    crowded,
    first_problem,
    garbled,
    reason_line,
    result_text,
    shown_url,
    spec_chars,
)
from halguru.tools.registry import cut_result
from halguru.tools.schema_tool import schema_tool

if TYPE_CHECKING:
    import mcp_types
    from mcp import Client

    from halguru.tools.mcp_http import BoundedTransport
    from halguru.tools.settings import MCPServerSettings

# A library should not print: without this, the SDK's own warnings (a server writing junk to stdout)
# would reach the user's terminal through logging's last-resort handler. What junk came is said in the
# server's errors instead (_Server._incoming).
logging.getLogger("mcp").addHandler(logging.NullHandler())

# The tool names OpenAI-compatible endpoints accept (their function-name pattern); a server may offer others.
_TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
# A tool's description goes into every model call: a server's 200,000-character one made "hi" a 40,077-token prompt.
MAX_DESCRIPTION_CHARS = 4000
CLOSE_TIMEOUT = 10.0  # seconds a server gets to shut down before its task is cancelled
# A kept server no run has used for this long is stopped when another is asked for: each published version of an
# agent has its own folder, so its own servers, and the replaced versions' kept running until serve stopped.
IDLE_STOP = 600.0
# A kept server whose start timed out (it never answered) is not started again for this long: each run waited its
# whole timeout (30 s) before the model was called, so each message of a chat or serve took 30 s more.
RETRY_AFTER = 60.0
# The longest an MCP tool call may run while its server keeps reporting progress (a call that reports none ends
# after the server's timeout); the run's own limits.timeout (300 s by default) comes first.
LONGEST_CALL = 3600.0
# Servers that spoke the initialize handshake (not server/discover) when last started, by _Server.key: the SDK's
# discover probe waits 10 s on a server that never answers it, at every start, so those start in legacy mode.
LEGACY_FILE = "mcp-legacy-servers.json"
# A server offering more tools than this with no allow-list is warned about: every tool's name, description and
# schema goes into every model call (500 of a tracker's tools: ~30,000 tokens for "hi"), and models choose worse.
MANY_TOOLS = 40
MANY_CHARS = 40_000  # (about 10,000 tokens) what one server's tools may take of every model call before a warning


@dataclass
class MCPToolbox:
    """The tools of a run's MCP servers, and one line per server (or tool) that could not be offered."""

    tools: dict[str, Tool] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # servers offering so many tools that they flood the prompt
    servers: list[_Server] = field(default_factory=list)
    pooled: bool = False  # the servers belong to a pool (serve mode) and outlive the run
    released: bool = False  # a pooled toolbox was closed: its servers are no longer in use by it

    @property
    def tool_specs(self) -> list[ToolSpec]:
        return [ToolSpec(name=t.name, description=t.description, parameters=t.parameters)
                for t in self.tools.values()]

    async def close(self) -> None:
        """Stop every server (a pool's: let them go); safe to call twice, and from any task of the loop that opened
        them."""
        if self.pooled:
            if not self.released:
                self.released = True
                for server in self.servers:
                    server.users -= 1
                    server.last_used = time.monotonic()
            return
        await _stop(self.servers)


async def _stop(servers: Sequence[_Server]) -> None:
    """Let each server shut down (its task leaves the SDK's contexts itself), cancelling only laggards."""
    for server in servers:
        server.stop_soon()
    tasks = [s.task for s in servers if not s.task.done()]
    if tasks:
        # asyncio.wait does not cancel the tasks if this caller is cancelled: they still shut down.
        _, late = await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT)
        for task in late:
            task.cancel()
    for server in servers:
        server.close_log()


class MCPPool:
    """MCP servers kept running between runs, for a long-lived process (serve mode): each is started on first
    use and started again after it died, so a request does not pay a server's start."""

    def __init__(self) -> None:
        self.servers: dict[tuple[str, str], _Server] = {}
        self.retired: set[_Server] = set()  # idle servers stopping by themselves

    def server(self, settings: MCPServerSettings, base: Path | None) -> _Server:
        """The running server of these settings (in use by the caller from now: its toolbox's close lets it go)."""
        key = (settings.model_dump_json(), str(base))
        self._retire_idle(but=key)
        server = self.servers.get(key)
        if server is not None and server.hung_for() is not None:  # its failure, at once, until RETRY_AFTER
            server.users += 1
            return server
        if server is None or server.task.done() or (server.ready and server.client is None):
            if server is not None:
                server.stop_soon()  # a crashed server's task leaves its contexts by itself
            server = self.servers[key] = _Server(settings, base)
        server.users += 1
        return server

    def _retire_idle(self, but: tuple[str, str]) -> None:
        """Stop the servers no run has used for IDLE_STOP seconds (not ``but``'s, which is being asked for)."""
        now = time.monotonic()
        for key, server in list(self.servers.items()):
            if key != but and server.users <= 0 and now - server.last_used > IDLE_STOP:
                del self.servers[key]
                self.retired.add(server)
                server.task.add_done_callback(functools.partial(self._stopped, server))
                server.stop_soon()

    def _stopped(self, server: _Server, _: object) -> None:
        server.close_log()
        self.retired.discard(server)

    async def close(self) -> None:
        await _stop([*self.servers.values(), *self.retired])
        self.servers.clear()
        _POOLS.pop(asyncio.get_running_loop(), None)


_POOLS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, MCPPool] = weakref.WeakKeyDictionary()


async def stop_kept_servers() -> None:
    """Stop the servers ``keep_servers_running`` kept on this event loop (none: nothing to do)."""
    pool = _POOLS.get(asyncio.get_running_loop())
    if pool is not None:
        await pool.close()


def keep_servers_running() -> MCPPool:
    """From now on, runs on this event loop share their MCP servers; close the pool when the process stops."""
    loop = asyncio.get_running_loop()
    pool = _POOLS.get(loop)
    if pool is None:
        pool = _POOLS[loop] = MCPPool()
    return pool


async def open_mcp_tools(servers: Sequence[MCPServerSettings], base: Path | None, *,
                         taken: Mapping[str, str] | Collection[str] = ()) -> MCPToolbox:
    """Start the servers concurrently (each within its timeout) and collect their allowed tools.

    ``base`` is the agent folder stdio servers run from; ``taken`` are the names an MCP tool may not shadow, with
    whose they are (``the agent``, ``its team``: see ``taken_names``), and then each server's tools are its own
    against the servers listed after it. Never raises for a server's fault: that becomes a line in ``errors``.
    """
    pool = _POOLS.get(asyncio.get_running_loop())
    asked = time.monotonic()
    toolbox = MCPToolbox(servers=[pool.server(s, base) if pool else _Server(s, base) for s in servers],
                         pooled=pool is not None)
    try:
        listings = await asyncio.gather(*(s.started() for s in toolbox.servers), return_exceptions=True)
    except BaseException:
        await toolbox.close()
        raise
    names = dict(taken) if isinstance(taken, Mapping) else dict.fromkeys(taken, "the agent")
    giving: list[str] = []  # the servers whose tools are offered
    for server, listing in zip(toolbox.servers, listings, strict=True):
        if isinstance(listing, BaseException):
            ago = asked - server.settled if server.settled < asked else None  # a kept server's earlier failure
            retry = "" if ago is None else (f" (at its start {ago:.0f}s ago; the next try is in "
                                            f"{max(0.0, RETRY_AFTER - ago):.0f}s)")
            toolbox.errors.append(f"mcp server '{server.name}' failed to start: {server.failure(listing)}{retry}")
            continue
        allowed = server.settings.tools
        offered = {t.name: t for t in listing}
        if allowed is not None:
            missing = [n for n in allowed if n not in offered]
            if missing:
                toolbox.errors.append(f"mcp server '{server.name}' has no tool {', '.join(map(repr, missing))} "
                                      f"(offers: {', '.join(offered) or 'none'})")
        listed: set[str] = set()
        kept: list[Tool] = []
        for tool in listing:
            if allowed is not None and tool.name not in allowed:
                continue
            if tool.name in listed:
                toolbox.errors.append(f"mcp server '{server.name}' lists tool {tool.name!r} twice; the first is "
                                      "offered")
                continue
            listed.add(tool.name)
            if not _TOOL_NAME.fullmatch(tool.name):
                toolbox.errors.append(f"mcp server '{server.name}': tool {tool.name!r} is not offered: a tool name "
                                      "is 1 to 64 letters, digits, '_' or '-' (an allow-list, the server's tools:, "
                                      "leaves it out)")
                continue
            if tool.name in names:
                toolbox.errors.append(f"mcp server '{server.name}': tool {tool.name!r} is not offered: "
                                      f"{names[tool.name]} has a tool of that name, which comes first")
                continue
            names[tool.name] = f"mcp server '{server.name}' (listed before)"
            toolbox.tools[tool.name] = _as_tool(server, tool)
            kept.append(toolbox.tools[tool.name])
        giving += [server.name] if kept else []
        if allowed is None and len(kept) > MANY_TOOLS:
            toolbox.warnings.append(crowded(server.name, kept))
        elif sum(map(spec_chars, kept)) > MANY_CHARS:
            toolbox.warnings.append(bulky(server.name, kept))
    if len(toolbox.tools) > OPENAI_MAX_TOOLS and len(giving) > 1:  # (one server alone: its own warning says so)
        toolbox.warnings.append(f"mcp servers {', '.join(map(repr, giving))} offer {len(toolbox.tools)} tools "
                                "together, each sent to the model at every call; OpenAI refuses more than "
                                f"{OPENAI_MAX_TOOLS} in a request: narrow their tools: lists")
    return toolbox


def taken_names(own: Collection[str], team: Collection[str] = (), client: Collection[str] = ()) -> dict[str, str]:
    """The names an agent's MCP tools may not have, with whose they are, for ``open_mcp_tools``' errors: its
    own tools (``tools:``, ``search_knowledge``), its team tools and those a client's request sent."""
    return {**dict.fromkeys(client, "the request's tools"), **dict.fromkeys(team, "the agent's team"),
            **dict.fromkeys(own, "the agent")}


def _as_tool(server: _Server, tool: mcp_types.Tool) -> Tool:
    async def call(arguments: dict[str, Any]) -> str:
        return await server.call(tool.name, arguments)

    description = cut_result(tool.description or tool.title or f"{tool.name} (MCP server {server.name})",
                             MAX_DESCRIPTION_CHARS)
    # The call times out first (naming the server, after `timeout` seconds without progress); this is a backstop.
    return schema_tool(tool.name, description, tool.input_schema, call, timeout=LONGEST_CALL + 5)


class _Stalled(Exception):
    """A call that got neither its answer nor progress within the server's timeout."""


class _Server:
    """One MCP server, held open by a background task until ``stop`` is set."""

    def __init__(self, settings: MCPServerSettings, base: Path | None):
        self.settings = settings
        self.name = settings.name
        self.base = base
        self.client: Client | None = None
        self.log: IO[str] | None = None
        # What it sent that is not JSON-RPC (a stdio server printing to stdout): how often, and the last piece.
        self.garbled, self.garbled_text = 0, ""
        self.oversized = 0  # answers dropped by the HTTP transport for passing the limit on one message
        self.http: BoundedTransport | None = None  # an HTTP server's transport, which knows the last error status
        self.stop = asyncio.Event()
        self.users, self.last_used = 0, time.monotonic()  # pooled: the open toolboxes that hold it, and since when
        self._scope: Any = None  # the anyio cancel scope around the server's lifetime
        self._ready: asyncio.Future[list[mcp_types.Tool]] = asyncio.get_running_loop().create_future()
        self.settled = math.inf  # when it started or failed to
        self.timed_out = False  # its start got no answer within the timeout
        self._ready.add_done_callback(self._settle)
        self.task = asyncio.create_task(self._hold(), name=f"mcp server {settings.name}")

    async def started(self) -> list[mcp_types.Tool]:
        return await asyncio.shield(self._ready)

    def _settle(self, ready: asyncio.Future[list[mcp_types.Tool]]) -> None:
        self.settled = time.monotonic()
        # (reading the exception: a start that nobody awaits any more, the run closed meanwhile, must not warn)
        failed = None if ready.cancelled() else ready.exception()
        self.timed_out = isinstance(failed, TimeoutError) and not self.stop.is_set()

    def hung_for(self) -> float | None:
        """Seconds since its start timed out, while within RETRY_AFTER (None: it did not, or long enough ago)."""
        ago = time.monotonic() - self.settled
        return ago if self.timed_out and ago < RETRY_AFTER else None

    @property
    def ready(self) -> bool:
        """It has started (or failed to): a pooled server that is ready without a client has died."""
        return self._ready.done()

    def stop_soon(self) -> None:
        """Let the holding task leave its contexts itself (a still-starting server is given up at once)."""
        self.stop.set()
        if self._scope is not None and not self._ready.done():
            self._scope.cancel()

    async def _hold(self) -> None:
        import anyio

        try:
            # One cancel scope around the whole lifetime, so the start timeout never splits the SDK's scopes.
            with anyio.CancelScope(deadline=anyio.current_time() + self.settings.timeout) as scope:
                self._scope = scope
                async with AsyncExitStack() as stack:
                    legacy = self.key in _legacy_servers()
                    try:
                        client = await stack.enter_async_context(await self._client(stack, legacy))
                    except Exception:
                        if legacy:  # it may speak only server/discover now: the next start probes again
                            _remember(self.key, legacy=False)
                        raise
                    if not legacy and client.session.initialize_result is not None:
                        _remember(self.key, legacy=True)
                    listing = await _list_tools(client)
                    scope.deadline = math.inf
                    self.client = client
                    self._ready.set_result(listing)
                    await self.stop.wait()
            if scope.cancelled_caught and not self._ready.done():
                self._ready.set_exception(TimeoutError(
                    "stopped while starting" if self.stop.is_set() else self.garbled_note(0)
                    or f"no answer within {self.settings.timeout:g}s (timeout)"))
        except Exception as exc:
            if not self._ready.done():
                self._ready.set_exception(exc)
            # else: the server went away while running; calls already report that to the model.
        except BaseException:
            if not self._ready.done():
                self._ready.cancel()
            raise
        finally:
            self.client = None
            if not self._ready.done():
                self._ready.set_exception(RuntimeError("stopped before it started"))

    @property
    def key(self) -> str:
        """Names the server in LEGACY_FILE, without its secrets: a digest of its command and folder, or its URL."""
        s = self.settings
        what = [*s.command, str(self.base)] if s.command is not None else [shown_url(s.url or "")]
        return hashlib.sha256(json.dumps(what).encode()).hexdigest()[:32]

    async def _client(self, stack: AsyncExitStack, legacy: bool) -> Client:
        from mcp import Client, Implementation

        from halguru import __version__

        s = self.settings
        if s.command is not None:
            from mcp import StdioServerParameters, stdio_client

            from halguru.tools.mcp_stdio import stdio_transport

            env = {k: expand_secrets(v) for k, v in s.env.items()}
            # The server's stderr goes to a file, never to the user's terminal; its last line explains a crash.
            self.log = tempfile.TemporaryFile("a+", encoding="utf-8", errors="replace")  # noqa: SIM115 (closed by close())
            if sys.platform == "win32":  # the SDK's own transport: Job Objects, no bound on a message
                params = StdioServerParameters(command=s.command[0], args=s.command[1:], env=env,
                                               cwd=self.base if self.base is not None else None)
                transport: Any = stdio_client(params, errlog=self.log)
            else:
                transport = stdio_transport(s.command, env, self.base, self.log, on_exit=self._exited)
        else:
            import httpx2
            from mcp.client.streamable_http import streamable_http_client

            from halguru.tools.mcp_http import BoundedTransport
            from halguru.tools.mcp_stdio import MAX_MESSAGE_BYTES

            assert s.url is not None
            headers = {k: expand_secrets(v) for k, v in s.headers.items()}
            self.http = BoundedTransport(MAX_MESSAGE_BYTES, self._dropped)
            http = await stack.enter_async_context(
                httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(s.timeout, read=max(300, s.timeout)),
                                   transport=self.http))
            transport = streamable_http_client(s.url, http_client=http)
        return Client(transport, read_timeout_seconds=s.timeout, cache=None, message_handler=self._incoming,
                      mode="legacy" if legacy else "auto",
                      client_info=Implementation(name="halguru", version=__version__))

    def _exited(self) -> None:
        """A stdio server's stdout ended: it died (between calls too, as an idle server killed for memory). Its
        client is dropped at once, so a pool starts it again for the next run, and a call says it is not running
        rather than sending a request into a closed pipe ('stopped during add', from a server dead long before)."""
        self.client = None

    async def _incoming(self, message: Any) -> None:
        """The SDK hands over what it could not read as an exception (and logs it where nobody looks)."""
        if isinstance(message, Exception):
            self.garbled += 1
            self.garbled_text = garbled(message)

    def _dropped(self) -> None:
        self.oversized += 1

    def garbled_note(self, before: int) -> str:
        """Why no answer came, when the server sent something that is not JSON-RPC since ``before``, else ''."""
        if self.garbled <= before:
            return ""
        where = "wrote on stdout" if self.settings.command is not None else "sent"
        return (f"it {where} something that is not JSON-RPC ({self.garbled_text}) and no answer within "
                f"{self.settings.timeout:g}s" + ("; a stdio server must write only its messages to stdout (logs go "
                                                  "to stderr)" if self.settings.command is not None else ""))

    async def call(self, tool: str, arguments: dict[str, Any]) -> str:
        """Call one tool; any failure is a ToolError naming the server (the model reads it)."""
        from mcp import MCPError
        from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT
        from pydantic import ValidationError

        client = self.client
        where = f"mcp server '{self.name}'"
        if client is None:
            raise ToolError(f"{where} is not running{self.last_words()}")
        garbled, oversized = self.garbled, self.oversized
        try:
            result = await self._call_tool(client, tool, arguments)
        except _Stalled as exc:
            raise self._timed_out(tool, garbled, f"{self.settings.timeout:g}s{exc}") from None
        except MCPError as exc:
            if self.oversized > oversized:  # the SDK made a parse or connection error of it; the server is fine
                from halguru.tools.mcp_stdio import MAX_MESSAGE_BYTES

                raise ToolError(f"{where}: {tool} failed: its answer is over {MAX_MESSAGE_BYTES / 1024 / 1024:g} MB, "
                                "the limit for one message (the answer was dropped)") from None
            if exc.code == CONNECTION_CLOSED:
                self.client = None  # later calls say it is not running, without a round trip
                raise ToolError(f"{where} stopped during {tool}: connection closed{self.last_words()}") from None
            if exc.code == REQUEST_TIMEOUT:
                raise self._timed_out(tool, garbled, f"{LONGEST_CALL:g}s, the longest a call may run") from None
            raise ToolError(f"{where}: {tool} failed: {self.refusal(condensed(exc.message))}") from None
        except ValidationError as exc:
            raise ToolError(f"{where} returned an invalid result for {tool}: {first_problem(exc)}") from None
        except Exception as exc:
            raise ToolError(f"{where}: {tool} failed: {reason_line(exc)}{self.last_words()}") from None
        try:
            text = result_text(result)
        except (TypeError, ValueError, AttributeError) as exc:
            raise ToolError(f"{where} returned an invalid result for {tool}: {exc}") from None
        if result.is_error:
            raise ToolError(f"{where}: {tool} failed: {text or 'no details'}")
        return text

    def _timed_out(self, tool: str, garbled: int, after: str) -> ToolError:
        """A call with no answer: the server wrote what is not JSON-RPC meanwhile (said so), or it timed out."""
        where = f"mcp server '{self.name}'"
        if self.garbled > garbled:
            return ToolError(f"{where}: {tool} failed: {self.garbled_note(garbled)}")
        return ToolError(f"{where}: {tool} timed out after {after}")

    async def _call_tool(self, client: Client, tool: str, arguments: dict[str, Any]) -> mcp_types.CallToolResult:
        """The call, given up (``_Stalled``) once ``timeout`` seconds pass with neither its answer nor a progress
        notification from the server. A long tool that says it is still at work (``halguru mcp serve``'s
        ``ask_<agent>`` does) runs on, up to LONGEST_CALL and the run's own timeout: a 40 s agent behind one timed
        out at 30 s however often it reported progress."""
        heard = started = time.monotonic()

        async def progressed(progress: float, total: float | None, message: str | None) -> None:
            nonlocal heard
            heard = time.monotonic()

        call = asyncio.ensure_future(client.call_tool(tool, arguments, read_timeout_seconds=LONGEST_CALL,
                                                      progress_callback=progressed))
        try:
            while not call.done():
                await asyncio.wait({call}, timeout=max(0.0, heard + self.settings.timeout - time.monotonic()))
                if not call.done() and time.monotonic() - heard >= self.settings.timeout:
                    ran = f" without progress (it ran {time.monotonic() - started:.0f}s)" if heard > started else ""
                    raise _Stalled(ran)
            return call.result()
        finally:
            if not call.done():  # given up, or the run cancelled: the SDK tells the server the call is cancelled
                call.cancel()
                await asyncio.wait({call})

    def failure(self, exc: BaseException) -> str:
        """Why the server did not start, its URL without credentials (this line lands in traces and logs)."""
        url = self.settings.url
        reason = self.refusal(reason_line(exc))
        if reason.startswith(OTHER_CONTENT):  # the SDK's word for a web page (the site's root, a docs page)
            kind = reason.removeprefix(OTHER_CONTENT).split(";")[0].strip() or "something else"
            reason = f"it answered with {kind}, not MCP: give the server's streamable HTTP endpoint (often /mcp)"
        if url:
            reason = USERINFO.sub("//***@", reason.replace(url, shown_url(url)))
        where = f" ({shown_url(url)})" if url else ""
        return f"{reason}{where}{self.last_words()}"

    def refusal(self, reason: str) -> str:
        """The SDK's word for an HTTP error answer, with the status it leaves out (a 401 is a wrong token)."""
        if reason != REFUSED or self.http is None or not self.http.refused:
            return reason
        from urllib.parse import urlsplit

        if urlsplit(self.settings.url or "").path.rstrip("/").endswith("/sse"):
            return (f"{self.http.refused}: an /sse URL is the older HTTP+SSE transport, which halguru does not "
                    "speak; give the server's streamable HTTP endpoint (often /mcp)")
        return f"the server answered {self.http.refused}"

    def last_words(self) -> str:
        """The last line the server wrote to stderr, as ' (stderr: ...)', or ''."""
        if self.log is None or self.log.closed:
            return ""
        try:
            fd = self.log.fileno()
            size = os.fstat(fd).st_size
            tail = os.pread(fd, 4096, max(0, size - 4096)).decode("utf-8", "replace")
        except OSError:
            return ""
        lines = [line.strip() for line in tail.splitlines() if line.strip()]
        return f" (stderr: {lines[-1] if len(lines[-1]) <= 300 else lines[-1][:299] + '…'})" if lines else ""

    def close_log(self) -> None:
        if self.log is not None:
            self.log.close()


def _legacy_file() -> Path:
    from halguru.config import get_settings

    return get_settings().home / LEGACY_FILE


def _legacy_servers() -> set[str]:
    try:
        found = json.loads(_legacy_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    return {k for k in found if isinstance(k, str)} if isinstance(found, list) else set()


def _remember(key: str, *, legacy: bool) -> None:
    """Note (or forget) that a server speaks the handshake; a home that cannot be written only costs time. Read,
    changed and written under the file's lock: two processes starting servers at once each kept their own entry
    and lost the other's."""
    from halguru.atomic import lock_for_update, write_atomically

    with contextlib.suppress(OSError), lock_for_update(_legacy_file()):
        known = _legacy_servers()
        known = known | {key} if legacy else known - {key}
        write_atomically(_legacy_file(), json.dumps(sorted(known)))


async def _list_tools(client: Client) -> list[mcp_types.Tool]:
    tools: list[mcp_types.Tool] = []
    cursor: str | None = None
    for _ in range(100):  # a server whose cursors never end cannot hang the start
        page = await client.list_tools(cursor=cursor)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if not cursor:
            break
    return tools
