"""Text for the trace tree and the inspector: plain functions, so they are cheap and testable."""

from __future__ import annotations

import json
from typing import Any

from rich.markup import escape

TREE_LIMIT = 60  # characters of a tool result or answer shown in the tree; the inspector shows all


def ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1000:.2f}s" if value >= 1000 else f"{value:.0f}ms"


def clip(text: str, limit: int = TREE_LIMIT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def args_text(arguments: dict[str, Any]) -> str:
    return ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in arguments.items())


def label(e: dict[str, Any]) -> str:
    """The tree label of one stored event (Rich markup)."""
    kind = e["type"]
    if kind == "run_started":
        return f"[b]run[/] {escape(e['run_id'])} · {escape(e['model'])} · {escape(clip(e['input'], 40))}"
    if kind == "model_call":
        return f"[cyan]model call[/] step {e['step']} · {len(e['messages'])} messages"
    if kind == "model_result":
        calls = f" → {len(e['tool_calls'])} tool call(s)" if e.get("tool_calls") else ""
        return (f"[cyan]model result[/] {e['prompt_tokens']}+{e['completion_tokens']} tok · "
                f"{ms(e['duration_ms'])}{calls} · {escape(clip(e['text'], 40))}")
    if kind == "tool_call":
        return f"[magenta]tool call[/] {escape(e['name'])}({escape(clip(args_text(e['arguments']), 40))})"
    if kind == "tool_result":
        style = "red" if e["is_error"] else "green"
        return f"[{style}]tool result[/] {escape(e['name'])} · {ms(e['duration_ms'])} · {escape(clip(e['content']))}"
    if kind == "retrieval":
        return (f"[blue]retrieval[/] {escape(e['knowledge_base'])} · {len(e['hits'])} hits · "
                f"{ms(e['duration_ms'])} · {escape(clip(e['query'], 30))}")
    if kind == "handoff":
        return f"[yellow]handoff[/] {escape(e['from_agent'])} → {escape(e['to_agent'])}"
    if kind == "step_started":
        return f"[b]step[/] {escape(e['step_id'])} · {e['kind']} {escape(clip(e['name'], 40))}"
    if kind == "step_finished":
        style = {"ok": "green", "skipped": "dim", "failed": "red"}.get(e["status"], "magenta")
        shown = e["error"] if e["status"] == "failed" else json.dumps(e["output"], ensure_ascii=False)
        return f"[{style}]step {e['status']}[/] {escape(e['step_id'])} · {ms(e['duration_ms'])} · {escape(clip(shown))}"
    if kind == "checkpoint":
        return f"[dim]checkpoint · {escape(e['label'])}[/]"
    if kind == "resumed":
        return f"[cyan]resumed[/] from {escape(e['from_run_id'])} at {escape(e['checkpoint'])}"
    if kind.startswith("approval_"):
        return f"[yellow]{kind.replace('_', ' ')}[/] {escape(e['name'])}"
    if kind == "error":
        return f"[red]error[/] {e['kind']}: {escape(clip(e['message']))}"
    if kind == "run_finished":
        style = {"ok": "green", "failed": "red", "cancelled": "yellow"}.get(e["status"], "magenta")
        return (f"[{style}]finished {e['status']}[/] · {ms(e['duration_ms'])} · {e['steps']} steps · "
                f"{e['prompt_tokens']}+{e['completion_tokens']} tok")
    return kind


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def _maybe_json(text: str) -> str:
    try:
        return _json(json.loads(text))
    except (ValueError, TypeError):
        return text


def inspect(e: dict[str, Any]) -> str:
    """Everything about one event, whole: messages as sent, settings, raw output, JSON arguments."""
    kind = e["type"]
    head = f"{kind} · run {e.get('run_id', '')} · seq {e.get('seq', 0)} · step {e.get('step', 0)}\n\n"
    if kind == "model_call":
        parts = [f"model: {e['model']}", f"tools: {', '.join(e['tools']) or '-'}",
                 f"settings:\n{_json(e['settings'])}", "messages as sent:"]
        for m in e["messages"]:
            parts.append(f"--- {m.get('role')}{' (' + m['name'] + ')' if m.get('name') else ''} ---")
            parts.append(m.get("content", ""))
            if m.get("tool_calls"):
                parts.append(_json(m["tool_calls"]))
        return head + "\n".join(parts)
    if kind == "model_result":
        return head + (f"tokens: {e['prompt_tokens']} prompt + {e['completion_tokens']} completion "
                       f"({e['cached_tokens']} cached)\nduration: {ms(e['duration_ms'])} · first token: "
                       f"{ms(e['ttft_ms'])} · finish: {e['finish_reason']}\n\nraw output:\n{e['text']}\n\n"
                       f"tool calls:\n{_json(e['tool_calls'])}")
    if kind == "tool_call":
        return head + f"tool: {e['name']} (call {e['call_id']})\n\narguments:\n{_json(e['arguments'])}"
    if kind == "tool_result":
        return head + (f"tool: {e['name']} · {'ERROR · ' if e['is_error'] else ''}{ms(e['duration_ms'])} · "
                       f"{len(e['content'])} characters\n\nresult:\n{_maybe_json(e['content'])}")
    if kind == "retrieval":
        hits = [f"[{i}] score {h.get('score', '?')} · {h.get('source', h.get('title', ''))}\n{h.get('text', '')}"
                for i, h in enumerate(e["hits"], 1)]
        return head + f"knowledge base: {e['knowledge_base']}\nquery: {e['query']}\n\n" + "\n\n".join(hits)
    if kind == "error":
        return head + f"{'FATAL ' if e['fatal'] else ''}{e['kind']} error:\n{e['message']}"
    if kind == "run_finished":
        return head + f"status: {e['status']}\nerror: {e.get('error') or '-'}\n\nanswer:\n{e['output']}"
    return head + _json(e)
