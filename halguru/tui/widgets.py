"""The debugger's widgets: the live trace tree, the chat pane, the runs sidebar and the key bar."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.geometry import Size
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Static, TextArea
from textual.widgets.tree import TreeNode

from halguru.agents.describe import ASK_PREFIX, STEP_STYLES, WHERE, describe, detail, ms, parent_of
from halguru.agents.events import (
    Error,
    Event,
    Handoff,
    ModelCall,
    ModelResult,
    Resumed,
    RunFinished,
    RunStarted,
    StepFinished,
    StepStarted,
    Token,
    ToolCall,
    ToolResult,
)
from halguru.printable import printable
from halguru.tui.answer import AnswerView
from halguru.tui.lazytree import PENDING, LazyTree
from halguru.tui.screens import FindScreen

TREE_LIMIT = 60  # characters of free text (a tool result, an answer) in the tree; the inspector shows all
CHAT_LINES, CHAT_CHARS = 20, 2000  # of a long message of yours the chat shows; the inspector shows it whole
CHAT_KEEP = 60  # entries (your messages, answers, notes) the chat keeps; the store has them all

# Events that hang under their step's model call rather than at the top of their run.
_IN_STEP = (ModelResult, ToolCall, ToolResult, Error, Handoff)
# Events that belong to the run as a whole: they stay at its top, outside agent and step branches.
_RUN_LEVEL = (RunFinished, Resumed)


def label(e: Event) -> Text:
    """The tree label of one event."""
    return describe(e, limit=TREE_LIMIT).rich()


def agent_label(agent: str) -> Text:
    return Text.assemble(("agent ", "bold cyan"), (agent, "bold"))


@dataclass
class _Scope:
    """Where one run's events go: the root run, or a sub-run (``parent_run_id``) nested in it.

    A team run draws one branch per turn of a member (``branch``, a new one after each handoff); a workflow
    run draws one branch per step (``steps``, by the step number its events carry).
    """

    node: TreeNode[Event]
    agent: str = ""
    branch: TreeNode[Event] | None = None  # the current team member's branch
    handed_to: Handoff | None = None  # a handoff seen: the next model call opens the new member's branch
    step: TreeNode[Event] | None = None  # the current model call: what follows hangs under it
    calls: dict[str, TreeNode[Event]] = field(default_factory=dict)
    open_call: TreeNode[Event] | None = None  # a tool call without its result yet: a sub-run hangs there
    steps: dict[int, TreeNode[Event]] = field(default_factory=dict)  # workflow step number -> its branch
    step_ids: dict[str, TreeNode[Event]] = field(default_factory=dict)

    @property
    def home(self) -> TreeNode[Event]:
        """Where the run's own events go now: the current member's branch, else the run's node."""
        return self.branch or self.node

    def step_branch(self, e: Event) -> TreeNode[Event] | None:
        if isinstance(e, StepFinished):
            return self.step_ids.get(e.step_id)
        return self.steps.get(e.step) if e.step else None


