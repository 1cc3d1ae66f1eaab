"""The debugger's widgets: the live trace tree, the chat pane and the runs sidebar."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

from rich.markup import escape
from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Markdown, Static, Tree
from textual.widgets.tree import TreeNode

from halguru.agents.describe import clip, describe, parent_of
from halguru.agents.events import (
    Error,
    Event,
    Handoff,
    ModelCall,
    ModelResult,
    RunFinished,
    RunStarted,
    Token,
    ToolCall,
    ToolResult,
)

TREE_LIMIT = 60  # characters of free text (a tool result, an answer) in the tree; the inspector shows all

# Events that hang under their step's model call rather than at the top of their run.
_IN_STEP = (ModelResult, ToolCall, ToolResult, Error, Handoff)


def label(e: Event) -> Text:
    """The tree label of one event."""
    return Text.from_markup(describe(e, limit=TREE_LIMIT).markup())


@dataclass
class _Scope:
    """Where one run's events go: the root run, or a sub-run (``parent_run_id``) nested in it."""

    node: TreeNode[Event]
    step: TreeNode[Event] | None = None  # the current model call: what follows hangs under it
    calls: dict[str, TreeNode[Event]] = field(default_factory=dict)
    open_call: TreeNode[Event] | None = None  # a tool call without its result yet: a sub-run hangs there


class TraceTree(Tree[Event]):
    """One run as a tree: each model call holds what followed it; node data is the typed event."""

    DEFAULT_CSS = "TraceTree { height: 1fr; border: round $primary-darken-2; }"

    def __init__(self, **kwargs: Any):
        self._root_id = ""
        self._scopes: dict[str, _Scope] = {}
        self._step_node: TreeNode[Event] | None = None  # the latest model call, where tokens are counted
        super().__init__("no run yet: type a message", **kwargs)
        self.show_root = True
        self.guide_depth = 2
        self.streamed = 0  # tokens of the current model call, shown in batches

    def clear(self) -> Self:
        self._scopes, self._step_node = {}, None
        return super().clear()

    def begin(self, started: RunStarted) -> None:
        self.clear()
        self.root.set_label(label(started))
        self.root.data = started
        self.root.expand()
        self._root_id = started.run_id
        self._scopes = {started.run_id: _Scope(self.root)}
        self._step_node = None
        self.streamed = 0

    def _scope(self, e: Event) -> _Scope:
        run_id = e.run_id or self._root_id
        if run_id not in self._scopes:
            parent = self._scopes.get(parent_of(e) or self._root_id) or self._scopes.setdefault(
                self._root_id, _Scope(self.root))
            at = parent.open_call or parent.step or parent.node
            self._scopes[run_id] = _Scope(at.add(label(e), data=e, expand=True) if isinstance(e, RunStarted) else at)
        return self._scopes[run_id]

    def add(self, e: Event) -> TreeNode[Event]:
        """Add one event (not tokens) where it belongs; returns its node."""
        if isinstance(e, RunStarted) and (not parent_of(e) or not self._scopes):
            self.begin(e)
            return self.root
        scope = self._scope(e)
        if isinstance(e, RunStarted):
            return scope.node
        text = label(e)
        if isinstance(e, ModelCall):
            self.streamed = 0
            scope.step = self._step_node = scope.node.add(text, data=e, expand=True)
            return scope.step
        if isinstance(e, ToolResult) and e.call_id in scope.calls:
            scope.open_call = None
            return scope.calls[e.call_id].add_leaf(text, data=e)
        parent = scope.step if isinstance(e, _IN_STEP) and scope.step is not None else scope.node
        if isinstance(e, ToolCall):
            node = parent.add(text, data=e, expand=True)
            scope.calls[e.call_id] = scope.open_call = node
            return node
        started = scope.node.data
        if isinstance(e, RunFinished) and isinstance(started, RunStarted) and started.run_id == e.run_id:
            scope.node.set_label(Text.assemble(label(started), " · ", text))
        return parent.add_leaf(text, data=e)

    def load(self, events: list[Event]) -> None:
        """A whole stored run at once (2,000 events open in well under a second)."""
        for e in events:
            if not isinstance(e, Token):
                self.add(e)
        self.root.expand()

    def show_streaming(self) -> None:
        """Called on a timer while tokens arrive: one label update per batch, not per token."""
        node = self._step_node
        if node is not None and node.data is not None and self.streamed:
            node.set_label(Text.assemble(label(node.data), Text.from_markup(f" · [i]streaming {self.streamed} tok[/]")))

    def end_streaming(self) -> None:
        node = self._step_node
        if node is not None and node.data is not None:
            node.set_label(label(node.data))


class ChatPane(VerticalScroll):
    """The conversation: user turns and streamed Markdown answers."""

    DEFAULT_CSS = """
    ChatPane { height: 1fr; border: round $primary-darken-2; }
    ChatPane .user { color: $text; background: $boost; padding: 0 1; margin: 1 0 0 0; }
    ChatPane .note { color: $warning; padding: 0 1; }
    ChatPane Markdown { margin: 0; padding: 0 1; }
    """

    def add_user(self, text: str) -> None:
        self.mount(Static(Text(f"you: {text}"), classes="user"))
        self.scroll_end(animate=False)

    def add_answer(self) -> Markdown:
        widget = Markdown("")
        self.mount(widget)
        self.scroll_end(animate=False)
        return widget

    def add_note(self, text: str) -> None:
        self.mount(Static(Text(text), classes="note"))
        self.scroll_end(animate=False)


class RunsSidebar(Tree[Mapping[str, Any]]):
    """Stored conversations and their runs (the records of `halguru logs`); select a run to open it."""

    DEFAULT_CSS = "RunsSidebar { width: 32; border: round $primary-darken-2; }"

    def __init__(self, **kwargs: Any):
        super().__init__("stored runs", **kwargs)
        self.show_root = False

    def fill(self, conversations: Sequence[tuple[Mapping[str, Any], Sequence[Mapping[str, Any]]]]) -> None:
        self.clear()
        styles = {"ok": "green", "failed": "red", "cancelled": "yellow"}
        for conversation, runs in conversations:
            title = clip(conversation.get("title") or conversation["id"], 24)
            node = self.root.add(Text(title), data=None, expand=True)
            for r in runs:
                style = styles.get(r["status"], "magenta")
                node.add_leaf(Text.from_markup(f"[{style}]●[/] {escape(clip(r['input'], 22))}"), data=r)
        self.root.expand()
