"""Workflows: declared steps (an agent, a tool or a condition) run in dependency order, in parallel where
their ``needs`` allow, with outputs (checked against a JSON schema when one is given) passed on by templates.

Templates and expressions are Jinja (sandboxed): ``{{ input }}`` is the run's input and
``{{ steps.<id>.output }}`` a finished step's output (``None`` when it was skipped). A step runs once every
step it needs has finished, if its ``when`` holds. Each finished step is a checkpoint, so a killed workflow
resumes after its last finished step (see halguru.orchestration.durable).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any

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
from halguru.agents.spec import WorkflowSettings, WorkflowStep
from halguru.errors import AgentSpecError, HalguruError, ToolError
from halguru.models.base import Message, ToolCallRequest
from halguru.yamlfile import yaml_line_for

if TYPE_CHECKING:
    from halguru.agents.loader import Agent
    from halguru.orchestration.approvals import Resume

_STEP_REF = re.compile(r"\bsteps\s*(?:\.\s*(\w+)|\[\s*['\"](\w+)['\"]\s*\])")
_WHOLE_EXPRESSION = re.compile(r"^\s*\{\{(.*)\}\}\s*$", re.S)


@dataclass
class Workflow:
    settings: WorkflowSettings
    steps: dict[str, WorkflowStep]
    needs: dict[str, list[str]]                                # step id -> the steps it waits for
    agents: dict[str, Agent] = field(default_factory=dict)   # agent steps: step id -> its agent


@cache
def _env() -> Any:
    from jinja2 import StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def finalize(value: Any) -> Any:  # structured outputs go into prompts as JSON, not Python reprs
        return json.dumps(value, ensure_ascii=False) if isinstance(value, dict | list) else value

    return ImmutableSandboxedEnvironment(undefined=StrictUndefined, finalize=finalize, autoescape=False)


def _expression(text: str) -> str:
    """A ``when``/``condition`` may be written bare (``x == 1``) or in braces (``{{ x == 1 }}``)."""
    match = _WHOLE_EXPRESSION.match(text)
    return match.group(1) if match else text


def _templates(step: WorkflowStep) -> list[tuple[tuple[str | int, ...], str, bool]]:
    """(yaml path, text, is_expression) of every template in a step, for load-time checks."""
    out: list[tuple[tuple[str | int, ...], str, bool]] = []
    if step.agent is not None:
        out.append((("input",), step.input, False))
    if step.condition is not None:
        out.append((("condition",), step.condition, True))
    if step.when is not None:
        out.append((("when",), step.when, True))
    out += [(("args", k), v, False) for k, v in step.args.items() if isinstance(v, str)]
    return out


def load_workflow(agent: Agent) -> Workflow:
    """Check a workflow at load: one kind per step, known agents and tools, known needs, no cycle, templates
    that parse and only read steps that surely ran before. Errors name agent.yaml, the line and the field."""
    from jinja2 import TemplateSyntaxError

    from halguru.agents.loader import AGENT_FILE, load_agent

    assert agent.spec.workflow is not None and agent.path is not None
    settings = agent.spec.workflow
    agent_file = agent.path / AGENT_FILE
    text = agent_file.read_text(encoding="utf-8")

    def fail(path: tuple[str | int, ...], problem: str) -> AgentSpecError:
        line = yaml_line_for(text, ("workflow", *path))
        return AgentSpecError(f"{agent_file}:{line}: workflow.{'.'.join(str(p) for p in path)}: {problem}")

    if agent.spec.mcp:
        raise AgentSpecError(f"{agent_file}:{yaml_line_for(text, ('mcp',))}: mcp: a workflow's tool steps use its "
                             "tools: and http_tools:; give MCP servers to the agent of an agent step instead")
    steps: dict[str, WorkflowStep] = {}
    needs: dict[str, list[str]] = {}
    index_of: dict[str, int] = {}
    for i, step in enumerate(settings.steps):
        if step.id in steps:
            raise fail(("steps", i, "id"), f"two steps are named {step.id!r}")
        kinds = [k for k in ("agent", "tool", "condition") if getattr(step, k) is not None]
        if len(kinds) != 1:
            raise fail(("steps", i), "give exactly one of agent, tool or condition"
                       + (f" (got {' and '.join(kinds)})" if kinds else ""))
        steps[step.id], index_of[step.id] = step, i
        needs[step.id] = list(step.needs) if step.needs is not None else ([settings.steps[i - 1].id] if i else [])
    workflow = Workflow(settings, steps, needs)
    for sid, step in steps.items():
        i = index_of[sid]
        for j, need in enumerate(step.needs or []):
            if need not in steps:
                raise fail(("steps", i, "needs", j), f"unknown step {need!r} (steps: {', '.join(steps)})")
            if need == sid:
                raise fail(("steps", i, "needs", j), "a step cannot need itself")
        if step.tool is not None and step.tool not in agent.tools:
            raise fail(("steps", i, "tool"), f"{step.tool!r} is not one of this agent's tools "
                       f"({', '.join(agent.tools) or 'none: list it under tools:'})")
        if step.agent is not None:
            folder = (agent.path / step.agent).resolve()
            if not (folder / AGENT_FILE).is_file():
                raise fail(("steps", i, "agent"), f"unknown agent {step.agent!r} (no {folder / AGENT_FILE})")
            try:
                member = load_agent(folder)
            except AgentSpecError as exc:
                raise fail(("steps", i, "agent"), f"{step.agent}: {exc}") from None
            if member.spec.workflow is not None:
                raise fail(("steps", i, "agent"), f"{member.name!r} is a workflow itself; workflows do not nest")
            workflow.agents[sid] = member
    _reject_cycles(workflow, lambda sid, j: fail(("steps", index_of[sid], "needs", j), ""))
    for sid, step in steps.items():
        before = _ancestors(workflow, sid)
        for path, template, is_expression in _templates(step):
            where = ("steps", index_of[sid], *path)
            try:
                if is_expression:
                    _env().compile_expression(_expression(template))
                else:
                    _env().from_string(template)
            except TemplateSyntaxError as exc:
                raise fail(where, f"template error: {exc.message}") from None
            for ref in (a or b for a, b in _STEP_REF.findall(template)):
                if ref not in steps:
                    raise fail(where, f"refers to unknown step {ref!r}")
                if ref not in before:
                    raise fail(where, f"refers to steps.{ref}, which may not have finished yet (add it to needs)")
    if settings.output is not None:
        try:
            _env().from_string(settings.output)
        except TemplateSyntaxError as exc:
            raise fail(("output",), f"template error: {exc.message}") from None
    return workflow


def _ancestors(workflow: Workflow, sid: str) -> set[str]:
    seen: set[str] = set()
    stack = list(workflow.needs[sid])
    while stack:
        current = stack.pop()
        if current not in seen:
            seen.add(current)
            stack.extend(workflow.needs[current])
    return seen


def _reject_cycles(workflow: Workflow, fail: Callable[[str, int], AgentSpecError]) -> None:
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(sid: str, path: list[str]) -> None:
        state[sid] = 1
        for j, need in enumerate(workflow.needs[sid]):
            if state.get(need) == 1:
                chain = " → ".join([*path[path.index(need):], need])
                error = fail(sid, j)
                raise AgentSpecError(f"{str(error).rstrip()} cycle {chain}; a workflow runs each step once")
            if need not in state:
                visit(need, [*path, need])
        state[sid] = 2

    for sid in workflow.steps:
        if sid not in state:
            visit(sid, [sid])


@dataclass
class _StepDone:
    step_id: str
    status: str  # ok, skipped, failed, or paused (a tool in approvals: waits for a human)
    output: Any = None
    error: str | None = None
    duration_ms: float = 0.0
    call: ToolCallRequest | None = None


def _context(input: str, results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {"input": input, "steps": {sid: dict(r) for sid, r in results.items()}}


@cache
def _template(text: str) -> Any:  # compiling is most of a step's cost: once per text per process
    return _env().from_string(text)


@cache
def _compiled(expression: str) -> Any:
    return _env().compile_expression(_expression(expression), undefined_to_none=False)


def _render(template: str, context: dict[str, Any]) -> str:
    return _template(template).render(context)


def _evaluate(expression: str, context: dict[str, Any]) -> Any:
    return _compiled(expression)(**context)


def _render_args(args: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """Strings are templates; a string that is one ``{{ expression }}`` keeps the value's type."""
    out: dict[str, Any] = {}
    for key, value in args.items():
        if isinstance(value, str):
            whole = _WHOLE_EXPRESSION.match(value)
            out[key] = _evaluate(value, context) if whole and "{{" not in whole.group(1) else _render(value, context)
        else:
            out[key] = value
    return out