class TraceTree(LazyTree[Event]):
    """One run as a tree: each model call holds what followed it; node data is the typed event.

    Workflow steps and team members get a branch each; sub-runs hang under the call or step that started them.
    Lines are never cut by the pane: the tree scrolls sideways (←/→) and the inspector shows every node whole.
    An event's label is drawn when its line is first shown (``LazyTree``): a 20,000-event run opens at once.
    """

    DEFAULT_CSS = "TraceTree { height: 1fr; border: round $primary-darken-2; overflow-x: auto; }"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("left", "scroll_left", "scroll left", show=False),
        Binding("right", "scroll_right", "scroll right", show=False),
        Binding("slash", "find", "find", show=False), Binding("n", "find_next", "find next", show=False),
    ]
    searched = ""  # the text last looked for: n finds it again

    def __init__(self, **kwargs: Any):
        self._root_id = ""
        self._scopes: dict[str, _Scope] = {}
        self._step_node: TreeNode[Event] | None = None  # the latest model call, where tokens are counted
        super().__init__("no run yet: type a message", **kwargs)
        self.show_root = True
        self.guide_depth = 2
        self.streamed = 0  # tokens of the current model call, shown in batches
        self._tool_errors: dict[tuple[str, str], Error] = {}  # (run, message) -> a failed tool's error event
        self._last_call: dict[str, ModelCall] = {}  # run -> its latest model call
        self._earlier_call: dict[int, ModelCall] = {}  # id of a model call -> the one before it in its run
        self._added: dict[int, str] = {}  # id of a model call -> what search looks in (searched_text)

    def draw(self, data: Event) -> Text:
        return label(data)

    def clear(self) -> Self:
        self._scopes, self._step_node, self.streamed, self._tool_errors = {}, None, 0, {}
        self._last_call, self._earlier_call, self._added = {}, {}, {}
        return super().clear()

    def inspect(self, e: Event) -> str:
        """Everything about ``e`` for the inspector; a failed tool's result with where the tool failed (its
        traceback is on the error event that follows it: the red result is the node one selects)."""
        shown = detail(e)
        if isinstance(e, ToolResult) and e.is_error:
            error = self._tool_errors.get((e.run_id, e.content.removeprefix("error: ")))
            if error is not None and error.detail:
                shown += f"\n\n{WHERE}\n{printable(error.detail)}"
        return shown

    def searched_text(self, e: Event) -> str:
        """What ``/`` and n look in: the inspector's text, but of a model call only the messages it adds to the
        run's previous call (each call repeats the whole conversation, and the answers and tool results it
        repeats are their own events): one phrase said once had a hit on every later model call."""
        earlier = self._earlier_call.get(id(e)) if isinstance(e, ModelCall) else None
        if not isinstance(e, ModelCall) or earlier is None:
            return self.inspect(e)
        if id(e) not in self._added:
            self._added[id(e)] = detail(e.model_copy(update={"messages": _added(earlier, e)}))
        return self._added[id(e)]

    def begin(self, started: RunStarted) -> None:
        self.clear()
        self.root.set_label(label(started))
        self.root.data = started
        self.root.expand()
        self._root_id = started.run_id
        self._scopes = {started.run_id: _Scope(self.root, agent=started.agent)}
        self._step_node = None
        self.streamed = 0

    def failed(self, message: str) -> None:
        """A run that failed before its first event: say so instead of showing the previous run."""
        self.clear()
        self.root.data = None
        self.root.set_label(Text.assemble(("run failed ", "bold red"), message))

    def _scope(self, e: Event) -> _Scope:
        run_id = e.run_id or self._root_id
        if run_id not in self._scopes:
            parent = self._scopes.get(parent_of(e) or self._root_id) or self._scopes.setdefault(
                self._root_id, _Scope(self.root))
            at = parent.step_branch(e) or parent.open_call or parent.step or parent.home
            agent = e.agent if isinstance(e, RunStarted) else ""
            if isinstance(e, RunStarted):
                at = at.add(PENDING, data=e, expand=True)
            elif isinstance(at.data, ToolCall) and at.data.name.startswith("ask_"):  # a specialist's own branch
                agent = at.data.name.removeprefix("ask_")
                at = at.add(agent_label(agent), data=at.data, expand=True)
            self._scopes[run_id] = _Scope(at, agent=agent)
        return self._scopes[run_id]

    def add(self, e: Event) -> TreeNode[Event]:
        """Add one event (not tokens) where it belongs; returns its node."""
        if isinstance(e, RunStarted) and (not parent_of(e) or not self._scopes):
            self.begin(e)
            return self.root
        scope = self._scope(e)
        if isinstance(e, RunStarted):
            return scope.node
        if isinstance(e, Error) and e.kind == "tool":
            self._tool_errors[(e.run_id, e.message)] = e
        if isinstance(e, ModelResult | RunFinished):
            self.end_streaming()
        if isinstance(e, StepStarted):
            branch = scope.home.add(PENDING, data=e, expand=True)
            if e.step:
                scope.steps[e.step] = branch
            scope.step_ids[e.step_id] = branch
            return branch
        step_branch = scope.step_branch(e)
        if isinstance(e, ModelCall):
            self.streamed = 0
            if e.run_id in self._last_call:
                self._earlier_call[id(e)] = self._last_call[e.run_id]
            self._last_call[e.run_id] = e
            if step_branch is None and (scope.handed_to is not None
                                        or (scope.branch is None and _offers_handoffs(e))):
                handed, scope.handed_to = scope.handed_to, None
                scope.agent = handed.to_agent if handed is not None else scope.agent
                scope.branch = scope.node.add(agent_label(scope.agent or "?"), data=handed or scope.node.data,
                                              expand=True)
            scope.step = self._step_node = (step_branch or scope.home).add(PENDING, data=e, expand=True)
            return scope.step
        if isinstance(e, ToolResult) and e.call_id in scope.calls:
            scope.open_call = None
            return scope.calls[e.call_id].add_leaf(PENDING, data=e)
        if isinstance(e, Handoff) and not e.reason.startswith(ASK_PREFIX):
            scope.handed_to = e
        if isinstance(e, _RUN_LEVEL):
            parent = scope.node
        elif step_branch is not None:
            parent = step_branch
        else:
            parent = scope.step if isinstance(e, _IN_STEP) and scope.step is not None else scope.home
        if isinstance(e, ToolCall):
            node = parent.add(PENDING, data=e, expand=True)
            scope.calls[e.call_id] = scope.open_call = node
            return node
        if isinstance(e, StepFinished) and step_branch is not None and isinstance(step_branch.data, StepStarted):
            step_branch.set_label(Text.assemble(label(step_branch.data), " → ",
                                                (e.status, STEP_STYLES.get(e.status, "magenta")),
                                                f" {ms(e.duration_ms)}"))
        started = scope.node.data
        if isinstance(e, RunFinished) and isinstance(started, RunStarted) and started.run_id == e.run_id:
            scope.node.set_label(Text.assemble(label(started), " · ", label(e)))
        return parent.add_leaf(PENDING, data=e)

    def next_failure(self) -> bool:
        """Move the cursor to the next node, after it, that says something failed (an error, a tool's error
        result, a failed step or run), around to the top; False when there is none."""
        return self._select_next(_failed)

    def action_find(self) -> None:
        self.app.push_screen(FindScreen(self.searched), self.find)

    def action_find_next(self) -> None:
        if self.searched:
            self.find(self.searched)
        else:
            self.action_find()

    def find(self, text: str | None) -> None:
        """Select the next event whose details (what the inspector shows; of a model call, the messages it adds)
        hold ``text``, in any case: in a long run, the tool call that had some argument, the answer that said
        something."""
        if not text:
            return
        self.searched, wanted = text, text.casefold()
        self.focus()
        if not self._select_next(lambda e: e is not None and wanted in self.searched_text(e).casefold()):
            self.app.notify(f"no event of this trace holds {printable(text)!r}", severity="warning")

    def _select_next(self, wanted: Callable[[Event | None], bool]) -> bool:
        """Move the cursor to the next node after it whose event is ``wanted``, around to the top; False when
        there is none."""
        nodes: list[TreeNode[Event]] = []

        def walk(node: TreeNode[Event]) -> None:
            nodes.append(node)
            for child in node.children:
                walk(child)

        walk(self.root)
        at = nodes.index(self.cursor_node) if self.cursor_node in nodes else -1
        for node in nodes[at + 1:] + nodes[:at + 1]:
            if wanted(node.data):
                parent = node.parent
                while parent is not None:  # a collapsed branch opens to show it
                    parent.expand()
                    parent = parent.parent
                self.move_cursor(node)
                self.scroll_to_node(node)
                return True
        return False

    def load(self, events: list[Event]) -> None:
        """A whole stored run at once (2,000 events open in well under a second)."""
        with self.adding():
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
        """The call finished (or the run ended without its result): its label says what it did, not 'streaming'."""
        node = self._step_node
        if node is not None and node.data is not None and self.streamed:  # else its label never said so
            node.set_label(label(node.data))
        self._step_node, self.streamed = None, 0


