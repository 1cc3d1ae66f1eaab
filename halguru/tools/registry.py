"""Find tools (built-in, plugins, an agent's tools.py) and run them safely."""

from __future__ import annotations

import asyncio
import functools
import json
import re
from typing import Any

from pydantic import BaseModel

from halguru.errors import ToolError
from halguru.storable import storable
from halguru.tools.decorator import Tool
from halguru.tools.threads import ToolExited, in_daemon_thread

# What the model reads of one tool result (its text, or its error's): a small model's context is short, and a
# result of megabytes would fill the trace and the prompt for nothing. The rest is cut with a note (cut_result).
MAX_RESULT_CHARS = 8000


def plugin_tools() -> dict[str, Tool]:
    """Every plugin's tools by name (a name is its first plugin's: see ``registered``). A tool whose arguments
    have no JSON schema (its model is built here, not as the plugin loads) is left out with a warning naming it
    and its plugin."""
    from halguru.plugins.manager import registered, warn_once

    owners: dict[str, str] = {}
    tools = registered("register_tools", "tool", lambda tool: (tool.name, tool), owners)
    for name, tool in list(tools.items()):
        try:
            tool.arguments_model  # noqa: B018 (built now, so a broken one is said before any run)
        except ToolError as exc:
            warn_once(f"plugin {owners.get(name, '?')!r}: its tool {name!r} is not loaded: {exc}")
            del tools[name]
    return tools


def result_text(value: Any) -> str:
    """A tool's return value as the text the model reads (str as is, pydantic models and JSON-able values as JSON)."""
    if isinstance(value, str):
        return value
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    try:
        return json.dumps(value, ensure_ascii=False, default=lambda o: o.model_dump() if isinstance(o, BaseModel)
                          else _unserialisable(o))
    except TypeError as exc:
        raise ToolError(str(exc)) from None
    except ValueError as exc:  # json's "Circular reference detected"
        raise ToolError(f"tool returned a value that cannot be turned into JSON: {exc} (it holds itself)") from None


def cut_result(text: str, limit: int = MAX_RESULT_CHARS) -> str:
    """``text``, or its first ``limit`` characters and a last line saying how many were cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n… (cut: {len(text) - limit} characters)"


_CUT_LINE = re.compile(r"\n… \(cut: (\d+) characters\)\Z")


def cut_sizes(result: str) -> tuple[int, int] | None:
    """For a result `cut_result` cut: how many characters the model got, and how many the tool gave; else None."""
    found = _CUT_LINE.search(result)
    if found is None:
        return None
    kept = found.start()
    return kept, kept + int(found.group(1))


def _unserialisable(value: Any) -> Any:
    raise TypeError(f"tool returned a value of type {type(value).__name__} that cannot be turned into JSON")


async def execute_tool(tool: Tool, arguments: dict[str, Any], *, limit: int = MAX_RESULT_CHARS) -> str:
    """Validate the arguments, run the tool within its timeout, and return its result as text.

    A synchronous tool runs on a daemon worker thread (halguru.tools.threads), not the default executor: when
    it times out or the run is cancelled (Ctrl-C), its call is abandoned, so the process exits at once instead
    of waiting for the tool to return; a timeout says so in its error.

    Raises ToolError with a message meant for the model (and the trace) on any failure. A result or an error
    message longer than ``limit`` (MAX_RESULT_CHARS: what a model reads) is cut (``cut_result``): every kind of
    tool (Python, HTTP, MCP) comes through here.
    """
    validated = tool.validate(arguments)
    args, kwargs = tool.call_args(validated)
    threaded = not tool.is_async and not tool.inline
    try:
        async with asyncio.timeout(tool.timeout):
            if tool.is_async:
                result = await tool.function(*args, **kwargs)
            elif tool.inline:
                result = tool.function(*args, **kwargs)
            else:
                # A sync tool runs on a thread so a slow one never blocks the event loop.
                result = await in_daemon_thread(functools.partial(tool.function, *args, **kwargs),
                                                tool_name=tool.name)
    except TimeoutError:
        abandoned = "; its thread was abandoned (it may still be running until the process exits)" \
            if threaded else ""
        raise ToolError(f"{tool.name} timed out after {tool.timeout:g}s{abandoned}") from None
    except ToolError as exc:  # e.g. an MCP server's error result, of any length
        raise ToolError(tool_text(str(exc)), detail=exc.detail and storable(exc.detail)) from None
    except (Exception, SystemExit) as exc:  # a tool's own bug (sys.exit() too): told to the model, the run goes on
        raised = exc.original if isinstance(exc, ToolExited) else exc
        raise ToolError(tool_text(f"{tool.name} raised {type(raised).__name__}: {raised}"),
                        detail=storable(tool_traceback(raised))) from None
    try:
        return tool_text(result_text(result), limit)
    except ToolError as exc:  # a result JSON cannot hold: say whose
        raise ToolError(f"{tool.name}: {exc}") from None


def tool_text(text: str, limit: int = MAX_RESULT_CHARS) -> str:
    """A tool's result or error as the model reads it and every store keeps it: cut (``cut_result``), with a
    NUL or a lone surrogate (``os.listdir`` gives a file name that is not UTF-8 so) as U+FFFD (``storable``): a
    surrogate failed the run's final write, a NUL was stored as U+FFFD on PostgreSQL only."""
    return storable(cut_result(text, limit))


def tool_traceback(exc: BaseException) -> str:
    """``exc``'s traceback from the tool's own code on (halguru's frames that called it left out): stored with the
    error event, so a tool's bug can be found from its trace (`logs show`, `halguru dev`, `--debug`)."""
    import traceback
    from pathlib import Path

    ours = Path(__file__).resolve().parents[1]  # the halguru package (halguru_myplugin.py beside it is not)
    frames = traceback.extract_tb(exc.__traceback__)
    while frames and Path(frames[0].filename).resolve().is_relative_to(ours):
        del frames[0]
    return "".join([*traceback.format_list(frames), *traceback.format_exception_only(exc)]).rstrip()
