"""The plain agent loop: model call → tool calls → ... → answer, for one agent's turn.

It yields untraced events (the top-level run numbers and records them; ``sub_run`` names a sub-run's) and
ends with a ``LoopEnd`` whose reason the caller acts on: an answer, a handoff to another agent, a call paused
for approval, or a limit.
Orchestration wraps this loop (teams run it per member, workflows per agent step); it knows nothing of them:
team tools are ``StreamingTool``s, and approvals and the repeated-call guard are policies (run hooks).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from halguru.agents.events import (
    ApprovalRequested,
    BaseEvent,
    Error,
    ModelCall,
    ModelResult,
    Retrieval,
    Token,
    ToolCall,
    ToolResult,
)
from halguru.agents.hooks import HookChain, RunHooks
from halguru.agents.policies import ApprovalGate, RepeatGuard
from halguru.errors import HalguruError, ModelError, ToolError, exception_line
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
    answer_dangling_calls,
)
from halguru.models.stops import cut_at_stops
from halguru.tools.registry import execute_tool

if TYPE_CHECKING:
    from halguru.agents.client_tools import ClientTools
    from halguru.agents.context import RunContext
    from halguru.agents.loader import Agent
    from halguru.tools.decorator import Tool


@dataclass
class LoopEnd:
    """Why a loop stopped. ``detail``: the agent handed to, or what limit or failure stopped it."""

    reason: Literal["answer", "handoff", "paused", "limit", "client_tools"] = "answer"
    output: str = ""
    detail: str | None = None
    call: ToolCallRequest | None = None  # paused: the call that waits for a human
    client_calls: list[ToolCallRequest] = field(default_factory=list)  # client_tools: the calls the caller runs


@dataclass(slots=True)  # one per tool call
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
    client_tools: ClientTools | None = None  # the caller's tools (halguru.agents.client_tools)


def _settings(agent: Agent, sampling: dict[str, Any] | None) -> SamplingSettings:
    spec = agent.spec
    return SamplingSettings(**{**spec.sampling.model_dump(), "max_tokens": spec.limits.max_tokens, **(sampling or {})})


async def agent_loop(ctx: RunContext, turn: Turn, end: LoopEnd) -> AsyncGenerator[BaseEvent, None]:
    """Run ``turn`` to its end (set in ``end``), yielding its events.

    Each step is a model call (its answer streamed by ``_TurnState.stream``, a generator closed with the loop:
    the model's stream is stopped, and its slot freed, at once), then, unless the reply is the answer, its tool
    calls; a continuation first finishes the paused step's calls, without a model call. What needs no yield
    lives in ``_TurnState``."""
    t = await _TurnState.open(ctx, turn)
    for event in t.opening:
        yield event
    assistant = _unfinished(turn.messages) if turn.finish_paused_step else None
    while True:
        if assistant is None:  # a new step (a continuation's paused one has its calls already)
            problem = t.budget(t.steps)
            if problem is not None:
                end.reason, end.detail = "limit", problem
                return
            request = await t.next_request()
            yield _model_call(turn.model, request)
            ctx.trace.flush()
            reply = _Reply(started=time.perf_counter())
            async with aclosing(t.stream(request, reply)) as tokens:  # closed with the loop: it frees the model
                async for token in tokens:
                    yield token
            cut_by = t.max_tokens_source() if reply.usage.finish_reason == "length" else None
            yield _model_result(reply, cut_by)
            for bad in reply.format_errors:
                yield _format_error(bad, cut_by)
            if not reply.calls:
                if t.ask_again(reply):
                    continue
                footer = t.footer(reply.text)
                if footer:
                    yield Token(text=footer)
                turn.messages.append(Message(role="assistant", content=reply.text + footer))
                end.reason, end.output = "answer", reply.text + footer
                return
            assistant = Message(role="assistant", content=reply.text, tool_calls=reply.calls)
            turn.messages.append(assistant)
            if ctx.durable_state is not None:
                checkpoint = t.checkpoint(f"{', '.join(c.name for c in reply.calls)} requested")
                if checkpoint is not None:
                    yield checkpoint
        # The reply's tool calls, in order, each through the policies; after a handoff or a guard's stop the
        # later ones are answered, not run. Inline: a generator for them cost ~8 µs a step (10% of the runtime).
        stopped: str | None = None
        for index, call in enumerate(list(assistant.tool_calls)):
            if t.hooks.edits_calls:  # the edited call is the one run, traced and kept in the conversation
                call = assistant.tool_calls[index] = await t.hooks.before_tool_call(call)
            if call.id in t.done:  # its result came before the pause or the crash: never run a call twice
                continue
            if t.theirs(call):  # the caller's: it runs it after this run
                yield ToolCall(call_id=call.id, name=call.name, arguments=call.arguments, client=True)
                end.client_calls.append(call)
                continue
            decision = None if stopped else await t.hooks.decide_tool_call(call)
            if decision is not None:
                t.must_answer = t.must_answer or decision.answer_next
                for event in decision.events:
                    if isinstance(event, ApprovalRequested):  # what its continuation leaves to the caller
                        event.client_calls = [c.id for c in assistant.tool_calls if t.theirs(c)]
                    yield event
                if decision.pause:
                    end.reason, end.detail, end.call = "paused", f"{call.name} waits for approval", call
                    return
                if not decision.run:
                    turn.messages.append(Message(role="tool", content=decision.content, tool_call_id=call.id,
                                                 name=call.name))
                    continue
            yield ToolCall(call_id=call.id, name=call.name, arguments=call.arguments)
            started, paused, outcome = time.perf_counter(), t.suspended(), ToolOutcome()
            if stopped:
                outcome.content, outcome.is_error = f"error: not run: {stopped}", True
            elif t.streams(call):  # a team tool or a knowledge search: its events come before its result
                async for event in t.stream_tool(call, outcome):
                    yield event
            else:
                error = await t.run_tool(call, outcome)
                if error is not None:
                    yield error
            result = await t.result(call, outcome, started, paused)
            yield result
            turn.messages.append(Message(role="tool", content=result.content, tool_call_id=call.id, name=call.name))
            if ctx.durable_state is not None and not stopped:
                # a call whose result is an error (an unknown tool, one that raised) is not listed as done
                checkpoint = t.checkpoint(f"{call.name} {'failed' if result.is_error else 'done'}")
                if checkpoint is not None:
                    yield checkpoint
            stopped = _ends_turn(outcome, end) or stopped
        if end.client_calls and end.reason == "answer":  # its other calls done: the caller runs its own
            end.reason, end.output = "client_tools", assistant.content
        assistant = None
        ctx.trace.flush()
        if end.reason != "answer":  # a handoff, a pause, a guard's stop or the caller's calls end this turn
            return


class _TurnState:
    """What one turn uses at each step: its hooks and policies, tools, prompt prefix and knowledge."""

    def __init__(self, ctx: RunContext, turn: Turn):
        agent, spec = turn.agent, turn.agent.spec
        resume = ctx.resume if not ctx.is_sub_run else None
        gate = ApprovalGate(spec.approvals, resume, self.find_tool) if spec.approvals or resume is not None else None
        self.ctx, self.turn = ctx, turn
        self.hooks = HookChain(gate, RepeatGuard(), ctx.hooks, turn.hooks)
        self.done: set[str] = resume.done if resume is not None else set()
        self.client = turn.client_tools
        self.left_to_client = resume.client_calls if resume is not None else set()  # a continuation's
        self.tools: list[ToolSpec] = [*agent.tool_specs, *(x.spec for x in turn.extra_tools.values()),
                                      *(self.client.offered if self.client is not None else [])]
        self.knowledge = _Knowledge(agent) if agent.knowledge is not None else None
        self.settings = _settings(agent, ctx.sampling)
        # A call stored without its result (older versions kept a cancelled run's call so) is never sent that way:
        # OpenAI-compatible endpoints refuse it.
        # The results the run starts with (a client's) answer their calls in the history.
        self.history = answer_dangling_calls(turn.history, "error: no result was recorded for this call",
                                             {m.tool_call_id for m in turn.messages if m.tool_call_id})
        self.prefix: list[Message] = []
        self.opening: list[BaseEvent] = []  # events of its start: MCP servers that failed, auto retrieval
        self.budget = turn.budget or _max_steps(agent)
        self.steps = 0  # model calls so far in this turn
        self.must_answer = False  # a policy asked for an answer (a repeated call): the next call offers no tools

    @classmethod
    async def open(cls, ctx: RunContext, turn: Turn) -> _TurnState:
        """The turn's state, its MCP servers started (once per run) and its knowledge retrieved (auto mode)."""
        t = cls(ctx, turn)
        agent, spec = turn.agent, turn.agent.spec
        if spec.mcp:
            if agent.name not in ctx.mcp:
                from halguru.tools.mcp import open_mcp_tools, taken_names

                ctx.mcp[agent.name] = await open_mcp_tools(spec.mcp, agent.path, taken=taken_names(
                    agent.tools, turn.extra_tools, t.client.names if t.client is not None else ()))
                # a server that failed: the run goes on without it
                t.opening += [Error(kind="mcp", message=line) for line in [*ctx.mcp[agent.name].errors,
                                                                           *ctx.mcp[agent.name].warnings]]
            t.tools += ctx.mcp[agent.name].tool_specs
        system = agent.instructions
        if t.knowledge is not None and spec.retrieval.mode in ("auto", "both") and not turn.finish_paused_step:
            from halguru.rag.agent import AUTO_PROMPT

            events, block = await t.knowledge.retrieve(ctx, _last_user([*turn.history, *turn.messages]))
            t.opening += events
            system = f"{system}\n\n{AUTO_PROMPT.format(context=block)}".strip()
        t.prefix = [Message(role="system", content=system)] if system else []
        return t

    def request(self, steps: int, must_answer: bool) -> ModelRequest:
        """The model request of the turn's ``steps``-th call: ``required`` tools on the first call only, none
        when a policy asked for an answer (a repeated call)."""
        spec, turn = self.turn.agent.spec, self.turn
        tool_choice = "auto" if spec.tool_choice == "required" and steps > 1 else spec.tool_choice
        if must_answer or not self.tools:
            tool_choice = "none"
        request = ModelRequest(messages=[*self.prefix, *self.history, *turn.messages], tools=self.tools,
                               settings=self.settings, tool_choice=tool_choice,
                               conversation_id=self.ctx.conversation_id, response_schema=turn.output_schema)
        return self.client.shape(request, steps) if self.client is not None and not must_answer else request

    async def stream(self, request: ModelRequest, reply: _Reply) -> AsyncGenerator[Token, None]:
        """The model's answer as it streams, within the run's deadline; ``reply`` gets all it said. The tokens it
        used are counted in the run's totals, also when the stream is cut (then about one per piece)."""
        ctx, model = self.ctx, self.turn.model
        stream, ended = model.stream(request), False
        # whatever the provider does with them, the answer ends before one; a passage label the model starts to
        # copy ends it too (small models go on with the sources' list: "[4] menu.md#Food, lines 9-12", then text)
        stops = [*(request.settings.stop or []), *(self.knowledge.echoes if self.knowledge is not None else [])]
        if stops:
            stream = cut_at_stops(stream, stops)
        try:
            while True:
                async with asyncio.timeout_at(ctx.deadline):
                    try:
                        chunk = await anext(stream)
                    except StopAsyncIteration:
                        break
                    except (HalguruError, TimeoutError):
                        raise
                    except Exception as exc:  # a plugin's model that raised anything: one line, not a 500
                        raise _model_failed(model, exc) from exc
                text = reply.take(chunk, model)
                if text is not None:
                    ctx.trace.flush()  # during a long generation too, so a killed run shows what was asked
                    yield Token(text=text)
            ended = True
        finally:
            if not ended:  # cut mid-answer (Ctrl-C, a client gone): its prompt (from an early usage chunk) was
                ctx.totals.prompt_tokens += reply.usage.prompt_tokens  # read and its streamed pieces, about a
                ctx.totals.completion_tokens += len(reply.pieces)  # token each, generated all the same (0+0)
            close = getattr(stream, "aclose", None)  # a provider's generator: stop it (and free its slot) now
            if close is not None:
                await close()
        ctx.totals.prompt_tokens += reply.usage.prompt_tokens
        ctx.totals.completion_tokens += reply.usage.completion_tokens
        reply.text = "".join(reply.pieces)
        if not request.parallel_tool_calls:
            del reply.calls[1:]

    async def next_request(self) -> ModelRequest:
        """Count the step (the run's too, which numbers the trace) and build its request, as hooks edit it."""
        ctx = self.ctx
        self.steps += 1
        ctx.totals.steps += 1
        if not ctx.is_sub_run:
            ctx.trace.step = ctx.totals.steps
        request = self.request(self.steps, self.must_answer)
        if self.hooks.edits_requests:
            request = await self.hooks.before_model_call(request)
        return request

    def theirs(self, call: ToolCallRequest) -> bool:
        """Whether the caller runs the call (one of its tools'; in a continuation, left to it when it paused)."""
        return call.id in self.left_to_client or (self.client is not None and self.client.runs(call.name))

    def streams(self, call: ToolCallRequest) -> bool:
        """Whether the call's tool emits events before its result: a team tool, or a knowledge search."""
        return call.name in self.turn.extra_tools or (self.knowledge is not None and call.name == "search_knowledge")

    def suspended(self) -> float:
        """Seconds the hooks have spent suspended (at a breakpoint), when they may suspend."""
        return self.hooks.suspended() if self.hooks.may_suspend else 0.0

    async def result(self, call: ToolCallRequest, outcome: ToolOutcome, started: float,
                     paused: float) -> ToolResult:
        """A call's result as hooks leave it; its time leaves out the time spent at a breakpoint (here or in a
        sub-run) since ``paused`` (the hooks' suspended seconds when it started)."""
        content, is_error = await self.hooks.after_tool_result(call, outcome.content, outcome.is_error)
        took = time.perf_counter() - started - (self.suspended() - paused)
        return ToolResult(call_id=call.id, name=call.name, content=content, is_error=is_error, duration_ms=took * 1000)

    def checkpoint(self, what: str) -> BaseEvent | None:
        """A durable run's checkpoint after this step's ``what`` (None when the run saves none here)."""
        return self.ctx.checkpoint_after(f"step {self.ctx.totals.steps}: {what}")

    def max_tokens_source(self) -> str:
        """The max_tokens a reply was cut at, and where it was set: the caller's for this run, or agent.yaml's."""
        if self.ctx.sampling and self.ctx.sampling.get("max_tokens") is not None:
            return (f"max_tokens {self.settings.max_tokens} (set for this run: --max-tokens, `halguru dev`'s Ctrl+O "
                    "or the request)")
        agent = self.turn.agent
        where = f"{agent.path}'s agent.yaml" if agent.path is not None else f"agent {agent.name!r}"
        return f"max_tokens {self.settings.max_tokens} (limits.max_tokens in {where})"

    def ask_again(self, reply: _Reply) -> bool:
        """A reply that is only an unparseable tool call: ask once more, with the reason (True: go on)."""
        if not reply.format_errors or reply.text.strip():
            return False
        bad = reply.format_errors[0]
        self.turn.messages.append(Message(role="assistant", content=bad.raw))
        self.turn.messages.append(Message(role="user", content=(
            f"Your tool call could not be parsed ({bad.reason}). Call the tool again with valid JSON, or answer "
            "directly.")))
        return True

    def footer(self, text: str) -> str:
        """The sources an answer cites, when the agent cites them (``retrieval.cite``)."""
        if self.knowledge is None or not self.turn.agent.spec.retrieval.cite or not text.strip():
            return ""
        footer = self.knowledge.citations.footer(text)
        ending = len(text) - len(text.rstrip("\n"))  # an answer cut before a copied passage ends in its blank line
        return footer[min(ending, 2):] if footer.startswith("\n\n") else footer

    def find_tool(self, name: str) -> Tool | None:
        """The agent's tool of this name, or its MCP servers' (started once the turn opened)."""
        agent, mcp = self.turn.agent, self.ctx.mcp
        return agent.tools.get(name) or (mcp[agent.name].tools.get(name) if agent.name in mcp else None)

    async def run_tool(self, call: ToolCallRequest, outcome: ToolOutcome) -> Error | None:
        """Run an ordinary tool (or take its result from a hook: replay), within the run's deadline; a failure
        becomes an error result for the model and an error event."""
        supplied = await self.hooks.supply_tool_result(call) if self.hooks.supplies else None
        if supplied is not None:  # replay: the recorded result, the tool is not run
            outcome.content, outcome.is_error = supplied
            return Error(kind="tool", message=outcome.content.removeprefix("error: ")) if outcome.is_error else None
        tool = self.find_tool(call.name)
        try:
            if tool is None:
                offered = ", ".join(spec.name for spec in self.tools)  # what this call was offered (a team's too)
                raise ToolError(f"unknown tool {call.name!r}; available: {offered or 'none'}")
            # left set if the run is cut meanwhile (a timeout, Ctrl-C): run() says so and traces the call's end
            self.ctx.running_tool, self.ctx.running_call, self.ctx.running_since = tool, call, time.perf_counter()
            async with asyncio.timeout_at(self.ctx.deadline):
                outcome.content = await execute_tool(tool, call.arguments)
        except ToolError as exc:
            self.ctx.running_tool = self.ctx.running_call = None
            outcome.content, outcome.is_error = f"error: {exc}", True
            return Error(kind="tool", message=str(exc), detail=exc.detail)
        self.ctx.running_tool = self.ctx.running_call = None
        return None

    async def stream_tool(self, call: ToolCallRequest, outcome: ToolOutcome) -> AsyncGenerator[BaseEvent, None]:
        """A team tool's events (a sub-run, a handoff) or a knowledge search's (one per base searched).

        A team tool always runs (replay re-runs its sub-run, whose own calls are fed back); a knowledge search
        takes its result from a hook when one supplies it."""
        try:
            streaming = self.turn.extra_tools.get(call.name)
            if streaming is not None:
                async for event in streaming.stream(self.ctx, call, outcome):
                    yield event
                return
            supplied = await self.hooks.supply_tool_result(call) if self.hooks.supplies else None
            if supplied is not None:
                outcome.content, outcome.is_error = supplied
                return
            from halguru.rag.errors import KnowledgeError

            assert self.knowledge is not None
            tool = self.turn.agent.tools[call.name]
            query = str(getattr(tool.validate(call.arguments), "query", ""))
            try:
                events, outcome.content = await self.knowledge.retrieve(self.ctx, query)
            except KnowledgeError as exc:  # reported to the model, like any tool error
                raise ToolError(str(exc)) from None
            for event in events:
                yield event
        except ToolError as exc:
            outcome.content, outcome.is_error = f"error: {exc}", True
            yield Error(kind="tool", message=str(exc))


@dataclass(slots=True)  # one per model call
class _Reply:
    """What a model call streamed: its text (in pieces as they came), tool calls, format errors and usage."""

    text: str = ""
    calls: list[ToolCallRequest] = field(default_factory=list)
    format_errors: list[FormatErrorChunk] = field(default_factory=list)
    pieces: list[str] = field(default_factory=list)
    usage: UsageChunk = field(default_factory=UsageChunk)
    started: float = 0.0  # perf_counter when the request was sent
    ttft: float | None = None  # ms to the first text

    def take(self, chunk: object, model: Model) -> str | None:
        """Keep one chunk of the stream; returns its text to stream on, if it is text."""
        if isinstance(chunk, TextChunk):
            if self.ttft is None:
                self.ttft = (time.perf_counter() - self.started) * 1000
            self.pieces.append(chunk.text)
            return chunk.text
        if isinstance(chunk, ToolCallChunk):
            self.calls.append(chunk.call)
        elif isinstance(chunk, FormatErrorChunk):
            self.format_errors.append(chunk)
        elif isinstance(chunk, UsageChunk):
            self.usage = chunk
        else:  # dropped in silence, the answer was missing with no reason given
            raise ModelError(f"model {model.name} streamed a {type(chunk).__name__}; a model's stream yields "
                             "TextChunk, ToolCallChunk, FormatErrorChunk or UsageChunk (halguru.models.base)")
        return None


def _model_failed(model: Model, exc: Exception) -> ModelError:
    """A model's stream that raised something other than a HalguruError (a plugin's provider should raise
    ModelError): a model error of one line naming the model, as the run's ``error`` event says it."""
    return ModelError(f"model {model.name} failed: {exception_line(exc)}")


def _model_call(model: Model, request: ModelRequest) -> ModelCall:
    return ModelCall(model=model.name, messages=[m.model_dump(exclude_defaults=True) for m in request.messages],
                     tools=[tool.name for tool in request.tools], settings=request.settings.model_dump())


def _ends_turn(outcome: ToolOutcome, end: LoopEnd) -> str | None:
    """After a handoff or a guard's stop, why the turn's later calls are not run (``end`` says it); else None."""
    if outcome.handoff is not None:
        end.reason, end.detail = "handoff", outcome.handoff
        return f"the conversation went to {outcome.handoff}"
    if outcome.stop is not None:
        end.reason, end.detail = "limit", outcome.stop
        return outcome.stop
    return None


def _format_error(bad: FormatErrorChunk, cut_by: str | None) -> Error:
    """A tool call that could not be parsed: cut at max_tokens (``cut_by`` says where it is set), or malformed."""
    if cut_by:
        return Error(kind="format", message=f"the tool call was cut at {cut_by} before it was complete; raise it")
    return Error(kind="format", message=f"unparseable tool call: {bad.reason}")


def _model_result(reply: _Reply, cut_by: str | None) -> ModelResult:
    usage = reply.usage
    return ModelResult(
        text=reply.text, tool_calls=[c.model_dump() for c in reply.calls], prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens, cached_tokens=usage.cached_tokens,
        duration_ms=(time.perf_counter() - reply.started) * 1000, ttft_ms=reply.ttft,
        finish_reason=usage.finish_reason, format_errors=len(reply.format_errors), cut_by=cut_by,
        dropped_messages=usage.dropped_messages)


class _Knowledge:
    """An agent's knowledge in a turn: retrievals become events, and sources are numbered for citations."""

    def __init__(self, agent: Agent):
        from halguru.rag.agent import Citations

        assert agent.knowledge is not None
        self.retriever = agent.knowledge
        self.citations = Citations()
        self.echoes: list[str] = []  # the passages' labels as the prompt shows them: an answer ends before one

    async def retrieve(self, ctx: RunContext, query: str) -> tuple[list[BaseEvent], str]:
        """One retrieval event per base searched, and the numbered sources as the model sees them."""
        from halguru.rag.agent import context_block, event_hits, merged

        async with asyncio.timeout_at(ctx.deadline):
            found = await asyncio.to_thread(self.retriever.retrieve, query)
        events: list[BaseEvent] = [
            Retrieval(query=query, knowledge_base=hits.knowledge_base, hits=event_hits(hits, self.citations),
                      duration_ms=hits.duration_ms) for hits in found]
        hits = merged(found, self.retriever.top_k * len(found))
        # under any number, the model's next one included ("[4]" after three passages)
        self.echoes = [f"[{n}] {hit.citation}" for hit in hits for n in range(1, len(hits) + 3)]
        return events, context_block(hits, self.citations)


def _last_user(messages: list[Message]) -> str:
    return next((m.content for m in reversed(messages) if m.role == "user"), "")


def _unfinished(messages: list[Message]) -> Message | None:
    """The last assistant message when the run stopped among its tool calls (paused or killed)."""
    for message in reversed(messages):
        if message.role == "assistant":
            return message if message.tool_calls else None
    return None