def _added(earlier: ModelCall, call: ModelCall) -> list[dict[str, Any]]:
    """The messages ``call`` sends that ``earlier`` did not, less the answers and tool results (the run's own
    events show those)."""
    sent = Counter(_key(m) for m in earlier.messages)
    added = []
    for m in call.messages:
        if sent[_key(m)] > 0:
            sent[_key(m)] -= 1
        elif m.get("role") not in ("assistant", "tool"):
            added.append(m)
    return added


def _key(message: dict[str, Any]) -> str:
    """A message as a comparable string (its content, role, name and tool calls)."""
    return json.dumps(message, sort_keys=True, default=str)


def _failed(e: Event | None) -> bool:
    return (isinstance(e, Error) or (isinstance(e, ToolResult) and e.is_error)
            or (isinstance(e, StepFinished | RunFinished) and e.status == "failed"))


def _offers_handoffs(call: ModelCall) -> bool:
    return any(name.startswith("handoff_to_") for name in call.tools)


class MessageBox(TextArea):
    """The message box. Enter sends; a pasted block keeps all its lines and is one message (as in `halguru
    chat`): a one-line input kept only a paste's first line and dropped the rest unsaid. It grows with what it
    holds, up to a few lines. ↑ on its first line brings back your previous message, ↓ on its last the next
    one, then what you were typing (as a shell's history)."""

    DEFAULT_CSS = """
    MessageBox { height: auto; max-height: 8; }
    """

    @dataclass
    class Submitted(Message):
        box: MessageBox
        value: str

    def __init__(self, *, placeholder: str = "", id: str | None = None, history: Iterable[str] = ()) -> None:
        super().__init__(id=id, soft_wrap=True, tab_behavior="focus", show_line_numbers=False,
                         placeholder=placeholder, highlight_cursor_line=False)
        self.sent = list(history)  # your messages, oldest first (TextArea's own `history` is its undo)
        self._recalled: int | None = None  # the history entry shown, while ↑/↓ walk it
        self._draft = ""  # what was typed before ↑

    def remember(self, text: str) -> None:
        """A message sent: the newest of the history (once, when sent twice in a row)."""
        if not self.sent or self.sent[-1] != text:
            self.sent.append(text)
        self._recalled = None

    @property
    def value(self) -> str:
        return self.text

    @value.setter
    def value(self, text: str) -> None:
        self.text = text
        self.move_cursor(self.document.end)

    async def _on_key(self, event: events.Key) -> None:
        if event.key == "enter":  # typed Enter sends; the line breaks of a paste arrive as one Paste event
            event.stop()
            event.prevent_default()
            self.post_message(self.Submitted(self, self.text))
            return
        row, last_row = self.cursor_location[0], self.document.line_count - 1
        if (event.key == "up" and row == 0 and self.sent) or (
                event.key == "down" and row == last_row and self._recalled is not None):
            event.stop()
            event.prevent_default()
            self._recall(-1 if event.key == "up" else 1)
            return
        await super()._on_key(event)

    def _recall(self, step: int) -> None:
        """The previous (-1) or next (+1) message; past the newest, the draft. The cursor goes where the next
        press of the same key walks on: the first line going back, the last going forward."""
        if self._recalled is None:
            self._draft, self._recalled = self.text, len(self.sent)
        self._recalled = max(0, self._recalled + step)
        if self._recalled >= len(self.sent):
            self._recalled = None
        self.text = self._draft if self._recalled is None else self.sent[self._recalled]
        self.move_cursor((0, 0) if step < 0 else self.document.end)


