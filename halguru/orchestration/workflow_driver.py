"""The workflow driver: runs a workflow's steps in dependency order, in parallel where ``needs`` allow.

Agent steps are sub-runs of the step's agent inside this run (their events name the step's sub-run, under the
run's deadline and hooks); tool steps call the tool, paused for a human when it is in ``approvals:``; each
finished step is a checkpoint, so a killed workflow resumes after its last finished step.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, cast

from halguru.agents.driver import RunOutcome, SubRun, sub_run
from halguru.agents.events import (
    ApprovalApproved,
    ApprovalRejected,
    ApprovalRequested,
    BaseEvent,
    Error,
    StepFinished,
    StepStarted,
    Token,
    ToolCall,
    ToolResult,
)
from halguru.errors import HalguruError, ToolError
from halguru.models.base import Message, ToolCallRequest
from halguru.orchestration.workflow import (
    Workflow,
    _check_output,
    _context,
    _evaluate,
    _parse_output,
    _render,
    _render_args,
    _StepDone,
    load_workflow,
)

StepStatus = Literal["ok", "skipped", "failed"]

if TYPE_CHECKING:
    from halguru.agents.context import RunContext
    from halguru.agents.loader import Agent


@dataclass
class _Run:
    """One workflow run's shared state, for the step tasks."""

    ctx: RunContext
    agent: Agent
    workflow: Workflow
    queue: asyncio.Queue[tuple[str, BaseEvent | _StepDone]]
    decisions: dict[str, str | None] = field(default_factory=dict)  # step id -> None approved, or a reason
    edited: dict[str, dict[str, Any]] = field(default_factory=dict)  # step id -> the arguments a human set
    resumed_from: str = ""
    asked: str = ""  # the step whose approval this run waits for: one at a time (a run pauses on one call)

    async def put(self, sid: str, item: BaseEvent | _StepDone) -> None:
        await self.queue.put((sid, item))


async def _run_step(r: _Run, sid: str, context: dict[str, Any]) -> None:
    """Run one step, putting its events on the queue and, last, a ``_StepDone``."""
    step = r.workflow.steps[sid]
    started, paused = time.perf_counter(), r.ctx.hooks.suspended()

    def done(status: str, output: Any = None, error: str | None = None) -> _StepDone:
        took = time.perf_counter() - started - (r.ctx.hooks.suspended() - paused)  # breakpoints excluded
        return _StepDone(sid, status, output, error, took * 1000)

    try:
        if step.when is not None and not _evaluate(step.when, context):
            await r.put(sid, done("skipped"))
            return
        if step.condition is not None:
            await r.put(sid, StepStarted(step_id=sid, kind="condition", name=step.condition))
            await r.put(sid, done("ok", _check_output(step, _evaluate(step.condition, context))))
        elif step.tool is not None:
            tool, args = step.tool, r.edited[sid] if sid in r.edited else _render_args(step.args, context)
            await r.put(sid, StepStarted(step_id=sid, kind="tool", name=tool, input=args))
            if tool in r.agent.spec.approvals:
                refusal = await _gate(r, sid, tool, args)
                if refusal is not None:
                    await r.put(sid, done("failed", error=refusal) if refusal else
                                _StepDone(sid, "paused", call=ToolCallRequest(id=sid, name=tool, arguments=args)))
                    return

            async def call_tool() -> Any:
                return _check_output(step, await _call_tool(r, sid, tool, args))

            await r.put(sid, done("ok", await _tries(r, sid, call_tool)))
        else:
            message = _render(step.input, context)
            if step.output is not None:
                message += ("\n\nAnswer with only a JSON value matching this JSON schema:\n"
                            + json.dumps(step.output, ensure_ascii=False))
            member = r.workflow.agents[sid]
            await r.put(sid, StepStarted(step_id=sid, kind="agent", name=member.name, input=message))

            async def call_agent() -> Any:
                answer = await _call_agent(r, sid, member, message, step.output)
                return _check_output(step, _parse_output(answer) if step.output is not None else answer)

            await r.put(sid, done("ok", await _tries(r, sid, call_agent)))
    except (ToolError, HalguruError) as exc:
        await r.put(sid, done("failed", error=str(exc)))
    except Exception as exc:  # a template that fails at run time (e.g. an undefined name) fails its step
        from jinja2 import TemplateError

        if isinstance(exc, TemplateError):
            await r.put(sid, done("failed", error=f"template error: {exc}"))
            return
        await r.put(sid, done("failed", error=f"internal error: {type(exc).__name__}: {exc}"))  # wakes the driver,
        raise  # which awaits this task: the bug is the run's failure at once, not a wait for the timeout


