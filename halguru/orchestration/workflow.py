"""Workflows: declared steps (an agent, a tool or a condition) run in dependency order, in parallel where
their ``needs`` allow, with outputs (checked against a JSON schema when one is given) passed on by templates.

Templates and expressions are Jinja (sandboxed): ``{{ input }}`` is the run's input and
``{{ steps.<id>.output }}`` a finished step's output (``None`` when it was skipped). A step runs once every
step it needs has finished, if its ``when`` holds. Each finished step is a checkpoint, so a killed workflow
resumes after its last finished step (see halguru.orchestration.durable).
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache, partial
from typing import TYPE_CHECKING, Any

from halguru.agents.spec import WorkflowSettings, WorkflowStep
from halguru.errors import AgentSpecError, ToolError, did_you_mean
from halguru.models.base import ToolCallRequest
from halguru.yamlfile import yaml_line_for

if TYPE_CHECKING:
    from halguru.agents.loader import Agent

_STEP_REF = re.compile(r"\bsteps\s*(?:\.\s*(\w+)|\[\s*['\"](\w+)['\"]\s*\])")
_STEP_FIELD = re.compile(_STEP_REF.pattern + r"\s*(?:\.\s*(\w+)|\[\s*['\"](\w+)['\"]\s*\])")  # steps.ID.FIELD
STEP_FIELDS = ("output", "status")  # what a template reads of a finished step (see ``_context``)
_WHOLE_EXPRESSION = re.compile(r"^\s*\{\{(.*)\}\}\s*$", re.S)
TEMPLATE_NAMES = ("input", "steps")  # what templates and expressions read (see ``_context``)


@dataclass
class Workflow:
    settings: WorkflowSettings
    steps: dict[str, WorkflowStep]
    needs: dict[str, list[str]]                                # step id -> the steps it waits for
    agents: dict[str, Agent] = field(default_factory=dict)   # agent steps: step id -> its agent


@cache
def _env() -> Any:
    from jinja2 import StrictUndefined

    from halguru.templating import BoundedSandbox

    def finalize(value: Any) -> Any:  # structured outputs go into prompts as JSON, not Python reprs
        return json.dumps(value, ensure_ascii=False) if isinstance(value, dict | list) else value

    class KeysFirst(BoundedSandbox):
        """``a.items`` of a dict with an ``items`` key is that key's value (a step named items, update or get; an
        API's ``{"items": [...]}``), not the dict method Jinja looks up first; other methods stay."""

        def getattr(self, obj: Any, attribute: str) -> Any:
            if isinstance(obj, dict) and attribute in obj:
                return obj[attribute]
            return super().getattr(obj, attribute)

    return KeysFirst(undefined=StrictUndefined, finalize=finalize, autoescape=False)


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
    out += [(path, text, False) for path, text in _strings(step.args, ("args",))]
    return out


