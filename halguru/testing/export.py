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
    turns: list[dict[str, Any]] = []
    for r in runs:
        events = store.get_events(r["id"])
        decision = _decision(events)
        # A continuation after a human's decision, or `runs resume` of a run cut short (killed, failed): the same
        # turn goes on (its input is the cut run's again, and a test turn runs once, start to end).
        resumed = any(e["type"] == "resumed" and not e.get("parent_run_id") for e in events)
        if (decision is not None or resumed) and turns:
            turn = turns[-1]
            if decision is not None:
                turn.setdefault("decide", []).append(decision)
        else:
            turn = {"user": r["input"], "expect": {}}
            turns.append(turn)
        # the calls the model made: a call that waits for approval is one (its tool_call comes, if approved, in
        # the continuation, which does not count it again)
        decided = decision_call(events) if decision is not None else None
        calls = [{"name": e["name"], "arguments": e["arguments"]} for e in events
                 if (e["type"] == "tool_call" and e.get("call_id") != decided)
                 or (e["type"] == "approval_requested" and not e.get("parent_run_id"))]
        if calls:  # a call in flight when the run was cut runs again in the resume: expected once
            expected = turn["expect"].setdefault("tool_called", [])
            expected.extend(c for c in calls if not resumed or c not in expected)
        turn["expect"].pop("equals", None)
        if r["status"] == "ok":
            turn["expect"]["equals"] = r["output"]
    for turn in turns:  # decide: before expect, as a person would write it
        if "decide" in turn:
            turn["expect"] = turn.pop("expect")
    name = " ".join(run["input"].split())[:50] or run["id"]
    return {"name": f"{name} ({run['id']})", "turns": turns}


def _decision(events: list[dict[str, Any]]) -> Any:
    """The human's decision a continuation run starts with, as a test turn's ``decide:`` entry; None for another
    run."""
    for e in events:
        if e["type"] == "approval_approved" and not e.get("parent_run_id"):
            return {"approve": e["arguments"]} if e.get("edited") else "approve"
        if e["type"] == "approval_rejected" and not e.get("parent_run_id"):
            return {"reject": e.get("reason") or "refused"}
    return None


def decision_call(events: list[dict[str, Any]]) -> str | None:
    """The call id a continuation's decision was about (its call is the paused turn's, already exported)."""
    return next((e["call_id"] for e in events if e["type"] in ("approval_approved", "approval_rejected")), None)


def run_to_test_yaml(store: TraceStore, run_id: str) -> str:
    header = "# Exported from a halguru run; keep the expectations that must hold, then `halguru test --record`.\n"
    body = yaml.safe_dump({"tests": [run_to_test_case(store, run_id)]}, sort_keys=False, allow_unicode=True,
                          width=100)
    return header + body
