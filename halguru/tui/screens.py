"""Modal screens: help, finding in the trace, editing a pending value, settings, and the side-by-side
comparison."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Markdown, OptionList, Static, TextArea
from textual.widgets.option_list import Option, OptionDoesNotExist

from halguru.printable import printable

HELP = """\
# halguru dev — keys

| key | what it does |
|---|---|
| `Enter` | send the message in the input (a pasted block, its lines kept, is one message) |
| `↑` / `↓` | in the input: your previous / next message (earlier sessions' too), then your draft |
| `F2` / `F3` | toggle the breakpoint before model calls / tool calls |
| `F5` | continue a paused run, or resume the open interrupted one from its checkpoint |
| `F6` | step: continue, and pause again at the next point |
| `F4` | edit what the paused run is about to use (tool arguments, tool result, next message) |
| `F7` | replay the open run from its records (no model is called) and say what differs and why |
| `F8` | fork the open run live from the selected event and compare |
| `F9` / `F10` | approve (arguments editable) / reject (with a reason) a tool call waiting for approval |
| `Esc` (or `Ctrl+C`) | stop the run, replay or fork in progress (paused too): stored cancelled, answer kept |
| `Ctrl+O` | model (listed and checked), temperature and max tokens |
| `Ctrl+S` | export the open run as JSON and as a conversation test case |
| `Ctrl+B` | show or hide the stored runs sidebar (filtered by agent; test runs hidden) |
| `Ctrl+L` | zoom: the trace and inspector over the whole width, and back |
| `Ctrl+N` | start a new conversation |
| `Ctrl+T` | light or dark theme |
| `Ctrl+P` | command palette (also: next error in the trace; copy the answer, the inspector or the run id) |
| `F1` (or `?` outside the message box) | this help |
| `Ctrl+Q` | quit (a running generation is stopped and stored) |
| `←` / `→` in the trace | scroll long lines sideways |
| `/` / `n` in the trace | find a text in its events (a model call: the messages it adds), then the next one |

Every key works wherever the focus is, the message box included; the bar at the bottom lists them all
(dimmed: nothing to do now).
Select a node of the trace tree to see it whole in the inspector.
Saving agent.yaml, tools.py, prompt or knowledge files reloads the agent.
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,question_mark,f1", "dismiss", "close")]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > Vertical { width: 90%; max-width: 96; height: 90%; border: thick $primary; background: $surface; }
    """

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Markdown(HELP)


class FindScreen(ModalScreen[str | None]):
    """The text to look for in the trace (``/``): Enter finds it, Esc cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "dismiss(None)", "cancel")]
    DEFAULT_CSS = """
    FindScreen { align: center middle; }
    FindScreen > Vertical { width: 60; max-width: 100%; height: auto; border: thick $primary; background: $surface; }
    FindScreen Label { width: 1fr; }
    """

    def __init__(self, text: str = ""):
        super().__init__()
        self.text = text

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("find in the trace (what the inspector shows; any case) — Enter, Esc to cancel")
            yield Input(self.text, id="find")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)


