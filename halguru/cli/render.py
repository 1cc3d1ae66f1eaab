"""Turning events into terminal output: the live run printer and the event tree."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from rich.console import Console
from rich.markup import escape
from rich.tree import Tree

from halguru.agents.events import BaseEvent


def short_args(arguments: dict[str, Any], limit: int = 80) -> str:
    text = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in arguments.items())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def one_line(text: str, limit: int = 100) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class RunPrinter:
    """Streams answer tokens to stdout; tool activity and errors go to stderr, dimmed."""

    def __init__(self, out: TextIO | None = None, err: Console | None = None):
        self.out = out or sys.stdout
        self.err = err or Console(stderr=True, highlight=False, soft_wrap=True)
        self.at_line_start = True

    def __call__(self, event: BaseEvent) -> None:
        kind = event.type
        if kind == "token":
            text = event.text  # type: ignore[attr-defined]
            self.out.write(text)
            self.out.flush()
            self.at_line_start = text.endswith("\n")
            return
        breaks = ("tool_call", "tool_result", "error", "retrieval", "handoff", "step_started")
        if kind in breaks and not self.at_line_start:
            self.out.write("\n")
            self.out.flush()
            self.at_line_start = True
        if kind == "step_started":
            self.err.print(f"[dim]▸ {event.step_id}: {event.kind} {escape(one_line(event.name, 60))}[/]")  # type: ignore[attr-defined]
        elif kind == "step_finished" and event.status != "ok":  # type: ignore[attr-defined]
            self.err.print(f"[dim]▸ {event.step_id}: {event.status}[/]")  # type: ignore[attr-defined]
        elif kind == "resumed":
            self.err.print(f"[cyan]resumed {event.from_run_id} at {escape(event.checkpoint)}[/]")  # type: ignore[attr-defined]
        elif kind == "tool_call":
            self.err.print(f"[dim]→ {event.name}({escape(short_args(event.arguments))})[/]")  # type: ignore[attr-defined]
        elif kind == "tool_result":
            style = "red" if event.is_error else "dim"  # type: ignore[attr-defined]
            self.err.print(f"[{style}]← {escape(one_line(event.content))}[/]")  # type: ignore[attr-defined]
        elif kind == "approval_requested":
            self.err.print(f"[yellow]⏸ {event.name}({escape(short_args(event.arguments))}) "  # type: ignore[attr-defined]
                           "waits for approval[/]")
        elif kind in ("approval_approved", "approval_rejected"):
            verdict = "approved" if kind == "approval_approved" else "rejected"
            self.err.print(f"[yellow]{verdict}: {event.name}[/]")  # type: ignore[attr-defined]
        elif kind == "error" and not event.fatal:  # type: ignore[attr-defined]
            self.err.print(f"[yellow]! {escape(event.message)}[/]")  # type: ignore[attr-defined]
        elif kind == "model_result" and event.tool_calls and event.text and not self.at_line_start:  # type: ignore[attr-defined]
            self.out.write("\n")
            self.at_line_start = True
        elif kind == "run_finished" and not self.at_line_start:
            self.out.write("\n")
            self.out.flush()
            self.at_line_start = True


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1000:.2f}s" if value >= 1000 else f"{value:.0f}ms"


def trace_tree(run: dict[str, Any], events: list[dict[str, Any]]) -> Tree:
    """The event tree of a stored run: steps, each with its model call and tool calls.

    In a team run each step names the agent that took it, and a specialist's steps (agent-as-tool)
    hang under the handoff that asked it, so the tree shows who did what across agents.
    """
    status_style = {"ok": "green", "failed": "red", "cancelled": "yellow", "limited": "yellow",
                    "paused": "yellow"}.get(
        run["status"], "magenta")
    root = Tree(
        f"[bold]{escape(run['id'])}[/] {escape(run['agent'])} · {escape(run['model'])} · "
        f"[{status_style}]{run['status']}[/] · {_ms(run.get('duration_ms'))} · "
        f"{run.get('prompt_tokens', 0)}+{run.get('completion_tokens', 0)} tokens"
    )
    root.add(f"[cyan]input[/] {escape(one_line(run['input']))}")
    step_nodes: dict[int, Tree] = {}
    calls: dict[str, Tree] = {}
    agent, team = run["agent"], any(e["type"] == "handoff" for e in events)
    asked: tuple[str, Tree] | None = None  # (specialist, its handoff node) while a specialist works
    for e in events:
        kind, step = e["type"], e.get("step", 0)
        parent = root
        if step:
            if step not in step_nodes:
                label = f"[bold]step {step}[/]" + (f" · {escape(agent)}" if team else "")
                if kind == "step_started":  # a workflow step: its id, kind and agent or tool
                    label = (f"[bold]step {step} · {escape(e['step_id'])}[/] · {e['kind']} "
                             f"{escape(one_line(e['name'], 60))}")
                step_nodes[step] = root.add(label)
            parent = step_nodes[step]
        if asked is not None and kind != "handoff":
            parent = asked[1]
        if kind == "handoff":
            reason = e.get("reason") or ""
            if asked is not None and e["from_agent"] == asked[0]:
                asked = None
                parent.add(f"[cyan]handoff[/] {escape(e['from_agent'])} → {escape(e['to_agent'])} · "
                           f"{escape(reason)}")
            elif reason.startswith("asked: "):
                node = parent.add(f"[cyan]ask[/] {escape(e['from_agent'])} → {escape(e['to_agent'])} · "
                                  f"{escape(one_line(reason.removeprefix('asked: ')))}")
                asked = (e["to_agent"], node)
            else:
                agent = e["to_agent"]
                parent.add(f"[cyan]handoff[/] {escape(e['from_agent'])} → {escape(e['to_agent'])}"
                           + (f" · {escape(one_line(reason))}" if reason else ""))
            continue
        if kind == "model_call":
            parent.add(f"[blue]model_call[/] {escape(e['model'])} · {len(e['messages'])} messages · "
                       f"tools: {', '.join(e.get('tools') or []) or 'none'}")
        elif kind == "model_result":
            label = (f"[blue]model_result[/] {_ms(e['duration_ms'])} · ttft {_ms(e.get('ttft_ms'))} · "
                     f"{e['prompt_tokens']} prompt ({e.get('cached_tokens', 0)} cached) + "
                     f"{e['completion_tokens']} completion tokens")
            if e.get("format_errors"):
                label += f" · [yellow]{e['format_errors']} format error(s)[/]"
            node = parent.add(label)
            if e["text"]:
                node.add(escape(one_line(e["text"], 160)))
        elif kind == "tool_call":
            calls[e["call_id"]] = parent.add(
                f"[magenta]tool_call[/] {escape(e['name'])}({escape(short_args(e['arguments']))})")
        elif kind == "tool_result":
            style = "red" if e["is_error"] else "green"
            target = calls.get(e["call_id"], parent)
            target.add(f"[{style}]tool_result[/] {_ms(e['duration_ms'])} · {escape(one_line(e['content']))}")
        elif kind.startswith("approval_"):
            what = (f"{escape(e['name'])}({escape(short_args(e['arguments']))})" if "arguments" in e
                    else escape(e["name"]))
            extra = f" · {escape(e['reason'])}" if e.get("reason") else ""
            parent.add(f"[yellow]{kind.replace('_', ' ')}[/] {what}{extra}")
        elif kind == "step_finished":
            style = {"ok": "green", "skipped": "dim", "failed": "red"}[e["status"]]
            shown = e["error"] if e["status"] == "failed" else json.dumps(e["output"], ensure_ascii=False)
            parent.add(f"[{style}]step_finished[/] {e['status']} · {_ms(e['duration_ms'])}"
                       + ("" if e["status"] == "skipped" else f" · {escape(one_line(shown))}"))
        elif kind == "checkpoint":
            parent.add(f"[dim]checkpoint · {escape(e['label'])}[/]")
        elif kind == "resumed":
            reused = f" · reused {', '.join(e['reused'])}" if e["reused"] else ""
            root.add(f"[cyan]resumed[/] from {escape(e['from_run_id'])} at {escape(e['checkpoint'])}{escape(reused)}")
        elif kind == "retrieval":
            parent.add(f"[cyan]retrieval[/] {escape(e['query'])} · {len(e['hits'])} hits")
        elif kind == "error":
            parent.add(f"[red]error[/] ({e['kind']}) {escape(e['message'])}")
        elif kind == "run_finished":
            root.add(f"[{status_style}]run_finished[/] {e['status']} · {escape(one_line(e['output']))}")
    if run["status"] == "interrupted":
        root.add("[magenta]interrupted: the process stopped before the run finished[/]")
    return root
