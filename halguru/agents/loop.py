"""The plain agent loop: model call → tool calls → ... → answer, for one agent's turn.

It yields untraced events (the top-level run numbers and records them) and ends with a ``LoopEnd`` whose
reason the caller acts on: an answer, a handoff to another agent, a call paused for approval, or a limit.
Orchestration wraps this loop (teams run it per member, workflows per agent step); it knows nothing of them:
team tools are ``StreamingTool``s, and approvals and the repeated-call guard are policies (run hooks).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from halguru.agents.events import BaseEvent, Error, ModelCall, ModelResult, Retrieval, Token, ToolCall, ToolResult
from halguru.agents.hooks import HookChain, RunHooks
from halguru.agents.policies import ApprovalGate, RepeatGuard
from halguru.errors import ToolError
from halguru.models.base import (
    FormatErrorChunk,
    Message,
    Model,
    ModelRequest,
    SamplingSettings,
    TextChunk,
    ToolCallChunk,
    ToolCallRequest,
    ToolSpec,
    UsageChunk,
)
from halguru.tools.registry import execute_tool

if TYPE_CHECKING:
    from halguru.agents.context import RunContext
    from halguru.agents.loader import Agent


@dataclass
class LoopEnd:
    """Why a loop stopped. ``detail``: the agent handed to, or what limit or failure stopped it."""

    reason: Literal["answer", "handoff", "paused", "limit", "failed"] = "answer"
    output: str = ""
    detail: str | None = None
    call: ToolCallRequest | None = None  # paused: the call that waits for a human


@dataclass
class ToolOutcome:
    """What a streaming tool tells the loop besides its result."""

    content: str = ""
    is_error: bool = False
    handoff: str | None = None  # the conversation moves to this agent; the loop ends after this call
    stop: str | None = None     # a guard refused: the run ends with this limit


@runtime_checkable
class StreamingTool(Protocol):
    """A tool whose body emits events (a sub-run, a handoff) before its result: orchestration's team tools."""

    spec: ToolSpec

    @property
    def name(self) -> str: ...

    def stream(self, ctx: RunContext, call: ToolCallRequest, outcome: ToolOutcome) -> AsyncIterator[BaseEvent]:
        ...


def _max_steps(agent: Agent) -> Callable[[int], str | None]:
    limit = agent.spec.limits.max_steps

    def check(steps: int) -> str | None:
        if steps >= limit:
            return f"stopped after {limit} model calls without a final answer (limits.max_steps)"
        return None

    return check


@dataclass
class Turn:
    """One agent's turn: what it sees and may use. ``messages`` (this run's so far) grows as it goes."""

    agent: Agent
    model: Model
    history: list[Message]
    messages: list[Message]
    extra_tools: dict[str, StreamingTool] = field(default_factory=dict)
    budget: Callable[[int], str | None] | None = None  # before each model call: a limit reached, or None
    output_schema: dict[str, Any] | None = None
    hooks: RunHooks | None = None  # the driver's own policies for this turn, after the caller's hooks
    finish_paused_step: bool = False  # a continuation first finishes the paused step's calls, without a model call


def _settings(agent: Agent, sampling: dict[str, Any] | None) -> SamplingSettings:
    spec = agent.spec
    return SamplingSettings(**{**spec.sampling.model_dump(), "max_tokens": spec.limits.max_tokens, **(sampling or {})})