class EditScreen(ModalScreen[str | None]):
    """Edit a pending value as text; Ctrl+S keeps it, Escape cancels.

    Its control characters show escaped (a tool's coloured output went raw to the terminal); kept as shown, the
    value is the original itself, escapes and all."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "save", "save", priority=True), Binding("escape", "cancel", "cancel")]
    DEFAULT_CSS = """
    EditScreen { align: center middle; }
    EditScreen > Vertical { width: 90%; height: 80%; border: thick $warning; background: $surface; }
    EditScreen TextArea { height: 1fr; }
    EditScreen #error { color: $error; }
    EditScreen Label { width: 1fr; }  /* wrapped: on a narrow terminal "Esc to cancel" was cut off */
    """

    def __init__(self, title: str, text: str, validate: Any = None):
        super().__init__()
        self.title_text = title
        self.text = text
        self.validate = validate

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(Text(f"{self.title_text} — Ctrl+S to keep, Esc to cancel"))
            yield TextArea(printable(self.text), id="editor")
            yield Static("", id="error")

    def action_save(self) -> None:
        text = self.query_one("#editor", TextArea).text
        if text == printable(self.text):  # not edited
            text = self.text
        if self.validate is not None:
            problem = self.validate(text)
            if problem:
                self.query_one("#error", Static).update(Text(problem))  # plain: it may quote brackets
                return
        self.dismiss(text)

    def action_cancel(self) -> None:
        self.dismiss(None)


class SettingsScreen(ModalScreen[dict[str, Any] | None]):
    """Model, temperature and max tokens for the next runs (recorded on their run_started).

    The models you can name are listed (``halguru models list``); a choice is checked before it is kept:
    an unknown name, or a model file that is not there, is an error on the screen. Enter applies.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "cancel"),
        # in the model field (the list has its own): ↑/↓ pick from the list while typing stays possible
        Binding("up", "pick(-1)", "previous model", show=False), Binding("down", "pick(1)", "next model", show=False)]
    DEFAULT_CSS = """
    SettingsScreen { align: center middle; }
    /* at most the terminal's size (at 60x20 a fixed 72 cut its right side off), scrolled to its buttons */
    #settings { width: 72; max-width: 100%; height: auto; max-height: 100%; border: thick $primary;
                background: $surface; padding: 0 1; }
    SettingsScreen OptionList { height: auto; max-height: 8; }
    SettingsScreen Input { margin: 0; }
    SettingsScreen Horizontal { height: auto; }
    SettingsScreen Label { width: 1fr; }  /* wrapped on a narrow terminal, not cut */
    SettingsScreen #error { color: $error; }
    """

    def __init__(self, model: str, temperature: float | None, max_tokens: int | None, *, per_agent: bool = False):
        super().__init__()
        self.values = (model, temperature, max_tokens)
        self.per_agent = per_agent  # a team or workflow: an empty model keeps each agent's own
        self.models = _known_models()

    def compose(self) -> ComposeResult:
        model, temperature, max_tokens = self.values
        options = [Option(Text.assemble((name, "bold"), f"  {where}"), id=name) for name, where in self.models]
        if self.per_agent:
            options.insert(0, Option(Text("each agent's own model", style="italic"), id=""))
        with VerticalScroll(id="settings"):
            yield Label("model (↑/↓ or type: a name, a .gguf path or PROVIDER:ARGUMENT)")
            yield OptionList(*options, id="models")
            yield Input(model, id="model")
            yield Label("temperature (0–2, empty: the agent's)")
            yield Input("" if temperature is None else str(temperature), id="temperature")
            yield Label("max tokens (empty: the agent's)")
            yield Input("" if max_tokens is None else str(max_tokens), id="max_tokens")
            yield Static("", id="error")
            with Horizontal():
                yield Button("Apply (Enter)", variant="primary", id="apply")
                yield Button("Cancel (Esc)", id="cancel")

    def on_mount(self) -> None:
        options = self.query_one("#models", OptionList)
        try:
            options.highlighted = options.get_option_index(self.values[0])
        except OptionDoesNotExist:
            options.highlighted = None
        self.query_one("#model", Input).focus()  # what is typed goes to the field (the list ignored it)

    def action_pick(self, step: int) -> None:
        """↑/↓ in the model field: the previous or next listed model."""
        options = self.query_one("#models", OptionList)
        if self.focused is not self.query_one("#model", Input) or not options.option_count:
            return
        if options.highlighted is None:
            options.highlighted = 0 if step > 0 else options.option_count - 1
        else:
            options.highlighted = max(0, min(options.option_count - 1, options.highlighted + step))

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        # The list highlights its first option as it mounts, and on_mount takes that back when the model is
        # not listed (`scripted:s.yaml`, a .gguf path): that stale event put smollm2 in the field, and Enter
        # (to change only the temperature) switched the model.
        if event.option_list.highlighted != event.option_index:
            return
        self.query_one("#model", Input).value = event.option.id or ""

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.query_one("#model", Input).value = event.option.id or ""
        self.apply()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "cancel":
            self.dismiss(None)
            return
        self.apply()

    def on_input_submitted(self) -> None:
        self.apply()

    def apply(self) -> None:
        model = self.query_one("#model", Input).value.strip()
        temperature = self.query_one("#temperature", Input).value.strip()
        max_tokens = self.query_one("#max_tokens", Input).value.strip()
        try:
            t = float(temperature) if temperature else None
            m = int(max_tokens) if max_tokens else None
            if t is not None and not 0 <= t <= 2:
                raise ValueError("temperature must be between 0 and 2")
            if m is not None and m < 1:
                raise ValueError("max tokens must be at least 1")
        except ValueError as exc:
            self.query_one("#error", Static).update(Text(str(exc)))  # plain: it quotes what was typed
            return
        problem = model_problem(model) if model or not self.per_agent else None
        if problem:
            self.query_one("#error", Static).update(Text(problem))
            return
        self.dismiss({"model": model, "temperature": t, "max_tokens": m})

    def action_cancel(self) -> None:
        self.dismiss(None)


def _known_models() -> list[tuple[str, str]]:
    """(name, provider and where it comes from) for every model `halguru models list` shows."""
    from halguru.errors import HalguruError
    from halguru.models.registry import list_models

    try:
        return [(e.name, f"{e.provider} · {e.source}") for e in list_models()]
    except HalguruError:
        return []


def model_problem(reference: str) -> str | None:
    """Why ``reference`` cannot be used as a model (None when it can), without loading it."""
    from halguru.errors import HalguruError
    from halguru.models.registry import find_entry

    if not reference:
        return "give a model name (see `halguru models list`)"
    try:
        entry = find_entry(reference)
    except HalguruError as exc:
        return str(exc)
    path = entry.options.get("path")
    if path and not Path(str(path)).expanduser().is_file():
        return f"model {reference!r}: no model file at {path}"
    return None


class CompareScreen(ModalScreen[None]):
    """Two runs side by side, with the diff of their answers and event trees."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q", "dismiss", "close")]
    DEFAULT_CSS = """
    CompareScreen > Vertical { border: thick $primary; background: $surface; }
    CompareScreen Horizontal { height: 1fr; }
    CompareScreen TextArea { width: 1fr; height: 1fr; }
    CompareScreen #diff { height: 1fr; }
    CompareScreen Label { width: 1fr; }  /* a replay's verdict (why it cannot be replayed) is read whole */
    """

    def __init__(self, title: str, left: str, right: str, diff: str):
        super().__init__()
        self.title_text, self.left, self.right, self.diff = title, left, right, diff

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(Text(f"{self.title_text} — Esc to close"))
            with Horizontal():
                yield TextArea(printable(self.left), read_only=True, id="left")
                yield TextArea(printable(self.right), read_only=True, id="right")
            yield TextArea(printable(self.diff) or "no differences", read_only=True, id="diff")
