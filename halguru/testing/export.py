"""A stored run as a conversation test case: the export format shared with `halguru dev`.

Each run of the conversation, up to the chosen one, becomes a turn: its input is the
user message; the tool calls it made become ``tool_called`` expectations and its answer
an ``equals`` expectation. Edit the expectations to what must really hold, then record
with ``halguru test --record``.
"""

from __future__ import annotations

from typing import Any

import yaml

from halguru.store.base import TraceStore


def run_to_test_case(store: TraceStore, run_id: str) -> dict[str, Any]:
    run = store.get_run(run_id)
    runs = sorted(store.list_runs(limit=1000, conversation_id=run["conversation_id"]), key=lambda r: r["started"])
    runs = [r for r in runs if r["started"] <= run["started"]]
    turns = []
    for r in runs:
        calls = [{"name": e["name"], "arguments": e["arguments"]}
                 for e in store.get_events(r["id"]) if e["type"] == "tool_call"]
        expect: dict[str, Any] = {}
        if calls:
            expect["tool_called"] = calls
        if r["status"] == "ok":
            expect["equals"] = r["output"]
        turns.append({"user": r["input"], "expect": expect})
    name = " ".join(run["input"].split())[:50] or run["id"]
    return {"name": f"{name} ({run['id']})", "turns": turns}


def run_to_test_yaml(store: TraceStore, run_id: str) -> str:
    header = "# Exported from a halguru run; keep the expectations that must hold, then `halguru test --record`.\n"
    body = yaml.safe_dump({"tests": [run_to_test_case(store, run_id)]}, sort_keys=False, allow_unicode=True,
                          width=100)
    return header + body