class ChatPane(VerticalScroll):
    """The conversation: user turns, streamed Markdown answers, and notices (approvals, pauses, edits, errors)."""

    DEFAULT_CSS = """
    ChatPane { height: 1fr; border: round $primary-darken-2; }
    ChatPane .user { color: $text; background: $boost; padding: 0 1; margin: 1 0 0 0; }
    ChatPane .note { color: $warning; padding: 0 1; }
    """

    def add_user(self, text: str) -> None:
        self.mount(Static(your_message(text), classes="user"))
        self.scroll_end(animate=False)

    def edit_last_user(self, text: str) -> None:
        """The message as the model will get it, after an edit at a breakpoint."""
        users = list(self.query(".user").results(Static))
        if users:
            users[-1].update(your_message(text, ("  (edited at a breakpoint)", "italic dim")))

    async def add_answer(self) -> AnswerView:
        widget = AnswerView()
        await self.mount(widget)
        self.scroll_end(animate=False)
        return widget

    def add_note(self, text: str | Text) -> None:
        self.mount(Static(Text(printable(text)) if isinstance(text, str) else text, classes="note"))
        self.scroll_end(animate=False)

    PRINTED_LINES = 20  # of the lines printed between two updates, the chat shows the first and last ten

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.printed: list[str] = []  # what the app printed (a tool's print(), notices on stderr) not yet shown

    def show_printed(self) -> None:
        """The lines printed since the last call as one note (a flood: its first and last lines)."""
        text = "".join(self.printed)
        complete, _, rest = text.rpartition("\n")
        self.printed = [rest] if rest else []
        if not complete.strip():
            return
        lines = complete.splitlines()
        if len(lines) > self.PRINTED_LINES:
            half = self.PRINTED_LINES // 2
            lines = [*lines[:half], f"… {len(lines) - self.PRINTED_LINES:,} more lines …", *lines[-half:]]
        self.add_note(Text(printable("\n".join(lines)), style="dim"))

    left_out = 0  # entries trimmed from the top

    def trim(self, conversation_id: str | None) -> None:
        """Keep the last ``CHAT_KEEP`` entries (called between runs) and say at the top where the rest is: each
        answer was a tree of Markdown widgets, and at 150 turns (1,800 widgets) each turn took seconds to lay
        out."""
        entries = [c for c in self.children if c.id != "earlier"]
        extra = len(entries) - CHAT_KEEP
        if extra <= 0:
            return
        for entry in entries[:extra]:
            entry.remove()
        self.left_out += extra
        where = f": `halguru logs conversation {conversation_id}` prints them" if conversation_id else ""
        text = Text(f"… {self.left_out:,} earlier entries are not shown{where}", style="italic")
        shown = self.query("#earlier").results(Static)
        earlier = next(shown, None)
        if earlier is None:
            self.mount(Static(text, id="earlier", classes="note"), before=0)
        else:
            earlier.update(text)

    def clear(self) -> None:
        self.remove_children()
        self.left_out = 0


