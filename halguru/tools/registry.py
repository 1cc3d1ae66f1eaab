"""Find tools (built-in, plugins, an agent's tools.py) and run them safely."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import json
import threading
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from halguru.errors import ToolError
from halguru.tools.decorator import Tool


def plugin_tools() -> dict[str, Tool]:
    from halguru.plugins.manager import get_plugin_manager

    found: dict[str, Tool] = {}
    get_plugin_manager().hook.register_tools(register=lambda t: found.setdefault(t.name, t))
    return found


def result_text(value: Any) -> str:
    """A tool's return value as the text the model reads (str as is, pydantic models and JSON-able values as JSON)."""
    if isinstance(value, str):
        return value
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    try:
        return json.dumps(value, ensure_ascii=False, default=lambda o: o.model_dump() if isinstance(o, BaseModel)
                          else _unserialisable(o))
    except (TypeError, ValueError) as exc:
        raise ToolError(str(exc)) from None


def _unserialisable(value: Any) -> Any:
    raise TypeError(f"tool returned a value of type {type(value).__name__} that cannot be turned into JSON")


async def execute_tool(tool: Tool, arguments: dict[str, Any]) -> str:
    """Validate the arguments, run the tool within its timeout, and return its result as text.

    A synchronous tool runs on a daemon thread of its own, not the default executor: when it times out
    or the run is cancelled (Ctrl-C), the thread is abandoned (Python cannot stop a thread), so the
    process exits at once instead of waiting for the tool to return; a timeout says so in its error.

    Raises ToolError with a message meant for the model (and the trace) on any failure.
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
                                                thread_name=THREAD_PREFIX + tool.name)
    except TimeoutError:
        abandoned = "; its thread was abandoned (it may still be running until the process exits)" \
            if threaded else ""
        raise ToolError(f"{tool.name} timed out after {tool.timeout:g}s{abandoned}") from None
    except ToolError:
        raise
    except Exception as exc:  # a tool's own bug: report it to the model, keep the run alive
        raise ToolError(f"{tool.name} raised {type(exc).__name__}: {exc}") from None
    return result_text(result)


THREAD_PREFIX = "halguru-tool-"


def running_tools() -> list[str]:
    """The tools whose threads still run (after a Ctrl-C: the ones abandoned), by name."""
    return sorted({t.name.removeprefix(THREAD_PREFIX) for t in threading.enumerate()
                   if t.name.startswith(THREAD_PREFIX) and t.is_alive()})


def in_daemon_thread(function: Callable[[], Any], *, thread_name: str = "halguru-tool") -> asyncio.Future[Any]:
    """``function()`` on a new daemon thread, awaited as a future of this loop (bind a tool's arguments with
    functools.partial: a tool may have an argument called ``name`` or anything else).

    Cancelling the future (a timeout, Ctrl-C) abandons the thread: nothing waits for it, neither
    ``asyncio.run`` (it is not in the default executor) nor the interpreter at exit (it is a daemon).
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    context = contextvars.copy_context()

    def settle(value: Any, error: BaseException | None) -> None:
        if future.done():  # cancelled meanwhile: the result has no one left to read it
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)

    def work() -> None:
        value, error = None, None
        try:
            value = context.run(function)
        except Exception as exc:
            error = exc
        except BaseException as exc:  # SystemExit, KeyboardInterrupt raised by the tool itself
            error = RuntimeError(f"{type(exc).__name__}: {exc}")
        with contextlib.suppress(RuntimeError):  # the loop is closed: the run is over
            loop.call_soon_threadsafe(settle, value, error)

    threading.Thread(target=work, name=thread_name, daemon=True).start()
    return future
