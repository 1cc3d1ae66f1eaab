"""The stdio transport of MCP servers, with a bound on one message.

The SDK's ``stdio_client`` joins a long line's pieces by concatenating them again at every read (quadratic): a
50 MB result was still being copied when a 20 s call timed out, and was reported as that timeout. Here the pieces
are kept in a list (linear), and a message over MAX_MESSAGE_BYTES is dropped as it comes: its request gets an
error response at once (when its id can be read), saying the limit. The server's lifetime follows the SDK's (own
process group, stdin closed, then the group terminated), except that the group is terminated even when the server
exited by itself: a helper process it started must not outlive it.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from typing import IO, Any

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
EXIT_GRACE = 2.0  # seconds a server gets to exit after its stdin closes, before its process group is terminated
_EDGE = 256  # bytes kept of a dropped message's start and end, where its id is
# A response's id where JSON-RPC libraries write it: first (after "jsonrpc") or last.
_ID_FIRST = re.compile(rb'^\s*\{\s*(?:"jsonrpc"\s*:\s*"2\.0"\s*,\s*)?"id"\s*:\s*(-?\d+|"[^"\\]*")')
_ID_LAST = re.compile(rb'"id"\s*:\s*(-?\d+|"[^"\\]*")\s*(?:,\s*"jsonrpc"\s*:\s*"2\.0"\s*)?\}\s*$')
_GONE = (OSError, EOFError)


class _Lines:
    """Splits stdout into JSON-RPC messages, dropping one over ``limit`` bytes."""

    def __init__(self, limit: int = MAX_MESSAGE_BYTES):
        self.limit = limit
        self.parts: list[bytes] = []
        self.size = 0
        self.head = b""  # of a message being dropped: its start, and whether its request was answered
        self.answered = False

    def feed(self, chunk: bytes) -> list[Any]:
        out: list[Any] = []
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            self._add(chunk[start:end], out)
            out.append(self._finish())
            start = end + 1
        self._add(chunk[start:], out)
        return [item for item in out if item is not None]

    def _add(self, piece: bytes, out: list[Any]) -> None:
        self.parts.append(piece)
        self.size += len(piece)
        if self.head:
            self.parts = [b"".join(self.parts)[-_EDGE:]]  # only the end is kept: the id may be there
        elif self.size > self.limit:
            joined = b"".join(self.parts)
            self.head, self.parts = joined[:_EDGE] or b" ", [joined[-_EDGE:]]
            found = _ID_FIRST.match(self.head)
            if found is not None:  # answered as soon as the limit is passed
                out.append(self._refused(found))

    def _finish(self) -> Any:
        from mcp.shared.message import SessionMessage
        from mcp_types import jsonrpc_message_adapter

        line, self.parts, self.size = b"".join(self.parts), [], 0
        if self.head:
            found = None if self.answered else _ID_LAST.search(line)
            item = None if self.answered else self._refused(found) if found is not None else ValueError(
                f"a message over {self._limit()} (the limit for one message), dropped")
            self.head, self.answered = b"", False
            return item
        if not line.strip():
            return None
        try:
            return SessionMessage(jsonrpc_message_adapter.validate_json(line.decode("utf-8", "replace"), by_name=False))
        except ValueError as exc:
            return exc

    def _limit(self) -> str:
        return f"{self.limit / 1024 / 1024:g} MB"

    def _refused(self, found: re.Match[bytes]) -> Any:
        """An error response to the request whose answer is too large."""
        from mcp.shared.message import SessionMessage
        from mcp_types import jsonrpc_message_adapter

        self.answered = True
        error = {"code": -32603, "message": f"its answer is over {self._limit()}, the limit for one message "
                                            "(the answer was dropped)"}
        response = {"jsonrpc": "2.0", "id": json.loads(found.group(1)), "error": error}
        return SessionMessage(jsonrpc_message_adapter.validate_python(response))


@asynccontextmanager
async def stdio_transport(command: list[str], env: dict[str, str], cwd: Any, errlog: IO[str],
                          limit: int = MAX_MESSAGE_BYTES,
                          on_exit: Callable[[], None] | None = None) -> AsyncIterator[tuple[Any, Any]]:
    """Run the server; yield the (read, write) streams of ``mcp.Client``. ``on_exit`` is called when its stdout
    ends (it exited, or closed stdout: it can answer nothing more), even while no request waits."""
    import anyio
    from mcp.client.stdio import get_default_environment
    from mcp.os.posix.utilities import terminate_posix_process_tree

    process = await anyio.open_process(command, env=get_default_environment() | env, stderr=errlog, cwd=cwd,
                                       start_new_session=True)
    assert process.stdin is not None and process.stdout is not None
    stdin, stdout = process.stdin, process.stdout
    to_session, incoming = anyio.create_memory_object_stream[Any](0)
    outgoing, from_session = anyio.create_memory_object_stream[Any](0)

    async def read() -> None:
        lines = _Lines(limit)
        async with to_session:
            with suppress(anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError, *_GONE):
                while True:
                    for item in lines.feed(await stdout.receive()):
                        with suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                            await to_session.send(item)  # a closed session: the rest is drained, unread
        if on_exit is not None:  # (not reached when the transport is being closed: the task is cancelled)
            on_exit()

    async def write() -> None:
        async with from_session:
            with suppress(anyio.ClosedResourceError, anyio.BrokenResourceError, *_GONE):
                async for message in from_session:
                    text = message.message.model_dump_json(by_alias=True, exclude_unset=True) + "\n"
                    await stdin.send(text.encode())
        with suppress(anyio.ClosedResourceError, anyio.BrokenResourceError, *_GONE):
            await to_session.aclose()  # the server cannot be written to: the session sees the end

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(read)
        tasks.start_soon(write)
        try:
            yield incoming, outgoing
        finally:
            with anyio.CancelScope(shield=True):
                incoming.close()
                outgoing.close()
                with suppress(anyio.ClosedResourceError, anyio.BrokenResourceError, *_GONE):
                    await stdin.aclose()
                with anyio.move_on_after(EXIT_GRACE):
                    while process.returncode is None:
                        await anyio.sleep(0.01)
                # The group even when the server exited: a helper it started would outlive the run otherwise.
                await terminate_posix_process_tree(process, EXIT_GRACE)
                with anyio.move_on_after(EXIT_GRACE):
                    while process.returncode is None:
                        await anyio.sleep(0.01)
            tasks.cancel_scope.cancel()
    with anyio.CancelScope(shield=True), anyio.move_on_after(EXIT_GRACE):
        await process.aclose()  # closes its transport (a warning at exit otherwise)