async def _tries(r: _Run, sid: str, call: Callable[[], Awaitable[Any]]) -> Any:
    """The step's call, tried again after a failure up to its ``retries`` times (``retry_delay`` seconds, doubling),
    each failure told by a non-fatal error event; the last one raises (the step fails)."""
    step = r.workflow.steps[sid]

    async def timed() -> Any:
        if step.timeout is None:
            return await call()
        try:
            async with asyncio.timeout(step.timeout) as limit:
                return await call()
        except TimeoutError:
            if not limit.expired():  # the workflow's own timeout, or a timeout inside the call
                raise
            error = f"timed out after {step.timeout:g}s (the step's timeout:)"
            if r.ctx.running_call is not None and r.ctx.running_call.id == sid:  # its call ended here, traced below
                r.ctx.running_tool = r.ctx.running_call = None
            if step.tool is not None:  # the cut call gets a result, as a run's timeout gives one: the trace ends it
                await r.put(sid, ToolResult(call_id=sid, name=step.tool, content=f"error: {error}", is_error=True,
                                             duration_ms=step.timeout * 1000))
            raise HalguruError(error) from None

    for attempt in range(step.retries):
        try:
            return await timed()
        except HalguruError as exc:  # ToolError too
            delay = step.retry_delay * 2 ** attempt
            await r.put(sid, Error(kind="step", message=f"step {sid} failed (try {attempt + 1} of "
                                   f"{step.retries + 1}): {exc}; trying again in {delay:g}s"))
            await asyncio.sleep(delay)
    return await timed()


async def _gate(r: _Run, sid: str, tool: str, args: dict[str, Any]) -> str | None:
    """A tool in ``approvals:``: None when a human approved it (run it), "" when it must wait for one (the
    workflow pauses), else why the step fails (a human rejected it)."""
    if sid not in r.decisions:
        if not r.asked:  # a second step that needs a human at once asks after this one is decided (it said it
            r.asked = sid  # waited too, but only one call is pending; it asked again after the first decision)
        return ""  # asked (``ApprovalRequested``) when the run pauses: a step failing beside it fails the run
    reason = r.decisions[sid]
    if reason is None:
        await r.put(sid, ApprovalApproved(call_id=sid, name=tool, arguments=args, edited=sid in r.edited,
                                          paused_run_id=r.resumed_from))
        return None
    await r.put(sid, ApprovalRejected(call_id=sid, name=tool, reason=reason, paused_run_id=r.resumed_from))
    return f"a human refused {tool}" + (f": {reason}" if reason else "")


async def _call_tool(r: _Run, sid: str, name: str, args: dict[str, Any]) -> Any:
    """The tool's result as the step's output (JSON decoded): whole up to MAX_ITEMS characters, what a template
    reads, not cut at the 8,000 a model reads (a cut JSON value went on as a string); a longer one fails the step."""
    from halguru.templating import MAX_ITEMS
    from halguru.tools.registry import cut_sizes

    await r.put(sid, ToolCall(call_id=sid, name=name, arguments=args))
    started = time.perf_counter()
    try:
        supplied = await r.ctx.hooks.supply_tool_result(ToolCallRequest(id=sid, name=name, arguments=args))
        if supplied is not None and supplied[1]:  # replay: a recorded failure
            raise ToolError(supplied[0].removeprefix("error: "))
        content = supplied[0] if supplied is not None else await _execute(r, sid, name, args)
        if len(content) > MAX_ITEMS and (sizes := cut_sizes(content)) is not None:  # cut by execute_tool
            raise ToolError(f"{name} returned {sizes[1]:,} characters; a workflow step's output holds at most "
                            f"{MAX_ITEMS:,}")
    except ToolError as exc:
        await r.put(sid, ToolResult(call_id=sid, name=name, content=f"error: {exc}", is_error=True,
                                     duration_ms=(time.perf_counter() - started) * 1000))
        raise
    await r.put(sid, ToolResult(call_id=sid, name=name, content=content,
                                 duration_ms=(time.perf_counter() - started) * 1000))
    if r.agent.tools[name].returns_text and not content.lstrip().startswith(("{", "[")):
        return content  # "10001" or "null" from a `-> str` tool is that text; its json.dumps(a dict) is decoded
    try:
        return json.loads(content)
    except json.JSONDecodeError:
        return content


