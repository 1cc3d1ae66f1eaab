"""The agent runtime: the only entry point that runs an agent.

``run(agent, input, conversation)`` is an async iterator of typed events. The
CLI, the TUI, the server and tests all call it; the trace store records what it
yields (every event but streamed tokens, whose text the model_result holds).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from halguru.agents.events import (
    BaseEvent,
    Checkpoint,
    Error,
    Event,
    Handoff,
    ModelCall,
    ModelResult,
    Resumed,
    Retrieval,
    RunFinished,
    RunStarted,
    Token,
    ToolCall,
    ToolResult,
)
from halguru.agents.hooks import RunHooks
from halguru.agents.loader import Agent, load_agent
from halguru.errors import HalguruError, ModelError, ToolError
from halguru.models.base import (
    FormatErrorChunk,
    Message,
    Model,
    ModelRequest,
    PerAgentModel,
    SamplingSettings,
    TextChunk,
    ToolCallChunk,
    ToolCallRequest,
    UsageChunk,
)
from halguru.store.base import TraceStore
from halguru.tools.registry import execute_tool

if TYPE_CHECKING:
    from halguru.orchestration.approvals import Resume


def new_id(prefix: str) -> str:
    """Sortable, short, unique enough: hex milliseconds then random hex."""
    return f"{prefix}_{int(time.time() * 1000):x}{secrets.token_hex(3)}"


class _Trace:
    """Numbers the events of one run and buffers them for the store."""

    # Events reach the store at most this often (and always when the run ends): one SQLite
    # transaction per step cost ~90 µs a step; a killed process loses at most this much trace.
    FLUSH_INTERVAL = 0.25

    def __init__(self, run_id: str, store: TraceStore | None):
        self.run_id = run_id
        self.store = store
        self.seq = 0
        self.step = 0
        self.pending: list[BaseEvent] = []
        self.flushed_at = time.monotonic()

    def __call__(self, event: BaseEvent) -> BaseEvent:
        event.run_id = self.run_id
        event.seq = self.seq
        event.step = self.step
        self.seq += 1
        if self.store is not None and event.type != "token":
            self.pending.append(event)
        return event

    def flush(self) -> None:
        if self.store is None or not self.pending or time.monotonic() - self.flushed_at < self.FLUSH_INTERVAL:
            return
        self.store.record_events(self.pending)
        self.pending = []
        self.flushed_at = time.monotonic()


@dataclass
class _Totals:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    steps: int = 0
    answer: list[str] = field(default_factory=list)


async def run(
    agent: Agent | str | Path,
    input: str,
    conversation: str | None = None,
    *,
    model: str | Model | PerAgentModel | None = None,
    store: TraceStore | None = None,
    record: bool = True,
    sampling: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
    hooks: RunHooks | None = None,
    resume: Resume | None = None,
    output_schema: dict[str, Any] | None = None,
) -> AsyncIterator[Event]:
    """Run ``agent`` on ``input`` and yield its events, ending with ``run_finished``.

    ``conversation`` continues a stored conversation (its id); without it a new
    one starts. ``model`` overrides the agent's model (a reference or a Model).
    ``record=False`` keeps nothing in the trace store. ``sampling`` overrides
    sampling settings; ``metadata`` is recorded on ``run_started`` (e.g. a request id).
    ``hooks`` (see halguru.agents.hooks) may suspend the run before each model call and tool
    call, and change what is sent or returned: the debugger's breakpoints and deterministic replay.
    ``resume`` continues a run paused for approval (see halguru.orchestration.approvals).
    ``output_schema`` asks for an answer that is one JSON value matching it (constrained where the model
    provider can); the caller validates it (workflow steps with ``output:``).
    """
    if not isinstance(agent, Agent):
        agent = load_agent(agent)
    spec = agent.spec
    if store is None and record:
        from halguru.store import open_store

        store = open_store()
    if not record:
        store = None
    model_ref = model if model is not None else spec.model
    model_name = model_ref if isinstance(model_ref, str) else model_ref.name
    if isinstance(model_ref, PerAgentModel):  # each agent (team member, workflow step) keeps its own model
        model_name = spec.model
        if agent.workflow is None:  # a workflow has no model of its own: its steps resolve theirs
            model_ref = model_ref.for_agent(spec.model)
    run_id = new_id("run")
    conversation_id = conversation or new_id("conv")
    history: list[Message] = []
    if store is not None:
        if conversation and store.get_conversation(conversation) is None:
            raise HalguruError(f"no conversation {conversation!r}; start one without --conversation")
        history = store.get_messages(conversation_id) if conversation else []
        store.start_run(run_id, conversation_id, spec.name, model_name, input)
    orch = None  # a team run's state; None for a plain agent, which does no orchestration work at all
    # What a continuation (after an approval or a crash) needs to load the same agent with the same --model.
    lead, lead_folder = spec.name, str(agent.path) if agent.path else None
    override = model if isinstance(model, str) else None
    if agent.team is not None:
        from halguru.orchestration.calls import TeamCallOutcome, is_team_tool, team_call
        from halguru.orchestration.guards import TeamRun

        orch = TeamRun(agent.team, model)
        if conversation and store is not None:
            orch.start_with((store.get_conversation(conversation_id) or {}).get("active_agent"))
        if resume is not None and resume.state:  # an interrupted run goes on with whoever held it
            orch.start_with(resume.state.get("active_agent"))
            orch.handoffs = resume.state.get("handoffs", 0)
        agent = orch.current.agent
        spec = agent.spec
    workflow = agent.workflow
    # Team and workflow runs are durable: their state is saved after each step (halguru runs resume).
    durable = store is not None and (orch is not None or workflow is not None)
    if durable:
        from halguru.orchestration.durable import save_checkpoint, start_checkpoint

        start_checkpoint(store, run_id, "team" if orch is not None else "workflow", conversation_id,  # type: ignore[arg-type]
                         lead_folder, override, input)

    trace = _Trace(run_id, store)
    totals = _Totals()
    if resume is not None and resume.state:
        totals.steps = resume.state.get("steps", 0)
        totals.prompt_tokens = resume.state.get("prompt_tokens", 0)
        totals.completion_tokens = resume.state.get("completion_tokens", 0)
    started = time.perf_counter()
    timeout = spec.limits.timeout if orch is None else orch.team.settings.timeout
    deadline = asyncio.get_running_loop().time() + timeout
    system = [Message(role="system", content=agent.instructions)] if agent.instructions else []
    new_messages = [Message(role="user", content=input)] if resume is None else list(resume.messages)
    resumed, done, paused = resume, resume.done if resume is not None else set(), None
    tools = agent.tool_specs if orch is None else orch.current.tool_specs
    settings = SamplingSettings(**{**spec.sampling.model_dump(), "max_tokens": spec.limits.max_tokens,
                                   **(sampling or {})})
    status, error = "ok", None
    results: dict[tuple[str, str], str] = {}  # (tool, arguments) -> result, to catch repeated calls
    must_answer = False
    turn_start = 0  # the step at which the current agent got the conversation

    def checkpoint(label: str, state: dict[str, Any] | None = None) -> BaseEvent:
        """Save the run's state and the trace so far in one transaction; the event says where a resume starts."""
        event = trace(Checkpoint(label=label))
        if state is None:
            state = {"messages": [m.model_dump(exclude_defaults=True) for m in new_messages],
                     "active_agent": orch.current.agent.name if orch is not None else None,
                     "handoffs": orch.handoffs if orch is not None else 0, "steps": totals.steps,
                     "prompt_tokens": totals.prompt_tokens, "completion_tokens": totals.completion_tokens}
        save_checkpoint(store, run_id, label, state, trace.pending)  # type: ignore[arg-type]
        trace.pending = []
        return event

    def finish(status: str, error: str | None) -> RunFinished:
        output = "".join(totals.answer)
        if status == "cancelled" and totals.answer:
            new_messages.append(Message(role="assistant", content=output))
        event = trace(RunFinished(
            status=status, output=output, error=error, duration_ms=(time.perf_counter() - started) * 1000,
            steps=totals.steps, prompt_tokens=totals.prompt_tokens, completion_tokens=totals.completion_tokens))
        if store is not None:
            # A paused run's messages wait with its pending call; its continuation adds them.
            store.finish_run(run_id, conversation_id, event.model_dump(), trace.pending,
                             [] if paused else new_messages,
                             active_agent=None if orch is None else orch.current.agent.name)
            trace.pending = []
            if paused is not None:
                from halguru.orchestration.approvals import save_pending

                save_pending(store, run_id, conversation_id, lead, lead_folder, override, input,
                             paused, new_messages)
        return event

    yield trace(RunStarted(agent=lead, model=model_name, input=input, conversation_id=conversation_id,
                           metadata=metadata or {}))
    if resume is not None and resume.state is not None and not resume.decisions:  # after a crash, not a pause
        yield trace(Resumed(from_run_id=resume.paused_run_id, checkpoint=resume.checkpoint,
                            reused=sorted(resume.state.get("steps_done", {})) if workflow else sorted(done)))
    if orch is not None and spec.name != lead:
        yield trace(Handoff(from_agent=lead, to_agent=spec.name, reason="holds the conversation"))
    if workflow is not None:
        from contextlib import aclosing

        from halguru.orchestration.workflow import workflow_events

        def pause(call: ToolCallRequest) -> None:
            nonlocal paused
            paused = call

        async with aclosing(workflow_events(agent, input, model, sampling, resume, trace,
                                            checkpoint if durable else None, finish, pause, totals,
                                            new_messages)) as events:
            async for event in events:
                yield event
        return
    mcp_boxes: dict[str, Any] = {}  # agent name -> its MCP servers (``mcp:``), open until the run ends
    try:
        model_obj = _resolve_model(model_ref) if orch is None else orch.model_for(orch.current)
        if spec.mcp:
            from halguru.tools.mcp import open_agent_mcp

            for line in await open_agent_mcp(agent, mcp_boxes):  # a server that failed: the run goes on without it
                yield trace(Error(kind="mcp", message=line))
            tools = [*tools, *mcp_boxes[agent.name].tool_specs]
        retriever = agent.knowledge  # None without knowledge: no retrieval work at all
        citations = None
        if retriever is not None:
            from halguru.rag.agent import AUTO_PROMPT, Citations, context_block, event_hits, merged

            citations = Citations()
            if spec.retrieval.mode in ("auto", "both"):
                async with asyncio.timeout_at(deadline):
                    found = await asyncio.to_thread(retriever.retrieve, input)
                for hits in found:
                    yield trace(Retrieval(query=input, knowledge_base=hits.knowledge_base,
                                          hits=event_hits(hits, citations), duration_ms=hits.duration_ms))
                block = AUTO_PROMPT.format(context=context_block(merged(found, retriever.top_k * len(found)),
                                                                 citations))
                system = [Message(role="system", content=f"{agent.instructions}\n\n{block}".strip())]
        while True:
            if orch is not None:
                problem = orch.budget_problem(totals.steps, totals.prompt_tokens + totals.completion_tokens,
                                              totals.steps - turn_start)
                if problem is not None:
                    status, error = "limited", problem
                    yield trace(Error(kind="limit", message=problem, fatal=True))
                    break
            elif totals.steps >= spec.limits.max_steps:
                status, error = "failed", (
                    f"stopped after {spec.limits.max_steps} model calls without a final answer "
                    "(limits.max_steps)")
                yield trace(Error(kind="limit", message=error, fatal=True))
                break
            unfinished = _unfinished(new_messages) if resumed is not None else None
            resumed = None
            if unfinished is not None:  # a continuation finishes the paused step first: no model call
                assistant, calls = unfinished, list(unfinished.tool_calls)
            else:
                totals.steps += 1
                trace.step = totals.steps
                totals.answer = []
                messages = system + history + new_messages
                # "required" forces a tool call on the first model call only, so the agent can then answer;
                # after a repeated call the model must answer with what it has.
                tool_choice = "auto" if spec.tool_choice == "required" and totals.steps > 1 else spec.tool_choice
                if must_answer:
                    tool_choice = "none"
                request = ModelRequest(messages=messages, tools=tools, settings=settings,
                                       tool_choice=tool_choice if tools else "none",
                                       conversation_id=conversation_id, response_schema=output_schema)
                if hooks is not None:
                    request = await hooks.before_model_call(request)
                yield trace(ModelCall(model=model_obj.name, messages=[m.model_dump(exclude_defaults=True)
                                                                      for m in request.messages],
                                      tools=[t.name for t in request.tools], settings=request.settings.model_dump()))
                trace.flush()
                calls: list[ToolCallRequest] = []
                format_errors: list[FormatErrorChunk] = []
                usage = UsageChunk()
                call_started = time.perf_counter()
                ttft: float | None = None
                stream = model_obj.stream(request)
                try:
                    while True:
                        async with asyncio.timeout_at(deadline):
                            try:
                                chunk = await anext(stream)
                            except StopAsyncIteration:
                                break
                        if isinstance(chunk, TextChunk):
                            if ttft is None:
                                ttft = (time.perf_counter() - call_started) * 1000
                            totals.answer.append(chunk.text)
                            trace.flush()  # during a long generation too, so a killed run shows what was asked
                            yield trace(Token(text=chunk.text))
                        elif isinstance(chunk, ToolCallChunk):
                            calls.append(chunk.call)
                        elif isinstance(chunk, FormatErrorChunk):
                            format_errors.append(chunk)
                        elif isinstance(chunk, UsageChunk):
                            usage = chunk
                finally:
                    await stream.aclose()
                totals.prompt_tokens += usage.prompt_tokens
                totals.completion_tokens += usage.completion_tokens
                text = "".join(totals.answer)
                yield trace(ModelResult(
                    text=text, tool_calls=[c.model_dump() for c in calls], prompt_tokens=usage.prompt_tokens,
                    completion_tokens=usage.completion_tokens, cached_tokens=usage.cached_tokens,
                    duration_ms=(time.perf_counter() - call_started) * 1000, ttft_ms=ttft,
                    finish_reason=usage.finish_reason, format_errors=len(format_errors)))
                for bad in format_errors:
                    yield trace(Error(kind="format", message=f"unparseable tool call: {bad.reason}"))
                if not calls:
                    if format_errors and not text.strip():
                        new_messages.append(Message(role="assistant", content=format_errors[0].raw))
                        new_messages.append(Message(role="user", content=(
                            f"Your tool call could not be parsed ({format_errors[0].reason}). "
                            "Call the tool again with valid JSON, or answer directly.")))
                        trace.flush()
                        continue
                    if citations is not None and spec.retrieval.cite and text.strip():
                        footer = citations.footer(text)
                        if footer:
                            totals.answer.append(footer)
                            text += footer
                            yield trace(Token(text=footer))
                    new_messages.append(Message(role="assistant", content=text))
                    break
                assistant = Message(role="assistant", content=text, tool_calls=calls)
                new_messages.append(assistant)
                if durable:
                    yield checkpoint(f"step {totals.steps}: {', '.join(c.name for c in calls)} requested")
            handed_to, stop = None, None
            for index, call in enumerate(calls):
                if hooks is not None:
                    # The edited call is the one run, traced and kept in the conversation.
                    call = await hooks.before_tool_call(call)
                    assistant.tool_calls[index] = call
                if call.id in done:  # its result came before the pause: never run a call twice
                    continue
                if spec.approvals or resume is not None:
                    from halguru.orchestration.approvals import gate

                    verdict = gate(spec, call, resume)
                    if verdict.event is not None:
                        yield trace(verdict.event)
                    if verdict.pause:
                        status, error, stop, paused = "paused", f"{call.name} waits for approval", "paused", call
                        break
                    if verdict.refusal is not None:
                        yield trace(ToolCall(call_id=call.id, name=call.name, arguments=call.arguments))
                        yield trace(ToolResult(call_id=call.id, name=call.name, content=verdict.refusal,
                                               is_error=True))
                        new_messages.append(Message(role="tool", content=verdict.refusal, tool_call_id=call.id,
                                                    name=call.name))
                        continue
                yield trace(ToolCall(call_id=call.id, name=call.name, arguments=call.arguments))
                tool_started = time.perf_counter()
                if orch is not None and (handed_to or stop or is_team_tool(orch, call.name)):
                    outcome = TeamCallOutcome(content=f"error: not run: the conversation went to {handed_to}"
                                              if handed_to else f"error: not run: {stop}", is_error=True)
                    if not (handed_to or stop):
                        async for team_event in team_call(orch, call, outcome, sampling):
                            yield trace(team_event)
                    totals.steps += outcome.steps
                    totals.prompt_tokens += outcome.prompt_tokens
                    totals.completion_tokens += outcome.completion_tokens
                    yield trace(ToolResult(call_id=call.id, name=call.name, content=outcome.content,
                                           is_error=outcome.is_error,
                                           duration_ms=(time.perf_counter() - tool_started) * 1000))
                    new_messages.append(Message(role="tool", content=outcome.content, tool_call_id=call.id,
                                                name=call.name))
                    if durable:
                        yield checkpoint(f"step {totals.steps}: {call.name} done")
                    if outcome.stop:
                        status, error, stop = "limited", outcome.stop, outcome.stop
                    if outcome.handed_to:  # the next step is the new agent's, with its prompt and tools
                        handed_to, agent = outcome.handed_to, orch.current.agent
                        spec, tools, turn_start, must_answer = agent.spec, orch.current.tool_specs, totals.steps, False
                        system = [Message(role="system", content=agent.instructions)] if agent.instructions else []
                        settings = SamplingSettings(**{**spec.sampling.model_dump(),
                                                       "max_tokens": spec.limits.max_tokens, **(sampling or {})})
                        model_obj, retriever, citations = orch.model_for(orch.current), None, None
                        if spec.mcp:  # a member's MCP servers start when it first gets the conversation
                            from halguru.tools.mcp import open_agent_mcp

                            for line in await open_agent_mcp(agent, mcp_boxes):
                                yield trace(Error(kind="mcp", message=line))
                            tools = [*tools, *mcp_boxes[agent.name].tool_specs]
                    continue
                key = (call.name, json.dumps(call.arguments, sort_keys=True))
                try:
                    if key in results:
                        # Small models loop on the same call; give the known result and make them answer.
                        must_answer = True
                        yield trace(Error(kind="limit", message=f"{call.name} called again with the same "
                                          "arguments; reusing the result and asking for an answer"))
                        content, is_error = results[key], False
                        yield trace(ToolResult(call_id=call.id, name=call.name, content=content,
                                               duration_ms=0.0))
                        new_messages.append(Message(role="tool", content=content, tool_call_id=call.id,
                                                    name=call.name))
                        continue
                    supplied = await hooks.supply_tool_result(call) if hooks is not None else None
                    if supplied is not None:  # replay: the recorded result, the tool is not run
                        content, is_error = supplied
                        if is_error:
                            raise ToolError(content.removeprefix("error: "))
                        results[key] = content
                        yield trace(ToolResult(call_id=call.id, name=call.name, content=content,
                                               duration_ms=(time.perf_counter() - tool_started) * 1000))
                        new_messages.append(Message(role="tool", content=content, tool_call_id=call.id,
                                                    name=call.name))
                        continue
                    tool = agent.tools.get(call.name) or (mcp_boxes[agent.name].tools.get(call.name)
                                                          if agent.name in mcp_boxes else None)
                    if tool is None:
                        raise ToolError(f"unknown tool {call.name!r}; available: {', '.join(agent.tools)}")
                    if retriever is not None and citations is not None and call.name == "search_knowledge":
                        # Run here rather than as a plain tool, so each base's hits become a retrieval event.
                        query = str(getattr(tool.validate(call.arguments), "query", ""))
                        async with asyncio.timeout_at(deadline):
                            found = await asyncio.to_thread(_retrieve_for_tool, retriever, query)
                        for hits in found:
                            yield trace(Retrieval(query=query, knowledge_base=hits.knowledge_base,
                                                  hits=event_hits(hits, citations), duration_ms=hits.duration_ms))
                        content, is_error = context_block(merged(found, retriever.top_k * len(found)),
                                                          citations), False
                    else:
                        async with asyncio.timeout_at(deadline):
                            content, is_error = await execute_tool(tool, call.arguments), False
                    results[key] = content
                    if orch is not None:
                        orch.progress()
                except ToolError as exc:
                    content, is_error = f"error: {exc}", True
                    yield trace(Error(kind="tool", message=str(exc)))
                if hooks is not None:
                    content, is_error = await hooks.after_tool_result(call, content, is_error)
                yield trace(ToolResult(call_id=call.id, name=call.name, content=content, is_error=is_error,
                                       duration_ms=(time.perf_counter() - tool_started) * 1000))
                new_messages.append(Message(role="tool", content=content, tool_call_id=call.id, name=call.name))
                if durable:
                    yield checkpoint(f"step {totals.steps}: {call.name} done")
            trace.flush()
            if stop:
                break
    except TimeoutError:
        status, error = ("failed", f"run exceeded limits.timeout ({timeout:g}s)") if orch is None else (
            "limited", f"team run exceeded team.timeout ({timeout:g}s)")
        yield trace(Error(kind="timeout", message=error, fatal=True))
    except HalguruError as exc:
        status, error = "failed", str(exc)
        yield trace(Error(kind="model" if isinstance(exc, ModelError) else "internal", message=error, fatal=True))
    except (asyncio.CancelledError, GeneratorExit):
        # Ctrl-C or a consumer that stopped listening: keep the partial answer, then let it propagate.
        finish("cancelled", "cancelled by the user")
        raise
    except Exception as exc:  # a bug: record the run as failed rather than leave it 'running'
        finish("failed", f"internal error: {type(exc).__name__}: {exc}")
        raise
    finally:
        for box in mcp_boxes.values():
            await box.close()
    yield finish(status, error)


