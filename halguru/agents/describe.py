"""How an event reads on a text surface: the one rendering shared by the CLI, the chat, the TUI and replay.

Per event class, ``describe`` gives a ``Line`` (a title, its Rich style, one line of plain text) for
trees and lists, ``note`` the short line a streaming surface prints beside the answer (or None when
the event is not shown live) and ``detail`` everything about it for an inspector. Surfaces take
typed events: stored ones (dicts) are parsed once with ``parse_events``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import singledispatch
from typing import Any

from rich.markup import escape
from rich.text import Text

from halguru.agents.events import (
    ApprovalApproved,
    ApprovalRejected,
    ApprovalRequested,
    BaseEvent,
    Checkpoint,
    Error,
    Event,
    Handoff,
    ModelCall,
    ModelResult,
    Resumed,
    Retrieval,
    RunFinished,
    RunStarted,
    StepFinished,
    StepStarted,
    Token,
    ToolCall,
    ToolResult,
    parse_event,
)
from halguru.errors import StoreError
from halguru.printable import printable

WHERE = "where (the traceback from the tool's own code on):"  # an error's detail, in the inspector
ASK_PREFIX = "asked: "  # a handoff whose reason starts so is an agent asking another (agent-as-tool)
STATUS_STYLES = {"ok": "green", "failed": "red", "cancelled": "yellow", "limited": "yellow", "paused": "yellow",
                 "interrupted": "magenta", "running": "cyan"}
STEP_STYLES = {"ok": "green", "skipped": "dim", "failed": "red"}


@dataclass(frozen=True)
class Line:
    """One event as one line: ``title`` in ``style``, then plain ``text``."""

    title: str
    style: str
    text: str = ""

    def markup(self) -> str:
        """The line as Rich markup (the text escaped, its control characters shown)."""
        return f"[{self.style}]{escape(printable(self.title))}[/] {escape(printable(self.text))}".rstrip()

    def rich(self) -> Text:
        """The line as ``markup()`` draws it, built without parsing markup: the same text and style, ~4x faster
        (a 2,000-event trace labels every event), and a ``:x:`` in a tool's output stays ``:x:`` (markup turned
        such codes into emoji)."""
        tail = printable(self.text).rstrip()
        return Text.assemble((printable(self.title), self.style), *((" ", tail) if tail else ()))

    @property
    def plain(self) -> str:
        return printable(f"{self.title} {self.text}".rstrip())


def ms(value: float | None) -> str:
    """A duration for people: ``850ms`` or ``1.25s``; ``-`` when unknown."""
    if value is None:
        return "-"
    return f"{value / 1000:.2f}s" if value >= 1000 else f"{value:.0f}ms"


def clip(text: str, limit: int = 100) -> str:
    """``text`` on one line, cut to ``limit`` characters with an ellipsis (control characters shown)."""
    text = " ".join(printable(str(text)).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def short_args(arguments: dict[str, Any], limit: int = 80) -> str:
    """Tool-call arguments as ``a=1, b="x"``, cut to ``limit`` characters."""
    return clip(", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in arguments.items()), limit)


def parent_of(event: BaseEvent) -> str:
    """The run that started ``event``'s run ("" for a top-level run or an event without the field)."""
    return str(getattr(event, "parent_run_id", "") or "")


def _join(*parts: str) -> str:
    return " · ".join(p for p in parts if p)


def parse_events(records: list[dict[str, Any]] | list[Event], run_id: str = "") -> list[Event]:
    """Stored events (dicts) as typed events, parsed once; a corrupt one is a one-line error."""
    try:
        return [e if isinstance(e, BaseEvent) else parse_event(e) for e in records]
    except (ValueError, TypeError) as exc:
        raise StoreError(f"run {run_id or '?'} has a corrupt event in the trace store: "
                         f"{str(exc).splitlines()[0]}") from None


# -- describe: one line per event -----------------------------------------------------------------------


@singledispatch
def describe(event: BaseEvent, *, limit: int = 100, stable: bool = False) -> Line:
    """The line of ``event``. ``limit`` cuts free text; ``stable`` leaves out ids, times and token counts,
    so two runs that did the same thing give the same lines (replay and fork comparisons)."""
    return Line(event.type, "white")


@describe.register
def _(e: RunStarted, *, limit: int = 100, stable: bool = False) -> Line:
    head = "" if stable else _join(e.run_id, e.agent, e.model)
    return Line("run", "bold", _join(head, clip(e.input, limit)))