async def _execute(r: _Run, sid: str, name: str, args: dict[str, Any]) -> str:
    """The tool's result; while it runs, the run knows the call (the first of parallel ones): a run cut meanwhile
    (Ctrl-C, the workflow's timeout) traces its end, as a plain agent's, instead of leaving it without a result."""
    from halguru.templating import MAX_ITEMS
    from halguru.tools.registry import execute_tool

    ctx, tool = r.ctx, r.agent.tools[name]
    mine = ctx.running_call is None
    if mine:
        ctx.running_tool, ctx.running_since = tool, time.perf_counter()
        ctx.running_call = ToolCallRequest(id=sid, name=name, arguments=args)
    try:
        content = await execute_tool(tool, args, limit=MAX_ITEMS)
    except ToolError:
        if mine:
            ctx.running_tool = ctx.running_call = None
        raise
    if mine:  # left set when cut: see runtime._cut_call (a step's own timeout clears it, see _tries)
        ctx.running_tool = ctx.running_call = None
    return content


async def _call_agent(r: _Run, sid: str, member: Agent, message: str, schema: dict[str, Any] | None) -> str:
    """The step's agent as a sub-run of this workflow run: its events join the workflow's trace."""
    result = SubRun()
    async for event in sub_run(r.ctx, member, message, result, output_schema=schema, shared_model=False):
        await r.put(sid, event)
    if result.status != "ok":
        raise HalguruError(f"agent {member.name} {result.status}: {result.error}")
    return result.output


def _answer(workflow: Workflow, results: dict[str, dict[str, Any]], context: dict[str, Any]) -> str:
    if workflow.settings.output is not None:
        from jinja2 import TemplateError

        try:
            return _render(workflow.settings.output, context)
        except TemplateError as exc:
            raise HalguruError(f"workflow output: template error: {exc}") from None
    for sid in reversed(list(workflow.steps)):
        if results.get(sid, {}).get("status") == "ok":
            value = results[sid]["output"]
            return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return ""


class _Ready:
    """The steps whose needs have all finished, to start in the order they are written: each step finishing
    counts down its dependents' needs (rescanning every step at each event took 7 s for 2,000 steps)."""

    def __init__(self, workflow: Workflow, done: dict[str, Any]) -> None:
        self.order = {sid: i for i, sid in enumerate(workflow.steps)}
        self.unmet = {sid: len(set(needs) - done.keys()) for sid, needs in workflow.needs.items() if sid not in done}
        self.dependents: dict[str, list[str]] = {}
        for sid, needs in workflow.needs.items():
            for need in set(needs):
                self.dependents.setdefault(need, []).append(sid)
        self.heap = [(self.order[sid], sid) for sid, count in self.unmet.items() if count == 0]
        heapq.heapify(self.heap)

    def next(self) -> str | None:
        return heapq.heappop(self.heap)[1] if self.heap else None

    def finished(self, sid: str) -> None:
        for dependent in self.dependents.get(sid, ()):
            if dependent in self.unmet:
                self.unmet[dependent] -= 1
                if self.unmet[dependent] == 0:
                    heapq.heappush(self.heap, (self.order[dependent], dependent))


