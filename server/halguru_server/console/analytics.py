"""What the analytics page and ``GET /v1/analytics`` show over the last N days: conversations and messages
per day, channel and agent; how runs ended (ok, failed/interrupted, limited, other); handoffs between agents;
the most used tools; tokens per agent and model, with a cost where the model's entry has prices (as
``halguru eval`` computes it)."""

from __future__ import annotations

import json
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


def report(state: ServerState, days: int = 14) -> dict[str, Any]:
    """The numbers, each list ready to show."""
    since = time.time() - days * 86400
    store = monitor.stats_store(state)
    runs = store.daily_runs(since)
    messages = [{**row, "day": _date(int(row["day"]))} for row in store.daily_messages(since)]
    today = int(time.time() // 86400)
    by_day: dict[str, dict[str, int]] = {_date(d): Counter() for d in range(today - days + 1, today + 1)}
    for row in runs:
        slot = by_day.setdefault(_date(int(row["day"])), Counter())
        for name in ("runs", "ok", "errors", "limited", "conversations", "tokens"):
            slot[name] += int(row[name] or 0)
    resolution: Counter[str] = Counter()
    for row in runs:
        resolution["ok"] += int(row["ok"] or 0)
        resolution["failed"] += int(row["errors"] or 0)
        resolution["limited"] += int(row["limited"] or 0)
        resolution["other"] += int(row["runs"]) - int(row["ok"] or 0) - int(row["errors"] or 0) - int(
            row["limited"] or 0)
    handoffs: Counter[tuple[str, str]] = Counter()
    for row in store.handoff_events(since):
        data = json.loads(row["data"]) if isinstance(row["data"], str) else row["data"]
        handoffs[(data.get("from_agent", ""), data.get("to_agent", ""))] += 1
    tokens = []
    for row in store.token_use(since):
        prompt, completion = int(row["prompt_tokens"] or 0), int(row["completion_tokens"] or 0)
        tokens.append({"agent": row["agent"], "model": model_label(row["model"]), "prompt_tokens": prompt,
                       "completion_tokens": completion, "cost_usd": _price(row["model"], prompt, completion)})
    fields = ("runs", "ok", "errors", "limited", "conversations", "tokens")
    per_day = [{"day": d, **{f: v[f] for f in fields}} for d, v in sorted(by_day.items(), reverse=True)]
    return {"days": days, "per_day": per_day,
            "messages": messages, "resolution": dict(resolution),
            "handoffs": [{"from": f, "to": t, "count": n} for (f, t), n in handoffs.most_common(50)],
            "top_tools": store.top_tools(since), "tokens": tokens}


def _price(model: str, prompt: int, completion: int) -> float | None:
    try:
        return cost_usd(model, prompt, completion)
    except Exception:  # a model reference the registry cannot read (a file path): no price
        return None