@describe.register
def _(e: ModelCall, *, limit: int = 100, stable: bool = False) -> Line:
    tools = f"tools: {', '.join(e.tools) or 'none'}"
    count = f"{len(e.messages)} message{'' if len(e.messages) == 1 else 's'}"
    return Line("model_call", "blue", _join("" if stable else e.model, count, tools))


@describe.register
def _(e: ModelResult, *, limit: int = 100, stable: bool = False) -> Line:
    calls = f"→ {', '.join(c.get('name', '?') for c in e.tool_calls)}" if e.tool_calls else ""
    figures = "" if stable else _join(
        ms(e.duration_ms), f"ttft {ms(e.ttft_ms)}",
        f"{e.prompt_tokens}+{e.completion_tokens} tok ({e.cached_tokens} cached)",
        f"{e.format_errors} format error(s)" if e.format_errors else "",
        _dropped(e))
    return Line("model_result", "blue", _join(figures, calls, clip(e.text, limit) if e.text else ""))


@describe.register
def _(e: Token, *, limit: int = 100, stable: bool = False) -> Line:
    return Line("token", "dim", clip(e.text, limit))


@describe.register
def _(e: ToolCall, *, limit: int = 100, stable: bool = False) -> Line:
    left = " → left to the client, whose result comes with its next request" if e.client else ""
    return Line("tool_call", "magenta", f"{e.name}({short_args(e.arguments, max(limit, 40))}){left}")


@describe.register
def _(e: ToolResult, *, limit: int = 100, stable: bool = False) -> Line:
    from halguru.tools.registry import cut_sizes

    sizes = cut_sizes(e.content)  # the cut line is past the shown start: say what the model read
    return Line("tool_result", "red" if e.is_error else "green",
                _join(e.name, "error" if e.is_error else "", "from the client" if e.client else
                      "" if stable else ms(e.duration_ms),
                      f"the model got {sizes[0]} of {sizes[1]} characters" if sizes else "",
                      clip(e.content, limit)))


@describe.register
def _(e: Retrieval, *, limit: int = 100, stable: bool = False) -> Line:
    return Line("retrieval", "cyan", _join(e.knowledge_base, f"{len(e.hits)} hits",
                                           "" if stable else ms(e.duration_ms), clip(e.query, limit)))


@describe.register
def _(e: Handoff, *, limit: int = 100, stable: bool = False) -> Line:
    route = f"{e.from_agent} → {e.to_agent}"
    if e.reason.startswith(ASK_PREFIX):
        return Line("ask", "cyan", _join(route, clip(e.reason.removeprefix(ASK_PREFIX), limit)))
    return Line("handoff", "cyan", _join(route, clip(e.reason, limit)))


@describe.register
def _(e: ApprovalRequested, *, limit: int = 100, stable: bool = False) -> Line:
    return Line("approval requested", "yellow", f"{e.name}({short_args(e.arguments, max(limit, 40))})")


@describe.register
def _(e: ApprovalApproved, *, limit: int = 100, stable: bool = False) -> Line:
    return Line("approval approved", "yellow",
                _join(f"{e.name}({short_args(e.arguments, max(limit, 40))})", "edited" if e.edited else ""))


@describe.register
def _(e: ApprovalRejected, *, limit: int = 100, stable: bool = False) -> Line:
    return Line("approval rejected", "yellow", _join(e.name, clip(e.reason, limit)))


@describe.register
def _(e: StepStarted, *, limit: int = 100, stable: bool = False) -> Line:
    return Line("step", "bold", _join(e.step_id, f"{e.kind} {clip(e.name, limit)}".rstrip()))


@describe.register
def _(e: StepFinished, *, limit: int = 100, stable: bool = False) -> Line:
    shown = "" if e.status == "skipped" else clip(
        (e.error or "") if e.status == "failed" else json.dumps(e.output, ensure_ascii=False), limit)
    return Line("step", STEP_STYLES.get(e.status, "magenta"),
                _join(f"{e.status} {e.step_id}", "" if stable else ms(e.duration_ms), shown))


@describe.register
def _(e: Checkpoint, *, limit: int = 100, stable: bool = False) -> Line:
    return Line("checkpoint", "dim", e.label)