def _strings(value: Any, path: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """(yaml path, text) of every string in an argument, at any depth: each one is a template."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _strings(item, (*path, i))


_IGNORED = {  # (step kind, field): why a field that kind of step would ignore is written by mistake
    ("agent", "args"): "an agent step's message is its input:, not args: (args: are a tool step's arguments)",
    ("tool", "input"): "a tool step takes args:, not input: (input: is an agent step's message)",
    ("condition", "args"): "a condition step reads no args: (args: are a tool step's arguments)",
    ("condition", "input"): "a condition step reads no input: (input: is an agent step's message)",
}


def load_workflow(agent: Agent) -> Workflow:
    """Check a workflow at load: one kind per step, known agents and tools, known needs, no cycle, templates
    that parse and only read steps that surely ran before. Errors name agent.yaml, the line and the field."""
    from halguru.agents.loader import AGENT_FILE, load_agent
    from halguru.orchestration.team import folder_hint

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
        ignored = next((f for f in ("args", "input") if (kinds[0], f) in _IGNORED and f in step.model_fields_set),
                       None)
        if ignored is not None:  # it ran as if the field were not there
            raise fail(("steps", i, ignored), _IGNORED[kinds[0], ignored])
        if step.condition is not None and {"retries", "retry_delay"} & step.model_fields_set:
            raise fail(("steps", i, "retries" if "retries" in step.model_fields_set else "retry_delay"),
                       "a condition step is not retried (its expression gives the same value again); retries are "
                       "for tool and agent steps")
        if step.condition is not None and step.timeout is not None:
            raise fail(("steps", i, "timeout"), "a condition step takes no timeout (an expression has 2 seconds at "
                       "most); timeout is for tool and agent steps")
        if step.output is not None and (problem := _schema_problem(step.output)):
            raise fail(("steps", i, "output"), f"not a JSON schema: {problem}")
        steps[step.id], index_of[step.id] = step, i
        needs[step.id] = list(step.needs) if step.needs is not None else ([settings.steps[i - 1].id] if i else [])
    workflow = Workflow(settings, steps, needs)
    for sid, step in steps.items():
        i = index_of[sid]
        for j, need in enumerate(step.needs or []):
            if need not in steps:
                raise fail(("steps", i, "needs", j), f"unknown step {need!r}{did_you_mean(need, steps)} "
                           f"(steps: {', '.join(steps)})")
            if need == sid:
                raise fail(("steps", i, "needs", j), "a step cannot need itself")
        if step.tool is not None and step.tool not in agent.tools:
            known = ", ".join(agent.tools) or "none: list it under tools:"
            raise fail(("steps", i, "tool"), f"{step.tool!r} is not one of this agent's tools"
                       f"{did_you_mean(step.tool, agent.tools)} ({known})")
        if step.tool is not None:  # a required argument left out would fail only when the step runs
            missing = [a for a in agent.tools[step.tool].parameters.get("required", []) if a not in step.args]
            if missing:
                at: tuple[str | int, ...] = ("steps", i, "args") if step.args else ("steps", i)
                raise fail(at, f"{step.tool} needs {', '.join(map(repr, missing))} "
                           f"(args: {', '.join(step.args) or 'none'})")
        if step.agent is not None:
            folder = (agent.path / step.agent).resolve()
            if not (folder / AGENT_FILE).is_file():
                raise fail(("steps", i, "agent"), f"unknown agent {step.agent!r}{folder_hint(folder, step.agent)} "
                           f"(no {folder / AGENT_FILE})")
            try:
                member = load_agent(folder)
            except AgentSpecError as exc:
                raise fail(("steps", i, "agent"), f"{step.agent}: {exc}") from None
            if member.spec.workflow is not None:
                raise fail(("steps", i, "agent"), f"{member.name!r} is a workflow itself; workflows do not nest")
            gated = [a for a in [member, *(member.driver.agents() if member.driver else [])] if a.spec.approvals]
            if gated:  # its run would stop at the call with nothing to approve: the step failed "paused"
                raise fail(("steps", i, "agent"), f"agent {gated[0].name!r} has approvals: "
                           f"[{', '.join(gated[0].spec.approvals)}], and an agent step cannot wait for a human; "
                           "make that call a tool step (the tool in this agent's tools: and approvals:)")
            workflow.agents[sid] = member
    _reject_cycles(workflow, lambda sid, j: fail(("steps", index_of[sid], "needs", j) if steps[sid].needs is not None
                                                 else ("steps", index_of[sid]), ""),
                   explicit={sid for sid, step in steps.items() if step.needs is not None})
    for sid, step in steps.items():
        templates = _templates(step)
        # the steps surely ended before this one: a walk up its needs, only for a step whose templates read steps
        before = _ancestors(workflow, sid) if any(_STEP_REF.search(t) for _, t, _ in templates) else set()
        for path, template, is_expression in templates:
            _check_template(workflow, template, is_expression, before, partial(fail, ("steps", index_of[sid], *path)))
    if settings.output is not None:  # rendered once every step has ended: any step may be read
        _check_template(workflow, settings.output, False, set(steps), partial(fail, ("output",)))
    return workflow


def _schema_problem(schema: dict[str, Any]) -> str | None:
    """Why ``schema`` is not a JSON schema its step's output can be checked against (one line), or None."""
    import jsonschema

    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = ".".join(str(p) for p in exc.absolute_path)
        return f"{where}: {exc.message}" if where else exc.message
    return None


def _check_template(workflow: Workflow, template: str, is_expression: bool, before: set[str],
                    fail: Callable[[str], AgentSpecError]) -> None:
    """A template must parse and read only known steps that surely ended before it renders (``before``)."""
    from jinja2 import TemplateSyntaxError

    try:
        if is_expression:
            _env().compile_expression(_expression(template))
        else:
            _env().from_string(template)
    except TemplateSyntaxError as exc:
        raise fail(f"template error: {exc.message}") from None
    unknown = _unknown_names(f"{{{{ {_expression(template)} }}}}" if is_expression else template)
    if unknown:
        raise fail(f"unknown name {unknown[0]!r}{did_you_mean(unknown[0], TEMPLATE_NAMES)} (a template reads "
                   "input and steps.<id>.output)")
    for ref in (a or b for a, b in _STEP_REF.findall(template)):
        if ref not in workflow.steps:
            raise fail(f"refers to unknown step {ref!r}{did_you_mean(ref, workflow.steps)} "
                       f"(steps: {', '.join(workflow.steps)})")
        if ref not in before:
            raise fail(f"refers to steps.{ref}, which may not have finished yet (add it to needs)")
    for ref, read in ((a or b, c or d) for a, b, c, d in _STEP_FIELD.findall(template)):
        if read not in STEP_FIELDS:  # steps.a.ouput failed the run at that step, after the steps before it
            raise fail(f"steps.{ref}.{read}: a step has {' and '.join(STEP_FIELDS)}{did_you_mean(read, STEP_FIELDS)}")


def _unknown_names(template: str) -> list[str]:
    """The names a (parsed) template reads that no run gives it: a typo (``inptu``, ``step.a``) passed validate
    and failed the run at that step, after the steps before it had run (and cost)."""
    from jinja2 import meta

    names = meta.find_undeclared_variables(_env().parse(template)) - set(TEMPLATE_NAMES) - set(_env().globals)
    return sorted(names)


def _ancestors(workflow: Workflow, sid: str) -> set[str]:
    seen: set[str] = set()
    stack = list(workflow.needs[sid])
    while stack:
        current = stack.pop()
        if current not in seen:
            seen.add(current)
            stack.extend(workflow.needs[current])
    return seen


def _reject_cycles(workflow: Workflow, fail: Callable[[str, int], AgentSpecError],
                   explicit: set[str] | None = None) -> None:
    """A cycle is an error at one of its edges: one written in a ``needs:`` list (``explicit``: the steps that
    have one) where there is one, not a step's implicit need of the step before it, which has no line."""
    state: dict[str, int] = {}  # 1 visiting, 2 done
    for root in workflow.steps:  # depth first, on a stack of its own: a long chain of needs is no recursion
        if root in state:
            continue
        state[root], path, pending = 1, [root], [iter(workflow.needs[root])]
        while pending:
            sid, need = path[-1], next(pending[-1], None)
            if need is None:
                state[sid] = 2
                path.pop()
                pending.pop()
            elif state.get(need) == 1:
                cycle = [*path[path.index(need):], need]
                edges = list(itertools.pairwise(cycle))  # (step, the step it needs)
                written = [(a, b) for a, b in edges[::-1] if explicit is None or a in explicit]  # closing first
                at, needed = (written or [(sid, need)])[0]
                error = fail(at, workflow.needs[at].index(needed))
                raise AgentSpecError(f"{str(error).rstrip()} cycle {' → '.join(cycle)}; a workflow runs each step "
                                     "once")
            elif need not in state:
                state[need] = 1
                path.append(need)
                pending.append(iter(workflow.needs[need]))


@dataclass
class _StepDone:
    step_id: str
    status: str  # ok, skipped, failed, or paused (a tool in approvals: waits for a human)
    output: Any = None
    error: str | None = None
    duration_ms: float = 0.0
    call: ToolCallRequest | None = None


def _context(input: str, results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What a step's templates read: the steps finished when it starts (a shallow copy; the sandbox is immutable,
    so no template changes a result: copying each one made a run of 3,200 steps spend 1.3 s here)."""
    return {"input": input, "steps": dict(results)}


@cache
def _template(text: str) -> Any:  # compiling is most of a step's cost: once per text per process
    return _env().from_string(text)


@cache
def _compiled(expression: str) -> Any:
    return _env().compile_expression(_expression(expression), undefined_to_none=False)


def _render(template: str, context: dict[str, Any]) -> str:
    from halguru.templating import render

    with _as_template_error():
        return render(_template(template), context)


def _evaluate(expression: str, context: dict[str, Any]) -> Any:
    """The expression's value; a name or attribute it reads that is not there raises UndefinedError (compiled
    with ``undefined_to_none=False``, StrictUndefined would come back as the value, also inside a list)."""
    from halguru.templating import check_value

    with _as_template_error():  # the value becomes a step's output or a tool's arguments: stored as text
        return check_value(_defined(_compiled(expression)(**context)))


@contextmanager
def _as_template_error() -> Iterator[None]:
    """What a template raises is its own error, not halguru's: ``1 / 0`` or ``'a' + 1`` fails its step in one
    line as an undefined name does (raised as anything else, the step's task died unheard and the workflow
    waited for its timeout)."""
    from jinja2 import TemplateError, TemplateRuntimeError

    try:
        yield
    except TemplateError:
        raise
    except Exception as exc:
        raise TemplateRuntimeError(f"{type(exc).__name__}: {exc}") from None


def _defined(value: Any) -> Any:
    from jinja2 import Undefined

    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    if isinstance(value, dict):
        for item in value.values():
            _defined(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _defined(item)
    return value


def _render_args(args: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """Strings are templates, inside dicts and lists too; a string that is one ``{{ expression }}`` keeps the
    value's type."""
    return {key: _render_value(value, context) for key, value in args.items()}


def _render_value(value: Any, context: dict[str, Any]) -> Any:
    if isinstance(value, str):
        whole = _WHOLE_EXPRESSION.match(value)
        return _evaluate(value, context) if whole and "{{" not in whole.group(1) else _render(value, context)
    if isinstance(value, dict):
        return {key: _render_value(item, context) for key, item in value.items()}
    if isinstance(value, list):
        return [_render_value(item, context) for item in value]
    return value


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
    if not text:
        raise ToolError("the answer is empty, not JSON")
    shown = repr(text[:80]) + ("…" if len(text) > 80 else "")
    raise ToolError(f"the answer is not JSON: {shown}")


def _check_output(step: WorkflowStep, value: Any) -> Any:
    if step.output is None:
        return value
    import jsonschema

    problems = list(jsonschema.validators.validator_for(step.output)(step.output).iter_errors(value))
    if problems:
        where = ".".join(str(p) for p in problems[0].absolute_path) or "output"
        raise ToolError(f"output does not match its schema: {where}: {problems[0].message}")
    return value
