"""The agent runtime: the only entry point that runs an agent.

``run(agent, input, conversation)`` is an async iterator of typed events. The CLI, the TUI, the server and
tests all call it; the trace store records what it yields (every event but streamed tokens, whose text the
model_result holds). Its body is the plain loop (halguru.agents.loop) or, for an agent with an orchestration
section, that section's driver (halguru.agents.driver); both yield untraced events that ``run`` numbers,
records and passes on, and ``run`` stores how the run ended.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from contextlib import aclosing, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from halguru.agents import telemetry
from halguru.agents.client_tools import ClientTools
from halguru.agents.context import RunContext, Totals, Trace, new_id
from halguru.agents.driver import RunOutcome, plain_status
from halguru.agents.events import (
    BaseEvent,
    Error,
    Event,
    Resumed,
    RunFinished,
    RunStarted,
    ToolCall,
    ToolResult,
)
from halguru.agents.hooks import RunHooks
from halguru.agents.loader import Agent, load_agent
from halguru.agents.loop import LoopEnd, Turn, agent_loop
from halguru.agents.policies import Resume
from halguru.blocking import run_blocking
from halguru.errors import HalguruError, error_kind
from halguru.models.base import Message, Model, PerAgentModel, answer_dangling_calls
from halguru.models.registry import DEFAULT, default_model
from halguru.storable import storable
from halguru.store.base import TraceStore

__all__ = ["RunResult", "collect_result", "iter_events", "new_id", "run", "run_sync", "run_to_result"]

_BOOKKEPT = frozenset({"token", "model_call", "model_result"})  # what _Book.saw keeps
_CUT = {"cancelled": "cancelled by the user", "interrupted": "interrupted by a server shutdown"}
SHUTDOWN = "shutdown"  # cancel a run's task with this message: it is stored as interrupted, not cancelled
CANCEL = "cancel"  # the message of a run's task cancelled because someone asked (store.request_cancel)


class NoConversation(HalguruError):
    """The run's conversation is not in the store (never was, or was deleted before the run started)."""


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
    owner: str | None = None,
    job_id: str | None = None,
    client_tools: ClientTools | None = None,
    tool_results: list[Message] | None = None,
) -> AsyncGenerator[Event, None]:
    """Run ``agent`` on ``input`` and yield its events, ending with ``run_finished``.

    ``conversation`` continues a stored conversation (its id); without it a new
    one starts. ``model`` overrides the agent's model (a reference or a Model).
    ``record=False`` keeps nothing in the trace store. ``sampling`` overrides
    sampling settings; ``metadata`` is recorded on ``run_started`` (e.g. a request id).
    ``hooks`` (see halguru.agents.hooks) may suspend the run before each model call and tool
    call, and change what is sent or returned: the debugger's breakpoints and deterministic replay.
    ``resume`` continues a paused or interrupted run (see halguru.orchestration.approvals and .durable).
    ``output_schema`` asks for an answer that is one JSON value matching it (constrained where the model
    provider can); the caller validates it (workflow steps with ``output:``). ``owner`` is the principal the
    conversation and run belong to (serve mode: an API key or a web-chat session; None: the local user).
    ``job_id`` is the worker's job that runs it, stored with the run (a continuation carries on the job of the run
    it continues), so the job's retry finds its own earlier run and no other (``halguru.jobs.handlers``).
    ``client_tools`` are the caller's own tools (``halguru.agents.client_tools``): a plain agent's run ends when
    the model calls one; the caller's next run brings their results in ``tool_results`` (role ``tool``
    messages, answering the conversation's last calls), which start it instead of a user message (``input``
    then only labels the run).
    """
    book = _Book.open(agent, input, conversation, model=model, store=store, record=record,
                      sampling=sampling, hooks=hooks, resume=resume, owner=owner, job_id=job_id,
                      tool_results=tool_results)
    await book.begin(conversation)
    ctx, outcome, end = book.ctx, book.outcome, LoopEnd()  # end: how a plain agent's loop ended
    trace, driver = ctx.trace, book.agent.driver
    try:  # from the first event on: a caller leaving after run_started left the run 'running' for good
        yield trace(RunStarted(agent=book.agent.name, model=book.model_name, input=book.input,
                               conversation_id=book.conversation_id, metadata=metadata or {}))
        if resume is not None and resume.after_crash:
            yield trace(_resumed(resume))
        for result in tool_results or ():  # the caller's results for the calls it ran, as the trace shows them
            yield trace(ToolResult(call_id=result.tool_call_id or "", name=result.name or "", content=result.content,
                                   client=True))
        async with aclosing(_body(book, output_schema, end, client_tools)) as events:
            async for raw in events:
                event: Any = trace(raw)  # one of the Event union: the loop and drivers yield nothing else
                if event.type in _BOOKKEPT:
                    book.saw(event)
                elif event.type == "checkpoint":
                    await book.checkpoint(event.label)
                yield event
                book.carry_on()
        if driver is None:
            outcome.status, outcome.output, outcome.error = plain_status(end)
            outcome.paused = end.call
            if end.reason == "limit":  # a plain agent that reached its limits: limited, as a team or workflow
                yield trace(Error(kind="limit", message=str(end.detail), fatal=True))
    except TimeoutError:
        outcome.status, outcome.error = driver.timed_out() if driver is not None else (
            "limited", f"run exceeded limits.timeout ({book.timeout:g}s)")
        if (cut := _cut_call(ctx, outcome.error)) is not None:
            yield trace(cut)
        yield trace(Error(kind="timeout", message=outcome.error, fatal=True))
    except HalguruError as exc:
        outcome.status, outcome.error = "failed", str(exc)
        yield trace(Error(kind=error_kind(exc), message=str(exc), fatal=True))
    except (asyncio.CancelledError, GeneratorExit) as exc:
        status, error = _cut_short(book, exc)
        cut = _cut_call(ctx, _CUT[status])
        if not book.stopped_as_asked(exc):
            if cut is not None:  # traced, not yielded: no one is listening any more
                trace(cut)
            book.finish(status, error)  # Ctrl-C, a consumer gone or a shutdown: keep the partial answer
            raise
        outcome.status, outcome.error = status, error  # asked to stop: it ends, run_finished says so
        if cut is not None:
            yield trace(cut)
    except Exception as exc:  # a bug: record the run as failed rather than leave it 'running'
        book.finish("failed", f"internal error: {type(exc).__name__}: {exc}")
        raise
    finally:
        for box in ctx.mcp.values():
            await box.close()
    yield await book.end(outcome.status, outcome.error)


