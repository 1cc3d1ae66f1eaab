"""Synchronous tools run on daemon threads, reused between calls.

Not the default executor: a tool that times out or whose run is cancelled (Ctrl-C) cannot be stopped (Python
cannot stop a thread), and the default executor's threads are joined at exit, so the process would wait for it.
A daemon thread is abandoned instead and the process exits at once. Threads are reused (starting one costs
~50 µs, more than a small tool's whole call); one is added when all are busy, and one idle for a minute ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import queue
import threading
from collections.abc import Callable
from typing import Any


class ToolExited(Exception):
    """A SystemExit or KeyboardInterrupt a tool raised itself: the run reports it as what it was (``quit raised
    SystemExit: 3``) and goes on, as for any exception; it does not end halguru."""

    def __init__(self, original: BaseException):
        super().__init__(str(original))
        self.original = original

THREAD_PREFIX = "halguru-tool-"  # a busy thread's name: the prefix and the tool it runs
_IDLE_NAME = "halguru-tool-thread"
_IDLE_SECONDS = 60.0


class _Workers:
    """Daemon threads taking jobs from one queue; ``idle`` counts those waiting for one."""

    def __init__(self) -> None:
        # A job returns what delivers its result: the thread counts itself idle first, so a caller that submits
        # again as soon as it has the result finds it waiting (no new thread for calls in a row).
        self.jobs: queue.SimpleQueue[Callable[[], Callable[[], None]]] = queue.SimpleQueue()
        self.idle = 0
        self.lock = threading.Lock()

    def submit(self, job: Callable[[], Callable[[], None]]) -> None:
        with self.lock:
            spawn = self.idle == 0
            if not spawn:
                self.idle -= 1  # that waiting thread takes this job
        self.jobs.put(job)
        if spawn:
            threading.Thread(target=self._serve, name=_IDLE_NAME, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                job = self.jobs.get(timeout=_IDLE_SECONDS)
            except queue.Empty:
                with self.lock:  # end only if no job was promised to this thread meanwhile
                    if self.idle > 0 and self.jobs.empty():
                        self.idle -= 1
                        return
                continue
            deliver = job()
            with self.lock:
                self.idle += 1
            deliver()


_WORKERS = _Workers()


def running_tools() -> list[str]:
    """The tools whose threads still run (after a Ctrl-C: the ones abandoned), by name."""
    return sorted({t.name.removeprefix(THREAD_PREFIX) for t in threading.enumerate()
                   if t.name.startswith(THREAD_PREFIX) and t.name != _IDLE_NAME and t.is_alive()})


def in_daemon_thread(function: Callable[[], Any], *, tool_name: str = "tool") -> asyncio.Future[Any]:
    """``function()`` on a daemon worker thread, awaited as a future of this loop (bind a tool's arguments with
    functools.partial: a tool may have an argument called ``name`` or anything else).

    Cancelling the future (a timeout, Ctrl-C) abandons the call: nothing waits for it, neither ``asyncio.run``
    nor the interpreter at exit (the thread is a daemon).
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

    def job() -> Callable[[], None]:
        thread = threading.current_thread()
        thread.name = THREAD_PREFIX + tool_name
        value, error = None, None
        try:
            value = context.run(function)
        except Exception as exc:
            error = exc
        except BaseException as exc:  # SystemExit, KeyboardInterrupt raised by the tool itself
            error = ToolExited(exc)
        finally:
            thread.name = _IDLE_NAME

        def deliver() -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: the run is over
                loop.call_soon_threadsafe(settle, value, error)

        return deliver

    _WORKERS.submit(job)
    return future