class AnswerStream:
    """A live run's answer drawn into the chat as Markdown: tokens batched (one update every ``every``
    seconds, not one per token), and a new answer after each step that called tools."""

    def __init__(self, chat: ChatPane, every: float):
        self.chat, self.every = chat, every
        self.pending: list[str] = []
        self.flushed = time.monotonic()
        self._view: AnswerView | None = None

    async def add(self, text: str) -> None:
        self.pending.append(text)
        if time.monotonic() - self.flushed >= self.every:
            await self.flush()

    async def flush(self) -> None:
        if self.pending:
            text, self.pending = "".join(self.pending), []  # taken first: a cancel in write() loses nothing
            if self._view is None:
                self._view = await self.chat.add_answer()
            await self._view.append(text)
        self.flushed = time.monotonic()

    async def end(self) -> None:
        """Draw what is left and end this answer (the next text starts a new one)."""
        await self.flush()
        view, self._view = self._view, None
        if view is not None:
            await view.append("")  # drawn whole, should a cancel have cut a flush short


def your_message(text: str, *after: tuple[str, str]) -> Text:
    """Your message as the chat shows it: its control characters visible (a bidi override reversed what it
    seemed to say), and a long one (a pasted file) cut to its first lines with its full length said. Drawn
    whole, a 1 MB paste was wrapped again on every layout of the chat: seconds each."""
    shown = printable(text)
    cut = "\n".join(shown.splitlines()[:CHAT_LINES])[:CHAT_CHARS]
    if len(cut) == len(shown):
        return Text.assemble(f"you: {shown}", *after)
    more = (f"\n… {len(text):,} characters in all, {text.count(chr(10)) + 1:,} lines (whole in the inspector: "
            "select the run's model_call)")
    return Text.assemble(f"you: {cut}", (more, "italic dim"), *after)


@dataclass(frozen=True)
class Key:
    key: str  # as shown: F1, ^O
    description: str
    action: str


class KeyBar(Widget):
    """Every key of the app, wrapped between keys (never cut, never scrolled away); keys that do nothing
    now are dimmed. On a short terminal it keeps to a fifth of the height (at 40x12 it took half): the keys
    that do something now, in order, help first (it lists them all)."""

    DEFAULT_CSS = "KeyBar { height: auto; background: $panel; padding: 0 1; }"

    def __init__(self, keys: Iterable[Key], available: Callable[[str], bool],
                 switched_on: Callable[[str], bool] = lambda action: False, **kwargs: Any):
        super().__init__(**kwargs)
        self.keys = list(keys)
        self.available = available
        self.switched_on = switched_on  # a toggle that is on now (a breakpoint) shows so

    def refresh_keys(self) -> None:
        self.refresh(layout=True)

    def lines(self, width: int) -> list[Text]:
        most = max(1, self.app.size.height // 5)
        lines = self._wrapped(self.keys, width)
        if len(lines) > most:
            lines = self._wrapped([k for k in self.keys if self.available(k.action)], width)[:most]
        return lines

    def _wrapped(self, keys: list[Key], width: int) -> list[Text]:
        lines: list[Text] = [Text()]
        for k in keys:
            on = self.available(k.action)
            part = Text.assemble((k.key, "bold orange1" if on else "dim"), " ", (k.description, "" if on else "dim"))
            if self.switched_on(k.action):
                part.append(" ●", "bold green")
            if lines[-1].cell_len and lines[-1].cell_len + 2 + part.cell_len > max(width, 1):
                lines.append(Text())
            if lines[-1].cell_len:
                lines[-1].append("  ")
            lines[-1].append_text(part)
        return lines

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return len(self.lines(width))

    def render(self) -> Text:
        return Text("\n").join(self.lines(self.content_region.width or self.size.width))