async def agent_loop(ctx: RunContext, turn: Turn, end: LoopEnd) -> AsyncGenerator[BaseEvent, None]:
    """Run ``turn`` to its end (set in ``end``), yielding its events."""
    agent, spec = turn.agent, turn.agent.spec
    resume = ctx.resume if not ctx.is_sub_run else None
    gate = ApprovalGate(spec.approvals, resume) if spec.approvals or resume is not None else None
    guard = RepeatGuard()
    hooks = HookChain(gate, guard, ctx.hooks, turn.hooks)
    done = resume.done if resume is not None else set()
    tools: list[ToolSpec] = [*agent.tool_specs, *(t.spec for t in turn.extra_tools.values())]
    if spec.mcp:  # an agent's MCP servers start when it first gets the conversation (once per run)
        if agent.name not in ctx.mcp:
            from halguru.tools.mcp import open_mcp_tools

            ctx.mcp[agent.name] = await open_mcp_tools(spec.mcp, agent.path, taken=agent.tools)
            for line in ctx.mcp[agent.name].errors:  # a server that failed: the run goes on without it
                yield ctx.tag(Error(kind="mcp", message=line))
        tools += ctx.mcp[agent.name].tool_specs
    knowledge = _Knowledge(agent) if agent.knowledge is not None else None
    system = agent.instructions
    if knowledge is not None and spec.retrieval.mode in ("auto", "both") and not turn.finish_paused_step:
        block = ""
        async for event in knowledge.auto(ctx, _last_user(turn.messages)):
            if isinstance(event, str):
                block = event
            else:
                yield ctx.tag(event)
        system = f"{system}\n\n{block}".strip()
    prefix = [Message(role="system", content=system)] if system else []
    budget = turn.budget or _max_steps(agent)
    settings = _settings(agent, ctx.sampling)
    steps = 0
    unfinished = _unfinished(turn.messages) if turn.finish_paused_step else None
    while True:
        if unfinished is not None:  # a continuation finishes the paused step first: no model call
            assistant, calls, unfinished = unfinished, list(unfinished.tool_calls), None
        else:
            problem = budget(steps)
            if problem is not None:
                end.reason, end.detail = "limit", problem
                return
            steps += 1
            ctx.totals.steps += 1
            if not ctx.is_sub_run:
                ctx.trace.step = ctx.totals.steps
            tool_choice = "auto" if spec.tool_choice == "required" and steps > 1 else spec.tool_choice
            request = await hooks.before_model_call(ModelRequest(
                messages=[*prefix, *turn.history, *turn.messages], tools=tools, settings=settings,
                tool_choice=tool_choice if tools else "none", conversation_id=ctx.conversation_id,
                response_schema=turn.output_schema))
            yield ctx.tag(ModelCall(model=turn.model.name, messages=[m.model_dump(exclude_defaults=True)
                                                                     for m in request.messages],
                                    tools=[t.name for t in request.tools], settings=request.settings.model_dump()))
            ctx.trace.flush()
            reply = _Reply()
            async for event in _call_model(ctx, turn.model, request, reply):
                yield event
            if not reply.calls:
                if reply.format_errors and not reply.text.strip():  # ask again once more, with the reason
                    bad = reply.format_errors[0]
                    turn.messages.append(Message(role="assistant", content=bad.raw))
                    turn.messages.append(Message(role="user", content=(
                        f"Your tool call could not be parsed ({bad.reason}). "
                        "Call the tool again with valid JSON, or answer directly.")))
                    continue
                text = reply.text
                if knowledge is not None and spec.retrieval.cite and text.strip():
                    footer = knowledge.citations.footer(text)
                    if footer:
                        text += footer
                        yield ctx.tag(Token(text=footer))
                turn.messages.append(Message(role="assistant", content=text))
                end.reason, end.output = "answer", text
                return
            assistant, calls = Message(role="assistant", content=reply.text, tool_calls=reply.calls), reply.calls
            turn.messages.append(assistant)
            checkpoint = ctx.checkpoint_after(f"step {ctx.totals.steps}: {', '.join(c.name for c in reply.calls)} "
                                              "requested")
            if checkpoint is not None:
                yield checkpoint
        async for event in _tool_calls(ctx, turn, hooks, assistant, calls, done, knowledge, end):
            yield event
        ctx.trace.flush()
        if end.reason != "answer":  # a handoff, a pause or a guard's stop ends this turn
            return


@dataclass
class _Reply:
    text: str = ""
    calls: list[ToolCallRequest] = field(default_factory=list)
    format_errors: list[FormatErrorChunk] = field(default_factory=list)