def _parse_output(text: str) -> Any:
    """An answer meant as JSON: the first JSON value in it (models like to wrap it in prose or fences)."""
    text = text.strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    decoder = json.JSONDecoder()
    for match in re.finditer(r"[\[{]", text):
        try:
            return decoder.raw_decode(text, match.start())[0]
        except json.JSONDecodeError:
            continue
    raise ToolError("the answer is not JSON")


def _check_output(step: WorkflowStep, value: Any) -> Any:
    if step.output is None:
        return value
    import jsonschema

    problems = list(jsonschema.validators.validator_for(step.output)(step.output).iter_errors(value))
    if problems:
        where = ".".join(str(p) for p in problems[0].absolute_path) or "output"
        raise ToolError(f"output does not match its schema: {where}: {problems[0].message}")
    return value


@dataclass
class _Run:
    """One workflow run's shared state, for the step tasks."""

    agent: Agent
    model: Any
    sampling: dict[str, Any] | None
    queue: asyncio.Queue[tuple[str, BaseEvent | _StepDone]]
    decisions: dict[str, str | None] = field(default_factory=dict)  # step id -> None approved, or a reason
    edited: dict[str, dict[str, Any]] = field(default_factory=dict)  # step id -> the arguments a human set
    resumed_from: str = ""
    usage: dict[str, int] = field(default_factory=lambda: {"steps": 0, "prompt_tokens": 0, "completion_tokens": 0})

    @property
    def workflow(self) -> Workflow:
        assert self.agent.workflow is not None
        return self.agent.workflow

    async def put(self, sid: str, item: BaseEvent | _StepDone) -> None:
        await self.queue.put((sid, item))