def _unfinished(messages: list[Message]) -> Message | None:
    """The last assistant message when the run stopped among its tool calls (paused or killed)."""
    for message in reversed(messages):
        if message.role == "assistant":
            return message if message.tool_calls else None
    return None


def _retrieve_for_tool(retriever: Any, query: str) -> list[Any]:
    """A knowledge problem during a tool call is reported to the model, like any tool error."""
    from halguru.rag.errors import KnowledgeError

    try:
        return retriever.retrieve(query)
    except KnowledgeError as exc:
        raise ToolError(str(exc)) from None


def _resolve_model(model: str | Model) -> Model:
    if isinstance(model, str):
        from halguru.models.registry import get_model

        return get_model(model)
    return model


@dataclass
class RunResult:
    """What ``run_sync`` returns: the answer, the status and every event."""

    output: str
    status: str
    run_id: str
    conversation_id: str
    error: str | None
    events: list[Event]

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def tool_calls(self) -> list[ToolCall]:
        return [e for e in self.events if isinstance(e, ToolCall)]


async def run_to_result(agent: Agent | str | Path, input: str, conversation: str | None = None,
                        **kwargs: Any) -> RunResult:
    return await collect_result(run(agent, input, conversation, **kwargs))


async def collect_result(stream: AsyncIterator[Event]) -> RunResult:
    """A whole run's events (``run`` or a continuation of it) as one RunResult."""
    events = [event async for event in stream]
    started, finished = events[0], events[-1]
    assert isinstance(started, RunStarted) and isinstance(finished, RunFinished)
    return RunResult(finished.output, finished.status, finished.run_id, started.conversation_id,
                     finished.error, events)


def run_sync(agent: Agent | str | Path, input: str, conversation: str | None = None, **kwargs: Any) -> RunResult:
    """Blocking version of ``run`` for scripts (in a notebook, ``await run_to_result(...)`` instead)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(run_to_result(agent, input, conversation, **kwargs))
    raise HalguruError("run_sync cannot be called inside a running event loop (e.g. Jupyter): "
                       "use `await halguru.agents.runtime.run_to_result(...)`")


def iter_events(agent: Agent | str | Path, input: str, conversation: str | None = None,
                **kwargs: Any) -> Iterator[Event]:
    """Blocking iterator over the events of a run, for code without asyncio."""
    loop = asyncio.new_event_loop()
    stream = run(agent, input, conversation, **kwargs)
    try:
        while True:
            try:
                yield loop.run_until_complete(anext(stream))
            except StopAsyncIteration:
                return
    finally:
        loop.run_until_complete(stream.aclose())
        loop.close()
