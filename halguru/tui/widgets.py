"""The debugger's widgets: the live trace tree, the chat pane and the runs sidebar."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Markdown, Static, Tree
from textual.widgets.tree import TreeNode

from halguru.tui.format import clip, label

# Events that hang under their step's model call rather than at the top of the run.
_IN_STEP = {"model_result", "tool_call", "tool_result", "error", "handoff"}


class TraceTree(Tree[dict[str, Any]]):
    """One run as a tree: each model call holds what followed it; node data is the event dict."""

    DEFAULT_CSS = "TraceTree { height: 1fr; border: round $primary-darken-2; }"

    def __init__(self, **kwargs: Any):
        super().__init__("no run yet: type a message", **kwargs)
        self.show_root = True
        self.guide_depth = 2
        self._step_node: TreeNode[dict[str, Any]] | None = None
        self._calls: dict[str, TreeNode[dict[str, Any]]] = {}
        self.streamed = 0  # tokens of the current model call, shown in batches

    def begin(self, started: dict[str, Any]) -> None:
        self.clear()
        self.root.set_label(Text.from_markup(label(started)))
        self.root.data = started
        self.root.expand()
        self._step_node = None
        self._calls = {}
        self.streamed = 0

    def add(self, e: dict[str, Any]) -> TreeNode[dict[str, Any]]:
        """Add one event (not tokens) where it belongs; returns its node."""
        kind = e["type"]
        text = Text.from_markup(label(e))
        if kind == "run_started":
            self.begin(e)
            return self.root
        if kind == "model_call":
            self.streamed = 0
            self._step_node = self.root.add(text, data=e, expand=True)
            return self._step_node
        if kind == "tool_result" and e["call_id"] in self._calls:
            return self._calls[e["call_id"]].add_leaf(text, data=e)
        parent = self._step_node if kind in _IN_STEP and self._step_node is not None else self.root
        if kind == "tool_call":
            node = parent.add(text, data=e, expand=True)
            self._calls[e["call_id"]] = node
            return node
        if kind == "run_finished":
            started = self.root.data or {}
            self.root.set_label(Text.from_markup(f"{label(started)} · {label(e)}"))
        return parent.add_leaf(text, data=e)

    def load(self, events: list[dict[str, Any]]) -> None:
        """A whole stored run at once (2,000 events open in well under a second)."""
        for e in events:
            if e["type"] != "token":
                self.add(e)
        self.root.expand()

    def show_streaming(self) -> None:
        """Called on a timer while tokens arrive: one label update per batch, not per token."""
        if self._step_node is not None and self.streamed:
            base = label(self._step_node.data or {})
            self._step_node.set_label(Text.from_markup(f"{base} · [i]streaming {self.streamed} tok[/]"))

    def end_streaming(self) -> None:
        if self._step_node is not None:
            self._step_node.set_label(Text.from_markup(label(self._step_node.data or {})))


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


class RunsSidebar(Tree[dict[str, Any]]):
    """Stored conversations and their runs (the records of `halguru logs`); select a run to open it."""

    DEFAULT_CSS = "RunsSidebar { width: 32; border: round $primary-darken-2; }"

    def __init__(self, **kwargs: Any):
        super().__init__("stored runs", **kwargs)
        self.show_root = False

    def fill(self, conversations: list[tuple[dict[str, Any], list[dict[str, Any]]]]) -> None:
        self.clear()
        styles = {"ok": "green", "failed": "red", "cancelled": "yellow"}
        for conversation, runs in conversations:
            title = clip(conversation.get("title") or conversation["id"], 24)
            node = self.root.add(Text(title), data=None, expand=True)
            for r in runs:
                style = styles.get(r["status"], "magenta")
                node.add_leaf(Text.from_markup(f"[{style}]●[/] {escape(clip(r['input'], 22))}"), data=r)
        self.root.expand()