async def _run_step(r: _Run, sid: str, context: dict[str, Any]) -> None:
    """Run one step, putting its events on the queue and, last, a ``_StepDone``."""
    step = r.workflow.steps[sid]
    started = time.perf_counter()

    def done(status: str, output: Any = None, error: str | None = None) -> _StepDone:
        return _StepDone(sid, status, output, error, (time.perf_counter() - started) * 1000)

    try:
        if step.when is not None and not _evaluate(step.when, context):
            await r.put(sid, done("skipped"))
            return
        if step.condition is not None:
            await r.put(sid, StepStarted(step_id=sid, kind="condition", name=step.condition))
            await r.put(sid, done("ok", _check_output(step, _evaluate(step.condition, context))))
        elif step.tool is not None:
            args = r.edited.get(sid) or _render_args(step.args, context)
            await r.put(sid, StepStarted(step_id=sid, kind="tool", name=step.tool, input=args))
            if step.tool in r.agent.spec.approvals:
                refusal = await _gate(r, sid, step.tool, args)
                if refusal is not None:
                    await r.put(sid, done("failed", error=refusal) if refusal else
                                _StepDone(sid, "paused", call=ToolCallRequest(id=sid, name=step.tool, arguments=args)))
                    return
            await r.put(sid, done("ok", _check_output(step, await _call_tool(r, sid, step.tool, args))))
        else:
            message = _render(step.input, context)
            if step.output is not None:
                message += ("\n\nAnswer with only a JSON value matching this JSON schema:\n"
                            + json.dumps(step.output, ensure_ascii=False))
            member = r.workflow.agents[sid]
            await r.put(sid, StepStarted(step_id=sid, kind="agent", name=member.name, input=message))
            answer = await _call_agent(r, sid, member, message, step.output)
            value = _parse_output(answer) if step.output is not None else answer
            await r.put(sid, done("ok", _check_output(step, value)))
    except (ToolError, HalguruError) as exc:
        await r.put(sid, done("failed", error=str(exc)))
    except Exception as exc:  # a template that fails at run time (e.g. an undefined name) fails its step
        from jinja2 import TemplateError

        if not isinstance(exc, TemplateError):
            raise
        await r.put(sid, done("failed", error=f"template error: {exc}"))