def _resumed(resume: Resume) -> Resumed:
    """The event of a run resumed after a crash: what it takes from its checkpoint instead of doing again."""
    assert resume.state is not None
    reused = resume.state.get("steps_done", resume.done)  # a workflow's finished steps, or a team's calls
    return Resumed(from_run_id=resume.paused_run_id, checkpoint=resume.checkpoint, reused=sorted(reused))


def _body(book: _Book, output_schema: dict[str, Any] | None, end: LoopEnd,
          client_tools: ClientTools | None) -> AsyncGenerator[BaseEvent, None]:
    """The run's untraced events: its orchestration driver's, or the plain loop's (which sets ``end``)."""
    ctx, agent, driver = book.ctx, book.agent, book.agent.driver
    if driver is not None:
        if client_tools is not None:
            raise HalguruError(f"agent {agent.name} is a {driver.kind}: only a plain agent takes a caller's tools")
        return driver.drive(ctx, agent, book.history, book.messages, book.outcome)
    return agent_loop(ctx, Turn(agent, ctx.model_for(agent), book.history, book.messages,
                                output_schema=output_schema, finish_paused_step=ctx.resume is not None,
                                client_tools=client_tools), end)


def _cut_call(ctx: RunContext, why: str | None) -> ToolResult | None:
    """The result of the tool call a timeout or a cancellation cut, as the conversation gets it (``finish``), so
    that the trace shows how the call ended and after how long (None when no tool was running)."""
    call = ctx.running_call
    if call is None:
        return None
    took = (time.perf_counter() - ctx.running_since) * 1000
    return ToolResult(call_id=call.id, name=call.name, content=f"error: {why} before this call finished", is_error=True,
                      duration_ms=took)


def _cut_short(book: _Book, exc: BaseException) -> tuple[str, str]:
    """How a run stopped from outside is stored: interrupted (a server shutdown: resumable) or cancelled (Ctrl-C,
    a consumer that stopped listening), naming the tool it was in."""
    tool = book.ctx.running_tool
    left = "" if tool is None else f" while {tool.name} ran" + (
        "; its thread was abandoned and may run on until the process exits"
        if not tool.is_async and not tool.inline else "")
    if isinstance(exc, asyncio.CancelledError) and SHUTDOWN in exc.args:
        return "interrupted", f"interrupted by server shutdown{left}; {book.after_shutdown}"
    return "cancelled", f"cancelled by the user{left}"