async def _call_model(ctx: RunContext, model: Model, request: ModelRequest, reply: _Reply) -> AsyncIterator[BaseEvent]:
    """Stream one model call within the run's deadline; yield its tokens, then its result."""
    pieces: list[str] = []
    usage = UsageChunk()
    started = time.perf_counter()
    ttft: float | None = None
    stream = model.stream(request)
    try:
        while True:
            async with asyncio.timeout_at(ctx.deadline):
                try:
                    chunk = await anext(stream)
                except StopAsyncIteration:
                    break
            if isinstance(chunk, TextChunk):
                if ttft is None:
                    ttft = (time.perf_counter() - started) * 1000
                pieces.append(chunk.text)
                ctx.trace.flush()  # during a long generation too, so a killed run shows what was asked
                yield ctx.tag(Token(text=chunk.text))
            elif isinstance(chunk, ToolCallChunk):
                reply.calls.append(chunk.call)
            elif isinstance(chunk, FormatErrorChunk):
                reply.format_errors.append(chunk)
            elif isinstance(chunk, UsageChunk):
                usage = chunk
    finally:
        close = getattr(stream, "aclose", None)  # a provider's generator: stop it (and free its slot) now
        if close is not None:
            await close()
    ctx.totals.prompt_tokens += usage.prompt_tokens
    ctx.totals.completion_tokens += usage.completion_tokens
    reply.text = "".join(pieces)
    yield ctx.tag(ModelResult(
        text=reply.text, tool_calls=[c.model_dump() for c in reply.calls], prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens, cached_tokens=usage.cached_tokens,
        duration_ms=(time.perf_counter() - started) * 1000, ttft_ms=ttft, finish_reason=usage.finish_reason,
        format_errors=len(reply.format_errors)))
    for bad in reply.format_errors:
        yield ctx.tag(Error(kind="format", message=f"unparseable tool call: {bad.reason}"))


async def _tool_calls(ctx: RunContext, turn: Turn, hooks: RunHooks, assistant: Message,
                      calls: list[ToolCallRequest], done: set[str], knowledge: _Knowledge | None,
                      end: LoopEnd) -> AsyncIterator[BaseEvent]:
    """Run one model reply's tool calls in order, each through the policies; set ``end`` if the turn ends."""
    stopped: str | None = None  # after a handoff or a guard's stop, later calls are answered, not run
    for index, call in enumerate(calls):
        # The edited call is the one run, traced and kept in the conversation.
        call = await hooks.before_tool_call(call)
        assistant.tool_calls[index] = call
        if call.id in done:  # its result came before the pause or the crash: never run a call twice
            continue
        if stopped is not None:
            content = f"error: not run: {stopped}"
            yield ctx.tag(ToolCall(call_id=call.id, name=call.name, arguments=call.arguments))
            yield ctx.tag(ToolResult(call_id=call.id, name=call.name, content=content, is_error=True))
            turn.messages.append(Message(role="tool", content=content, tool_call_id=call.id, name=call.name))
            continue
        decision = await hooks.decide_tool_call(call)
        if decision is not None:
            for event in decision.events:
                yield ctx.tag(event)
            if decision.pause:
                end.reason, end.detail, end.call = "paused", f"{call.name} waits for approval", call
                return
            if not decision.run:
                turn.messages.append(Message(role="tool", content=decision.content, tool_call_id=call.id,
                                             name=call.name))
                continue
        yield ctx.tag(ToolCall(call_id=call.id, name=call.name, arguments=call.arguments))
        started = time.perf_counter()
        outcome = ToolOutcome()
        supplied = await hooks.supply_tool_result(call)
        if supplied is not None:  # replay: the recorded result, the tool is not run
            outcome.content, outcome.is_error = supplied
            if outcome.is_error:
                yield ctx.tag(Error(kind="tool", message=outcome.content.removeprefix("error: ")))
        else:
            async for event in _run_tool(ctx, turn, call, knowledge, outcome):
                yield event
        content, is_error = await hooks.after_tool_result(call, outcome.content, outcome.is_error)
        yield ctx.tag(ToolResult(call_id=call.id, name=call.name, content=content, is_error=is_error,
                                 duration_ms=(time.perf_counter() - started) * 1000))
        turn.messages.append(Message(role="tool", content=content, tool_call_id=call.id, name=call.name))
        checkpoint = ctx.checkpoint_after(f"step {ctx.totals.steps}: {call.name} done")
        if checkpoint is not None:
            yield checkpoint
        if outcome.handoff is not None:
            end.reason, end.detail = "handoff", outcome.handoff
            stopped = f"the conversation went to {outcome.handoff}"
        elif outcome.stop is not None:
            end.reason, end.detail = "limit", outcome.stop
            stopped = outcome.stop


