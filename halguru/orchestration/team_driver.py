"""The team driver: runs the agent loop for whoever holds the conversation, and acts on handoffs.

``handoff_to_<agent>`` and ``ask_<agent>`` are streaming tools given to each member's turn: a handoff ends
the turn and the next turn is the new member's (with its prompt, tools and model); an ask starts a sub-run of
the specialist inside this run and returns its answer. Guards (halguru.orchestration.guards) bound the run.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from halguru.agents.driver import RunOutcome, SubRun, sub_run
from halguru.agents.events import BaseEvent, Error, Handoff
from halguru.agents.hooks import RunHooks
from halguru.agents.loop import LoopEnd, StreamingTool, ToolOutcome, Turn, agent_loop
from halguru.models.base import Message, ToolCallRequest, ToolSpec
from halguru.orchestration.guards import TeamRun
from halguru.orchestration.team import Member, Team, load_team

if TYPE_CHECKING:
    from halguru.agents.context import RunContext
    from halguru.agents.loader import Agent

ASKED = "asked: "
ANSWERED = "answered"


@dataclass
class _TeamTool:
    """A team tool as the model sees it (``spec``), the member it names and the team run's state."""

    spec: ToolSpec
    target: str
    state: TeamRun

    @property
    def name(self) -> str:
        return self.spec.name


class HandoffTool(_TeamTool):
    """``handoff_to_<agent>``: the conversation moves to ``target``; the current turn ends."""

    async def stream(self, ctx: RunContext, call: ToolCallRequest, outcome: ToolOutcome) -> AsyncIterator[BaseEvent]:
        source = self.state.current.agent.name
        problem = self.state.hand_off(self.target)
        if problem is not None:
            outcome.stop, outcome.content, outcome.is_error = problem, f"error: {problem}", True
            return
        yield Handoff(from_agent=source, to_agent=self.target, reason=str(call.arguments.get("reason", "")))
        outcome.content, outcome.handoff = f"The conversation is now with {self.target}.", self.target


class AskTool(_TeamTool):
    """``ask_<agent>``: a sub-run of the specialist on the request; its answer is the tool's result."""

    async def stream(self, ctx: RunContext, call: ToolCallRequest, outcome: ToolOutcome) -> AsyncIterator[BaseEvent]:
        source = self.state.current.agent.name
        problem = self.state.ask_allowed(self.target)
        if problem is not None:
            outcome.stop, outcome.content, outcome.is_error = problem, f"error: {problem}", True
            return
        request = str(call.arguments.get("request", "")).strip() or "Please help."
        yield Handoff(from_agent=source, to_agent=self.target, reason=ASKED + request)
        result = SubRun()
        async for event in sub_run(ctx, self.state.team.members[self.target].agent, request, result):
            yield event
        answered = ANSWERED if result.status == "ok" else result.status
        yield Handoff(from_agent=self.target, to_agent=source, reason=answered)
        if result.status == "ok":
            self.state.progress()
            outcome.content = result.output
        else:
            outcome.content, outcome.is_error = f"error: {self.target} failed: {result.error or result.status}", True


class _Progress(RunHooks):
    """A real tool result (not a team tool) is progress: the handoff-loop guard starts over."""

    def __init__(self, state: TeamRun, team_tools: set[str]):
        self.state, self.team_tools = state, team_tools

    async def after_tool_result(self, call: ToolCallRequest, content: str, is_error: bool) -> tuple[str, bool]:
        if not is_error and call.name not in self.team_tools:
            self.state.progress()
        return content, is_error


def _team_tools(member: Member, state: TeamRun) -> dict[str, StreamingTool]:
    specs = {s.name: s for s in member.team_tool_specs}
    tools: dict[str, StreamingTool] = {t: HandoffTool(specs[t], n, state) for t, n in member.handoffs.items()}
    tools.update({t: AskTool(specs[t], n, state) for t, n in member.specialists.items()})
    return tools


@dataclass
class TeamDriver:
    """Runs a team whose lead is the loaded agent (``team:``)."""

    team: Team
    kind: str = "team"

    @property
    def timeout(self) -> float:
        return self.team.settings.timeout

    def agents(self) -> list[Agent]:
        return [m.agent for m in self.team.members.values()]

    def with_agents(self, replace_agent: Callable[[Agent], Agent]) -> TeamDriver:
        members = {name: replace(m, agent=replace_agent(m.agent)) for name, m in self.team.members.items()}
        return TeamDriver(replace(self.team, members=members))

    def timed_out(self) -> tuple[str, str]:
        return "limited", f"team run exceeded team.timeout ({self.timeout:g}s)"

    async def drive(self, ctx: RunContext, agent: Agent, history: list[Message], messages: list[Message],
                    outcome: RunOutcome) -> AsyncGenerator[BaseEvent, None]:
        state = TeamRun(self.team)
        if ctx.store is not None and not ctx.is_sub_run:  # the member that held the conversation last goes on
            conversation = ctx.store.get_conversation(ctx.conversation_id)
            state.start_with(conversation["active_agent"] if conversation else None)
        resume = ctx.resume if not ctx.is_sub_run else None
        if resume is not None and resume.state:  # an interrupted run goes on with whoever held it
            state.start_with(resume.state.get("active_agent"))
            state.handoffs = resume.state.get("handoffs", 0)
        ctx.durable_state = lambda: {"messages": [m.model_dump(exclude_defaults=True) for m in messages],
                                     "active_agent": state.current.agent.name, "handoffs": state.handoffs}
        if state.current.agent.name != self.team.lead:
            yield Handoff(from_agent=self.team.lead, to_agent=state.current.agent.name, reason="holds the conversation")
        finish_paused_step = resume is not None
        while True:
            member, end = state.current, LoopEnd()
            tools = _team_tools(member, state)

            def budget(turn_steps: int) -> str | None:
                return state.budget_problem(ctx.totals.steps, ctx.totals.prompt_tokens + ctx.totals.completion_tokens,
                                            turn_steps)

            turn = Turn(member.agent, ctx.model_for(member.agent), history, messages, extra_tools=tools,
                        budget=budget, hooks=_Progress(state, set(tools)), finish_paused_step=finish_paused_step)
            finish_paused_step = False
            async for event in agent_loop(ctx, turn, end):
                yield event
            outcome.active_agent = state.current.agent.name
            if end.reason == "handoff":  # the next turn is the new member's
                continue
            outcome.output = end.output
            if end.reason == "paused":
                outcome.status, outcome.error, outcome.paused = "paused", end.detail, end.call
            elif end.reason == "limit":
                outcome.status, outcome.error = "limited", end.detail
                yield Error(kind="limit", message=str(end.detail), fatal=True)
            return


def load_team_driver(agent: Agent) -> TeamDriver:
    return TeamDriver(load_team(agent))