@dataclass
class WorkflowDriver:
    """Runs the loaded agent's ``workflow:`` (it has no model of its own)."""

    workflow: Workflow
    kind: str = "workflow"

    @property
    def timeout(self) -> float:
        return self.workflow.settings.timeout

    def agents(self) -> list[Agent]:
        return list(self.workflow.agents.values())

    def with_agents(self, replace_agent: Callable[[Agent], Agent]) -> WorkflowDriver:
        agents = {sid: replace_agent(a) for sid, a in self.workflow.agents.items()}
        return WorkflowDriver(replace(self.workflow, agents=agents))

    def timed_out(self) -> tuple[str, str]:
        return "limited", f"workflow exceeded workflow.timeout ({self.timeout:g}s)"

    async def drive(self, ctx: RunContext, agent: Agent, history: list[Message], messages: list[Message],
                    outcome: RunOutcome) -> AsyncGenerator[BaseEvent, None]:
        workflow, resume = self.workflow, ctx.resume
        input = messages[0].content if messages else ""
        results: dict[str, dict[str, Any]] = dict((resume.state or {}).get("steps_done", {})) if resume else {}
        r = _Run(ctx, agent, workflow, asyncio.Queue())
        ctx.durable_state = lambda: {"steps_done": results}
        if resume is not None and resume.decisions:  # a continuation after approve or reject
            r.decisions, r.resumed_from = dict(resume.decisions), resume.paused_run_id
            for message in resume.messages:
                for call in message.tool_calls:
                    if call.id in resume.edited:
                        r.edited[call.id] = call.arguments
            del messages[1:]  # the conversation keeps the question and the answer, not the pending call
        number = {sid: i for i, sid in enumerate(workflow.steps, 1)}  # events carry their step's number
        waiting: ToolCallRequest | None = None  # a step paused for approval: finish what runs, start nothing
        failure: str | None = None  # a step failed: likewise, so a step with side effects is never cut (its
        # thread would go on unrecorded, and a resume would run it again)
        running: dict[str, asyncio.Task[None]] = {}
        ready = _Ready(workflow, results)
        try:
            while True:
                while waiting is None and failure is None and len(running) < workflow.settings.max_parallel:
                    sid = ready.next()
                    if sid is None:
                        break
                    running[sid] = asyncio.create_task(_run_step(r, sid, _context(input, results)))
                if not running:
                    break
                async with asyncio.timeout_at(ctx.deadline):
                    sid, item = await r.queue.get()
                if not ctx.is_sub_run:
                    ctx.trace.step = number[sid]
                if not isinstance(item, _StepDone):
                    yield item
                    continue
                await running.pop(item.step_id)  # surfaces a bug in the step as this run's failure
                if item.status == "paused":  # the pending call is the step that asked; another starts again later
                    waiting = item.call if item.step_id == r.asked else waiting or item.call
                    continue
                yield StepFinished(step_id=item.step_id, status=cast(StepStatus, item.status), output=item.output,
                                   error=item.error, duration_ms=item.duration_ms)
                if item.status == "failed":
                    failure = failure or f"step {item.step_id} failed: {item.error}"
                    continue
                results[item.step_id] = {"status": item.status, "output": item.output}
                ready.finished(item.step_id)
                checkpoint = ctx.checkpoint_after(f"step {item.step_id} {item.status}")
                if checkpoint is not None:
                    yield checkpoint
            if not ctx.is_sub_run:
                ctx.trace.step = 0
            if failure is not None:  # the steps that were running beside it finished, and are checkpointed
                outcome.status, outcome.error = "failed", failure
                yield Error(kind="step", message=failure, fatal=True)
                return
            if waiting is not None:
                if not ctx.is_sub_run:
                    ctx.trace.step = number[waiting.id]
                yield ApprovalRequested(call_id=waiting.id, name=waiting.name, arguments=waiting.arguments)
                if not ctx.is_sub_run:
                    ctx.trace.step = 0
                outcome.status, outcome.error, outcome.paused = "paused", f"{waiting.name} waits for approval", waiting
                messages.append(Message(role="assistant", content="", tool_calls=[waiting]))
                return
            outcome.output = _answer(workflow, results, _context(input, results))
            messages.append(Message(role="assistant", content=outcome.output))
            yield Token(text=outcome.output)
        except HalguruError as exc:
            outcome.status, outcome.error = "failed", str(exc)
            yield Error(kind="step", message=outcome.error, fatal=True)
        finally:
            for task in running.values():
                task.cancel()
            if running:
                await asyncio.gather(*running.values(), return_exceptions=True)


def load_workflow_driver(agent: Agent) -> WorkflowDriver:
    return WorkflowDriver(load_workflow(agent))