@dataclass
class _Book:
    """A run's bookkeeping in the store: its start, its checkpoints and its end (one transaction each)."""

    agent: Agent
    input: str
    model: str | Model | PerAgentModel | None
    store: TraceStore | None
    owner: str | None
    job_id: str | None
    messages: list[Message]  # the run's new messages: the conversation gets them when it ends
    run_id: str
    conversation_id: str
    history: list[Message]
    ctx: RunContext = field(init=False)
    outcome: RunOutcome = field(default_factory=RunOutcome)
    started: float = field(default_factory=time.perf_counter)
    suspended_before: float = 0.0  # seconds the hooks had spent suspended when this run started
    partial: list[str] = field(default_factory=list)  # the answer being streamed, kept if the run is cut or fails
    writing: threading.Lock = field(default_factory=threading.Lock)  # held while a checkpoint is written
    task: asyncio.Task[Any] | None = None  # the task driving the run, cancelled when someone asks it to stop
    cancel_asked: bool = False

    @classmethod
    def open(cls, agent: Agent | str | Path, input: str, conversation: str | None, *,
             model: str | Model | PerAgentModel | None, store: TraceStore | None, record: bool,
             sampling: dict[str, Any] | None, hooks: RunHooks | None, resume: Resume | None,
             owner: str | None, job_id: str | None, tool_results: list[Message] | None = None) -> _Book:
        """A run's book and context, nothing stored yet: the agent loaded, the store opened (when recorded),
        ids given, the deadline set and the trace's telemetry observer chosen."""
        if not isinstance(agent, Agent):
            agent = load_agent(agent)
        input = storable(input)
        if not record:
            store = None
        elif store is None:
            from halguru.store import open_store

            store = open_store()
        driver = agent.driver
        messages = list(resume.messages) if resume is not None else list(tool_results) if tool_results else [
            Message(role="user", content=input)]
        book = cls(agent, input, model, store, owner, job_id, messages, new_id("run"), conversation or new_id("conv"),
                   [])
        ctx = book.ctx = RunContext(book.run_id, book.conversation_id,
                                    asyncio.get_running_loop().time() + book.timeout, Trace(book.run_id, store),
                                    store, hooks or RunHooks(), Totals.resumed(resume), model, sampling, resume)
        book.suspended_before = ctx.hooks.suspended()  # hooks outlive a run (a debugger's): only this run's count
        ctx.trace.observe = telemetry.observer(driver.kind if driver is not None else None)
        return book

    async def begin(self, conversation: str | None) -> None:
        """Record the run as running, off the event loop: with a database server each write is a round trip of
        milliseconds that would stall every other run of this process. A run cut meanwhile is recorded once its
        start is (never left running: this process would renew its lease for good), as cancelled, or as
        interrupted when a server shutdown cut it."""
        if self.store is None:
            return
        started = asyncio.ensure_future(asyncio.to_thread(self._begin, conversation))
        try:
            await asyncio.shield(started)
        except asyncio.CancelledError as exc:
            shutdown = SHUTDOWN in exc.args
            started.add_done_callback(lambda done: self._abandon(done, shutdown))
            raise
        self._watch_cancel()

    def _watch_cancel(self) -> None:
        """Stop the run when someone asks (``POST /v1/runs/{id}/cancel`` on any replica, through the store): its
        task is cancelled as a consumer leaving would cancel it (stored as cancelled, with the answer so far)."""
        assert self.store is not None
        loop, self.task = asyncio.get_running_loop(), asyncio.current_task()

        def asked() -> None:  # on the store's thread
            with suppress(RuntimeError):  # the loop closed meanwhile: the run ended with it
                loop.call_soon_threadsafe(self.cancel)

        self.store.watch_cancel(self.run_id, asked)

    def cancel(self) -> None:
        self.cancel_asked = True
        if self.task is not None and not self.task.done():
            self.task.cancel(CANCEL)

    def stopped_as_asked(self, exc: BaseException) -> bool:
        """Whether ``exc`` is the cancel someone asked for (``cancel``), and nothing else cut the run: then the run
        ends as any run does, with its run_finished (status cancelled) for whoever reads it, and no exception."""
        if not (self.cancel_asked and isinstance(exc, asyncio.CancelledError) and CANCEL in exc.args):
            return False
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            task.uncancel()
            if task.cancelling():  # cancelled again meanwhile (a shutdown, the consumer gone): that one wins
                return False
        return True

    def carry_on(self) -> None:
        """After each event handed out: a run driven one event per task (``iter_events``) is stopped at its next
        one if it was asked to stop meanwhile."""
        self.task = asyncio.current_task()
        if self.cancel_asked:
            raise asyncio.CancelledError(CANCEL)

    def _begin(self, conversation: str | None) -> None:
        """Record the run as running (in its conversation, checked to exist), with a first checkpoint when it
        is durable (``kind``: ``halguru runs resume``)."""
        store, agent = self.store, self.agent
        assert store is not None
        resume = self.ctx.resume
        history = store.start_run(self.run_id, self.conversation_id, agent.name, self.model_name, self.input,
                                  owner=self.owner, existing=conversation is not None, job_id=self.job_id,
                                  resumes=resume.paused_run_id if resume is not None else None,
                                  replaces=resume.paused_run_id if resume is not None and resume.after_crash else None)
        if history is None:
            raise NoConversation(f"no conversation {conversation!r}; start one without --conversation")
        self.history = history
        self.ctx.trace.history = list(history)  # as stored before the run: its model calls refer to it
        if self.kind is not None:
            if agent.driver is None:  # the plain loop saves its messages after each step, as a team's does
                self.ctx.durable_state = lambda: {"messages": [m.model_dump(exclude_defaults=True)
                                                               for m in self.messages]}
            store.start_checkpoint(self.run_id, self.kind, self.conversation_id, self.folder, self.override,
                                   self.input)
            resume = self.ctx.resume
            first = (resume.state or resume.first_state) if resume is not None else None
            if resume is not None and first:  # a continuation starts where the run it continues was: a
                # resume of it (it failed, or died before its own first step) must not run those steps again
                store.save_checkpoint(self.run_id, resume.checkpoint or "start", first, [])

    async def end(self, status: str, error: str | None) -> RunFinished:
        """``finish`` off the event loop like the start (the final write is the run's biggest)."""
        if self.store is None:
            return self.finish(status, error)
        return await asyncio.to_thread(self.finish, status, error)

    def _abandon(self, started: asyncio.Future[None], shutdown: bool) -> None:
        if not started.cancelled() and started.exception() is None:
            if shutdown:  # as a shutdown later in the run is recorded: resumable, not the user's doing
                self.finish("interrupted", f"interrupted by server shutdown; {self.after_shutdown}")
            else:
                self.finish("cancelled", "cancelled by the user")

    @property
    def model_name(self) -> str:
        """The model the trace names: ``default`` as the model it stood for when the run started."""
        if self.model is None or isinstance(self.model, PerAgentModel):
            name = self.agent.spec.model
        else:
            name = self.model if isinstance(self.model, str) else self.model.name
        if name == DEFAULT:
            return default_model()
        return name

    @property
    def kind(self) -> str | None:
        """What the run's checkpoints are of (None: it has none): its driver's kind (team, workflow), or 'agent'
        for a plain agent's continuation, which carries a human's decision and the paused turn (not in the
        conversation yet): a crash in the approved call must not lose them."""
        if self.agent.driver is not None:
            return self.agent.driver.kind
        return "agent" if self.ctx.resume is not None else None

    @property
    def after_shutdown(self) -> str:
        """What to do about a run a shutdown cut: a checkpointed one resumes from its checkpoint."""
        if self.kind is not None:
            return "resume it with `halguru runs resume`"
        return "send the message again"

    @property
    def timeout(self) -> float:
        driver = self.agent.driver
        return driver.timeout if driver is not None else self.agent.spec.limits.timeout

    @property
    def folder(self) -> str | None:  # what a continuation loads the same agent from, with the same --model
        # Absolute: `runs approve` and `runs resume` may be run from another folder than the run was.
        return str(self.agent.path.resolve()) if self.agent.path else None

    @property
    def override(self) -> str | None:
        return self.model if isinstance(self.model, str) else None

    def saw(self, event: Any) -> None:
        """Keep the streamed answer (what a cancelled run stores); a reply with tool calls is kept by the loop, its
        text with them."""
        if event.parent_run_id:
            return
        if event.type == "token":
            self.partial.append(event.text)
        elif event.type == "model_call" or event.tool_calls:  # a model_result
            self.partial.clear()

    async def checkpoint(self, label: str) -> None:
        """Save a checkpoint's state with the trace so far (all or nothing), off the event loop like the start
        and the end; the driver waits for it (it is paused at the event), so the state does not change meanwhile.
        Shielded: a run cut during the write still gets it, and its end is written after it (``writing``)."""
        if self.store is None or self.ctx.checkpoint_state is None:
            return
        state, events, store = self.ctx.checkpoint_state, self.ctx.trace.take(), self.store

        def save() -> None:
            with self.writing:
                store.save_checkpoint(self.run_id, label, state, events)

        await asyncio.shield(asyncio.to_thread(save))

    def finish(self, status: str, error: str | None) -> RunFinished:
        """The run_finished event; its status, events and the conversation's new messages stored together."""
        outcome, messages = self.outcome, self.messages
        output = outcome.output
        if status in ("cancelled", "interrupted"):
            # A call cut before its result gets one: every later request sends the conversation's calls, and
            # OpenAI-compatible endpoints refuse a call without its result.
            messages[:] = answer_dangling_calls(messages, f"error: {_CUT[status]} before this call finished")
            output = "".join(self.partial)
            if output:
                messages.append(Message(role="assistant", content=output))
        elif status == "limited" and error:  # past limits.timeout while a tool ran: the call says what ended it
            messages[:] = answer_dangling_calls(messages, f"error: {error} before this call finished")
        if status in ("failed", "limited") and not output and self.partial:
            # The model failed or the run timed out mid-answer: what the reader saw streamed is kept, as a cut
            # run's is, so the conversation (and the next turn's model) shows it beside the error.
            output = "".join(self.partial)
            messages.append(Message(role="assistant", content=output))
        event = self.ctx.trace(RunFinished(
            status=status, output=output, error=error,  # time suspended at breakpoints is not the run's
            duration_ms=(time.perf_counter() - self.started - (self.ctx.hooks.suspended() - self.suspended_before))
            * 1000,
            **self.ctx.totals.own()))
        if self.store is not None:
            with self.writing:  # after a checkpoint still being written (a run cut during the write)
                # A paused run's messages wait with its pending call; its continuation adds them. The call is
                # saved first: from then on its approval holds the conversation (the run, still running, held it
                # until then), so no message slips in before it; a crash between leaves it decidable.
                if outcome.paused is not None:
                    self.store.save_pending(self.run_id, self.conversation_id, self.agent.name, self.folder,
                                            self.override, self.input, outcome.paused.model_dump_json(),
                                            json.dumps([m.model_dump() for m in messages]), owner=self.owner)
                self.store.finish_run(self.run_id, self.conversation_id, event.model_dump(), self.ctx.trace.take(),
                                      [] if outcome.paused else messages, active_agent=outcome.active_agent)
        return event


