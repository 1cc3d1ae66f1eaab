"""Events on the terminal: the live run printer and the event tree, both worded by ``halguru.agents.describe``."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

from rich.console import Console
from rich.markup import escape
from rich.tree import Tree

from halguru.agents.describe import (
    STATUS_STYLES,
    clip,
    describe,
    ms,
    note,
    parent_of,
    parse_events,
    run_cost,
    token_count,
    usd,
)
from halguru.agents.events import (
    BaseEvent,
    Error,
    Event,
    Handoff,
    ModelResult,
    Resumed,
    Retrieval,
    RunFinished,
    RunStarted,
    StepStarted,
    Token,
    ToolCall,
    ToolResult,
)
from halguru.printable import printable


class RunPrinter:
    """Streams answer tokens to stdout; tool activity and errors go to stderr, dimmed."""

    def __init__(self, out: TextIO | None = None, err: Console | None = None, debug: bool = False):
        self.debug = debug  # --debug: a tool's traceback under its error
        self.out = out or sys.stdout
        self.err = err or Console(stderr=True, highlight=False, soft_wrap=True)
        self.at_line_start = True
        self.terminal = self.out.isatty()

    def __call__(self, event: BaseEvent) -> None:
        if isinstance(event, Token):
            self.out.write(printable(event.text) if self.terminal else event.text)  # piped: the answer as it is
            self.out.flush()
            self.at_line_start = event.text.endswith("\n")
            return
        # A fatal error is the run's result: the caller prints it once, from run_finished.
        line = None if isinstance(event, Error) and event.fatal else note(event)
        breaks = isinstance(event, Handoff | Retrieval | Error | RunFinished) or (
            isinstance(event, ModelResult) and bool(event.tool_calls and event.text))
        if (line is not None or breaks) and not self.at_line_start:
            self.out.write("\n")
            self.out.flush()
            self.at_line_start = True
        if line is not None:
            self.err.print(line)
        if self.debug and isinstance(event, Error) and event.detail:
            self.err.print(f"[dim]{escape(printable(event.detail))}[/]")


@dataclass
class _Scope:
    """Where one run's events go in the tree: the root run, or a sub-run (``parent_run_id``) under it."""

    node: Tree
    agent: str
    nested: bool = False  # a sub-run: its events hang flat under its node (the step numbers are its parent's)
    steps: dict[int, Tree] = field(default_factory=dict)
    calls: dict[str, Tree] = field(default_factory=dict)
    open_call: Tree | None = None  # the last tool call without a result: a sub-run it starts hangs there
    asked: tuple[str, Tree] | None = None  # (specialist, its ask node) while a specialist answers in this run


class _TreeBuilder:
    """Adds events one by one: steps group a run's model and tool calls; sub-runs nest under their parent."""

    def __init__(self, root: Tree, run_id: str, agent: str, team: bool):
        self.root_id, self.team = run_id, team
        self.scopes = {run_id: _Scope(root, agent)}

    def scope(self, e: Event) -> _Scope:
        """The scope of ``e``'s run; a sub-run's is opened under the ask, tool call or step that started it."""
        run_id = e.run_id or self.root_id
        if run_id not in self.scopes:
            parent = self.scopes.get(parent_of(e)) or self.scopes[self.root_id]
            at = parent.asked[1] if parent.asked else parent.open_call or self._current(parent)
            agent = parent.asked[0] if parent.asked else parent.agent
            if isinstance(e, RunStarted):
                at, agent = at.add(describe(e).rich()), e.agent
            self.scopes[run_id] = _Scope(at, agent, nested=True)
        return self.scopes[run_id]

    @staticmethod
    def _current(scope: _Scope) -> Tree:
        return scope.steps[max(scope.steps)] if scope.steps else scope.node

    def add(self, e: Event) -> None:
        scope = self.scope(e)
        if isinstance(e, RunStarted | Token):
            return  # the root's start is the tree's header; a sub-run's, its node
        if isinstance(e, Resumed | RunFinished):
            scope.node.add(describe(e).rich())
            return
        parent = self._step(scope, e) if e.step and not scope.nested else scope.node
        if isinstance(e, Handoff):
            self._handoff(scope, parent, e)
            return
        if scope.asked is not None:
            parent = scope.asked[1]
        if isinstance(e, StepStarted):
            return  # it names its step's node
        if isinstance(e, ToolResult):
            scope.open_call = None
            parent = scope.calls.get(e.call_id, parent)
        node = parent.add(describe(e).rich())
        if isinstance(e, Error) and e.detail:  # a tool's traceback: where its own code failed
            node.add(f"[dim]{escape(printable(e.detail))}[/]")
        if isinstance(e, ToolCall):
            scope.calls[e.call_id] = scope.open_call = node

    def _step(self, scope: _Scope, e: Event) -> Tree:
        if e.step not in scope.steps:
            label = f"step {e.step}" + (f" · {scope.agent}" if self.team else "")
            if isinstance(e, StepStarted):  # a workflow step: its id, kind and agent or tool
                label = f"step {e.step} · {describe(e, limit=60).text}"
            scope.steps[e.step] = scope.node.add(f"[bold]{escape(label)}[/]")
        return scope.steps[e.step]

    @staticmethod
    def _handoff(scope: _Scope, parent: Tree, e: Handoff) -> None:
        line = describe(e)
        if scope.asked is not None and e.from_agent == scope.asked[0]:
            scope.asked = None  # the specialist answered
            parent.add(line.rich())
        elif line.title == "ask":
            scope.asked = (e.to_agent, parent.add(line.rich()))
        else:
            scope.agent = e.to_agent
            parent.add(line.rich())


def trace_tree(run: Mapping[str, Any], events: list[Event] | list[dict[str, Any]]) -> Tree:
    """The event tree of a stored run: steps, each with its model call and tool calls.

    ``events`` may be stored dicts: they are parsed once. In a team run each step names the agent that
    took it; a specialist's steps (agent-as-tool) hang under the ask that started them, and a sub-run's
    events (``parent_run_id``) under the tool call or step of its parent, so one tree shows who did what.
    """
    typed = parse_events(events, run["id"])
    status_style = STATUS_STYLES.get(run["status"], "magenta")
    root = Tree(
        f"[bold]{escape(run['id'])}[/] {escape(clip(run['agent']))} · {escape(clip(run['model']))} · "
        f"[{status_style}]{run['status']}[/] · {ms(run.get('duration_ms'))}"
        + (f" · {tokens}" if (tokens := token_count(run.get('prompt_tokens') or 0, run.get('completion_tokens') or 0,
                                                     run["status"], "tokens")) else "")
        + (f" · {usd(cost)}" if (cost := run_cost(typed, priced_only=True)) else "")  # a priced model used
    )
    root.add(f"[cyan]input[/] {escape(clip(run['input']))}")
    builder = _TreeBuilder(root, run["id"], run["agent"], team=any(isinstance(e, Handoff) for e in typed))
    for e in typed:
        builder.add(e)
    if run["status"] == "interrupted":
        root.add("[magenta]interrupted: the process stopped before the run finished[/]")
    return root
