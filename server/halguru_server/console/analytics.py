"""What the analytics page and ``GET /v1/analytics`` show over the last N days: conversations and messages
per day, channel and agent; how runs ended (ok, failed/interrupted, limited, other); handoffs between agents;
the most used tools; tokens per agent and model, with a cost where the model's entry has prices (as
``halguru eval`` computes it)."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from halguru.models.registry import cost_usd
from halguru_server.console import monitor
from halguru_server.ops import model_label
from halguru_server.state import ServerState


def _date(day: int) -> str:
    return datetime.fromtimestamp(day * 86400, UTC).strftime("%Y-%m-%d")


def report(state: ServerState, days: int = 14, keep: bool = True) -> dict[str, Any]:
    """The numbers for the last ``days`` UTC days (today the last of them), each list ready to show; the closed
    days' from what the store keeps (``keep``: else computed again, as the test comparing them does)."""
    today = int(time.time() // 86400)
    found = monitor.stats_store(state).analytics_rows(today - days + 1, keep=keep)
    by_day: dict[str, Counter[str]] = {_date(d): Counter() for d in range(today - days + 1, today + 1)}
    fields = ("runs", "ok", "errors", "limited", "conversations", "tokens")
    resolution: Counter[str] = Counter()
    for row in found["runs"]:
        slot = by_day.setdefault(_date(int(row["day"])), Counter())
        for name in fields:
            slot[name] += int(row[name] or 0)
        resolution["ok"] += int(row["ok"] or 0)
        resolution["failed"] += int(row["errors"] or 0)
        resolution["limited"] += int(row["limited"] or 0)
        resolution["other"] += int(row["runs"]) - sum(int(row[name] or 0) for name in ("ok", "errors", "limited"))
    messages = sorted(({**row, "day": _date(int(row["day"]))} for row in found["messages"]),
                      key=lambda r: (r["day"], r["channel"], r["agent"]))
    handoffs: Counter[tuple[str, str]] = Counter()
    for row in found["handoffs"]:
        handoffs[(row["from"], row["to"])] += int(row["count"])
    tools: Counter[tuple[str, str]] = Counter()
    for row in found["tools"]:
        tools[(row["tool"], row["agent"])] += int(row["calls"])
    use: dict[tuple[str, str], list[int]] = {}
    for row in found["tokens"]:
        sums = use.setdefault((row["agent"], row["model"]), [0, 0])
        sums[0] += int(row["prompt_tokens"] or 0)
        sums[1] += int(row["completion_tokens"] or 0)
    tokens = [{"agent": agent, "model": model_label(model), "prompt_tokens": p, "completion_tokens": c,
               "cost_usd": _price(model, p, c)} for (agent, model), (p, c) in sorted(use.items())]
    per_day = [{"day": d, **{f: v[f] for f in fields}} for d, v in sorted(by_day.items(), reverse=True)]
    return {"days": days, "per_day": per_day, "messages": messages, "resolution": dict(resolution),
            "handoffs": [{"from": f, "to": t, "count": n}
                         for (f, t), n in sorted(handoffs.items(), key=lambda kv: (-kv[1], kv[0]))[:50]],
            "top_tools": [{"tool": tool, "agent": agent, "calls": n}
                          for (tool, agent), n in sorted(tools.items(), key=lambda kv: (-kv[1], kv[0]))[:20]],
            "tokens": tokens}


def _price(model: str, prompt: int, completion: int) -> float | None:
    try:
        return cost_usd(model, prompt, completion)
    except Exception:  # a model reference the registry cannot read (a file path): no price
        return None