@describe.register
def _(e: Resumed, *, limit: int = 100, stable: bool = False) -> Line:
    reused = f"reused {', '.join(e.reused)}" if e.reused else ""
    return Line("resumed", "cyan", _join(f"from {e.from_run_id} at {e.checkpoint}", reused))


@describe.register
def _(e: Error, *, limit: int = 100, stable: bool = False) -> Line:
    return Line("error", "red" if e.fatal else "yellow", f"{e.kind}: {clip(e.message, max(limit, 200))}")


def token_count(prompt: int, completion: int, status: str, unit: str = "tok") -> str:
    """``12+30 tok``; nothing for a run stopped before its model reported usage (a cancelled stream)."""
    if not prompt and not completion and status in ("cancelled", "interrupted"):
        return ""
    return f"{prompt}+{completion} {unit}"


def run_cost(events: list[Event], *, priced_only: bool = False) -> float | None:
    """What a run's model calls cost in USD, each priced by the model its call went to (a team's members each
    by their own; `halguru eval`'s prices: a models.yaml entry's ``price_input_per_mtok`` and
    ``price_output_per_mtok``): 0 on local models, None when a model used has no price. ``priced_only``: None
    at once unless a model used has prices, without loading the model providers to tell local models (a tree's
    header, which shows a cost above 0 only, is drawn without their start-up)."""
    from halguru.models.registry import priced_models, prices_per_mtok

    if priced_only and not {e.model for e in events if isinstance(e, ModelCall)} & priced_models():
        return None

    model_of: dict[str, str] = {}  # each (sub-)run's latest model call, which its next result answers
    prices: dict[str, tuple[float, float] | None] = {}  # each model looked up once, however long the run
    total = 0.0
    for e in events:
        if isinstance(e, ModelCall):
            model_of[e.run_id] = e.model
        elif isinstance(e, ModelResult):
            model = model_of.get(e.run_id, "")
            if model not in prices:
                prices[model] = prices_per_mtok(model)
            if (price := prices[model]) is None:
                return None
            total += (e.prompt_tokens * price[0] + e.completion_tokens * price[1]) / 1e6
    return total


def usd(cost: float) -> str:
    """``$0.0123``, or to the millionth of a dollar below a cent (a short run's cost is not ``$0.0000``)."""
    return f"${cost:.4f}" if cost >= 0.01 else f"${cost:.6f}"


@describe.register
def _(e: RunFinished, *, limit: int = 100, stable: bool = False) -> Line:
    figures = "" if stable else _join(ms(e.duration_ms), f"{e.steps} model call{'' if e.steps == 1 else 's'}",
                                      token_count(e.prompt_tokens, e.completion_tokens, e.status))
    return Line("run_finished", STATUS_STYLES.get(e.status, "magenta"),
                _join(e.status, clip(e.output, limit) if e.output else "", figures))


# -- note: what a streaming surface prints beside the answer ------------------------------------------


def note(event: BaseEvent) -> str | None:
    """The Rich markup line a live run shows for ``event`` on its side channel, or None to show nothing.

    Answer text (tokens) is the surface's own business; a fatal error reads ``Error: ...``.
    """
    # names and arguments a model chose, a tool's output: outside text, shown inert (printable)
    if isinstance(event, ToolCall):
        return f"[dim]→ {escape(printable(event.name))}({escape(printable(short_args(event.arguments)))})[/]"
    if isinstance(event, ToolResult):
        return f"[{'red' if event.is_error else 'dim'}]← {escape(printable(clip(event.content)))}[/]"
    if isinstance(event, StepStarted):
        return f"[dim]▸ {escape(event.step_id)}: {event.kind} {escape(printable(clip(event.name, 60)))}[/]"
    if isinstance(event, StepFinished) and event.status != "ok":
        return f"[dim]▸ {escape(event.step_id)}: {event.status}[/]"
    if isinstance(event, Resumed):
        return f"[cyan]resumed {escape(event.from_run_id)} at {escape(event.checkpoint)}[/]"
    if isinstance(event, ApprovalRequested):
        call = f"{printable(event.name)}({printable(short_args(event.arguments))})"
        return f"[yellow]⏸ {escape(call)} waits for approval[/]"
    if isinstance(event, ApprovalApproved | ApprovalRejected):
        verdict = "approved" if isinstance(event, ApprovalApproved) else "rejected"
        return f"[yellow]{verdict}: {escape(printable(event.name))}[/]"
    if isinstance(event, Error):
        message = escape(printable(event.message))  # often outside text: an HTTP body, a server's stderr
        return f"[red]Error:[/] {message}" if event.fatal else f"[yellow]! {message}[/]"
    if isinstance(event, ModelResult) and event.finish_reason == "length" and not event.format_errors:
        return f"[yellow]{escape(cut_notice(event))}[/]"  # a cut tool call: its format error says so
    if isinstance(event, ModelResult) and not (event.text.strip() or event.tool_calls or event.format_errors):
        return f"[yellow]{escape(EMPTY_NOTICE)}[/]"
    return None


