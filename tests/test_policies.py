"""The tool-call policies on their own: the repeated-call guard and the approval gate."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from halguru.agents.events import Error, ToolResult
from halguru.agents.loader import Agent
from halguru.agents.policies import ApprovalGate, RepeatGuard, Resume
from halguru.agents.runtime import run_sync
from halguru.agents.spec import AgentSpec
from halguru.models.base import Chunk, ModelRequest, ToolCallRequest
from halguru.models.scripted import ScriptedModel


def test_repeat_guard_answers_a_repeat_and_asks_for_an_answer() -> None:
    guard = RepeatGuard()
    first = ToolCallRequest(id="a", name="add", arguments={"a": 1, "b": 2})
    assert asyncio.run(guard.decide_tool_call(first)) is None
    asyncio.run(guard.after_tool_result(first, "3", False))
    again = asyncio.run(guard.decide_tool_call(first.model_copy(update={"id": "b"})))
    assert again is not None and again.content == "3" and again.answer_next and not again.run
    assert [e.type for e in again.events] == ["tool_call", "error", "tool_result"]
    other = ToolCallRequest(id="c", name="add", arguments={"b": 2, "a": 5})
    assert asyncio.run(guard.decide_tool_call(other)) is None  # other arguments: runs


class Spy(ScriptedModel):
    def __init__(self, replies: list) -> None:
        super().__init__(replies)
        self.choices: list[str] = []

    async def stream(self, request: ModelRequest) -> AsyncIterator[Chunk]:
        self.choices.append(request.tool_choice)
        async for chunk in super().stream(request):
            yield chunk


@pytest.mark.parametrize(("expression", "content", "failed"), [
    ("6*7", "42", False),
    # the bundled model with calculator and a response schema called calculator('Paris') again after its error,
    # six times until limits.max_steps (a 502 'ended limited'): an error is the known result too
    ("Paris", "error: cannot evaluate 'Paris': 'Paris' is not defined for expression 'Paris'", True)])
def test_a_repeated_call_is_not_run_again_and_the_model_must_answer(expression: str, content: str,
                                                                   failed: bool) -> None:
    agent = Agent.from_spec(AgentSpec(name="calc", model="scripted", tools=["calculator"]))
    call = {"tool_calls": [{"name": "calculator", "arguments": {"expression": expression}}]}
    model = Spy([call, call, "The answer."])
    result = run_sync(agent, f"{expression}?", model=model, record=False)
    assert result.ok and result.output == "The answer."
    results = [e for e in result.events if isinstance(e, ToolResult)]
    assert [(r.content, r.is_error) for r in results] == [(content, failed)] * 2
    assert any(isinstance(e, Error) and "called again" in e.message for e in result.events)
    assert len([e for e in result.events if isinstance(e, Error) and e.kind == "tool"]) == failed  # ran once
    assert model.choices == ["auto", "auto", "none"]


def test_approval_gate_pauses_applies_decisions_and_leaves_others() -> None:
    call = ToolCallRequest(id="c1", name="send", arguments={"to": "x"})
    gate = ApprovalGate(["send"])
    paused = asyncio.run(gate.decide_tool_call(call))
    assert paused is not None and paused.pause and paused.events[0].type == "approval_requested"
    assert asyncio.run(gate.decide_tool_call(call.model_copy(update={"name": "lookup"}))) is None
    approved = asyncio.run(ApprovalGate(["send"], Resume("run_1", [], {"c1": None})).decide_tool_call(call))
    assert approved is not None and approved.run and approved.events[0].type == "approval_approved"
    refused = asyncio.run(ApprovalGate(["send"], Resume("run_1", [], {"c1": "no"})).decide_tool_call(call))
    assert refused is not None and refused.is_error and refused.content == "error: a human refused this call: no"
