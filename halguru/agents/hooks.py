"""Run hooks: the points where a caller or a policy may suspend a run and change what happens next.

``run(..., hooks=...)`` awaits these at each step, in the run and in its sub-runs (a specialist, a workflow
step). The debugger (`halguru dev`) pauses there for breakpoints; replay feeds recorded results back; the
tool-call policies (approvals, the repeated-call guard: halguru.agents.policies) decide calls there.
Hooks compose with ``HookChain``; a run without hooks pays nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from halguru.agents.events import BaseEvent
from halguru.models.base import ModelRequest, ToolCallRequest


@dataclass
class ToolDecision:
    """What a policy decided about a tool call.

    ``events`` are emitted first, as given. Then: ``pause`` stops the run until a human decides (approvals);
    ``run`` lets the call run as usual (an approved call); otherwise ``content`` is the call's result, given to
    the model without running the tool (``is_error`` for a refusal). ``answer_next``: the model's next call
    in this turn may not call tools (it must answer with what it has).
    """

    events: list[BaseEvent] = field(default_factory=list)
    content: str = ""
    is_error: bool = False
    pause: bool = False
    run: bool = False
    answer_next: bool = False


_POINTS = ("before_model_call", "before_tool_call", "decide_tool_call", "supply_tool_result", "after_tool_result")


class RunHooks:
    """Override what you need; each default lets the run go on unchanged."""

    # The points a subclass implements (not the default pass-throughs): a chain calls only those.
    overrides: ClassVar[frozenset[str]] = frozenset()
    # Seconds the run spent suspended in these hooks (a breakpoint): left out of the durations it records.
    # ``may_suspend``: whether they ever suspend it, so runs without such hooks skip the bookkeeping.
    paused_seconds: float = 0.0
    may_suspend: bool = False

    def suspended(self) -> float:
        """Seconds spent suspended so far (``paused_seconds``; a chain sums its hooks')."""
        return self.paused_seconds

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.overrides = frozenset(p for p in _POINTS if getattr(cls, p) is not getattr(RunHooks, p))

    async def before_model_call(self, request: ModelRequest) -> ModelRequest:
        """The request about to be sent; return it (or an edited copy) to send it."""
        return request

    async def before_tool_call(self, call: ToolCallRequest) -> ToolCallRequest:
        """The tool call about to run; return it (or one with edited arguments)."""
        return call

    async def decide_tool_call(self, call: ToolCallRequest) -> ToolDecision | None:
        """A policy's decision on the call (pause it, refuse it, answer it), or None to run it."""
        return None

    async def supply_tool_result(self, call: ToolCallRequest) -> tuple[str, bool] | None:
        """A ``(content, is_error)`` to use instead of running the tool, or None to run it."""
        return None

    async def after_tool_result(self, call: ToolCallRequest, content: str, is_error: bool) -> tuple[str, bool]:
        """The tool's result before the model sees it; return it (or an edited one)."""
        return content, is_error


class HookChain(RunHooks):
    """Several hooks as one: each sees what the previous returned; the first decision on a call wins.

    Only the hooks that override a method are called for it, so a step pays nothing for unused points.
    """

    def __init__(self, *hooks: RunHooks | None):
        present = self._present = [h for h in hooks if h is not None]
        points: dict[str, list[Any]] = {p: [] for p in _POINTS}  # one pass: a chain is built per agent turn
        for hook in present:
            for point in hook.overrides:
                points[point].append(getattr(hook, point))
        self._model, self._call, self._decide, self._supply, self._after = points.values()
        # Whether any hook edits calls, supplies results or suspends the run: the loop skips those otherwise.
        self.edits_requests, self.edits_calls, self.supplies = bool(self._model), bool(self._call), bool(self._supply)
        self.may_suspend = any(h.may_suspend for h in present)
        for point in ("decide_tool_call", "after_tool_result"):
            if len(points[point]) == 1:  # one hook at a point (the usual case): call it directly
                setattr(self, point, points[point][0])

    def suspended(self) -> float:
        return sum(h.suspended() for h in self._present)

    async def before_model_call(self, request: ModelRequest) -> ModelRequest:
        for hook in self._model:
            request = await hook(request)
        return request

    async def before_tool_call(self, call: ToolCallRequest) -> ToolCallRequest:
        for hook in self._call:
            call = await hook(call)
        return call

    async def decide_tool_call(self, call: ToolCallRequest) -> ToolDecision | None:
        for hook in self._decide:
            decision = await hook(call)
            if decision is not None:
                return decision
        return None

    async def supply_tool_result(self, call: ToolCallRequest) -> tuple[str, bool] | None:
        for hook in self._supply:
            supplied = await hook(call)
            if supplied is not None:
                return supplied
        return None

    async def after_tool_result(self, call: ToolCallRequest, content: str, is_error: bool) -> tuple[str, bool]:
        for hook in self._after:
            content, is_error = await hook(call, content, is_error)
        return content, is_error


PauseKind = Literal["model_call", "tool_call", "tool_result"]


@dataclass
class Pause:
    """Where a run is suspended, and what it is about to use (``value``, editable)."""

    kind: PauseKind
    value: Any  # ModelRequest, ToolCallRequest, or (call, content, is_error)
    future: asyncio.Future[Any]

    def resume(self, value: Any = None) -> None:
        """Continue the run, with ``value`` in place of the pending one when given."""
        if not self.future.done():
            self.future.set_result(self.value if value is None else value)


class BreakpointHooks(RunHooks):
    """Suspends the run at enabled breakpoints until the debugger resumes it.

    ``on_pause`` is told of each pause; the run waits on the pause's future, so it resumes
    from exactly that point (and is cancelled cleanly if the run is stopped meanwhile).
    """

    may_suspend = True

    def __init__(self, on_pause: Callable[[Pause], None], *, models: bool = False, tools: bool = False):
        self.on_pause = on_pause
        self.break_models = models
        self.break_tools = tools
        self.stepping = False  # "step": stop at the very next point, whatever is enabled
        self.current: Pause | None = None

    async def _pause(self, kind: PauseKind, value: Any) -> Any:
        pause = Pause(kind, value, asyncio.get_running_loop().create_future())
        self.current = pause
        self.on_pause(pause)
        started = time.perf_counter()
        try:
            return await pause.future
        finally:
            self.current = None
            self.paused_seconds += time.perf_counter() - started

    async def before_model_call(self, request: ModelRequest) -> ModelRequest:
        if self.break_models or self.stepping:
            return await self._pause("model_call", request)
        return request

    async def before_tool_call(self, call: ToolCallRequest) -> ToolCallRequest:
        if self.break_tools or self.stepping:
            return await self._pause("tool_call", call)
        return call

    async def after_tool_result(self, call: ToolCallRequest, content: str, is_error: bool) -> tuple[str, bool]:
        if self.break_tools or self.stepping:
            _, content, is_error = await self._pause("tool_result", (call, content, is_error))
        return content, is_error
