"""The stored runs sidebar: conversations and runs of one agent (or all), without `halguru test`'s runs unless
asked for, each title whole on hover (tooltip) and when highlighted (the line under the list)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.markup import escape
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Checkbox, Select, Static, Tree
from textual.widgets.tree import TreeNode

from halguru.agents.describe import STATUS_STYLES, clip
from halguru.printable import printable
from halguru.store.base import TraceStore

RunRow = Mapping[str, Any]


class RunsSidebar(Tree[RunRow]):
    """Stored conversations and their runs (the records of `halguru logs`); select a run to open it.

    The highlighted or hovered line shows in full (tooltip, and the line below the tree).
    """

    DEFAULT_CSS = "RunsSidebar { height: 1fr; }"

    def __init__(self, **kwargs: Any):
        super().__init__("stored runs", **kwargs)
        self.show_root = False
        self.titles: dict[int, str] = {}  # node id -> its full title

    def fill(self, conversations: Sequence[tuple[Mapping[str, Any], Sequence[RunRow]]]) -> None:
        self.clear()
        self.titles = {}
        for conversation, runs in conversations:
            full = conversation.get("title") or conversation["id"]
            node = self.root.add(Text(clip(full, 24)), data=None, expand=True)
            self.titles[node.id] = printable(f"{full} · {conversation.get('agent', '')}")  # outside text, inert
            for r in runs:
                style = STATUS_STYLES.get(r["status"], "magenta")
                leaf = node.add_leaf(Text.from_markup(f"[{style}]●[/] {escape(clip(r['input'], 22))}"), data=r)
                self.titles[leaf.id] = printable(f"{r['input']} · {r['status']} · {r['agent']}")
        self.root.expand()

    def full_title(self, node: TreeNode[RunRow] | None) -> str:
        return "" if node is None else self.titles.get(node.id, "")

    def watch_hover_line(self, previous: int, value: int) -> None:
        super().watch_hover_line(previous, value)
        node = self.get_node_at_line(value) if value >= 0 else None
        self.tooltip = self.full_title(node) or None



class RunsPanel(Vertical):
    """The sidebar: an agent filter (default: the agent being debugged), "show test runs", the runs, the full
    title of the highlighted line. Selecting a run posts the tree's ``NodeSelected`` (its data is the run)."""

    DEFAULT_CSS = """
    RunsPanel { width: 34; max-width: 45%; border: round $primary-darken-2; }
    RunsPanel Checkbox { border: none; padding: 0; }
    RunsPanel #runtitle { height: auto; max-height: 4; color: $text-muted; padding: 0 1; }
    """

    def __init__(self, store: TraceStore, agent: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.store = store
        self.agent = agent  # "" shows every agent's
        self.agents: set[str] = set()  # the filter's choices

    def compose(self) -> ComposeResult:
        self.agents = ({c["agent"] for c in self.store.list_conversations(limit=200)} | {self.agent}) - {""}
        yield Select(self._choices(), value=self.agent, allow_blank=False, id="agent-filter")
        yield Checkbox("show test runs", False, id="show-tests")
        yield RunsSidebar(id="runs")
        yield Static("", id="runtitle")

    def _choices(self) -> list[tuple[str, str]]:
        return [("all agents", ""), *((f"agent {a}", a) for a in sorted(self.agents))]

    def refresh_runs(self) -> None:
        show_tests = self.query_one("#show-tests", Checkbox).value
        shown = []
        for c in self.store.list_conversations(limit=30, agent=self.agent or None):
            runs = self.store.list_runs(limit=20, conversation_id=c["id"], test_runs=show_tests)
            if runs:
                shown.append((c, runs))
        self.query_one(RunsSidebar).fill(shown)

    def follow(self, old: str, new: str) -> None:
        """The debugged agent was renamed: a filter on its old name shows the new name's runs (it listed none of
        the runs made since); "all agents" stays."""
        if self.agent != old:
            return
        self.agents.add(new)
        select = self.query_one("#agent-filter", Select)
        select.set_options(self._choices())
        select.value = self.agent = new
        self.refresh_runs()

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        self.agent = str(event.value) if event.value is not Select.BLANK else ""
        self.refresh_runs()

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        event.stop()
        self.refresh_runs()

    def on_tree_node_highlighted(self, event: Tree.NodeHighlighted[Any]) -> None:
        event.stop()
        self.query_one("#runtitle", Static).update(Text(self.query_one(RunsSidebar).full_title(event.node)))
