"""The `halguru dev` app: chat, live trace tree, inspector, breakpoints, replay, fork and hot reload."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from contextlib import aclosing, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import events
from textual.actions import SkipAction
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.notifications import SeverityLevel
from textual.screen import ModalScreen, Screen
from textual.widgets import Static, TextArea, Tree
from textual.worker import Worker

from halguru.agents.describe import note, parent_of
from halguru.agents.events import (
    ApprovalApproved,
    ApprovalRejected,
    Error,
    Event,
    ModelResult,
    Resumed,
    RunFinished,
    RunStarted,
    Token,
)
from halguru.agents.hooks import BreakpointHooks, Pause
from halguru.agents.loader import Agent, load_agent
from halguru.agents.replay import StoredRun, load_run
from halguru.errors import HalguruError
from halguru.models.base import Model
from halguru.printable import printable
from halguru.store import open_store
from halguru.tui.exporting import ExportActions
from halguru.tui.screens import HelpScreen, SettingsScreen
from halguru.tui.sidebar import RunsPanel
from halguru.tui.widgets import AnswerStream, ChatPane, Key, KeyBar, MessageBox, TraceTree

if TYPE_CHECKING:
    from halguru.rag.indexer import IngestScope

STREAM_REFRESH = 1 / 15  # seconds between batched token updates of the tree
QUIT_GRACE = 5.0  # seconds Ctrl+Q waits for a cancelled run to be stored before the app exits
INGEST_STOP_WAIT = 120.0  # seconds a stopped run's ingest is waited for, to say how far it got
NOTICES = (ApprovalApproved, ApprovalRejected, Resumed)  # shown in the chat as they happen (a pending approval
# is said once the run has ended, with its keys)
INSPECTOR_HINT = "Select a node of the trace to inspect it."
HISTORY = 100  # stored runs whose messages ↑ in the message box brings back
SHORT = 16  # lines of a terminal under which the panes have no borders

# Every key of the app: bound with priority, so they work whichever widget has the focus (the message box
# included: none of them is a key an input uses), and all listed in the key bar.
KEYS = [
    Key("F1", "help", "help"), Key("F2", "brk model", "toggle_model_break"),
    Key("F3", "brk tool", "toggle_tool_break"), Key("F4", "edit", "edit"), Key("F5", "continue", "continue"),
    Key("F6", "step", "step"), Key("F7", "replay", "replay"), Key("F8", "fork", "fork"),
    Key("F9", "approve", "approve"), Key("F10", "reject", "reject"), Key("Esc", "stop", "stop"),
    Key("^O", "model", "settings"),
    Key("^S", "export", "export"), Key("^B", "runs", "toggle_sidebar"), Key("^L", "zoom trace", "zoom"),
    Key("^N", "new", "new_conversation"), Key("^T", "theme", "toggle_theme"),
    Key("^P", "commands", "command_palette"), Key("^Q", "quit", "quit"),
]


def _textual_key(key: str) -> str:
    return "escape" if key == "Esc" else key.lower() if key.startswith("F") else f"ctrl+{key[1:].lower()}"


class DevApp(ExportActions):
    """Keyboard-first debugger for one agent project (or one stored run without a project)."""

    TITLE = "halguru dev"
    CSS = """
    #body { height: 1fr; }
    /* room kept beside the sidebar on a narrow terminal: a message box 0 cells wide crashed Textual */
    #chat { width: 2fr; min-width: 14; }
    #debug { width: 3fr; min-width: 8; }
    #trace { height: 2fr; }
    #inspector { height: 1fr; border: round $primary-darken-2; }
    #pausebar { display: none; background: $warning; color: $text; padding: 0 1; }
    #pausebar.paused { display: block; }
    #status { height: 1; background: $boost; padding: 0 1; }
    #status.failed { height: auto; max-height: 3; }  /* a reload error is read whole, not cut at the edge */
    .zoomed #chat, .zoomed #sidebar, .nochat #chat { display: none; }
    /* a short terminal: the panes' lines go to what they show, not to their borders (at 40x10 the trace
       showed one line) */
    .short #trace, .short #inspector, .short #messages, .short #sidebar { border: none; }
    """
    # Esc is not a priority: a widget's own Esc (the sidebar's agent list) comes first, as a dialog's does.
    BINDINGS: ClassVar[list[BindingType]] = [
        *[Binding(_textual_key(k.key), k.action, k.description, show=False, priority=k.key != "Esc")
          for k in KEYS],
        # Ctrl+C stops what streams (as in `halguru chat`); with nothing to stop, the message box copies a
        # selection, or the app says how to quit
        Binding("ctrl+c", "stop", "stop", show=False, priority=True), Binding("ctrl+c", "help_quit", show=False),
        Binding("question_mark", "help", "help", show=False),  # outside the message box, where ? is typed
    ]

    def __init__(self, path: str | Path | None = None, *, run_id: str | None = None, model: str | Model | None = None,
                 watch: bool = True, export_dir: Path | None = None):
        super().__init__()
        self.store = open_store()
        self.path = Path(path) if path is not None else None
        self.agent: Agent | None = load_agent(self.path) if self.path is not None else None
        self.stored: StoredRun | None = load_run(self.store, run_id) if run_id else None
        self.model_ref: str | Model | None = model
        self._models: dict[str, Model] = {}
        self.temperature: float | None = None
        self.max_tokens: int | None = None
        self.conversation_id: str | None = None
        self.hooks = BreakpointHooks(self._on_pause)
        self.pause: Pause | None = None
        self.watching = watch and self.agent is not None  # hot reload (`watch` is Textual's)
        self.export_dir = export_dir or Path.cwd()
        self.reload_error: str | None = None
        self.reloads = 0
        self.run_worker_: Worker[None] | None = None
        self.last_events: list[Event] = []
        self.last_answer = ""
        self.awaiting: dict[str, Any] | None = None  # the last run's tool call waiting for approval
        self.resumable = False  # the open stored run can be resumed from its checkpoint (F5)
        self._quit_hint_at = -self.NOTIFICATION_TIMEOUT  # when Ctrl+C last said how to quit
        started = self.stored.events[0] if self.stored is not None else None
        self.debugged = (self.agent.name if self.agent is not None
                         else started.agent if isinstance(started, RunStarted) else "")  # the sidebar's filter

    # -- layout --------------------------------------------------------------
    def compose(self) -> ComposeResult:
        with Horizontal(id="body"):
            yield RunsPanel(self.store, self.debugged, id="sidebar")
            with Vertical(id="chat"):
                yield ChatPane(id="messages")
                yield Static("", id="pausebar")
                yield MessageBox(placeholder="Message the agent", id="prompt", history=self.past_messages())
            with Vertical(id="debug"):
                yield TraceTree(id="trace")
                yield TextArea(INSPECTOR_HINT, read_only=True, id="inspector")
        yield Static("", id="status")
        yield KeyBar(KEYS, self.available, self.switched_on, id="keys")

    def past_messages(self) -> list[str]:
        """What you sent this agent before, oldest first: the message box's ↑ history starts with it."""
        if self.agent is None:
            return []
        runs = self.store.list_runs(limit=HISTORY, agent=self.agent.name, test_runs=False)
        return list(dict.fromkeys(r["input"] for r in runs if r["input"]))[::-1]  # each once, where last sent

    def available(self, action: str) -> bool:
        """Whether ``action`` does something now (the key bar dims the others)."""
        needs = {"edit": self.pause is not None, "continue": self.pause is not None or self.resumable,
                 "step": self.pause is not None, "stop": self._busy() is not None,
                 "approve": self.awaiting is not None, "reject": self.awaiting is not None,
                 "replay": self.stored is not None, "export": self.stored is not None,
                 "fork": self.stored is not None and self.agent is not None}
        return needs.get(action, True)

    def switched_on(self, action: str) -> bool:
        return {"toggle_model_break": self.hooks.break_models, "toggle_tool_break": self.hooks.break_tools,
                "zoom": self.screen.has_class("zoomed")}.get(action, False)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """A dialog on top keeps its keys: the app's keys wait until it closes (Ctrl+Q still quits)."""
        return not (isinstance(self.screen, ModalScreen) and action in {k.action for k in KEYS} - {"quit"})

    def on_resize(self, event: events.Resize) -> None:
        self.screen.set_class(event.size.height < SHORT, "short")

    def on_mount(self) -> None:
        self.query_one("#sidebar").display = self.size.width >= 120
        self.screen.set_class(self.size.height < SHORT, "short")
        self.refresh_sidebar()
        self.refresh_status()
        self.set_interval(STREAM_REFRESH, self.query_one(TraceTree).show_streaming)
        # What is printed while the app runs (a tool's print(), halguru's notices on stderr) goes to the chat:
        # Textual swallows it otherwise.
        self.begin_capture_print(self)
        self.set_interval(STREAM_REFRESH, self.query_one(ChatPane).show_printed)
        if self.agent is None:  # a stored run without its project: nothing to chat with, the trace gets the room
            self.query_one("#prompt", MessageBox).disabled = True
            self.screen.add_class("nochat")
        if self.stored is not None:
            self.open_stored(self.stored)
        else:
            self.query_one("#prompt", MessageBox).focus()
        if self.watching:
            self.watch_project()

    @property
    def model_name(self) -> str:
        if self.model_ref is None and self.agent is not None and self.agent.driver is not None:
            return "each agent's own"
        ref = self.model_ref if self.model_ref is not None else (self.agent.spec.model if self.agent else "-")
        return ref if isinstance(ref, str) else ref.name

    def refresh_status(self) -> None:
        brk = [n for n, on in (("model", self.hooks.break_models), ("tool", self.hooks.break_tools)) if on]
        parts = [self.agent.name if self.agent else "no agent", f"model {self.model_name}",
                 *([f"run {self.stored.id}"] if self.stored is not None else []),
                 f"temp {self.temperature if self.temperature is not None else 'agent'}",
                 f"max {self.max_tokens or 'agent'}", f"break: {'+'.join(brk) or 'off'}"]
        if self.reload_error:
            parts.append(f"[reload failed] {self.reload_error}")
        elif self.reloads:
            parts.append(f"reloaded ×{self.reloads}")
        status = self.query_one("#status", Static)
        status.update(Text(" · ".join(parts)))
        status.set_class(self.reload_error is not None, "failed")
        self.query_one(KeyBar).refresh_keys()

    def notify(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
               timeout: float | None = None, markup: bool = False) -> None:
        """A toast, shown as plain text by default: what the app says quotes outside text (an exception's
        message, a path, a name), and a bracket in it (pydantic's ``[type=int_parsing, ...]``) is not markup."""
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    def action_help_quit(self) -> None:
        """Ctrl+C (a reflex) does not quit: say which key does, once while the toast shows (pressed again and
        again, they stacked up). Textual's own hint is markup, shown raw here."""
        if time.monotonic() - self._quit_hint_at < self.NOTIFICATION_TIMEOUT:
            return
        self._quit_hint_at = time.monotonic()
        self.notify("Press Ctrl+Q to quit (a generation in progress is stopped and stored)",
                    title="Do you want to quit?")

    def on_print(self, event: events.Print) -> None:
        self.query_one(ChatPane).printed.append(event.text)

    def refresh_sidebar(self) -> None:
        self.query_one(RunsPanel).refresh_runs()

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for name, help_text, action in (
            ("Toggle model breakpoint", "pause before every model call", self.action_toggle_model_break),
            ("Toggle tool breakpoint", "pause before every tool call and after its result",
             self.action_toggle_tool_break),
            ("Continue", "resume the paused run", self.action_continue),
            ("Step", "resume and pause at the next point", self.action_step),
            ("Replay run", "replay the open run from its records (no model)", self.action_replay),
            ("Fork from selected event", "re-run live from the selected event and compare", self.action_fork),
            ("Settings", "model, temperature, max tokens", self.action_settings),
            ("Export run", "as JSON and as a conversation test case", self.action_export),
            ("New conversation", "keep the old one stored", self.action_new_conversation),
            ("Next error", "select the next failure in the trace (an error, a tool's error, a failed step)",
             self.action_next_error),
            ("Find in the trace", "the next event that holds a text (/ in the trace; n finds it again)",
             lambda: self.query_one(TraceTree).action_find()),
            ("Copy the answer", "the last answer as the model wrote it (Markdown)", lambda: self.copy("answer")),
            ("Copy the inspector", "the selected node of the trace, whole", lambda: self.copy("inspector")),
            ("Copy the run id", "of the open run (for `halguru logs show`, `--run`)", lambda: self.copy("run id")),
        ):
            yield SystemCommand(name, help_text, action)

    def action_next_error(self) -> None:
        tree = self.query_one(TraceTree)
        if tree.next_failure():
            tree.focus()  # the inspector follows the cursor
        else:
            self.notify("nothing failed in this trace")

    def copy(self, what: str) -> None:
        """Put ``what`` on the clipboard (the terminal's, through OSC 52), from the keyboard: a mouse selection
        copies only what is on screen."""
        text = {"answer": self.last_answer, "inspector": self.query_one("#inspector", TextArea).text,
                "run id": self.stored.id if self.stored is not None else ""}[what]
        if not text or text == INSPECTOR_HINT:
            self.notify(f"no {what} to copy yet", severity="warning")
            return
        self.copy_to_clipboard(text)
        self.notify(f"copied the {what} ({len(text):,} characters)")

    # -- chat and live runs -------------------------------------------------
    def on_message_box_submitted(self, event: MessageBox.Submitted) -> None:
        text = event.value.strip()
        if not text:
            return
        if self.streaming("send a message") or self.waits_for_approval(self.conversation_id):
            return
        event.box.remember(text)
        event.box.value = ""
        self.query_one(ChatPane).add_user(text)
        self.run_worker_ = self.run_worker(self.send(text), group="run", exit_on_error=False)

    def _busy(self) -> Worker[Any] | None:
        """The run, replay or fork streaming into the trace now (paused at a breakpoint too), if any."""
        return next((w for w in self.workers if w.group in ("run", "replay") and w.is_running), None)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group in ("run", "replay"):  # Esc lights up while something streams
            self.query_one(KeyBar).refresh_keys()

    def action_stop(self) -> None:
        """Esc (and Ctrl+C, as in `halguru chat`): stop the run, replay or fork in progress, paused or not; the
        runtime stores a run as cancelled with what it had answered. With nothing to stop the key does what it
        does elsewhere (Ctrl+C copies in the message box, or says how to quit)."""
        busy = self._busy()
        if busy is None:
            raise SkipAction()
        busy.cancel()
        if busy.group == "replay":
            self.notify("stopped the replay or fork")

    def streaming(self, then: str) -> bool:
        """Whether a run, replay or fork streams into the trace now (said, with what to do): a second one drew
        its events into the same tree, and a stored run opened meanwhile got the live run's events."""
        busy = self._busy()
        if busy is None:
            return False
        what = "a run is in progress" if busy.group == "run" else "a replay or fork is in progress"
        paused = " (F5 continues it: it is paused)" if self.pause is not None else ""
        self.notify(f"{what}{paused}: {then} when it has ended", severity="warning")
        return True

    def _model(self) -> Any:
        if self.model_ref is not None and not isinstance(self.model_ref, str):
            return self.model_ref
        if self.model_ref is None and self.agent is not None and self.agent.driver is not None:
            from halguru.models.base import PerAgentModel

            return PerAgentModel(self._resolve)  # each member or step keeps its own model
        return self._resolve(self.model_name)

    def _resolve(self, name: str) -> Model:
        from halguru.models.registry import get_model

        if name not in self._models:  # resolved once, so a model keeps its state across turns
            self._models[name] = get_model(name)
        return self._models[name]

    def sampling(self) -> dict[str, Any]:
        values = {"temperature": self.temperature, "max_tokens": self.max_tokens}
        return {k: v for k, v in values.items() if v is not None}

    async def send(self, text: str) -> None:
        """One turn through the runtime, with the debugger's hooks; events feed the tree live."""
        from halguru.agents.runtime import run
        from halguru.tools.mcp import keep_servers_running

        agent = self.agent
        assert agent is not None
        if agent.uses_mcp():  # the debugger keeps MCP servers between turns; quitting stops them
            keep_servers_running()

        def stream() -> Any:
            model = self._model()
            return run(agent, text, self.conversation_id, model=model, store=self.store, sampling=self.sampling(),
                       hooks=self.hooks, metadata={"dev": {"model": model.name, "sampling": self.sampling()}})

        await self._turn(stream)

    async def _turn(self, make_stream: Callable[[], Any]) -> None:
        """Stream one run (a new turn or a continuation) into the chat and the tree; errors are one note."""
        chat = self.query_one(ChatPane)
        self.query_one("#inspector", TextArea).text = INSPECTOR_HINT  # nothing of the previous run stays
        self.last_events = []
        self.resumable = False  # the open run becomes this one: F5 would resume it otherwise
        from halguru.rag.indexer import IngestScope

        ingests = IngestScope.enter()  # the knowledge ingests this run starts (its first retrieval) stop with it
        try:
            await self.consume(make_stream(), chat)
        except HalguruError as exc:
            chat.add_note(f"error: {exc}")
            tree = self.query_one(TraceTree)
            if self.last_events:  # it failed midway: what it did stays, the error last
                tree.end_streaming()
                tree.root.add_leaf(Text.assemble(("error ", "bold red"), str(exc)))
            else:  # before its first event: nothing of the previous run stays on screen
                tree.failed(str(exc))
                self.query_one("#inspector", TextArea).text = f"the run failed before it started:\n{exc}"
            self.notify(str(exc), severity="error")
        except asyncio.CancelledError:  # stopped (Esc, Ctrl+C) or quitting: the trace shows the run as stored
            self._stopped(chat)
            # An ingest goes on in its thread: it stops within a few chunks (quitting waited for all of them)
            ingests.stop_requested.set()
            self.run_worker(self._say_stopped(ingests, chat), exit_on_error=False)
            raise
        finally:
            self.hooks.stepping = False  # a step (F6) past the run's last point does not pause the next run
            self._clear_pause()
            self.refresh_sidebar()
            self._show_approval()
            chat.trim(self.conversation_id)

    async def _say_stopped(self, ingests: IngestScope, chat: ChatPane) -> None:
        for line in await asyncio.to_thread(ingests.stop, INGEST_STOP_WAIT):
            chat.add_note(line)

    def _stopped(self, chat: ChatPane) -> None:
        self.query_one(TraceTree).end_streaming()
        started = self.last_events[0] if self.last_events else None
        if started is None:
            chat.add_note("stopped before the run started")
            return
        try:
            stored = load_run(self.store, started.run_id)
        except HalguruError:  # not stored (a store that failed): the trace keeps what streamed
            chat.add_note(f"stopped {started.run_id}")
            return
        self.open_stored(stored, focus=False)  # its end as stored: cancelled, with the partial answer
        chat.add_note(f"stopped: {stored.id} is stored as {stored.run['status']}, with what it had answered")

    async def consume(self, stream: Any, chat: ChatPane | None = None) -> list[Event]:
        """Show a run's events as they come: tokens batched into the answer, the rest into the tree."""
        tree = self.query_one(TraceTree)
        events: list[Event] = []
        answer = AnswerStream(chat, STREAM_REFRESH) if chat is not None else None
        # Closed here, not left to the garbage collector: a cancel (Ctrl+Q) that lands while the answer is drawn
        # must still let the runtime store the partial run as cancelled before the app exits.
        try:
            async with aclosing(stream) as events_in:
                async for event in events_in:
                    if isinstance(event, Token):
                        tree.streamed += 1
                        if answer is not None:
                            await answer.add(printable(event.text))
                        continue
                    if answer is not None:
                        await answer.flush()
                    events.append(event)
                    self.last_events = events
                    self._show(event, chat)
                    if isinstance(event, ModelResult) and event.tool_calls and answer is not None:
                        await answer.end()  # the text after the tools is a new answer
                    tree.add(event)
                    if isinstance(event, RunFinished) and not parent_of(event):
                        self.last_answer = event.output
        except asyncio.CancelledError:  # stopped: what had streamed is drawn whole (its drawing task ends too)
            if answer is not None:
                self.run_worker(answer.end(), exit_on_error=False)
            raise
        if answer is not None:
            await answer.end()
            answer.chat.scroll_end(animate=False)
        self.last_events = events
        if events:
            self.stored = StoredRun(self.store.get_run(events[0].run_id), events) if chat is not None else self.stored
        return events

    def _show(self, event: Event, chat: ChatPane | None) -> None:
        """What a run's event (not a token) changes beside the tree: the chat's notes, the open run."""
        if isinstance(event, RunStarted):
            if not parent_of(event):
                self.query_one("#inspector", TextArea).text = INSPECTOR_HINT
            if chat is not None and not parent_of(event):
                self.conversation_id = event.conversation_id
                # The open run is this one from its start: paused at a breakpoint, the status line, Ctrl+S
                # and F7 name it, not the previous run
                with suppress(HalguruError):  # not in the store: the error comes with the run's end
                    self.stored = StoredRun(self.store.get_run(event.run_id), self.last_events)
                    self.refresh_status()
        elif chat is None:
            return
        elif isinstance(event, NOTICES):
            shown = note(event)
            if shown:
                chat.add_note(Text.from_markup(shown))
        elif isinstance(event, ModelResult):
            if shown := note(event):  # cut at max_tokens, or empty
                chat.add_note(Text.from_markup(shown.replace("! ", "", 1)))
        elif isinstance(event, Error):
            chat.add_note(f"{event.kind} error: {event.message}")

    # -- inspector and stored runs --------------------------------------------
    def on_tree_node_highlighted(self, event: Tree.NodeHighlighted[Any]) -> None:
        data = event.node.data
        if event.control.id == "trace" and data:
            self.query_one("#inspector", TextArea).text = self.query_one(TraceTree).inspect(data)

    def on_tree_node_selected(self, event: Tree.NodeSelected[Any]) -> None:
        data = event.node.data
        if event.control.id == "runs" and data and not self.streaming(f"open {data['id']}"):
            try:
                self.open_stored(load_run(self.store, data["id"]))
            except HalguruError as exc:
                self.notify(str(exc), severity="error")

    def open_stored(self, stored: StoredRun, *, focus: bool = True) -> None:
        from halguru.orchestration.durable import check_resumable

        self.stored = stored
        try:
            self.resumable = check_resumable(self.store, stored.id)[1] is not None
        except HalguruError:  # finished, never checkpointed, resumed already: F5 has nothing to do
            self.resumable = False
        tree = self.query_one(TraceTree)
        tree.clear()
        tree.load(stored.events)
        if focus:
            tree.focus()
        self.query_one("#inspector", TextArea).text = INSPECTOR_HINT
        approval = self.store.find_approval(stored.id) if stored.run.get("status") == "paused" else None
        if approval is not None and approval["status"] == "pending":  # F9/F10 decide it, as for a run made here
            self._show_approval(stored.events)
        self.refresh_status()

    # -- settings, sidebar, theme, help, quit ------------------------------------
    def action_settings(self) -> None:
        own = self.agent is not None and self.agent.driver is not None  # a team or workflow: each agent's own
        current = "" if own and self.model_ref is None else self.model_name
        self.push_screen(SettingsScreen(current, self.temperature, self.max_tokens, per_agent=own),
                         self.apply_settings)

    def apply_settings(self, values: dict[str, Any] | None) -> None:
        if values is None:
            return
        if not values["model"]:  # each agent's own model
            self.model_ref = None
        elif values["model"] != self.model_name:
            self.model_ref = values["model"]
        self.temperature, self.max_tokens = values["temperature"], values["max_tokens"]
        self.refresh_status()
        self.notify("settings apply to the next run (recorded on its run_started)")

    def action_toggle_sidebar(self) -> None:
        """Show the sidebar, as the store has it now (another debugger or terminal may have run since), with the
        focus on its runs (↓ and Enter open one); hide it, and the focus it had goes back to the message box (left
        on a hidden widget, what was typed went nowhere)."""
        sidebar = self.query_one("#sidebar")
        had_focus = self.focused is not None and sidebar in self.focused.ancestors_with_self
        sidebar.display = not sidebar.display
        if sidebar.display:
            self.refresh_sidebar()
        if sidebar.display and not self.screen.has_class("zoomed"):
            self.query_one("#runs").focus()
        elif had_focus:
            self.query_one("#prompt" if self.agent is not None else "#trace").focus()

    def action_zoom(self) -> None:
        """The trace and inspector over the whole width (the chat and the sidebar hidden), and back."""
        self.screen.toggle_class("zoomed")
        if self.screen.has_class("zoomed"):
            self.query_one(TraceTree).focus()
        elif self.agent is not None:
            self.query_one("#prompt", MessageBox).focus()
        self.refresh_status()

    def action_new_conversation(self) -> None:
        if self.streaming("start a new conversation"):  # its answer would land in the new one's chat
            return
        self.conversation_id = None
        self.query_one(ChatPane).clear()
        self.notify("new conversation (the old one stays stored)")

    def action_toggle_theme(self) -> None:
        self.theme = "textual-light" if self.theme == "textual-dark" else "textual-dark"

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    async def action_quit(self) -> None:
        """Stop a generation cleanly first: the runtime stores the partial run as cancelled."""
        worker = self.run_worker_
        if worker is not None and worker.is_running:
            worker.cancel()
            with suppress(Exception):  # WorkerCancelled is the expected end; a slow store gets a few seconds
                await asyncio.wait_for(worker.wait(), QUIT_GRACE)
        from halguru.tools.mcp import stop_kept_servers

        await stop_kept_servers()
        self.exit()