CUT_NOTICE = ("! The answer was cut at max_tokens (the model's reply limit); "
              "raise max_tokens in agent.yaml for longer answers.")  # a result stored before cut_by


def cut_notice(event: ModelResult) -> str:
    """What a surface says of an answer cut at max_tokens: which limit, where it was set."""
    if event.cut_by is None:
        return CUT_NOTICE
    return f"! The answer was cut at {event.cut_by}; raise it for longer answers."
EMPTY_NOTICE = ("! The model answered nothing (a small model may stop at once on a long prompt; "
                "see `halguru logs show` for what it was sent).")


# -- detail: everything about one event, for an inspector ---------------------------------------------


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def _maybe_json(text: str) -> str:
    try:
        return _json(json.loads(text))
    except (ValueError, TypeError):
        return text


def _messages(messages: list[dict[str, Any]]) -> list[str]:
    parts = []
    for m in messages:
        parts.append(f"--- {m.get('role')}{' (' + m['name'] + ')' if m.get('name') else ''} ---")
        parts.append(m.get("content") or "")
        if m.get("tool_calls"):
            parts.append(_json(m["tool_calls"]))
    return parts


def detail(e: BaseEvent) -> str:
    """Everything about one event, whole: messages as sent, settings, raw output, JSON arguments (control
    characters shown, as everywhere text from outside is printed)."""
    return printable(_detail(e))


def _dropped(e: ModelResult) -> str:
    n = e.dropped_messages
    return "" if not n else "the oldest message left out" if n == 1 else f"the {n} oldest messages left out"


def _detail(e: BaseEvent) -> str:
    parent = f" · parent {parent_of(e)}" if parent_of(e) else ""
    head = f"{e.type} · run {e.run_id}{parent} · seq {e.seq} · step {e.step}\n\n"
    if isinstance(e, ModelCall):
        return head + "\n".join([f"model: {e.model}", f"tools: {', '.join(e.tools) or '-'}",
                                 f"settings:\n{_json(e.settings)}", "messages as sent:", *_messages(e.messages)])
    if isinstance(e, ModelResult):
        dropped = f"\n{_dropped(e)} (the conversation outgrew the context)" if e.dropped_messages else ""
        return head + (f"tokens: {e.prompt_tokens} prompt + {e.completion_tokens} completion "
                       f"({e.cached_tokens} cached){dropped}\nduration: {ms(e.duration_ms)} · first token: "
                       f"{ms(e.ttft_ms)} · finish: {e.finish_reason}\n\nraw output:\n{e.text}\n\n"
                       f"tool calls:\n{_json(e.tool_calls)}")
    if isinstance(e, ToolCall):
        return head + f"tool: {e.name} (call {e.call_id})\n\narguments:\n{_json(e.arguments)}"
    if isinstance(e, ToolResult):
        return head + (f"tool: {e.name} · {'ERROR · ' if e.is_error else ''}{ms(e.duration_ms)} · "
                       f"{len(e.content)} characters\n\nresult:\n{_maybe_json(e.content)}")
    if isinstance(e, Retrieval):
        hits = [f"[{i}] score {h.get('score', '?')} · {h.get('source', h.get('title', ''))}\n{h.get('text', '')}"
                for i, h in enumerate(e.hits, 1)]
        return head + f"knowledge base: {e.knowledge_base}\nquery: {e.query}\n\n" + "\n\n".join(hits)
    if isinstance(e, Error):
        where = f"\n\n{WHERE}\n{e.detail}" if e.detail else ""
        return head + f"{'FATAL ' if e.fatal else ''}{e.kind} error:\n{e.message}{where}"
    if isinstance(e, RunFinished):
        return head + f"status: {e.status}\nerror: {e.error or '-'}\n\nanswer:\n{e.output}"
    return head + _json(e.model_dump(mode="json"))
