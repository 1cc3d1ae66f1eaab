"""The team tools a runtime step hands over to orchestration: ``handoff_to_<agent>`` and ``ask_<agent>``.

They yield untraced events (the runtime numbers and records them, one event stream) and fill a
``TeamCallOutcome`` with what the model is told and whether the run must stop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from halguru.agents.events import BaseEvent, Error, Handoff
from halguru.models.base import ToolCallRequest
from halguru.orchestration.guards import TeamRun

ASKED = "asked: "
ANSWERED = "answered"


@dataclass
class TeamCallOutcome:
    content: str = ""
    is_error: bool = False
    stop: str | None = None        # a guard ended the run (status limited)
    handed_to: str | None = None   # the conversation moved to this agent
    steps: int = 0                 # a specialist's model calls and tokens count toward the run
    prompt_tokens: int = 0
    completion_tokens: int = 0


def _refused(outcome: TeamCallOutcome, problem: str) -> Error:
    """A guard refused the handoff or ask: the run stops as limited, and the model is told why."""
    outcome.stop, outcome.content, outcome.is_error = problem, f"error: {problem}", True
    return Error(kind="limit", message=problem, fatal=True)


def is_team_tool(orch: TeamRun, name: str) -> bool:
    return name in orch.current.handoffs or name in orch.current.specialists


async def team_call(orch: TeamRun, call: ToolCallRequest, outcome: TeamCallOutcome,
                    sampling: dict[str, Any] | None) -> AsyncIterator[BaseEvent]:
    source = orch.current.agent.name
    if call.name in orch.current.handoffs:
        target = orch.current.handoffs[call.name]
        problem = orch.hand_off(target)
        if problem is not None:
            yield _refused(outcome, problem)
            return
        yield Handoff(from_agent=source, to_agent=target, reason=str(call.arguments.get("reason", "")))
        outcome.content, outcome.handed_to = f"The conversation is now with {target}.", target
        return
    target = orch.current.specialists[call.name]
    problem = orch.ask_allowed(target)
    if problem is not None:
        yield _refused(outcome, problem)
        return
    request = str(call.arguments.get("request", "")).strip() or "Please help."
    yield Handoff(from_agent=source, to_agent=target, reason=ASKED + request)
    from halguru.agents.runtime import run

    member = orch.team.members[target]
    status, output, error = "failed", "", None
    # The specialist runs through the one entry point, unrecorded: its events join this run's trace.
    async for event in run(member.agent, request, model=orch.model_for(member), record=False, sampling=sampling):
        if event.type == "run_finished":
            status, output, error = event.status, event.output, event.error  # type: ignore[union-attr]
            outcome.steps = event.steps  # type: ignore[union-attr]
            outcome.prompt_tokens = event.prompt_tokens  # type: ignore[union-attr]
            outcome.completion_tokens = event.completion_tokens  # type: ignore[union-attr]
        elif event.type not in ("run_started", "token"):  # its answer is not streamed to the user
            yield event
    yield Handoff(from_agent=target, to_agent=source, reason=ANSWERED if status == "ok" else status)
    if status == "ok":
        orch.progress()
        outcome.content = output
    else:
        outcome.content, outcome.is_error = f"error: {target} failed: {error or status}", True