async def _run_tool(ctx: RunContext, turn: Turn, call: ToolCallRequest, knowledge: _Knowledge | None,
                    outcome: ToolOutcome) -> AsyncIterator[BaseEvent]:
    """Execute one call within the run's deadline; a tool's failure becomes an error result for the model."""
    agent = turn.agent
    streaming = turn.extra_tools.get(call.name)
    try:
        if streaming is not None:
            async for event in streaming.stream(ctx, call, outcome):
                yield ctx.tag(event)
            return
        tool = agent.tools.get(call.name) or (ctx.mcp[agent.name].tools.get(call.name)
                                              if agent.name in ctx.mcp else None)
        if tool is None:
            raise ToolError(f"unknown tool {call.name!r}; available: {', '.join(agent.tools)}")
        if knowledge is not None and call.name == "search_knowledge":
            query = str(getattr(tool.validate(call.arguments), "query", ""))
            async for event in knowledge.search(ctx, query, outcome):
                yield ctx.tag(event)
            return
        async with asyncio.timeout_at(ctx.deadline):
            outcome.content = await execute_tool(tool, call.arguments)
    except ToolError as exc:
        outcome.content, outcome.is_error = f"error: {exc}", True
        yield ctx.tag(Error(kind="tool", message=str(exc)))


class _Knowledge:
    """An agent's knowledge in a turn: retrievals become events, and sources are numbered for citations."""

    def __init__(self, agent: Agent):
        from halguru.rag.agent import Citations

        assert agent.knowledge is not None
        self.retriever = agent.knowledge
        self.citations = Citations()

    async def _retrieve(self, ctx: RunContext, query: str) -> tuple[list[Retrieval], str]:
        from halguru.rag.agent import context_block, event_hits, merged

        async with asyncio.timeout_at(ctx.deadline):
            found = await asyncio.to_thread(self.retriever.retrieve, query)
        events = [Retrieval(query=query, knowledge_base=hits.knowledge_base, hits=event_hits(hits, self.citations),
                            duration_ms=hits.duration_ms) for hits in found]
        return events, context_block(merged(found, self.retriever.top_k * len(found)), self.citations)

    async def auto(self, ctx: RunContext, query: str) -> AsyncIterator[BaseEvent | str]:
        """Retrieval before the first model call: its events, then the system prompt's context block."""
        from halguru.rag.agent import AUTO_PROMPT

        events, block = await self._retrieve(ctx, query)
        for event in events:
            yield event
        yield AUTO_PROMPT.format(context=block)

    async def search(self, ctx: RunContext, query: str, outcome: ToolOutcome) -> AsyncIterator[BaseEvent]:
        """``search_knowledge``: run here rather than as a plain tool, so each base's hits become an event."""
        from halguru.rag.errors import KnowledgeError

        try:
            events, outcome.content = await self._retrieve(ctx, query)
        except KnowledgeError as exc:  # reported to the model, like any tool error
            raise ToolError(str(exc)) from None
        for event in events:
            yield event


def _last_user(messages: list[Message]) -> str:
    return next((m.content for m in reversed(messages) if m.role == "user"), "")


def _unfinished(messages: list[Message]) -> Message | None:
    """The last assistant message when the run stopped among its tool calls (paused or killed)."""
    for message in reversed(messages):
        if message.role == "assistant":
            return message if message.tool_calls else None
    return None
