"""Tool-call policies: run hooks that decide calls at the tool-call boundary, each testable on its own.

- ``ApprovalGate``: tools listed in ``approvals:`` pause the run before they execute; in a continuation run
  (after ``halguru runs approve|reject``) it applies the human's decision instead.
- ``RepeatGuard``: small models loop on the same call; the guard answers a repeat with the known result and
  makes the next model call answer (its decision says ``answer_next``: tool_choice ``none``).

The loop installs both per agent turn, after the caller's hooks (breakpoints, replay); ``Resume`` is what a
continuation run starts from.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from halguru.agents.events import ApprovalApproved, ApprovalRejected, ApprovalRequested, Error, ToolCall, ToolResult
from halguru.agents.hooks import RunHooks, ToolDecision
from halguru.errors import ToolError
from halguru.models.base import Message, ToolCallRequest

if TYPE_CHECKING:
    from halguru.tools.decorator import Tool

REFUSED = "error: a human refused this call"


@dataclass
class Resume:
    """What a continuation run starts from: the earlier run's messages and, after a pause, the human's decision."""

    paused_run_id: str
    messages: list[Message]
    decisions: dict[str, str | None] = field(default_factory=dict)  # call id -> None (approved) or a reason
    edited: set[str] = field(default_factory=set)
    client_calls: set[str] = field(default_factory=set)  # the paused reply's calls the caller runs (its tools')
    # An interrupted run's checkpoint (halguru.orchestration.durable): team or workflow state, and its label.
    state: dict[str, Any] | None = None
    checkpoint: str = ""
    # A team continuation after an approval: the state at the pause, its first checkpoint (a resume of it must
    # go on from there, not from the user's message); its totals start from zero, unlike ``state``'s.
    first_state: dict[str, Any] | None = None

    @property
    def done(self) -> set[str]:
        """Calls that already have their result (before the pause or the crash): never run twice."""
        return {m.tool_call_id for m in self.messages if m.role == "tool" and m.tool_call_id}

    @property
    def after_crash(self) -> bool:
        return self.state is not None and not self.decisions


class ApprovalGate(RunHooks):
    """Pauses calls to the tools in ``approvals`` and applies a continuation's decisions."""

    def __init__(self, approvals: list[str], resume: Resume | None = None,
                 find: Callable[[str], Tool | None] | None = None):
        self.approvals = set(approvals)
        self.find = find  # the run's tool of a name (MCP servers' too), to check a call before a human sees it
        self.decisions = resume.decisions if resume is not None else {}
        self.edited = resume.edited if resume is not None else set()
        self.paused_run_id = resume.paused_run_id if resume is not None else ""

    async def decide_tool_call(self, call: ToolCallRequest) -> ToolDecision | None:
        if call.id in self.decisions:
            reason = self.decisions[call.id]
            if reason is None:
                return ToolDecision([ApprovalApproved(call_id=call.id, name=call.name, arguments=call.arguments,
                                                      edited=call.id in self.edited,
                                                      paused_run_id=self.paused_run_id)], run=True)
            reason = reason.strip()  # `--reason " "` gives none, not "refused this call:  "
            refusal = f"{REFUSED}: {reason}" if reason else REFUSED
            return ToolDecision([ApprovalRejected(call_id=call.id, name=call.name, reason=reason,
                                                  paused_run_id=self.paused_run_id),
                                 ToolCall(call_id=call.id, name=call.name, arguments=call.arguments),
                                 ToolResult(call_id=call.id, name=call.name, content=refusal, is_error=True)],
                                content=refusal, is_error=True)
        if call.name in self.approvals and self._runnable(call):
            return ToolDecision([ApprovalRequested(call_id=call.id, name=call.name, arguments=call.arguments)],
                                pause=True)
        return None

    def _runnable(self, call: ToolCallRequest) -> bool:
        """Whether the call could run if approved: a human is not asked about a tool that is not there (an MCP
        server that did not start) or arguments its schema refuses; the model gets that error instead."""
        if self.find is None:
            return True
        tool = self.find(call.name)
        if tool is None:
            return False
        try:
            tool.validate(call.arguments)
        except ToolError:
            return False
        return True


class RepeatGuard(RunHooks):
    """A call repeated with the same arguments gets the known result, and the model must then answer. A failed
    call's error counts too: a small model that calls calculator('Paris') again after its error would do so
    until limits.max_steps."""

    def __init__(self) -> None:
        self.results: dict[tuple[str, str], tuple[str, bool]] = {}  # its content, and whether it is an error
        self.keys: dict[str, tuple[str, str]] = {}  # call id -> its key, between decision and result

    async def decide_tool_call(self, call: ToolCallRequest) -> ToolDecision | None:
        key = self.keys[call.id] = (call.name, json.dumps(call.arguments, sort_keys=True))
        known = self.results.get(key)
        if known is None:
            return None
        content, is_error = known
        return ToolDecision(answer_next=True, events=[
            ToolCall(call_id=call.id, name=call.name, arguments=call.arguments),
            Error(kind="limit", message=f"{call.name} called again with the same arguments; reusing the result "
                                        "and asking for an answer"),
            ToolResult(call_id=call.id, name=call.name, content=content, is_error=is_error)],
            content=content, is_error=is_error)

    async def after_tool_result(self, call: ToolCallRequest, content: str, is_error: bool) -> tuple[str, bool]:
        key = self.keys.pop(call.id, None)
        if key is not None:
            self.results[key] = (content, is_error)
        return content, is_error