async def _gate(r: _Run, sid: str, tool: str, args: dict[str, Any]) -> str | None:
    """A tool in ``approvals:``: None when a human approved it (run it), "" when it must wait for one (the
    workflow pauses), else why the step fails (a human rejected it)."""
    if sid not in r.decisions:
        await r.put(sid, ApprovalRequested(call_id=sid, name=tool, arguments=args))
        return ""
    reason = r.decisions[sid]
    if reason is None:
        await r.put(sid, ApprovalApproved(call_id=sid, name=tool, arguments=args, edited=sid in r.edited,
                                          paused_run_id=r.resumed_from))
        return None
    await r.put(sid, ApprovalRejected(call_id=sid, name=tool, reason=reason, paused_run_id=r.resumed_from))
    return f"a human refused {tool}" + (f": {reason}" if reason else "")


async def _call_tool(r: _Run, sid: str, name: str, args: dict[str, Any]) -> Any:
    from halguru.tools.registry import execute_tool

    await r.put(sid, ToolCall(call_id=sid, name=name, arguments=args))
    started = time.perf_counter()
    try:
        content = await execute_tool(r.agent.tools[name], args)
    except ToolError as exc:
        await r.put(sid, ToolResult(call_id=sid, name=name, content=f"error: {exc}", is_error=True,
                                     duration_ms=(time.perf_counter() - started) * 1000))
        raise
    await r.put(sid, ToolResult(call_id=sid, name=name, content=content,
                                 duration_ms=(time.perf_counter() - started) * 1000))
    try:
        return json.loads(content)
    except json.JSONDecodeError:
        return content


async def _call_agent(r: _Run, sid: str, member: Agent, message: str, schema: dict[str, Any] | None) -> str:
    """The step's agent runs through the one entry point, unrecorded: its events join the workflow's trace."""
    from halguru.agents.runtime import run

    async for event in run(member, message, model=r.model, record=False, sampling=r.sampling,
                           output_schema=schema):
        if event.type == "run_finished":
            r.usage["steps"] += event.steps  # type: ignore[union-attr]
            r.usage["prompt_tokens"] += event.prompt_tokens  # type: ignore[union-attr]
            r.usage["completion_tokens"] += event.completion_tokens  # type: ignore[union-attr]
            if event.status != "ok":  # type: ignore[union-attr]
                raise HalguruError(f"agent {member.name} {event.status}: {event.error}")  # type: ignore[union-attr]
            return event.output  # type: ignore[union-attr]
        if event.type not in ("run_started", "token"):
            await r.put(sid, event)
    raise HalguruError(f"agent {member.name} ended without an answer")


def _answer(workflow: Workflow, results: dict[str, dict[str, Any]], context: dict[str, Any]) -> str:
    if workflow.settings.output is not None:
        return _render(workflow.settings.output, context)
    for sid in reversed(list(workflow.steps)):
        if results.get(sid, {}).get("status") == "ok":
            value = results[sid]["output"]
            return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return ""