@dataclass(repr=False)
class RunResult:
    """What ``run_sync`` returns: the answer, the status and every event."""

    output: str
    status: str
    run_id: str
    conversation_id: str
    error: str | None
    events: list[Event]

    def __repr__(self) -> str:
        # short: the dataclass's own printed every event of the run (a screenful for print(result))
        from halguru.agents.describe import clip

        said = f", error={self.error!r}" if self.error else ""
        return (f"RunResult(run_id={self.run_id!r}, status={self.status!r}, output={clip(self.output, 80)!r}"
                f"{said}, events=<{len(self.events)}>)")

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
    _outside_a_loop("run_sync", "await halguru.agents.runtime.run_to_result(...)")
    return run_blocking(run_to_result(agent, input, conversation, **kwargs))


def _outside_a_loop(caller: str, instead: str) -> None:
    """Refuse a blocking call from a running event loop in one line saying what to use (asyncio said only
    'Cannot run the event loop while another loop is running')."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise HalguruError(f"{caller} cannot be called inside a running event loop (e.g. Jupyter): use `{instead}`")


def iter_events(agent: Agent | str | Path, input: str, conversation: str | None = None,
                **kwargs: Any) -> Iterator[Event]:
    """Blocking iterator over the events of a run, for code without asyncio."""
    _outside_a_loop("iter_events", "async for event in halguru.run(...)")
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