async def workflow_events(agent: Agent, input: str, model: Any, sampling: dict[str, Any] | None,
                          resume: Resume | None, trace: Callable[[BaseEvent], BaseEvent],
                          checkpoint: Callable[[str, dict[str, Any]], BaseEvent] | None,
                          finish: Callable[[str, str | None], BaseEvent],
                          pause: Callable[[ToolCallRequest], None], totals: Any,
                          new_messages: list[Message]) -> AsyncIterator[BaseEvent]:
    """The body of a workflow run (the runtime yields what this yields, after ``run_started``)."""
    workflow: Workflow = agent.workflow  # type: ignore[assignment]
    results: dict[str, dict[str, Any]] = dict((resume.state or {}).get("steps_done", {})) if resume else {}
    queue: asyncio.Queue[tuple[str, BaseEvent | _StepDone]] = asyncio.Queue()
    number = {sid: i for i, sid in enumerate(workflow.steps, 1)}  # events carry their step's number
    r = _Run(agent, model, sampling, queue)
    if resume is not None and resume.decisions:  # a continuation after approve or reject
        r.decisions, r.resumed_from = dict(resume.decisions), resume.paused_run_id
        for message in resume.messages:
            for call in message.tool_calls:
                if call.id in resume.edited:
                    r.edited[call.id] = call.arguments
        del new_messages[1:]  # the conversation keeps the question and the answer, not the pending call
    waiting: ToolCallRequest | None = None  # a step paused for approval: finish what runs, start nothing
    running: dict[str, asyncio.Task[None]] = {}
    status, error = "ok", None
    deadline = asyncio.get_running_loop().time() + workflow.settings.timeout
    try:
        while True:
            for sid in workflow.steps:
                if (waiting is None and sid not in results and sid not in running
                        and len(running) < workflow.settings.max_parallel
                        and all(n in results for n in workflow.needs[sid])):
                    running[sid] = asyncio.create_task(_run_step(r, sid, _context(input, results)))
            if not running:
                break
            async with asyncio.timeout_at(deadline):
                sid, item = await queue.get()
            trace.step = number[sid]  # type: ignore[attr-defined]
            if not isinstance(item, _StepDone):
                yield trace(item)
                continue
            await running.pop(item.step_id)  # surfaces a bug in the step as this run's failure
            if item.status == "paused":
                waiting = item.call
                continue
            totals.steps, totals.prompt_tokens, totals.completion_tokens = (
                totals.steps + r.usage["steps"], totals.prompt_tokens + r.usage["prompt_tokens"],
                totals.completion_tokens + r.usage["completion_tokens"])
            r.usage = {"steps": 0, "prompt_tokens": 0, "completion_tokens": 0}
            yield trace(StepFinished(step_id=item.step_id, status=item.status, output=item.output,
                                     error=item.error, duration_ms=item.duration_ms))
            if item.status == "failed":
                status, error = "failed", f"step {item.step_id} failed: {item.error}"
                yield trace(Error(kind="step", message=error, fatal=True))
                break
            results[item.step_id] = {"status": item.status, "output": item.output}
            if checkpoint is not None:
                yield checkpoint(f"step {item.step_id} {item.status}", {
                    "steps_done": results, "steps": totals.steps, "prompt_tokens": totals.prompt_tokens,
                    "completion_tokens": totals.completion_tokens})
        trace.step = 0  # type: ignore[attr-defined]
        if status == "ok" and waiting is not None:
            status, error = "paused", f"{waiting.name} waits for approval"
            new_messages.append(Message(role="assistant", content="", tool_calls=[waiting]))
            pause(waiting)
        elif status == "ok":
            answer = _answer(workflow, results, _context(input, results))
            totals.answer = [answer]
            new_messages.append(Message(role="assistant", content=answer))
            yield trace(Token(text=answer))
    except TimeoutError:
        status, error = "limited", f"workflow exceeded workflow.timeout ({workflow.settings.timeout:g}s)"
        yield trace(Error(kind="timeout", message=error, fatal=True))
    except HalguruError as exc:
        status, error = "failed", str(exc)
        yield trace(Error(kind="step", message=error, fatal=True))
    except (asyncio.CancelledError, GeneratorExit):
        await _cancel(running)
        finish("cancelled", "cancelled by the user")
        raise
    except Exception as exc:  # a bug: record the run as failed rather than leave it 'running'
        await _cancel(running)
        finish("failed", f"internal error: {type(exc).__name__}: {exc}")
        raise
    await _cancel(running)
    yield finish(status, error)


async def _cancel(running: dict[str, asyncio.Task[None]]) -> None:
    for task in running.values():
        task.cancel()
    if running:
        await asyncio.gather(*running.values(), return_exceptions=True)
    running.clear()
